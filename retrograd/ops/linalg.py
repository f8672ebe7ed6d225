"""Matrix products: 1-D, 2-D and batched (broadcast) ``matmul``, and ``dot``; ``einsum``
(one op, each operand's gradient an einsum) and what is written with it (tensordot,
inner), outer, cross, the diagonal (a view, scattered back by its adjoint), trace, tril
and triu."""
from __future__ import annotations

import builtins
import functools
import math

import numpy as np

from ..arrays import astype as _astype_array, device, is_foreign, kind, namespace, to_namespace
from ..errors import RetrogradError, ShapeError
from ..tensor import Tensor, as_tensor, share_version
from .base import _standard_function, apply, defop
from .elementwise import mul, where
from .reduce import sum as _sum
from .shape import (astype, broadcast_to, moveaxis, norm_axes, reshape, rule_t, stack, sum_to,
                    swapaxes, transpose)


def _as_matrices(g, a, b):
    """View 1-D operands as matrices, as matmul does: a (n,) -> (1, n), b (n,) -> (n, 1),
    and give the cotangent the shape of the matrix product."""
    a2 = reshape(a, (1,) + a.shape) if a.ndim == 1 else a
    b2 = reshape(b, b.shape + (1,)) if b.ndim == 1 else b
    out_shape = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) + (a2.shape[-2], b2.shape[-1])
    return reshape(g, out_shape), a2, b2


def _matmul_vjp_a(g, out, a, b):
    if a._data.ndim == 2 and b._data.ndim == 2:        # the common case, without reshapes
        return g @ rule_t(b)
    g2, a2, b2 = _as_matrices(g, a, b)
    return reshape(sum_to(g2 @ swapaxes(b2, -1, -2), a2.shape), a.shape)


def _matmul_vjp_b(g, out, a, b):
    if a._data.ndim == 2 and b._data.ndim == 2:
        return rule_t(a) @ g
    g2, a2, b2 = _as_matrices(g, a, b)
    return reshape(sum_to(swapaxes(a2, -1, -2) @ g2, b2.shape), b.shape)


def _matmul_shape(a, b):
    """Output shape and dtype without multiplying (used when tracing)."""
    sa, sb = a.shape, b.shape
    if len(sa) == 0 or len(sb) == 0 or sa[-1] != (sb[-2] if len(sb) > 1 else sb[0]):
        raise ShapeError(f"matmul: shapes {sa} and {sb} are not aligned")
    batch = np.broadcast_shapes(sa[:-2], sb[:-2])
    core = (sa[-2],) if len(sa) > 1 else ()
    core += (sb[-1],) if len(sb) > 1 else ()
    return batch + core, np.result_type(a.dtype, b.dtype)


def _faster_swapped(a, b):
    """Whether OpenBLAS computes the 2-D a @ b faster as (b.T @ a.T).T: for a @ B.T (b a
    transposed view: rows against rows) with m < n <= k, as the weight gradient g @ cols.T
    of a convolution, ~2x faster with the longer side as rows (one thread: (6, 36864) @
    (36864, 25) 0.78 -> 0.40 ms, (16, 4096) @ (4096, 150) 0.50 -> 0.29 ms; other measured
    shapes lost or tied). Its result is a transposed view, which is small here (m·n < n·k):
    a copy of a large one costs more than the product gains (A.T @ b, the input gradient
    W.T @ g, runs 2x faster swapped but its (150, 4096) result then takes 0.45 ms to copy)."""
    (m, k), n = a.shape, b.shape[1]
    return b.flags.f_contiguous and not b.flags.c_contiguous and m < n <= k


def _matmul_forward(a, b, out=None):
    """np.matmul, a 2-D product in the operand order OpenBLAS runs faster."""
    if a.ndim == 2 and b.ndim == 2 and _faster_swapped(a, b):
        r = np.matmul(b.T, a.T).T
        if out is None:
            return r
        np.copyto(out, r)       # (out.T as matmul's out would take the slow order again)
        return out
    return np.matmul(a, b, out=out)


_matmul = defop("matmul", _matmul_forward, (_matmul_vjp_a, _matmul_vjp_b), shape=_matmul_shape,
                reads=((1,), (0,)), lowering="blas_dot", out=True, fresh=True,
                xp_forward=_standard_function("matmul", np.matmul))


