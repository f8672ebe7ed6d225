"""Weight initialisation schemes, drawn from retrograd's seedable generator.

Shapes follow the notes' layout, W of shape (fan_in, fan_out).
"""
from __future__ import annotations

import math

import numpy as np

from ..tensor import default_generator


def _fans(shape):
    if len(shape) < 2:
        return shape[0] if shape else 1, shape[0] if shape else 1
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[0] * receptive, shape[1] * receptive


def glorot_uniform(shape, dtype=np.float32, gain=1.0, generator=None):
    """Glorot & Bengio (2010): U(-a, a), a = gain·sqrt(6 / (fan_in + fan_out)); for tanh/sigmoid."""
    fan_in, fan_out = _fans(shape)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return (generator or default_generator()).uniform(-a, a, shape).astype(dtype)


def glorot_normal(shape, dtype=np.float32, gain=1.0, generator=None):
    fan_in, fan_out = _fans(shape)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return ((generator or default_generator()).standard_normal(shape) * std).astype(dtype)


def he_uniform(shape, dtype=np.float32, generator=None):
    """He et al. (2015): U(-a, a), a = sqrt(6 / fan_in); for ReLU."""
    fan_in, _ = _fans(shape)
    a = math.sqrt(6.0 / fan_in)
    return (generator or default_generator()).uniform(-a, a, shape).astype(dtype)


def he_normal(shape, dtype=np.float32, generator=None):
    fan_in, _ = _fans(shape)
    return ((generator or default_generator()).standard_normal(shape)
            * math.sqrt(2.0 / fan_in)).astype(dtype)


def lecun_normal(shape, dtype=np.float32, generator=None):
    fan_in, _ = _fans(shape)
    return ((generator or default_generator()).standard_normal(shape)
            * math.sqrt(1.0 / fan_in)).astype(dtype)


def uniform(shape, low=-0.5, high=0.5, dtype=np.float32, generator=None):
    """Plain U(low, high): the classic small random weights of the notes."""
    return (generator or default_generator()).uniform(low, high, shape).astype(dtype)


def zeros(shape, dtype=np.float32, generator=None):
    return np.zeros(shape, dtype)


INITS = {
    "glorot": glorot_uniform, "glorot_uniform": glorot_uniform, "xavier": glorot_uniform,
    "glorot_normal": glorot_normal, "he": he_uniform, "he_uniform": he_uniform,
    "kaiming": he_uniform, "he_normal": he_normal, "lecun": lecun_normal, "uniform": uniform,
    "zeros": zeros,
}


def get(name_or_fn):
    """An init function by name (see INITS) or a callable ``f(shape, dtype) -> ndarray``."""
    if callable(name_or_fn):
        return name_or_fn
    try:
        return INITS[name_or_fn]
    except KeyError:
        raise ValueError(f"unknown init {name_or_fn!r}; choose one of {sorted(INITS)}") from None
