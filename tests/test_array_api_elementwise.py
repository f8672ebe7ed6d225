"""Elementwise ops and reductions on array_api_strict arrays on a device of their own
(issue 14): what tests/cases.py's gradient cases do not reach -- the ops without a
gradient (comparisons, rounding, any/all, argmax, isclose), NumPy's promotion of mixed
kinds (a bool mask times a float, an integer array times 0.5), erf over its whole range,
fmod's signs, the edges of logsumexp/softmax (all -inf rows, axis None), prod at zeros,
clip with array bounds and dropout masks -- each equal to NumPy's result."""
import math

import numpy as np
import pytest

import retrograd as rg
from retrograd.arrays import promote
from retrograd.ops import reduce as _reduce

xp = pytest.importorskip("array_api_strict")
pytest.importorskip("array_api_compat")

DEVICE = xp.Device("device1")     # not the CPU: np.asarray of these arrays raises


def _shape_ops_run_on_the_device() -> bool:
    t = rg.tensor(xp.asarray(np.ones((2, 2)), device=DEVICE))
    try:
        rg.reshape(t, (4,))
        t.astype(np.float32)
    except rg.RetrogradError:
        return False
    return True


# (reshape and astype are shape.py's, made namespace-aware in their own commits)
needs_shape_ops = pytest.mark.skipif(not _shape_ops_run_on_the_device(),
                                     reason="reshape/astype do not run on the device yet")


def both(*arrays):
    """Each array as a NumPy tensor and as a strict tensor on the device."""
    return ([rg.tensor(np.asarray(a)) for a in arrays],
            [rg.tensor(xp.asarray(np.asarray(a), device=DEVICE)) for a in arrays])


def host(t):
    a = t._data
    assert a.device == DEVICE, f"left the device: {a.device}"
    return np.asarray(xp.asarray(a, device=xp.Device()))


def same(fn, *arrays, rtol=1e-12):
    ref, ours = both(*arrays)
    want, got = fn(*ref), fn(*ours)
    assert host(got).dtype == want.numpy().dtype, (host(got).dtype, want.numpy().dtype)
    np.testing.assert_allclose(host(got), want.numpy(), rtol=rtol, atol=0)


rng = np.random.default_rng(5)
X = rng.standard_normal((4, 5))
Y = rng.standard_normal((4, 5))

NO_GRADIENT = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "logical_and": lambda a, b: rg.logical_and(a > 0, b > 0),
    "logical_or": lambda a, b: rg.logical_or(a > 0, b > 0),
    "logical_not": lambda a, b: rg.logical_not(a > 0),
    "sign": lambda a, b: rg.sign(a), "floor": lambda a, b: rg.floor(a * 3),
    "ceil": lambda a, b: rg.ceil(a * 3), "trunc": lambda a, b: rg.trunc(a * 3),
    "round": lambda a, b: rg.round(a * 3), "isnan": lambda a, b: rg.isnan(rg.log(a)),
    "isinf": lambda a, b: rg.isinf(1 / (a * 0)), "isfinite": lambda a, b: rg.isfinite(rg.log(a)),
    "isclose": lambda a, b: rg.isclose(a, a + b * 1e-9),
    "any": lambda a, b: rg.any(a > 1, axis=1), "all": lambda a, b: rg.all(a > -2, axis=0),
    "argmax": lambda a, b: rg.argmax(a, axis=1), "argmin": lambda a, b: rg.argmin(a),
    "argmax_keepdims": lambda a, b: rg.argmax(a, axis=0, keepdims=True),
}


@pytest.mark.parametrize("name", list(NO_GRADIENT))
def test_ops_without_a_gradient(name):
    with np.errstate(all="ignore"):
        same(NO_GRADIENT[name], X, Y)