def _shape(x):
    return x.shape if isinstance(x, Tensor) else np.shape(x)


def matmul(a, b):
    """Matrix product with NumPy's rules (``a @ b``): 1-D vectors, 2-D matrices,
    and stacks of matrices that broadcast over leading axes."""
    try:
        return apply(_matmul, a, b)
    except ShapeError:
        pass
    # explain the failure (checked only now, off the hot path)
    sa, sb = _shape(a), _shape(b)
    if len(sa) == 0 or len(sb) == 0:
        raise ShapeError(f"matmul: operands must be at least 1-d, got shapes {sa} and {sb}")
    ka = sa[-1]
    kb = sb[-2] if len(sb) > 1 else sb[0]
    if ka != kb:
        raise ShapeError(f"matmul: shapes {sa} and {sb} are not aligned: "
                         f"{ka} (last axis of the first) != {kb} "
                         f"({'second-to-last' if len(sb) > 1 else 'only'} axis of the second)")
    raise ShapeError(f"matmul: the batch axes of shapes {sa} and {sb} do not broadcast")


def dot(a, b):
    """``np.dot`` for vectors and matrices (the notes' ``dot(x, w1)``); a scalar operand
    multiplies. For stacks of matrices use ``matmul``, whose broadcasting is unambiguous."""
    sa, sb = _shape(a), _shape(b)
    if len(sa) == 0 or len(sb) == 0:
        return a * b
    if len(sa) > 2 or len(sb) > 2:
        raise ShapeError(f"dot: shapes {sa} and {sb}: dot of arrays with more than 2 axes is "
                         "ambiguous here; use rg.matmul (batched) instead")
    return matmul(a, b)


# ---------------------------------------------------------------- einsum

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@functools.lru_cache(maxsize=512)
def _einsum_spec(subscripts, shapes):
    """``subscripts`` in explicit form, '...' replaced by letters (NumPy's rules: the implicit
    output is the ellipsis axes, then the labels used once, sorted). Cached: a training
    step parses the same few specs on every call."""
    s = subscripts.replace(" ", "")
    ins, arrow, out = s.partition("->")
    terms = ins.split(",")
    if len(terms) != len(shapes):
        raise ShapeError(f"einsum: {subscripts!r} names {len(terms)} operands, got {len(shapes)}")
    bad = {c for c in ins.replace(",", "").replace("...", "") + out.replace("...", "")
           if c not in _LETTERS}
    if bad or (arrow and "-" in out) or out.count("...") > 1 or any(t.count("...") > 1 for t in terms):
        raise ShapeError(f"einsum: invalid subscripts {subscripts!r}")
    used = [c for t in terms for c in t.replace("...", "")]
    free = [c for c in _LETTERS if c not in used and c not in out]
    n_ell = 0
    for t, shape in zip(terms, shapes):
        k = len(t.replace("...", ""))
        if ("..." in t and k > len(shape)) or ("..." not in t and k != len(shape)):
            raise ShapeError(f"einsum: operand of shape {tuple(shape)} has {len(shape)} axes, "
                             f"subscripts {t!r} name {k}")
        if "..." in t:
            n_ell = builtins.max(n_ell, len(shape) - k)
    ell = "".join(free[:n_ell])
    if not arrow:
        out = ("..." if any("..." in t for t in terms) else "") + "".join(
            sorted(c for c in set(used) if used.count(c) == 1))
    elif "..." in out and not any("..." in t for t in terms):
        raise ShapeError(f"einsum: {subscripts!r} has '...' in the output only")
    for c in out.replace("...", ""):
        if c not in used:
            raise ShapeError(f"einsum: output label {c!r} of {subscripts!r} is in no operand")
    # an operand's '...' stands for its leading axes not named: the last of the ellipsis
    # letters (its axes broadcast right-aligned, as NumPy's)
    terms = [t.replace("...", ell[len(ell) - (len(shape) - len(t) + 3):]) if "..." in t else t
             for t, shape in zip(terms, shapes)]
    spec = ",".join(terms) + "->" + out.replace("...", ell)
    _check_sizes(spec, shapes, subscripts)
    return spec


