"""Reductions (sum, max, min, prod, logsumexp) and the softmax family.

``axis`` is None, an int or a tuple, ``keepdims`` as in NumPy. A reduction's
VJP first puts the cotangent back in keepdims shape (``_keep``) and then
broadcasts it over the reduced axes.
"""
from __future__ import annotations

import builtins

import numpy as np

from .. import tensor as _tensor
from ..errors import AxisError, RetrogradError, ShapeError
from ..tensor import Tensor
from .base import apply, defop
from .kernels import fmax, fsum
from .elementwise import exp, log, mask_like, sqrt, where
from .shape import astype, broadcast_to, getitem, reshape, transpose


def _axes(axis, ndim, op):
    """Canonical axis parameter: None (all) or a sorted tuple of non-negative ints."""
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < builtins.max(ndim, 1):
            raise AxisError(f"{op}: axis {a} is out of range for a {ndim}-d tensor")
        out.append(int(a) % builtins.max(ndim, 1))
    if len(set(out)) != len(out):
        raise ShapeError(f"{op}: repeated axis in {axis}")
    return tuple(sorted(out))


def _ndim(x):
    return x.ndim if isinstance(x, Tensor) else np.ndim(x)


def _keep_shape(shape, axis):
    if axis is None:
        return (1,) * len(shape)
    return tuple(1 if i in axis else s for i, s in enumerate(shape))


def _keep(g, x, axis, keepdims):
    """The cotangent of a reduction, reshaped so it broadcasts against ``x``."""
    return g if keepdims else reshape(g, _keep_shape(x.shape, axis))


def _count(x, axis):
    return x.size if axis is None else int(np.prod([x.shape[a] for a in axis]))


def _numpy_keywords(op, x, dtype=None, out=None):
    """np.sum(t), np.mean(t), ... call the Tensor's method with NumPy's ``dtype=`` and
    ``out=``: ``dtype`` casts first (NumPy accumulates and returns in it); a result cannot
    be written into a given array, so a real ``out=`` is refused."""
    if out is not None:
        raise RetrogradError(f"{op}: out= is not supported for a Tensor (it cannot write into "
                             f"the given {type(out).__name__}); use the returned Tensor")
    return x if dtype is None else astype(x, dtype)


def _half(x) -> bool:
    # float16 sums overflow past 65,504 (and lose precision long before): accumulate in
    # float32 and round once, as PyTorch and NumPy's mean do
    dt = getattr(x, "dtype", None)
    return dt is not None and dt.itemsize == 2 and dt.kind == "f"


# ---------------------------------------------------------------- sum

_sum = defop("sum", fsum, (
    lambda g, out, x, axis, keepdims: broadcast_to(_keep(g, x, axis, keepdims), x.shape),),
    reads=((),), fresh=True)


def sum(x, axis=None, keepdims=False, *, dtype=None, out=None):
    if dtype is not None or out is not None:
        x = _numpy_keywords("sum", x, dtype, out)
    if _half(x):
        return astype(sum(astype(x, np.float32), axis, keepdims), np.float16)
    return apply(_sum, x, axis=_axes(axis, _ndim(x), "sum"), keepdims=bool(keepdims))


def mean(x, axis=None, keepdims=False, *, dtype=None, out=None):
    if dtype is not None or out is not None:
        x = _numpy_keywords("mean", x, dtype, out)
    if _half(x):            # the count too: 1/70000 is 0 in float16
        return astype(mean(astype(x, np.float32), axis, keepdims), np.float16)
    axis = _axes(axis, _ndim(x), "mean")
    s = sum(x, axis, keepdims)
    n = _count(x if isinstance(x, Tensor) else np.asarray(x), axis)
    return s / n


def var(x, axis=None, ddof=0, keepdims=False, *, dtype=None, out=None):
    """Variance with NumPy's ``ddof`` (0: population, 1: sample)."""
    if dtype is not None or out is not None:
        x = _numpy_keywords("var", x, dtype, out)
    if _half(x):
        return astype(var(astype(x, np.float32), axis, ddof, keepdims), np.float16)
    axis = _axes(axis, _ndim(x), "var")
    d = x - mean(x, axis, keepdims=True)
    n = _count(d, axis)
    return sum(d * d, axis, keepdims) / builtins.max(n - ddof, 0)


