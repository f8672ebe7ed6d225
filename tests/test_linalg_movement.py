"""Issue 12, item 5 (einsum and friends, movement ops, pad modes, norm): what the op-case
table cannot show -- forward equality with NumPy over many arguments (negative axes,
repeated labels, '...', borders longer than the axis), which results are views and what
an in-place change then does, the norm's gradient at 0, the errors a user can cause, and
rg.compile of functions using them equal to eager, to second order."""
import numpy as np
import pytest

import retrograd as rg

from torch_oracle import torch

RNG = np.random.default_rng(12)
A = RNG.standard_normal((3, 4))
S = RNG.standard_normal((4, 4))
T = RNG.standard_normal((2, 3, 4))


def _same(ours, ref):
    ours = ours.numpy()
    assert ours.shape == np.shape(ref) and ours.dtype == np.asarray(ref).dtype
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


EINSUMS = [
    ("ij,jk->ik", (A, A.T)), ("ij,jk", (A, A.T)), ("ij,kj", (A, A)), ("ii->i", (S,)),
    ("ii", (S,)), ("ij->", (A,)), ("ji", (A,)), ("ij", (A,)), ("i,i", (A[0], A[0])),
    ("i,j->ij", (A[0], A[1])), ("iij->ij", (RNG.standard_normal((3, 3, 2)),)),
    ("ij,ij,ij->i", (A, A, A)), ("...ii->...i", (RNG.standard_normal((2, 3, 3)),)),
    ("...j,jk->...k", (T, A.T)), ("ij...,j...->i...", (RNG.standard_normal((3, 4, 2)), RNG.standard_normal((4, 2)))), ("...,...", (A, A[0])),
    ("bij,bjk->bik", (T, T.transpose(0, 2, 1))), ("i...", (T,)), ("...i", (T,)),
    ("ij,jk,kl->il", (A, A.T, S[:3])), ("i,ij->j", (np.ones(1), A)),     # a size-1 label broadcasts
    ("ijk,j->i", (T.transpose(1, 0, 2), np.ones(2))), (" ij , jk -> ik ", (A, A.T)),
    ("ii,i->i", (S, S[0])), (",ij->ij", (np.array(2.0), A)),
]


@pytest.mark.parametrize("spec,operands", EINSUMS, ids=[e[0] for e in EINSUMS])
def test_einsum_equals_numpy_and_its_gradients_are_right_to_second_order(spec, operands):
    operands = [np.array(o) for o in operands]      # (gradcheck perturbs each on its own)
    _same(rg.einsum(spec, *operands), np.einsum(spec, *operands))
    assert rg.gradcheck(lambda *xs: rg.einsum(spec, *xs), *operands)
    assert rg.gradgradcheck(lambda *xs: rg.einsum(spec, *xs) ** 2, *operands)


def test_einsum_is_one_op_and_its_gradients_are_einsums():
    """(one op per arity: einsum of two operands, einsum_unary of one)"""
    a, b = rg.tensor(A, requires_grad=True), rg.tensor(S, requires_grad=True)
    out = rg.einsum("ij,jj->i", a, b)
    assert out._op is rg.ops.REGISTRY["einsum"] and out._inputs == (a, b)
    ga, gb = rg.autograd_grad(out.sum(), [a, b], create_graph=True)
    assert ga._op.name == "einsum" and gb._op.name == "mul"     # the diagonal, masked
    np.testing.assert_array_equal(gb.numpy(), np.diag(A.sum(0)))
    # one operand: its own record (a view where NumPy's is); three: a chain of two-operand ones
    x = rg.einsum("ij->ji", a)
    assert x._op.name == "einsum_unary" and np.shares_memory(x.numpy(), a.numpy())
    out = rg.einsum("ij,jk,kl->il", a, b, b)
    assert out._op.name == "einsum" and {i._op.name for i in out._inputs if i._op} == {"einsum"}
    # a constant operand gets no cotangent
    assert rg.autograd_grad(rg.einsum("ij,jk->", a, S), [a])[0].shape == A.shape


