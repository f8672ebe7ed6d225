"""Elementwise ops: forward in the inputs' namespace, VJP in retrograd ops, one record each.

Each record is the op itself -- ``exp(x)`` calls it -- and holds its other facts:
what its VJP reads, the compiler's identities (``simplify``) and kernels, and the
one-element Python form (``scalar``) that a fusing code generator inlines. Binary
ops broadcast like NumPy; their rules return the cotangent in the broadcast shape
and the backward walk sums it back to each input's shape. A forward computes with
the array-API functions of its inputs' namespace (``namespace(x)``: ``numpy`` itself
for ndarrays), so one definition runs on NumPy, CuPy or array_api_strict alike.
"""
from __future__ import annotations

import math

import numpy as np

from ..arrays import device, kind, namespace, numpy_dtype, promote, to_namespace
from ..errors import RetrogradError
from ..tensor import Tensor
from .base import Kernel, apply, defop, out_kw
from .rules import is_const, passes_through
from .shape import astype, fuse_scatters, sum_to


def unbroadcast(g, x):
    """Reduce a cotangent ``g`` to the shape of input ``x`` (what the backward walk does
    with every rule's cotangent; kept for VJPs written outside retrograd)."""
    shape = x.shape if isinstance(x, Tensor) else np.shape(x)
    return g if g.shape == shape else sum_to(g, shape)


def mask_like(cond: Tensor, like) -> Tensor:
    """A boolean tensor as 0/1 of ``like``'s dtype (a constant: no gradient flows)."""
    return astype(cond, like.dtype)


def _either(n, value):
    """The input of binary node ``n`` whose other input is the constant ``value``, if
    the result is that input unchanged (same shape and dtype), else None."""
    a, b = n.inputs
    if is_const(b, value) and passes_through(n, a):
        return a
    if is_const(a, value) and passes_through(n, b):
        return b
    return None


def _add_rule(n):
    same = _either(n, 0)                                        # x + 0 -> x
    return same if same is not None else fuse_scatters(n)      # a sum of scatters: one op


def _mul_rule(n):
    same = _either(n, 1)                                        # x * 1 -> x
    if same is not None:
        return same
    a, b = n.inputs
    if is_const(b, -1) and passes_through(n, a):                 # x * -1 -> -x
        return neg, (a,), {}
    return None


def _sub_rule(n):
    a, b = n.inputs
    if is_const(b, 0) and passes_through(n, a):                  # x - 0 -> x
        return a
    if is_const(a, 0) and passes_through(n, b):                  # 0 - x -> -x
        return neg, (b,), {}
    return None


def _right_const(value):
    def rule(n):                                                 # x / 1 -> x
        a, b = n.inputs
        return a if is_const(b, value) and passes_through(n, a) else None
    return rule


# ---------------------------------------------------------------- binary arithmetic

add = defop("add", np.add, (
    lambda g, out, a, b: g,
    lambda g, out, a, b: g), reads=((), ()), doc="a + b, broadcasting as NumPy.",
    simplify=lambda n: _add_rule(n), scalar=lambda a, b: f"({a} + {b})")

sub = defop("sub", np.subtract, (
    lambda g, out, a, b: g,
    lambda g, out, a, b: -g), reads=((), ()), doc="a - b, broadcasting as NumPy.",
    simplify=_sub_rule, scalar=lambda a, b: f"({a} - {b})")

mul = defop("mul", np.multiply, (
    lambda g, out, a, b: g * b,
    lambda g, out, a, b: g * a), reads=((1,), (0,)), doc="a * b, broadcasting as NumPy.",
    simplify=_mul_rule, scalar=lambda a, b: f"({a} * {b})")

div = defop("div", np.true_divide, (
    lambda g, out, a, b: g / b,
    lambda g, out, a, b: -g * out / b), reads=((1,), (1, "out")),
    doc="a / b (true division), broadcasting as NumPy.",
    simplify=_right_const(1), scalar=lambda a, b: f"({a} / {b})")


def _safe_log_base(a):
    # d(a**b)/db = a**b * log(a); at a == 0 the product is taken as 0 (as PyTorch does)
    return log(where(a == 0, 1, a))


def _pow_base_vjp(g, out, a, b):
    # d(a**b)/da = b·a**(b-1), which is 0·inf = nan at a = b = 0, where PyTorch (and the
    # limit along b = 0) gives 0. Masked there only: masking all of b = 0 would also cut
    # the mixed second derivative a**(b-1) there (the inner where keeps 0**-1 out)
    m = logical_and(a == 0, b == 0)
    return where(m, 0, g * b * where(m, 1, a) ** (b - 1))


