"""Sorting and the gather/scatter family: ops whose integer index arrays are data.

The indices are op INPUTS (with no gradient rule), not static parameters, so a
compiled function takes new indices on every call; each forward checks them, so
eager and compiled code refuse the same out-of-range index with the same message.
Gradients route through the indices: a gather's VJP is a scatter-add into zeros
(repeated indices accumulate), whose own VJP is the gather again.

NumPy's names and conventions where NumPy has the function (``take``,
``take_along_axis``, ``sort``, ``argsort``: negative indices count from the end);
PyTorch's where only PyTorch has it (``gather``, ``scatter``, ``scatter_reduce``,
``index_select``, ``masked_fill``, ``topk``: argument order ``(x, dim, index)``,
negative indices refused, as PyTorch). ``rg.scatter_add`` stays getitem's adjoint
(ops/shape.py); PyTorch's ``scatter_add(x, dim, index, src)`` is
``scatter_reduce(x, dim, index, src, "sum")``.
"""
from __future__ import annotations

import builtins
from collections import namedtuple

import numpy as np

from ..arrays import device, kind, namespace, numpy_dtype, reduce_at, to_numpy
from ..errors import RetrogradError, ShapeError
from ..tensor import Tensor
from .base import apply, defop
from .elementwise import logical_and, mask_like, where
from .shape import add_along, astype, broadcast_to, getitem, norm_axes, reshape

# what cummax, cummin and topk return, as PyTorch's named tuples
ValuesIndices = namedtuple("ValuesIndices", "values indices")


def _shape(x):
    return x.shape if isinstance(x, Tensor) else np.shape(x)


def _index(i):
    """An index argument as a Tensor (a graph value stays one) or an integer array."""
    if isinstance(i, Tensor):
        return i
    a = np.asarray(i)
    return a.astype(np.int64) if a.size == 0 and a.dtype.kind == "f" else a   # [] is float


def _check(idx, n, axis, who, op):
    """Refuse non-integer or out-of-range indices (run by each forward of ``op``). ``who``:
    the PyTorch-named function called (negative indices refused, as PyTorch; named in the
    message where it is not the op), or None (NumPy's rule: -n <= i < n)."""
    if kind(idx.dtype) not in "iu":
        raise TypeError(f"indices must be integers, got {idx.dtype}")
    if idx.size:
        if type(idx) is np.ndarray:
            lo, hi = idx.min(), idx.max()
        else:
            xp = namespace(idx)
            lo, hi = int(xp.min(idx)), int(xp.max(idx))
        low = 0 if who else -n
        if hi >= n or lo < low:
            bad = hi if hi >= n else lo
            at = f" (in rg.{who})" if who and who != op else ""
            raise IndexError(f"index {bad} is out of range for axis {axis} of size {n}{at}")


def _along(idx, axis):
    """The fancy index of ``x[i_0, .., idx[i], .., i_n]`` for every position i of idx (the
    index of torch.gather: idx may be smaller than x in the other axes)."""
    nd = idx.ndim
    return tuple(idx if d == axis else
                 np.arange(idx.shape[d]).reshape((-1,) + (1,) * (nd - d - 1))
                 for d in range(nd))


def _wrapped(xp, idx, n):
    """Negative indices (checked to be >= -n) counted from the end, in namespace xp."""
    return xp.where(idx < 0, idx + n, idx)


def _flat_along(xp, idx, axis, shape):
    """The flat positions in an array of ``shape`` of _along(idx, axis), in xp."""
    nd, dev = idx.ndim, device(idx)
    at = _wrapped(xp, idx, shape[axis])
    lin, stride = at * 0, 1
    for d in reversed(range(nd)):
        c = at if d == axis else xp.reshape(xp.arange(idx.shape[d], device=dev),
                                            (-1,) + (1,) * (nd - d - 1))
        lin, stride = lin + c * stride, stride * shape[d]
    return xp.reshape(lin, (-1,))


# ---------------------------------------------------------------- take (np.take)

def _take(x, idx, axis, who):
    _check(idx, x.shape[axis], axis, who, "take")
    return np.take(x, idx, axis=axis)


