"""In-place operations (+=, -=, *=, /=, t[idx] = v, t.data = ..., optimizer steps) where
PyTorch allows them, and the version counter that refuses a backward through a value
changed after an op saved it."""
import numpy as np
import pytest

import retrograd as rg


def leaf(values, **kw):
    return rg.tensor(np.asarray(values, np.float32), requires_grad=True, **kw)


# ------------------------------------------------------------------ the operators

def test_operators_change_a_plain_tensor_in_place_and_count_versions():
    t = rg.tensor([1.0, 2.0, 4.0])
    alias, arr = t, t.numpy()
    assert t.version == 0
    t += 1
    t -= rg.tensor([1.0, 1.0, 1.0])
    t *= 3
    t /= np.float32(2)
    assert t is alias and t.numpy() is arr               # the same tensor and the same array
    np.testing.assert_allclose(arr, [1.5, 3.0, 6.0])
    assert t.version == 4 and t.dtype == np.float32 and not t.requires_grad
    t += t                                               # itself as the operand
    np.testing.assert_allclose(t.numpy(), [3.0, 6.0, 12.0])


def test_operators_broadcast_into_the_tensor_but_never_change_its_shape_or_kind():
    t = rg.zeros(2, 3)
    t += rg.tensor([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(t.numpy(), [[1, 2, 3], [1, 2, 3]])
    small = rg.zeros(3)
    with pytest.raises(rg.ShapeError, match=r"\+="):
        small += rg.ones(2, 3)
    h = leaf([1.0, 2.0, 3.0]) * 1                        # the recorded path checks it too
    with pytest.raises(rg.ShapeError, match=r"\+="):
        h += rg.ones(2, 3)
    with pytest.raises(rg.RetrogradError, match="/="):
        i = rg.tensor([1, 2])
        i /= 2                                           # int64 cannot hold 0.5
    i = rg.tensor([1, 2])
    i *= 3
    np.testing.assert_array_equal(i.numpy(), [3, 6])


def test_under_no_grad_a_leaf_that_requires_grad_is_updated_in_place_and_stays_a_leaf():
    w = leaf([1.0, 2.0])
    (w * w).sum().backward()
    with rg.no_grad():
        w -= 0.5 * w.grad                                # the manual SGD step
    np.testing.assert_allclose(w.numpy(), [0.0, 0.0])
    assert w.is_leaf and w.requires_grad and w.version == 1


def test_a_leaf_that_requires_grad_is_refused_outside_no_grad():
    w = leaf([1.0, 2.0])
    for op in ("+=", "-=", "*=", "/="):
        with pytest.raises(rg.RetrogradError, match="leaf tensor that requires grad.*in-place"):
            exec(f"w {op} 1.0")
    with pytest.raises(rg.RetrogradError, match="leaf tensor that requires grad.*in-place"):
        w[0] = 5.0
    np.testing.assert_array_equal(w.numpy(), [1.0, 2.0])  # untouched
    assert w.version == 0


def test_a_non_leaf_becomes_the_output_of_the_in_place_op_as_in_pytorch():
    x = leaf([1.0, 2.0, 3.0])
    h = x * 2
    alias = h
    h += x                                               # h = 3x
    h *= x                                               # h = 3x²
    h -= 1
    h /= 3                                               # h = x² - 1/3
    assert h is alias and h.op_name == "div" and not h.is_leaf
    h.sum().backward()
    np.testing.assert_allclose(h.numpy(), x.numpy() ** 2 - 1 / 3, rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy(), rtol=1e-6)


def test_adding_a_value_that_requires_grad_to_a_constant_records_it():
    w = leaf([1.0, 2.0])
    acc = rg.zeros(2)
    acc += w * w
    acc += w
    assert acc.requires_grad and acc.op_name == "add"
    acc.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [3.0, 5.0])


def test_recorded_in_place_ops_have_correct_first_and_second_derivatives():
    def f(a, b):
        h = a * a
        h += b
        h *= rg.tanh(b)
        h[0] = b * 2                                     # a row replaced by something of b
        h /= 1.5
        return (h * h).sum()

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal(4)
    assert rg.gradcheck(f, a, b)
    assert rg.gradgradcheck(f, a, b)


# ------------------------------------------------------------------ setitem

def test_setitem_on_plain_tensors_and_under_no_grad():
    t = rg.zeros(2, 3)
    t[0, 1] = 5.0
    t[:, 2] = rg.tensor([1.0, 2.0])
    t[rg.tensor([1])] = 7.0
    np.testing.assert_array_equal(t.numpy(), [[0, 5, 1], [7, 7, 7]])
    assert t.version == 3
    w = leaf([1.0, 2.0, 3.0])
    with rg.no_grad():
        w[1] = 0.0
    np.testing.assert_array_equal(w.numpy(), [1.0, 0.0, 3.0])
    assert w.is_leaf and w.requires_grad


def test_setitem_on_a_non_leaf_is_recorded():
    x, v = leaf([1.0, 2.0, 3.0]), leaf(5.0)
    h = x * 3
    h[1] = v * v                                         # the gradient of x[1] is cut off
    h[np.array([True, False, False])] = 0.0
    (h * rg.tensor([1.0, 10.0, 100.0])).sum().backward()
    np.testing.assert_array_equal(h.numpy(), [0.0, 25.0, 9.0])
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 0.0, 300.0])
    np.testing.assert_allclose(v.grad.numpy(), 100.0)    # 10 · 2v


