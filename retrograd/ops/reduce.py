"""Reductions (sum, max, min, prod, logsumexp) and the softmax family.

``axis`` is None, an int or a tuple, ``keepdims`` as in NumPy. A reduction's
VJP first puts the cotangent back in keepdims shape (``_keep``) and then
broadcasts it over the reduced axes.
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from .. import tensor as _tensor
from ..errors import RetrogradError, ShapeError
from ..tensor import Tensor
from .base import apply, defop
from .kernels import fmax, fsum
from .elementwise import exp, log, mask_like, sqrt, where
from .shape import astype, broadcast_to, getitem, norm_axes, reshape, transpose


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
    axis = norm_axes(axis, _ndim(x), "sum", sort=True)
    return apply(_sum, x, axis=axis, keepdims=bool(keepdims))


def mean(x, axis=None, keepdims=False, *, dtype=None, out=None):
    if dtype is not None or out is not None:
        x = _numpy_keywords("mean", x, dtype, out)
    if _half(x):            # the count too: 1/70000 is 0 in float16
        return astype(mean(astype(x, np.float32), axis, keepdims), np.float16)
    axis = norm_axes(axis, _ndim(x), "mean", sort=True)
    s = sum(x, axis, keepdims)
    n = _count(x if isinstance(x, Tensor) else np.asarray(x), axis)
    return s / n


def var(x, axis=None, ddof=0, keepdims=False, *, dtype=None, out=None):
    """Variance with NumPy's ``ddof`` (0: population, 1: sample)."""
    if dtype is not None or out is not None:
        x = _numpy_keywords("var", x, dtype, out)
    if _half(x):
        return astype(var(astype(x, np.float32), axis, ddof, keepdims), np.float16)
    axis = norm_axes(axis, _ndim(x), "var", sort=True)
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
    axis = norm_axes(axis, _ndim(x), "max", sort=True)
    return apply(_max, x, axis=axis, keepdims=bool(keepdims))


def min(x, axis=None, keepdims=False, *, out=None):
    """Smallest value (values only, as NumPy); tied minima share the gradient."""
    if out is not None:
        _numpy_keywords("min", x, None, out)
    axis = norm_axes(axis, _ndim(x), "min", sort=True)
    return apply(_min, x, axis=axis, keepdims=bool(keepdims))


_argmax = defop("argmax", lambda x, axis, keepdims: np.argmax(x, axis=axis, keepdims=keepdims),
                fresh=True)
_argmin = defop("argmin", lambda x, axis, keepdims: np.argmin(x, axis=axis, keepdims=keepdims),
                fresh=True)


def _one_int_axis(axis, x, op):
    if axis is None:
        return None
    if not isinstance(axis, (int, np.integer)):
        raise ShapeError(f"{op}: axis must be an int or None, got {axis!r}")
    return norm_axes(axis, _ndim(x), op, sort=True)[0]


def argmax(x, axis=None, keepdims=False, *, out=None):
    if out is not None:
        _numpy_keywords("argmax", x, None, out)
    return apply(_argmax, x, axis=_one_int_axis(axis, x, "argmax"), keepdims=bool(keepdims))


def argmin(x, axis=None, keepdims=False, *, out=None):
    if out is not None:
        _numpy_keywords("argmin", x, None, out)
    return apply(_argmin, x, axis=_one_int_axis(axis, x, "argmin"), keepdims=bool(keepdims))


# ---------------------------------------------------------------- prod

def _to_last(x, axis):
    """(perm, lead shape, n): transposing by perm and reshaping to lead + (n,) puts the
    reduced axes of ``x`` last, flattened (x: an array or a Tensor)."""
    nd = x.ndim
    red = tuple(range(nd)) if axis is None else axis
    keep = tuple(a for a in range(nd) if a not in red)
    return keep + red, tuple(x.shape[a] for a in keep), math.prod(x.shape[a] for a in red)


