"""Issue 12, item 5 (scans, sorting, gather/scatter, mod): what the op-case table cannot show --
ties, exact zeros in cumprod, repeated indices, negative axes and indices, empty inputs, the
errors a user can cause, and compiled functions taking new index arrays on every call."""
import numpy as np
import pytest

import retrograd as rg

from torch_oracle import torch


def _grad(f, *xs):
    ts = [rg.tensor(np.asarray(x, dtype=float), requires_grad=True) for x in xs]
    out = f(*ts)
    return [g.numpy() for g in rg.autograd_grad(out, ts)]


# ---------------------------------------------------------------- mod / fmod

def test_mod_and_fmod_follow_numpy_sign_conventions():
    a = np.array([-7.0, -7.0, 7.0, 7.0, -0.5, 3.0])
    b = np.array([3.0, -3.0, 3.0, -3.0, 2.0, 1.5])
    np.testing.assert_array_equal(rg.mod(a, b).numpy(), np.mod(a, b))
    np.testing.assert_array_equal(rg.remainder(a, b).numpy(), np.mod(a, b))
    np.testing.assert_array_equal((rg.tensor(a) % b).numpy(), np.mod(a, b))
    np.testing.assert_array_equal(rg.fmod(a, b).numpy(), np.fmod(a, b))
    assert rg.remainder is rg.mod


def test_mod_gradients_are_one_and_minus_the_quotient():
    a, b = np.array([-7.0, 7.0, 2.5]), np.array([3.0, -3.0, 0.7])
    ga, gb = _grad(lambda x, y: rg.mod(x, y).sum(), a, b)
    np.testing.assert_array_equal(ga, 1.0)
    np.testing.assert_array_equal(gb, -np.floor(a / b))
    ga, gb = _grad(lambda x, y: rg.fmod(x, y).sum(), a, b)
    np.testing.assert_array_equal(gb, -np.trunc(a / b))
    # the quotient the forward took off: 1 mod 0.1 is 0.0999..., 9 tenths (1 / 0.1 is 10.0)
    for f in (rg.mod, rg.fmod):
        _, gb = _grad(lambda x, y: f(x, y).sum(), [1.0], [0.1])
        np.testing.assert_array_equal(gb, [-9.0])


# ---------------------------------------------------------------- scans

def test_cumsum_matches_numpy_for_every_axis_form():
    x = np.arange(24.0).reshape(2, 3, 4)
    for axis in (None, 0, 1, 2, -1, -3):
        np.testing.assert_array_equal(rg.cumsum(x, axis).numpy(), np.cumsum(x, axis))
        np.testing.assert_array_equal(rg.cumprod(x * 0.1, axis).numpy(), np.cumprod(x * 0.1, axis))
    assert rg.cumsum(np.zeros((0, 3)), axis=0).shape == (0, 3)
    with pytest.raises(rg.AxisError, match="cumsum: axis 3 is out of range"):
        rg.cumsum(x, axis=3)


@pytest.mark.parametrize("row", [[2.0, 0.0, 3.0, -1.5], [0.0, 2.0, 3.0, 4.0], [2.0, 3.0, -1.0, 0.0],
                                 [2.0, 0.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0]])
def test_cumprod_gradient_is_exact_with_zeros(row):
    x = np.array(row)
    ct = np.array([0.3, -1.2, 0.7, 2.0])[:len(row)]
    (g,) = _grad(lambda t: (rg.cumprod(t) * ct).sum(), x)
    n = len(x)   # the definition: sum_{j>=i} ct_j prod_{m<=j, m!=i} x_m
    want = [sum(ct[j] * np.prod([x[m] for m in range(j + 1) if m != i]) for j in range(i, n))
            for i in range(n)]
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, want, rtol=1e-14, atol=1e-15)