_pow = defop("pow", np.power, (
    _pow_base_vjp,
    lambda g, out, a, b: g * out * _safe_log_base(a)), reads=((0, 1), (0, "out")),
    scalar=lambda a, b: f"({a} ** {b})")


def _pow_scalar_vjp(g, out, x, p):
    if p == 0:                 # x**0 is constant: 0, not 0·x**-1 (nan at x = 0), as PyTorch
        return g * 0
    return g * (p * x) if p == 2 else g * (p * pow_scalar(x, p - 1))


def _square_kernel(n):
    # x**2 as np.square: ~3x faster than np.power, and it can write into out=
    if n.params["p"] != 2:
        return None
    return Kernel(lambda a, o: f"np.square({a[0]}{out_kw(o)})", True, True)


_pow_scalar = defop(
    "pow_scalar", lambda x, p: namespace(x).pow(x, p), (_pow_scalar_vjp,), reads=((0,),),
    fresh=True, args=("x",), kernel=_square_kernel,
    simplify=lambda n: n.inputs[0] if n.params["p"] == 1 and passes_through(n, n.inputs[0])
    else None,
    scalar=lambda x, p: f"({x} * {x})" if p == 2 else f"({x} ** {p!r})")


def pow(a, b):
    """a ** b. A Python-number exponent uses the cheaper ``pow_scalar`` op."""
    if isinstance(b, (int, float)) and not isinstance(b, bool) and isinstance(a, Tensor):
        return apply(_pow_scalar, a, p=b)
    return apply(_pow, a, b)


def pow_scalar(x, p):
    """x ** p for a constant Python number p."""
    return apply(_pow_scalar, x, p=p)


def _tie_weight(a, b, strict):
    # maximum/minimum: the larger (smaller) input takes the gradient; ties share it equally
    return mask_like(strict, a) + mask_like(a == b, a) * 0.5


# NaN propagates from either side, as np.maximum/np.minimum
maximum = defop("maximum", np.maximum, (
    lambda g, out, a, b: g * _tie_weight(a, b, a > b),
    lambda g, out, a, b: g * _tie_weight(b, a, b > a)), reads=((0, 1), (0, 1)),
    doc="Elementwise maximum; at ties each input gets half the gradient.",
    scalar=lambda a, b: f"({a} if {a} > {b} or {a} != {a} else {b})")

minimum = defop("minimum", np.minimum, (
    lambda g, out, a, b: g * _tie_weight(a, b, a < b),
    lambda g, out, a, b: g * _tie_weight(b, a, b < a)), reads=((0, 1), (0, 1)),
    doc="Elementwise minimum; at ties each input gets half the gradient.",
    scalar=lambda a, b: f"({a} if {a} < {b} or {a} != {a} else {b})")


def _where(cond, a, b):
    xp = namespace(cond, a, b)
    if xp is np:
        return np.where(cond, a, b)
    if kind(cond.dtype) != "b":                 # (NumPy takes any truth value)
        cond = cond != 0
    return xp.where(cond, *promote(xp, a, b))


where = defop("where", _where, (
    None,
    lambda g, out, c, a, b: where(c, g, 0),
    lambda g, out, c, a, b: where(c, 0, g)), reads=((), (0,), (0,)), fresh=True,
    args=("cond", "a", "b"),
    doc="``a`` where ``cond`` is true, else ``b`` (cond gets no gradient).",
    scalar=lambda c, a, b: f"({a} if {c} else {b})")



def _hypot2(a, b):
    return a * a + b * b


arctan2 = defop("arctan2", np.arctan2, (
    lambda g, out, a, b: g * b / _hypot2(a, b),
    lambda g, out, a, b: -g * a / _hypot2(a, b)), reads=((0, 1), (0, 1)),
    doc="The angle of the point (b, a), i.e. arctan(a / b) in the right quadrant, in [-pi, pi].",
    scalar=lambda a, b: f"math.atan2({a}, {b})")
atan2 = arctan2                                       # NumPy 2's and PyTorch's name

# d/da = e^(a - out) = sigmoid(a - b): each at most 1, never overflowing
logaddexp = defop("logaddexp", np.logaddexp, (
    lambda g, out, a, b: g * exp(a - out),
    lambda g, out, a, b: g * exp(b - out)), reads=((0, "out"), (1, "out")),
    doc="log(e^a + e^b), computed without overflow.",
    scalar=lambda a, b: f"(max({a}, {b}) + math.log1p(math.exp(-abs({a} - {b}))))")

# the gradient a/out is 0/0 at the origin, where hypot has a kink (PyTorch gives nan too)
hypot = defop("hypot", np.hypot, (
    lambda g, out, a, b: g * (a / out),
    lambda g, out, a, b: g * (b / out)), reads=((0, "out"), (1, "out")),
    doc="sqrt(a^2 + b^2), computed without overflow.", scalar=lambda a, b: f"math.hypot({a}, {b})")

