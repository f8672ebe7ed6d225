"""Datasets, data loading and preprocessing for retrograd (NumPy only).

    from retrograd.data import ArrayDataset, DataLoader, load_mnist5k
    (x_train, y_train), (x_test, y_test) = load_mnist5k()
    for x, y in DataLoader(ArrayDataset(x_train, y_train), batch_size=32, shuffle=True, seed=0):
        ...   # x, y are rg.Tensor batches
"""
from .csvfile import read_csv
from .dataset import ArrayDataset, Dataset
from .errors import DataError
from .idx import read_idx, write_idx
from .loader import DataLoader
from .mnist import load_mnist5k, load_mnist_idx
from .registry import DATASETS, load_dataset
from .synthetic import moons, spirals, xor
from .transforms import minmax_scale, one_hot, random_shift, standardize

__all__ = [
    "Dataset", "ArrayDataset", "DataLoader", "DataError",
    "xor", "spirals", "moons",
    "load_mnist5k", "load_mnist_idx", "read_idx", "write_idx", "read_csv",
    "standardize", "minmax_scale", "one_hot", "random_shift",
    "DATASETS", "load_dataset",
]