@pytest.mark.torch
def test_cumprod_second_derivative_with_zeros_matches_pytorch():
    x = np.array([[1.5, 0.0, -2.0, 0.5, 1.1], [0.0, 1.2, 0.8, -1.1, 0.0], [0.9, 0.0, 0.7, 0.0, 0.0],
                  [0.0, 0.0, 1.3, 0.6, -0.7], [0.0, 0.0, 0.0, 0.0, 0.0]])
    rng = np.random.default_rng(0)
    ct, v = rng.standard_normal(x.shape), rng.standard_normal(x.shape)
    t = rg.tensor(x, requires_grad=True)
    (g,) = rg.autograd_grad((rg.cumprod(t, axis=1) * ct).sum(), [t], create_graph=True)
    (h,) = rg.autograd_grad((g * v).sum(), [t])
    tt = torch.tensor(x, requires_grad=True)
    (tg,) = torch.autograd.grad((torch.cumprod(tt, 1) * torch.tensor(ct)).sum(), tt,
                                create_graph=True)
    (th,) = torch.autograd.grad((tg * torch.tensor(v)).sum(), tt)
    np.testing.assert_allclose(g.numpy(), tg.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(h.numpy(), th.numpy(), rtol=1e-12, atol=1e-14)
    # without create_graph the second zero's term is left out: the same first derivative
    (g1,) = rg.autograd_grad((rg.cumprod(t, axis=1) * ct).sum(), [t])
    np.testing.assert_array_equal(g1.numpy(), g.numpy())


def test_cummax_and_cummin_return_values_and_indices_with_ties_moving_on():
    x = np.array([1.0, 3.0, 3.0, 2.0, 3.0, 0.5])
    v, i = rg.cummax(x, 0)
    np.testing.assert_array_equal(v.numpy(), np.maximum.accumulate(x))
    np.testing.assert_array_equal(i.numpy(), [0, 1, 2, 2, 4, 4])      # as torch.cummax
    r = rg.cummin(x, axis=-1)
    np.testing.assert_array_equal(r.values.numpy(), np.minimum.accumulate(x))
    np.testing.assert_array_equal(r.indices.numpy(), [0, 0, 0, 0, 0, 5])
    # the gradient goes to the entry each value came from (accumulating)
    (g,) = _grad(lambda t: rg.cummax(t, 0).values.sum(), x)
    np.testing.assert_array_equal(g, [1, 1, 2, 0, 2, 0])


def test_logcumsumexp_is_stable_and_its_gradient_finite():
    x = np.array([1000.0, -1000.0, 1001.0, 0.0])
    t = rg.tensor(x, requires_grad=True)
    y = rg.logcumsumexp(t, 0)
    np.testing.assert_allclose(y.numpy(), np.logaddexp.accumulate(x))
    (y * np.array([1.0, -2.0, 0.5, 0.0])).sum().backward()
    assert np.all(np.isfinite(t.grad.numpy()))
    w = np.exp(x[:, None] - y.numpy()[None, :]) * np.tri(4).T          # d y_j / d x_i
    np.testing.assert_allclose(t.grad.numpy(), w @ [1.0, -2.0, 0.5, 0.0], atol=1e-300)


def test_diff_matches_numpy():
    x = np.arange(12.0).reshape(3, 4) ** 2
    for kw in (dict(), dict(n=2), dict(axis=0), dict(n=3, axis=-1), dict(n=0),
               dict(prepend=1.5), dict(append=[[1.0], [2.0], [3.0]]),
               dict(axis=0, prepend=np.ones((2, 4)), append=-1.0), dict(n=5)):
        np.testing.assert_array_equal(rg.diff(x, **kw).numpy(), np.diff(x, **kw), err_msg=str(kw))
    with pytest.raises(rg.ShapeError, match="diff: needs an input of at least one axis"):
        rg.diff(rg.tensor(1.0))
    with pytest.raises(rg.ShapeError, match="diff: n must be a non-negative int"):
        rg.diff(x, n=-1)


# ---------------------------------------------------------------- sorting

def test_sort_is_stable_and_ties_keep_their_own_gradients():
    x = np.array([1.0, 0.0, 1.0, 1.0, -2.0])
    np.testing.assert_array_equal(rg.argsort(x).numpy(), np.argsort(x, kind="stable"))
    np.testing.assert_array_equal(rg.argsort(x, descending=True).numpy(), [0, 2, 3, 1, 4])
    ct = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    (g,) = _grad(lambda t: (rg.sort(t) * ct).sum(), x)
    np.testing.assert_array_equal(g, [30, 20, 40, 50, 10])   # sorted: -2, 0, 1(0), 1(2), 1(3)
    (g,) = _grad(lambda t: (rg.sort(t, descending=True) * ct).sum(), x)
    np.testing.assert_array_equal(g, [10, 40, 20, 30, 50])


@pytest.mark.torch
def test_sort_and_topk_match_pytorch_with_ties_and_nan():
    x = np.array([[3.0, 1.0, np.nan, 1.0, 2.0], [0.5, 0.5, 0.5, -1.0, 4.0]])
    for desc in (False, True):
        ref = torch.sort(torch.tensor(x), dim=1, descending=desc, stable=True)
        np.testing.assert_array_equal(rg.sort(x, axis=1, descending=desc).numpy(),
                                      ref.values.numpy())
        np.testing.assert_array_equal(rg.argsort(x, axis=1, descending=desc).numpy(),
                                      ref.indices.numpy())
    y = np.array([[3.0, 1.0, 0.5, 2.0], [0.25, 4.0, -1.0, 3.5]])   # (PyTorch's tie order is
    for largest in (True, False):
        v, i = rg.topk(y, 2, axis=1, largest=largest)
        rv, ri = torch.topk(torch.tensor(y.copy()), 2, dim=1, largest=largest)
        np.testing.assert_array_equal(v.numpy(), rv.numpy())
        np.testing.assert_array_equal(i.numpy(), ri.numpy())            # unspecified: ours
    np.testing.assert_array_equal(rg.topk(np.array([1.0, 2, 2, 1]), 3).indices.numpy(), [1, 2, 0])


def test_sort_topk_errors_and_edges():
    x = np.random.default_rng(0).standard_normal((3, 4))
    np.testing.assert_array_equal(rg.sort(x, axis=-2).numpy(), np.sort(x, axis=-2))
    np.testing.assert_array_equal(rg.sort(x, axis=None).numpy(), np.sort(x, axis=None))
    assert rg.sort(np.zeros((2, 0))).shape == (2, 0)
    assert rg.topk(x, 0).values.shape == (3, 0)
    with pytest.raises(rg.ShapeError, match=r"topk: k must be an int in \[0, 4\]"):
        rg.topk(x, 5)
    with pytest.raises(rg.AxisError, match="sort: axis 2 is out of range"):
        rg.sort(x, axis=2)
    np.testing.assert_array_equal(rg.argsort(x, 0, "quicksort").numpy(), np.argsort(x, 0, "stable"))
    with pytest.raises(rg.RetrogradError, match="argsort: kind must be one of"):
        rg.argsort(x, -1, "bogo")


# ---------------------------------------------------------------- gather family

X = np.arange(12.0).reshape(3, 4)


def test_take_and_index_select_match_numpy_and_accumulate_repeats():
    idx = np.array([[3, -1], [0, 3]])
    np.testing.assert_array_equal(rg.take(X, idx, axis=1).numpy(), np.take(X, idx, axis=1))
    np.testing.assert_array_equal(rg.take(X, idx).numpy(), np.take(X, idx))
    np.testing.assert_array_equal(rg.take(X, 2, axis=0).numpy(), X[2])
    (g,) = _grad(lambda t: rg.take(t, idx, axis=1).sum(), X)
    np.testing.assert_array_equal(g, np.tile([1, 0, 0, 3], (3, 1)))      # -1 is 3 (NumPy)
    (g,) = _grad(lambda t: rg.index_select(t, 0, [2, 2, 0]).sum(), X)
    np.testing.assert_array_equal(g[:, 0], [1, 0, 2])
    assert rg.take(X, np.array([], dtype=int), axis=0).shape == (0, 4)


def test_gather_take_along_axis_and_repeated_indices():
    idx = np.array([[0, 0, 1], [2, 2, 2]])
    np.testing.assert_array_equal(rg.gather(X, 1, idx).numpy(), np.take_along_axis(X[:2], idx, 1))
    np.testing.assert_array_equal(rg.take_along_axis(X, np.array([[1], [0], [3]]), axis=1).numpy(),
                                  [[1.0], [4.0], [11.0]])
    np.testing.assert_array_equal(rg.take_along_axis(X, np.array([[2, -1, 0, 1]]), axis=0).numpy(),
                                  np.take_along_axis(X, np.array([[2, -1, 0, 1]]), axis=0))
    np.testing.assert_array_equal(rg.take_along_axis(X, np.array([5, 0]), None).numpy(), [5, 0])
    (g,) = _grad(lambda t: rg.gather(t, 1, idx).sum(), X)
    np.testing.assert_array_equal(g, [[2, 1, 0, 0], [0, 0, 3, 0], [0, 0, 0, 0]])


def test_scatter_overwrites_and_routes_gradients():
    idx = np.array([[1, 3], [0, 2]])
    src = np.arange(6.0).reshape(2, 3) + 100          # larger than the index: a corner is used
    out = rg.scatter(X, 1, idx, src).numpy()
    want = X.copy()
    want[0, 1], want[0, 3], want[1, 0], want[1, 2] = 100, 101, 103, 104
    np.testing.assert_array_equal(out, want)
    gx, gs = _grad(lambda x, s: (rg.scatter(x, 1, idx, s) * X).sum(), X, src)
    mask = want != X
    np.testing.assert_array_equal(gx, np.where(mask, 0, X))
    np.testing.assert_array_equal(gs, [[1, 3, 0], [4, 6, 0]])
    np.testing.assert_array_equal(rg.scatter(X, 1, idx, -1.0).numpy(), np.where(mask, -1, X))


@pytest.mark.torch
@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
@pytest.mark.parametrize("include_self", [True, False])
def test_scatter_reduce_with_ties_matches_pytorch(reduce, include_self):
    x = np.array([[1.0, 2.0, 2.0, 0.0], [3.0, -1.0, 3.0, 1.0]])
    src = np.array([[2.0, 2.0, 5.0], [3.0, 0.0, 3.0]])            # ties with x and each other
    idx = np.array([[1, 2, 1], [0, 0, 2]])
    t = rg.tensor(x, requires_grad=True), rg.tensor(src, requires_grad=True)
    xt = x.copy()
    if not include_self:
        # PyTorch's amax/amin rule counts a tie with an x entry that is left out (so src
        # alone at (0, 2), tied with x's 2.0 there, would get half its gradient): ours does
        # not, since the result there does not depend on x. The oracle gets those x entries
        # changed, which changes neither the result nor (rightly) any gradient
        np.put_along_axis(xt, idx, 100.0 if reduce == "amin" else -100.0, axis=1)
    tt = torch.tensor(xt, requires_grad=True), torch.tensor(src, requires_grad=True)
    ct = np.array([[1.0, -2.0, 0.5, 3.0], [2.0, 1.5, -1.0, 0.25]])
    y = rg.scatter_reduce(t[0], 1, idx, t[1], reduce, include_self=include_self)
    ty = torch.scatter_reduce(tt[0], 1, torch.tensor(idx), tt[1], reduce, include_self=include_self)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy())
    (y * ct).sum().backward()
    (ty * torch.tensor(ct)).sum().backward()
    for a, b in zip(t, tt):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-14)


