"""safetensors files (rg.save / rg.load by extension) and state_dict(layout="torch"),
checked against PyTorch itself: a retrograd model's weights load into the same torch.nn
model and give the same outputs, and back (issue 15, item 2)."""
import os

import numpy as np
import pytest

import retrograd as rg
from retrograd import nn
from retrograd.models import build_model

safetensors_numpy = pytest.importorskip("safetensors.numpy")
torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
tnn = torch.nn


def _mlp_pair():
    rg.manual_seed(0)
    ours = nn.MLP([5, 7, 3], "tanh")
    theirs = tnn.Sequential(tnn.Linear(5, 7), tnn.Tanh(), tnn.Linear(7, 3))
    return ours, theirs, (4, 5)


def _cnn_pair():
    rg.manual_seed(0)
    ours = build_model({"model": "cnn", "classes": 10, "activation": "relu"})
    theirs = tnn.Sequential(
        tnn.Unflatten(1, (1, 28, 28)),
        tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
        tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))
    return ours, theirs, (3, 784)


class TorchRowLSTM(tnn.Module):
    """models.RowLSTM in PyTorch: the same attribute names, so the same state_dict keys."""

    def __init__(self, hidden=16, classes=10):
        super().__init__()
        self.lstm = tnn.LSTM(28, hidden, batch_first=True)
        self.fc = tnn.Linear(hidden, classes)

    def forward(self, x):
        _, (h, _) = self.lstm(x.reshape(x.shape[0], 28, 28))
        return self.fc(h[-1])


def _lstm_pair():
    rg.manual_seed(0)
    ours = build_model({"model": "lstm", "classes": 10, "hidden": 16, "bidirectional": False})
    return ours, TorchRowLSTM(16), (3, 784)


PAIRS = {"mlp": _mlp_pair, "cnn": _cnn_pair, "lstm": _lstm_pair}


def _outputs(ours, theirs, x):
    with rg.no_grad():
        a = ours(rg.tensor(x)).numpy()
    with torch.no_grad():
        b = theirs(torch.from_numpy(x)).numpy()
    return a, b


@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_retrograd_weights_load_into_torch(tmp_path, kind):
    ours, theirs, shape = PAIRS[kind]()
    path = tmp_path / "m.safetensors"
    rg.save(ours.state_dict(layout="torch"), path, metadata={"layout": "torch"})
    theirs.load_state_dict(safetensors_torch.load_file(str(path)))      # strict: same names
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    a, b = _outputs(ours, theirs, x)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert rg.load(path, with_metadata=True)[1] == {"layout": "torch"}


@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_torch_weights_load_into_retrograd(tmp_path, kind):
    ours, theirs, shape = PAIRS[kind]()
    torch.manual_seed(3)
    for p in theirs.parameters():                    # fresh weights, not retrograd's
        torch.nn.init.uniform_(p, -0.3, 0.3)
    path = tmp_path / "t.safetensors"
    safetensors_torch.save_file(theirs.state_dict(), str(path))
    ours.load_state_dict(rg.load(path), layout="torch")
    x = np.random.default_rng(2).random(shape, dtype=np.float32)
    a, b = _outputs(ours, theirs, x)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # and back: the retrograd model's torch-layout dict is torch's, array for array
    back = ours.state_dict(layout="torch")
    for k, v in theirs.state_dict().items():
        np.testing.assert_array_equal(back[k], v.numpy())


def test_torch_layout_transposes_linear_and_rnn_weights_only():
    rg.manual_seed(0)
    lin, gru, cell = nn.Linear(3, 4), nn.GRU(3, 5, num_layers=2, bidirectional=True), nn.LSTMCell(3, 2)
    assert lin.state_dict(layout="torch")["weight"].shape == (4, 3)
    t = gru.state_dict(layout="torch")
    ref = tnn.GRU(3, 5, num_layers=2, bidirectional=True).state_dict()
    assert list(t) == list(ref) and all(t[k].shape == tuple(ref[k].shape) for k in ref)
    assert cell.state_dict(layout="torch")["weight_ih"].shape == (8, 3)
    conv = nn.Conv2d(2, 3, 3)
    np.testing.assert_array_equal(conv.state_dict(layout="torch")["weight"], conv.weight.data)
    with pytest.raises(ValueError, match="layout"):
        lin.state_dict(layout="jax")


def test_round_trip_keeps_dtypes_shapes_and_values(tmp_path):
    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "f64": np.ones(2),
             "i": np.array(7, np.int64), "b": np.array([True, False]),
             "h": np.arange(3, dtype=np.float16), "t": rg.tensor([1.0, 2.0]),
             "view": np.arange(12.0).reshape(3, 4)[:, ::2]}
    path = tmp_path / "s.safetensors"
    assert rg.save(state, path) == str(path)
    got = rg.load(path)
    assert set(got) == set(state)
    for k, v in state.items():
        v = np.asarray(v)
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        np.testing.assert_array_equal(got[k], v)
    # the file is a plain safetensors file: the reference reader agrees
    ref = safetensors_numpy.load_file(str(path))
    np.testing.assert_array_equal(ref["view"], state["view"])


def test_a_module_saves_its_state_dict(tmp_path):
    rg.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    rg.save(m, tmp_path / "m.SAFETENSORS")
    got = rg.load(tmp_path / "m.SAFETENSORS")
    assert set(got) == set(m.state_dict())
    assert got["1.num_batches_tracked"].dtype == np.int64