# |a| with b's sign: d/da = sign(a)·(±1 by b's sign bit), 0 at a = 0, and no gradient to b
# (zeros, as PyTorch: its sign only flips where the derivative is 0 almost everywhere)
copysign = defop("copysign", np.copysign, (
    lambda g, out, a, b: g * (sign(a) * copysign(1.0, b)),
    lambda g, out, a, b: g * 0), reads=((0, 1), ()),
    doc="|a| with the sign of b (b's gradient is 0).",
    scalar=lambda a, b: f"math.copysign({a}, {b})")


# ---------------------------------------------------------------- unary math

def _sigmoid(x):
    # with e = e^-|x|: 1/(1 + e) for x >= 0, e/(1 + e) below -- overflow-free for any x and
    # accurate in both tails (the tanh form 0.5 + 0.5·tanh(x/2) rounds sigmoid(-30) to 0 in
    # float32), and ~7x faster than exp(-logaddexp(0, -x)) (an LSTM's gates are sigmoids)
    xp = namespace(x)
    e = xp.exp(-xp.abs(x))
    s = 1 / (1 + e)
    out = xp.where(x >= 0, s, e * s)
    return out[()] if xp is np else out        # [()]: a scalar for a scalar, as a ufunc


def _leaky_relu(x, negative_slope):
    return namespace(x).where(x > 0, x, x * negative_slope)


def _clip(x, lo, hi):
    xp = namespace(x)
    if xp is np:
        return np.clip(x, lo, hi)
    return xp.clip(x, _beside(lo, x), _beside(hi, x))


def _beside(bound, x):
    """A clip bound given as a NumPy array, moved to ``x``'s namespace and device."""
    if isinstance(bound, np.ndarray):
        return namespace(x).asarray(bound, device=device(x))
    return bound


def _clip_mask(x, lo, hi):
    # the gradient passes where lo <= x <= hi (both ends included, as in PyTorch)
    m = None
    if lo is not None:
        m = mask_like(x >= lo, x)
    if hi is not None:
        mh = mask_like(x <= hi, x)
        m = mh if m is None else m * mh
    return m


def _clip_scalar(x, lo, hi):
    # only for number bounds (array bounds are elementwise operands, not constants)
    if not all(v is None or isinstance(v, (int, float)) for v in (lo, hi)):
        return None
    e = x if lo is None else f"max({x}, {lo!r})"
    return e if hi is None else f"min({e}, {hi!r})"


def _neg_rule(n):
    x = n.inputs[0]                                              # -(-x) -> x
    return x.inputs[0] if x.kind == "op" and x.op is neg else None


_X, _OUT, _NOTHING = ((0,),), (("out",),), ((),)      # what a unary op's rule reads

neg = defop("neg", np.negative, (lambda g, out, x: -g,), reads=_NOTHING, doc="Negation, -x.",
            simplify=_neg_rule, scalar=lambda x: f"(-{x})")
exp = defop("exp", np.exp, (lambda g, out, x: g * out,), reads=_OUT, doc="e ** x.",
            scalar=lambda x: f"math.exp({x})")
log = defop("log", np.log, (lambda g, out, x: g / x,), reads=_X,
            doc="Natural logarithm (log of a softmax is computed as log_softmax).",
            scalar=lambda x: f"math.log({x})")
sqrt = defop("sqrt", np.sqrt, (lambda g, out, x: g / (out * 2),), reads=_OUT, doc="Square root.",
             scalar=lambda x: f"math.sqrt({x})")
abs = defop("abs", np.abs, (lambda g, out, x: g * sign(x),), reads=_X,
            doc="|x|, with abs'(0) = 0.", scalar=lambda x: f"abs({x})")
sin = defop("sin", np.sin, (lambda g, out, x: g * cos(x),), reads=_X, doc="Sine (radians).",
            scalar=lambda x: f"math.sin({x})")
cos = defop("cos", np.cos, (lambda g, out, x: -g * sin(x),), reads=_X, doc="Cosine (radians).",
            scalar=lambda x: f"math.cos({x})")
tanh = defop("tanh", np.tanh, (lambda g, out, x: g * (1 - out * out),), reads=_OUT,
             doc="Hyperbolic tangent.", scalar=lambda x: f"math.tanh({x})")
# 1/(1 + e^-x) is accurate in both tails for one element too (e^-x overflowing to inf
# gives 0, as it should)
sigmoid = defop("sigmoid", _sigmoid, (lambda g, out, x: g * (out * (1 - out)),), reads=_OUT,
                fresh=True, doc="The logistic function 1 / (1 + e^-x), computed overflow-free.",
                scalar=lambda x: f"(1.0 / (1.0 + math.exp(-{x})))")
