"""Movement ops: they move or copy elements without arithmetic.

Most come in adjoint pairs: reshape/reshape, transpose/transpose,
broadcast_to/sum_to, getitem/scatter_add, pad/getitem, concatenate/getitem.
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from ..arrays import (device, dtype_of, is_foreign, kind, namespace, numpy_dtype, reduce_at,
                      to_numpy)
from ..errors import AxisError, RetrogradError, ShapeError, TraceError
from ..tensor import Tensor, _mode, _unwrap_index, share_version
from . import base as _base
from .base import Kernel, apply, defop, out_kw, tracing
from .rules import op_of, same_shape
from .kernels import column_sums, fsum

_make = Tensor._make


def _shape_of(x):
    return x.shape if isinstance(x, Tensor) else np.shape(x)


def norm_axes(axis, ndim, op, *, sort=False, of=None, scalar=True, unique=True):
    """``axis`` (None, an int or a sequence of ints) as a tuple of axes in 0..ndim-1, in
    the order given (``sort``: ascending); None stays None (all axes). The one axis
    normaliser of the ops: an axis out of range raises AxisError (a ShapeError and an
    IndexError, as NumPy's), a repeated one (``unique``) ShapeError. ``of``: what has the
    ``ndim`` axes, for the message; ``scalar``: a 0-d tensor has the axis 0 (a reduction
    over it), as NumPy's reductions allow."""
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    top = builtins.max(ndim, 1) if scalar else ndim
    out = []
    for a in axes:
        if not -ndim <= a < top:
            raise AxisError(f"{op}: axis {a} is out of range for "
                            f"{of or f'a {ndim}-d tensor'}")
        out.append(int(a) % top)
    if unique and len(set(out)) != len(out):
        raise ShapeError(f"{op}: repeated axis in {axis}")
    return tuple(sorted(out)) if sort else tuple(out)


# ---------------------------------------------------------------- astype

def _astype_vjp(g, out, x, dtype):
    return astype(g, x.dtype) if kind(x.dtype) in "fc" else None


_astype = defop("astype", lambda x, dtype: x.astype(dtype, copy=False), (_astype_vjp,), reads=((),),
                simplify=lambda n: n.inputs[0] if n.dtype == n.inputs[0].dtype else None,
                lowering="cast",
                xp_forward=lambda xp, x, dtype: xp.astype(x, dtype_of(xp, dtype), copy=False))


def astype(x, dtype):
    """Cast to ``dtype``; the gradient is cast back (float -> float only)."""
    try:                                    # (a param: NumPy's, whatever x's namespace)
        dtype = np.dtype(dtype) if isinstance(dtype, (type, str, np.dtype)) else numpy_dtype(dtype)
    except TypeError as e:
        raise RetrogradError(f"astype: {dtype!r} is not a dtype ({e})") from None
    if isinstance(x, Tensor) and numpy_dtype(x.dtype) == dtype:
        return x
    return apply(_astype, x, dtype=dtype)


# ---------------------------------------------------------------- reshape / transpose

def _reshape_rule(n):
    x = n.inputs[0]
    if n.shape == x.shape:
        return x
    if op_of(x) is _reshape:                       # a reshape of a reshape: one reshape
        return _reshape, x.inputs, n.params
    return None


# (the ndarray method: np.reshape is ~4x slower on the small arrays of a VJP)
_reshape = defop("reshape", lambda x, shape: x.reshape(shape),
                 (lambda g, out, x, shape: reshape(g, x.shape),), reads=((),),
                 kernel=lambda n: Kernel(lambda a, o: f"{a[0]}.reshape({n.params['shape']!r})",
                                         fresh=False),
                 simplify=_reshape_rule,
                 xp_forward=lambda xp, x, shape: xp.reshape(x, shape))


def reshape(x, *shape):
    """``x.reshape(2, -1)`` or ``rg.reshape(x, (2, -1))``."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    shape = tuple(map(int, shape))
    old = _shape_of(x)
    if shape == old:
        return x
    size = math.prod(old)
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if known == 0 or size % known or shape.count(-1) > 1:
            raise ShapeError(f"reshape: cannot reshape shape {old} into {shape}")
        shape = tuple(size // known if s == -1 else s for s in shape)
    elif math.prod(shape) != size:
        raise ShapeError(f"reshape: cannot reshape shape {old} ({size} elements) "
                         f"into {shape} ({math.prod(shape)} elements)")
    return share_version(apply(_reshape, x, shape=shape), x)


def _transpose_rule(n):
    x = n.inputs[0]                                # a transpose undoing a transpose
    if op_of(x) is _transpose:
        inner, outer = x.params["axes"], n.params["axes"]
        if tuple(inner[a] for a in outer) == tuple(range(len(outer))):
            return x.inputs[0]
    return None


def _inverse(axes):
    """The permutation that undoes ``axes`` (Python ints: np.argsort of a tuple costs 2.5 us
    alone and took 7-22 us inside B4's eager HVP step, a transpose VJP's whole time)."""
    inverse = [0] * len(axes)
    for i, a in enumerate(axes):
        inverse[a] = i
    return tuple(inverse)


_transpose = defop("transpose", lambda x, axes: x.transpose(axes),    # (np.transpose's method)
                   (lambda g, out, x, axes: transpose(g, _inverse(axes)),), reads=((),),
                   kernel=lambda n: Kernel(lambda a, o: f"{a[0]}.T", fresh=False)
                   if n.params["axes"] == (1, 0) else None,
                   simplify=_transpose_rule, lowering="view_T",
                   xp_forward=lambda xp, x, axes: xp.permute_dims(x, axes))


def transpose(x, axes=None):
    """Permute axes (reverse them when ``axes`` is None), as ``np.transpose``."""
    ndim = len(_shape_of(x))
    if axes is None:
        if ndim == 2:
            return share_version(apply(_transpose, x, axes=(1, 0)), x)
        axes = tuple(range(ndim - 1, -1, -1))
    axes = norm_axes(axes, ndim, "transpose", unique=False)    # (checked as a permutation)
    if sorted(axes) != list(range(ndim)):
        raise ShapeError(f"transpose: axes {axes} are not a permutation of a {ndim}-d tensor's axes")
    if axes == tuple(range(ndim)):
        return x
    return share_version(apply(_transpose, x, axes=axes), x)


def rule_t(x):
    """``x.T`` of a matrix inside a VJP rule. Unrecorded (no create_graph), the view is only
    the next product's operand -- never returned, saved or written to -- so it needs no
    share of x's version counter (share_version: ~2 us, twice per matmul node); recorded,
    it is a graph node and gets one, as ``transpose`` gives every view."""
    if (isinstance(x, Tensor) and type(x._data) is np.ndarray and not _base._n_captures
            and _base.anomaly_hook is None and not (x.requires_grad and _mode.enabled)):
        # nothing to record, capture (no trace runs) or check: apply's result, without its
        # ~1 us of dispatch (a Buffer's op, untraced, reads its array too)
        return _make(x._data.T)
    out = apply(_transpose, x, axes=(1, 0))
    return out if out._op is None and type(out) is Tensor else share_version(out, x)


def _of_shape(shape):
    return f"a {len(shape)}-d tensor of shape {tuple(shape)}"


def swapaxes(x, axis1, axis2):
    shape = _shape_of(x)
    ndim = len(shape)
    axis1, axis2 = norm_axes((axis1, axis2), ndim, "swapaxes", of=_of_shape(shape),
                             scalar=False, unique=False)
    axes = list(range(ndim))
    axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
    return transpose(x, axes)


def expand_dims(x, axis):
    shape = list(_shape_of(x))
    nd = len(shape) + (1 if isinstance(axis, (int, np.integer)) else len(axis))
    for a in norm_axes(axis, nd, "expand_dims", sort=True,
                       of=f"the {nd}-d result of expanding shape {tuple(shape)}"):
        shape.insert(a, 1)
    return reshape(x, shape)


def squeeze(x, axis=None):
    shape = _shape_of(x)
    if axis is None:
        axes = {i for i, s in enumerate(shape) if s == 1}
    else:
        axes = set(norm_axes(axis, len(shape), "squeeze", of=_of_shape(shape), scalar=False,
                             unique=False))
        bad = [a for a in axes if shape[a] != 1]
        if bad:
            raise ShapeError(f"squeeze: axis {bad[0]} of shape {shape} has size {shape[bad[0]]}, not 1")
    return reshape(x, [s for i, s in enumerate(shape) if i not in axes])


def flatten(x, start_axis=0):
    shape = _shape_of(x)
    if shape:
        norm_axes(start_axis, len(shape), "flatten", of=_of_shape(shape), scalar=False)
    return reshape(x, tuple(shape[:start_axis]) + (-1,))


# ---------------------------------------------------------------- detach

stop_gradient = defop("stop_gradient", lambda x: x, None, fresh=False, args=("x",),
                      doc="x itself, cut from the gradient (jax.lax.stop_gradient): what "
                          "detach() records in a graph")
_eager_detach = Tensor.detach


def detach(x):
    """``x.detach()``: the same values, with no gradient flowing back. Eagerly a new
    Tensor sharing ``x``'s array; on a parameter inside rg.compile a ``stop_gradient``
    node, so the compiled code reads the live value on every call (a plain detached copy
    would be frozen into the trace as a constant). A graph value (graph.Var) records
    the node itself."""
    if x.requires_grad and tracing():
        return apply(stop_gradient, x)
    return _eager_detach(x)


# ---------------------------------------------------------------- broadcast_to / sum_to

def _leading_rows(x, n):
    """x (..., n) as a matrix (m, n) of its rows: a view where the leading axes merge (a
    slice of a bigger array's last axis, as an LSTM's gate gradients, too)."""
    m = math.prod(x.shape[:-1])
    return x.reshape(m, n) if type(x) is np.ndarray else namespace(x).reshape(x, (m, n))


def _sum_to(x, shape):
    if x.ndim >= 2 and len(shape) == 1 and x.shape[-1] == shape[0]:
        # a bias gradient (every leading axis summed): the common case, directly
        return column_sums(x if x.ndim == 2 else _leading_rows(x, shape[0]))
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape)
                                      if s == 1 and x.shape[i + lead] != 1)
    out = fsum(x, axis=axes, keepdims=True) if axes else x
    if not lead:
        return out
    return out.reshape(shape) if type(out) is np.ndarray else namespace(out).reshape(out, shape)


def _bias_kernel(n):
    # a bias gradient, (..., n) summed to (n,): the column sums as one BLAS call ones @ g
    # (kernels.column_sums, which eager mode calls, so both round alike)
    (x,) = n.inputs
    if len(x.shape) < 2 or n.shape != (x.shape[-1],) or n.dtype.kind != "f":
        return None
    key, m = f"ones{n.id}", math.prod(x.shape[:-1])
    rows = "" if len(x.shape) == 2 else f".reshape({m}, {x.shape[-1]})"
    return Kernel(lambda a, o: f"np.matmul({key}, {a[0]}{rows}{out_kw(o)})", True, False,
                  consts={key: np.ones(m, n.dtype)})


_broadcast_to = defop("broadcast_to", lambda x, shape: np.broadcast_to(x, shape),
                      (lambda g, out, x, shape: sum_to(g, x.shape),), reads=((),),
                      simplify=same_shape, scalar=lambda x, shape: x,
                      xp_forward=lambda xp, x, shape: xp.broadcast_to(x, shape))
_sum_to_op = defop("sum_to", _sum_to, (lambda g, out, x, shape: broadcast_to(g, x.shape),),
                   reads=((),), kernel=_bias_kernel, simplify=same_shape, lowering="reduce_to")


def broadcast_to(x, shape):
    shape = tuple(shape)
    old = _shape_of(x)
    if old == shape:
        return x
    if len(old) > len(shape) or any(a != b and a != 1 for a, b in zip(old[::-1], shape[::-1])):
        raise ShapeError(f"broadcast_to: cannot broadcast shape {tuple(old)} to {shape}")
    return share_version(apply(_broadcast_to, x, shape=shape), x)


def sum_to(x, shape):
    """Sum a broadcast array back down to ``shape`` (the adjoint of broadcast_to)."""
    shape = tuple(shape)
    old = _shape_of(x)
    if old == shape:
        return x
    if len(shape) > len(old) or any(b != a and b != 1 for a, b in zip(old[::-1], shape[::-1])):
        raise ShapeError(f"sum_to: cannot sum shape {tuple(old)} down to {shape} (each axis of "
                         "the target must match or be 1)")
    return apply(_sum_to_op, x, shape=shape)


# ---------------------------------------------------------------- indexing

def _is_basic(idx) -> bool:
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice)) for i in items)


def _add_at(acc, g, x, idx):
    """acc[idx] += g in place, repeated integer indices accumulating (getitem's adjoint
    into an adjoint array; x, the indexed input, is not read)."""
    if _is_basic(idx):
        acc[idx] += g                # basic indexing never repeats an element
    else:
        np.add.at(acc, idx, g)


def _scatter_add(g, idx, shape):
    out = np.zeros(shape, dtype=g.dtype)
    _add_at(out, g, None, idx)
    return out


def _full_basic(idx):
    """A basic index as the standard takes it: a tuple naming every axis (a trailing
    Ellipsis where it has none; NumPy fills in the axes it leaves out itself)."""
    items = idx if isinstance(idx, tuple) else (idx,)
    items = tuple(int(i) if isinstance(i, np.integer) else i for i in items)
    return items if any(i is Ellipsis for i in items) else items + (Ellipsis,)


def positions(shape, idx) -> np.ndarray:
    """The flat (C-order) positions in an array of ``shape`` of the entries ``x[idx]``
    picks, computed by NumPy on the host from the static index (NumPy's rules for
    integer arrays, masks, slices and None; its IndexError for an index out of range):
    one coordinate grid per axis, each a broadcast view, indexed at the result's size."""
    stride, pos = 1, np.broadcast_to(np.intp(0), shape)[idx]
    for d in reversed(range(len(shape))):
        axis = np.arange(shape[d]).reshape((-1,) + (1,) * (len(shape) - d - 1)) * stride
        pos = pos + np.broadcast_to(axis, shape)[idx]
        stride *= shape[d]
    return pos


def _getitem_in(xp, x, idx):
    """x[idx] in namespace xp: basic indices by the standard's own indexing (views where
    the library makes them); integer arrays and masks as one gather of x's entries."""
    if _is_basic(idx):
        return x[_full_basic(idx)]
    pos = positions(x.shape, idx)
    flat = xp.take(xp.reshape(x, (-1,)), xp.asarray(pos.reshape(-1), device=device(x)), axis=0)
    return xp.reshape(flat, pos.shape)


def _scatter_add_in(xp, g, idx, shape):
    if _is_basic(idx):                   # basic indexing never repeats an element
        out = xp.zeros(shape, dtype=g.dtype, device=device(g))
        at = tuple(i for i in _full_basic(idx) if i is not None)   # (no None in a setitem)
        out[at] = xp.reshape(g, out[at].shape)
        return out
    pos = positions(shape, idx)
    g = xp.reshape(xp.broadcast_to(g, pos.shape), (-1,))
    return xp.reshape(reduce_at(xp, math.prod(shape), pos.reshape(-1), g), shape)


_getitem = defop("getitem", lambda x, idx: x[idx],
                 (lambda g, out, x, idx: scatter_add(g, idx, x.shape),), reads=((),),
                 xp_forward=_getitem_in, accumulate=_add_at)
_scatter = defop("scatter_add", _scatter_add, (lambda g, out, gg, idx, shape: getitem(g, idx),),
                 reads=((),), fresh=True, xp_forward=_scatter_add_in)


# The traced backward of a loop over x[t] adds L scatter_adds, each a whole-x array of
# zeros but for its slice (L² work for L steps); the simplify pass folds such a sum into
# one scatter_sum, which adds each term into its slice of one array (linear). (Eager
# first-order backward has getitem's accumulate= for the same job.)

def _scatter_sum_forward(*arrays, idxs, shape, base):
    """zeros(shape), or a copy of arrays[0] where ``base``, with each further array added
    at its index in ``idxs``."""
    terms = arrays[1:] if base else arrays
    out = np.array(arrays[0], copy=True) if base else np.zeros(shape, dtype=terms[0].dtype)
    for g, idx in zip(terms, idxs):
        _add_at(out, g, None, idx)
    return out


def _xp_scatter_sum(xp, *arrays, idxs, shape, base):
    terms = arrays[1:] if base else arrays
    out = arrays[0] if base else None
    for g, idx in zip(terms, idxs):
        part = _scatter_add_in(xp, g, idx, shape)
        out = part if out is None else out + part
    return out


_scatter_sum = defop(
    "scatter_sum", _scatter_sum_forward,
    lambda g, out, *xs, idxs, shape, base: [g] * base + [getitem(g, i) for i in idxs],
    variadic=True, reads=((),), fresh=True, xp_forward=_xp_scatter_sum,
    doc="A sum of scatter_adds (and of one full-shape term, where base) as one op.")


def _scatter_terms(x):
    """(base node or None, [terms], (their indices)) of a scatter_add or scatter_sum node
    ``x``, else None."""
    op = op_of(x)
    if op is _scatter and x.inputs[0].kind != "const" and x.inputs[0].dtype == x.dtype:
        return None, [x.inputs[0]], (x.params["idx"],)
    if op is _scatter_sum:
        ins, base = list(x.inputs), x.params["base"]
        return (ins[0] if base else None), ins[base:], x.params["idxs"]
    return None


def fuse_scatters(n):
    """``add``'s rule: a + b where a or b is a scatter_add or scatter_sum of n's shape and
    dtype, the other one too or any value of that shape (at most one such base in all), as
    one scatter_sum."""
    base, terms, idxs = None, [], ()
    found = False
    for x in n.inputs:
        if x.kind == "const" or x.shape != n.shape or x.dtype != n.dtype:
            return None
        parts = _scatter_terms(x)
        if parts is None:
            parts = (x, [], ())
        else:
            found = True
        if parts[0] is not None:
            if base is not None:
                return None
            base = parts[0]
        terms += parts[1]
        idxs += parts[2]
    if not found:
        return None
    return _scatter_sum, ([base] if base is not None else []) + terms, dict(
        idxs=idxs, shape=tuple(n.shape), base=base is not None)


def _canonical_index(idx):
    items = idx if isinstance(idx, (tuple, list)) else (idx,)
    # the index is a static parameter of getitem: it cannot be a graph value (no array)
    traced = next((i for i in items if isinstance(i, Tensor)
                   and not isinstance(i._data, np.ndarray) and not is_foreign(i._data)), None)
    if traced is not None:
        raise TraceError(f"indexing with a traced value ({traced.describe()}): an index must "
                         "be known when the graph is built (a constant array, a slice or an "
                         "int); use rg.where to select by a condition, or run this function "
                         "eagerly (rg.compile(fn, fallback='eager'))")
    idx = _unwrap_index(idx)
    if isinstance(idx, tuple):
        return tuple(_host_index(i) for i in idx)
    return _host_index(idx)


_PLAIN_INDEX = (slice, int, np.integer, np.ndarray, type(None), type(Ellipsis))


def _host_index(i):
    # a list, or an index array of another namespace (a device), as a NumPy array: the
    # static index param is NumPy's, whatever the namespace of the array it indexes
    if isinstance(i, _PLAIN_INDEX):
        return i
    if isinstance(i, list):
        return np.asarray(i)
    return to_numpy(i) if is_foreign(i) else i


def getitem(x, idx):
    """``x[idx]``: slices, ints, None, Ellipsis, integer arrays, boolean masks."""
    return share_version(apply(_getitem, x, idx=_canonical_index(idx)), x)


def scatter_add(g, idx, shape):
    """zeros(shape) with ``g`` added at ``idx`` (the adjoint of getitem)."""
    return apply(_scatter, g, idx=_canonical_index(idx), shape=tuple(shape))


def _pad_vjp(g, out, x, pad_width, constant_values):
    return getitem(g, tuple(builtins.slice(lo, lo + n) for (lo, _), n in zip(pad_width, x.shape)))


def _pad_in(xp, x, pad_width, constant_values):
    """np.pad's constant mode in namespace xp (the standard has no pad): each padded axis
    joined to blocks of the constant; a copy, as np.pad's, where nothing is padded."""
    x = xp.asarray(x, copy=True)
    for axis, (lo, hi) in enumerate(pad_width):
        if lo or hi:
            block = [xp.full(x.shape[:axis] + (k,) + x.shape[axis + 1:], constant_values,
                             dtype=x.dtype, device=device(x)) for k in (lo, hi)]
            x = xp.concat([block[0], x, block[1]], axis=axis)
    return x


_pad = defop("pad", lambda x, pad_width, constant_values:
             np.pad(x, pad_width, mode="constant", constant_values=constant_values), (_pad_vjp,),
             reads=((),), fresh=True, xp_forward=_pad_in)

# the border modes, NumPy's names (PyTorch's 'replicate' and 'circular' are 'edge', 'wrap')
_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "replicate": "edge",
              "wrap": "wrap", "circular": "wrap"}


