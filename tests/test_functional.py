"""Function transforms: grad, value_and_grad, vjp, jvp, jacobian, hessian, hvp --
their values, their nesting, and what they accept."""
import numpy as np
import pytest

import retrograd as rg


def f_cubic(a):
    return (a ** 3).sum()


def test_grad_accepts_tensors_arrays_and_floats_and_returns_tensors():
    for x in (rg.tensor([1.0, 2.0]), rg.tensor([1.0, 2.0], requires_grad=True),
              np.array([1.0, 2.0]), [1.0, 2.0]):
        g = rg.grad(f_cubic)(np.asarray(x) if isinstance(x, list) else x)
        assert isinstance(g, rg.Tensor)
        np.testing.assert_allclose(g.numpy(), [3, 12])
    g = rg.grad(lambda a: a * a)(3.0)
    assert isinstance(g, rg.Tensor) and g.item() == 6


def test_grad_does_not_touch_dot_grad_of_its_inputs():
    w = rg.tensor([1.0, 2.0], requires_grad=True)
    rg.grad(f_cubic)(w)
    assert w.grad is None


def test_grad_argnums_and_has_aux():
    f = lambda x, y: (x * y).sum() + (y ** 2).sum()
    x, y = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    gx = rg.grad(f)(x, y)
    gx2, gy = rg.grad(f, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx.numpy(), y)
    np.testing.assert_allclose(gx2.numpy(), y)
    np.testing.assert_allclose(gy.numpy(), x + 2 * y)
    np.testing.assert_allclose(rg.grad(f, argnums=-1)(x, y).numpy(), x + 2 * y)
    g, aux = rg.grad(lambda a: ((a ** 2).sum(), "aux"), has_aux=True)(x)
    assert aux == "aux"
    (v, aux), g2 = rg.value_and_grad(lambda a: ((a ** 2).sum(), 7), has_aux=True)(x)
    assert v.item() == 5 and aux == 7
    np.testing.assert_allclose(g2.numpy(), 2 * x)


def test_value_and_grad():
    v, g = rg.value_and_grad(f_cubic)(np.array([1.0, 2.0]))
    assert v.item() == 9 and not v.requires_grad
    np.testing.assert_allclose(g.numpy(), [3, 12])


def test_grad_of_non_scalar_function_is_a_clear_error():
    with pytest.raises(rg.RetrogradError, match="single number"):
        rg.grad(lambda a: a * 2)(np.ones(3))


def test_grad_of_unused_input_is_zero():
    g = rg.grad(lambda a, b: (a * 2).sum(), argnums=1)(np.ones(2), np.ones(3))
    np.testing.assert_array_equal(g.numpy(), np.zeros(3))


def test_nested_grad_to_third_order():
    f = lambda x: rg.sin(x) * x
    d1, d2, d3 = rg.grad(f), rg.grad(rg.grad(f)), rg.grad(rg.grad(rg.grad(f)))
    x = 0.7
    assert np.isclose(d1(x).item(), np.cos(x) * x + np.sin(x), rtol=1e-6)
    assert np.isclose(d2(x).item(), -np.sin(x) * x + 2 * np.cos(x), rtol=1e-6)
    assert np.isclose(d3(x).item(), -np.cos(x) * x - 3 * np.sin(x), rtol=1e-5)


def test_grad_under_no_grad_still_works():
    with rg.no_grad():
        g = rg.grad(f_cubic)(np.array([2.0]))
    assert g.item() == 12


def test_vjp_and_jvp_agree_with_the_jacobian():
    f = lambda x, y: rg.tanh(x @ y) * x.sum()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    jx, jy = rg.jacobian(f, argnums=(0, 1))(x, y)          # (3, 2, 3, 4), (3, 2, 4, 2)
    assert jx.shape == (3, 2, 3, 4) and jy.shape == (3, 2, 4, 2)
    out, vjp_fn = rg.vjp(f, x, y)
    ct = rng.standard_normal(out.shape)
    vx, vy = vjp_fn(ct)
    np.testing.assert_allclose(vx.numpy(), np.einsum("ij,ijkl->kl", ct, jx.numpy()), rtol=1e-10)
    np.testing.assert_allclose(vy.numpy(), np.einsum("ij,ijkl->kl", ct, jy.numpy()), rtol=1e-10)
    tx, ty = rng.standard_normal(x.shape), rng.standard_normal(y.shape)
    out2, jv = rg.jvp(f, (x, y), (tx, ty))
    np.testing.assert_allclose(out2.numpy(), out.numpy())
    expect = np.einsum("ijkl,kl->ij", jx.numpy(), tx) + np.einsum("ijkl,kl->ij", jy.numpy(), ty)
    np.testing.assert_allclose(jv.numpy(), expect, rtol=1e-10)


