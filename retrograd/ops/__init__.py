"""Every primitive once (``REGISTRY``), the functions that call them, and the
Tensor operators and methods, which are these same functions (the in-place ones
are in inplace.py)."""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from .base import REGISTRY, Op, apply, defop
from .elementwise import (abs, acos, acosh, add, arccos, arccosh, arcsin, arcsinh, arctan, arctan2,
                          arctanh, asin, asinh, atan, atan2, atanh, bernoulli_mask, ceil, celu,
                          clip, copysign, cos, cosh, div, elu, equal, erf, exp, exp2, expm1, floor,
                          gelu, greater, greater_equal, hardsigmoid, hardswish, hardtanh, hypot,
                          isfinite, isinf, isnan, leaky_relu, less, less_equal, log, log10, log1p,
                          log2, logaddexp, logical_and, logical_not, logical_or, logsigmoid,
                          maximum, minimum, mish, mul, neg, not_equal, pow, pow_scalar, reciprocal,
                          relu, relu6, round, rsqrt, selu, sigmoid, sign, silu, sin, sinh, softplus,
                          softsign, sqrt, square, sub, tan, tanh, trunc, unbroadcast, where)
from .elementwise import fmod, mod, remainder
from .index import (ValuesIndices, argsort, gather, index_select, masked_fill, scatter,
                    scatter_reduce, sort, take, take_along_axis, topk)
from .scan import cummax, cummin, cumprod, cumsum, diff, logcumsumexp
from .linalg import (cross, diagonal, dot, einsum, inner, matmul, outer, tensordot, trace, tril,
                     triu)
from .linalg import det, inv, slogdet, solve      # rg.linalg's only (NumPy has no np.inv)
from .conv import (adaptive_avg_pool2d, avg_pool2d, conv1d, conv2d, conv_transpose2d, fold,
                   interpolate, max_pool2d, unfold)
from .loss import softmax_cross_entropy, softmax_minus_onehot
from .nn import embedding
from .reduce import (argmax, argmin, log_softmax, logsumexp, max, mean, min, prod, softmax, std,
                     sum, var)
from .reduce import all, allclose, any, isclose, norm
from .inplace import inplace_method, setitem
from .rnn import lstm_scan
from .shape import (astype, broadcast_to, concatenate, detach, expand_dims, flatten, stop_gradient,
                    getitem, pad, reshape, scatter_add, split, squeeze, stack, sum_to, swapaxes,
                    transpose)
from .shape import (array_split, flip, hstack, moveaxis, repeat, roll, rollaxis, tile, vstack)

__all__ = [
    "REGISTRY", "Op", "apply", "defop", "unbroadcast",
    "add", "sub", "mul", "div", "neg", "pow", "pow_scalar", "square", "exp", "log", "sqrt", "abs",
    "sin", "cos", "tanh", "erf", "sigmoid", "relu", "leaky_relu", "softplus", "maximum", "minimum",
    "clip", "where", "sign", "floor", "round", "isfinite", "equal", "not_equal", "less",
    "less_equal", "greater", "greater_equal", "logical_and", "logical_or", "logical_not",
    "sum", "mean", "var", "std", "max", "min", "prod", "argmax", "argmin", "logsumexp", "softmax",
    "log_softmax", "matmul", "dot", "astype", "reshape", "transpose", "swapaxes", "broadcast_to",
    "sum_to", "expand_dims", "squeeze", "flatten", "getitem", "scatter_add", "concatenate",
    "stack", "split", "pad", "softmax_cross_entropy", "softmax_minus_onehot",
    "bernoulli_mask",
    "gelu", "silu", "elu", "selu", "celu", "softsign", "mish", "hardswish", "hardsigmoid",
    "hardtanh", "relu6", "logsigmoid",
    "tan", "sinh", "cosh", "arcsin", "arccos", "arctan", "arcsinh", "arccosh", "arctanh", "asin",
    "acos", "atan", "asinh", "acosh", "atanh", "log1p", "expm1", "log2", "log10", "exp2",
    "reciprocal", "rsqrt", "arctan2", "atan2", "logaddexp", "hypot", "copysign", "ceil", "trunc",
    "isnan", "isinf",
    "conv1d", "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
    "unfold", "fold", "interpolate",
    "mod", "remainder", "fmod", "cumsum", "cumprod", "cummax", "cummin", "logcumsumexp", "diff",
    "sort", "argsort", "topk", "take", "take_along_axis", "gather", "scatter", "scatter_reduce",
    "index_select", "masked_fill", "ValuesIndices",
    "einsum", "tensordot", "outer", "inner", "cross", "trace", "diagonal", "tril", "triu",
    "flip", "roll", "repeat", "tile", "moveaxis", "rollaxis", "array_split", "hstack", "vstack",
    "isclose", "allclose", "any", "all", "norm",
    "lstm_scan",
]


