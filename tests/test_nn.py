"""nn: modules, parameters, state dicts, layers, dropout, and every loss against
PyTorch and finite differences."""
import numpy as np
import pytest

import retrograd as rg
from retrograd import nn

from torch_oracle import assert_matches_torch, torch


def test_module_collects_parameters_in_order_and_prints_a_tree():
    m = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2, bias=False))
    assert [n for n, _ in m.named_parameters()] == ["0.weight", "0.bias", "2.weight"]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in m.parameters())
    assert m.num_parameters() == 4 * 3 + 3 + 3 * 2
    assert m[0].weight.shape == (4, 3)            # (n_in, n_out), z = x @ W + b
    assert "(0): Linear(4, 3, bias=True)" in repr(m) and "(1): Tanh()" in repr(m)


def test_custom_module_finds_nested_parameters_and_modes():
    class Net(nn.Module):
        def __init__(self):
            self.hidden = nn.Linear(2, 3)
            self.drop = nn.Dropout(0.5)
            self.scale = nn.Parameter(np.ones(1, np.float32))

        def forward(self, x):
            return self.drop(rg.tanh(self.hidden(x))) * self.scale

    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["hidden.weight", "hidden.bias", "scale"]
    net.eval()
    assert not net.drop.training
    x = rg.tensor(np.ones((4, 2), np.float32))
    np.testing.assert_array_equal(net(x).numpy(), net(x).numpy())    # no dropout in eval
    net.train()
    assert net.drop.training


def test_linear_computes_x_at_w_plus_b_and_checks_shapes():
    lin = nn.Linear(3, 2)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(lin(rg.tensor(x)).numpy(), x @ lin.weight.data + lin.bias.data, rtol=1e-6)
    with pytest.raises(rg.ShapeError, match=r"Linear\(3, 2\).*\(5, 4\)"):
        lin(rg.tensor(np.ones((5, 4), np.float32)))
    seq = nn.Sequential(nn.Linear(3, 2), nn.Linear(5, 1))
    with pytest.raises(rg.ShapeError, match="Sequential layer 1"):
        seq(rg.tensor(x))


def test_inits_have_the_right_scale_and_are_seeded():
    rg.manual_seed(0)
    w = nn.Linear(400, 600).weight.data
    a = np.sqrt(6 / 1000)
    assert w.dtype == np.float32 and abs(w).max() <= a and abs(w).max() > 0.95 * a
    he = nn.Linear(400, 600, init="he").weight.data
    assert abs(he).max() <= np.sqrt(6 / 400) and abs(he).max() > 0.95 * np.sqrt(6 / 400)
    rg.manual_seed(0)
    np.testing.assert_array_equal(nn.Linear(400, 600).weight.data, w)
    with pytest.raises(ValueError, match="unknown init"):
        nn.Linear(2, 2, init="nope")


def test_state_dict_round_trip_and_errors():
    a, b = nn.MLP([4, 5, 3]), nn.MLP([4, 5, 3])
    b.load_state_dict(a.state_dict())
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data)
        assert p.data is not q.data
    with pytest.raises(rg.RetrogradError, match="missing keys"):
        b.load_state_dict({"0.weight": a.state_dict()["0.weight"]})
    sd = a.state_dict()
    sd["0.weight"] = np.zeros((5, 4))
    with pytest.raises(rg.ShapeError, match="'0.weight' has shape"):
        b.load_state_dict(sd)


def test_zero_grad_and_mlp_builder():
    m = nn.MLP([2, 8, 8, 1], "relu", output_activation="sigmoid", dropout=0.1)
    kinds = [type(l).__name__ for l in m]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear", "Sigmoid"]
    out = m(rg.tensor(np.ones((3, 2), np.float32))).sum()
    out.backward()
    assert m[0].weight.grad is not None
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_dropout_is_inverted_and_off_in_eval():
    rg.manual_seed(1)
    d = nn.Dropout(0.25)
    x = rg.tensor(np.ones((200, 200), np.float32), requires_grad=True)
    y = d(x)
    kept = y.numpy() != 0
    assert 0.72 < kept.mean() < 0.78
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.75)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), y.numpy())      # gradient flows only where kept
    d.eval()
    assert d(x) is x


# ---------------------------------------------------------------- losses