def test_setitem_refuses_repeated_indices_when_the_value_needs_a_gradient():
    h = leaf([1.0, 2.0, 3.0]) * 1
    with pytest.raises(rg.RetrogradError, match="repeats an element"):
        h[[0, 0]] = leaf([1.0, 2.0]) * 1
    h[[0, 0]] = 4.0                                      # a constant: NumPy's rule, last wins
    np.testing.assert_array_equal(h.numpy(), [4.0, 2.0, 3.0])


# ------------------------------------------------------------------ the version check

def test_modifying_an_input_after_use_is_caught_at_backward():
    x, w = leaf([1.0, 2.0, 3.0]), leaf([4.0, 5.0, 6.0])
    y = x * w
    with rg.no_grad():
        w += 1
    with pytest.raises(rg.RetrogradError) as e:
        y.sum().backward()
    msg = str(e.value)
    assert "modified by an inplace operation" in msg
    assert "the input 1 of 'mul' (shape (3,), float32) is at version 1; expected version 0" in msg
    assert x.grad is None and w.grad is None             # nothing was accumulated


def _data_isub(w):
    w.data -= 1                  # changes the array, then assigns it back through the setter


def test_each_way_of_changing_a_value_bumps_the_version():
    changes = {
        "operator": lambda w: w.__iadd__(1.0),
        "setitem": lambda w: w.__setitem__(0, 9.0),
        "data setter": lambda w: setattr(w, "data", np.zeros(3, np.float32)),
        "data -=": _data_isub,
        "detached alias": lambda w: w.detach().__imul__(2.0),
    }
    for name, change in changes.items():
        x, w = leaf([1.0, 2.0, 3.0]), leaf([4.0, 5.0, 6.0])
        y = (x * w).sum()
        with rg.no_grad():
            change(w)
        assert w.version == 1, name
        with pytest.raises(rg.RetrogradError, match="inplace operation"):
            y.backward()


def test_a_tensor_and_its_detach_share_the_counter_until_one_gets_a_new_array():
    w = leaf([1.0, 2.0])
    d = w.detach()
    d += 1                                               # the same array: w sees it
    _data_isub(w)                                        # still the same array
    assert w.version == d.version == 2
    w.data = np.zeros(2, np.float32)                     # a new array: d keeps the old one
    assert w.version == 3 and d.version == 2
    np.testing.assert_array_equal(d.numpy(), [1.0, 2.0])


def test_an_optimizer_step_before_backward_is_caught():
    x, w = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    opt = rg.optim.SGD([w], lr=0.1)
    w.grad = rg.ones(2)
    loss = (x * w).sum()
    opt.step()                                           # changes w, which loss's mul saved
    assert w.version == 1
    with pytest.raises(rg.RetrogradError,
                       match="the input 1 of 'mul'.*version 1; expected version 0"):
        loss.backward()


def test_modifying_an_ops_own_output_is_caught():
    x = leaf([0.0, 1.0])
    y = rg.exp(x)                                        # exp's VJP reads its output
    with rg.no_grad():
        y *= 2
    with pytest.raises(rg.RetrogradError, match="the output of 'exp'"):
        y.sum().backward()


def test_a_non_leaf_changed_after_another_op_used_it_is_caught():
    x = leaf([1.0, 2.0])
    h = x * 1
    z = h * h
    h += 1                                               # recorded, but z saw the old h
    with pytest.raises(rg.RetrogradError, match="the input 0 of 'mul'"):
        z.sum().backward()