def std(x, axis=None, ddof=0, keepdims=False, *, dtype=None, out=None):
    """Standard deviation; its gradient is 0 where it is 0 (one element, or all equal),
    as PyTorch's -- sqrt'(0) is inf and the variance's gradient 0 there, so the plain
    chain rule would give nan."""
    v = var(x, axis, ddof, keepdims, dtype=dtype, out=out)
    zero = v == 0
    return where(zero, 0, sqrt(where(zero, 1, v)))


# ---------------------------------------------------------------- max / min

def _extremum_vjp(g, out, x, axis, keepdims):
    # every entry equal to the extremum shares the gradient equally
    hit = mask_like(x == _keep(out, x, axis, keepdims), x)
    share = hit / sum(hit, axis, keepdims=True)
    return _keep(g, x, axis, keepdims) * share


_max = defop("max", fmax, (_extremum_vjp,), reads=((0, "out"),), fresh=True)
_min = defop("min", lambda x, axis, keepdims: np.min(x, axis=axis, keepdims=keepdims),
             (_extremum_vjp,), reads=((0, "out"),), fresh=True)


def max(x, axis=None, keepdims=False, *, out=None):
    """Largest value (values only, as NumPy); tied maxima share the gradient."""
    if out is not None:
        _numpy_keywords("max", x, None, out)
    return apply(_max, x, axis=_axes(axis, _ndim(x), "max"), keepdims=bool(keepdims))


def min(x, axis=None, keepdims=False, *, out=None):
    """Smallest value (values only, as NumPy); tied minima share the gradient."""
    if out is not None:
        _numpy_keywords("min", x, None, out)
    return apply(_min, x, axis=_axes(axis, _ndim(x), "min"), keepdims=bool(keepdims))


_argmax = defop("argmax", lambda x, axis, keepdims: np.argmax(x, axis=axis, keepdims=keepdims),
                fresh=True)
_argmin = defop("argmin", lambda x, axis, keepdims: np.argmin(x, axis=axis, keepdims=keepdims),
                fresh=True)


def _one_int_axis(axis, x, op):
    if axis is None:
        return None
    if not isinstance(axis, (int, np.integer)):
        raise ShapeError(f"{op}: axis must be an int or None, got {axis!r}")
    return _axes(axis, _ndim(x), op)[0]


def argmax(x, axis=None, keepdims=False, *, out=None):
    if out is not None:
        _numpy_keywords("argmax", x, None, out)
    return apply(_argmax, x, axis=_one_int_axis(axis, x, "argmax"), keepdims=bool(keepdims))


def argmin(x, axis=None, keepdims=False, *, out=None):
    if out is not None:
        _numpy_keywords("argmin", x, None, out)
    return apply(_argmin, x, axis=_one_int_axis(axis, x, "argmin"), keepdims=bool(keepdims))


# ---------------------------------------------------------------- prod

def _prod_others(x, axis):
    """For each entry, the product of the other entries reduced with it.

    Written with ops so it differentiates again, and exact when entries are 0
    (where out / x would divide by zero): the reduced axes are flattened to
    length n, each entry is replaced in turn by 1 (an n x n stack), and the
    stack is multiplied out.
    """
    nd = x.ndim
    red = tuple(range(nd)) if axis is None else axis
    keep = tuple(a for a in range(nd) if a not in red)
    perm = keep + red
    xt = transpose(x, perm)
    lead = tuple(x.shape[a] for a in keep)
    n = _count(x, axis)
    flat = reshape(xt, lead + (1, n))
    eye = np.eye(n, dtype=bool)
    others = prod(where(eye, 1, flat), axis=len(lead) + 1)          # lead + (n,)
    others = reshape(others, lead + tuple(x.shape[a] for a in red))
    return transpose(others, tuple(np.argsort(perm)))