def _sum_into(shape, lin, g):
    """zeros(shape) with each g entry added at its flat position ``lin`` (repeats
    accumulate): np.bincount, ~7x np.add.at for floats (it adds in float64, so float32
    sums are rounded once); np.add.at for other dtypes."""
    size = int(np.prod(shape))
    if g.dtype.kind == "f":
        out = np.bincount(lin.ravel(), weights=g.ravel(), minlength=size)
        return out.astype(g.dtype, copy=False).reshape(shape)
    out = np.zeros(size, g.dtype)
    np.add.at(out, lin.ravel(), g.ravel())
    return out.reshape(shape)


def _take_add(g, idx, axis, n):
    pre, post = g.shape[:axis], g.shape[axis + idx.ndim:]
    p, q = int(np.prod(pre)), int(np.prod(post))
    i = np.where(idx < 0, idx + n, idx).reshape(1, -1, 1)      # (checked by take's forward)
    lin = (np.arange(p).reshape(-1, 1, 1) * n + i) * q + np.arange(q)
    return _sum_into(pre + (n,) + post, lin, g)


def _take_in(xp, x, idx, axis, who):
    _check(idx, x.shape[axis], axis, who, "take")
    out = xp.take(x, xp.reshape(_wrapped(xp, idx, x.shape[axis]), (-1,)), axis=axis)
    return xp.reshape(out, x.shape[:axis] + tuple(idx.shape) + x.shape[axis + 1:])


def _take_add_in(xp, g, idx, axis, n):
    flat = g.shape[:axis] + (idx.size,) + g.shape[axis + idx.ndim:]
    return add_along(xp, xp.reshape(g, flat), xp.reshape(_wrapped(xp, idx, n), (-1,)), axis, n)


_take_op = defop("take", _take, (
    lambda g, out, x, idx, axis, who: apply(_take_add_op, g, idx, axis=axis, n=x.shape[axis]),
    None), reads=((1,), ()), fresh=True, args=("x", "indices"), xp_forward=_take_in)
_take_add_op = defop("take_add", _take_add, (
    lambda g, out, gg, idx, axis, n: apply(_take_op, g, idx, axis=axis, who=None), None),
    reads=((1,), ()), fresh=True, args=("g", "indices"), xp_forward=_take_add_in)


def _axis(axis, x, op):
    nd = len(_shape(x))
    return norm_axes(axis, nd, op, of=f"a {nd}-d tensor", scalar=False)[0]


def take(x, indices, axis=None):
    """Entries of ``x`` at ``indices`` along ``axis`` (None: of x flattened), as np.take;
    the result has the indices' shape in place of that axis."""
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    return apply(_take_op, x, _index(indices), axis=_axis(axis, x, "take"), who=None)


def index_select(x, dim, index):
    """torch.index_select: the entries at the 1-D ``index`` along ``dim``."""
    index = _index(index)
    if len(_shape(index)) > 1:
        raise ShapeError(f"index_select: index must be 1-D, got shape {tuple(_shape(index))}")
    return apply(_take_op, x, index, axis=_axis(dim, x, "index_select"), who="index_select")


# ---------------------------------------------------------------- gather (torch.gather)

def _gather(x, idx, axis, who):
    _check(idx, x.shape[axis], axis, who, "gather")
    return x[_along(idx, axis)]


def _gather_add(g, idx, axis, shape, who):
    _check(idx, shape[axis], axis, who, "gather_add")     # (scatter_reduce's sum and mean)
    at = list(_along(idx, axis))
    at[axis] = np.where(idx < 0, idx + shape[axis], idx)
    return _sum_into(shape, np.ravel_multi_index(np.broadcast_arrays(*at), shape), g)


def _gather_in(xp, x, idx, axis, who):
    _check(idx, x.shape[axis], axis, who, "gather")
    # the standard's take_along_axis, on x cut to the index's extent in the other axes
    x = x[tuple(slice(None) if d == axis else slice(0, n) for d, n in enumerate(idx.shape))]
    return xp.take_along_axis(x, _wrapped(xp, idx, x.shape[axis]), axis=axis)