# relu'(x) = [x > 0] (0 at the kink). Multiplying by the mask is branch-free and ~15x
# faster than np.where on large arrays; the one difference, a NaN or inf gradient
# arriving where x <= 0, means training has already diverged.
relu = defop("relu", lambda x: namespace(x).maximum(x, 0), (lambda g, out, x: g * (out > 0),),
             reads=_OUT, fresh=True, doc="max(x, 0), with relu'(0) = 0.",
             kernel=lambda n: Kernel(lambda a, o: f"np.maximum({a[0]}, 0{out_kw(o)})", True, True),
             scalar=lambda x: f"({x} if {x} > 0 or {x} != {x} else 0.0)")
_leaky = defop("leaky_relu", _leaky_relu, (
    lambda g, out, x, negative_slope: where(x > 0, g, g * negative_slope),), reads=_X, fresh=True,
    args=("x",),
    scalar=lambda x, negative_slope: f"({x} if {x} > 0 else {x} * {negative_slope!r})")
softplus = defop("softplus", lambda x: namespace(x).logaddexp(0, x),
                 (lambda g, out, x: g * sigmoid(x),), reads=_X, fresh=True,
                 doc="log(1 + e^x), stable for large |x|.",
                 scalar=lambda x: f"(max({x}, 0.0) + math.log1p(math.exp(-abs({x}))))")
_clip_op = defop("clip", _clip, (
    lambda g, out, x, lo, hi: g if lo is None and hi is None else g * _clip_mask(x, lo, hi),),
    reads=_X, fresh=True, args=("x",), scalar=_clip_scalar)


_LN2, _LN10 = math.log(2), math.log(10)

tan = defop("tan", np.tan, (lambda g, out, x: g * (out * out + 1),), reads=_OUT,
            doc="Tangent (radians).", scalar=lambda x: f"math.tan({x})")
sinh = defop("sinh", np.sinh, (lambda g, out, x: g * cosh(x),), reads=_X,
             doc="Hyperbolic sine.", scalar=lambda x: f"math.sinh({x})")
cosh = defop("cosh", np.cosh, (lambda g, out, x: g * sinh(x),), reads=_X,
             doc="Hyperbolic cosine.", scalar=lambda x: f"math.cosh({x})")
arcsin = defop("arcsin", np.arcsin, (lambda g, out, x: g / sqrt(1 - x * x),), reads=_X,
               doc="Inverse sine, in [-pi/2, pi/2] (nan outside [-1, 1]).",
               scalar=lambda x: f"math.asin({x})")
arccos = defop("arccos", np.arccos, (lambda g, out, x: -g / sqrt(1 - x * x),), reads=_X,
               doc="Inverse cosine, in [0, pi] (nan outside [-1, 1]).",
               scalar=lambda x: f"math.acos({x})")
arctan = defop("arctan", np.arctan, (lambda g, out, x: g / (x * x + 1),), reads=_X,
               doc="Inverse tangent, in (-pi/2, pi/2).", scalar=lambda x: f"math.atan({x})")
arcsinh = defop("arcsinh", np.arcsinh, (lambda g, out, x: g / sqrt(x * x + 1),), reads=_X,
                doc="Inverse hyperbolic sine.", scalar=lambda x: f"math.asinh({x})")
arccosh = defop("arccosh", np.arccosh, (lambda g, out, x: g / sqrt(x * x - 1),), reads=_X,
                doc="Inverse hyperbolic cosine (nan below 1).",
                scalar=lambda x: f"math.acosh({x})")
arctanh = defop("arctanh", np.arctanh, (lambda g, out, x: g / (1 - x * x),), reads=_X,
                doc="Inverse hyperbolic tangent (nan outside [-1, 1]).",
                scalar=lambda x: f"math.atanh({x})")
log1p = defop("log1p", np.log1p, (lambda g, out, x: g / (x + 1),), reads=_X,
              doc="log(1 + x), accurate for small x.", scalar=lambda x: f"math.log1p({x})")
# out + 1 is e^x (PyTorch's rule too): no second exp
expm1 = defop("expm1", np.expm1, (lambda g, out, x: g * (out + 1),), reads=_OUT,
              doc="e^x - 1, accurate for small x.", scalar=lambda x: f"math.expm1({x})")
log2 = defop("log2", np.log2, (lambda g, out, x: g / (x * _LN2),), reads=_X,
             doc="Base-2 logarithm.", scalar=lambda x: f"math.log2({x})")
