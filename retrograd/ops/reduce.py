"""Reductions (sum, max, min, prod, logsumexp) and the softmax family.

``axis`` is None, an int or a tuple, ``keepdims`` as in NumPy. A reduction's
VJP first puts the cotangent back in keepdims shape (``_keep``) and then
broadcasts it over the reduced axes.
"""
from __future__ import annotations

import builtins
import contextlib
import math

import numpy as np

from .. import tensor as _tensor
from ..arrays import constant_like, kind, namespace, promote
from ..errors import RetrogradError, ShapeError
from ..tensor import Tensor
from .base import apply, defop
from .kernels import fmax, fsum
from .elementwise import abs, exp, log, mask_like, sqrt, where
from .shape import astype, broadcast_to, getitem, norm_axes, reshape, transpose


def _ndim(x):
    return x.ndim if isinstance(x, Tensor) else np.ndim(x)


def _keep_shape(shape, axis):
    if axis is None:
        return (1,) * len(shape)
    return tuple(1 if i in axis else s for i, s in enumerate(shape))


def _keep(g, x, axis, keepdims):
    """The cotangent of a reduction, reshaped so it broadcasts against ``x`` (that of a
    reduction over all axes is 0-d, which broadcasts as it is)."""
    return g if keepdims or axis is None else reshape(g, _keep_shape(x.shape, axis))


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
    if isinstance(dt, np.dtype) and dt.kind == "f":     # (str of a NumPy dtype: ~2 us)
        return dt.itemsize == 2
    return dt is not None and str(dt).endswith("float16")   # bfloat16, other namespaces' too


# ---------------------------------------------------------------- sum

_sum = defop("sum", fsum, (
    lambda g, out, x, axis, keepdims: broadcast_to(_keep(g, x, axis, keepdims), x.shape),),
    reads=((),), fresh=True, lowering="reduce_add")


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
    n = _count(x if hasattr(x, "shape") else np.asarray(x), axis)
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


_max = defop("max", fmax, (_extremum_vjp,), reads=((0, "out"),), fresh=True,
             lowering="reduce_max")
_min = defop("min", lambda x, axis, keepdims: namespace(x).min(x, axis=axis, keepdims=keepdims),
             (_extremum_vjp,), reads=((0, "out"),), fresh=True, lowering="reduce_min")


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


_argmax = defop("argmax", lambda x, axis, keepdims:
                namespace(x).argmax(x, axis=axis, keepdims=keepdims), fresh=True)
_argmin = defop("argmin", lambda x, axis, keepdims:
                namespace(x).argmin(x, axis=axis, keepdims=keepdims), fresh=True)


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
    if type(x) is not np.ndarray:
        return _others_in(namespace(x), x, perm, lead, n)
    xt = np.transpose(x, perm)
    f = xt.reshape(lead + (n,))
    before, after = np.ones_like(f), np.ones_like(f)
    before[..., 1:] = np.cumprod(f[..., :-1], axis=-1)
    after[..., :-1] = np.cumprod(f[..., :0:-1], axis=-1)[..., ::-1]
    return np.transpose((before * after).reshape(xt.shape), np.argsort(perm))


def _others_in(xp, x, perm, lead, n):
    # _others in the array API's words (no writes into slices): the same products, in
    # the same order, as cumulative products that start at 1
    xt = xp.permute_dims(x, perm)
    f = xp.reshape(xt, lead + (n,))
    before = xp.cumulative_prod(f, axis=-1, include_initial=True)[..., :-1]
    after = xp.cumulative_prod(xp.flip(f, axis=-1), axis=-1, include_initial=True)[..., :-1]
    others = xp.reshape(before * xp.flip(after, axis=-1), xt.shape)
    return xp.permute_dims(others, tuple(int(i) for i in np.argsort(perm)))


