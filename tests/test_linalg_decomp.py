"""rg.linalg.inv, solve, det and slogdet: values against NumPy (batched, float32 and
float64), gradients against PyTorch, first and second order by gradcheck, inside
rg.compile, and the errors a user can cause."""
import numpy as np
import pytest

import retrograd as rg
from retrograd.errors import RetrogradError, ShapeError

from torch_oracle import torch

LA = rg.linalg


def well_conditioned(shape, seed=0, dtype=np.float64):
    """A random matrix (or stack) plus n·I: far from singular."""
    rng = np.random.default_rng(seed)
    n = shape[-1]
    return (rng.standard_normal(shape) + n * np.eye(n)).astype(dtype)


def rand(shape, seed=1, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


SHAPES = [(3, 3), (2, 4, 4), (2, 3, 2, 2), (1, 1)]


# ---------------------------------------------------------------- values against NumPy

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_values_match_numpy(shape, dtype):
    a = well_conditioned(shape, dtype=dtype)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for ours, ref in [(LA.inv(a), np.linalg.inv(a)), (LA.det(a), np.linalg.det(a))]:
        assert ours.dtype == ref.dtype and ours.shape == np.shape(ref)
        np.testing.assert_allclose(ours.numpy(), ref, **tol)
    sign, logabs = LA.slogdet(a)
    ref_sign, ref_logabs = np.linalg.slogdet(a)
    assert sign.dtype == logabs.dtype == np.dtype(dtype) and logabs.shape == np.shape(ref_logabs)
    np.testing.assert_array_equal(sign.numpy(), ref_sign)
    np.testing.assert_allclose(logabs.numpy(), ref_logabs, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("a_shape,b_shape", [
    ((3, 3), (3,)), ((3, 3), (3, 2)), ((2, 3, 3), (3,)), ((2, 3, 3), (2, 3, 4)),
    ((3, 3), (2, 3, 1)), ((2, 1, 3, 3), (4, 3, 2)), ((2, 3, 3), (3, 3))])
def test_solve_matches_numpy_including_its_rules_for_b(a_shape, b_shape, dtype):
    a, b = well_conditioned(a_shape, dtype=dtype), rand(b_shape, dtype=dtype)
    ours, ref = LA.solve(a, b), np.linalg.solve(a, b)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ours.numpy(), ref, rtol=tol, atol=tol)


def test_singular_det_and_slogdet_are_zero_and_minus_inf_as_numpy():
    s = np.array([[1.0, 2.0], [2.0, 4.0]])
    assert LA.det(np.zeros((3, 3))).item() == 0.0
    np.testing.assert_allclose(LA.det(s).numpy(), np.linalg.det(s), atol=1e-15)
    sign, logabs = LA.slogdet(np.stack([np.zeros((2, 2)), np.eye(2)]))
    np.testing.assert_array_equal(sign.numpy(), [0.0, 1.0])
    np.testing.assert_array_equal(logabs.numpy(), [-np.inf, 0.0])


def test_negative_determinant_sign_and_integers_as_float64():
    a = np.array([[0, 1], [1, 0]])                     # a permutation: det -1
    sign, logabs = LA.slogdet(a)
    assert sign.item() == -1.0 and logabs.item() == 0.0 and sign.dtype == np.float64
    assert LA.det(a).item() == pytest.approx(-1.0) and LA.det(a).dtype == np.float64
    np.testing.assert_allclose(LA.inv(a).numpy(), np.linalg.inv(a))
    assert LA.inv(a).dtype == np.float64
    np.testing.assert_allclose(LA.solve(a, np.array([1, 2])).numpy(), [2.0, 1.0])


def test_exported_from_rg_linalg_only():
    for name in ("inv", "solve", "det", "slogdet"):
        assert name in LA.__all__ and callable(getattr(LA, name))
        assert not hasattr(rg, name), name             # as NumPy: np.linalg.inv, no np.inv


# ---------------------------------------------------------------- gradients

FUNCS = {
    "inv": (lambda a, c: (LA.inv(a) * c).sum(), lambda a, c: (torch.linalg.inv(a) * c).sum()),
    "det": (lambda a, c: (LA.det(a) * c[..., 0, 0]).sum(),
            lambda a, c: (torch.linalg.det(a) * c[..., 0, 0]).sum()),
    "logabsdet": (lambda a, c: (LA.slogdet(a)[1] * c[..., 0, 0]).sum(),
                  lambda a, c: (torch.linalg.slogdet(a)[1] * c[..., 0, 0]).sum()),
    "solve_matrix": (lambda a, c: (LA.solve(a, c) * c).sum(),
                     lambda a, c: (torch.linalg.solve(a, c) * c).sum()),
    # b a vector (n,): NumPy 2's rule (a (…, n) b is a stack of matrices), over a's batch
    "solve_vector": (lambda a, c: (LA.solve(a, c[(0,) * (c.ndim - 1)]) ** 2).sum(),
                     lambda a, c: (torch.linalg.solve(a, c[(0,) * (c.ndim - 1)]) ** 2).sum()),
}


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 3), (2, 4, 4)])
@pytest.mark.parametrize("name", sorted(FUNCS))
def test_gradients_match_pytorch(name, shape, dtype):
    ours_f, torch_f = FUNCS[name]
    a, c = well_conditioned(shape, dtype=dtype), rand(shape, dtype=dtype)
    if name == "det":
        a = -a                     # a negative determinant too (for an odd n)
    ra, rc = rg.tensor(a, requires_grad=True), rg.tensor(c, requires_grad=True)
    ours_f(ra, rc).backward()
    ta, tc = (torch.tensor(x, requires_grad=True) for x in (a, c))
    torch_f(ta, tc).backward()
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for r, t in ((ra, ta), (rc, tc)):
        assert r.grad.dtype == np.dtype(dtype)
        np.testing.assert_allclose(r.grad.numpy(), t.grad.numpy(), **tol)


