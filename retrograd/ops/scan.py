"""Cumulative ops along one axis: cumsum, cumprod, cummax, cummin, logcumsumexp, diff.

The adjoint of a scan from the front is a scan from the back: cumsum and logcumsumexp
are one record each with a ``reverse`` flag, so that each VJP is the same op run the
other way (and differentiable again). ``axis=None`` scans x flattened, as NumPy.
"""
from __future__ import annotations

import builtins

import numpy as np

from ..arrays import device, is_foreign, kind, namespace
from ..errors import ShapeError
from ..tensor import Tensor, as_tensor, is_grad_enabled
from .base import apply, defop
from .elementwise import exp, log, logical_and, logical_not, where
from .index import ValuesIndices, _gather_op
from .reduce import sum
from .shape import astype, concatenate, getitem, norm_axes, reshape


def _shape(x):
    return x.shape if isinstance(x, Tensor) else np.shape(x)


def _scan_axis(x, axis, op):
    """(x, axis): x flattened for axis None (as NumPy), else the axis normalised."""
    if axis is None:
        return reshape(x, (-1,)), 0
    nd = len(_shape(x))
    return x, norm_axes(axis, nd, op, of=f"a {nd}-d tensor", scalar=False)[0]


def _reversed(f):
    """A scan ``f(x, axis)`` that runs from the back when ``reverse`` is set."""
    def scan(x, axis, reverse):
        if not reverse:
            return f(x, axis)
        flip = np.flip if type(x) is np.ndarray else namespace(x).flip
        return flip(f(flip(x, axis=axis), axis), axis=axis)
    return scan


def _accumulate(f, x, axis):
    """The running ``f`` (associative: maximum, minimum, logaddexp; a function of x's
    namespace) along ``axis`` for another namespace, which has no ufunc.accumulate: in
    ceil(log2 n) steps, each entry combined with the one ``shift`` before it."""
    xp, shift = namespace(x), 1
    lead = (builtins.slice(None),) * axis
    while shift < x.shape[axis]:
        x = xp.concat([x[lead + (builtins.slice(0, shift), ...)],
                       f(x[lead + (builtins.slice(shift, None), ...)],
                         x[lead + (builtins.slice(0, -shift), ...)])], axis=axis)
        shift *= 2
    return x


def _cumsum_forward(x, axis):
    if type(x) is not np.ndarray:
        return namespace(x).cumulative_sum(x, axis=axis)
    return np.cumsum(x, axis=axis)


# ---------------------------------------------------------------- cumsum

_cumsum = defop("cumsum", _reversed(_cumsum_forward), (
    lambda g, out, x, axis, reverse: apply(_cumsum, g, axis=axis, reverse=not reverse),),
    reads=((),), fresh=True, args=("x",))


def cumsum(x, axis=None):
    """Running sums along ``axis`` (None: of x flattened), as np.cumsum; the gradient is
    the running sum of the cotangent from the back."""
    x, axis = _scan_axis(x, axis, "cumsum")
    return apply(_cumsum, x, axis=axis, reverse=False)


def _rcumsum(g, axis):
    return apply(_cumsum, g, axis=axis, reverse=True)


# ---------------------------------------------------------------- cumprod

def _zero_term(g, x, zero, seen, axis, r):
    """The cotangent at the r-th zero k of each lane (0 elsewhere): prod_{m<k} x_m ·
    sum_{j>=k} g_j·prod_{k<m<=j} x_m, as products of x with entries set to 1 (no
    division), so that its derivatives are exact too. ``seen``: zeros up to each entry."""
    head = apply(_cumprod, where(seen >= r, 1, x), axis=axis)        # at k: prod_{m<k} x_m
    upto = seen - astype(zero, x.dtype) < r                           # entries up to k
    tail = apply(_cumprod, where(upto, 1, x), axis=axis)              # at j > k: prod_{k<m<=j}
    s = sum(where(seen >= r, g * tail, 0), axis, keepdims=True)
    return where(logical_and(zero, logical_and(upto, seen >= r)), head * s, 0)


def _cumprod_vjp(g, out, x, axis):
    """d/dx_i of sum_j g_j·out_j is sum_{j>=i} g_j·prod_{m<=j, m!=i} x_m. Where x_i != 0 that
    is rcumsum(g·out)_i / x_i -- an identity of the functions, so its own derivative is
    right too, zeros elsewhere included. At a lane's first zero it is _zero_term's product;
    at later zeros it is 0 (the first zero is a factor of every term). To second order the
    second zero's term counts too (its derivative in the first zero; from the third zero on
    two zero factors keep even that 0): added only under create_graph, as PyTorch keeps
    its exact second derivative for then."""
    zero = x == 0
    seen = apply(_cumsum, astype(zero, x.dtype), axis=axis, reverse=False)
    nonzero = _rcumsum(g * out, axis) / where(zero, 1, x)
    at_zeros = _zero_term(g, x, zero, seen, axis, 1)
    if is_grad_enabled():
        at_zeros = at_zeros + _zero_term(g, x, zero, seen, axis, 2)
    return where(zero, at_zeros, nonzero)


def _cumprod_forward(x, axis):
    if type(x) is not np.ndarray:
        return namespace(x).cumulative_prod(x, axis=axis)
    return np.cumprod(x, axis=axis)


_cumprod = defop("cumprod", _cumprod_forward, (_cumprod_vjp,),
                 reads=((0, "out"),), fresh=True, args=("x",))


def cumprod(x, axis=None):
    """Running products along ``axis`` (None: of x flattened), as np.cumprod; the first
    and second derivatives are exact where entries are 0 (see _cumprod_vjp)."""
    x, axis = _scan_axis(x, axis, "cumprod")
    return apply(_cumprod, x, axis=axis)


