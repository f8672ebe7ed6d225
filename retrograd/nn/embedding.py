"""Embedding (a lookup table of trainable rows) and Dropout2d (whole channels dropped)."""
from __future__ import annotations

import numpy as np

from .. import arrays, ops
from ..errors import RetrogradError, ShapeError
from ..ops import nn as nn_ops
from ..tensor import Tensor, default_generator
from .module import Module, Parameter

__all__ = ["embedding", "dropout2d", "Embedding", "Dropout2d"]


def _padding_index(padding_idx, num, who):
    if padding_idx is None:
        return None
    if not -num <= padding_idx < num:
        raise ValueError(f"{who}: padding_idx {padding_idx} is out of range for {num} embeddings")
    return int(padding_idx) % num


def embedding(ids, weight, padding_idx=None, who="embedding"):
    """PyTorch's F.embedding: the rows ``weight[ids]`` for integer ids of any shape, the
    output of shape ids.shape + (D,). The gradient of ``weight`` is the scatter-add of the
    output gradient's rows (repeated ids accumulate); row ``padding_idx`` gets none. An id
    outside 0..num-1 is an error naming ``who`` and the id, at every call (compiled too)."""
    if weight.ndim != 2:
        raise ShapeError(f"{who}: weight must be (num_embeddings, embedding_dim), got shape "
                         f"{tuple(weight.shape)}")
    dtype = ids.dtype if isinstance(ids, Tensor) or arrays.is_foreign(ids) else \
        np.asarray(ids).dtype
    if arrays.kind(dtype) not in "iu":
        raise RetrogradError(f"{who}: ids must be integers, got dtype {dtype}")
    pad = _padding_index(padding_idx, weight.shape[0], who)
    return nn_ops.embedding(weight, ids, padding_idx=pad, who=who)


class Embedding(Module):
    """A table of ``num_embeddings`` trainable vectors of size ``embedding_dim``, looked up by
    integer ids; weights start N(0, 1) as PyTorch's (row ``padding_idx`` at zero, and it
    gets no gradient). ``weight`` has PyTorch's layout (num_embeddings, embedding_dim)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 dtype=np.float32, generator=None):
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.padding_idx = _padding_index(padding_idx, self.num_embeddings, "Embedding")
        w = (generator or default_generator()).standard_normal(
            (self.num_embeddings, self.embedding_dim)).astype(dtype)
        if self.padding_idx is not None:
            w[self.padding_idx] = 0
        self.weight = Parameter(w)

    def forward(self, ids):
        return embedding(ids, self.weight, self.padding_idx, who=f"Embedding({self.extra_repr()})")

    def extra_repr(self):
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


def dropout2d(x, p=0.5, training=True, generator=None):
    """PyTorch's F.dropout2d on (N, C, H, W): each channel of each sample is zeroed as a
    whole with probability p, the others scaled by 1/(1 - p); the identity unless training."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout2d: p must be in [0, 1), got {p}")
    if x.ndim != 4:
        raise ShapeError(f"dropout2d: input must be (N, C, H, W), got shape {tuple(x.shape)}")
    if not training or p == 0:
        return x
    return x * ops.bernoulli_mask(x[:, :, :1, :1], p, generator)   # one draw per channel


class Dropout2d(Module):
    """Channel-wise dropout of (N, C, H, W) inputs (PyTorch's Dropout2d)."""

    def __init__(self, p: float = 0.5):
        if not 0 <= p < 1:
            raise ValueError(f"Dropout2d: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x):
        return dropout2d(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"