def _gather_add_in(xp, g, idx, axis, shape, who):
    _check(idx, shape[axis], axis, who, "gather_add")
    size = int(np.prod(shape))
    return xp.reshape(reduce_at(xp, size, _flat_along(xp, idx, axis, shape),
                                xp.reshape(g, (-1,))), shape)


_gather_op = defop("gather", _gather, (
    lambda g, out, x, idx, axis, who: apply(_gather_add_op, g, idx, axis=axis, shape=x.shape,
                                            who=None),
    None), reads=((1,), ()), fresh=True, args=("x", "index"), xp_forward=_gather_in)
_gather_add_op = defop("gather_add", _gather_add, (
    lambda g, out, gg, idx, axis, shape, who: apply(_gather_op, g, idx, axis=axis, who=None),
    None),
    reads=((1,), ()), fresh=True, args=("g", "index"), xp_forward=_gather_add_in)


def _same_ndim(op, x, index):
    sx, si = tuple(_shape(x)), tuple(_shape(index))
    if len(sx) != len(si):
        raise ShapeError(f"{op}: index must have as many axes as the input, got shapes {si} "
                         f"and {sx}")
    return sx, si


def _torch_args(op, x, dim, index):
    """(dim, index) checked as PyTorch's gather and scatter take them: the index has x's
    number of axes and is no larger than x outside ``dim``."""
    index = _index(index)
    sx, si = _same_ndim(op, x, index)
    dim = _axis(dim, x, op)
    if any(a > b for d, (a, b) in enumerate(zip(si, sx)) if d != dim):
        raise ShapeError(f"{op}: index of shape {si} is larger than the input's {sx} "
                         f"outside axis {dim}")
    return dim, index


def gather(x, dim, index):
    """torch.gather: ``out[i][j] = x[index[i][j]][j]`` for dim 0 (and so on); index has
    x's number of axes and is no larger than x in the others."""
    dim, index = _torch_args("gather", x, dim, index)
    return apply(_gather_op, x, index, axis=dim, who="gather")


def take_along_axis(x, indices, axis):
    """np.take_along_axis: ``indices`` (as many axes as x) pick along ``axis``; the other
    axes broadcast (axis None: of x flattened, with 1-D indices)."""
    indices = _index(indices)
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    sx, si = _same_ndim("take_along_axis", x, indices)
    axis = _axis(axis, x, "take_along_axis")
    try:
        b = np.broadcast_shapes(sx[:axis] + (1,) + sx[axis + 1:], si[:axis] + (1,) + si[axis + 1:])
    except ValueError:
        raise ShapeError(f"take_along_axis: indices of shape {si} do not broadcast against the "
                         f"input's {sx} outside axis {axis}") from None
    x = broadcast_to(x, b[:axis] + (sx[axis],) + b[axis + 1:])
    indices = broadcast_to(indices, b[:axis] + (si[axis],) + b[axis + 1:])
    return apply(_gather_op, x, indices, axis=axis, who=None)


# ---------------------------------------------------------------- scatter (torch.scatter)

def _scatter(x, idx, src, axis, who):
    _check(idx, x.shape[axis], axis, who, "scatter")
    out = x.copy()
    out[_along(idx, axis)] = src      # a repeated index keeps one of its values (as PyTorch)
    return out


def _last_writes(xp, idx, axis, shape):
    """(places, which): the distinct flat places _along(idx, axis) writes to (host) and,
    for each, the position in idx of its last write (the one NumPy's x[at] = v keeps)."""
    lin = to_numpy(_flat_along(xp, idx, axis, shape))
    places, first = np.unique(lin[::-1], return_index=True)
    return places, len(lin) - 1 - first


def _scattered_in(xp, x, places, values):
    """x with its flat ``places`` (host) set to ``values`` (one each), in namespace xp."""
    size, dev = int(np.prod(x.shape)), device(x)
    hit = np.zeros(size, bool)
    hit[places] = True
    placed = reduce_at(xp, size, places, values)
    out = xp.where(xp.asarray(hit, device=dev), placed, xp.reshape(x, (-1,)))
    return xp.reshape(out, x.shape)