def _source(mode, lo, hi, n):
    """For each position along a padded axis, the input index it copies."""
    j = np.arange(-lo, n + hi)
    if mode == "edge" or n == 1:
        return np.clip(j, 0, n - 1)
    if mode == "wrap":
        return j % n
    t = j % (2 * n - 2)                            # reflect: period 2(n - 1), edge not repeated
    return np.where(t < n, t, 2 * n - 2 - t)


def _pad_border(x, pad_width, mode):
    # np.pad itself (fast); _source says the same, which the adjoint below folds by
    # (tests/test_linalg_movement.py checks the two agree, borders longer than the axis too)
    return np.pad(x, pad_width, mode=mode)


def _pad_border_in(xp, x, pad_width, mode):
    # _source's copy, axis by axis, as one gather along each padded axis
    for axis, ((lo, hi), n) in enumerate(zip(pad_width, x.shape)):
        if lo or hi:
            x = xp.take(x, xp.asarray(_source(mode, lo, hi, n), device=device(x)), axis=axis)
    return x


def add_along(xp, g, idx, axis, n):
    """The n slices along ``axis`` of zeros with g's slices along ``axis`` added at ``idx``
    (1-D integers in 0..n-1, NumPy's or xp's; repeats accumulate), in namespace xp."""
    moved = xp.moveaxis(g, axis, 0)
    rest = tuple(moved.shape[1:])
    out = reduce_at(xp, n, idx, xp.reshape(moved, (moved.shape[0], math.prod(rest))))
    return xp.moveaxis(xp.reshape(out, (n,) + rest), 0, axis)


