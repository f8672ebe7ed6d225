"""Elementwise ops: forward in NumPy, VJP in retrograd ops, one line each where possible.

Binary ops broadcast like NumPy; every binary VJP hands its cotangent to
``unbroadcast``, which sums it back to the input's shape.
"""
from __future__ import annotations

import numpy as np

from ..errors import RetrogradError
from ..tensor import Tensor
from .base import apply, defop
from .shape import astype, sum_to


def unbroadcast(g, x):
    """Reduce a cotangent ``g`` to the shape of input ``x`` (the one broadcasting helper)."""
    shape = x.shape if isinstance(x, Tensor) else np.shape(x)
    return g if g.shape == shape else sum_to(g, shape)


def mask_like(cond: Tensor, like) -> Tensor:
    """A boolean tensor as 0/1 of ``like``'s dtype (a constant: no gradient flows)."""
    return astype(cond, like.dtype)


# ---------------------------------------------------------------- binary arithmetic

_add = defop("add", np.add, (
    lambda g, out, a, b: unbroadcast(g, a),
    lambda g, out, a, b: unbroadcast(g, b)), reads=((), ()))

_sub = defop("sub", np.subtract, (
    lambda g, out, a, b: unbroadcast(g, a),
    lambda g, out, a, b: unbroadcast(-g, b)), reads=((), ()))

_mul = defop("mul", np.multiply, (
    lambda g, out, a, b: unbroadcast(g * b, a),
    lambda g, out, a, b: unbroadcast(g * a, b)), reads=((1,), (0,)))

_div = defop("div", np.true_divide, (
    lambda g, out, a, b: unbroadcast(g / b, a),
    lambda g, out, a, b: unbroadcast(-g * out / b, b)), reads=((1,), (1, "out")))


def _safe_log_base(a):
    # d(a**b)/db = a**b * log(a); at a == 0 the product is taken as 0 (as PyTorch does)
    return log(where(a == 0, 1, a))


def _pow_base_vjp(g, out, a, b):
    # d(a**b)/da = b·a**(b-1), which is 0·inf = nan at a = b = 0, where PyTorch (and the
    # limit along b = 0) gives 0. Masked there only: masking all of b = 0 would also cut
    # the mixed second derivative a**(b-1) there (the inner where keeps 0**-1 out)
    m = logical_and(a == 0, b == 0)
    return unbroadcast(where(m, 0, g * b * where(m, 1, a) ** (b - 1)), a)


_pow = defop("pow", np.power, (
    _pow_base_vjp,
    lambda g, out, a, b: unbroadcast(g * out * _safe_log_base(a), b)), reads=((0, 1), (0, "out")))


def _pow_scalar_vjp(g, out, x, p):
    if p == 0:                 # x**0 is constant: 0, not 0·x**-1 (nan at x = 0), as PyTorch
        return g * 0
    return g * (p * x) if p == 2 else g * (p * pow_scalar(x, p - 1))


_pow_scalar = defop("pow_scalar", lambda x, p: np.power(x, p), (_pow_scalar_vjp,), reads=((0,),),
                    doc="x ** p for a constant Python number p")


def _tie_weight(a, b, strict):
    # maximum/minimum: the larger (smaller) input takes the gradient; ties share it equally
    return mask_like(strict, a) + mask_like(a == b, a) * 0.5


_maximum = defop("maximum", np.maximum, (
    lambda g, out, a, b: unbroadcast(g * _tie_weight(a, b, a > b), a),
    lambda g, out, a, b: unbroadcast(g * _tie_weight(b, a, b > a), b)), reads=((0, 1), (0, 1)))

_minimum = defop("minimum", np.minimum, (
    lambda g, out, a, b: unbroadcast(g * _tie_weight(a, b, a < b), a),
    lambda g, out, a, b: unbroadcast(g * _tie_weight(b, a, b < a), b)), reads=((0, 1), (0, 1)))

_where = defop("where", np.where, (
    None,
    lambda g, out, c, a, b: unbroadcast(where(c, g, 0), a),
    lambda g, out, c, a, b: unbroadcast(where(c, 0, g), b)), reads=((), (0,), (0,)))


def add(a, b):
    return apply(_add, a, b)


def sub(a, b):
    return apply(_sub, a, b)


def mul(a, b):
    return apply(_mul, a, b)


def div(a, b):
    return apply(_div, a, b)


def pow(a, b):
    """a ** b. A Python-number exponent uses the cheaper ``pow_scalar`` op."""
    if isinstance(b, (int, float)) and not isinstance(b, bool) and isinstance(a, Tensor):
        return apply(_pow_scalar, a, p=b)
    return apply(_pow, a, b)


def pow_scalar(x, p):
    return apply(_pow_scalar, x, p=p)


def maximum(a, b):
    """Elementwise maximum; at ties each input gets half the gradient."""
    return apply(_maximum, a, b)


def minimum(a, b):
    """Elementwise minimum; at ties each input gets half the gradient."""
    return apply(_minimum, a, b)


def where(cond, a, b):
    """``a`` where ``cond`` is true, else ``b`` (cond gets no gradient)."""
    return apply(_where, cond, a, b)


# ---------------------------------------------------------------- unary math

def _sigmoid(x):
    # exp(-log(1 + e^-x)): overflow-free for any x and accurate in both tails (the
    # tanh form 0.5 + 0.5·tanh(x/2) rounds sigmoid(-30) to 0 in float32)
    return np.exp(-np.logaddexp(0, -x))


def _leaky_relu(x, negative_slope):
    return np.where(x > 0, x, x * negative_slope)


def _clip(x, lo, hi):
    return np.clip(x, lo, hi)