def _scatter_in(xp, x, idx, src, axis, who):
    _check(idx, x.shape[axis], axis, who, "scatter")
    places, which = _last_writes(xp, idx, axis, x.shape)
    if isinstance(src, (int, float)):
        values = xp.full((len(places),), src, dtype=x.dtype, device=device(x))
    else:
        values = xp.take(xp.reshape(src, (-1,)), xp.asarray(which, device=device(x)), axis=0)
    return _scattered_in(xp, x, places, values)


# x's gradient is g with the overwritten entries zeroed: the same scatter, of 0
_scatter_op = defop("scatter", _scatter, (
    lambda g, out, x, idx, src, axis, who: apply(_scatter_op, g, idx, 0.0, axis=axis, who=None),
    None,
    lambda g, out, x, idx, src, axis, who: apply(_gather_op, g, idx, axis=axis, who=None)),
    reads=((1,), (), (1,)), fresh=True, args=("x", "index", "src"), xp_forward=_scatter_in)


def _src_for(op, index, src, x):
    """``src`` cut to the index's shape (PyTorch uses only that part of a larger src)."""
    si = tuple(_shape(index))
    if isinstance(src, (int, float)) and not isinstance(src, bool):
        return float(src) if kind(numpy_dtype(getattr(x, "dtype", np.float64))) in "fc" else src
    ss = tuple(_shape(src))
    if len(ss) != len(si) or any(a < b for a, b in zip(ss, si)):
        raise ShapeError(f"{op}: src of shape {ss} must have the index's axes and be at least "
                         f"as large as it, got index shape {si}")
    return src if ss == si else getitem(src, tuple(builtins.slice(0, n) for n in si))


def scatter(x, dim, index, src):
    """torch.scatter (out of place): x with ``out[index[i][j]][j] = src[i][j]`` for dim 0
    (and so on); ``src`` a tensor or a number. x's gradient is 0 where it is overwritten,
    src's is the gradient gathered at the index."""
    dim, index = _torch_args("scatter", x, dim, index)
    return apply(_scatter_op, x, index, _src_for("scatter", index, src, x), axis=dim,
                 who="scatter")


# ---------------------------------------------------------------- scatter_reduce

_REDUCE = {"amax": (np.maximum, -np.inf), "amin": (np.minimum, np.inf), "prod": (np.multiply, 1)}


def _scatter_ext(x, idx, src, axis, reduce, include_self, who):
    _check(idx, x.shape[axis], axis, who, "scatter_reduce")
    ufunc, init = _REDUCE[reduce]
    out = x.copy()
    at = _along(idx, axis)
    if not include_self:
        out[at] = init
    ufunc.at(out, at, src)
    return out


_HOW = {"amax": "max", "amin": "min", "prod": "prod"}
_COMBINE = {"amax": "maximum", "amin": "minimum", "prod": "multiply"}


def _scatter_ext_in(xp, x, idx, src, axis, reduce, include_self, who):
    _check(idx, x.shape[axis], axis, who, "scatter_reduce")
    lin = to_numpy(_flat_along(xp, idx, axis, x.shape))
    size = int(np.prod(x.shape))
    red = xp.reshape(reduce_at(xp, size, lin, xp.reshape(src, (-1,)), _HOW[reduce]), x.shape)
    if include_self:                   # (the reduction's identity where nothing points)
        return getattr(xp, _COMBINE[reduce])(x, red)
    hit = np.zeros(size, bool)
    hit[lin] = True
    return xp.where(xp.asarray(hit.reshape(x.shape), device=device(x)), red, x)


def _scattered(idx, axis, like):
    """1 where some index points, else 0, in ``like``'s shape (a constant)."""
    ones = np.ones(_shape(idx), numpy_dtype(like.dtype))
    return mask_like(apply(_gather_add_op, ones, idx, axis=axis, shape=like.shape, who=None) > 0,
                     like)