def test_changes_before_use_and_the_normal_training_loop_never_trip_it():
    x, w = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    with rg.no_grad():
        w += 1                                           # before the op: fine
    (x * w).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 5.0])

    rg.manual_seed(0)
    data, labels = rg.randn(8, 3), np.array([0, 1] * 4)
    for opt_name in ("SGD", "Adam", "Rprop"):
        model = rg.nn.MLP([3, 5, 2], "relu")
        opt = getattr(rg.optim, opt_name)(model.parameters(), lr=0.01)
        for _ in range(4):                               # forward, backward, step, next forward
            loss = rg.nn.functional.cross_entropy(model(data), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert all(p.version == 4 for p in model.parameters())
    w = leaf([3.0, 4.0])
    for _ in range(3):                                   # the manual loop of the notes
        loss = (x * w * w).sum()
        loss.backward()
        with rg.no_grad():
            w -= 0.1 * w.grad
        w.grad = None


def test_an_old_version_beyond_the_remembered_history_is_reported_as_earlier():
    x, w = leaf([1.0]), leaf([2.0])
    y = x * w
    with rg.no_grad():
        for _ in range(20):
            w += 1
    with pytest.raises(rg.RetrogradError, match="is at version 20; expected an earlier version"):
        y.backward()


def test_retain_graph_then_step_then_backward_again_is_caught():
    w = leaf([1.0, 2.0])
    loss = (w * w).sum()
    loss.backward(retain_graph=True)
    rg.optim.SGD([w], lr=0.1).step()
    with pytest.raises(rg.RetrogradError, match="inplace operation"):
        loss.backward()


def test_raw_ndarray_writes_are_not_seen():
    # the documented limit: retrograd cannot see writes straight into the ndarray
    w = leaf([1.0, 2.0])
    w.data[0] = 5.0
    w.numpy()[1] = 6.0
    assert w.version == 0


# ------------------------------------------------------------------ graphs and compile

def test_graph_values_rebind_the_name_and_refuse_setitem():
    from retrograd.graph import Graph
    g = Graph()
    x = g.input("x", shape=(3,))
    v = x
    v += 1.0                                             # a new graph value; x is unchanged
    assert v is not x and v.op_name == "add" and x.op_name is None
    with pytest.raises(rg.RetrogradError, match="graph value"):
        v[0] = 1.0
    np.testing.assert_allclose(g.forward({x: np.zeros(3, np.float32)}, v), [1.0, 1.0, 1.0])


def test_compile_traces_in_place_operators_on_traced_values():
    w = leaf(np.ones((3, 2)))

    def f(x):
        h = x @ w
        h += 1.0
        h *= h
        acc = rg.zeros(2)
        acc += h.sum(axis=0)
        return acc.sum()

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    eager = rg.value_and_grad(f)(x)
    compiled = rg.compile(rg.value_and_grad(f))
    for _ in range(2):
        got = compiled(x)
        np.testing.assert_allclose(got[0].numpy(), eager[0].numpy())
        np.testing.assert_allclose(got[1].numpy(), eager[1].numpy())


def test_compile_refuses_changing_a_captured_parameter():
    w = leaf(np.ones((3, 2)))

    def f(x):
        with rg.no_grad():
            w[0] = 2.0                                   # would happen once, at trace time
        return (x @ w).sum()

    with pytest.raises(rg.RetrogradError, match="rg.compile"):
        rg.compile(f)(np.ones((2, 3), np.float32))


def test_a_change_through_a_view_is_seen_by_a_pending_backward():
    """Views (slices, reshape, transpose) share the version counter of the array they view."""
    x = rg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = rg.tensor([1.0, 1.0, 1.0])
    y = (x * w).sum()                     # mul saved w
    v = w[0:2]
    v += 1.0                              # changes w's memory through the view
    assert w.version == v.version == 1
    with pytest.raises(rg.RetrogradError, match="modified by an inplace operation"):
        y.backward()
    r = w.reshape(3, 1)
    with rg.no_grad():
        r *= 2.0
    assert w.version == 2 and w.numpy().tolist() == [4.0, 4.0, 2.0]
    copy = w[[0, 1]]                      # advanced indexing copies: its own counter
    copy += 1.0
    assert w.version == 2


def test_a_recorded_matmul_rule_sees_its_weight_changed():
    # the matmul rules' w.T (shape.rule_t) shares w's counter when create_graph records it
    x = rg.tensor(np.ones((3, 4), np.float32), requires_grad=True)
    w = rg.tensor(np.ones((4, 2), np.float32), requires_grad=True)
    gx, = rg.autograd_grad(((x @ w) ** 2).sum(), [x], create_graph=True)
    with rg.no_grad():
        w += 1
    with pytest.raises(rg.RetrogradError, match="input 1 of 'matmul'"):
        gx.sum().backward()
