"""MNIST: the bundled 5,000-digit subset and a loader for the original IDX files."""
from __future__ import annotations

import functools
import os
from importlib import resources

import numpy as np

from .errors import DataError
from .idx import read_idx
from .transforms import check_class_labels

_KEYS = ("x_train", "y_train", "x_test", "y_test")


@functools.lru_cache(maxsize=1)
def _mnist5k_raw():
    ref = resources.files(__package__).joinpath("mnist5k.npz")
    with resources.as_file(ref) as path:
        if not os.path.isfile(path):
            raise DataError(f"{path}: the bundled MNIST subset is missing from the "
                            "installation (retrograd/data/mnist5k.npz)")
        with np.load(path, allow_pickle=False) as f:
            out = {k: f[k] for k in _KEYS}
    for a in out.values():
        a.flags.writeable = False         # cached and shared between calls
    return out


def _to_xy(images, labels):
    x = images.reshape(len(images), int(np.prod(images.shape[1:]))).astype(np.float32)
    x /= 255.0
    return x, labels.astype(np.int64)


def load_mnist5k():
    """The bundled MNIST subset: ``((x_train, y_train), (x_test, y_test))``.

    4,000 training and 1,000 test digits (400 / 100 of each class), ``x`` float32
    of shape (n, 784) scaled to [0, 1], ``y`` int64. See retrograd/data/README.md
    for provenance and license.
    """
    raw = _mnist5k_raw()
    return (_to_xy(raw["x_train"], raw["y_train"]), _to_xy(raw["x_test"], raw["y_test"]))


def _find(folder, split, kind, d):
    tried = []
    for sep in ("-", "."):
        for ext in ("", ".gz"):
            name = f"{split}-{kind}{sep}idx{d}-ubyte{ext}"
            tried.append(name)
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name)
    raise DataError(f"{folder}: no MNIST {split} {kind} file; looked for "
                    + ", ".join(tried))


def _load_split(folder, split):
    ipath, lpath = _find(folder, split, "images", 3), _find(folder, split, "labels", 1)
    images, labels = read_idx(ipath), read_idx(lpath)
    if images.ndim < 2 or images.dtype != np.uint8:
        raise DataError(f"{ipath}: expected uint8 images of shape (n, rows, cols), got "
                        f"{images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype.kind not in "ui":
        raise DataError(f"{lpath}: expected integer labels of shape (n,), got "
                        f"{labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{folder}: {split} has {len(images)} images ({os.path.basename(ipath)}) "
                        f"but {len(labels)} labels ({os.path.basename(lpath)})")
    if len(images) == 0:
        raise DataError(f"{ipath}: holds 0 images; the {split} split needs at least one")
    check_class_labels(labels, lpath, at="index")
    return _to_xy(images, labels)


def load_mnist_idx(folder):
    """MNIST from its original IDX files in ``folder`` (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
    each optionally ``.gz`` or spelled ``train-images.idx3-ubyte``).

    Returns ``((x_train, y_train), (x_test, y_test))`` like ``load_mnist5k``: images
    flattened to (n, rows*cols) float32 in [0, 1], labels int64.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: not a folder")
    return _load_split(folder, "train"), _load_split(folder, "t10k")