def _ext_shares(out, x, idx, src, axis, include_self):
    """For amax/amin: the share of the gradient of each x and src entry, as PyTorch: the
    entries equal to the result split it evenly (a 0 share for the others). Without
    include_self, x's entries at scattered places take no part (PyTorch counts their ties
    all the same, so its shares there add up to less than the gradient)."""
    hit_x = mask_like(x == out, x)
    if not include_self:
        hit_x = hit_x * (1 - _scattered(idx, axis, x))
    hit_src = mask_like(src == apply(_gather_op, out, idx, axis=axis, who=None), src)
    count = hit_x + apply(_gather_add_op, hit_src, idx, axis=axis, shape=x.shape, who=None)
    count = where(count == 0, 1, count)
    return hit_x / count, hit_src, count


def _prod_x_vjp(g, out, x, idx, src, axis, include_self):
    # the product of the others at x's place: the result with x's zeros set to 1, over x
    # (an identity where x != 0; with no division where x == 0), as PyTorch's rule
    mx = where(x == 0, 1, x)
    r = apply(_scatter_ext_op, mx, idx, src, axis=axis, reduce="prod",
              include_self=include_self, who=None)
    gx = g * (r / mx)
    return gx if include_self else gx * (1 - _scattered(idx, axis, x))


def _prod_src_vjp(g, out, x, idx, src, axis, include_self):
    # likewise for src; a zero of src alone at its place has the product of the others
    # (with it set to 1), one of several zeros there 0 (to first order: the mixed second
    # derivative of two zeros at one place is left out; PyTorch refuses it)
    zero = src == 0
    z = astype(zero, src.dtype)
    there = apply(_gather_add_op, z, idx, axis=axis, shape=x.shape, who=None)
    zeros_there = apply(_gather_op, there, idx, axis=axis, who=None)
    single = logical_and(zero, zeros_there == 1)
    r = apply(_scatter_ext_op, x, idx, where(single, 1, src), axis=axis, reduce="prod",
              include_self=include_self, who=None)
    alone = apply(_gather_op, g * r, idx, axis=axis, who=None)
    other = apply(_gather_op, g * out, idx, axis=axis, who=None) / where(zero, 1, src)
    return where(single, alone, other)


def _ext_x_vjp(g, out, x, idx, src, axis, reduce, include_self, who):
    if reduce == "prod":
        return _prod_x_vjp(g, out, x, idx, src, axis, include_self)
    return g * _ext_shares(out, x, idx, src, axis, include_self)[0]


def _ext_src_vjp(g, out, x, idx, src, axis, reduce, include_self, who):
    if reduce == "prod":
        return _prod_src_vjp(g, out, x, idx, src, axis, include_self)
    _, hit_src, count = _ext_shares(out, x, idx, src, axis, include_self)
    return apply(_gather_op, g / count, idx, axis=axis, who=None) * hit_src


_scatter_ext_op = defop("scatter_reduce", _scatter_ext, (_ext_x_vjp, None, _ext_src_vjp),
                        reads=((0, 1, 2, "out"), (), (0, 1, 2, "out")), fresh=True,
                        args=("x", "index", "src"), xp_forward=_scatter_ext_in)


def scatter_reduce(x, dim, index, src, reduce, include_self=True):
    """torch.scatter_reduce (out of place): src's entries reduced into x at the index along
    ``dim`` by "sum", "prod", "mean", "amax" or "amin" (``include_self``: x's own entries
    take part). Gradients as PyTorch's (amax/amin: tied entries share evenly; prod: exact
    at zeros to first order)."""
    if reduce not in ("sum", "prod", "mean", "amax", "amin"):
        raise RetrogradError(f"scatter_reduce: reduce must be 'sum', 'prod', 'mean', 'amax' or "
                             f"'amin', got {reduce!r}")
    dim, index = _torch_args("scatter_reduce", x, dim, index)
    if not isinstance(src, Tensor):
        dtype = getattr(x, "dtype", None)
        src = np.asarray(src, dtype=None if dtype is None else numpy_dtype(dtype))
    src = _src_for("scatter_reduce", index, src, x)
    if reduce in _REDUCE:
        return apply(_scatter_ext_op, x, index, src, axis=dim, reduce=reduce,
                     include_self=bool(include_self), who="scatter_reduce")
    # sum and mean: composites (x, or x with the scattered places zeroed, plus a scatter-add)
    base = x if include_self else apply(_scatter_op, x, index, 0.0, axis=dim, who="scatter_reduce")
    shape = tuple(_shape(x))
    total = base + apply(_gather_add_op, src, index, axis=dim, shape=shape, who="scatter_reduce")
    if reduce == "sum":
        return total
    ones = np.ones(tuple(_shape(index)), numpy_dtype(getattr(x, "dtype", np.float64)))
    count = apply(_gather_add_op, ones, index, axis=dim, shape=shape, who=None)
    count = count + 1 if include_self else where(count == 0, 1, count)
    return total / count


