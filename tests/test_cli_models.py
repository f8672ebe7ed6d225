"""Issue 12 item 7: `retrograd train --model cnn|lstm` (LeNet-5 and a row-reading LSTM on
784-pixel digits), their checkpoints through eval / predict / --resume, the flags each
model refuses, and the random-shift augmentation (data.random_shift, fit's augment).

The full-accuracy runs (>= 97 % / >= 90 % on mnist5k) take a minute each and are not
tests (README: the commands and the figures); these train on 60 digits for an epoch."""
import json

import numpy as np
import pytest

import retrograd as rg
from retrograd import io, nn, optim
from retrograd.data import DataError, load_mnist5k, random_shift
from retrograd.models import build_model, parameter_count
from retrograd.train import fit


from cli_helpers import cli, one_line


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """60 real digits as a CSV (784 pixels, label last): 48 train (4 of them validation)
    / 12 test after load_dataset's split."""
    (x, y), _ = load_mnist5k()
    take = np.random.default_rng(0).permutation(len(x))[:65]    # the file is sorted by class
    x, y = x[take], y[take]
    assert set(y[:60]) == set(range(10))
    path = tmp_path_factory.mktemp("digits") / "digits.csv"
    rows = np.column_stack([x[:60], y[:60]])
    np.savetxt(path, rows, delimiter=",", fmt=["%.3f"] * 784 + ["%d"])
    pixels = path.with_name("pixels.csv")
    np.savetxt(pixels, x[60:65], delimiter=",", fmt="%.3f")
    return path, pixels


FAST = ["--epochs", "1", "--batch-size", "16", "--no-progress"]
MODELS = [["--model", "cnn"], ["--model", "lstm", "--hidden", "8"],
          ["--model", "lstm", "--hidden", "8", "--bidirectional", "--no-compile"]]


# ---------------------------------------------------------------- train, eval, predict, resume

@pytest.mark.parametrize("model", MODELS, ids=["cnn", "lstm", "bilstm"])
def test_each_model_trains_and_its_checkpoint_evals_predicts_and_resumes(
        model, digits, tmp_path, capsys):
    data, pixels = digits
    out = tmp_path / "run"
    code, text, err = cli(capsys, "train", "--data", data, *model, *FAST, "--schedule", "step",
                          "--out", out)
    assert code == 0, err
    assert ("LeNet-5" if "cnn" in model else "LSTM") in text
    assert "(44 train / 4 validation / 12 test)" in text and "test accuracy" in text
    meta = io.load(out / "last.npz")["meta"]
    assert meta["model"] == model[1] and meta["classes"] == 10
    if "lstm" in model:
        assert meta["hidden"] == 8 and meta["bidirectional"] == ("--bidirectional" in model)

    code, text, err = cli(capsys, "eval", out / "last.npz", "--data", data)
    assert code == 0, err
    assert "12 test samples" in text and "confusion matrix" in text
    code, _, err = cli(capsys, "predict", out / "best.npz", pixels, "--output", tmp_path / "p.csv")
    assert code == 0, err
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0].startswith("prediction,p0,") and len(lines) == 6
    assert np.allclose([sum(map(float, l.split(",")[1:])) for l in lines[1:]], 1, atol=1e-4)

    # --resume takes the model from the checkpoint: no --model needed
    code, text, err = cli(capsys, "train", "--data", data, "--epochs", "2", "--batch-size", "16",
                          "--no-progress", "--out", out, "--resume")
    assert code == 0, err
    assert "resumed from" in text and "epoch 2/2" in text
    assert len(json.loads((out / "history.json").read_text())) == 2


@pytest.mark.parametrize("model", ["cnn", "lstm"])
def test_with_no_other_flag_each_model_gets_its_recipe(model, digits, tmp_path, capsys,
                                                       monkeypatch):
    from retrograd.cli import MODEL_DEFAULTS
    data, _ = digits
    monkeypatch.chdir(tmp_path)
    code, text, err = cli(capsys, "train", "--model", model, "--data", data, "--no-progress",
                          "--epochs", "1")
    assert code == 0, err
    run = tmp_path / "runs" / f"digits.csv-{model}"        # beside an MLP's runs/digits.csv
    meta = io.load(run / "last.npz")["meta"]
    want = {k: v for k, v in MODEL_DEFAULTS[model].items() if k != "epochs"}
    assert {k: meta[k] for k in want} == want
    assert "adam (lr 0.002), batch 32" in text
    # a finished cosine schedule is at lr 0: extending it is refused with the way out
    code, _, err = cli(capsys, "train", "--model", model, "--data", data, "--epochs", "3",
                       "--no-progress", "--resume")
    assert code == 2 and "cosine schedule" in one_line(err) and "new --out" in err