def test_tensordot_inner_outer_cross_equal_numpy():
    B = RNG.standard_normal((3, 4, 2))
    _same(rg.tensordot(T, B), np.tensordot(T, B))
    _same(rg.tensordot(T, B.transpose(1, 0, 2), axes=1), np.tensordot(T, B.transpose(1, 0, 2), axes=1))
    _same(rg.tensordot(T, B, axes=([-2, -1], [0, 1])), np.tensordot(T, B, axes=([-2, -1], [0, 1])))
    _same(rg.tensordot(A, S, axes=0), np.tensordot(A, S, axes=0))
    _same(rg.tensordot(T, A, axes=([1], [0])), np.tensordot(T, A, axes=([1], [0])))
    _same(rg.inner(T, A), np.inner(T, A))
    _same(rg.inner(A[0], A[1]), np.inner(A[0], A[1]))
    _same(rg.inner(A, 2.0), np.inner(A, 2.0))
    _same(rg.outer(A, T), np.outer(A, T))
    a, b = RNG.standard_normal((4, 3)), RNG.standard_normal((2, 1, 3))
    _same(rg.cross(a, b), np.cross(a, b))
    a, b = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 1))
    _same(rg.cross(a, b, axis=0), np.cross(a, b, axis=0))
    _same(rg.cross(a, b, axis=-2), np.cross(a, b, axis=-2))


@pytest.mark.parametrize("offset", [-3, -1, 0, 1, 2, 5])
def test_diagonal_trace_tril_triu_equal_numpy(offset):
    for a1, a2 in ((0, 1), (1, 0), (-1, 0), (2, -2), (0, 2)):
        _same(rg.diagonal(T, offset, a1, a2), np.diagonal(T, offset, a1, a2))
        _same(rg.trace(T, offset, a1, a2), np.trace(T, offset, a1, a2))
    _same(rg.trace(A, offset), np.trace(A, offset))
    for x in (A, T, S):
        _same(rg.tril(x, offset), np.tril(x, offset))
        _same(rg.triu(x, offset), np.triu(x, offset))
    assert rg.gradgradcheck(lambda x: rg.diagonal(x, offset, -1, 1) ** 2, T)


def test_tril_and_triu_are_zero_off_their_triangle_even_for_nan_and_inf():
    x = np.full((3, 3), np.inf)
    x[2, 0] = np.nan
    np.testing.assert_array_equal(rg.triu(x).numpy(), np.triu(x))
    np.testing.assert_array_equal(rg.tril(x, -1).numpy()[0], [0, 0, 0])


MOVES = [
    (lambda m, x: m.flip(x), "flip all"), (lambda m, x: m.flip(x, -1), "flip -1"),
    (lambda m, x: m.flip(x, (0, -2)), "flip axes"),
    (lambda m, x: m.roll(x, 2), "roll flat"), (lambda m, x: m.roll(x, -5, -1), "roll -1"),
    (lambda m, x: m.roll(x, (1, 7), (0, 2)), "roll two"), (lambda m, x: m.roll(x, (1, 2), -1), "roll same axis"),
    (lambda m, x: m.roll(x, 1, (0, 1)), "roll shift broadcast"), (lambda m, x: m.roll(x, 0, 1), "roll 0"),
    (lambda m, x: m.repeat(x, 2), "repeat flat"), (lambda m, x: m.repeat(x, 3, -1), "repeat -1"),
    (lambda m, x: m.repeat(x, [0, 2, 1], 1), "repeat counts"), (lambda m, x: m.repeat(x, [2], 0), "repeat [k]"),
    (lambda m, x: m.repeat(x, 0, 0), "repeat 0"),
    (lambda m, x: m.tile(x, 2), "tile int"), (lambda m, x: m.tile(x, (2, 1, 1, 2)), "tile more axes"),
    (lambda m, x: m.tile(x, (3, 1)), "tile fewer"), (lambda m, x: m.tile(x, (1, 0, 1)), "tile 0"),
    (lambda m, x: m.moveaxis(x, 0, -1), "moveaxis"), (lambda m, x: m.moveaxis(x, (-1, 0), (0, 1)), "moveaxis two"),
    (lambda m, x: m.rollaxis(x, 2), "rollaxis"), (lambda m, x: m.rollaxis(x, 0, 3), "rollaxis end"),
    (lambda m, x: m.rollaxis(x, 1, -1), "rollaxis -1"), (lambda m, x: m.rollaxis(x, -1, 1), "rollaxis neg"),
    (lambda m, x: m.hstack([x, x]), "hstack"), (lambda m, x: m.vstack([x, x[:1]]), "vstack"),
    (lambda m, x: m.hstack([x[0, 0], x[1, 1]]), "hstack 1-d"), (lambda m, x: m.vstack([x[0, 0], x[1, 1]]), "vstack 1-d"),
    (lambda m, x: m.hstack([x[0, 0, 0], x[1, 1, 1]]), "hstack 0-d"), (lambda m, x: m.vstack([x[0, 0, 0], x[0, 1, 1]]), "vstack 0-d"),
]


