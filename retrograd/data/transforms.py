"""Feature scaling and label encoding on NumPy arrays.

The statistics are returned so the ones of the training set can be applied to the
test set: ``Xtr, m, s = standardize(Xtr); Xte, _, _ = standardize(Xte, m, s)``.
"""
from __future__ import annotations

import os

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
    nbytes = 4 * y.size * num_classes
    if nbytes > physical_memory():           # a label of 2**31 - 1 must not ask for terabytes
        big = int(y.max()) if y.size else num_classes - 1
        raise DataError(f"one_hot: label {big} makes {num_classes} classes: a "
                        f"{y.shape + (num_classes,)} float32 array of {nbytes / 1e9:.3g} GB, "
                        "more than this machine's memory; class labels are 0..k-1")
    try:
        out = np.zeros(y.shape + (num_classes,), np.float32)
    except MemoryError:
        raise DataError(f"one_hot: not enough memory for {y.shape + (num_classes,)} one-hot "
                        "rows") from None
    np.put_along_axis(out, y[..., None], 1.0, axis=-1)
    return out


def physical_memory(unknown=float("inf")):
    """Bytes of physical memory, or ``unknown`` where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return unknown


def check_class_labels(y, where, *, numbered_from_0=False, at="data row"):
    """Raise DataError (naming ``where`` and the label) for integer class labels that
    cannot be what the file means: a negative label, or one so large that most of
    its classes could never occur (at least the number of labels, and at least 256:
    a label of 10**9 would build a billion outputs). ``numbered_from_0``: also refuse
    labels whose smallest is not 0, as labels 1..k are (they would silently build
    k + 1 classes, class 0 never seen)."""
    y = np.asarray(y)
    if y.dtype.kind not in "iu" or not y.size:
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0:
        i = int(np.argmin(y))
        raise DataError(f"{where}: label {lo} ({at} {i + 1}) is negative; class labels are "
                        "0..k-1")
    limit = max(len(y), 256)
    if hi >= limit:
        i = int(np.argmax(y))
        raise DataError(f"{where}: label {hi} ({at} {i + 1}) would make {hi + 1} classes from "
                        f"{len(y)} labels; class labels are 0..k-1")
    if numbered_from_0 and lo > 0:
        # Shifting 1..k to 0..k-1 silently would make predict and eval answer in
        # classes one off from the file's own labels; PyTorch's cross-entropy also
        # refuses a label k with k classes. So say so, with the one-step fix.
        fix = ("subtract 1 from the label column" if lo == 1 else
               f"renumber them from 0 (subtract {lo})")
        raise DataError(f"{where}: the labels run from {lo} to {hi} with no 0; classes are "
                        f"numbered from 0, so this would build {hi + 1} classes of which "
                        f"{'class 0' if lo == 1 else f'classes 0..{lo - 1}'} never occur: {fix}")


def random_shift(X, max_shift: int, rng, image_shape=None):
    """Each image moved by its own random whole number of pixels, up to ``max_shift``
    in each direction along each of its last two axes (height, width); what moves in
    is 0 (background). Data augmentation: the digits of a small training set are seen
    at slightly different places each epoch.

    ``X``: images of shape (n, ..., H, W), or rows of shape (n, features) with
    ``image_shape`` saying what a row is, e.g. (28, 28) or (1, 28, 28); the result has
    the shape and dtype of ``X``. ``rng``: a ``numpy.random.Generator`` or a seed; the
    shifts (two per image) are drawn from it, so a seeded run is reproducible.
    """
    X = _float(X)
    k = int(max_shift)
    if k < 0:
        raise DataError(f"random_shift: max_shift must be >= 0, got {max_shift}")
    shape = X.shape if image_shape is None else (len(X),) + tuple(image_shape)
    if len(shape) < 3 or int(np.prod(shape)) != X.size:
        raise DataError(f"random_shift: expected images (n, ..., H, W) or rows with an "
                        f"image_shape, got an array of shape {X.shape} and image_shape "
                        f"{image_shape}")
    if k == 0 or not len(X):
        return X.copy()
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    images = X.reshape(shape)
    n, h, w = shape[0], shape[-2], shape[-1]
    pad = [(0, 0)] * (len(shape) - 2) + [(k, k), (k, k)]
    # every (2k+1)^2 placement of each image as a view; each image picks one of its own
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(images, pad), (h, w), axis=(-2, -1))
    dy, dx = rng.integers(0, 2 * k + 1, size=(2, n))
    windows = np.moveaxis(windows, (-4, -3), (1, 2))       # (n, 2k+1, 2k+1, ..., H, W)
    return windows[np.arange(n), dy, dx].reshape(X.shape)
