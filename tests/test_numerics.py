"""Numerics (issue 6, item 7): the functions that exponentiate stay finite and
accurate at extreme inputs (±1e4, probabilities far below float32's epsilon), in
value and gradient; float32 training follows float64 training.

References are closed forms evaluated in float64 (or exactly, where the answer is
known), never the implementation under test. Tolerances: 4 float32 ulps (rtol
5e-7) or 1e-12 in float64; where a result is a difference of numbers of size 1e4
(x - logsumexp(x)) its absolute error is the rounding of 1e4, one ulp of 1e4
(1e-3 in float32, 1.8e-12 in float64). Float32 training follows float64 training
within 1e-4 relative over 50 steps.
"""
import math

import numpy as np
import pytest

import retrograd as rg
from retrograd import nn, optim
from retrograd.nn import functional as F

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 5e-7, np.float64: 1e-12}
EXTREME = [1e4, 1e4 - 1, 0.0, -1e4, -1e4 + 3]
ULP_1E4 = {d: float(np.spacing(d(2e4))) for d in DTYPES}


@pytest.fixture(autouse=True)
def no_overflow_or_nan():
    """Overflow, 0/0 or log(0) anywhere is an error; underflow to 0 is expected."""
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        yield


def _t(values, dtype, grad=True):
    return rg.tensor(np.asarray(values, dtype=dtype), requires_grad=grad)


def _lse64(v):
    v = np.asarray(v, np.float64)
    m = v.max()
    return m + math.log(np.exp(v - m).sum())