log10 = defop("log10", np.log10, (lambda g, out, x: g / (x * _LN10),), reads=_X,
              doc="Base-10 logarithm.", scalar=lambda x: f"math.log10({x})")
exp2 = defop("exp2", np.exp2, (lambda g, out, x: g * (out * _LN2),), reads=_OUT,
             xp_forward=lambda xp, x: xp.pow(*promote(xp, 2.0, x)), doc="2 ** x.",
             scalar=lambda x: f"(2.0 ** {x})")
# 1 / x, not np.reciprocal: that truncates integers (1 / 2 = 0); PyTorch gives floats
# (elsewhere: integers as floats, as np.divide, which the standard's divide refuses)
reciprocal = defop("reciprocal", lambda x: np.divide(1, x), (lambda g, out, x: -g * (out * out),),
                   reads=_OUT, fresh=True, doc="1 / x.",
                   xp_forward=lambda xp, x: xp.divide(*promote(xp, 1.0, x)),
                   scalar=lambda x: f"(1.0 / {x})")
# d/dx x^-1/2 = -x^-3/2 / 2 = -out^3 / 2 (PyTorch's rule)
rsqrt = defop("rsqrt", lambda x: 1 / np.sqrt(x),
              (lambda g, out, x: g * (out * out * out * -0.5),), reads=_OUT, fresh=True,
              xp_forward=lambda xp, x: 1 / xp.sqrt(promote(xp, x, 1.0)[0]),
              doc="1 / sqrt(x).", scalar=lambda x: f"(1.0 / math.sqrt({x}))")
# PyTorch's names for the inverse functions (NumPy's are the ops' names)
asin, acos, atan, asinh, acosh, atanh = arcsin, arccos, arctan, arcsinh, arccosh, arctanh


def _erf(x):
    # math.erf (the C library's, within an ulp) one element at a time, without SciPy:
    # ~110 ns an element, ~20x np.exp. A vectorised piecewise-Chebyshev erf measured
    # only ~2x faster and 5-100 ulp off (float64 coefficients carry their own rounding;
    # libm's exactness comes from a careful split we would have to copy); no hot path
    # uses erf yet, and a fusing backend inlines the scalar form, math.erf, natively
    if type(x) is not np.ndarray and not isinstance(x, (np.generic, int, float)):
        return _erf_in(namespace(x), x)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    return np.asarray(_erf_each(x), dtype=dtype)


_erf_each = np.frompyfunc(math.erf, 1, 1)
_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)
_ERF_SPLIT, _ERF_TERMS = 2.5, 40        # (measured: within 6 ulp of math.erf on [-7, 7])


def _erf_in(xp, x):
    """erf in the array API's functions, for namespaces without one (the standard has
    none; no per-element Python call on a GPU). Below the split, the series
    e^-x² Σ (2x²)^n x / (2n+1)!! (positive terms: no cancellation); above it, 1 - erfc
    with erfc's continued fraction e^-x² / sqrt(pi) / (x + (1/2) / (x + 1 / (x + ...)))."""
    if kind(x.dtype) != "f":
        x = xp.astype(x, xp.float64)
    a = xp.abs(x)
    near = a < _ERF_SPLIT
    xs = xp.where(near, x, 0.0)
    x2 = xs * xs
    term = total = xs
    for n in range(1, _ERF_TERMS):
        term = term * (x2 * (2 / (2 * n + 1)))
        total = total + term
    series = total * xp.exp(-x2) * _TWO_OVER_SQRT_PI
    xl = xp.where(near, _ERF_SPLIT, a)
    t = xl
    for k in range(_ERF_TERMS, 0, -1):
        t = xl + (k / 2) / t
    erfc = xp.exp(-xl * xl) / (t * math.sqrt(math.pi))
    out = xp.where(near, series, xp.where(x < 0, erfc - 1, 1 - erfc))
    return xp.where(xp.isnan(x), x, out)


erf = defop("erf", _erf, (lambda g, out, x: g * (exp(-(x * x)) * _TWO_OVER_SQRT_PI),), reads=_X,
            fresh=True, doc="The error function 2/sqrt(pi) * integral of e^(-t^2) from 0 to x.",
            scalar=lambda x: f"math.erf({x})")


# ---------------------------------------------------------------- activations

_INV_SQRT2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_GELU_K, _GELU_C = math.sqrt(2 / math.pi), 0.044715      # the tanh form's constants (PyTorch's)


def _gelu(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + namespace(x).tanh(_GELU_K * (x + _GELU_C * x * x * x)))
    return 0.5 * x * (1 + _erf(x * _INV_SQRT2))


