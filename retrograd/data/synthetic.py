"""Small generated 2-D classification sets: ``(X float32 (n, 2), y int64 (n,))``.

Each is a pure function of its arguments: the same ``seed`` gives the same arrays.
``seed`` may also be a ``numpy.random.Generator``.
"""
from __future__ import annotations

import numpy as np

from .errors import DataError

_XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
_XOR_Y = np.array([0, 1, 1, 0], dtype=np.int64)


def _check(name, n, noise, min_n):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < min_n:
        raise DataError(f"{name}: n must be an int >= {min_n}, got {n!r}")
    if not np.isfinite(noise) or noise < 0:
        raise DataError(f"{name}: noise must be a finite number >= 0, got {noise!r}")


def xor(n: int | None = None, noise: float = 0.0, seed=0):
    """The XOR problem. ``xor()`` is the 4 patterns ``00->0, 01->1, 10->1, 11->0``.

    With ``n`` and/or ``noise``: ``n`` points cycling through the 4 patterns (so
    the classes are balanced when ``n`` is even), plus Gaussian noise of std ``noise``.
    """
    n = 4 if n is None else n
    _check("xor", n, noise, 1)
    idx = np.arange(n) % 4
    X, y = _XOR_X[idx], _XOR_Y[idx]
    if noise:
        X = X + noise * np.random.default_rng(seed).standard_normal((n, 2))
    return X.astype(np.float32), y.copy()


def _shuffled(rng, X, y):
    p = rng.permutation(len(y))
    return X[p].astype(np.float32), y[p].astype(np.int64)


def spirals(n: int = 200, noise: float = 0.1, seed=0):
    """Two interleaved spirals (1.5 turns each, radius 0.1 to 2), ``n // 2`` points of
    class 0 and the rest class 1, plus Gaussian noise of std ``noise``; rows shuffled.

    The arms are 2/3 apart, so the default noise leaves the classes separable in
    practice (leave-one-out 1-nearest-neighbour accuracy ~98%)."""
    _check("spirals", n, noise, 2)
    rng = np.random.default_rng(seed)
    counts = (n // 2, n - n // 2)
    X, y = [], []
    for k, m in enumerate(counts):
        t = np.linspace(0.0, 1.0, m)
        theta = 3 * np.pi * t + k * np.pi          # the second arm is the first turned 180°
        r = 0.1 + 1.9 * t                           # start off-centre: arms apart there too
        X.append(np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1))
        y.append(np.full(m, k))
    X, y = np.concatenate(X), np.concatenate(y)
    X = X + noise * rng.standard_normal(X.shape)
    return _shuffled(rng, X, y)


def moons(n: int = 200, noise: float = 0.1, seed=0):
    """Two interleaving half-circles like sklearn's ``make_moons``: the upper moon
    (``n // 2`` points) is class 0, the lower one class 1; Gaussian noise of std
    ``noise``; rows shuffled."""
    _check("moons", n, noise, 2)
    rng = np.random.default_rng(seed)
    n_out, n_in = n // 2, n - n // 2
    a_out, a_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    X = np.concatenate([np.stack([np.cos(a_out), np.sin(a_out)], axis=1),
                        np.stack([1 - np.cos(a_in), 0.5 - np.sin(a_in)], axis=1)])
    y = np.concatenate([np.zeros(n_out, np.int64), np.ones(n_in, np.int64)])
    X = X + noise * rng.standard_normal(X.shape)
    return _shuffled(rng, X, y)