def _check_sizes(spec, shapes, subscripts):
    sizes = {}
    for t, shape in zip(spec.split("->")[0].split(","), shapes):
        for c, n in zip(t, shape):
            m = sizes.setdefault(c, n)
            if m != n and 1 not in (m, n):
                raise ShapeError(f"einsum: {subscripts!r}: label {c!r} has sizes {m} and {n} "
                                 f"(operand shapes: {', '.join(str(tuple(s)) for s in shapes)})")
            if m == 1:                 # a size-1 label broadcasts (to 0 too)
                sizes[c] = n


def _einsum_forward(*xs, subscripts):
    xp = namespace(*xs)
    if xp is not np:
        return _xp_einsum(xp, subscripts, xs)
    # BLAS (optimize) pays off for two operands past small ones (one operand: a view, or a
    # sum, either way without it)
    big = len(xs) == 2 and builtins.sum(getattr(x, "size", 1) for x in xs) > 4096
    return np.einsum(subscripts, *xs, optimize=big)


# The array API has no einsum: for other namespaces an explicit spec of one or two operands
# is planned once (per spec and shapes) as diagonals, sums, permute_dims, reshape and one
# batched matmul -- the steps a BLAS-backed einsum takes.

@functools.lru_cache(maxsize=512)
def _einsum_plan(spec, shapes):
    """(per operand: its diagonal axis pairs and summed axes, then its labels left), and,
    for two operands, the matmul layout (see _contract)."""
    ins, out = spec.split("->")
    terms = ins.split(",")
    size = {}
    for t, shape in zip(terms, shapes):
        for c, n in zip(t, shape):
            size.setdefault(c, set()).add(n)
    steps = []
    for k, t in enumerate(terms):
        diags = []
        while len(set(t)) < len(t):                # a repeated label: its diagonal, last
            c = next(c for c in t if t.count(c) > 1)
            i = t.index(c)
            j = t.index(c, i + 1)
            diags.append((i, j))
            t = t[:i] + t[i + 1:j] + t[j + 1:] + c
        others = set(out).union(*(u for m, u in enumerate(terms) if m != k))
        # summed here: labels no one else has, and contracted labels of size 1 on one side
        # (the other side is then summed over them alone: a broadcast factor)
        summed = [c for c in t if c not in others
                  or (c not in out and len(size[c]) > 1)]
        steps.append((tuple(diags), tuple(t.index(c) for c in summed),
                      "".join(c for c in t if c not in summed)))
    return tuple(steps), out


def _xp_einsum(xp, spec, xs):
    steps, out = _einsum_plan(spec, tuple(tuple(x.shape) for x in xs))
    terms = []
    xs = list(xs)
    for k, (diags, summed, t) in enumerate(steps):
        for i, j in diags:
            xs[k] = _xp_diagonal(xp, xs[k], 0, i, j)
        if summed:
            xs[k] = xp.sum(xs[k], axis=summed)
        terms.append(t)
    if len(xs) == 1:
        return xp.permute_dims(xs[0], tuple(terms[0].index(c) for c in out))
    return _contract(xp, xs[0], xs[1], terms[0], terms[1], out)


def _contract(xp, a, b, ta, tb, out):
    """a, b (labels ta, tb, none repeated) contracted to labels ``out`` by one matmul:
    a as (batch..., A, K), b as (batch..., K, B); the batch axes broadcast as matmul's."""
    batch = [c for c in ta if c in tb and c in out]
    red = [c for c in ta if c in tb and c not in out]
    only_a = [c for c in ta if c not in tb]
    only_b = [c for c in tb if c not in ta]
    sa, sb = dict(zip(ta, a.shape)), dict(zip(tb, b.shape))
    a = xp.permute_dims(a, tuple(ta.index(c) for c in batch + only_a + red))
    b = xp.permute_dims(b, tuple(tb.index(c) for c in batch + red + only_b))
    ka = math.prod(sa[c] for c in red)
    a = xp.reshape(a, tuple(sa[c] for c in batch) + (math.prod(sa[c] for c in only_a), ka))
    b = xp.reshape(b, tuple(sb[c] for c in batch) + (ka, math.prod(sb[c] for c in only_b)))
    r = xp.matmul(a, b)
    labels = batch + only_a + only_b
    r = xp.reshape(r, tuple(r.shape[:len(batch)]) + tuple(sa[c] for c in only_a)
                   + tuple(sb[c] for c in only_b))
    return xp.permute_dims(r, tuple(labels.index(c) for c in out))