def test_an_interrupted_cnn_run_resumes_to_the_same_weights(digits, tmp_path, capsys):
    """The shifts come from the global generator, which checkpoints hold: training 2
    epochs, or 1 and then resuming to 2, ends with the same weights."""
    data, _ = digits
    args = ["train", "--data", data, "--model", "cnn", "--batch-size", "16", "--no-progress",
            "--schedule", "none"]
    assert cli(capsys, *args, "--epochs", "2", "--out", tmp_path / "a")[0] == 0
    assert cli(capsys, *args, "--epochs", "1", "--out", tmp_path / "b")[0] == 0
    assert cli(capsys, *args, "--epochs", "2", "--out", tmp_path / "b", "--resume")[0] == 0
    a, b = (io.load(tmp_path / p / "last.npz")["model"] for p in "ab")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_mlp_stays_the_default_and_records_its_model(tmp_path, capsys):
    code, text, err = cli(capsys, "train", "--data", "moons", "--epochs", "1", "--no-progress",
                          "--out", tmp_path)
    assert code == 0, err
    assert "2-100-2 tanh MLP" in text and "sgd (lr 0.1), batch 32, 1 epochs" in text
    meta = io.load(tmp_path / "last.npz")["meta"]
    assert meta["model"] == "mlp" and meta["shift"] == 0 and "hidden" not in meta


def test_a_checkpoint_without_a_model_key_is_an_mlp(tmp_path, capsys):
    """Checkpoints of the version before --model have no "model": they are MLPs."""
    assert cli(capsys, "train", "--data", "moons", "--epochs", "1", "--no-progress",
               "--out", tmp_path)[0] == 0
    ck = io.load(tmp_path / "last.npz")
    del ck["meta"]["model"], ck["meta"]["shift"]
    io.save(ck, tmp_path / "last.npz")
    assert cli(capsys, "eval", tmp_path / "last.npz")[0] == 0
    code, text, err = cli(capsys, "train", "--data", "moons", "--epochs", "2", "--no-progress",
                          "--out", tmp_path, "--resume")
    assert code == 0, err
    assert "epoch 2/2" in text


# ---------------------------------------------------------------- refused

@pytest.mark.parametrize("argv,message", [
    (["--model", "cnn", "--layers", "100"], "--layers sets the widths of an MLP; --model cnn"),
    (["--model", "lstm", "--layers", "100"], "--model lstm does not take it"),
    (["--model", "lstm", "--activation", "relu"], "an LSTM's gates are fixed"),
    (["--hidden", "64"], "--hidden sets the LSTM's state size; --model mlp"),
    (["--model", "cnn", "--bidirectional"], "--bidirectional is an LSTM option; --model cnn"),
    (["--model", "cnn", "--data", "xor"], "--model cnn reads 28x28 images, 784 pixels a row, "
                                          "but xor has 2 features"),
    (["--model", "lstm", "--data", "spirals"], "spirals has 2 features"),
    (["--data", "moons", "--shift", "2"], "--shift reads 28x28 images"),
    (["--model", "cnn", "--loss", "bce"], "--loss bce needs one sigmoid output"),
    (["--model", "rnn"], "invalid choice: 'rnn'"),
    (["--shift", "9"], "must be an integer from 0 to 8"),
    (["--model", "lstm", "--hidden", "1000000"], "parameters, about"),
])
def test_flags_a_model_does_not_take_are_refused_in_one_line(argv, message, tmp_path, capsys):
    code, _, err = cli(capsys, "train", *argv, "--no-save")
    assert code == 2 and message in one_line(err)


def test_resume_refuses_another_model_or_lstm_shape(digits, tmp_path, capsys):
    data, _ = digits
    out = tmp_path / "run"
    assert cli(capsys, "train", "--data", data, "--model", "lstm", "--hidden", "8", *FAST,
               "--out", out)[0] == 0
    for flags, message in [(["--model", "cnn"], "--model cnn disagrees with"),
                           (["--shift", "1"], "--shift 1 disagrees with"),
                           (["--hidden", "16"], "--hidden 16 disagrees with"),
                           (["--bidirectional"], "--bidirectional True disagrees with"),
                           (["--layers", "100"], "--model lstm does not take it")]:
        code, _, err = cli(capsys, "train", "--data", data, *flags, "--epochs", "2",
                           "--no-progress", "--out", out, "--resume")
        assert code == 2 and message in one_line(err), flags