def _others(x, axis):
    """For each entry, the product of the other entries reduced with it: the product of
    those before it times the product of those after it (exclusive cumulative products).
    No division, so exact where entries are 0 (out / x divides by zero there); O(n)."""
    perm, lead, n = _to_last(x, axis)
    xt = np.transpose(x, perm)
    f = xt.reshape(lead + (n,))
    before, after = np.ones_like(f), np.ones_like(f)
    before[..., 1:] = np.cumprod(f[..., :-1], axis=-1)
    after[..., :-1] = np.cumprod(f[..., :0:-1], axis=-1)[..., ::-1]
    return np.transpose((before * after).reshape(xt.shape), np.argsort(perm))


def _others_vjp(g, out, x, axis):
    # d others_i / d x_j (j != i) is the product of the entries other than i and j: row j
    # of the n x n stack with x_j set to 1, whose own others give it (O(n^2), second order
    # only); then the cotangent of x_j sums g_i over i != j
    perm, lead, n = _to_last(x, axis)
    flat = reshape(transpose(x, perm), lead + (1, n))
    eye = np.eye(n, dtype=bool)
    pair = apply(_others_op, where(eye, 1, flat), axis=(len(lead) + 1,))   # lead + (n, n)
    gf = reshape(transpose(g, perm), lead + (1, n))
    ct = sum(where(eye, 0, pair) * gf, axis=len(lead) + 1)                # lead + (n,)
    return transpose(reshape(ct, transpose(x, perm).shape), tuple(np.argsort(perm)))


# the product of the others, as one op: prod's gradient in one form for eager and graph
# values, exact at zeros (what the gradient needs), differentiable again
_others_op = defop("prod_others", _others, (_others_vjp,), reads=((0,),))


def _prod_vjp(g, out, x, axis, keepdims):
    return _keep(g, x, axis, keepdims) * apply(_others_op, x, axis=axis)


# (the rule no longer reads out, but PyTorch's prod saves its result and refuses a
# backward after it changed in place: "out" stays declared so that both refuse alike)
_prod = defop("prod", lambda x, axis, keepdims: np.prod(x, axis=axis, keepdims=keepdims),
              (_prod_vjp,), reads=((0, "out"),), fresh=True)


def prod(x, axis=None, keepdims=False, *, dtype=None, out=None):
    """Product of entries; its gradient is exact also where entries are zero."""
    if dtype is not None or out is not None:
        x = _numpy_keywords("prod", x, dtype, out)
    axis = norm_axes(axis, _ndim(x), "prod", sort=True)
    return apply(_prod, x, axis=axis, keepdims=bool(keepdims))


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
            x._rec == _tensor._clock or builtins.all(
                t._vc is None or t._vc.epoch <= x._rec for t in (x, *x._inputs))):
        return _log_softmax_op, x._inputs, x._params
    return None


# a fact of log's record, set here beside the two ops it names (log is defined first)
log.rewrite = _log_of_softmax


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))), shifted by the max so it never overflows."""
    axis = norm_axes(axis, _ndim(x), "logsumexp", sort=True)
    return apply(_logsumexp_op, x, axis=axis, keepdims=bool(keepdims))


def _one_axis(axis, x, op):
    if axis is None:
        raise ShapeError(f"{op}: give the axis to normalise over (e.g. axis=-1)")
    return norm_axes(axis, _ndim(x), op, sort=True)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along ``axis``, stable for logits of any size."""
    return apply(_softmax_op, x, axis=_one_axis(axis, x, "softmax"))


def log_softmax(x, axis=-1):
    """x - logsumexp(x) along ``axis``: finite even where softmax underflows to 0."""
    return apply(_log_softmax_op, x, axis=_one_axis(axis, x, "log_softmax"))


__all__ = ["sum", "mean", "var", "std", "max", "min", "argmax", "argmin", "prod",
           "logsumexp", "softmax", "log_softmax", "getitem"]