def _einsum_ct(g, xs, subscripts, k):
    """The cotangent of operand ``k``: an einsum of the other operand (if any) and g;
    labels only in that operand are broadcast back, and a label repeated in it (a
    diagonal) is put back on the diagonal by a 0/1 mask."""
    ins, res = subscripts.split("->")
    terms = ins.split(",")
    t, x = terms[k], xs[k]
    uniq = "".join(dict.fromkeys(t))               # t's labels, each once, in order
    others = [u for i, u in enumerate(terms) if i != k] + [res]
    have = set("".join(others))
    keep = "".join(c for c in uniq if c in have)
    r = einsum(",".join(others) + "->" + keep, *[u for i, u in enumerate(xs) if i != k], g)
    size = dict(zip(t, x.shape))
    r = reshape(r, tuple(r.shape[keep.index(c)] if c in have else 1 for c in uniq))
    # labels summed within x alone, or of size 1 in the other but not in x: broadcast back
    # (the other way round, size 1 in x only, the backward walk sums the cotangent down)
    full = tuple(size[c] if n == 1 else n for n, c in zip(r.shape, uniq))
    if r.shape != full:
        r = broadcast_to(r, full)
    if len(uniq) < len(t):                         # x's diagonal: zeros off it
        r = reshape(r, tuple(size[c] if t.index(c) == i else 1 for i, c in enumerate(t)))
        r = r * _diag_mask(t, x.shape, r)
    return r


def _diag_mask(t, shape, like):
    """1 where every repeated label of ``t`` takes one value along all its axes (of the
    dtype, namespace and device of tensor ``like``)."""
    grids = np.indices(shape, sparse=True)
    mask = np.ones(shape, dtype=bool)
    for i, c in enumerate(t):
        j = t.index(c)
        if j != i:
            mask = mask & (grids[i] == grids[j])
    return constant_like(mask, like)


def constant_like(arr, like):
    """A NumPy constant ``arr`` with the dtype of tensor ``like``, in its namespace and on
    its device when its data is another library's (as is, cast, for NumPy and graph values)."""
    data = like._data
    if not is_foreign(data):
        return arr.astype(like.dtype)
    return _astype_array(to_namespace(arr, namespace(data), device(data)), like.dtype)


def _einsum_shape(*xs, subscripts):
    ins, res = subscripts.split("->")
    size = {}
    for t, x in zip(ins.split(","), xs):
        for c, n in zip(t, np.shape(x)):
            if size.get(c, 1) == 1:
                size[c] = n
    return tuple(size[c] for c in res), np.result_type(*(getattr(x, "dtype", x) for x in xs))


# one record per arity (what each rule reads is then declared); more operands contract
# pairwise, in the order np.einsum_path picks
_einsum = defop("einsum", _einsum_forward, (
    lambda g, out, a, b, subscripts: _einsum_ct(g, (a, b), subscripts, 0),
    lambda g, out, a, b, subscripts: _einsum_ct(g, (a, b), subscripts, 1)),
    reads=((1,), (0,)), shape=_einsum_shape)
_einsum1 = defop("einsum_unary", _einsum_forward, (
    lambda g, out, x, subscripts: _einsum_ct(g, (x,), subscripts, 0),), reads=((),),
    shape=_einsum_shape)


@functools.lru_cache(maxsize=256)
def _path(spec, shapes):
    stand_ins = [np.broadcast_to(np.zeros((), np.float64), s) for s in shapes]
    return np.einsum_path(spec, *stand_ins, optimize="greedy")[0][1:]


def _pairwise(spec, operands, shapes):
    """An einsum of three or more operands as a chain of two-operand ones."""
    ins, res = spec.split("->")
    terms, ops_ = ins.split(","), list(operands)
    for step in _path(spec, tuple(tuple(s) for s in shapes)):
        picked = sorted(step, reverse=True)
        t = [terms.pop(i) for i in picked]
        xs = [ops_.pop(i) for i in picked]
        rest = "".join(terms) + res
        if not terms:
            out = res
        else:                                      # keep what is used later, in order
            out = "".join(c for c in dict.fromkeys("".join(t)) if c in rest)
        sub = ",".join(t) + "->" + out
        terms.append(out)
        ops_.append(apply(_einsum if len(xs) == 2 else _einsum1, *xs, subscripts=sub)
                    if len(xs) <= 2 else _pairwise(sub, xs, [np.shape(x) for x in xs]))
    return ops_[0]