def _fold_border_in(xp, g, pad_width, mode, shape):
    # each padded axis: every position of g (border and centre) added onto what it copied
    for axis in reversed(range(len(shape))):
        (lo, hi), n = pad_width[axis], shape[axis]
        if lo or hi:
            g = add_along(xp, g, _source(mode, lo, hi, n), axis, n)
    return g


def _fold_border(g, pad_width, mode, shape):
    """The adjoint of _pad_border: each axis's border added back onto what it copied
    (the axes in reverse order, as the pad applied them in order)."""
    for axis in reversed(range(len(shape))):
        (lo, hi), n = pad_width[axis], shape[axis]
        if not (lo or hi):
            continue
        pre = (builtins.slice(None),) * axis
        out = g[pre + (builtins.slice(lo, lo + n),)].copy()
        src = _source(mode, lo, hi, n)
        for part in (builtins.slice(0, lo), builtins.slice(lo + n, lo + n + hi)):
            idx = src[part]
            if idx.size:
                _add_along(out, pre, idx, g[pre + (part,)], axis)
        g = out
    return g


def _add_along(out, pre, idx, gp, axis):
    """out[..., idx, ...] += gp along ``axis``, repeated indices accumulating: by slices
    where idx is one index (edge) or a run of consecutive ones (reflect, wrap)."""
    step = int(idx[1] - idx[0]) if idx.size > 1 else 0
    if step == 0 and (idx == idx[0]).all():
        out[pre + (builtins.slice(idx[0], idx[0] + 1),)] += gp.sum(axis=axis, keepdims=True)
    elif step in (1, -1) and (np.diff(idx) == step).all():
        stop = idx[-1] + step
        out[pre + (builtins.slice(idx[0], None if stop < 0 else stop, step),)] += gp
    else:                                          # a border longer than the axis
        np.add.at(out, pre + (idx,), gp)