@pytest.mark.torch
def test_solve_gradient_with_broadcast_batches_matches_pytorch():
    """a shared by a stack of b's (and b's batch broadcast against a's): the cotangents are
    summed back to each input's shape."""
    a, b = well_conditioned((2, 1, 3, 3)), rand((4, 3, 2))
    ra, rb = rg.tensor(a, requires_grad=True), rg.tensor(b, requires_grad=True)
    (LA.solve(ra, rb) ** 3).sum().backward()
    ta, tb = (torch.tensor(x, requires_grad=True) for x in (a, b))
    (torch.linalg.solve(ta, tb) ** 3).sum().backward()
    np.testing.assert_allclose(ra.grad.numpy(), ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rb.grad.numpy(), tb.grad.numpy(), rtol=1e-10, atol=1e-12)
    # a vector b with a batched a: b's cotangent summed over a's batch
    v = rand((3,))
    rv = rg.tensor(v, requires_grad=True)
    (LA.solve(ra, rv) ** 2).sum().backward()
    tv = torch.tensor(v, requires_grad=True)
    # (torch treats a (3,) b as a vector too, broadcast over a's batch)
    (torch.linalg.solve(ta.detach(), tv) ** 2).sum().backward()
    np.testing.assert_allclose(rv.grad.numpy(), tv.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(FUNCS))
def test_second_derivatives_match_pytorch(name):
    ours_f, torch_f = FUNCS[name]
    a, c = well_conditioned((2, 3, 3)), rand((2, 3, 3))
    v = rand((2, 3, 3), seed=5)
    ra = rg.tensor(a, requires_grad=True)
    (g,) = rg.autograd_grad(ours_f(ra, rg.tensor(c)), [ra], create_graph=True)
    (h,) = rg.autograd_grad((g * v).sum(), [ra])
    ta = torch.tensor(a, requires_grad=True)
    (tg,) = torch.autograd.grad(torch_f(ta, torch.tensor(c)), ta, create_graph=True)
    (th,) = torch.autograd.grad((tg * torch.tensor(v)).sum(), ta)
    np.testing.assert_allclose(g.numpy(), tg.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h.numpy(), th.numpy(), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_gradcheck_and_gradgradcheck(name):
    f = FUNCS[name][0]
    a, c = well_conditioned((2, 3, 3)), rand((2, 3, 3))
    assert rg.gradcheck(f, a, c)
    assert rg.gradgradcheck(f, a, c)


def test_sign_has_no_gradient():
    a = rg.tensor(well_conditioned((3, 3)), requires_grad=True)
    sign, logabs = LA.slogdet(a)
    assert not sign.requires_grad and logabs.requires_grad


# ---------------------------------------------------------------- rg.compile

def test_compiled_equals_eager_values_and_gradients():
    def f(a, b):
        sign, logabs = LA.slogdet(a)
        x = LA.solve(a, b)
        return (LA.inv(a) * 0.5).sum() + (x * x).sum() + LA.det(a).sum() + (sign * logabs).sum()

    a, b = well_conditioned((2, 3, 3)), rand((2, 3, 2))
    np.testing.assert_allclose(rg.compile(f)(a, b).numpy(), f(rg.tensor(a), rg.tensor(b)).numpy(),
                               rtol=1e-12)
    grad_f = rg.grad(f, argnums=(0, 1))
    eager = grad_f(a, b)
    compiled = rg.compile(grad_f)(a, b)
    for e, c in zip(eager, compiled):
        np.testing.assert_allclose(c.numpy(), e.numpy(), rtol=1e-12, atol=1e-12)


def test_compiled_float32_vector_solve():
    f = lambda a, b: LA.solve(a, b) * 2.0
    a, b = well_conditioned((4, 4), dtype=np.float32), rand((4,), dtype=np.float32)
    out = rg.compile(f)(a, b)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), np.linalg.solve(a, b) * 2, rtol=1e-5)


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("name", ["inv", "det", "slogdet"])
@pytest.mark.parametrize("shape", [(3,), (2, 3), (4, 2, 3), ()])
def test_non_square_is_a_shape_error_naming_op_and_shape(name, shape):
    with pytest.raises(ShapeError, match=rf"{name}: needs square matrices.*got shape {re_shape(shape)}"):
        getattr(LA, name)(np.ones(shape))


