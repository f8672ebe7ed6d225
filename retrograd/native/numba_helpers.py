"""The njit functions every kernel of the Numba backend calls (numba_backend.py): compiled
once per operand types and layouts, and cached beside this file by Numba, instead of being
typed and compiled again inside each generated kernel (seconds for each product)."""
import math
import types

import numba
import numpy as np
from llvmlite import ir
from numba.core import types as nb_types
from numba.extending import intrinsic, overload

from retrograd.native import numba_cache  # noqa: F401  (before any cached function)
from retrograd.native.numba_blas import gemm

_jit = numba.njit(cache=True, error_model="numpy", nogil=True, inline="never")


@_jit
def dot(a, b, out):
    gemm(a, b, out)


@_jit
def dot_new(a, b):
    out = np.empty((a.shape[0], b.shape[1]), a.dtype)
    gemm(a, b, out)
    return out


@intrinsic
def _bits_as_float64(typingctx, bits):
    """The float64 whose IEEE bits are the int64 ``bits`` (a bitcast)."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return nb_types.float64(nb_types.int64), codegen


@numba.njit(cache=True, error_model="numpy", nogil=True, inline="always")
def _exp_float32(x):
    """e**x for float32 results: 2**n * p(r), r = x - n ln 2 in [-ln2/2, ln2/2], p of
    degree 7 (relative error < 1e-8, under half a float32 ulp; x clamped to [-708, 709],
    whose ends the float32 result rounds to 0 and inf; NaN stays NaN). Branch-free
    and without a libm call, so LLVM vectorises the loop around it: the C library's exp
    takes ~8 ns an element here, this ~0.8 ns (B1's softmax loss took 97 of a kernel's
    200 us). Float64 programs keep math.exp (_exp_like)."""
    x = min(max(x, -708.0), 709.0)
    n = math.floor(x * 1.4426950408889634 + 0.5)
    r = x - n * 0.6931471805599453
    p = 1.0 + r * (1.0 + r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (
        1 / 120 + r * (1 / 720 + r * (1 / 5040)))))))
    return p * _bits_as_float64((np.int64(n) + 1023) << 52)


def _exp_like(x, z):
    """e**x, to the precision of array ``z``'s dtype."""
    return math.exp(x)


@overload(_exp_like, inline="always")
def _exp_like_typed(x, z):
    if isinstance(z, nb_types.Array) and z.dtype == nb_types.float32:
        return lambda x, z: _exp_float32(x)
    return lambda x, z: math.exp(x)


@_jit
def _shifted_exp(z, out, finite_shift=False):
    """out = exp(z - rowmax(z)); returns the row maxima (with ``finite_shift`` an inf or
    NaN maximum shifts by 0, as ops/reduce.py's softmax). Loops without branches or
    reductions, which LLVM vectorises (a sum of exps over a row does not). A NaN or inf in
    a row makes its sum NaN, as in NumPy's softmax."""
    rows, cols = z.shape
    m = np.empty(rows, z.dtype)
    for r in range(rows):
        mm = z[r, 0]
        for c in range(1, cols):
            e = z[r, c]
            mm = e if e > mm else mm
        m[r] = mm if not finite_shift or math.isfinite(mm) else 0
    for r in range(rows):
        for c in range(cols):
            out[r, c] = _exp_like(z[r, c] - m[r], z)
    return m


@_jit
def _divide_by_row_sums(out):
    """out[r] /= sum(out[r]) (summed in float64)."""
    for r in range(out.shape[0]):
        s = 0.0
        for c in range(out.shape[1]):
            s += out[r, c]
        for c in range(out.shape[1]):
            out[r, c] = out[r, c] / s


@_jit
def softmax_rows(z, out):
    """softmax(z, axis=-1) of a matrix (ops/reduce.py)."""
    _shifted_exp(z, out, True)
    _divide_by_row_sums(out)


@_jit
def softmax_cross_entropy(z, labels, out):
    """log-sum-exp(z[r]) - z[r, label], from the row's shifted logits (ops/loss.py)."""
    e = np.empty(z.shape, z.dtype)
    m = _shifted_exp(z, e)
    for r in range(z.shape[0]):
        s = 0.0
        for c in range(z.shape[1]):
            s += e[r, c]
        out[r] = math.log(s) - (z[r, labels[r]] - m[r])


@_jit
def softmax_minus_onehot(z, labels, out):
    """softmax(z[r]) - onehot(label) (ops/loss.py)."""
    _shifted_exp(z, out)
    _divide_by_row_sums(out)
    for r in range(z.shape[0]):
        out[r, labels[r]] -= 1


_FORMS = {}         # (module, name) -> its njit dispatcher: one per process


def loop_form(module, name):
    """The njit function of an op's Numba form (its ``lowering=`` fact, a plain-Python
    function in its record's file, e.g. ops/rnn.py), compiled once per process and
    cached by Numba beside that file."""
    key = (module, name)
    if key not in _FORMS:
        fn = _module_function(module, name)
        _FORMS[key] = numba.njit(cache=True, error_model="numpy", nogil=True)(
            _bound(fn, module, getattr(fn, "helpers", ())))
    return _FORMS[key]


def _module_function(module, name):
    import importlib
    return getattr(importlib.import_module(module), name)


def _bound(fn, module, helpers):
    """``fn`` calling the njit forms of the plain-Python functions of its module it calls
    among ``helpers`` (e.g. a tanh of its own), bound in a copy of its globals: the module
    stays Numba-free."""
    called = [h for h in helpers if h in fn.__code__.co_names and h != fn.__name__]
    if not called:
        return fn
    scope = dict(fn.__globals__)
    scope.update({h: _helper(module, h, helpers) for h in called})
    return types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)


# helpers a form's module defines in NumPy that the compiled form calls as this module's:
# ``_matmul_into(a, b, out)``, out = a @ b through NumPy's BLAS (numba_blas.py)
_NATIVE = {"_matmul_into": dot}


def _helper(module, name, helpers):
    """A form's helper as an njit function inlined into its callers (so LLVM can vectorise
    the loop around a call of it); it may call the form's other helpers."""
    if name in _NATIVE:
        return _NATIVE[name]
    key = (module, name, "helper")
    if key not in _FORMS:
        _FORMS[key] = numba.njit(cache=True, error_model="numpy", nogil=True,
                                 inline="always")(
            _bound(_module_function(module, name), module, helpers))
    return _FORMS[key]