_pad_border_op = defop("pad_border", _pad_border, (
    lambda g, out, x, pad_width, mode: apply(_fold_border_op, g, pad_width=pad_width, mode=mode,
                                             shape=x.shape),), reads=((),), fresh=True,
    xp_forward=_pad_border_in)
_fold_border_op = defop("pad_border_vjp", _fold_border, (
    lambda g, out, gg, pad_width, mode, shape: apply(_pad_border_op, g, pad_width=pad_width,
                                                     mode=mode),), reads=((),), fresh=True,
    xp_forward=_fold_border_in)


def _pad_width(pad_width, shape):
    try:
        pw = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (len(shape), 2))
    except (ValueError, TypeError):
        raise ShapeError(f"pad: pad_width {pad_width!r} does not fit a tensor of shape "
                         f"{tuple(shape)} (an int, a pair, or one pair per axis)") from None
    if (pw < 0).any():
        raise ShapeError(f"pad: pad_width {pad_width!r} has a negative entry")
    return tuple((int(a), int(b)) for a, b in pw)


def pad(x, pad_width, mode="constant", constant_values=0):
    """``np.pad``: ``pad_width`` an int, a pair, or one pair per axis; ``mode`` 'constant'
    (with ``constant_values``), 'reflect' (mirrored, the edge not repeated), 'edge' (alias
    'replicate'), 'wrap' (alias 'circular'). Each border mode's gradient folds the border
    back onto the entries it copied."""
    shape = _shape_of(x)
    pw = _pad_width(pad_width, shape)
    kind = _PAD_MODES.get(mode) if isinstance(mode, str) else None
    if kind is None:
        raise RetrogradError(f"pad: mode must be one of {sorted(_PAD_MODES)}, got {mode!r}")
    if kind == "constant":
        return apply(_pad, x, pad_width=pw, constant_values=constant_values)
    for axis, ((lo, hi), n) in enumerate(zip(pw, shape)):
        if (lo or hi) and n == 0:
            raise ShapeError(f"pad: mode {mode!r} cannot pad axis {axis} of shape {tuple(shape)}: "
                             "it is empty")
    if not any(lo or hi for lo, hi in pw):        # a copy, as np.pad's
        return apply(_pad, x, pad_width=pw, constant_values=0)
    return apply(_pad_border_op, x, pad_width=pw, mode=kind)