def masked_fill(x, mask, value):
    """torch.masked_fill (out of place): ``value`` where the boolean ``mask`` (broadcast
    against x) is true, else x; a tensor value gets the gradient of the filled places."""
    m = getattr(mask, "dtype", None)
    if m is None:
        mask = np.asarray(mask)
        m = mask.dtype
    if kind(m) != "b":
        raise RetrogradError(f"masked_fill: mask must be boolean, got {m}")
    out = where(mask, value, x)
    if tuple(out.shape) != tuple(_shape(x)):
        raise ShapeError(f"masked_fill: mask of shape {tuple(_shape(mask))} does not broadcast "
                         f"to the input's shape {tuple(_shape(x))}")
    return out


# ---------------------------------------------------------------- sorting

def _argsort(x, axis, descending):
    if not descending:
        return np.argsort(x, axis=axis, kind="stable")
    # descending and stable: the reverse of the ascending sort of x reversed (ties keep
    # their order; NaN first, as PyTorch's descending sort)
    r = np.flip(np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)
    return x.shape[axis] - 1 - r


def _argsort_in(xp, x, axis, descending):
    if not descending:
        return xp.argsort(x, axis=axis, stable=True)
    r = xp.flip(xp.argsort(xp.flip(x, axis=axis), axis=axis, stable=True), axis=axis)
    return x.shape[axis] - 1 - r


_argsort_op = defop("argsort", _argsort, fresh=True, args=("x",), xp_forward=_argsort_in,
                    doc="The indices that sort x along an axis, stably (no gradient).")


_KINDS = (None, "stable", "mergesort", "quicksort", "heapsort")


def _sort_axis(x, axis, op, kind=None):
    # every sort here is stable, which is a right answer for each of NumPy's kinds
    if kind not in _KINDS:
        raise RetrogradError(f"{op}: kind must be one of {_KINDS[1:]} or None, got {kind!r}")
    if axis is None:
        return reshape(x, (-1,)), 0
    return x, _axis(axis, x, op)


def argsort(x, axis=-1, kind=None, *, descending=False):
    """np.argsort, always stable (ties keep their order; axis None: of x flattened);
    ``descending`` as torch.argsort."""
    x, axis = _sort_axis(x, axis, "argsort", kind)
    return apply(_argsort_op, x, axis=axis, descending=bool(descending))


def sort(x, axis=-1, kind=None, *, descending=False):
    """np.sort: the values only (torch.sort's indices are rg.argsort). Stable; the gradient
    goes back through the permutation, so tied entries keep their own gradients."""
    x, axis = _sort_axis(x, axis, "sort", kind)
    idx = apply(_argsort_op, x, axis=axis, descending=bool(descending))
    return apply(_gather_op, x, idx, axis=axis, who=None)


def topk(x, k, axis=-1, largest=True, sorted=True):
    """torch.topk: (values, indices) of the k largest (``largest=False``: smallest) along
    ``axis``, always sorted, ties in index order."""
    x, axis = _sort_axis(x, axis, "topk")
    n = _shape(x)[axis]
    if not (isinstance(k, (int, np.integer)) and 0 <= k <= n):
        raise ShapeError(f"topk: k must be an int in [0, {n}] (the size of axis {axis}), got {k!r}")
    idx = apply(_argsort_op, x, axis=axis, descending=bool(largest))
    idx = getitem(idx, (builtins.slice(None),) * axis + (builtins.slice(0, int(k)),))
    return ValuesIndices(apply(_gather_op, x, idx, axis=axis, who=None), idx)