def _logits_labels(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((6, 4)), rng.integers(0, 4, 6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_labels_onehot_and_probabilities_agree_and_gradcheck(reduction):
    z, y = _logits_labels()
    onehot = np.eye(4)[y]
    f_lab = lambda t: nn.functional.cross_entropy(t, y, reduction)
    f_hot = lambda t: nn.functional.cross_entropy(t, onehot, reduction)
    np.testing.assert_allclose(f_lab(rg.tensor(z)).numpy(), f_hot(rg.tensor(z)).numpy(), rtol=1e-12)
    assert rg.gradcheck(f_lab, z) and rg.gradcheck(f_hot, z)
    assert rg.gradgradcheck(f_lab, z)
    y_t = rg.tensor(y)                                          # labels as a Tensor work too
    np.testing.assert_allclose(nn.CrossEntropyLoss(reduction)(rg.tensor(z), y_t).numpy(),
                               f_lab(rg.tensor(z)).numpy())


def test_cross_entropy_is_finite_for_huge_logits():
    z = rg.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]], requires_grad=True)
    loss = nn.CrossEntropyLoss()(z, np.array([1, 1]))
    loss.backward()
    assert np.isfinite(loss.item()) and np.isclose(loss.item(), 1e4, rtol=1e-6)
    assert np.all(np.isfinite(z.grad.numpy()))
    with rg.no_grad():
        soft = nn.CrossEntropyLoss()(z, np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]))
    assert np.isclose(soft.item(), loss.item())


def test_cross_entropy_label_errors():
    z = rg.tensor(np.zeros((3, 4), np.float32))
    with pytest.raises(rg.ShapeError, match="integer array"):
        nn.CrossEntropyLoss()(z, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(rg.RetrogradError, match="label 7 is out of range for 4 classes"):
        nn.CrossEntropyLoss()(z, np.array([0, 7, 1]))
    with pytest.raises(rg.ShapeError, match=r"shape \(3,\)"):
        nn.CrossEntropyLoss()(z, np.array([0, 1]))


def test_sse_is_half_the_summed_squared_error_of_seed_002():
    o = rg.tensor(np.array([[0.2, 0.9], [0.6, 0.1]]), requires_grad=True)
    d = np.array([[0.0, 1.0], [1.0, 0.0]])
    E = nn.SSELoss()(o, d)
    assert np.isclose(E.item(), 0.5 * ((d - o.numpy()) ** 2).sum())
    E.backward()
    np.testing.assert_allclose(o.grad.numpy(), -(d - o.numpy()))     # ∂E/∂o = −(d − o)
    assert np.isclose(nn.SSELoss("mean")(o, d).item(), E.item() / 2)


def test_bce_with_logits_is_finite_for_huge_logits():
    z = rg.tensor([1e4, -1e4, 0.0], requires_grad=True)
    loss = nn.BCEWithLogitsLoss(reduction="sum")(z, np.array([0.0, 1.0, 1.0]))
    loss.backward()
    assert np.isclose(loss.item(), 2e4 + np.log(2), rtol=1e-6)
    np.testing.assert_allclose(z.grad.numpy(), [1.0, -1.0, -0.5])


@pytest.mark.torch
@pytest.mark.parametrize("name", ["mse", "cross_entropy", "cross_entropy_probs", "nll", "bce",
                                  "bce_with_logits"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_against_pytorch(name, reduction):
    F = torch.nn.functional
    rng = np.random.default_rng(3)
    z, y = _logits_labels(4)
    p = 1 / (1 + np.exp(-z))
    probs = rng.dirichlet(np.ones(4), 6)
    t01 = rng.integers(0, 2, z.shape).astype(np.float64)
    table = {
        "mse": (nn.MSELoss, F.mse_loss, z, rng.standard_normal(z.shape)),
        "cross_entropy": (nn.CrossEntropyLoss, F.cross_entropy, z, y),
        "cross_entropy_probs": (nn.CrossEntropyLoss, F.cross_entropy, z, probs),
        "nll": (nn.NLLLoss, F.nll_loss, np.log(probs), y),
        "bce": (nn.BCELoss, F.binary_cross_entropy, p, t01),
        "bce_with_logits": (nn.BCEWithLogitsLoss, F.binary_cross_entropy_with_logits, z, t01),
    }
    ours_cls, theirs_fn, x, t = table[name]
    assert_matches_torch(lambda xo: ours_cls(reduction)(xo, t),
                         lambda xt: theirs_fn(xt, torch.tensor(t), reduction=reduction), [x], rng,
                         rtol=1e-10, grad_rtol=1e-9, grad_atol=1e-12, what=f"{name} {reduction}")
