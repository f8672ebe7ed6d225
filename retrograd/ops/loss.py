"""Fused loss primitives, where a dedicated rule beats the composite for speed.

``softmax_cross_entropy`` is -log softmax(z)[label] per row. Its VJP is the
textbook (softmax(z) - onehot(label)) · g: one pass instead of the half-dozen ops
of log_softmax + indexing + their VJPs, and still written in ops, so it
differentiates again.
"""
from __future__ import annotations

import numpy as np

from .base import apply, defop
from .elementwise import equal
from .reduce import _log_softmax, softmax
from .shape import astype, reshape


def one_hot_of(labels, num_classes, dtype):
    """Constant one-hot rows for integer ``labels`` (built from ops, so it traces)."""
    return astype(equal(reshape(labels, (-1, 1)), np.arange(num_classes)), dtype)


def _sce_forward(z, labels):
    logp = _log_softmax(z, (1,))
    return -np.take_along_axis(logp, labels.reshape(-1, 1), axis=1)[:, 0]


def _sce_vjp(g, out, z, labels):
    return (softmax(z, axis=1) - one_hot_of(labels, z.shape[1], z.dtype)) * reshape(g, (-1, 1))


_softmax_cross_entropy = defop("softmax_cross_entropy", _sce_forward, (_sce_vjp, None))


def softmax_cross_entropy(logits, labels):
    """Per-row cross-entropy of softmax(logits) (N, C) against integer labels (N,)."""
    return apply(_softmax_cross_entropy, logits, labels)