def test_scatter_add_keeps_its_getitem_adjoint_signature():
    g = rg.scatter_add(np.ones((3, 2)), np.array([0, 2, 0]), (3, 2))
    np.testing.assert_array_equal(g.numpy(), [[2, 2], [0, 0], [1, 1]])
    idx = np.array([[0, 0], [2, 2], [0, 0]])
    y = rg.scatter_reduce(np.zeros((3, 2)), 0, idx, np.ones((3, 2)), "sum")
    np.testing.assert_array_equal(y.numpy(), g.numpy())


def test_masked_fill():
    mask = X > 5
    np.testing.assert_array_equal(rg.masked_fill(X, mask, -1.0).numpy(), np.where(mask, -1, X))
    v = rg.tensor(2.0, requires_grad=True)
    t = rg.tensor(X, requires_grad=True)
    rg.masked_fill(t, mask[0], v).sum().backward()          # a broadcast mask
    assert v.grad.numpy() == mask[0].sum() * 3
    np.testing.assert_array_equal(t.grad.numpy(), np.broadcast_to(~mask[0], X.shape))
    with pytest.raises(rg.RetrogradError, match="masked_fill: mask must be boolean, got float64"):
        rg.masked_fill(X, X, 0.0)


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("call, message", [
    (lambda: rg.take(X, [0, 4], axis=1), r"take: index 4 is out of range for axis 1 of size 4"),
    (lambda: rg.take(X, [-5], axis=1), r"take: index -5 is out of range for axis 1 of size 4"),
    (lambda: rg.index_select(X, 0, [-1]),
     r"take: index -1 is out of range for axis 0 of size 3 \(in rg.index_select\)"),
    (lambda: rg.gather(X, 0, np.array([[3]])),
     r"gather: index 3 is out of range for axis 0 of size 3"),
    (lambda: rg.gather(X, 1, np.array([[-1]])), r"gather: index -1 is out of range for axis 1"),
    (lambda: rg.take_along_axis(X, np.array([[9]]), 1),
     r"gather: index 9 is out of range for axis 1"),
    (lambda: rg.scatter(X, 1, np.array([[7]]), 1.0),
     r"scatter: index 7 is out of range for axis 1"),
    (lambda: rg.scatter_reduce(X, 1, np.array([[7]]), np.ones((1, 1)), "sum"),
     r"gather_add: index 7 is out of range for axis 1 of size 4 \(in rg.scatter_reduce\)"),
    (lambda: rg.scatter_reduce(X, 0, np.array([[-1]]), np.ones((1, 1)), "amax"),
     r"scatter_reduce: index -1 is out of range for axis 0 of size 3"),
])
def test_out_of_range_indices_name_the_op_the_axis_and_the_index(call, message):
    with pytest.raises(rg.AxisError, match=message):
        call()


