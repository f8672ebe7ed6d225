"""The matrix products of Numba code, through NumPy's own BLAS.

Numba's ``np.dot`` calls SciPy's OpenBLAS, a second library with a thread pool of its own:
beside NumPy's pool, whose threads still spin after a step's large products, its two
threads fought NumPy's for the two cores (B6's step took 25.5 ms against 8.4 with it on
one thread, bench/node_times.py), so it runs on one. NumPy's wheels bundle OpenBLAS
(scipy-openblas, 64-bit integers) with ``cblas_sgemm``/``cblas_dgemm``: calling those, a
compiled loop's products share NumPy's one pool and get its threads (32 steps of B6's
(32, 128) @ (128, 512) product and gate loop: 2.3-2.5 ms against 3.2-3.6 one-threaded).

The compiled code names the C functions ``retrograd_cblas_sgemm``/``_dgemm``, symbols
registered with LLVM when this module is imported (before any cached code is loaded):
NumPy's functions where its OpenBLAS exports them, else C callbacks of the same signature
that call ``np.dot`` (SciPy's BLAS, as before), so code cached on disk always links.
"""
import ctypes
import glob
import os

import numba
import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import types as nb
from numba.extending import intrinsic

from retrograd.native import numba_cache  # noqa: F401  (before any cached function)
from retrograd.native.numba_tiles import tileable, tiles

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
_SIG = {t: nb.void(nb.int32, nb.int32, nb.int32, nb.int64, nb.int64, nb.int64, t, nb.voidptr,
                   nb.int64, nb.voidptr, nb.int64, t, nb.voidptr, nb.int64)
        for t in (nb.float32, nb.float64)}
_NAMES = {nb.float32: "retrograd_cblas_sgemm", nb.float64: "retrograd_cblas_dgemm"}
_sgemm = nb.ExternalFunction(_NAMES[nb.float32], _SIG[nb.float32])
_dgemm = nb.ExternalFunction(_NAMES[nb.float64], _SIG[nb.float64])


def _numpy_openblas():
    """NumPy's bundled OpenBLAS as a ctypes library with ``{s,d}gemm`` cblas functions
    taking 64-bit integers, as (library, symbol prefix, suffix); None where NumPy has
    another BLAS (Accelerate, MKL, a system OpenBLAS of 32-bit integers)."""
    here = os.path.dirname(np.__file__)
    paths = (glob.glob(os.path.join(here, os.pardir, "numpy.libs", "libscipy_openblas64_*"))
             + glob.glob(os.path.join(here, ".dylibs", "libscipy_openblas64_*")))
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_", "64_"), ("", "64_")):
            if hasattr(lib, f"{prefix}cblas_sgemm{suffix}") and hasattr(lib, f"{prefix}cblas_dgemm{suffix}"):
                return lib, prefix, suffix
    return None


def _np_dot_gemm(dtype):
    """A C callback with cblas_?gemm's signature (row-major, alpha 1 and beta 0 only: all
    ``gemm`` asks) computing the product with np.dot: SciPy's BLAS."""
    @numba.cfunc(_SIG[dtype], cache=True, nogil=True)
    def gemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        if ta == TRANS:
            x = numba.carray(a, (k, lda), dtype)[:, :m].T
        else:
            x = numba.carray(a, (m, lda), dtype)[:, :k]
        if tb == TRANS:
            y = numba.carray(b, (n, ldb), dtype)[:, :k].T
        else:
            y = numba.carray(b, (k, ldb), dtype)[:, :n]
        numba.carray(c, (m, ldc), dtype)[:, :n] = np.dot(np.ascontiguousarray(x),
                                                         np.ascontiguousarray(y))
    return gemm


def _register():
    """Which BLAS the symbols name: "numpy" or "scipy" (np.dot's callbacks)."""
    found = _numpy_openblas()
    for dtype, char in ((nb.float32, "s"), (nb.float64, "d")):
        if found is not None:
            lib, prefix, suffix = found
            address = ctypes.cast(getattr(lib, f"{prefix}cblas_{char}gemm{suffix}"),
                                  ctypes.c_void_p).value
        else:
            address = _np_dot_gemm(dtype).address
        llvm.add_symbol(_NAMES[dtype], address)
    return "numpy" if found is not None else "scipy"


BLAS = _register()


@intrinsic
def _data(typingctx, arr):
    """An array's data pointer, as C's void *."""
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.bitcast(ary.data, ir.IntType(8).as_pointer())
    return nb.voidptr(arr), codegen


@numba.njit(cache=True, nogil=True, inline="always")
def _operand(x):
    """x (2-D) as (array, transposed flag, leading dimension) for row-major BLAS: itself
    where rows or columns are contiguous, else a C-order copy."""
    s = x.itemsize
    rows, cols = x.shape
    if x.strides[1] == s and x.strides[0] % s == 0 and x.strides[0] >= max(cols, 1) * s:
        return x, NO_TRANS, x.strides[0] // s
    if x.strides[0] == s and x.strides[1] % s == 0 and x.strides[1] >= max(rows, 1) * s:
        return x, TRANS, x.strides[1] // s
    c = np.ascontiguousarray(x)
    return c, NO_TRANS, max(cols, 1)


@numba.njit(cache=True, nogil=True, inline="never")
def gemm(a, b, out):
    """out = a @ b for 2-D float arrays of one dtype, ``out`` not overlapping a or b."""
    m, k = a.shape
    n = b.shape[1]
    s = out.itemsize
    if m == 0 or n == 0:
        return
    if k == 0:
        out[:] = 0
        return
    dense = out.strides[1] == s and out.strides[0] == n * s
    c = out if dense else np.empty((m, n), out.dtype)     # (a view with gaps: via a copy)
    if tileable(m, n, k, s, a.strides[0], a.strides[1]):
        # small float32 products: numba_tiles.py (b's rows contiguous, else a copy; g @ W.T
        # in B2's backward took 10.0 us so against BLAS's 14.4)
        y = b if b.strides[1] == s and b.strides[0] % s == 0 else np.ascontiguousarray(b)
        tiles(m, n, k, a.ctypes.data, a.strides[0] // s, a.strides[1] // s,
              y.ctypes.data, y.strides[0] // s, c.ctypes.data, n)
    else:
        _blas(a, b, c)
    if not dense:
        out[:] = c


@numba.njit(cache=True, nogil=True, inline="always")
def _blas(a, b, c):
    """c = a @ b (c dense) through cblas_?gemm."""
    m, k = a.shape
    n = b.shape[1]
    s = c.itemsize
    x, ta, lda = _operand(a)
    y, tb, ldb = _operand(b)
    if s == 4:
        _sgemm(ROW_MAJOR, ta, tb, m, n, k, np.float32(1), _data(x), lda, _data(y), ldb,
               np.float32(0), _data(c), n)
    else:
        _dgemm(ROW_MAJOR, ta, tb, m, n, k, 1.0, _data(x), lda, _data(y), ldb, 0.0,
               _data(c), n)
