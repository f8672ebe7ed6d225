"""The njit functions every kernel of the Numba backend calls (numba_backend.py): compiled
once per operand types and layouts, and cached beside this file by Numba, instead of being
typed and compiled again inside each generated kernel (seconds for each product)."""
import math
import types

import numba
import numpy as np

_jit = numba.njit(cache=True, error_model="numpy", nogil=True, inline="never")


@_jit
def dot(a, b, out):
    np.dot(a, b, out)


@_jit
def dot_new(a, b):
    return np.dot(a, b)


@_jit
def _row_max_sumexp(z, r):
    m = -np.inf
    for c in range(z.shape[1]):
        e = z[r, c]
        if e > m or e != e:      # NaN propagates, as np.max
            m = e
    s = 0.0
    for c in range(z.shape[1]):
        s += math.exp(z[r, c] - m)
    return m, s


@_jit
def softmax_cross_entropy(z, labels, out):
    """log-sum-exp(z[r]) - z[r, label], from the row's shifted logits (ops/loss.py)."""
    for r in range(z.shape[0]):
        m, s = _row_max_sumexp(z, r)
        out[r] = math.log(s) - (z[r, labels[r]] - m)


@_jit
def softmax_minus_onehot(z, labels, out):
    """softmax(z[r]) - onehot(label) (ops/loss.py)."""
    for r in range(z.shape[0]):
        m, s = _row_max_sumexp(z, r)
        for c in range(z.shape[1]):
            out[r, c] = math.exp(z[r, c] - m) / s
        out[r, labels[r]] -= 1


_FORMS = {}         # (module, name) -> its njit dispatcher: one per process


def loop_form(module, name):
    """The njit function of an op's Numba form (its ``lowering=`` fact, a plain-Python
    function in its record's file, e.g. ops/rnn.py), compiled once per process and
    cached by Numba beside that file."""
    key = (module, name)
    if key not in _FORMS:
        import importlib
        fn = getattr(importlib.import_module(module), name)
        helpers = getattr(fn, "helpers", ())
        if helpers:
            # plain-Python functions of its module that it calls (e.g. a tanh of its own),
            # compiled too and bound in a copy of its globals: the module stays Numba-free
            scope = dict(fn.__globals__)
            scope.update({h: _helper(module, h) for h in helpers})
            fn = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__,
                                    fn.__closure__)
        _FORMS[key] = numba.njit(cache=True, error_model="numpy", nogil=True)(fn)
    return _FORMS[key]


def _helper(module, name):
    """A form's helper as an njit function inlined into its callers (so LLVM can vectorise
    the loop around a call of it)."""
    key = (module, name, "helper")
    if key not in _FORMS:
        import importlib
        fn = getattr(importlib.import_module(module), name)
        _FORMS[key] = numba.njit(cache=True, error_model="numpy", nogil=True,
                                 inline="always")(fn)
    return _FORMS[key]