# ---------------------------------------------------------------- joining and splitting

def _concat_vjp(g, out, *xs, axis):
    grads, start = [], 0
    for x in xs:
        n = x.shape[axis] if isinstance(x, Tensor) else np.shape(x)[axis]
        idx = (builtins.slice(None),) * axis + (builtins.slice(start, start + n),)
        grads.append(getitem(g, idx))
        start += n
    return grads


def _stack_vjp(g, out, *xs, axis):
    return [getitem(g, (builtins.slice(None),) * axis + (i,)) for i in range(len(xs))]


# (out=: compiled code joins into a planned buffer, not a new array per call -- B6's
# backward joins five (32, 32, 4-6x128) arrays per step; fresh ones cost page faults)
_concatenate = defop("concatenate",
                     lambda *xs, axis, out=None: np.concatenate(xs, axis=axis, out=out),
                     _concat_vjp, variadic=True, reads=((),), fresh=True, out=True,
                     xp_forward=lambda xp, *xs, axis: xp.concat(xs, axis=axis))
_stack = defop("stack", lambda *xs, axis: np.stack(xs, axis=axis), _stack_vjp, variadic=True,
               reads=((),), fresh=True, xp_forward=lambda xp, *xs, axis: xp.stack(xs, axis=axis))


def _norm_axis(axis, ndim, op):
    return norm_axes(axis, ndim, op, of=f"{ndim}-d inputs")[0]


