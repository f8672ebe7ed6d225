"""The Tensor contract: creation and dtypes, operators, grad accumulation, hooks,
retain_grad, no_grad, freeing the graph, deep chains."""
import gc
import weakref

import numpy as np
import pytest

import retrograd as rg


# ---------------------------------------------------------------- creation and dtypes

def test_python_data_becomes_float32_or_int64_and_arrays_keep_dtype():
    assert rg.tensor([[1.0, 2.0]]).dtype == np.float32
    assert rg.tensor([1, 2]).dtype == np.int64
    assert rg.tensor([1, 2.5]).dtype == np.float32
    assert rg.tensor([True]).dtype == np.bool_
    assert rg.tensor(np.zeros(3)).dtype == np.float64
    assert rg.tensor(np.zeros(3, np.float16)).dtype == np.float16
    assert rg.tensor(3.0).shape == ()


def test_tensor_copies_its_data_and_as_tensor_does_not():
    a = np.zeros(3)
    t = rg.tensor(a)
    a[0] = 1
    assert t.numpy()[0] == 0
    assert rg.as_tensor(a).numpy()[0] == 1


def test_python_scalars_never_promote_float32():
    x = rg.tensor([1.0, 2.0])
    for y in (x * 0.1, 0.1 * x, x + 1, x / 3, 2.0 ** x, x ** 2.5, x - 1e-40, rg.maximum(x, 0.5)):
        assert y.dtype == np.float32


def test_numpy2_promotion_between_tensors():
    a = rg.tensor(np.ones(2, np.float32))
    b = rg.tensor(np.ones(2, np.float64))
    assert (a + b).dtype == np.float64
    assert (rg.tensor([1, 2]) * 0.5).dtype == np.float64     # int tensor * float scalar, as NumPy


def test_only_floating_tensors_can_require_grad():
    with pytest.raises(rg.RetrogradError, match="floating-point"):
        rg.tensor([1, 2], requires_grad=True)


def test_creation_helpers():
    assert rg.zeros(2, 3).shape == (2, 3) and rg.zeros((2, 3)).dtype == np.float32
    assert rg.ones(4).numpy().sum() == 4
    assert rg.full((2, 2), 7.0).numpy().tolist() == [[7, 7], [7, 7]]
    assert rg.arange(5).dtype == np.int64 and rg.arange(0.0, 1.0, 0.25).shape == (4,)
    np.testing.assert_array_equal(rg.eye(3).numpy(), np.eye(3))
    x = rg.tensor(np.ones((2, 5)))
    assert rg.zeros_like(x).dtype == np.float64 and rg.ones_like(x).shape == (2, 5)
    assert rg.full_like(x, 3).numpy().max() == 3
    assert rg.rand_like(x).shape == (2, 5) and rg.randn_like(x).dtype == np.float64
    assert rg.randn(3, requires_grad=True).requires_grad


def test_random_is_seedable():
    rg.manual_seed(123)
    a = rg.randn(4, 4).numpy()
    b = rg.rand(3).numpy()
    rg.manual_seed(123)
    np.testing.assert_array_equal(a, rg.randn(4, 4).numpy())
    np.testing.assert_array_equal(b, rg.rand(3).numpy())
    assert 0 <= b.min() and b.max() < 1


def test_metadata_and_conversions():
    t = rg.tensor(np.arange(6.0).reshape(2, 3))
    assert (t.shape, t.ndim, t.size, t.dtype) == ((2, 3), 2, 6, np.float64)
    assert t.T.shape == (3, 2)
    assert np.asarray(t) is t.numpy()
    assert rg.tensor(2.5).item() == 2.5 and float(rg.tensor([3.0])) == 3.0
    assert len(t) == 2 and [r.shape for r in t] == [(3,), (3,)]
    with pytest.raises(ValueError, match="one element"):
        t.item()


def test_repr_names_the_op():
    x = rg.tensor([1.0, 2.0], requires_grad=True)
    assert "requires_grad=True" in repr(x)
    assert "op=tanh" in repr(rg.tanh(x))
    assert "op=" not in repr(rg.tensor([1.0]))


def test_data_can_be_assigned_and_written_in_place():
    x = rg.tensor([1.0, 2.0], requires_grad=True)
    x.data = np.array([5.0, 6.0], np.float32)
    x.data[0] = 7
    np.testing.assert_array_equal(x.numpy(), [7, 6])
    y = (x * x).sum()
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [14, 12])


# ---------------------------------------------------------------- operators

def test_all_python_operators_and_reflected_ones():
    a = np.array([[1.0, -2.0], [3.0, 4.0]])
    b = np.array([[0.5, 2.0], [-1.0, 3.0]])
    ta, tb = rg.tensor(a), rg.tensor(b)
    pairs = [(ta + tb, a + b), (ta - tb, a - b), (ta * tb, a * b), (ta / tb, a / b),
             (ta @ tb, a @ b), (-ta, -a), (abs(ta), abs(a)), (+ta, a), (ta ** 2, a ** 2),
             (2 + ta, 2 + a), (2 - ta, 2 - a), (2 * ta, 2 * a), (2 / ta, 2 / a), (2 ** ta, 2 ** a),
             (a @ tb, a @ b), (b + ta, b + a), (a - tb, a - b)]
    for got, want in pairs:
        assert isinstance(got, rg.Tensor)
        np.testing.assert_allclose(got.numpy(), want)


