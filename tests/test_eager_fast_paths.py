"""The eager engine's fast paths give what the general paths give: bias gradients as one
BLAS call, reductions straight through the ufuncs, the VJP helper's unrecorded transpose,
float16 detection without str(dtype), and adjoints built in place by an op's accumulate=
(getitem's). Results compared with NumPy, the rules' own path and PyTorch."""
import numpy as np
import pytest

import retrograd as rg
from retrograd import nn
from retrograd.ops import kernels
from retrograd.ops.reduce import _half
from retrograd.ops.shape import rule_t

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("layout", ["c", "transposed", "int", "empty", "float64"])
def test_column_sums_are_numpys_sums_over_axis_0(layout):
    rng = np.random.default_rng(0)
    x = {"c": rng.standard_normal((7, 5)).astype(np.float32),
         "transposed": rng.standard_normal((5, 7)).astype(np.float32).T,
         "int": rng.integers(-9, 9, (7, 5)),
         "empty": np.zeros((0, 5), np.float32),
         "float64": rng.standard_normal((7, 5))}[layout]
    out = kernels.column_sums(x)
    assert out.shape == (5,) and out.dtype == x.dtype
    np.testing.assert_allclose(out, x.sum(axis=0), rtol=1e-6)
    if x.dtype.kind == "f":                       # one BLAS call, as the compiled kernel
        np.testing.assert_array_equal(out, np.ones(len(x), x.dtype) @ x)