def _close(actual, expected, dtype, atol=0.0):
    a = np.asarray(actual)
    assert a.dtype == dtype
    assert np.isfinite(a).all(), a
    np.testing.assert_allclose(a, expected, rtol=RTOL[dtype], atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp_at_plus_minus_1e4(dtype):
    for v in ([1e4, 1e4], [-1e4, -1e4], EXTREME, [-1e4] * 3 + [1e4]):
        x = _t(v, dtype)
        y = rg.logsumexp(x)
        _close(y.numpy(), _lse64(v), dtype)
        y.backward()                                 # the gradient is softmax(x)
        p = np.exp(np.asarray(v, np.float64) - _lse64(v))
        g = x.grad.numpy()
        assert g.dtype == dtype and np.isfinite(g).all()
        np.testing.assert_allclose(g, p, rtol=RTOL[dtype], atol=1e-30)
    _close(rg.logsumexp(_t([1e4, 1e4], dtype)).numpy(), 1e4 + math.log(2), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_and_log_softmax_at_plus_minus_1e4(dtype):
    x = _t([EXTREME], dtype)
    p = rg.softmax(x, axis=1)
    e = math.exp(-1)
    _close(p.numpy(), [[1 / (1 + e), e / (1 + e), 0, 0, 0]], dtype)
    assert p.numpy().sum() == pytest.approx(1, rel=RTOL[dtype] * 4)
    logp = rg.log_softmax(x, axis=1)
    lse = 1e4 + math.log1p(e)
    _close(logp.numpy(), [[1e4 - lse, 1e4 - 1 - lse, -lse, -1e4 - lse, -1e4 + 3 - lse]], dtype,
           atol=ULP_1E4[dtype])
    # gradients: d(sum w*logp)/dx = w - softmax * sum(w); finite where softmax underflows
    w = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    (logp * rg.tensor(w.astype(dtype))).sum().backward()
    probs = np.array([[1 / (1 + e), e / (1 + e), 0, 0, 0]])
    _close(x.grad.numpy(), w - probs * w.sum(), dtype, atol=1e-5 if dtype == np.float32 else 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_softmax_of_tiny_probabilities_is_exact(dtype):
    """p = e^-100 / (1 + e^-100) is 3.7e-44: zero after softmax in float32, but its log
    is -100 - log1p(e^-100) and must come out as that, not -inf."""
    gap = 100.0 if dtype == np.float32 else 700.0
    logp = rg.log_softmax(_t([[0.0, -gap]], dtype, grad=False), axis=1).numpy()
    tail = math.exp(-gap)
    _close(logp, [[-math.log1p(tail), -gap - math.log1p(tail)]], dtype, atol=1e-30)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_at_plus_minus_1e4_and_tiny_probabilities(dtype):
    z = _t([[1e4, -1e4], [0.0, -100.0], [3.0, 3.0]], dtype)
    labels = np.array([1, 1, 0])
    per_item = F.cross_entropy(z, labels, reduction="none")
    expected = [2e4, 100 + math.log1p(math.exp(-100)), math.log(2)]
    _close(per_item.numpy(), expected, dtype)
    per_item.sum().backward()                 # softmax - onehot
    p = np.exp(np.array([[0, -2e4], [-math.log1p(math.exp(-100)), -100], [math.log(.5)] * 2]))
    _close(z.grad.numpy(), p - np.eye(2)[labels], dtype, atol=1e-30)
    # one-hot float targets take the log_softmax path: the same numbers
    z2 = _t(z.numpy(), dtype, grad=False)
    onehot = np.eye(2, dtype=dtype)[labels]
    _close(F.cross_entropy(z2, onehot, reduction="none").numpy(), expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_at_plus_minus_1e4(dtype):
    x = _t([1e4, -1e4, 0.0, 20.0, -20.0], dtype)
    s = rg.sigmoid(x)
    eps = np.finfo(dtype).eps
    exact = [1.0, 0.0, 0.5, 1 / (1 + math.exp(-20)), math.exp(-20) / (1 + math.exp(-20))]
    assert np.isfinite(s.numpy()).all() and s.numpy()[0] == 1 and s.numpy()[1] == 0
    np.testing.assert_allclose(s.numpy(), exact, rtol=0, atol=eps)    # to 1 ulp of 1
    s.sum().backward()
    g = np.array(exact) * (1 - np.array(exact))
    np.testing.assert_allclose(x.grad.numpy(), g, rtol=0, atol=eps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_of_a_tiny_probability_is_accurate_relative_to_itself(dtype):
    x = -30.0 if dtype == np.float32 else -200.0
    s = rg.sigmoid(_t([x], dtype, grad=False)).numpy()[0]
    assert s == pytest.approx(math.exp(x) / (1 + math.exp(x)), rel=1e-5, abs=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softplus_at_plus_minus_1e4_and_in_the_tail(dtype):
    tail = -80.0 if dtype == np.float32 else -700.0          # e^tail is a normal number
    x = _t([1e4, -1e4, 0.0, tail, 30.0], dtype)
    y = rg.softplus(x)
    exact = [1e4, 0.0, math.log(2), math.log1p(math.exp(tail)), 30 + math.log1p(math.exp(-30))]
    _close(y.numpy(), exact, dtype, atol=1e-300)
    y.sum().backward()                                        # sigmoid(x)
    sig = [1.0, 0.0, 0.5, math.exp(tail), 1 / (1 + math.exp(-30))]
    np.testing.assert_allclose(x.grad.numpy(), sig, rtol=0, atol=np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits_at_plus_minus_1e4_and_tiny_probabilities(dtype):
    """softplus(z) - t*z: exact where log(sigmoid(z)) would be log(0)."""
    tail = -50.0 if dtype == np.float32 else -700.0
    z = _t([1e4, -1e4, 1e4, -1e4, tail, tail, 0.0], dtype)
    t = np.array([1, 1, 0, 0, 0, 1, 1], dtype)
    loss = F.binary_cross_entropy_with_logits(z, t, reduction="none")
    exact = [0.0, 1e4, 1e4, 0.0, math.log1p(math.exp(tail)), -tail + math.log1p(math.exp(tail)),
             math.log(2)]
    _close(loss.numpy(), exact, dtype, atol=1e-300)
    loss.sum().backward()                                     # sigmoid(z) - t
    sig = np.array([1.0, 0.0, 1.0, 0.0, math.exp(tail), math.exp(tail), 0.5])
    np.testing.assert_allclose(z.grad.numpy(), sig - t, rtol=0, atol=np.finfo(dtype).eps)
    mean = F.binary_cross_entropy_with_logits(_t([[1e4, -1e4]], dtype), np.ones((1, 2), dtype))
    assert mean.item() == pytest.approx(5e3, rel=RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_on_probabilities_clamps_log_0_to_minus_100(dtype):
    p = _t([0.0, 1.0, 0.5], dtype)
    with np.errstate(divide="ignore"):      # log(0) is computed, then clamped, as PyTorch does
        loss = F.binary_cross_entropy(p, np.array([1, 0, 1], dtype), reduction="none")
    _close(loss.numpy(), [100.0, 100.0, math.log(2)], dtype)


# ---------------------------------------------------------------- float32 vs float64 training

def _train(dtype, weights, x, y, compile=False, steps=50):
    model = nn.MLP([2, 16, 16, 3], "tanh", dtype=dtype)
    model.load_state_dict({k: v.astype(dtype) for k, v in weights.items()})
    opt = optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    xs, ys = rg.tensor(x.astype(dtype)), rg.tensor(y)
    if compile:
        step = rg.graph.compile_step(model, loss_fn, opt)
        losses = [float(step(xs, ys)[0].item()) for _ in range(steps)]
    else:
        losses = []
        for _ in range(steps):
            loss = loss_fn(model(xs), ys)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.item()))
    return np.array(losses), {k: v.astype(np.float64) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_float32_training_follows_float64_training(compile):
    """The same net from the same float64 weights (cast), the same data, 50 full-batch
    SGD steps with momentum: the losses agree to 1e-4 relative at every step and the
    weights to 1e-3 (float32 rounding, amplified by 50 steps of chaotic dynamics, stays
    far below that on this problem)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 2))
    y = (np.arctan2(x[:, 1], x[:, 0]) > 0).astype(np.int64) + (x[:, 0] > 0.5)
    rg.manual_seed(3)
    weights = nn.MLP([2, 16, 16, 3], "tanh", dtype=np.float64).state_dict()
    l64, w64 = _train(np.float64, weights, x, y)
    l32, w32 = _train(np.float32, weights, x, y, compile=compile)
    assert l64[-1] < 0.6 * l64[0]                 # it learns: the comparison means something
    np.testing.assert_allclose(l32, l64, rtol=1e-4)
    for k in w64:
        np.testing.assert_allclose(w32[k], w64[k], rtol=1e-3, atol=1e-4, err_msg=k)
