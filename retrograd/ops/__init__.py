"""Every primitive once (``REGISTRY``), the functions that call them, and the
Tensor operators and methods, which are these same functions."""
from __future__ import annotations

import numpy as np

from .. import tensor as _tensor
from ..errors import RetrogradError, ShapeError
from ..tensor import Tensor, _bump_version, _mode
from . import base as _base
from .base import REGISTRY, Op, apply, defop
from .elementwise import (abs, add, bernoulli_mask, clip, cos, div, equal, erf, exp, floor,
                          greater, greater_equal, isfinite, leaky_relu, less, less_equal, log,
                          logical_and, logical_not, logical_or, maximum, minimum, mul, neg,
                          not_equal, pow, pow_scalar, relu, round, sigmoid, sign, sin, softplus,
                          sqrt, square, sub, tanh, unbroadcast, where)
from .linalg import dot, matmul
from .loss import softmax_cross_entropy, softmax_minus_onehot
from .reduce import (argmax, argmin, log_softmax, logsumexp, max, mean, min, prod, softmax, std,
                     sum, var)
from .shape import (_canonical_index, astype, broadcast_to, concatenate, expand_dims, flatten,
                    getitem, pad, reshape, scatter_add, split, squeeze, stack, sum_to, swapaxes,
                    transpose)

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


# ---------------------------------------------------------------- in place
#
# `t += x`, `t -= x`, `t *= x`, `t /= x` and `t[idx] = v`, where PyTorch allows them:
#  * when nothing needs recording (grad mode off, or neither side requires grad) the
#    array itself is changed -- every alias of it sees the change -- and t's version
#    counter is bumped, so a node that saved t before refuses to backprop;
#  * on a leaf that requires grad, with grad mode on: an error (do it under no_grad);
#  * otherwise (t is a non-leaf, or x requires grad) the op is recorded and t -- the
#    same Python object -- becomes its output, as in PyTorch. Its old value lives on as
#    a node of its own, so the gradient is right; t gets a new array (aliases of the
#    old one keep the old value) and a bumped version.
# Graph values (Vars) are immutable: `v += x` rebinds the name, `v[i] = u` is refused.

def _refuse_leaf(what):
    raise RetrogradError(
        f"a leaf tensor that requires grad is being used in an in-place operation ({what}): "
        "that would change a value the graph may still need. Do it under rg.no_grad() "
        "(e.g. a manual update step), or on a copy (t = t + x)")


def _refuse_traced(what, instead):
    raise RetrogradError(
        f"in-place operation ({what}) on a tensor that requires grad inside rg.compile: the "
        f"change would happen once, at trace time, not on every call; {instead}")


def _refuse_views(t, what):
    vc = t._vc
    if vc is not None and vc.views is not None and vc.live_views():
        # retrograd gives a recorded in-place result a new array (the old value stays for
        # the backward), so a view and its base would silently part: PyTorch writes through
        # and rebases the base's gradient; we refuse rather than diverge
        raise RetrogradError(
            f"in-place operation ({what}) that autograd records, on a tensor that shares its "
            "memory with a view (a slice, reshape or transpose; or is one): the write would "
            "reach only one of them; compute it out of place (t = t + x, rg.where, "
            "rg.concatenate), or change the data under rg.no_grad()")


def _record_inplace(t, compute, what):
    """Record ``compute(old value of t)`` and make ``t`` the resulting node."""
    _refuse_views(t, what)
    old = Tensor._make(t._data, t._op, t._inputs, t._params)
    old.requires_grad, old._rec = t.requires_grad, t._rec
    for slot in ("_site", "_prev"):        # _site: set by detect_anomaly only
        value = getattr(t, slot, None)
        if value is not None:
            setattr(old, slot, value)
    # the change counts against the old value, as in PyTorch: nodes recorded before it
    # that read t refuse to backprop (its own op, recorded after, sees the old value)
    _bump_version(t)
    old._vc = t._vc
    new = compute(old)
    if new.shape != old.shape:             # in place, t keeps its shape and dtype
        raise ShapeError(f"{what}: the result has shape {new.shape}, the tensor {old.shape}")
    if new.dtype != old.dtype:
        if not np.can_cast(new.dtype, old.dtype, "same_kind"):
            raise RetrogradError(f"{what}: the result has dtype {new.dtype}, which cannot be "
                                 f"stored in the tensor's {old.dtype}")
        new = astype(new, old.dtype)
    t._data, t._op, t._inputs, t._params = new._data, new._op, new._inputs, new._params
    t.requires_grad = new.requires_grad
    t._vc = _tensor._Version(t._vc)        # a new array: aliases of the old one keep theirs
    t._rec = _tensor._clock
    t._prev = (_tensor._clock, old)        # for the nodes that took t before the change
    site = getattr(new, "_site", None)
    if site is not None:
        t._site = site
    return t