@pytest.mark.parametrize("change,message", [
    ({"model": "rnn"}, "invalid 'model'"),
    ({"hidden": 0}, "invalid 'hidden'"),
    ({"hidden": 10 ** 9}, "parameters"),
    ({"classes": None}, "no classes"),
])
def test_a_crafted_lstm_checkpoint_is_refused_in_one_line(change, message, digits, tmp_path, capsys):
    data, _ = digits
    out = tmp_path / "run"
    assert cli(capsys, "train", "--data", data, "--model", "lstm", "--hidden", "8", *FAST,
               "--out", out)[0] == 0
    ck = io.load(out / "best.npz")
    ck["meta"].update(change)
    io.save(ck, tmp_path / "bad.npz")
    code, _, err = cli(capsys, "eval", tmp_path / "bad.npz")
    assert code == 2 and message in one_line(err)


# ---------------------------------------------------------------- the builders

@pytest.mark.parametrize("config", [
    {"model": "cnn", "classes": 10, "activation": "relu"},
    {"model": "lstm", "classes": 10, "hidden": 12, "bidirectional": False},
    {"model": "lstm", "classes": 3, "hidden": 5, "bidirectional": True},
    {"model": "mlp", "sizes": [784, 30, 10], "activation": "tanh"},
])
def test_builders_take_digit_rows_and_count_their_parameters(config):
    rg.manual_seed(0)
    model = build_model(config)
    assert sum(p.data.size for p in model.parameters()) == parameter_count(config)
    out = model(rg.tensor(np.random.default_rng(0).random((3, 784), dtype=np.float32)))
    assert out.shape == (3, config.get("classes") or config["sizes"][-1])


# ---------------------------------------------------------------- random_shift

def test_random_shift_moves_each_image_by_whole_pixels_within_the_bound():
    rng = np.random.default_rng(0)
    x = rng.random((50, 2, 9, 7)).astype(np.float32) + 1           # no zeros inside
    y = random_shift(x, 2, 123)
    assert y.shape == x.shape and y.dtype == np.float32
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    moves = set()
    for i in range(len(x)):
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if np.array_equal(y[i], padded[i, :, dy:dy + 9, dx:dx + 7])]
        assert found, i                                        # one placement, both channels
        moves.add(found[0])
    assert len(moves) > 10                                     # the shifts do vary
    assert np.array_equal(y, random_shift(x, 2, 123))          # a seed repeats them
    assert not np.array_equal(y, random_shift(x, 2, 124))


def test_random_shift_on_rows_and_its_limits():
    x = np.arange(2 * 16, dtype=np.float32).reshape(2, 16)
    y = random_shift(x, 1, np.random.default_rng(3), image_shape=(4, 4))
    assert y.shape == (2, 16)
    assert np.array_equal(random_shift(x, 0, 0, image_shape=(4, 4)), x)
    with pytest.raises(DataError, match="max_shift must be >= 0"):
        random_shift(x, -1, 0, image_shape=(4, 4))
    with pytest.raises(DataError, match=r"shape \(2, 16\)"):
        random_shift(x, 1, 0)                                  # rows need an image_shape
    with pytest.raises(DataError, match="image_shape"):
        random_shift(x, 1, 0, image_shape=(5, 5))


def test_fit_augments_only_training_batches_and_resumes_exactly(tmp_path):
    """fit's augment sees each training batch (not validation), and its randomness
    (the global generator) is restored by resume: 2 + 2 epochs = 4 epochs."""
    rng = np.random.default_rng(0)
    x = rng.random((40, 16)).astype(np.float32)
    y = (x.sum(1) > 8).astype(np.int64)
    seen = []

    def augment(xb, g):
        seen.append(len(xb))
        return random_shift(xb, 1, g, (4, 4))

    def run(epochs, out, resume=False):
        rg.manual_seed(0)
        model = nn.MLP([16, 8, 2])
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), (x, y),
            (x[:5], y[:5]), epochs=epochs, batch_size=8, out_dir=out, resume=resume,
            progress=False, log=None, augment=augment)
        return model.state_dict()

    full = run(4, tmp_path / "a")
    assert seen == [8] * 20                                    # 5 batches x 4 epochs
    run(2, tmp_path / "b")
    resumed = run(4, tmp_path / "b", resume=True)
    assert all(np.array_equal(full[k], resumed[k]) for k in full)
    rg.manual_seed(0)
    plain = nn.MLP([16, 8, 2])
    fit(plain, nn.CrossEntropyLoss(), optim.SGD(plain.parameters(), lr=0.1), (x, y),
        epochs=4, batch_size=8, progress=False, log=None)
    assert not all(np.array_equal(full[k], plain.state_dict()[k]) for k in full)