def test_comparisons_give_boolean_tensors_without_gradient():
    x = rg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for m in (x > 2, x >= 2, x < 2, x <= 2, x == 2, x != 2):
        assert m.dtype == np.bool_ and not m.requires_grad
    np.testing.assert_array_equal((x > 1.5).numpy(), [False, True, True])
    assert {x: 1}[x] == 1        # still hashable (by identity)


def test_indexing_reads_and_differentiates():
    x = rg.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    y = x[0, 1] + x[:, 2].sum() + x[x.data > 9].sum() + x[[0, 0]].sum()
    y.backward()
    expect = np.zeros((3, 4))
    expect[0, 1] += 1
    expect[:, 2] += 1
    expect[np.arange(12).reshape(3, 4) > 9] += 1
    expect[0] += 2                           # row 0 picked twice: accumulated
    np.testing.assert_array_equal(x.grad.numpy(), expect)


def test_setitem_is_refused_on_a_tensor_that_requires_grad_but_allowed_under_no_grad():
    x = rg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(rg.RetrogradError, match="in-place"):
        x[0] = 5.0
    with rg.no_grad():
        x[0] = 5.0
    assert x.numpy()[0] == 5


# ---------------------------------------------------------------- backward

def test_grad_accumulates_until_zeroed():
    x = rg.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6, 6])
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3, 3])
    x.zero_grad()
    assert x.grad is None


def test_multiple_paths_are_summed():
    x = rg.tensor(2.0, requires_grad=True)
    a = x * 3
    y = a * a + a + x       # dy/dx = 2·a·3 + 3 + 1 = 40
    y.backward()
    assert x.grad.item() == 40


def test_backward_needs_grad_for_non_scalar_outputs():
    x = rg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(rg.RetrogradError, match="shape"):
        y.backward()
    y.backward(np.array([1.0, 10.0]))
    np.testing.assert_array_equal(x.grad.numpy(), [2, 20])


def test_backward_on_tensor_without_grad_is_a_clear_error():
    with pytest.raises(rg.RetrogradError, match="does not require grad"):
        (rg.tensor([1.0]) * 2).sum().backward()


def test_second_backward_through_freed_graph_raises_unless_retained():
    x = rg.tensor([1.0, 2.0], requires_grad=True)
    y = (rg.exp(x) * 2).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * np.exp([1.0, 2.0]), rtol=1e-6)
    with pytest.raises(rg.RetrogradError, match="second time.*retain_graph"):
        y.backward()


def test_graph_is_freed_after_backward():
    x = rg.tensor(np.ones(1000), requires_grad=True)
    h = rg.tanh(x * 2)
    ref = weakref.ref(h)
    y = (h * 3).sum()
    del h
    gc.collect()
    assert ref() is not None          # held by the graph until backward
    y.backward()
    gc.collect()
    assert ref() is None              # backward released it


def test_no_grad_records_nothing_and_works_as_decorator():
    x = rg.tensor([1.0], requires_grad=True)
    with rg.no_grad():
        y = x * 2
        assert not rg.is_grad_enabled()
    assert rg.is_grad_enabled() and not y.requires_grad and y.is_leaf

    @rg.no_grad()
    def f(t):
        return t * 2
    assert not f(x).requires_grad
    with rg.set_grad_enabled(False):
        with rg.enable_grad():
            assert (x * 2).requires_grad


def test_detach_shares_data_and_cuts_the_graph():
    x = rg.tensor([1.0, 2.0], requires_grad=True)
    d = (x * 2).detach()
    assert not d.requires_grad and d.is_leaf
    y = (x * d).sum()
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2, 4])


def test_retain_grad_and_hooks_expose_and_change_intermediate_deltas():
    x = rg.tensor([1.0, -1.0], requires_grad=True)
    z = x * 3
    z.retain_grad()
    seen = []
    z.register_hook(lambda g: seen.append(g.numpy().copy()))
    y = (rg.tanh(z) * 2).sum()
    y.backward()
    delta = 2 * (1 - np.tanh(np.array([3.0, -3.0])) ** 2)
    np.testing.assert_allclose(z.grad.numpy(), delta, rtol=1e-4)    # float32: 1 - tanh² cancels
    np.testing.assert_allclose(seen[0], delta, rtol=1e-4)

    x.grad = None
    z = x * 3
    handle = z.register_hook(lambda g: g * 0)        # a hook may replace the gradient
    (z * z).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0])
    handle.remove()
    x.grad = None
    z2 = x * 3
    (z2 * 1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3, 3])


def test_leaf_hooks_run_before_accumulation():
    x = rg.tensor([1.0, 2.0], requires_grad=True)
    x.register_hook(lambda g: g * 10)
    (x * 1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [10, 10])


def test_backward_through_100000_op_chain_without_recursion_error():
    x = rg.tensor([0.5], requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0 + 0.0
    y.sum().backward()
    assert x.grad.numpy()[0] == 1.0


def test_create_graph_makes_grad_differentiable():
    x = rg.tensor([1.0, 2.0], requires_grad=True)
    y = (x ** 3).sum()
    y.backward(create_graph=True)
    g = x.grad                                  # 3x², with a graph
    assert g.requires_grad
    x.grad = None
    g.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [6, 12])     # d/dx Σ 3x² = 6x


def test_gradient_is_pruned_to_requested_inputs():
    a = rg.tensor([1.0], requires_grad=True)
    b = rg.tensor([2.0], requires_grad=True)
    called = []
    c = b * 5
    c.register_hook(lambda g: called.append(1))
    y = (a * 2 + c).sum()
    (ga,) = rg.autograd_grad(y, [a])
    assert ga.numpy()[0] == 2 and not called   # b's branch is not visited
    assert a.grad is None                       # grad() returns, it does not accumulate