def einsum(subscripts, *operands):
    """Einstein summation, as ``np.einsum``: ``einsum("ij,jk->ik", a, b)``; implicit output
    (``"ij,jk"``), repeated labels (``"ii->i"``, ``"ii"``: the trace) and '...' broadcasting.
    One op for one or two operands (more are contracted pairwise, in the order NumPy's
    einsum_path chooses); the gradient of each operand is itself an einsum, so it
    differentiates again."""
    shapes = tuple(tuple(_shape(x)) for x in operands)
    if not isinstance(subscripts, str):
        raise RetrogradError(f"einsum: subscripts must be a string, got {type(subscripts).__name__}")
    spec = _einsum_spec(subscripts, shapes)
    if len(operands) == 1:             # "ij->ji", "ii->i" are views, as in NumPy
        return share_version(apply(_einsum1, operands[0], subscripts=spec), operands[0])
    if len(operands) == 2:
        return apply(_einsum, *operands, subscripts=spec)
    return _pairwise(spec, operands, shapes)


def tensordot(a, b, axes=2):
    """``np.tensordot``: sum over the last ``axes`` axes of a and the first of b, or over
    the pairs ``axes=([a axes], [b axes])``; one einsum."""
    sa, sb = _shape(a), _shape(b)
    if isinstance(axes, (int, np.integer)):
        if not 0 <= axes <= builtins.min(len(sa), len(sb)):
            raise ShapeError(f"tensordot: axes={axes} for shapes {sa} and {sb}")
        ax_a, ax_b = list(range(len(sa) - axes, len(sa))), list(range(axes))
    else:
        try:
            ax_a, ax_b = ([x] if isinstance(x, (int, np.integer)) else list(x) for x in axes)
        except (TypeError, ValueError):
            raise ShapeError(f"tensordot: axes must be an int or a pair of axis lists, got {axes!r}") from None
        if len(ax_a) != len(ax_b):
            raise ShapeError(f"tensordot: axes {axes!r} pair {len(ax_a)} axes with {len(ax_b)}")
    ax_a = norm_axes(ax_a, len(sa), "tensordot", of=f"the first operand, of shape {sa}", scalar=False)
    ax_b = norm_axes(ax_b, len(sb), "tensordot", of=f"the second operand, of shape {sb}", scalar=False)
    for i, j in zip(ax_a, ax_b):
        if sa[i] != sb[j]:
            raise ShapeError(f"tensordot: shapes {sa} and {sb}: axis {i} ({sa[i]}) and axis {j} "
                             f"({sb[j]}) differ")
    la, lb = _LETTERS[:len(sa)], list(_LETTERS[len(sa):len(sa) + len(sb)])
    for i, j in zip(ax_a, ax_b):
        lb[j] = la[i]
    out = "".join(c for i, c in enumerate(la) if i not in ax_a) + "".join(
        c for j, c in enumerate(lb) if j not in ax_b)
    return apply(_einsum, a, b, subscripts=f"{la},{''.join(lb)}->{out}")


def outer(a, b):
    """``np.outer``: the inputs flattened, every product a[i] * b[j]."""
    return reshape(a, (-1, 1)) * reshape(b, (1, -1))


def inner(a, b):
    """``np.inner``: sum over the last axes (a scalar operand multiplies)."""
    sa, sb = _shape(a), _shape(b)
    if not sa or not sb:
        return mul(a, b)
    return tensordot(a, b, axes=([-1], [-1]))


def cross(a, b, axis=-1):
    """Cross product of 3-vectors along ``axis`` (of both, and of the result; the other
    axes broadcast), as ``np.cross(a, b, axis=axis)``; a composite, so it differentiates
    twice for free."""
    sa, sb = _shape(a), _shape(b)
    ia = norm_axes(axis, len(sa), "cross", of=f"the first operand, of shape {sa}", scalar=False)[0]
    ib = norm_axes(axis, len(sb), "cross", of=f"the second operand, of shape {sb}", scalar=False)[0]
    if sa[ia] != 3 or sb[ib] != 3:
        raise ShapeError(f"cross: needs 3-vectors along axis {axis}, got shapes {sa} and {sb}")
    a, b = moveaxis(a, ia, -1), moveaxis(b, ib, -1)
    a0, a1, a2 = (a[..., i] for i in range(3))
    b0, b1, b2 = (b[..., i] for i in range(3))
    c = stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)
    return moveaxis(c, -1, norm_axes(axis, c.ndim, "cross", scalar=False)[0])