def re_shape(shape):
    return str(shape).replace("(", r"\(").replace(")", r"\)")


def test_solve_shape_errors_name_the_shapes():
    with pytest.raises(ShapeError, match=r"solve: needs square.*\(2, 3\)"):
        LA.solve(np.ones((2, 3)), np.ones(2))
    with pytest.raises(ShapeError, match=r"solve: a of shape \(3, 3\) needs b of shape \(3,\) "
                                         r"or \(\.\.\., 3, k\), got \(2,\)"):
        LA.solve(np.eye(3), np.ones(2))
    with pytest.raises(ShapeError, match=r"got \(2, 3\)"):     # (…, n) is a matrix for NumPy 2
        LA.solve(np.stack([np.eye(3)] * 2), np.ones((2, 3)))
    with pytest.raises(ShapeError, match=r"batch axes of shapes \(2, 3, 3\) and \(4, 3, 1\)"):
        LA.solve(np.stack([np.eye(3)] * 2), np.ones((4, 3, 1)))


def test_singular_inv_and_solve_raise_retrograd_errors():
    s = np.array([[1.0, 2.0], [2.0, 4.0]])
    with pytest.raises(RetrogradError, match=r"inv: the matrix is singular .*\(2, 2\)") as e:
        LA.inv(s)
    assert not isinstance(e.value, np.linalg.LinAlgError)
    with pytest.raises(RetrogradError, match=r"inv: a matrix of the stack is singular .*\(2, 2, 2\)"):
        LA.inv(np.stack([np.eye(2), s]))
    with pytest.raises(RetrogradError, match=r"solve: the matrix is singular .*\(2, 2\), \(2,\)"):
        LA.solve(s, np.ones(2))
    with pytest.raises(RetrogradError, match="inv: the matrix is singular"):
        rg.compile(lambda a: LA.inv(a) * 2)(s)


def test_det_gradient_at_a_singular_matrix_is_refused_not_nan():
    a = rg.tensor(np.array([[1.0, 2.0], [2.0, 4.0]]), requires_grad=True)
    d = LA.det(a)
    assert d.item() == 0.0
    with pytest.raises(RetrogradError, match="inv: the matrix is singular"):
        d.backward()


def test_a_namespace_without_linalg_is_refused_by_name():
    xp = pytest.importorskip("array_api_strict")
    with xp.ArrayAPIStrictFlags(enabled_extensions=()):
        a = rg.tensor(xp.asarray(np.eye(2) * 2.0))
        with pytest.raises(RetrogradError, match=r"inv: namespace array_api_strict has no linalg\.inv"):
            LA.inv(a)
        with pytest.raises(RetrogradError, match=r"det_sign: .* has no linalg\.slogdet"):
            LA.slogdet(a)
    np.testing.assert_allclose(np.asarray(LA.det(rg.tensor(xp.asarray(np.eye(2) * 2.0)))._data), 4.0)