@pytest.mark.parametrize("f", [m[0] for m in MOVES], ids=[m[1] for m in MOVES])
def test_movement_ops_equal_numpy(f):
    _same(f(rg, rg.tensor(T)), f(np, T))


@pytest.mark.parametrize("sections", [1, 2, 3, 4, 5, [1, 3], [2, 2], [0, 5], [3, 1]])
def test_array_split_equals_numpy_uneven_too(sections):
    ours, ref = rg.array_split(T, sections, axis=-1), np.array_split(T, sections, axis=-1)
    assert len(ours) == len(ref)
    for o, r in zip(ours, ref):
        _same(o, r)


def test_repeat_is_numpys_and_tile_is_pytorchs_tensor_repeat():
    x = rg.tensor([1.0, 2.0])
    np.testing.assert_array_equal(x.repeat(2).numpy(), [1, 1, 2, 2])
    np.testing.assert_array_equal(rg.tile(x, 2).numpy(), [1, 2, 1, 2])
    assert "tile" in rg.repeat.__doc__ and "repeat_interleave" in rg.repeat.__doc__


def test_the_views_are_views_as_in_numpy_and_the_copies_are_copies():
    x = rg.tensor(T.copy())
    views = {"flip": rg.flip(x, 1), "diagonal": rg.diagonal(x, 0, 1, 2),
             "moveaxis": rg.moveaxis(x, 0, 2), "rollaxis": rg.rollaxis(x, 2),
             "einsum": rg.einsum("ijk->kji", x), "array_split": rg.array_split(x, 3, 1)[1],
             "repeat 1": rg.repeat(x, 1, 0)}
    for name, v in views.items():
        assert np.shares_memory(v.numpy(), x.numpy()), name
    copies = {"roll": rg.roll(x, 1, 0), "tile": rg.tile(x, 2), "repeat": rg.repeat(x, 2, 1),
              "pad": rg.pad(x, 1, "reflect"), "hstack": rg.hstack([x, x]),
              "tril": rg.tril(x), "einsum": rg.einsum("ijk,ijk->ik", x, x)}
    for name, c in copies.items():
        assert not np.shares_memory(c.numpy(), x.numpy()), name


@pytest.mark.parametrize("view", [lambda y: rg.flip(y, 0), lambda y: rg.diagonal(y),
                                  lambda y: rg.moveaxis(y, 0, 1), lambda y: rg.einsum("ij->ji", y)],
                         ids=["flip", "diagonal", "moveaxis", "einsum"])
def test_a_change_in_place_through_the_base_is_seen_by_a_backward_that_saved_the_view(view):
    x = rg.tensor(S, requires_grad=True)
    y = x * 1
    v = view(y)
    loss = (v * v).sum()               # mul saves v, a view of y
    with rg.no_grad():
        y += 1
    with pytest.raises(rg.RetrogradError, match="modified by an inplace operation"):
        loss.backward()
    # while roll's copy is independent: the same change leaves its backward valid
    y = x * 1
    r = rg.roll(y, 1, 0)
    loss = (r * r).sum()
    with rg.no_grad():
        y += 1
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * S)


def test_the_diagonal_is_read_only_as_numpys():
    d = rg.diagonal(rg.tensor(S.copy()))
    with pytest.raises(rg.RetrogradError, match="read-only"):
        d += 1


PAD_WIDTHS = [0, 1, 3, (2, 5), ((1, 0), (0, 2), (4, 1)), ((5, 7), (0, 0), (9, 2)), ((0, 0), (3, 3), (0, 0))]


@pytest.mark.parametrize("mode,np_mode", [("constant", "constant"), ("reflect", "reflect"),
                                          ("edge", "edge"), ("replicate", "edge"),
                                          ("wrap", "wrap"), ("circular", "wrap")])
