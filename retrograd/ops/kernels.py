"""Faster NumPy for the reductions backprop does most: one axis of a matrix.

NumPy reduces a short contiguous axis row by row, paying a fixed cost per row:
np.sum(z, axis=1) on a (500, 10) batch of logits takes ~15 µs, the same sum as
a BLAS matrix-vector product with a vector of ones ~2 µs; summing a (500, 100)
gradient over the batch (a bias gradient) is ~3x faster as ones @ g. For the
max over a short row, reducing the transposed copy over its first axis is ~5x
faster. Over the short rows of a small batch (fewer than ~128 rows) NumPy's own
reduction is cheaper than the extra Python and the ones vector; column sums
(axis 0) go through BLAS at any size, as the compiled executor's bias gradients
do, so that eager and compiled steps round alike. Results equal NumPy's up
to float rounding of the summation order.
"""
from __future__ import annotations

import numpy as np

from ..arrays import is_numpy, namespace

_SHORT_ROW = 64     # below this many columns a row-wise reduction is overhead-bound
_MIN_ROWS = 128     # row-wise (axis 1): below this many rows NumPy's own is faster (measured)


def _one_axis_of_matrix(x, axis):
    return (x.ndim == 2 and axis is not None and len(axis) == 1 and x.dtype.kind == "f"
            and (axis[0] == 0 or x.shape[0] >= _MIN_ROWS) and x.flags.c_contiguous
            and x.size > 0)


def _plain_axis(axis):
    # NumPy reduces ~2x faster (small arrays) given an int axis than a 1-tuple
    return axis[0] if axis is not None and len(axis) == 1 else axis


def _keepdims_shaped(out, axis, keepdims):
    """A one-axis reduction of a matrix (1-d) in the keepdims shape when asked."""
    if not keepdims:
        return out
    return out.reshape((1, -1) if axis[0] == 0 else (-1, 1))


_add_reduce, _max_reduce = np.add.reduce, np.maximum.reduce

_ONES: dict = {}        # (length, dtype) -> a read-only vector of ones, made once


def _ones(n, dtype):
    ones = _ONES.get((n, dtype))
    if ones is None:
        ones = np.ones(n, dtype)
        ones.flags.writeable = False
        if len(_ONES) < 256 and n <= 1 << 16:       # a batch size or a width: few of them
            _ONES[n, dtype] = ones
    return ones


def fsum(x, axis=None, keepdims=False):
    """np.sum(x, axis, keepdims), via a BLAS matrix-vector product for one matrix axis
    (in ``x``'s own namespace for arrays of another library)."""
    if type(x) is not np.ndarray and not is_numpy(x):
        return namespace(x).sum(x, axis=axis, keepdims=keepdims)
    if _one_axis_of_matrix(x, axis):
        ones = _ones(x.shape[axis[0]], x.dtype)
        return _keepdims_shaped(x @ ones if axis[0] == 1 else ones @ x, axis, keepdims)
    if type(x) is np.ndarray:        # what x.sum() calls (numpy/_core/_methods.py), directly
        return _add_reduce(x, _plain_axis(axis), keepdims=keepdims)
    if isinstance(x, np.ndarray):    # the method: same result, ~2 µs less than np.sum
        return x.sum(axis=_plain_axis(axis), keepdims=keepdims)
    return np.sum(x, axis=_plain_axis(axis), keepdims=keepdims)


def column_sums(x):
    """np.sum(x, axis=0) of a matrix (a bias gradient): ones @ x, one BLAS call for floats of
    any layout -- what the compiled bias kernel computes, so both round alike."""
    if type(x) is np.ndarray and x.dtype.kind == "f":
        return _ones(x.shape[0], x.dtype) @ x
    return fsum(x, (0,))


def fmax(x, axis=None, keepdims=False):
    """np.max(x, axis, keepdims); a short last axis is reduced on a transposed copy (in
    ``x``'s own namespace for arrays of another library)."""
    if type(x) is not np.ndarray and not is_numpy(x):
        return namespace(x).max(x, axis=axis, keepdims=keepdims)
    if _one_axis_of_matrix(x, axis) and axis[0] == 1 and x.shape[1] <= _SHORT_ROW:
        return _keepdims_shaped(np.ascontiguousarray(x.T).max(axis=0), axis, keepdims)
    if type(x) is np.ndarray:        # what x.max() calls, directly
        return _max_reduce(x, _plain_axis(axis), keepdims=keepdims)
    if isinstance(x, np.ndarray):
        return x.max(axis=_plain_axis(axis), keepdims=keepdims)
    return np.max(x, axis=_plain_axis(axis), keepdims=keepdims)