def _gelu_vjp(g, out, x, approximate):
    if approximate == "tanh":
        t = tanh((x + x * x * x * _GELU_C) * _GELU_K)
        du = (1 + x * x * (3 * _GELU_C)) * (0.5 * _GELU_K)      # d(tanh's argument)/dx, halved
        return g * ((1 + t) * 0.5 + x * (1 - t * t) * du)
    return g * ((1 + erf(x * _INV_SQRT2)) * 0.5 + x * exp(x * x * -0.5) * _INV_SQRT_2PI)


def _gelu_scalar(x, approximate):
    if approximate == "tanh":
        u = f"{_GELU_K!r} * ({x} + {_GELU_C!r} * {x} * {x} * {x})"
        return f"(0.5 * {x} * (1.0 + math.tanh({u})))"
    return f"(0.5 * {x} * (1.0 + math.erf({x} * {_INV_SQRT2!r})))"


_gelu_op = defop("gelu", _gelu, (_gelu_vjp,), reads=_X, fresh=True, args=("x",),
                 scalar=_gelu_scalar)


def _silu_vjp(g, out, x):
    s = sigmoid(x)
    return g * (s * (1 + x * (1 - s)))


silu = defop("silu", lambda x: x * _sigmoid(x), (_silu_vjp,), reads=_X, fresh=True,
             doc="x * sigmoid(x) (swish).", scalar=lambda x: f"({x} / (1.0 + math.exp(-{x})))")


def _mish_vjp(g, out, x):
    t = tanh(softplus(x))
    return g * (t + x * sigmoid(x) * (1 - t * t))


def _mish(x):
    xp = namespace(x)
    return x * xp.tanh(xp.logaddexp(0, x))


mish = defop("mish", _mish, (_mish_vjp,), reads=_X,
             fresh=True, doc="x * tanh(softplus(x)), softplus computed stably.",
             scalar=lambda x: f"({x} * math.tanh(max({x}, 0.0) + math.log1p(math.exp(-abs({x})))))")

# log(sigmoid(x)) = -softplus(-x): finite for any x (log of an underflowed sigmoid is not)
logsigmoid = defop("logsigmoid", lambda x: -namespace(x).logaddexp(0, -x),
                   (lambda g, out, x: g * sigmoid(-x),), reads=_X, fresh=True,
                   doc="log(sigmoid(x)), computed as -softplus(-x): finite for any x.",
                   scalar=lambda x: f"(min({x}, 0.0) - math.log1p(math.exp(-abs({x}))))")

# softsign'(x) = 1/(1+|x|)^2; its own derivative uses abs'(0) = 0, as PyTorch's composite
softsign = defop("softsign", lambda x: x / (1 + namespace(x).abs(x)),
                 (lambda g, out, x: g / pow_scalar(abs(x) + 1, 2),), reads=_X, fresh=True,
                 doc="x / (1 + |x|).", scalar=lambda x: f"({x} / (1.0 + abs({x})))")


def _elu(x, alpha, scale, input_scale):
    # np.where computes both branches: the exponent is clamped at 0 so that x > 0 (unused
    # there) cannot overflow
    xp = namespace(x)
    return xp.where(x > 0, x * scale, xp.expm1(xp.minimum(x, 0) * input_scale) * (scale * alpha))


def _elu_vjp(g, out, x, alpha, scale, input_scale):
    # PyTorch's rule for elu, selu and celu: the slope for x <= 0 is c·e^(x·input_scale)
    # (c at the kink, x = 0; e^ rather than out + c, which cancels to 0 in the tail), and
    # its own derivative counts only x < 0 (0 at the kink), as PyTorch's elu double
    # backward; the exponent is 0 for x >= 0, so the unused branch never overflows
    c = input_scale * scale * alpha
    return where(x > 0, g * scale, g * c * exp(where(x < 0, x, 0) * input_scale))


def _elu_scalar(x, alpha, scale, input_scale):
    return (f"({x} * {scale!r} if {x} > 0 else "
            f"math.expm1({x} * {input_scale!r}) * {scale * alpha!r})")


_elu_op = defop("elu", _elu, (_elu_vjp,), reads=_X, fresh=True, args=("x",),
                scalar=_elu_scalar)

_SELU_ALPHA = 1.6732632423543772848170429916717     # PyTorch's (Klambauer et al., 2017)
_SELU_SCALE = 1.0507009873554804934193349852946


def _hardswish_vjp(g, out, x):
    # PyTorch's slopes: 0 for x <= -3, x/3 + 1/2 inside, 1 for x >= 3 (so 0 at -3, 1 at 3)
    inside = logical_and(x > -3, x < 3)
    return where(inside, g * (x * (1 / 3) + 0.5), g * mask_like(x >= 3, x))