FORWARDS = {
    "exp2": lambda a, b: rg.exp2(a), "fmod": lambda a, b: rg.fmod(a * 5, b),
    "mod": lambda a, b: rg.mod(a * 5, b), "reciprocal": lambda a, b: rg.reciprocal(a),
    "rsqrt": lambda a, b: rg.rsqrt(abs(a)), "mish": lambda a, b: rg.mish(a),
    "gelu": lambda a, b: rg.gelu(a), "gelu_tanh": lambda a, b: rg.gelu(a, approximate="tanh"),
    "silu": lambda a, b: rg.silu(a), "selu": lambda a, b: rg.selu(a),
    "celu": lambda a, b: rg.celu(a, 0.5), "relu6": lambda a, b: rg.relu6(a * 4),
    "hardswish": lambda a, b: rg.hardswish(a * 4), "logsigmoid": lambda a, b: rg.logsigmoid(a),
    "clip_one_side": lambda a, b: rg.clip(a, None, 0.3),
    "clip_array_bounds": lambda a, b: rg.clip(a, -np.abs(Y), np.abs(Y)),
    "where_float_cond": lambda a, b: rg.where(rg.relu(a), a, b),
    "mean_var_std": lambda a, b: rg.mean(a) + rg.var(a, axis=0, ddof=1) + rg.std(a, axis=1)[0],
    "max_min_all": lambda a, b: rg.max(a) - rg.min(a, axis=(0, 1), keepdims=True),
    "logsumexp_all": lambda a, b: rg.logsumexp(a),
    "prod_zeros": lambda a, b: rg.prod(rg.where(a > 1, 0, a), axis=1),
    "norm_ord0": pytest.param(lambda a, b: rg.norm(a, ord=0, axis=1), marks=needs_shape_ops),
    "norm_ord3": lambda a, b: rg.norm(a, ord=3, axis=0),
}


@pytest.mark.parametrize("fn", list(FORWARDS.values()), ids=list(FORWARDS))
def test_forwards(fn):
    same(fn, X, Y)


def test_mixed_kinds_promote_as_numpy():
    """The standard leaves bool * float and int * 0.5 undefined: the ops promote as NumPy."""
    ints = np.arange(20).reshape(4, 5)
    same(lambda a, b: a * (b > 0), X, Y)
    same(lambda a, b: a * 0.5 + b, ints, X)
    same(lambda a, b: a / 3 - (a > 7), ints, ints)
    same(lambda a, b: rg.maximum(a, b), ints, X.astype(np.float32))
    same(lambda a, b: rg.isclose(a, b), ints, ints + 1e-9)
    same(lambda a, b: rg.sqrt(a) + rg.exp2(a) + rg.reciprocal(a + 1), ints, ints)


def test_promote_returns_one_kind_arguments_as_they_are():
    a = xp.asarray([1.0, 2.0], device=DEVICE)
    args = (a, 2, 0.5)
    assert all(p is q for p, q in zip(promote(xp, *args), args))


def test_erf_over_its_range_matches_math_erf():
    grid = np.concatenate([np.linspace(-7, 7, 2801), np.geomspace(1e-300, 6, 300),
                           [0.0, -0.0, np.inf, -np.inf, np.nan]])
    got = host(rg.erf(rg.tensor(xp.asarray(grid, device=DEVICE))))
    want = np.array([math.erf(v) for v in grid])
    np.testing.assert_allclose(got, want, rtol=2e-15, atol=0)


def test_fmod_takes_the_sign_of_a():
    a = np.array([5.5, -5.5, 5.5, -5.5, 3.0, -3.0, 0.25])
    b = np.array([2.0, 2.0, -2.0, -2.0, 1.5, 1.5, -0.1])
    same(rg.fmod, a, b, rtol=1e-15)


def test_logsumexp_and_softmax_keep_all_minus_inf_rows():
    z = np.array([[-np.inf, -np.inf, -np.inf], [1.0, 2.0, -np.inf]])
    same(lambda a: rg.logsumexp(a, axis=1), z)
    same(lambda a: rg.logsumexp(a, axis=1, keepdims=True), z)
    same(lambda a: rg.softmax(a, axis=1), z[1:])
    same(lambda a: rg.log_softmax(a, axis=-1), z[1:])


@needs_shape_ops
def test_prod_gradient_is_exact_at_zeros():
    x = np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 4.0]])
    (ref,), (ours,) = ([rg.tensor(x, requires_grad=True)],
                       [rg.tensor(xp.asarray(x, device=DEVICE), requires_grad=True)])
    (g_ref,) = rg.autograd_grad(rg.prod(ref, axis=1).sum(), [ref])
    (g,) = rg.autograd_grad(rg.prod(ours, axis=1).sum(), [ours])
    np.testing.assert_array_equal(host(g), g_ref.numpy())


def test_prod_others_computes_on_the_device():
    x = rng.standard_normal((2, 3, 4))
    got = _reduce._others(xp.asarray(x, device=DEVICE), (0, 2))
    np.testing.assert_allclose(host(rg.tensor(got)), _reduce._others(x, (0, 2)), rtol=1e-14)


def test_dropout_masks_are_numpys_moved_to_the_device():
    x = np.ones((3, 4), dtype=np.float32)
    ref, ours = both(x)
    want = rg.bernoulli_mask(ref[0], 0.25, generator=np.random.default_rng(3))
    got = rg.bernoulli_mask(ours[0], 0.25, generator=np.random.default_rng(3))
    np.testing.assert_array_equal(host(got), want.numpy())