@pytest.mark.parametrize("pw", PAD_WIDTHS, ids=[str(p) for p in PAD_WIDTHS])
def test_pad_modes_equal_np_pad_and_differentiate_twice(mode, np_mode, pw):
    _same(rg.pad(T, pw, mode), np.pad(T, pw, mode=np_mode))
    assert rg.gradcheck(lambda x: rg.pad(x, pw, mode), T)
    assert rg.gradgradcheck(lambda x: rg.pad(x, pw, mode) ** 2, T)


@pytest.mark.parametrize("mode", ["reflect", "edge", "wrap"])
def test_pad_of_a_one_long_axis_and_float32(mode):
    x = np.array([[1.5], [2.5]], dtype=np.float32)
    out = rg.pad(x, ((0, 0), (3, 2)), mode)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.numpy(), np.pad(x, ((0, 0), (3, 2)), mode=mode))


def test_pad_constant_keeps_its_record_and_values():
    out = rg.pad(rg.tensor(A, requires_grad=True), ((1, 0), (2, 1)), constant_values=7.0)
    assert out._op.name == "pad"
    _same(out, np.pad(A, ((1, 0), (2, 1)), constant_values=7.0))


@pytest.mark.torch
@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("pad", [(1, 2), (0, 1, 2, 3), (1, 1, 0, 2, 1, 0)])
def test_functional_pad_matches_pytorch(mode, pad):
    x = RNG.standard_normal((2, 3, 4, 5))
    t = torch.tensor(x, requires_grad=True)
    try:
        ref = torch.nn.functional.pad(t, pad, mode=mode, value=0.5) if mode == "constant" else \
            torch.nn.functional.pad(t, pad, mode=mode)
    except NotImplementedError:     # PyTorch pads only some (ndim, len(pad)) pairs: a 3-d one
        x = x[0]
        t = torch.tensor(x, requires_grad=True)
        ref = torch.nn.functional.pad(t, pad, mode=mode)
    xr = rg.tensor(x, requires_grad=True)
    ours = rg.nn.functional.pad(xr, pad, mode=mode, value=0.5)
    np.testing.assert_allclose(ours.numpy(), ref.detach().numpy(), rtol=1e-15)
    w = RNG.standard_normal(ref.shape)
    (ours * w).sum().backward()
    (ref * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(xr.grad.numpy(), t.grad.numpy(), rtol=1e-12)


def test_the_norms_equal_numpys():
    v = RNG.standard_normal(5)
    for ord in (None, 2, 1, np.inf, -np.inf, 0, 3, 0.5, -1):
        _same(rg.norm(v, ord), np.linalg.norm(v, ord))
        _same(rg.norm(T, ord, axis=-2), np.linalg.norm(T, ord, axis=-2))
        _same(rg.norm(T, ord, axis=1, keepdims=True), np.linalg.norm(T, ord, axis=1, keepdims=True))
    for ord in (None, "fro", 1, -1, np.inf, -np.inf):
        _same(rg.norm(A, ord), np.linalg.norm(A, ord))
        _same(rg.norm(T, ord, axis=(2, 0)), np.linalg.norm(T, ord, axis=(2, 0)))
        _same(rg.norm(T, ord, axis=(-1, -2), keepdims=True),
              np.linalg.norm(T, ord, axis=(-1, -2), keepdims=True))
    _same(rg.norm(T), np.linalg.norm(T))
    _same(rg.norm(T, keepdims=True), np.linalg.norm(T, keepdims=True))
    _same(rg.norm(np.arange(4)), np.linalg.norm(np.arange(4)))      # ints: a float norm
    assert rg.linalg.norm is rg.norm and rg.linalg.tensordot is rg.tensordot


@pytest.mark.parametrize("f", [rg.norm, lambda x: rg.norm(x, axis=1), lambda x: rg.norm(x, "fro", (0, 1)),
                               lambda x: rg.norm(x, 3, axis=0)], ids=["all", "axis", "fro", "p3"])
def test_the_norm_at_zero_has_gradient_zero_not_nan_as_pytorch(f):
    x = rg.tensor(np.zeros((2, 3)), requires_grad=True)
    y = f(x)
    np.testing.assert_array_equal(y.numpy(), 0)
    (g,) = rg.autograd_grad(y.sum(), [x], create_graph=True)
    np.testing.assert_array_equal(g.numpy(), 0)
    (gg,) = rg.autograd_grad(g.sum(), [x], allow_unused=True)
    assert gg is None or np.isfinite(gg.numpy()).all()
    if torch is not None:
        t = torch.zeros((2, 3), dtype=torch.float64, requires_grad=True)
        ref = {"all": lambda t: torch.linalg.norm(t), "axis": lambda t: torch.linalg.vector_norm(t, dim=1),
               "fro": lambda t: torch.linalg.matrix_norm(t), "p3": lambda t: torch.linalg.vector_norm(t, 3, dim=0)}
        name = {rg.norm: "all"}.get(f)
        if name:
            ref[name](t).sum().backward()
            np.testing.assert_array_equal(t.grad.numpy(), g.numpy())


def test_isclose_allclose_any_all():
    a = np.array([1.0, np.nan, 1e-9, np.inf, -np.inf, 2.0])
    b = np.array([1.0 + 1e-6, np.nan, 0.0, np.inf, np.inf, 2.1])
    for en in (False, True):
        np.testing.assert_array_equal(rg.isclose(a, b, equal_nan=en).numpy(),
                                      np.isclose(a, b, equal_nan=en))
    np.testing.assert_array_equal(rg.isclose(a, 2.0, rtol=0.1).numpy(), np.isclose(a, 2.0, rtol=0.1))
    assert rg.allclose(A, A + 1e-9) is True and rg.allclose(A, A + 1) is False
    assert rg.allclose([np.nan], [np.nan], equal_nan=True) is True
    x = rg.tensor(A, requires_grad=True)
    for f, ref in ((rg.any, np.any), (rg.all, np.all)):
        for axis, kd in ((None, False), (1, False), ((0, -1), True), (-1, True)):
            out = f(x > 0.5, axis=axis, keepdims=kd)
            assert out.dtype == bool and not out.requires_grad
            np.testing.assert_array_equal(out.numpy(), ref(A > 0.5, axis=axis, keepdims=kd))
    assert bool((x > -10).all()) and not (x > 10).any()


@pytest.mark.parametrize("thunk,message", [
    (lambda: rg.einsum("ij,jk->ik", A), r"einsum: 'ij,jk->ik' names 2 operands, got 1"),
    (lambda: rg.einsum("ij,jk->ik", A, A), r"einsum: 'ij,jk->ik': label 'j' has sizes 4 and 3 "
                                           r"\(operand shapes: \(3, 4\), \(3, 4\)\)"),
    (lambda: rg.einsum("ijk", A), r"einsum: operand of shape \(3, 4\) has 2 axes, subscripts 'ijk' name 3"),
    (lambda: rg.einsum("ij->ik", A), r"einsum: output label 'k' of 'ij->ik' is in no operand"),
    (lambda: rg.einsum("i1", A), r"einsum: invalid subscripts 'i1'"),
    (lambda: rg.einsum("ii", A), r"einsum: 'ii': label 'i' has sizes 3 and 4"),
    (lambda: rg.einsum("ij->...", A), r"'\.\.\.' in the output only"),
    (lambda: rg.tensordot(A, A, axes=1), r"tensordot: shapes \(3, 4\) and \(3, 4\): axis 1 \(4\) and "
                                         r"axis 0 \(3\) differ"),
    (lambda: rg.tensordot(A, A, axes=3), r"tensordot: axes=3 for shapes \(3, 4\) and \(3, 4\)"),
    (lambda: rg.tensordot(A, A, axes=([0, 1], [0])), r"tensordot: axes .* pair 2 axes with 1"),
    (lambda: rg.cross(A, A), r"cross: needs 3-vectors along axis -1, got shapes \(3, 4\) and \(3, 4\)"),
    (lambda: rg.diagonal(A, 0, 1, -1), r"diagonal: axis1 and axis2 are both axis 1 \(shape \(3, 4\)\)"),
    (lambda: rg.diagonal(A, 0, 0, 2), r"diagonal: axis 2 is out of range for a tensor of shape \(3, 4\)"),
    (lambda: rg.tril(A[0]), r"tril: needs at least 2 axes .* got shape \(4,\)"),
    (lambda: rg.flip(A, 2), r"flip: axis 2 is out of range for a 2-d tensor of shape \(3, 4\)"),
    (lambda: rg.roll(A, (1, 2, 3), (0, 1)), r"roll: shift \(1, 2, 3\) and axis \(0, 1\) do not match"),
    (lambda: rg.repeat(A, [1, 2], 0), r"repeat: 2 repeats for axis 0 of size 3 \(shape \(3, 4\)\)"),
    (lambda: rg.repeat(A, -1), r"repeat: repeats must be a non-negative int"),
    (lambda: rg.tile(A, (-1, 2)), r"tile: reps must be non-negative"),
    (lambda: rg.moveaxis(T, (0, 1), 2), r"moveaxis: source \(0, 1\) and destination 2 name different"),
    (lambda: rg.moveaxis(T, 3, 0), r"moveaxis: axis 3 is out of range for a 3-d tensor of shape \(2, 3, 4\)"),
    (lambda: rg.array_split(A, 0), r"array_split: the number of sections must be positive, got 0"),
    (lambda: rg.vstack([]), r"vstack: needs at least one tensor"),
    (lambda: rg.hstack([A, T]), r"concatenate: shapes"),
    (lambda: rg.pad(A, 1, "mirror"), r"pad: mode must be one of .*, got 'mirror'"),
    (lambda: rg.pad(A, ((1, 2), (3, 4), (5, 6))), r"pad: pad_width .* does not fit a tensor of shape \(3, 4\)"),
    (lambda: rg.pad(A, -1, "reflect"), r"pad: pad_width -1 has a negative entry"),
    (lambda: rg.pad(np.zeros((0, 2)), 1, "wrap"), r"pad: mode 'wrap' cannot pad axis 0 of shape \(0, 2\): it is empty"),
    (lambda: rg.nn.functional.pad(rg.tensor(A), (1, 2, 3)), r"pad: pad \(1, 2, 3\) must hold \(left, right\) pairs"),
    (lambda: rg.nn.functional.pad(rg.tensor(A), (4, 0), mode="reflect"),
     r"pad: reflect padding \(4, 0\) of axis 1 of shape \(3, 4\) must be < its size 4"),
    (lambda: rg.nn.functional.pad(rg.tensor(A), (1, 0), mode="edge"), r"pad: mode must be one of"),
    (lambda: rg.norm(A, "nuc"), r"norm: matrix ord 'nuc' needs singular values"),
    (lambda: rg.norm(A, 2), r"norm: matrix ord 2 needs singular values"),
    (lambda: rg.norm(T, 1), r"norm: ord=1 with axis=None needs a 1-d or 2-d tensor, got shape \(2, 3, 4\)"),
    (lambda: rg.norm(A[0], "fro"), r"norm: ord 'fro' is a matrix norm"),
    (lambda: rg.norm(T, axis=(0, 1, 2)), r"norm: axis must be an int or a pair"),
])
def test_the_errors_name_the_op_and_the_shapes(thunk, message):
    with pytest.raises(rg.RetrogradError, match=message):
        thunk()


def _f(x, y):                                       # x (3, 4), y (4, 3)
    z = rg.einsum("ij,jk->ik", x, y) + rg.tensordot(x, y.T, axes=([0], [0])).sum()     # (3, 3)
    z = rg.pad(z, ((1, 1), (2, 0)), "reflect") + rg.roll(rg.flip(rg.pad(z, 1, "wrap"), 0), 1, 1)
    z = (rg.tril(z, 1) * rg.repeat(rg.tile(rg.diagonal(y), 1), 1)[0]
         + rg.moveaxis(rg.vstack([z, z]), 0, 1)[:, :5].T)                                 # (5, 5)
    return (rg.norm(z, axis=0) + rg.trace(z) * rg.norm(rg.cross(x[:, :3], y[:3].T), "fro", (0, 1))
            + rg.inner(x[0], y[:, 0]) + rg.outer(x[1], y[0])[0, 0]
            + rg.hstack(rg.array_split(z, 2, 1))[0, 1] + rg.pad(z, (1, 2), "edge")[0, :1]).sum()


def test_compiled_functions_using_them_equal_eager_to_second_order():
    x, y = RNG.standard_normal((3, 4)), RNG.standard_normal((4, 3))
    np.testing.assert_allclose(rg.compile(_f)(x, y).numpy(), _f(x, y).numpy(), rtol=1e-12)
    g = rg.grad(_f, argnums=(0, 1))
    for c, e in zip(rg.compile(g)(x, y), g(x, y)):
        np.testing.assert_allclose(c.numpy(), e.numpy(), rtol=1e-11)
    v = (RNG.standard_normal((3, 4)), RNG.standard_normal((4, 3)))
    hv = rg.compile(lambda a, b, va, vb: rg.hvp(_f, (a, b), (va, vb)))(x, y, *v)
    for c, e in zip(hv, rg.hvp(_f, (x, y), v)):
        np.testing.assert_allclose(c.numpy(), e.numpy(), rtol=1e-10, atol=1e-12)
    assert rg.gradcheck(_f, x, y) and rg.gradgradcheck(_f, x, y)


def test_gradcheck_of_an_input_not_in_c_order():
    """Found here: rg.gradcheck perturbed an F-ordered input through reshape(-1), a copy,
    so its numeric gradient was 0 (a transposed operand, e.g. einsum's A.T, failed)."""
    x = np.asfortranarray(RNG.standard_normal((3, 4)))
    assert rg.gradcheck(lambda a: (a * a).sum(), x)


def test_the_tensor_methods_are_the_functions():
    x = rg.tensor(T)
    for name, args in (("flip", (1,)), ("roll", (1, 0)), ("repeat", (2, 1)), ("tile", ((1, 2),)),
                       ("moveaxis", (0, -1)), ("diagonal", (0, 1, 2)), ("trace", (0, 1, 2)),
                       ("tril", ()), ("triu", (1,)), ("norm", (None, 1)), ("any", ()), ("all", (1,))):
        np.testing.assert_array_equal(getattr(x, name)(*args).numpy(),
                                      getattr(rg, name)(x, *args).numpy(), err_msg=name)


def test_einsum_size_one_and_empty_labels_broadcast_as_numpys():
    a, b = np.ones((1, 3)), np.ones((0, 3))
    assert rg.einsum("ij,ij->ij", a, b).shape == np.einsum("ij,ij->ij", a, b).shape == (0, 3)
    assert rg.compile(lambda x, y: rg.einsum("ij,ij->ij", x, y))(a, b).shape == (0, 3)
    x = rg.tensor(np.ones((1, 3)), requires_grad=True)
    rg.einsum("ij,ij->", x, np.full((4, 3), 2.0)).backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((1, 3), 8.0))
    with pytest.raises(rg.ShapeError, match="label 'i' has sizes 0 and 5"):
        rg.einsum("ij,ij,ij->ij", a, b, np.ones((5, 3)))