@pytest.mark.parametrize("shape", [(6,), (4, 3), (2, 3, 4), (200, 10)])
def test_fsum_and_fmax_equal_numpy_for_every_axis(shape):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    for axis in [None, *((a,) for a in range(len(shape))), tuple(range(len(shape)))]:
        for keepdims in (False, True):
            want_sum = x.sum(axis=axis, keepdims=keepdims)
            got_sum = kernels.fsum(x, axis, keepdims)
            assert got_sum.shape == want_sum.shape
            np.testing.assert_allclose(got_sum, want_sum, rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(kernels.fmax(x, axis, keepdims),
                                          x.max(axis=axis, keepdims=keepdims))


def test_fsum_of_bools_and_ints_counts_as_numpy():
    b = np.array([[True, False, True], [True, True, False]])
    assert kernels.fsum(b) == 4 and kernels.fsum(b).dtype == b.sum().dtype
    np.testing.assert_array_equal(kernels.fsum(b, (1,)), b.sum(axis=1))


@pytest.mark.parametrize("cls", [rg.Tensor, nn.Parameter])
def test_rule_t_unrecorded_is_the_transposed_view(cls):
    x = cls(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    with rg.no_grad():
        t = rule_t(x)
    assert type(t) is rg.Tensor and t._op is None and not t.requires_grad
    assert np.shares_memory(t.data, x.data)
    np.testing.assert_array_equal(t.data, x.data.T)
    t = rule_t(x)                                 # grad mode on: a recorded transpose node
    assert t.op_name == "transpose" and t._inputs[0] is x and t.version == x.version


def test_matmul_gradients_match_torch_for_tensors_and_parameters():
    rng = np.random.default_rng(2)
    a, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((4, 3), (3, 5), (5,)))
    for make in (lambda v: rg.tensor(v, requires_grad=True), nn.Parameter):
        ra, rw, rb = make(a), make(w), make(b)
        rg.relu(ra @ rw + rb).sum().backward()
        ta, tw, tb = (torch.tensor(v, requires_grad=True) for v in (a, w, b))
        torch.relu(ta @ tw + tb).sum().backward()
        for r, t in ((ra, ta), (rw, tw), (rb, tb)):
            np.testing.assert_allclose(r.grad.data, t.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_second_derivative_through_matmul_and_a_full_sum_matches_torch():
    rng = np.random.default_rng(3)
    a, w = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    ra, rw = rg.tensor(a, requires_grad=True), rg.tensor(w, requires_grad=True)
    (gw,) = rg.autograd_grad(rg.tanh(ra @ rw).mean(), [rw], create_graph=True)
    (gw * gw).sum().backward()
    ta, tw = torch.tensor(a, requires_grad=True), torch.tensor(w, requires_grad=True)
    (tgw,) = torch.autograd.grad(torch.tanh(ta @ tw).mean(), [tw], create_graph=True)
    (tgw * tgw).sum().backward()
    np.testing.assert_allclose(gw.data, tgw.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(ra.grad.data, ta.grad.numpy(), rtol=1e-9)
    np.testing.assert_allclose(rw.grad.data, tw.grad.numpy(), rtol=1e-9)


def test_a_traced_backward_reads_a_buffer_in_a_product_at_every_call():
    buf = nn.Buffer(np.eye(3, dtype=np.float32))

    def grad_of_w(w):
        return rg.autograd_grad((w @ buf).sum(), w)     # w's VJP multiplies by buf.T

    f = rg.compile(grad_of_w)
    w = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(f(w).numpy(), np.ones((2, 3)))
    buf.assign(np.diag([1.0, 2.0, 3.0]).astype(np.float32))   # after the trace
    np.testing.assert_array_equal(f(w).numpy(), np.tile([1.0, 2.0, 3.0], (2, 1)))
    assert f.traces == 1


def test_half_tells_float16_from_other_dtypes():
    assert _half(np.zeros(2, np.float16)) and _half(rg.tensor(np.zeros(2, np.float16)))
    for dt in (np.float32, np.float64, np.int16, np.bool_):
        assert not _half(np.zeros(2, dt))
    assert not _half(3.0) and not _half([1, 2])
    x = np.random.default_rng(4).uniform(0, 4, 5000).astype(np.float16)
    s, m = rg.sum(rg.tensor(x)), rg.mean(rg.tensor(x))   # accumulated in float32, rounded once
    assert s.dtype == m.dtype == np.float16
    assert s.data == x.astype(np.float32).sum().astype(np.float16)
    np.testing.assert_allclose(float(m.data), x.astype(np.float64).mean(), rtol=1e-3)


# ---------------------------------------------------------------- in-place adjoints (op.accumulate)

def _stepped_loss(x, w, index=lambda x, t: x[t]):
    h = rg.zeros((3, 4))
    for t in range(x.shape[0]):
        h = rg.tanh(index(x, t) @ w + h)
    return (h * h).sum()


def test_a_loop_over_x_t_adds_each_steps_slice_into_one_adjoint(monkeypatch):
    """getitem's accumulate= runs instead of its rule in a first-order backward, with the
    rule's numbers (its create_graph gradient, and PyTorch's)."""
    rng = np.random.default_rng(0)
    xs, ws = rng.standard_normal((6, 3, 4)), rng.standard_normal((4, 4)) * 0.5
    x, w = rg.tensor(xs, requires_grad=True), rg.tensor(ws, requires_grad=True)
    with rg.enable_grad():                                 # create_graph: the rule's path
        gx_rule, gw_rule = [g.numpy() for g in rg.autodiff.grad(
            _stepped_loss(x, w), [x, w], create_graph=True)]
    getitem = rg.ops.shape._getitem
    rule = getitem.vjp
    monkeypatch.setattr(getitem, "vjp", (lambda *a, **k: pytest.fail("the rule ran"),))
    _stepped_loss(x, w).backward()
    monkeypatch.setattr(getitem, "vjp", rule)
    np.testing.assert_allclose(x.grad.numpy(), gx_rule, rtol=1e-12)
    np.testing.assert_allclose(w.grad.numpy(), gw_rule, rtol=1e-12)
    tx, tw = torch.tensor(xs, requires_grad=True), torch.tensor(ws, requires_grad=True)
    h = torch.zeros(3, 4, dtype=torch.float64)
    for t in range(6):
        h = torch.tanh(tx[t] @ tw + h)
    (h * h).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-10)


def test_in_place_adjoints_never_write_into_a_gradient_handed_out():
    """z's adjoint is built in place from z[0] and z[1]; add hands that same array on to
    w as its cotangent, and w[0] then adds more: z.grad must stay z's."""
    rng = np.random.default_rng(1)
    w = rg.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    c = rg.tensor(rng.standard_normal((2, 3)))
    z = w + c
    z.retain_grad()
    seen = []
    z.register_hook(lambda g: seen.append(g.numpy().copy()) or None)
    loss = z[0].sum() + 2 * z[1].sum() + 3 * w[0].sum() + (w[1, 1:] * 5).sum()
    loss.backward()
    z_expected = np.array([[1.0] * 3, [2.0] * 3])
    np.testing.assert_array_equal(z.grad.numpy(), z_expected)
    np.testing.assert_array_equal(seen[0], z_expected)
    np.testing.assert_array_equal(w.grad.numpy(), z_expected + [[3, 3, 3], [0, 5, 5]])


@pytest.mark.parametrize("index", [
    lambda x, t: rg.concatenate([x[t, ::2], x[t, 1:2]]),     # a strided slice
    lambda x, t: x[[t, t, 0], 0],                             # repeated integer indices
    lambda x, t: x[t][None][0],                               # None, a slice of a slice
    lambda x, t: x[x.numpy()[:, 0, 0] > 0].sum(0) + x[t],     # a boolean mask
], ids=["strided", "repeats", "newaxis", "mask"])
def test_in_place_adjoints_of_every_index_kind_match_the_rule(index):
    rng = np.random.default_rng(2)
    xs, ws = rng.standard_normal((5, 3, 4)), rng.standard_normal((4, 4)) * 0.5
    x, w = rg.tensor(xs, requires_grad=True), rg.tensor(ws, requires_grad=True)
    with rg.enable_grad():
        expected = [g.numpy() for g in rg.autodiff.grad(_stepped_loss(x, w, index), [x, w],
                                                        create_graph=True)]
    _stepped_loss(x, w, index).backward()
    np.testing.assert_allclose(x.grad.numpy(), expected[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(w.grad.numpy(), expected[1], rtol=1e-12)


def test_accumulate_is_refused_for_an_op_of_several_inputs():
    from retrograd.ops.base import Op
    with pytest.raises(ValueError, match="accumulate= is for an op of one differentiable input"):
        Op("two_inputs", np.add, (lambda g, out, a, b: g, lambda g, out, a, b: g),
           accumulate=lambda acc, g, x: None)