hardswish = defop("hardswish", lambda x: x * namespace(x).clip(x + 3, 0, 6) * (1 / 6),
                  (_hardswish_vjp,), reads=_X, fresh=True, doc="x * relu6(x + 3) / 6.",
                  scalar=lambda x: f"({x} * min(max({x} + 3.0, 0.0), 6.0) * {1 / 6!r})")

# the slope 1/6 on the open interval (-3, 3), 0 at its ends, as PyTorch
hardsigmoid = defop(
    "hardsigmoid", lambda x: namespace(x).clip(x + 3, 0, 6) * (1 / 6),
    (lambda g, out, x: g * (mask_like(logical_and(x > -3, x < 3), x) * (1 / 6)),), reads=_X,
    fresh=True, doc="relu6(x + 3) / 6: 0 below -3, 1 above 3, linear between.",
    scalar=lambda x: f"(min(max({x} + 3.0, 0.0), 6.0) * {1 / 6!r})")

# the gradient passes on the open interval (lo, hi), 0 at its ends, as PyTorch's hardtanh
# (clip, as torch.clamp, passes it at the ends)
_hardtanh_op = defop(
    "hardtanh", lambda x, lo, hi: namespace(x).clip(x, lo, hi),
    (lambda g, out, x, lo, hi: g * mask_like(logical_and(x > lo, x < hi), x),), reads=_X,
    fresh=True, args=("x",), scalar=lambda x, lo, hi: f"min(max({x}, {lo!r}), {hi!r})")


def gelu(x, approximate="none"):
    """x * Phi(x), Phi the standard normal CDF (PyTorch's default, with erf);
    ``approximate="tanh"``: 0.5·x·(1 + tanh(sqrt(2/pi)·(x + 0.044715·x³)))."""
    if approximate not in ("none", "tanh"):
        raise RetrogradError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return apply(_gelu_op, x, approximate=approximate)


def elu(x, alpha=1.0):
    """x for x > 0, else alpha * (e^x - 1)."""
    return apply(_elu_op, x, alpha=float(alpha), scale=1.0, input_scale=1.0)


def selu(x):
    """scale * elu(x, alpha) with the self-normalising constants of PyTorch."""
    return apply(_elu_op, x, alpha=_SELU_ALPHA, scale=_SELU_SCALE, input_scale=1.0)


def celu(x, alpha=1.0):
    """max(0, x) + min(0, alpha * (e^(x/alpha) - 1))."""
    if alpha == 0:
        raise RetrogradError("celu: alpha must not be 0 (x is divided by it)")
    return apply(_elu_op, x, alpha=float(alpha), scale=1.0, input_scale=1.0 / alpha)


def hardtanh(x, min_val=-1.0, max_val=1.0):
    """x clamped to [min_val, max_val]; the gradient is 0 at the ends (as PyTorch)."""
    if not min_val <= max_val:
        raise RetrogradError(f"hardtanh: min_val ({min_val}) must be <= max_val ({max_val})")
    return apply(_hardtanh_op, x, lo=float(min_val), hi=float(max_val))


def relu6(x):
    """min(max(x, 0), 6): hardtanh on [0, 6], so the gradient is 0 at 0 and at 6."""
    return apply(_hardtanh_op, x, lo=0.0, hi=6.0)


def leaky_relu(x, negative_slope=0.01):
    """x where x > 0, else negative_slope * x."""
    return apply(_leaky, x, negative_slope=negative_slope)


def clip(x, a_min=None, a_max=None):
    """Clamp to [a_min, a_max]; the gradient passes where a_min <= x <= a_max."""
    if isinstance(a_min, Tensor) or isinstance(a_max, Tensor):
        raise RetrogradError("clip: a_min and a_max must be numbers or arrays (constants), got a "
                             "Tensor; for bounds that are tensors use rg.maximum(x, lo) and "
                             "rg.minimum(x, hi)")
    return apply(_clip_op, x, lo=a_min, hi=a_max)


def square(x):
    """x ** 2."""
    return pow_scalar(x, 2)


# no gradient: the derivative is zero almost everywhere
sign = defop("sign", np.sign, doc="-1, 0 or 1 by the sign of x (no gradient).",
             scalar=lambda x: f"(1.0 if {x} > 0 else -1.0 if {x} < 0 else {x})")
equal = defop("eq", np.equal, doc="a == b (no gradient).", scalar=lambda a, b: f"({a} == {b})")
not_equal = defop("ne", np.not_equal, doc="a != b (no gradient).",
                  scalar=lambda a, b: f"({a} != {b})")
less = defop("lt", np.less, doc="a < b (no gradient).", scalar=lambda a, b: f"({a} < {b})")
less_equal = defop("le", np.less_equal, doc="a <= b (no gradient).",
                   scalar=lambda a, b: f"({a} <= {b})")