def _others_vjp(g, out, x, axis):
    # d others_i / d x_j (j != i) is the product of the entries other than i and j: row j
    # of the n x n stack with x_j set to 1, whose own others give it (O(n^2), second order
    # only); then the cotangent of x_j sums g_i over i != j
    perm, lead, n = _to_last(x, axis)
    flat = reshape(transpose(x, perm), lead + (1, n))
    eye = constant_like(np.eye(n, dtype=bool), x)
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
_prod = defop("prod", lambda x, axis, keepdims: namespace(x).prod(x, axis=axis, keepdims=keepdims),
              (_prod_vjp,), reads=((0, "out"),), fresh=True)


def prod(x, axis=None, keepdims=False, *, dtype=None, out=None):
    """Product of entries; its gradient is exact also where entries are zero."""
    if dtype is not None or out is not None:
        x = _numpy_keywords("prod", x, dtype, out)
    axis = norm_axes(axis, _ndim(x), "prod", sort=True)
    return apply(_prod, x, axis=axis, keepdims=bool(keepdims))


# ---------------------------------------------------------------- logsumexp / softmax

def _stable_max(x, axis):
    # all -inf rows: shifted by 0, so that they stay -inf, not nan
    m = fmax(x, axis=axis, keepdims=True)
    if type(m) is not np.ndarray:              # (no write into another library's array)
        xp = namespace(m)
        return xp.where(xp.isfinite(m), m, 0)
    if not np.isfinite(m).all():
        m[~np.isfinite(m)] = 0
    return m


def _quiet(xp):
    # log(0) = -inf is the answer for an all -inf row: no NumPy warning for it
    return np.errstate(divide="ignore") if xp is np else contextlib.nullcontext()


def _logsumexp(x, axis, keepdims):
    xp = namespace(x)
    m = _stable_max(x, axis)
    with _quiet(xp):
        out = xp.log(fsum(xp.exp(x - m), axis=axis, keepdims=True)) + m
    if keepdims:
        return out
    if xp is np or axis is not None:
        return xp.squeeze(out, axis=axis)
    return xp.reshape(out, ())                 # (the standard's squeeze needs the axes)


def _softmax(x, axis):
    xp = namespace(x)
    e = xp.exp(x - _stable_max(x, axis))
    if xp is not np:
        return e / fsum(e, axis=axis, keepdims=True)
    e /= fsum(e, axis=axis, keepdims=True)     # in place: no second array
    return e


def _log_softmax(x, axis):
    xp = namespace(x)
    s = x - _stable_max(x, axis)
    with _quiet(xp):
        lse = xp.log(fsum(xp.exp(s), axis=axis, keepdims=True))
    if xp is not np:
        return s - lse
    s -= lse
    return s


_softmax_op = defop("softmax", _softmax, (
    lambda g, out, x, axis: out * (g - sum(g * out, axis, keepdims=True)),), reads=(("out",),),
    fresh=True, lowering="rows_softmax")
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


# ---------------------------------------------------------------- any / all / isclose

_any = defop("any", lambda x, axis, keepdims: namespace(x).any(x, axis=axis, keepdims=keepdims),
             fresh=True)
_all = defop("all", lambda x, axis, keepdims: namespace(x).all(x, axis=axis, keepdims=keepdims),
             fresh=True)


def _isclose(a, b, rtol, atol, equal_nan):
    xp = namespace(a, b)
    if xp is np:
        return np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)
    # NumPy's definition, in floating point (integers compared as floats, as NumPy does)
    a, b, _ = promote(xp, a, b, 1.0)
    close = xp.logical_or(xp.logical_and(xp.abs(a - b) <= atol + rtol * xp.abs(b),
                                         xp.isfinite(b)), a == b)
    if equal_nan:
        close = xp.logical_or(close, xp.logical_and(xp.isnan(a), xp.isnan(b)))
    return close


_isclose_op = defop("isclose", _isclose, fresh=True, args=("a", "b"))


def any(x, axis=None, keepdims=False):
    """Whether any entry is nonzero (a boolean tensor; no gradient), as ``np.any``."""
    axis = norm_axes(axis, _ndim(x), "any", sort=True)
    return apply(_any, x, axis=axis, keepdims=bool(keepdims))


def all(x, axis=None, keepdims=False):
    """Whether every entry is nonzero (a boolean tensor; no gradient), as ``np.all``."""
    axis = norm_axes(axis, _ndim(x), "all", sort=True)
    return apply(_all, x, axis=axis, keepdims=bool(keepdims))