# ---------------------------------------------------------------- diagonal, trace, tril, triu

def _diag_index(n, offset):
    """Rows and columns of the ``offset`` diagonal of the last two axes, ``n`` long."""
    i = np.arange(n)
    return i + builtins.max(-offset, 0), i + builtins.max(offset, 0)


def _diag_embed(g, offset, axis1, axis2, shape):
    # the adjoint of diagonal: zeros of x's shape with g (diagonal last) on the diagonal
    if type(g) is not np.ndarray:
        return _xp_diag_embed(namespace(g), g, offset, axis1, axis2, shape)
    out = np.zeros(shape, dtype=g.dtype)
    rows, cols = _diag_index(g.shape[-1], offset)
    np.moveaxis(out, (axis1, axis2), (-2, -1))[..., rows, cols] = g
    return out


def _planes_last(ndim, axis1, axis2):
    """The axes order that puts axis1, axis2 last, the others in order before them."""
    return tuple(i for i in range(ndim) if i not in (axis1, axis2)) + (axis1, axis2)


def _diag_len(n, m, offset):
    """The length of the ``offset`` diagonal of an n x m plane."""
    return builtins.max(0, builtins.min(n - builtins.max(-offset, 0), m - builtins.max(offset, 0)))


def _diag_flat(xp, n, m, offset, dev):
    """Flat positions (in an n x m plane) of the ``offset`` diagonal, as an xp array."""
    i = xp.arange(_diag_len(n, m, offset), device=dev)
    return (i + builtins.max(-offset, 0)) * m + (i + builtins.max(offset, 0))


def _xp_diagonal(xp, x, offset, axis1, axis2):
    """np.diagonal in the standard's words: the planes last and flat, the diagonal taken."""
    x = xp.permute_dims(x, _planes_last(x.ndim, axis1, axis2))
    n, m = x.shape[-2:]
    flat = _diag_flat(xp, n, m, offset, device(x))
    return xp.take(xp.reshape(x, tuple(x.shape[:-2]) + (n * m,)), flat, axis=-1)


def _xp_diag_embed(xp, g, offset, axis1, axis2, shape):
    """_diag_embed without item assignment: each flat plane position takes its diagonal
    entry of g (a gather) where it is on the diagonal, else 0."""
    order = _planes_last(len(shape), axis1, axis2)
    n, m = shape[axis1], shape[axis2]
    k = _diag_len(n, m, offset)
    planes = tuple(shape[i] for i in order)
    if k == 0:
        out = xp.zeros(planes, dtype=g.dtype, device=device(g))
    else:
        p = xp.arange(n * m, device=device(g))
        row, col = p // m, p % m
        on = (col - row) == offset
        src = xp.clip(row - builtins.max(-offset, 0), 0, k - 1)
        out = xp.where(on, xp.take(g, src, axis=-1), xp.zeros((), dtype=g.dtype, device=device(g)))
        out = xp.reshape(out, planes)
    return xp.permute_dims(out, tuple(order.index(i) for i in range(len(shape))))


def _diagonal_forward(x, offset, axis1, axis2):
    if type(x) is not np.ndarray:
        return _xp_diagonal(namespace(x), x, offset, axis1, axis2)
    return np.diagonal(x, offset, axis1, axis2)


_diagonal = defop("diagonal", _diagonal_forward,
                  (lambda g, out, x, offset, axis1, axis2:
                   apply(_diagonal_vjp, g, offset=offset, axis1=axis1, axis2=axis2, shape=x.shape),),
                  reads=((),))
_diagonal_vjp = defop("diagonal_vjp", _diag_embed, (
    lambda g, out, gd, offset, axis1, axis2, shape: apply(_diagonal, g, offset=offset,
                                                          axis1=axis1, axis2=axis2),),
    reads=((),), fresh=True)