def test_jacobian_matches_finite_differences():
    f = lambda x: rg.softmax(x, axis=0) * x
    x = np.array([0.3, -1.2, 2.0])
    J = rg.jacobian(f)(x).numpy()
    eps = 1e-6
    num = np.stack([(f(rg.tensor(x + eps * e)).numpy() - f(rg.tensor(x - eps * e)).numpy()) / (2 * eps)
                    for e in np.eye(3)], axis=1)
    np.testing.assert_allclose(J, num, rtol=1e-6, atol=1e-9)


def _mlp_loss(w1, b1, w2, x, y):
    h = rg.tanh(x @ w1 + b1)
    return -(rg.log_softmax(h @ w2, axis=1)[np.arange(len(y)), y]).mean()


def test_hessian_of_small_mlp_loss_equals_finite_differences_of_its_gradient():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((5, 3)), np.array([0, 1, 1, 0, 1])
    w1, b1, w2 = rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal((4, 2))
    f = lambda w: _mlp_loss(w, b1, w2, x, y)
    H = rg.hessian(f)(w1).numpy()
    assert H.shape == (3, 4, 3, 4)
    g = rg.grad(f)
    eps = 1e-6
    num = np.zeros_like(H)
    for idx in np.ndindex(3, 4):
        d = np.zeros_like(w1)
        d[idx] = eps
        num[(...,) + idx] = (g(w1 + d).numpy() - g(w1 - d).numpy()) / (2 * eps)
    np.testing.assert_allclose(H, num, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(H.reshape(12, 12), H.reshape(12, 12).T, atol=1e-12)   # symmetric


def test_hvp_equals_hessian_times_v_and_keeps_structure():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((5, 3)), np.array([0, 1, 1, 0, 1])
    w1, b1, w2 = rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal((4, 2))
    f = lambda w: _mlp_loss(w, b1, w2, x, y)
    v = rng.standard_normal(w1.shape)
    H = rg.hessian(f)(w1).numpy().reshape(12, 12)
    hv = rg.hvp(f, w1, v)
    assert isinstance(hv, rg.Tensor) and hv.shape == w1.shape
    np.testing.assert_allclose(hv.numpy().ravel(), H @ v.ravel(), rtol=1e-10)
    (hv1,) = rg.hvp(f, (w1,), (v,))
    np.testing.assert_allclose(hv1.numpy(), hv.numpy())
    # several arguments: H is the joint Hessian
    g = lambda a, b: _mlp_loss(a, b, w2, x, y)
    va, vb = rng.standard_normal(w1.shape), rng.standard_normal(b1.shape)
    ha, hb = rg.hvp(g, (w1, b1), (va, vb))
    eps = 1e-6
    ga = lambda s: rg.grad(g, argnums=(0, 1))(w1 + s * va, b1 + s * vb)
    (pa, pb), (ma, mb) = ga(eps), ga(-eps)
    np.testing.assert_allclose(ha.numpy(), (pa.numpy() - ma.numpy()) / (2 * eps), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(hb.numpy(), (pb.numpy() - mb.numpy()) / (2 * eps), rtol=1e-5, atol=1e-8)


def test_hessian_of_quadratic_form_is_exact():
    A = np.array([[2.0, 1.0], [1.0, 3.0]])
    H = rg.hessian(lambda x: x @ (rg.tensor(A) @ x) * 0.5)(np.array([0.3, -0.4]))
    np.testing.assert_allclose(H.numpy(), A)


def test_float32_through_transforms():
    g = rg.grad(f_cubic)(rg.tensor([1.0, 2.0]))
    assert g.dtype == np.float32
    assert rg.hvp(f_cubic, rg.tensor([1.0]), rg.tensor([1.0])).dtype == np.float32


def test_integer_inputs_are_refused():
    with pytest.raises(rg.RetrogradError, match="dtype int64"):
        rg.grad(lambda a: a.sum())(np.array([1, 2]))