@pytest.mark.parametrize("sa,sb,form,swapped", [
    ((6, 900), (25, 900), "a @ B.T", True), ((16, 30), (300, 30), "a @ B.T", False),
    ((16, 150), (16, 4096), "A.T @ b", False), ((64, 10), (84, 10), "a @ B.T", False),
    ((30, 200), (30, 500), "A.T @ b", False)])
def test_matmul_in_the_faster_operand_order_equals_numpy(sa, sb, form, swapped):
    """A product of a transposed view that matmul's forward runs as (b.T @ a.T).T where
    OpenBLAS is faster so (conv2d's gradients) equals NumPy's, with and without out=, and
    the compiled gradients equal eager's."""
    x, y = RNG.standard_normal(sa).astype(np.float32), RNG.standard_normal(sb).astype(np.float32)
    a, b = (x, y.T) if form == "a @ B.T" else (x.T, y)
    assert rg.ops.linalg._faster_swapped(a, b) == swapped
    forward = rg.ops.REGISTRY["matmul"].forward
    np.testing.assert_allclose(forward(a, b), np.matmul(a, b), rtol=1e-5, atol=1e-5)
    out = np.empty((a.shape[0], b.shape[1]), np.float32)
    assert forward(a, b, out=out) is out
    np.testing.assert_allclose(out, np.matmul(a, b), rtol=1e-5, atol=1e-5)

    def loss(p, q):
        return ((p @ q.T) ** 2).sum() if form == "a @ B.T" else ((p.T @ q) ** 2).sum()
    eager = rg.grad(loss, argnums=(0, 1))(rg.tensor(x), rg.tensor(y))
    compiled = rg.compile(rg.grad(loss, argnums=(0, 1)), backend="numpy")(x, y)
    for e, c in zip(eager, compiled):
        np.testing.assert_allclose(c.numpy(), e.numpy(), rtol=1e-4)
