"""Movement ops: they move or copy elements without arithmetic.

Most come in adjoint pairs: reshape/reshape, transpose/transpose,
broadcast_to/sum_to, getitem/scatter_add, pad/getitem, concatenate/getitem.
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from ..errors import AxisError, RetrogradError, ShapeError, TraceError
from ..tensor import Tensor, _unwrap_index, share_version
from .base import Kernel, apply, defop, out_kw
from .rules import op_of, same_shape
from .kernels import fsum


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
    return astype(g, x.dtype) if x.dtype.kind in "fc" else None


_astype = defop("astype", lambda x, dtype: x.astype(dtype, copy=False), (_astype_vjp,), reads=((),),
                simplify=lambda n: n.inputs[0] if n.dtype == n.inputs[0].dtype else None)


def astype(x, dtype):
    """Cast to ``dtype``; the gradient is cast back (float -> float only)."""
    try:
        dtype = np.dtype(dtype)
    except TypeError as e:
        raise RetrogradError(f"astype: {dtype!r} is not a dtype ({e})") from None
    if isinstance(x, Tensor) and x.dtype == dtype:
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


_reshape = defop("reshape", lambda x, shape: np.reshape(x, shape),
                 (lambda g, out, x, shape: reshape(g, x.shape),), reads=((),),
                 kernel=lambda n: Kernel(lambda a, o: f"{a[0]}.reshape({n.params['shape']!r})",
                                         fresh=False),
                 simplify=_reshape_rule)


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


_transpose = defop("transpose", lambda x, axes: np.transpose(x, axes),
                   (lambda g, out, x, axes: transpose(g, tuple(np.argsort(axes))),), reads=((),),
                   kernel=lambda n: Kernel(lambda a, o: f"{a[0]}.T", fresh=False)
                   if n.params["axes"] == (1, 0) else None,
                   simplify=_transpose_rule)


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


# ---------------------------------------------------------------- broadcast_to / sum_to

def _sum_to(x, shape):
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape)
                                      if s == 1 and x.shape[i + lead] != 1)
    out = fsum(x, axis=axes, keepdims=True) if axes else x
    return out.reshape(shape) if lead else out


def _bias_kernel(n):
    # a bias gradient, (m, n) summed to (n,): the column sums as one BLAS call ones @ g
    # (see kernels.fsum, which eager mode uses, so both round alike)
    (x,) = n.inputs
    if len(x.shape) != 2 or n.shape != (x.shape[1],) or n.dtype.kind != "f":
        return None
    key = f"ones{n.id}"
    return Kernel(lambda a, o: f"np.matmul({key}, {a[0]}{out_kw(o)})", True, False,
                  consts={key: np.ones(x.shape[0], n.dtype)})


_broadcast_to = defop("broadcast_to", lambda x, shape: np.broadcast_to(x, shape),
                      (lambda g, out, x, shape: sum_to(g, x.shape),), reads=((),),
                      simplify=same_shape)
_sum_to_op = defop("sum_to", _sum_to, (lambda g, out, x, shape: broadcast_to(g, x.shape),),
                   reads=((),), kernel=_bias_kernel, simplify=same_shape)


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


def _scatter_add(g, idx, shape):
    out = np.zeros(shape, dtype=g.dtype)
    if _is_basic(idx):
        out[idx] = g                 # basic indexing never repeats an element
    else:
        np.add.at(out, idx, g)       # repeated integer indices accumulate
    return out


_getitem = defop("getitem", lambda x, idx: x[idx],
                 (lambda g, out, x, idx: scatter_add(g, idx, x.shape),), reads=((),))
_scatter = defop("scatter_add", _scatter_add, (lambda g, out, gg, idx, shape: getitem(g, idx),),
                 reads=((),), fresh=True)


def _canonical_index(idx):
    items = idx if isinstance(idx, (tuple, list)) else (idx,)
    # the index is a static parameter of getitem: it cannot be a graph value (no array)
    traced = next((i for i in items if isinstance(i, Tensor)
                   and not isinstance(i._data, np.ndarray)), None)
    if traced is not None:
        raise TraceError(f"indexing with a traced value ({traced.describe()}): an index must "
                         "be known when the graph is built (a constant array, a slice or an "
                         "int); use rg.where to select by a condition, or run this function "
                         "eagerly (rg.compile(fn, fallback='eager'))")
    idx = _unwrap_index(idx)
    if isinstance(idx, tuple):
        return tuple(np.asarray(i) if isinstance(i, list) else i for i in idx)
    return idx


def getitem(x, idx):
    """``x[idx]``: slices, ints, None, Ellipsis, integer arrays, boolean masks."""
    return share_version(apply(_getitem, x, idx=_canonical_index(idx)), x)


def scatter_add(g, idx, shape):
    """zeros(shape) with ``g`` added at ``idx`` (the adjoint of getitem)."""
    return apply(_scatter, g, idx=_canonical_index(idx), shape=tuple(shape))


def _pad_vjp(g, out, x, pad_width, constant_values):
    return getitem(g, tuple(builtins.slice(lo, lo + n) for (lo, _), n in zip(pad_width, x.shape)))


_pad = defop("pad", lambda x, pad_width, constant_values:
             np.pad(x, pad_width, mode="constant", constant_values=constant_values), (_pad_vjp,),
             reads=((),), fresh=True)


def pad(x, pad_width, constant_values=0):
    """Constant padding, ``pad_width`` as in ``np.pad`` (int, pair, or one pair per axis)."""
    ndim = len(_shape_of(x))
    pw = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (ndim, 2))
    pw = tuple((int(a), int(b)) for a, b in pw)
    return apply(_pad, x, pad_width=pw, constant_values=constant_values)


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


_concatenate = defop("concatenate", lambda *xs, axis: np.concatenate(xs, axis=axis),
                     _concat_vjp, variadic=True, reads=((),), fresh=True)
_stack = defop("stack", lambda *xs, axis: np.stack(xs, axis=axis), _stack_vjp, variadic=True,
               reads=((),), fresh=True)


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