def _inplace(fn, ufunc, symbol, name):
    def method(self, other):
        other_symbolic = isinstance(other, Tensor) and other._symbolic
        if self._symbolic or other_symbolic:
            return fn(self, other)
        other_rg = isinstance(other, Tensor) and other.requires_grad
        if _base.tracing() and (self.requires_grad or other_rg):
            if self.requires_grad:
                _refuse_traced(f"'{symbol}'", f"write t = t {symbol[0]} x instead")
            return fn(self, other)         # a plain tensor plus a traced value: a new value
        if not (_mode.enabled and (self.requires_grad or other_rg)):
            if not self._data.flags.writeable:
                raise RetrogradError(f"'{symbol}': the tensor's array is read-only")
            value = other._data if isinstance(other, Tensor) else other
            try:
                ufunc(self._data, value, out=self._data)
            except ValueError as e:
                raise ShapeError(f"'{symbol}': {e} (shapes: {self.shape} and "
                                 f"{np.shape(value)})") from None
            except TypeError as e:
                raise RetrogradError(f"'{symbol}': {e}") from None
            _bump_version(self)
            return self
        if self.requires_grad and self._op is None:
            _refuse_leaf(f"'{symbol}'")
        return _record_inplace(self, lambda old: fn(old, old if other is self else other),
                               f"'{symbol}'")
    method.__name__ = method.__qualname__ = name
    return method


def _assigned(old, idx, value):
    """``old`` with ``old[idx]`` replaced by ``value``, differentiably in both."""
    shape, dtype = old.shape, old.dtype
    counts = np.zeros(shape, np.intp)
    np.add.at(counts, idx, 1)
    mask = counts > 0
    if isinstance(value, Tensor) and value.requires_grad:
        if counts.max(initial=0) > 1:
            raise RetrogradError("t[idx] = v: the index repeats an element, so which value it "
                                 "gets (and its gradient) would be ambiguous")
        v = broadcast_to(astype(value, dtype), counts[idx].shape)
        placed = scatter_add(v, idx, shape)
    else:
        placed = np.zeros(shape, dtype)
        placed[idx] = value._data if isinstance(value, Tensor) else value
    return where(mask, placed, old)


def _setitem(self, idx, value):
    if self._symbolic or (isinstance(value, Tensor) and value._symbolic):
        raise RetrogradError("t[idx] = v on a graph value: graph values cannot change; "
                             "build the new value with rg.where or rg.concatenate")
    value_rg = isinstance(value, Tensor) and value.requires_grad
    if _base.tracing() and (self.requires_grad or value_rg):
        _refuse_traced("t[idx] = v", "build the new value with rg.where")
    if not (_mode.enabled and (self.requires_grad or value_rg)):
        self._data[_canonical_index(idx)] = value._data if isinstance(value, Tensor) else value
        _bump_version(self)
        return
    if self.requires_grad and self._op is None:
        _refuse_leaf("t[idx] = v")
    _record_inplace(self, lambda old: _assigned(old, _canonical_index(idx), value), "t[idx] = v")


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
    "__iadd__": _inplace(add, np.add, "+=", "__iadd__"),
    "__isub__": _inplace(sub, np.subtract, "-=", "__isub__"),
    "__imul__": _inplace(mul, np.multiply, "*=", "__imul__"),
    "__itruediv__": _inplace(div, np.true_divide, "/=", "__itruediv__"),
    "__setitem__": _setitem,
    # methods, NumPy style
    "T": property(_T), "reshape": _reshape_method, "transpose": _transpose_method,
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
}
for _name, _fn in _methods.items():
    setattr(Tensor, _name, _method(_fn))
del _name, _fn
