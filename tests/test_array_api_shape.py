"""Movement, indexing and in-place ops on arrays of another namespace, beyond the op
cases (tests/test_array_api.py): NumPy's index rules on array_api_strict arrays on a
device of their own (which refuse NumPy calls), scatters with repeated indices, the
border pads, and unrecorded in-place changes."""
import numpy as np
import pytest

import retrograd as rg
from retrograd.arrays import reduce_at, to_numpy

xp = pytest.importorskip("array_api_strict")
pytest.importorskip("array_api_compat")

DEVICE = xp.Device("device1")
X = np.arange(24.0).reshape(2, 3, 4) / 7


def on_device(a):
    return xp.asarray(a, device=DEVICE)


def grads(fn, x):
    """fn's value and the gradient of sum(fn(x) * ct), on the device and in NumPy."""
    out = []
    for t in (rg.tensor(on_device(x), requires_grad=True), rg.tensor(x, requires_grad=True)):
        y = fn(t)
        ct = np.random.default_rng(3).standard_normal(y.shape)
        ct = ct if isinstance(t._data, np.ndarray) else on_device(ct)
        out.append((y.numpy(), rg.autograd_grad((y * ct).sum(), [t])[0].numpy()))
    return out


INDICES = [
    (1, Ellipsis, -1), (slice(None), None, slice(2, 0, -1)), np.array([1, 0, 1]),
    (slice(None), np.array([[2, -1], [0, 0]])), (np.array([1, 0]), slice(None), np.array([3, 3])),
    X > 1.5, (X[:, :, 0] > 1).nonzero(), (Ellipsis, np.array([True, False, True, True])),
    [0, 1, 1],
]


@pytest.mark.parametrize("idx", INDICES, ids=[str(i)[:30] for i in range(len(INDICES))])
def test_getitem_follows_numpys_index_rules_on_the_device(idx):
    (y, g), (y_ref, g_ref) = grads(lambda t: t[idx], X)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_allclose(g, g_ref, rtol=1e-12)


def test_an_index_array_of_the_device_indexes_too():
    t = rg.tensor(on_device(X))
    i = rg.tensor(on_device(np.array([1, 0])))
    np.testing.assert_array_equal(t[i].numpy(), X[[1, 0]])
    np.testing.assert_array_equal(t[on_device(np.array([1])), 2].numpy(), X[[1], 2])


@pytest.mark.parametrize("how, ufunc", [("sum", np.add), ("max", np.maximum),
                                        ("min", np.minimum), ("prod", np.multiply)])
def test_reduce_at_combines_repeated_indices(how, ufunc):
    rng = np.random.default_rng(0)
    lin = rng.integers(0, 9, 60)
    lin[:25] = 4                                     # one place hit many times
    v = rng.uniform(0.5, 1.5, (60, 2))
    ref = np.full((11, 2), {"sum": 0.0, "prod": 1.0, "max": -np.inf, "min": np.inf}[how])
    ufunc.at(ref, lin, v)
    for idx in (lin, on_device(lin)):
        got = to_numpy(reduce_at(xp, 11, idx, on_device(v), how))
        np.testing.assert_allclose(got, ref, rtol=1e-12)


@pytest.mark.parametrize("mode", ["reflect", "edge", "wrap"])
@pytest.mark.parametrize("pw", [((1, 2), (0, 0), (2, 3)), ((0, 0), (5, 4), (1, 7))])
def test_border_pads_and_their_folds(mode, pw):
    (y, g), (y_ref, g_ref) = grads(lambda t: rg.pad(t, pw, mode=mode), X)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_allclose(g, g_ref, rtol=1e-12)


def test_scatter_keeps_the_last_write_and_take_counts_negative_indices_from_the_end():
    x, src = np.zeros((2, 4)), np.arange(6.0).reshape(2, 3)
    idx = np.array([[3, 3, 1], [0, 2, 0]])
    got = rg.scatter(rg.tensor(on_device(x)), 1, idx, rg.tensor(on_device(src))).numpy()
    np.testing.assert_array_equal(got, rg.scatter(rg.tensor(x), 1, idx, rg.tensor(src)).numpy())
    neg = np.array([[-1, 0], [-4, 2]])
    np.testing.assert_array_equal(rg.take(rg.tensor(on_device(X)), neg, axis=2).numpy(),
                                  np.take(X, neg, axis=2))


@pytest.mark.parametrize("idx, value", [((1, 0), 5.0), ((Ellipsis, 1), np.arange(3.0)),
                                        (np.array([0, 1, 0]), -2.0), (X > 2, 9.0),
                                        ((None, 0, slice(1, 3)), np.ones((1, 2, 4)))])
def test_unrecorded_in_place_changes_on_the_device(idx, value):
    t, ref = rg.tensor(on_device(X)), rg.tensor(X)
    for u in (t, ref):
        u[idx] = value
        u += np.full(4, 0.5)
        u *= 2.0
    assert not isinstance(t._data, np.ndarray)
    np.testing.assert_array_equal(t.numpy(), ref.numpy())
    assert t.version == ref.version