def test_shape_and_type_errors():
    with pytest.raises(rg.RetrogradError, match="gather: indices must be integers, got float64"):
        rg.gather(X, 1, np.array([[0.0]]))
    with pytest.raises(rg.ShapeError, match="gather: index must have as many axes as the input"):
        rg.gather(X, 1, np.array([0]))
    with pytest.raises(rg.ShapeError, match=r"gather: index of shape \(4, 1\) is larger"):
        rg.gather(X, 1, np.zeros((4, 1), int))
    with pytest.raises(rg.ShapeError, match="take_along_axis: indices of shape"):
        rg.take_along_axis(X, np.zeros((2, 1), int), 1)
    with pytest.raises(rg.ShapeError, match="index_select: index must be 1-D"):
        rg.index_select(X, 0, np.zeros((2, 2), int))
    with pytest.raises(rg.ShapeError, match=r"scatter: src of shape \(1, 1\) must"):
        rg.scatter(X, 1, np.zeros((2, 2), int), np.ones((1, 1)))
    with pytest.raises(rg.RetrogradError, match="scatter_reduce: reduce must be"):
        rg.scatter_reduce(X, 1, np.zeros((1, 1), int), np.ones((1, 1)), "max")
    with pytest.raises(rg.AxisError, match="gather: axis 2 is out of range"):
        rg.gather(X, 2, np.zeros((1, 1), int))