def concatenate(xs, axis=0):
    xs = list(xs)
    if not xs:
        raise ShapeError("concatenate: needs at least one tensor")
    shapes = [_shape_of(x) for x in xs]
    axis = _norm_axis(axis, len(shapes[0]), "concatenate")
    for s in shapes[1:]:
        if len(s) != len(shapes[0]) or any(a != b for i, (a, b) in enumerate(zip(s, shapes[0]))
                                           if i != axis):
            raise ShapeError(f"concatenate: shapes {shapes} differ outside axis {axis}")
    return apply(_concatenate, *xs, axis=axis)


def stack(xs, axis=0):
    xs = list(xs)
    if not xs:
        raise ShapeError("stack: needs at least one tensor")
    shapes = [_shape_of(x) for x in xs]
    if len(set(shapes)) != 1:
        raise ShapeError(f"stack: all tensors must have the same shape, got {shapes}")
    axis = _norm_axis(axis, len(shapes[0]) + 1, "stack")
    return apply(_stack, *xs, axis=axis)


def split(x, indices_or_sections, axis=0):
    """Like ``np.split``: a list of views, each an ordinary (differentiable) slice."""
    shape = _shape_of(x)
    axis = _norm_axis(axis, len(shape), "split")
    n = shape[axis]
    if isinstance(indices_or_sections, (int, np.integer)):
        k = int(indices_or_sections)
        if k <= 0 or n % k:
            raise ShapeError(f"split: axis {axis} of size {n} does not split into {k} equal parts")
        bounds = [i * (n // k) for i in range(k + 1)]
    else:
        bounds = [0] + [int(i) for i in indices_or_sections] + [n]
    pre = (builtins.slice(None),) * axis
    return [getitem(x, pre + (builtins.slice(a, b),)) for a, b in zip(bounds[:-1], bounds[1:])]


def array_split(x, indices_or_sections, axis=0):
    """Like ``np.array_split``: as split, but n sections need not be equal (the first
    ``size % n`` are one longer)."""
    shape = _shape_of(x)
    ax = _norm_axis(axis, len(shape), "array_split")
    if isinstance(indices_or_sections, (int, np.integer)):
        k = int(indices_or_sections)
        if k <= 0:
            raise ShapeError(f"array_split: the number of sections must be positive, got {k}")
        each, extra = divmod(shape[ax], k)
        sizes = [each + 1] * extra + [each] * (k - extra)
        indices_or_sections = np.cumsum(sizes)[:-1].tolist()
    return split(x, indices_or_sections, axis=ax)


def _atleast(x, nd):
    shape = tuple(_shape_of(x))
    if len(shape) >= nd:
        return x
    return reshape(x, (1,) * (nd - len(shape)) + shape if nd == 1 or len(shape) == 0
                   else (1,) + shape)


def hstack(xs):
    """``np.hstack``: 1-d tensors end to end, others along axis 1."""
    xs = [_atleast(x, 1) for x in xs]
    if not xs:
        raise ShapeError("hstack: needs at least one tensor")
    return concatenate(xs, axis=0 if len(_shape_of(xs[0])) == 1 else 1)


def vstack(xs):
    """``np.vstack``: rows on top of each other (a 1-d tensor of n is a row, 1 x n)."""
    xs = [_atleast(x, 2) for x in xs]
    if not xs:
        raise ShapeError("vstack: needs at least one tensor")
    return concatenate(xs, axis=0)


# ---------------------------------------------------------------- rearranging

def moveaxis(x, source, destination):
    """``np.moveaxis``: the ``source`` axes moved to ``destination``, the others in order."""
    shape = _shape_of(x)
    nd = len(shape)
    of = _of_shape(shape)
    src = norm_axes(source, nd, "moveaxis", of=of, scalar=False)
    dst = norm_axes(destination, nd, "moveaxis", of=of, scalar=False)
    if len(src) != len(dst):
        raise ShapeError(f"moveaxis: source {source!r} and destination {destination!r} "
                         "name different numbers of axes")
    order = [a for a in range(nd) if a not in src]
    for d, s_ in sorted(zip(dst, src)):
        order.insert(d, s_)
    return transpose(x, order)


def rollaxis(x, axis, start=0):
    """``np.rollaxis``: axis ``axis`` moved to before ``start`` (prefer moveaxis)."""
    shape = _shape_of(x)
    nd = len(shape)
    axis = norm_axes(axis, nd, "rollaxis", of=_of_shape(shape), scalar=False)[0]
    if not -nd <= start <= nd:
        raise AxisError(f"rollaxis: start {start} is out of range for {_of_shape(shape)}")
    start = start + nd if start < 0 else start
    if axis < start:
        start -= 1
    order = [a for a in range(nd) if a != axis]
    order.insert(start, axis)
    return transpose(x, order)


def flip(x, axis=None):
    """``np.flip``: reversed along ``axis`` (all axes when None); a view, as NumPy's."""
    shape = _shape_of(x)
    axes = norm_axes(axis, len(shape), "flip", of=_of_shape(shape), scalar=False)
    axes = range(len(shape)) if axes is None else axes
    if not shape:
        return x
    return getitem(x, tuple(builtins.slice(None, None, -1) if a in axes else builtins.slice(None)
                            for a in range(len(shape))))


def roll(x, shift, axis=None):
    """``np.roll``: entries shifted by ``shift`` along ``axis`` (of the flattened tensor
    when None), wrapping around; a copy (two slices joined)."""
    shape = _shape_of(x)
    if axis is None:
        return reshape(roll(reshape(x, -1), shift, 0), shape)
    axes = norm_axes(axis, len(shape), "roll", of=_of_shape(shape), scalar=False, unique=False)
    try:
        pairs = np.broadcast(np.asarray(shift, dtype=np.int64), np.asarray(axes))
    except ValueError:
        raise ShapeError(f"roll: shift {shift!r} and axis {axis!r} do not match") from None
    total = {}
    for s_, a in pairs:
        total[int(a)] = total.get(int(a), 0) + int(s_)
    for a, s_ in total.items():
        n = shape[a]
        k = s_ % n if n else 0
        if k:
            pre = (builtins.slice(None),) * a
            x = concatenate([getitem(x, pre + (builtins.slice(n - k, None),)),
                             getitem(x, pre + (builtins.slice(0, n - k),))], axis=a)
    return x


def repeat(x, repeats, axis=None):
    """``np.repeat``: each entry repeated ``repeats`` times along ``axis`` (of the flattened
    tensor when None); ``repeats`` an int or one count per entry. NumPy's meaning: PyTorch's
    ``Tensor.repeat`` is ``tile`` here, its ``repeat_interleave`` is this."""
    shape = tuple(_shape_of(x))
    if axis is None:
        x, shape, axis = reshape(x, -1), (math.prod(shape),), 0
    ax = norm_axes(axis, len(shape), "repeat", of=_of_shape(shape), scalar=False)[0]
    r = np.asarray(repeats)
    if r.dtype.kind not in "iu" or r.ndim > 1 or (r < 0).any():
        raise ShapeError(f"repeat: repeats must be a non-negative int or 1-d ints, got {repeats!r}")
    if r.ndim == 0 or r.size == 1:             # every entry alike: a broadcast, then a reshape
        k = int(r.reshape(()))
        y = broadcast_to(expand_dims(x, ax + 1), shape[:ax + 1] + (k,) + shape[ax + 1:])
        return reshape(y, shape[:ax] + (shape[ax] * k,) + shape[ax + 1:])
    if r.size != shape[ax]:
        raise ShapeError(f"repeat: {r.size} repeats for axis {ax} of size {shape[ax]} "
                         f"(shape {shape})")
    return getitem(x, (builtins.slice(None),) * ax + (np.repeat(np.arange(shape[ax]), r),))


def tile(x, reps):
    """``np.tile``: the whole tensor repeated ``reps`` times along each axis (PyTorch's
    ``Tensor.repeat``); a copy, except that a tile of ones gives ``x`` (reshaped) itself."""
    reps = (int(reps),) if isinstance(reps, (int, np.integer)) else tuple(int(r) for r in reps)
    if any(r < 0 for r in reps):
        raise ShapeError(f"tile: reps must be non-negative, got {reps}")
    shape = tuple(_shape_of(x))
    nd = builtins.max(len(shape), len(reps))
    shape = (1,) * (nd - len(shape)) + shape
    reps = (1,) * (nd - len(reps)) + reps
    x = reshape(x, shape)
    if all(r == 1 for r in reps):
        return x
    inter = tuple(v for d in shape for v in (1, d))
    wide = tuple(v for r, d in zip(reps, shape) for v in (r, d))
    return reshape(broadcast_to(reshape(x, inter), wide), tuple(r * d for r, d in zip(reps, shape)))