greater = defop("gt", np.greater, doc="a > b (no gradient).", scalar=lambda a, b: f"({a} > {b})")
greater_equal = defop("ge", np.greater_equal, doc="a >= b (no gradient).",
                      scalar=lambda a, b: f"({a} >= {b})")
logical_and = defop("logical_and", np.logical_and, doc="a and b, elementwise (no gradient).",
                    scalar=lambda a, b: f"(bool({a}) and bool({b}))")
logical_or = defop("logical_or", np.logical_or, doc="a or b, elementwise (no gradient).",
                   scalar=lambda a, b: f"(bool({a}) or bool({b}))")
logical_not = defop("logical_not", np.logical_not, doc="not x, elementwise (no gradient).",
                    scalar=lambda x: f"(not {x})")
isfinite = defop("isfinite", np.isfinite, doc="Whether x is neither inf nor nan (no gradient).",
                 scalar=lambda x: f"math.isfinite({x})")
floor = defop("floor", np.floor, doc="The largest integer <= x, as a float (no gradient).",
              scalar=lambda x: f"float(math.floor({x}))")
ceil = defop("ceil", np.ceil, doc="The smallest integer >= x, as a float (no gradient).",
             scalar=lambda x: f"float(math.ceil({x}))")
trunc = defop("trunc", np.trunc, doc="x rounded toward zero, as a float (no gradient).",
              scalar=lambda x: f"float(math.trunc({x}))")
isnan = defop("isnan", np.isnan, doc="Whether x is nan (no gradient).",
              scalar=lambda x: f"math.isnan({x})")
isinf = defop("isinf", np.isinf, doc="Whether x is inf or -inf (no gradient).",
              scalar=lambda x: f"math.isinf({x})")
# Python's round(), as np.round, rounds halves to even
round = defop("round", lambda x: namespace(x).round(x), args=("x",),
              doc="x rounded to the nearest integer, halves to even (no gradient).",
              scalar=lambda x: f"float(round({x}))")


def _bernoulli_mask(x, p, generator):
    # drawn when the op runs -- at every step of a compiled graph too, from the same
    # generator in the same order as eager mode, so both give the same masks
    from ..tensor import default_generator
    keep = (generator or default_generator()).random(x.shape) >= p
    if type(x) is np.ndarray:
        return (keep / (1 - p)).astype(x.dtype)
    # drawn on the host, so another namespace gets the same masks as NumPy, then moved
    return to_namespace((keep / (1 - p)).astype(numpy_dtype(x.dtype)), namespace(x), device(x))


# random, so never folded or shared by the graph compiler; x only gives shape and dtype
_bernoulli = defop("bernoulli_mask", _bernoulli_mask, pure=False, fresh=True,
                   shape=lambda x, p, generator: (x.shape, x.dtype))


def bernoulli_mask(x, p, generator=None):
    """0 with probability p, else 1/(1-p), in x's shape (inverted dropout)."""
    return apply(_bernoulli, x, p=p, generator=generator)


# ---------------------------------------------------------------- remainders

# d/da = 1 and d/db = -q, q the quotient that the forward took off (a = q·b + out), as
# PyTorch's remainder and fmod. q is read back as round((a - out) / b): floor(a / b) can
# round to the next integer (1 / 0.1 is 10.0, while np.mod(1, 0.1) took off 9 tenths). The
# jumps, where a/b is an integer, are left out (a one-sided limit). round has no gradient,
# so the b-rule's own derivative is in g only: a piecewise-linear op's second derivative is 0
def _quotient(a, b, out):
    return round((a - out) / b)


mod = defop("mod", np.mod, (
    lambda g, out, a, b: g,
    lambda g, out, a, b: -g * _quotient(a, b, out)), reads=((), (0, 1, "out")),
    doc="a mod b with the sign of b (Python's %, np.mod, torch.remainder).",
    scalar=lambda a, b: f"({a} % {b})")
remainder = mod                                        # PyTorch's name


def _fmod_in(xp, a, b):
    # the standard's remainder has b's sign (Python's %); C's fmod has a's: where they
    # differ, fmod is remainder - b (remainder added b to fmod's result)
    a, b = promote(xp, a, b)
    r = xp.remainder(a, b)
    return xp.where(xp.logical_and(r != 0, (r < 0) != (a < 0)), r - b, r)


fmod = defop("fmod", np.fmod, (
    lambda g, out, a, b: g,
    lambda g, out, a, b: -g * _quotient(a, b, out)), reads=((), (0, 1, "out")),
    xp_forward=_fmod_in,
    doc="a mod b with the sign of a (C's fmod, np.fmod, torch.fmod).",
    scalar=lambda a, b: f"math.fmod({a}, {b})")
