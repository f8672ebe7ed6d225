"""The lecture notes' worked examples, reproduced with hand-computed values."""
import numpy as np

import retrograd as rg


def test_seed001_adjoints_of_sin_x1_plus_x1_x2():
    """Seed 001 §4.5: f(x1, x2) = sin(x1) + x1·x2; ∂f/∂x1 = cos(x1) + x2, ∂f/∂x2 = x1.
    x1 feeds two nodes (w4 = sin(w1), w3 = w1·w2), so its adjoint is the sum of two paths."""
    x1 = rg.tensor(2.0, dtype=np.float64, requires_grad=True)
    x2 = rg.tensor(5.0, dtype=np.float64, requires_grad=True)
    f = rg.sin(x1) + x1 * x2
    f.backward()
    assert np.isclose(f.item(), np.sin(2) + 10)
    assert np.isclose(x1.grad.item(), np.cos(2.0) + 5.0)     # = 4.583853163452858
    assert x2.grad.item() == 2.0


def test_seed004_square_as_mul_x_x_gives_2x():
    """Seed 004: x² built as mul(x, x) -- one node fed twice; the grad-table sums both."""
    x = rg.tensor(np.array([-1.5, 0.0, 3.0]), requires_grad=True)
    rg.mul(x, x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [-3.0, 0.0, 6.0])


def test_seed004_chain_z_equals_f_of_f_of_f_of_w():
    """Seed 004: x = f(w), y = f(x), z = f(y); dz/dw = f'(y) f'(x) f'(w)."""
    f, df = rg.tanh, lambda t: 1 - np.tanh(t) ** 2
    w = rg.tensor(0.8, dtype=np.float64, requires_grad=True)
    x = f(w)
    y = f(x)
    z = f(y)
    z.backward()
    wv = 0.8
    xv = np.tanh(wv)
    yv = np.tanh(xv)
    assert np.isclose(w.grad.item(), df(yv) * df(xv) * df(wv), rtol=1e-14)


def test_seed001_bp_equations_for_a_two_layer_tanh_mse_network():
    """Seed 001 §3: BP1 δᴸ = ∇ₐJ ⊙ g′(zᴸ), BP2 δˡ = (Θˡ⁺¹)ᵀδˡ⁺¹ ⊙ g′(zˡ), BP3 ∇β = δ,
    BP4 ∇Θ = δ a^(l-1)ᵀ -- written out by hand and compared with backprop's result
    (retain_grad exposes the deltas δ = ∂J/∂z)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(3), rng.standard_normal(2)
    T1, b1, T2, b2 = (rng.standard_normal(s) for s in [(4, 3), (4,), (2, 4), (2,)])
    P = [rg.tensor(p, requires_grad=True) for p in (T1, b1, T2, b2)]
    z1 = rg.matmul(P[0], x) + P[1]
    a1 = rg.tanh(z1)
    z2 = rg.matmul(P[2], a1) + P[3]
    a2 = rg.tanh(z2)
    J = 0.5 * ((a2 - y) ** 2).sum()
    z1.retain_grad()
    z2.retain_grad()
    J.backward()
    # by hand
    a1v = np.tanh(T1 @ x + b1)
    a2v = np.tanh(T2 @ a1v + b2)
    d2 = (a2v - y) * (1 - a2v ** 2)                      # BP1
    d1 = (T2.T @ d2) * (1 - a1v ** 2)                    # BP2
    np.testing.assert_allclose(z2.grad.numpy(), d2, rtol=1e-12)
    np.testing.assert_allclose(z1.grad.numpy(), d1, rtol=1e-12)
    np.testing.assert_allclose(P[3].grad.numpy(), d2, rtol=1e-12)               # BP3
    np.testing.assert_allclose(P[1].grad.numpy(), d1, rtol=1e-12)
    np.testing.assert_allclose(P[2].grad.numpy(), np.outer(d2, a1v), rtol=1e-12)  # BP4
    np.testing.assert_allclose(P[0].grad.numpy(), np.outer(d1, x), rtol=1e-12)


def test_seed001_marian_softmax_composite_equals_the_stable_op():
    """Seed 001 §4.9 defines softmax as exp(a) / sum(exp(a)); the fused op agrees, in value
    and gradient, and stays finite where the composite overflows."""
    a = np.random.default_rng(3).standard_normal((4, 5))
    comp = lambda t: rg.exp(t) / rg.sum(rg.exp(t), axis=1, keepdims=True)
    fused = lambda t: rg.softmax(t, axis=1)
    np.testing.assert_allclose(comp(rg.tensor(a)).numpy(), fused(rg.tensor(a)).numpy(), rtol=1e-14)
    w = np.random.default_rng(4).standard_normal((4, 5))
    gc = rg.grad(lambda t: (comp(t) * w).sum())(a).numpy()
    gf = rg.grad(lambda t: (fused(t) * w).sum())(a).numpy()
    np.testing.assert_allclose(gc, gf, rtol=1e-12, atol=1e-15)
    big = rg.tensor([[1e4, -1e4, 0.0]])
    assert np.all(np.isfinite(fused(big).numpy()))
    assert np.all(np.isfinite(rg.log_softmax(big, axis=1).numpy()))
    assert np.isfinite(rg.logsumexp(big, axis=1).item())


def test_relu_and_abs_subgradient_at_zero_and_tied_maxima_share():
    x = rg.tensor([0.0, 1.0, -1.0], requires_grad=True)
    (rg.relu(x) + rg.abs(x)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 2.0, -1.0])
    t = rg.tensor([3.0, 1.0, 3.0], requires_grad=True)
    t.max().backward()
    np.testing.assert_array_equal(t.grad.numpy(), [0.5, 0.0, 0.5])
    a = rg.tensor([2.0], requires_grad=True)
    b = rg.tensor([2.0], requires_grad=True)
    rg.maximum(a, b).sum().backward()
    assert a.grad.item() == 0.5 and b.grad.item() == 0.5


def test_prod_gradient_is_exact_with_zeros():
    x = rg.tensor(np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 4.0]]), requires_grad=True)
    x.prod(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0.0, 6.0, 0.0], [0.0, 0.0, 0.0]])
    assert rg.gradgradcheck(lambda t: t.prod(axis=1), np.array([[2.0, 0.0, 3.0], [1.0, 5.0, 4.0]]))