def test_refusals_leave_the_target_untouched(tmp_path):
    path = tmp_path / "keep.safetensors"
    path.write_bytes(b"precious")
    bad = [({"a": {"nested": np.ones(2)}}, "arrays only"),
           ({"a": np.ones(2, np.complex128)}, "cannot store"),
           ({1: np.ones(2)}, "strings"),
           ({"__metadata__": np.ones(2)}, "reserved"),
           ([np.ones(2)], "dict of named arrays"),
           (rg.optim.SGD([nn.Parameter(np.ones(2))], lr=0.1), "arrays only")]
    for obj, msg in bad:
        with pytest.raises(rg.RetrogradError, match=msg):
            rg.save(obj, path)
    with pytest.raises(rg.RetrogradError, match="metadata"):
        rg.save({"a": np.ones(2)}, path, metadata={"k": 3})
    with pytest.raises(rg.RetrogradError, match="safetensors"):
        rg.save({"a": np.ones(2)}, tmp_path / "x.npz", metadata={"k": "v"})
    assert path.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == ["keep.safetensors"]       # no temp file left


def test_symlink_is_followed(tmp_path):
    target = tmp_path / "real.safetensors"
    rg.save({"a": np.ones(2)}, target)
    link = tmp_path / "link.safetensors"
    link.symlink_to(target)
    rg.save({"a": np.zeros(3)}, link)
    assert link.is_symlink()
    np.testing.assert_array_equal(rg.load(target)["a"], np.zeros(3))


@pytest.mark.parametrize("cut", [0, 5, 8, 20, -1])
def test_truncated_or_corrupt_file_is_a_checkpoint_error_naming_it(tmp_path, cut):
    path = tmp_path / "c.safetensors"
    rg.save({"a": np.arange(10.0), "b": np.ones(3, np.float32)}, path)
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut >= 0 else data[:8] + b"{not json" + data[17:])
    with pytest.raises(rg.CheckpointError, match="c.safetensors"):
        rg.load(path)


def test_a_huge_header_length_is_refused_before_reading(tmp_path):
    path = tmp_path / "h.safetensors"
    path.write_bytes((2 ** 60).to_bytes(8, "little") + b"{}")
    with pytest.raises(rg.CheckpointError, match="header claims"):
        rg.load(path)


def test_npz_checkpoints_are_unchanged(tmp_path):
    rg.save({"w": np.ones(2), "nested": [1, "x"]}, tmp_path / "c.npz")
    assert rg.load(tmp_path / "c.npz")["nested"] == [1, "x"]


def test_transformer_encoder_layer_and_gru_both_ways(tmp_path):
    """Attention's in_proj is stored in PyTorch's layout already, its out_proj and the
    feed-forward Linears transposed; a GRU's gates are PyTorch's order."""
    torch.manual_seed(0)
    pairs = [(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
              tnn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True), (3, 5, 8)),
             (nn.GRU(4, 6, num_layers=2, bidirectional=True),
              tnn.GRU(4, 6, num_layers=2, bidirectional=True), (5, 3, 4))]
    for ours, theirs, shape in pairs:
        theirs.eval()
        safetensors_torch.save_file(theirs.state_dict(), str(tmp_path / "t.safetensors"))
        ours.load_state_dict(rg.load(tmp_path / "t.safetensors"), layout="torch")
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        with rg.no_grad():
            a = ours(rg.tensor(x))
        with torch.no_grad():
            b = theirs(torch.from_numpy(x))
        a, b = (a[0], b[0]) if isinstance(b, tuple) else (a, b)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
        rg.save(ours.state_dict(layout="torch"), tmp_path / "r.safetensors")
        back = safetensors_torch.load_file(str(tmp_path / "r.safetensors"))
        for k, v in theirs.state_dict().items():
            torch.testing.assert_close(back[k], v)


def test_a_model_trained_by_retrograd_train_opens_in_torch(tmp_path, capsys):
    """The issue's 'done when': `retrograd train` -> checkpoint -> safetensors -> torch."""
    from cli_helpers import cli
    code, _, err = cli(capsys, "train", "--data", "moons", "--epochs", "1", "--no-progress",
                       "--out", tmp_path / "run")
    assert code == 0, err
    ck = rg.load(tmp_path / "run" / "best.npz")
    model = build_model(ck["meta"])
    model.load_state_dict(ck["model"])
    rg.save(model.state_dict(layout="torch"), tmp_path / "m.safetensors")
    sizes, act = ck["meta"]["sizes"], {"tanh": tnn.Tanh, "relu": tnn.ReLU,
                                         "sigmoid": tnn.Sigmoid}[ck["meta"]["activation"]]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [tnn.Linear(a, b)] + ([act()] if i < len(sizes) - 2 else [])
    theirs = tnn.Sequential(*layers)
    theirs.load_state_dict(safetensors_torch.load_file(str(tmp_path / "m.safetensors")))
    x = np.random.default_rng(0).standard_normal((16, sizes[0])).astype(np.float32)
    a, b = _outputs(model, theirs, x)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_without_the_package_the_error_says_what_to_install(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(rg.RetrogradError, match=r"pip install 'retrograd\[safetensors\]'"):
        rg.save({"a": np.ones(2)}, tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()
