"""Datasets: anything with ``len()`` and integer indexing."""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from .errors import DataError


class Dataset:
    """Base class: subclasses implement ``__len__`` and ``__getitem__(i)``.

    ``__getitem__`` returns one sample: an array/scalar or a tuple of them
    (e.g. ``(x, y)``); ``DataLoader`` stacks samples into batches.
    """

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index):
        raise NotImplementedError


class ArrayDataset(Dataset):
    """Rows of several arrays with the same first dimension: ``ArrayDataset(X, y)``.

    ``ds[i]`` is the tuple ``(X[i], y[i])``. The arrays are kept as given (no copy)
    in ``ds.arrays``; Tensors are unwrapped to their ndarray.
    """

    def __init__(self, *arrays):
        if not arrays:
            raise DataError("ArrayDataset needs at least one array")
        arrs = []
        for k, a in enumerate(arrays):
            a = a.data if isinstance(a, Tensor) else np.asarray(a)
            if a.ndim == 0:
                raise DataError(f"ArrayDataset: array {k} is a scalar; every array needs a "
                                "first (sample) dimension")
            arrs.append(a)
        n = len(arrs[0])
        if any(len(a) != n for a in arrs):
            shapes = ", ".join(f"array {k}: {a.shape}" for k, a in enumerate(arrs))
            raise DataError("ArrayDataset: all arrays must have the same first dimension "
                            f"(number of samples), got {shapes}")
        self.arrays = tuple(arrs)

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)

    def __repr__(self):
        shapes = ", ".join(f"{a.shape} {a.dtype}" for a in self.arrays)
        return f"ArrayDataset({shapes})"