def _swap(f):
    if isinstance(f, Op):
        return lambda self, other: apply(f, other, self)
    return lambda self, other: f(other, self)


def _method(f):
    """A Tensor method for ``f``; an op becomes a plain function that applies it (as fast
    as the method call of a function: an Op instance would bind through Op.__get__)."""
    if not isinstance(f, Op):
        return f
    n = len(f.__signature__.parameters)
    m = (lambda self: apply(f, self)) if n == 1 else (lambda self, other: apply(f, self, other))
    m.__name__, m.__qualname__, m.__doc__ = f.name, f"Tensor.{f.name}", f.__doc__
    return m


def _T(self):
    return transpose(self)


def _reshape_method(self, *shape):
    return reshape(self, *shape)


def _transpose_method(self, *axes):
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = axes[0]
    return transpose(self, axes or None)


# Python operators: the very functions above, so `x + y` and `rg.add(x, y)` are one op.
_methods = {
    "__add__": add, "__radd__": _swap(add), "__sub__": sub, "__rsub__": _swap(sub),
    "__mul__": mul, "__rmul__": _swap(mul), "__truediv__": div, "__rtruediv__": _swap(div),
    "__pow__": pow, "__rpow__": _swap(pow), "__matmul__": matmul, "__rmatmul__": _swap(matmul),
    "__neg__": neg, "__pos__": lambda self: self, "__abs__": abs,
    "__eq__": equal, "__ne__": not_equal, "__lt__": less, "__le__": less_equal,
    "__gt__": greater, "__ge__": greater_equal,
    "__and__": logical_and, "__or__": logical_or, "__invert__": logical_not,
    "__getitem__": getitem,
    "__iadd__": inplace_method(add, np.add, "+=", "__iadd__"),
    "__isub__": inplace_method(sub, np.subtract, "-=", "__isub__"),
    "__imul__": inplace_method(mul, np.multiply, "*=", "__imul__"),
    "__itruediv__": inplace_method(div, np.true_divide, "/=", "__itruediv__"),
    "__setitem__": setitem,
    # methods, NumPy style
    "detach": detach, "T": property(_T), "reshape": _reshape_method, "transpose": _transpose_method,
    "sum": sum, "mean": mean, "var": var, "std": std, "max": max, "min": min, "prod": prod,
    "argmax": argmax, "argmin": argmin, "logsumexp": logsumexp,
    "softmax": softmax, "log_softmax": log_softmax,
    "exp": exp, "log": log, "sqrt": sqrt, "abs": abs, "sin": sin, "cos": cos, "tanh": tanh,
    "erf": erf,
    "sigmoid": sigmoid, "relu": relu, "leaky_relu": leaky_relu, "softplus": softplus,
    "clip": clip, "sign": sign, "square": square, "pow": pow, "matmul": matmul, "dot": dot,
    "astype": astype, "broadcast_to": broadcast_to, "expand_dims": expand_dims,
    "squeeze": squeeze, "flatten": flatten, "swapaxes": swapaxes,
    "float": lambda self: astype(self, "float32"), "double": lambda self: astype(self, "float64"),
    "maximum": maximum, "minimum": minimum,
    # the unary math of issue 12, as PyTorch's methods (both spellings of the inverses)
    **{f.name: f for f in (tan, sinh, cosh, arcsin, arccos, arctan, arcsinh, arccosh, arctanh,
                           log1p, expm1, log2, log10, exp2, reciprocal, rsqrt, ceil, trunc, isnan,
                           isinf)},
    "asin": asin, "acos": acos, "atan": atan, "asinh": asinh, "acosh": acosh, "atanh": atanh,
    # scans, sorting and gather/scatter: NumPy's and PyTorch's methods (not x.sort, which is
    # in place in NumPy and returns (values, indices) in PyTorch: rg.sort is np.sort)
    "__mod__": mod, "__rmod__": _swap(mod), "remainder": mod, "fmod": fmod,
    "cumsum": cumsum, "cumprod": cumprod, "cummax": cummax, "cummin": cummin,
    "logcumsumexp": logcumsumexp, "diff": diff, "argsort": argsort, "topk": topk, "take": take,
    "gather": gather, "scatter": scatter, "scatter_reduce": scatter_reduce,
    "index_select": index_select, "masked_fill": masked_fill,
    # movement and linear algebra (repeat is NumPy's: PyTorch's Tensor.repeat is tile)
    "flip": flip, "roll": roll, "repeat": repeat, "tile": tile, "moveaxis": moveaxis,
    "diagonal": diagonal, "trace": trace, "tril": tril, "triu": triu, "any": any, "all": all,
    "norm": norm,
}
for _name, _fn in _methods.items():
    setattr(Tensor, _name, _method(_fn))
del _name, _fn