def diagonal(x, offset=0, axis1=0, axis2=1):
    """``np.diagonal``: the ``offset`` diagonal of the planes (axis1, axis2), as a last
    axis; a (read-only) view, as NumPy's. Its gradient scatters back onto the diagonal."""
    shape = _shape(x)
    a1, a2 = norm_axes((axis1, axis2), len(shape), "diagonal", of=f"a tensor of shape {shape}",
                       scalar=False, unique=False)
    if a1 == a2:
        raise ShapeError(f"diagonal: axis1 and axis2 are both axis {a1} (shape {shape})")
    return share_version(apply(_diagonal, x, offset=int(offset), axis1=a1, axis2=a2), x)


def trace(x, offset=0, axis1=0, axis2=1):
    """``np.trace``: the sum of the ``offset`` diagonal."""
    return _sum(diagonal(x, offset, axis1, axis2), axis=-1)


def _tri(x, k, lower, who):
    shape = _shape(x)
    if len(shape) < 2:
        raise ShapeError(f"{who}: needs at least 2 axes (a matrix, or a stack of them), "
                         f"got shape {shape}")
    n, m = shape[-2:]
    mask = np.tri(n, m, k, dtype=bool) if lower else ~np.tri(n, m, k - 1, dtype=bool)
    return where(mask, x, 0)


def tril(x, k=0):
    """``np.tril``: zeros above the ``k``-th diagonal of the last two axes."""
    return _tri(x, int(k), True, "tril")


def triu(x, k=0):
    """``np.triu``: zeros below the ``k``-th diagonal of the last two axes."""
    return _tri(x, int(k), False, "triu")


# ---------------------------------------------------------------- inv, solve, det, slogdet
#
# Square matrices in the last two axes, batched over the leading ones (broadcast, as
# NumPy's gufuncs). Each op's shape= lets rg.compile trace without running the forward
# (zero-filled stand-ins are singular). The VJPs are the textbook ones, in ops that
# differentiate again: inv's and solve's through the op's own output, det's and
# logabsdet's through inv.

def _mT(x):
    return swapaxes(x, -1, -2)


def _xp_linalg(xp, name):
    """``xp.linalg.<name>``, or a clear refusal for a namespace without the extension
    (apply's caller prefixes the op's name and the shapes)."""
    f = getattr(getattr(xp, "linalg", None), name, None)
    if f is None:
        raise RetrogradError(f"namespace {xp.__name__} has no linalg.{name}()")
    return f


def _square(x, who):
    """x (a Tensor, array or list) as a float Tensor of square matrices (integers become
    float64, as norm's), or a ShapeError naming the op and the shape."""
    x = x if isinstance(x, Tensor) else as_tensor(x)
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ShapeError(f"{who}: needs square matrices in the last two axes (n, n), or a stack "
                         f"of them (..., n, n), got shape {x.shape}")
    return x if kind(x.dtype) in "fc" else astype(x, np.float64)


def _singular(who, shapes):
    which = "a matrix of the stack" if len(shapes[0]) > 2 else "the matrix"
    raise RetrogradError(f"{who}: {which} is singular (operand shapes: "
                         f"{', '.join(str(s) for s in shapes)})") from None


def _inv_forward(a):
    try:
        return np.linalg.inv(a)
    except np.linalg.LinAlgError:
        _singular("inv", [a.shape])


_inv = defop("inv", _inv_forward,
             # d(A⁻¹) = -A⁻¹ dA A⁻¹, so the cotangent of A is -A⁻ᵀ G A⁻ᵀ (out is A⁻¹)
             (lambda g, out, a: -(_mT(out) @ g @ _mT(out)),),
             reads=(("out",),), fresh=True, shape=lambda a: (a.shape, a.dtype),
             xp_forward=lambda xp, a: _xp_linalg(xp, "inv")(a))


def inv(a):
    """``np.linalg.inv``: the inverse of a square matrix, or of each of a stack (..., n, n).
    A singular matrix raises a RetrogradError naming the op."""
    return apply(_inv, _square(a, "inv"))


def _solve_forward(a, b):
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        _singular("solve", [a.shape, b.shape])


def _solve_shape(a, b):
    if b.ndim == 1:
        return a.shape[:-1], np.result_type(a.dtype, b.dtype)
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return batch + b.shape[-2:], np.result_type(a.dtype, b.dtype)