# ---------------------------------------------------------------- cummax / cummin

def _xp_cum_indices(xp, x, axis, reduce):
    """_cum_indices in the standard's words (its running extrema by _accumulate)."""
    acc = _accumulate(xp.maximum if reduce == "max" else xp.minimum, x, axis)
    hit = x == acc
    if kind(x.dtype) in "fc":
        hit = xp.logical_or(hit, xp.isnan(x))
    pos = xp.reshape(xp.arange(x.shape[axis], device=device(x)), (-1,) + (1,) * (x.ndim - axis - 1))
    return _accumulate(xp.maximum, xp.where(hit, pos, 0), axis)


def _cum_indices(x, axis, reduce):
    # the index of the running extremum: the last entry so far that equals it (a tie
    # moves the index on, as PyTorch's cummax/cummin), a NaN once one is seen
    if type(x) is not np.ndarray:
        return _xp_cum_indices(namespace(x), x, axis, reduce)
    acc = (np.maximum if reduce == "max" else np.minimum).accumulate(x, axis=axis)
    hit = x == acc
    if x.dtype.kind in "fc":
        hit |= np.isnan(x)
    pos = np.arange(x.shape[axis]).reshape((-1,) + (1,) * (x.ndim - axis - 1))
    return np.maximum.accumulate(np.where(hit, pos, 0), axis=axis)


_cum_indices_op = defop("cum_extremum_indices", _cum_indices, fresh=True, args=("x",),
                        doc="The indices of cummax / cummin (no gradient).")


def _cum_extremum(x, axis, reduce):
    x, axis = _scan_axis(x, axis, f"cum{reduce}")
    idx = apply(_cum_indices_op, x, axis=axis, reduce=reduce)
    return ValuesIndices(apply(_gather_op, x, idx, axis=axis, who=None), idx)


def cummax(x, axis):
    """torch.cummax: (values, indices) of the running maximum along ``axis``; the gradient
    goes to the entry each value came from."""
    return _cum_extremum(x, axis, "max")


def cummin(x, axis):
    """torch.cummin: (values, indices) of the running minimum along ``axis``."""
    return _cum_extremum(x, axis, "min")


# ---------------------------------------------------------------- logcumsumexp

def _logcumsumexp_vjp(g, out, x, axis, reverse):
    # d out_j / d x_i = e^(x_i - out_j) for i <= j: the cotangent is a log-space running sum
    # from the other end, of the positive and the negative parts of g apart (PyTorch's rule;
    # a quarter of the lowest float stands for log 0, so nothing is inf - inf, and sums of
    # it in the second derivative do not overflow)
    lowest = float((namespace(x._data) if is_foreign(x._data) else np).finfo(x.dtype).min) / 4

    def part(mask, mag):
        lg = where(mask, log(where(mask, mag, 1)), lowest)
        return exp(apply(_logcumsumexp, lg - out, axis=axis, reverse=not reverse) + x)
    return part(g > 0, g) - part(g < 0, -g)


def _logcumsumexp_forward(x, axis):
    if type(x) is not np.ndarray:
        return _accumulate(namespace(x).logaddexp, x, axis)
    return np.logaddexp.accumulate(x, axis=axis)


_logcumsumexp = defop(
    "logcumsumexp", _reversed(_logcumsumexp_forward),
    (_logcumsumexp_vjp,), reads=((0, "out"),), fresh=True, args=("x",))


def logcumsumexp(x, axis):
    """log(cumsum(exp(x))) along ``axis``, computed without overflow (torch.logcumsumexp)."""
    x, axis = _scan_axis(x, axis, "logcumsumexp")
    if kind(getattr(x, "dtype", np.dtype(np.float64))) not in "fc":
        x = astype(x, np.float64)
    return apply(_logcumsumexp, x, axis=axis, reverse=False)


# ---------------------------------------------------------------- diff

def _edge(v, x, axis):
    """A prepend/append value of np.diff: a number becomes a slab of x's shape, one
    entry thick along ``axis``; an array or tensor is used as it is."""
    if isinstance(v, Tensor) or np.ndim(v) > 0:
        return v
    shape = list(_shape(x))
    shape[axis] = 1
    if isinstance(x, Tensor) and is_foreign(x._data):       # in x's namespace, on its device
        return namespace(x._data).full(tuple(shape), v, dtype=x.dtype, device=device(x._data))
    return np.full(shape, v, dtype=getattr(x, "dtype", np.float64))


def diff(x, n=1, axis=-1, prepend=None, append=None):
    """np.diff: the n-th differences along ``axis``, after ``prepend`` / ``append`` (numbers
    or arrays) are joined to x there. A composite of slices and subtractions."""
    nd = len(_shape(x))
    if nd == 0:
        raise ShapeError("diff: needs an input of at least one axis, got a 0-d tensor")
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ShapeError(f"diff: n must be a non-negative int, got {n!r}")
    axis = norm_axes(axis, nd, "diff", of=f"a {nd}-d tensor", scalar=False)[0]
    if n == 0:
        return x if isinstance(x, Tensor) else as_tensor(x)
    if prepend is not None or append is not None:
        parts = [x]
        if prepend is not None:
            parts.insert(0, _edge(prepend, x, axis))
        if append is not None:
            parts.append(_edge(append, x, axis))
        x = concatenate(parts, axis=axis)
    pre = (builtins.slice(None),) * axis
    later, earlier = pre + (builtins.slice(1, None),), pre + (builtins.slice(None, -1),)
    for _ in range(n):
        x = getitem(x, later) - getitem(x, earlier)
    return x