def _clip_mask(x, lo, hi):
    # the gradient passes where lo <= x <= hi (both ends included, as in PyTorch)
    m = None
    if lo is not None:
        m = mask_like(x >= lo, x)
    if hi is not None:
        mh = mask_like(x <= hi, x)
        m = mh if m is None else m * mh
    return m


_X, _OUT, _NOTHING = ((0,),), (("out",),), ((),)      # what a unary op's rule reads

_neg = defop("neg", np.negative, (lambda g, out, x: -g,), reads=_NOTHING)
_exp = defop("exp", np.exp, (lambda g, out, x: g * out,), reads=_OUT)
_log = defop("log", np.log, (lambda g, out, x: g / x,), reads=_X)
_sqrt = defop("sqrt", np.sqrt, (lambda g, out, x: g / (out * 2),), reads=_OUT)
_abs = defop("abs", np.abs, (lambda g, out, x: g * sign(x),), reads=_X)
_sin = defop("sin", np.sin, (lambda g, out, x: g * cos(x),), reads=_X)
_cos = defop("cos", np.cos, (lambda g, out, x: -g * sin(x),), reads=_X)
_tanh = defop("tanh", np.tanh, (lambda g, out, x: g * (1 - out * out),), reads=_OUT)
_sigmoid_op = defop("sigmoid", _sigmoid, (lambda g, out, x: g * (out * (1 - out)),), reads=_OUT)
# relu'(x) = [x > 0] (0 at the kink). Multiplying by the mask is branch-free and ~15x
# faster than np.where on large arrays; the one difference, a NaN or inf gradient
# arriving where x <= 0, means training has already diverged.
_relu = defop("relu", lambda x: np.maximum(x, 0), (lambda g, out, x: g * (out > 0),), reads=_OUT)
_leaky = defop("leaky_relu", _leaky_relu, (
    lambda g, out, x, negative_slope: where(x > 0, g, g * negative_slope),), reads=_X)
_softplus = defop("softplus", lambda x: np.logaddexp(0, x), (lambda g, out, x: g * sigmoid(x),), reads=_X)
_clip_op = defop("clip", _clip, (
    lambda g, out, x, lo, hi: g if lo is None and hi is None else g * _clip_mask(x, lo, hi),),
    reads=_X)

# no gradient: the derivative is zero almost everywhere
_sign = defop("sign", np.sign)
_eq = defop("eq", np.equal)
_ne = defop("ne", np.not_equal)
_lt = defop("lt", np.less)
_le = defop("le", np.less_equal)
_gt = defop("gt", np.greater)
_ge = defop("ge", np.greater_equal)
_logical_and = defop("logical_and", np.logical_and)
_logical_or = defop("logical_or", np.logical_or)
_logical_not = defop("logical_not", np.logical_not)
_isfinite = defop("isfinite", np.isfinite)
_floor = defop("floor", np.floor)
_round = defop("round", np.round)


def _bernoulli_mask(x, p, generator):
    # drawn when the op runs -- at every step of a compiled graph too, from the same
    # generator in the same order as eager mode, so both give the same masks
    from ..tensor import default_generator
    keep = (generator or default_generator()).random(x.shape) >= p
    return (keep / (1 - p)).astype(x.dtype)


# random, so never folded or shared by the graph compiler; x only gives shape and dtype
_bernoulli = defop("bernoulli_mask", _bernoulli_mask, pure=False,
                   shape=lambda x, p, generator: (x.shape, x.dtype),
                   doc="0 with probability p, else 1/(1-p), in x's shape (inverted dropout)")


def bernoulli_mask(x, p, generator=None):
    return apply(_bernoulli, x, p=p, generator=generator)


def neg(x):
    return apply(_neg, x)


def exp(x):
    return apply(_exp, x)


def log(x):
    return apply(_log, x)


def sqrt(x):
    return apply(_sqrt, x)


def abs(x):
    """|x|, with abs'(0) = 0."""
    return apply(_abs, x)


def sin(x):
    return apply(_sin, x)


def cos(x):
    return apply(_cos, x)


def tanh(x):
    return apply(_tanh, x)


def sigmoid(x):
    """The logistic function 1 / (1 + e^-x), computed overflow-free."""
    return apply(_sigmoid_op, x)


def relu(x):
    """max(x, 0), with relu'(0) = 0."""
    return apply(_relu, x)


def leaky_relu(x, negative_slope=0.01):
    return apply(_leaky, x, negative_slope=negative_slope)


def softplus(x):
    """log(1 + e^x), stable for large |x|."""
    return apply(_softplus, x)


def clip(x, a_min=None, a_max=None):
    """Clamp to [a_min, a_max]; the gradient passes where a_min <= x <= a_max."""
    if isinstance(a_min, Tensor) or isinstance(a_max, Tensor):
        raise RetrogradError("clip: a_min and a_max must be numbers or arrays (constants), got a "
                             "Tensor; for bounds that are tensors use rg.maximum(x, lo) and "
                             "rg.minimum(x, hi)")
    return apply(_clip_op, x, lo=a_min, hi=a_max)


def square(x):
    return pow_scalar(x, 2)


def sign(x):
    return apply(_sign, x)


def equal(a, b):
    return apply(_eq, a, b)


def not_equal(a, b):
    return apply(_ne, a, b)


def less(a, b):
    return apply(_lt, a, b)


def less_equal(a, b):
    return apply(_le, a, b)


def greater(a, b):
    return apply(_gt, a, b)


def greater_equal(a, b):
    return apply(_ge, a, b)


def logical_and(a, b):
    return apply(_logical_and, a, b)


def logical_or(a, b):
    return apply(_logical_or, a, b)


def logical_not(a):
    return apply(_logical_not, a)


def isfinite(x):
    return apply(_isfinite, x)


def floor(x):
    return apply(_floor, x)


def round(x):
    return apply(_round, x)