def _solve_b(g, out, a, b):
    """A X = B gives dB = A dX, so B's cotangent is A⁻ᵀ G = solve(Aᵀ, G) (for a vector b,
    solved as a column; the walk sums broadcast batch axes back)."""
    if b.ndim == 1:
        return reshape(apply(_solve, _mT(a), reshape(g, g.shape + (1,))), g.shape)
    return apply(_solve, _mT(a), g)


def _solve_a(g, out, a, b):
    # dX = -A⁻¹ dA X, so A's cotangent is -(A⁻ᵀ G) Xᵀ: the product of columns for a vector b
    gb = _solve_b(g, out, a, b)
    if b.ndim == 1:
        return -(reshape(gb, gb.shape + (1,)) * reshape(out, out.shape[:-1] + (1, out.shape[-1])))
    return -(gb @ _mT(out))


_solve = defop("solve", _solve_forward, (_solve_a, _solve_b), reads=((0, "out"), (0,)),
               fresh=True, shape=_solve_shape,
               xp_forward=lambda xp, a, b: _xp_linalg(xp, "solve")(a, b))


def solve(a, b):
    """``np.linalg.solve``: X with a @ X = b, for square a (n, n) or a stack (..., n, n);
    as NumPy 2, b of shape (n,) is a vector (X has a's batch axes and n), any other b is a
    stack of matrices (..., n, k), its batch axes broadcast against a's. A singular a raises
    a RetrogradError naming the op."""
    a = _square(a, "solve")
    b = b if isinstance(b, Tensor) else as_tensor(b)
    n = a.shape[-1]
    if b.ndim == 0 or (b.shape[0] if b.ndim == 1 else b.shape[-2]) != n:
        raise ShapeError(f"solve: a of shape {a.shape} needs b of shape ({n},) or (..., {n}, k), "
                         f"got {b.shape}")
    if b.ndim > 1:
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ShapeError(f"solve: the batch axes of shapes {a.shape} and {b.shape} do not "
                             "broadcast") from None
    if kind(b.dtype) not in "fc":
        b = astype(b, np.float64)
    return apply(_solve, a, b)


def _batch_shape(a):
    return a.shape[:-2], a.dtype


def _det_like_vjp(g, a):
    # d log|det A| = tr(A⁻¹ dA), so the cotangent of A is g A⁻ᵀ (g per matrix)
    return reshape(g, g.shape + (1, 1)) * _mT(inv(a))


# det is its own op, not sign * exp(logabsdet): np.linalg.det's product of LU pivots is
# exact where the exp of a log sum is not (and needs no second op); its VJP is
# g·det·A⁻ᵀ, so at a singular matrix (det 0) it refuses, through inv, as inv does
_det = defop("det", lambda a: np.asarray(np.linalg.det(a)), (lambda g, out, a: _det_like_vjp(g * out, a),),
             reads=((0, "out"),), fresh=True, shape=_batch_shape,
             xp_forward=lambda xp, a: _xp_linalg(xp, "det")(a))
_logabsdet = defop("logabsdet", lambda a: np.asarray(np.linalg.slogdet(a)[1]),
                   (lambda g, out, a: _det_like_vjp(g, a),), reads=((0,),), fresh=True,
                   shape=_batch_shape,
                   xp_forward=lambda xp, a: _xp_linalg(xp, "slogdet")(a)[1])
# the sign is piecewise constant: no gradient (as PyTorch's)
_det_sign = defop("det_sign", lambda a: np.asarray(np.linalg.slogdet(a)[0]), None, fresh=True,
                  shape=_batch_shape, args=("a",),
                  xp_forward=lambda xp, a: _xp_linalg(xp, "slogdet")(a)[0])


def det(a):
    """``np.linalg.det``: the determinant of a square matrix, or of each of a stack
    (..., n, n); 0 for a singular one, as NumPy's. Its gradient, det·A⁻ᵀ, is refused there
    (inv's singular-matrix error; PyTorch's takes the adjugate through an SVD)."""
    return apply(_det, _square(a, "det"))


def slogdet(a):
    """``np.linalg.slogdet``: (sign, logabsdet) of a square matrix or of each of a stack,
    det = sign * exp(logabsdet) without over- or underflow; (0, -inf) for a singular one.
    The sign has no gradient; logabsdet's is A⁻ᵀ."""
    a = _square(a, "slogdet")
    return apply(_det_sign, a), apply(_logabsdet, a)