# ---------------------------------------------------------------- compiled

def _indexed(x, i, j):
    a = rg.gather(x, 1, i) * rg.take(x, j, axis=0)[:2, :2]
    b = rg.scatter_reduce(x, 1, i, a, "amax") + rg.scatter(x, 1, i, a)
    c = rg.cumprod(rg.sort(x, axis=0), axis=1) + rg.cumsum(x, axis=0) * rg.cummax(x, 1).values
    return (a.sum() + (b * c).sum() + rg.logcumsumexp(x, 1).sum() + rg.diff(x).sum()
            + rg.index_select(x, 1, j).sum() + rg.topk(x, 2).values.sum()
            + rg.take_along_axis(x, j[:, None], 1).sum() + (x % 0.7).sum())


def test_compiled_functions_take_new_index_arrays_on_every_call():
    rng = np.random.default_rng(0)
    f = rg.compile(_indexed)
    df = rg.compile(rg.grad(_indexed, argnums=0))
    for _ in range(3):
        x = rng.standard_normal((3, 4))
        i, j = rng.integers(0, 4, (2, 2)), rng.integers(0, 3, 3)
        np.testing.assert_allclose(f(x, i, j).numpy(), _indexed(rg.tensor(x), i, j).numpy(),
                                   rtol=1e-12)
        np.testing.assert_allclose(df(x, i, j).numpy(),
                                   rg.grad(_indexed, argnums=0)(x, i, j).numpy(), rtol=1e-12)
    assert f.traces == 1
    with pytest.raises(rg.ShapeError, match="gather: index 4 is out of range for axis 1 of size 4"):
        f(x, np.array([[0, 4], [1, 1]]), j)


def test_tensor_methods():
    t = rg.tensor(X)
    assert np.array_equal(t.cumsum(1).numpy(), np.cumsum(X, 1))
    assert np.array_equal(t.diff().numpy(), np.diff(X))
    assert np.array_equal(t.argsort(axis=0).numpy(), np.argsort(X, axis=0))
    assert np.array_equal(t.take([1, 2]).numpy(), [1, 2])
    assert np.array_equal(t.index_select(1, [0]).numpy(), X[:, :1])
    assert np.array_equal(t.fmod(5).numpy(), np.fmod(X, 5))
    assert np.array_equal((7.0 % (t + 1)).numpy(), np.mod(7.0, X + 1))
