"""Feature scaling and label encoding on NumPy arrays.

The statistics are returned so the ones of the training set can be applied to the
test set: ``Xtr, m, s = standardize(Xtr); Xte, _, _ = standardize(Xte, m, s)``.
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from .errors import DataError


def _float(X):
    X = np.asarray(X.data if isinstance(X, Tensor) else X)
    return X if X.dtype.kind == "f" else X.astype(np.float32)


def standardize(X, mean=None, std=None):
    """``(X - mean) / std`` per feature (axis 0) -> ``(Xn, mean, std)``.

    Statistics not given are computed from ``X``; a std of 0 (a constant feature)
    is treated as 1 so that feature becomes 0 instead of NaN.
    """
    X = _float(X)
    if mean is None:
        mean = X.mean(axis=0, dtype=np.float64).astype(X.dtype)
    if std is None:
        std = X.std(axis=0, dtype=np.float64).astype(X.dtype)
    mean, std = np.asarray(mean, X.dtype), np.asarray(std, X.dtype)
    std = np.where(std == 0, np.ones_like(std), std)
    return (X - mean) / std, mean, std


def minmax_scale(X, lo=None, hi=None):
    """``(X - lo) / (hi - lo)`` per feature (axis 0), mapping [lo, hi] to [0, 1]
    -> ``(Xs, lo, hi)``. A feature with ``hi == lo`` is only shifted (divided by 1)."""
    X = _float(X)
    lo = X.min(axis=0) if lo is None else np.asarray(lo, X.dtype)
    hi = X.max(axis=0) if hi is None else np.asarray(hi, X.dtype)
    span = hi - lo
    span = np.where(span == 0, np.ones_like(span), span)
    return (X - lo) / span, lo, hi


def one_hot(y, num_classes=None):
    """Integer labels of shape (n,) -> float32 one-hot rows of shape (n, num_classes);
    ``num_classes`` defaults to ``max(y) + 1``."""
    y = np.asarray(y.data if isinstance(y, Tensor) else y)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y) & (y == np.round(y))):
            raise DataError("one_hot: labels must be whole numbers")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iub":
        raise DataError(f"one_hot: labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"one_hot: labels must lie in [0, {num_classes}), got values from "
                        f"{y.min()} to {y.max()}")
    out = np.zeros(y.shape + (num_classes,), np.float32)
    np.put_along_axis(out, y[..., None], 1.0, axis=-1)
    return out