def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """``np.isclose``: |a - b| <= atol + rtol * |b| elementwise (a boolean tensor)."""
    return apply(_isclose_op, a, b, rtol=float(rtol), atol=float(atol), equal_nan=bool(equal_nan))


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
    """``np.allclose``: whether every pair is close -- a Python bool, as NumPy's."""
    return bool(all(isclose(a, b, rtol, atol, equal_nan)))


# ---------------------------------------------------------------- norm

def _safe_root(s, p=2):
    # s ** (1/p) with gradient 0 where s is 0 (PyTorch's subgradient at the origin): the
    # plain chain rule gives inf * 0 = nan there
    zero = s == 0
    r = where(zero, 1, s)
    return where(zero, 0, sqrt(r) if p == 2 else r ** (1.0 / p))


def _vector_norm(x, ord, axis, keepdims):
    if ord is None or ord == 2:
        return _safe_root(sum(x * x, axis, keepdims))
    if ord == math.inf:
        return max(abs(x), axis, keepdims)
    if ord == -math.inf:
        return min(abs(x), axis, keepdims)
    if ord == 0:                                   # the count of nonzeros: no gradient
        return sum(astype(x != 0, x.dtype if kind(x.dtype) == "f" else np.float64), axis, keepdims)
    if ord == 1:
        return sum(abs(x), axis, keepdims)
    return _safe_root(sum(abs(x) ** ord, axis, keepdims), ord)


def _matrix_norm(x, ord, axes, keepdims):
    r, c = axes
    if ord in (None, "fro"):
        out = _safe_root(sum(x * x, axes, keepdims=True))
    elif ord in (1, -1):               # the largest (smallest) column sum
        out = (max if ord == 1 else min)(sum(abs(x), r, keepdims=True), c, keepdims=True)
    elif ord in (math.inf, -math.inf):   # the largest (smallest) row sum
        out = (max if ord > 0 else min)(sum(abs(x), c, keepdims=True), r, keepdims=True)
    else:
        raise RetrogradError(f"norm: matrix ord {ord!r} needs singular values, which retrograd "
                             "does not compute; use None/'fro', 1, -1, inf or -inf")
    return out if keepdims else reshape(out, tuple(n for i, n in enumerate(x.shape) if i not in axes))


def norm(x, ord=None, axis=None, keepdims=False):
    """``np.linalg.norm``: of vectors (``axis`` an int, or None for a 1-d tensor; ord None/2,
    1, inf, -inf, 0, any p) and of matrices (``axis`` a pair, or None for a 2-d tensor; ord
    None/'fro', 1, -1, inf, -inf). With ord None and axis None, the 2-norm of all entries.
    Its gradient at 0 is 0, as PyTorch's (not nan)."""
    x = x if isinstance(x, Tensor) else _tensor.as_tensor(x)
    nd = x.ndim
    if kind(x.dtype) not in "fc":
        x = astype(x, np.float64)
    if axis is None:
        if ord is None:
            out = _safe_root(sum(x * x))
            return reshape(out, (1,) * nd) if keepdims else out
        if nd not in (1, 2):
            raise ShapeError(f"norm: ord={ord!r} with axis=None needs a 1-d or 2-d tensor, got "
                             f"shape {x.shape}")
        axis = tuple(range(nd))
    axes = norm_axes(axis, nd, "norm", of=f"a tensor of shape {x.shape}", scalar=False)
    if len(axes) == 2:
        return _matrix_norm(x, ord, axes, keepdims)
    if len(axes) != 1:
        raise ShapeError(f"norm: axis must be an int or a pair, got {axis!r}")
    if isinstance(ord, str):
        raise RetrogradError(f"norm: ord {ord!r} is a matrix norm; give axis a pair of axes")
    return _vector_norm(x, ord, axes, keepdims)


__all__ = ["sum", "mean", "var", "std", "max", "min", "argmax", "argmin", "prod",
           "logsumexp", "softmax", "log_softmax", "getitem", "any", "all", "isclose",
           "allclose", "norm"]