def _prod_vjp(g, out, x, axis, keepdims):
    gk = _keep(g, x, axis, keepdims)
    # out / x is cheaper but divides by zero; a graph value (rg.compile) has no data to
    # look at, so its gradient must be the exact form, right for inputs with zeros too
    if not x._symbolic and np.all(x.data != 0):
        return gk * (_keep(out, x, axis, keepdims) / x)
    return gk * _prod_others(x, axis)


_prod = defop("prod", lambda x, axis, keepdims: np.prod(x, axis=axis, keepdims=keepdims),
              (_prod_vjp,), reads=((0, "out"),), fresh=True)


def prod(x, axis=None, keepdims=False, *, dtype=None, out=None):
    """Product of entries; its gradient is exact also where entries are zero."""
    if dtype is not None or out is not None:
        x = _numpy_keywords("prod", x, dtype, out)
    return apply(_prod, x, axis=_axes(axis, _ndim(x), "prod"), keepdims=bool(keepdims))


# ---------------------------------------------------------------- logsumexp / softmax

def _stable_max(x, axis):
    m = fmax(x, axis=axis, keepdims=True)
    if not np.isfinite(m).all():               # all -inf rows: leave them -inf, not nan
        m[~np.isfinite(m)] = 0
    return m


def _logsumexp(x, axis, keepdims):
    m = _stable_max(x, axis)
    with np.errstate(divide="ignore"):
        out = np.log(fsum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _softmax(x, axis):
    e = np.exp(x - _stable_max(x, axis))
    e /= fsum(e, axis=axis, keepdims=True)
    return e


def _log_softmax(x, axis):
    s = x - _stable_max(x, axis)
    with np.errstate(divide="ignore"):
        s -= np.log(fsum(np.exp(s), axis=axis, keepdims=True))
    return s


_softmax_op = defop("softmax", _softmax, (
    lambda g, out, x, axis: out * (g - sum(g * out, axis, keepdims=True)),), reads=(("out",),),
    fresh=True)
# d logsumexp / dx = softmax(x), recomputed from x: exp(x - out) would carry out's
# rounding (one ulp of |x|, 1e-3 at 1e4 in float32) into every entry as relative error
_logsumexp_op = defop("logsumexp", _logsumexp, (
    lambda g, out, x, axis, keepdims: _keep(g, x, axis, keepdims) * apply(_softmax_op, x, axis=axis),),
    reads=((0,),), fresh=True)
_log_softmax_op = defop("log_softmax", _log_softmax, (
    lambda g, out, x, axis: g - exp(out) * sum(g, axis, keepdims=True),), reads=(("out",),),
    fresh=True)


def _log_of_softmax(x):
    """log(softmax(z)) is log_softmax(z): finite where softmax underflows to 0, with the
    fused gradient g - softmax·Σg instead of a division by softmax. Only while neither
    the softmax output nor z has changed in place since the softmax was computed, and
    while the softmax node still holds z (a backward without retain_graph frees it)."""
    if isinstance(x, Tensor) and x._op is _softmax_op and x._inputs is not None and (
            x._symbolic or x._rec == _tensor._clock or builtins.all(
                t._vc is None or t._vc.epoch <= x._rec for t in (x, *x._inputs))):
        return _log_softmax_op, x._inputs, x._params
    return None


# a fact of log's record, set here beside the two ops it names (log is defined first)
log.rewrite = _log_of_softmax


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))), shifted by the max so it never overflows."""
    return apply(_logsumexp_op, x, axis=_axes(axis, _ndim(x), "logsumexp"), keepdims=bool(keepdims))


def _one_axis(axis, x, op):
    if axis is None:
        raise ShapeError(f"{op}: give the axis to normalise over (e.g. axis=-1)")
    return _axes(axis, _ndim(x), op)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along ``axis``, stable for logits of any size."""
    return apply(_softmax_op, x, axis=_one_axis(axis, x, "softmax"))


def log_softmax(x, axis=-1):
    """x - logsumexp(x) along ``axis``: finite even where softmax underflows to 0."""
    return apply(_log_softmax_op, x, axis=_one_axis(axis, x, "log_softmax"))


__all__ = ["sum", "mean", "var", "std", "max", "min", "argmax", "argmin", "prod",
           "logsumexp", "softmax", "log_softmax", "getitem"]
