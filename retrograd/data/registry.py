"""``load_dataset``: one entry point from a name or a path, used by the CLI."""
from __future__ import annotations

import os

import numpy as np

from .csvfile import read_csv
from .errors import DataError
from .mnist import load_mnist5k, load_mnist_idx
from .synthetic import moons, spirals, xor
from .transforms import check_class_labels

DATASETS = ("mnist5k", "xor", "spirals", "moons")
_GENERATED = {"spirals": spirals, "moons": moons}
_TEST_FRACTION = 0.2


def _split(X, y, seed):
    n = len(y)
    if n < 2:
        raise DataError(f"need at least 2 rows to split into train and test, got {n}")
    n_test = min(n - 1, max(1, round(_TEST_FRACTION * n)))
    p = np.random.default_rng(seed).permutation(n)
    te, tr = p[:n_test], p[n_test:]
    return (X[tr], y[tr]), (X[te], y[te])


def load_dataset(name_or_path, seed: int = 0):
    """``((x_train, y_train), (x_test, y_test))`` for a dataset name or a path.

    - ``"mnist5k"``: the bundled MNIST subset (4,000 / 1,000).
    - ``"xor"``: train and test are both the 4 XOR patterns.
    - ``"spirals"``, ``"moons"``: 200 generated training points and 200 test points
      from an independent stream, both determined by ``seed``.
    - a ``.csv`` (or ``.csv.gz``) file: ``read_csv`` with the label in the last
      column, split 80/20 by a permutation drawn from ``seed``.
    - a folder holding MNIST IDX files: ``load_mnist_idx``.

    Names take precedence over paths. Anything else raises ``DataError``.
    """
    key = os.fspath(name_or_path) if not isinstance(name_or_path, str) else name_or_path
    if key == "mnist5k":
        return load_mnist5k()
    if key == "xor":
        X, y = xor()
        return (X, y), (X.copy(), y.copy())
    if key in _GENERATED:
        train_ss, test_ss = np.random.SeedSequence(seed).spawn(2)
        make = _GENERATED[key]
        return make(seed=np.random.default_rng(train_ss)), make(seed=np.random.default_rng(test_ss))
    if os.path.isdir(key):
        return load_mnist_idx(key)
    if os.path.isfile(key) and key.lower().endswith((".csv", ".csv.gz")):
        X, y = read_csv(key)
        check_class_labels(y, key, numbered_from_0=True)   # whole numbers are class labels
        try:
            return _split(X, y, seed)
        except DataError as e:
            raise DataError(f"{key}: {e}") from None
    what = ("is not a .csv file or a folder" if os.path.exists(key)
            else "is not a dataset name and no such file or folder exists")
    raise DataError(f"unknown dataset {key!r}: it {what}; expected one of "
                    f"{', '.join(DATASETS)}, a path to a .csv file, or a folder of MNIST "
                    "IDX files")
