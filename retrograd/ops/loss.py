"""Fused loss primitives, where a dedicated rule beats the composite for speed.

``softmax_cross_entropy`` is -log softmax(z)[label] per row. Its VJP is the
textbook (softmax(z) - onehot(label)) · g, itself one primitive,
``softmax_minus_onehot``, whose own VJP is softmax's: two array passes instead of
the half-dozen ops of log_softmax + indexing + their VJPs, and still
differentiable again.
"""
from __future__ import annotations

import numpy as np

from ..errors import RetrogradError, ShapeError
from ..tensor import Tensor
from .base import apply, defop
from .kernels import fmax, fsum
from .elementwise import log, maximum, where
from .reduce import softmax, sum
from .shape import reshape


# The two forwards run once per training step on a small (batch, classes) array, where
# NumPy's call overhead is all: the fewest calls, and no np.errstate (it slows every
# ufunc inside it). Shifting by the row max needs no guard for infinite rows here:
# their loss and gradient are nan either way.

def _shifted(z):
    return z - fmax(z, (1,), keepdims=True)


def _sce_forward(z, labels):
    s = _shifted(z)                       # log-sum-exp(z) - z[label], from shifted logits
    picked = s[np.arange(len(s)), labels]
    np.exp(s, out=s)
    return np.log(fsum(s, (1,))) - picked


def _smo_forward(z, labels):
    p = _shifted(z)
    np.exp(p, out=p)
    p /= fsum(p, (1,), keepdims=True)
    p[np.arange(len(p)), labels] -= 1      # one entry per row: no repeats to accumulate
    return p


def _smo_vjp(u, out, z, labels):
    s = softmax(z, axis=1)                 # d(softmax(z) - onehot)/dz is softmax's Jacobian
    return s * (u - sum(u * s, axis=1, keepdims=True))


_softmax_minus_onehot = defop("softmax_minus_onehot", _smo_forward, (_smo_vjp, None),
                              reads=((0,), ()), doc="softmax(z) - onehot(labels), rows of z")


def softmax_minus_onehot(z, labels):
    """softmax(z, axis=1) - onehot(labels): the gradient of cross-entropy w.r.t. logits."""
    return apply(_softmax_minus_onehot, z, labels)


def _sce_vjp(g, out, z, labels):
    return softmax_minus_onehot(z, labels) * reshape(g, (-1, 1))


_softmax_cross_entropy = defop("softmax_cross_entropy", _sce_forward, (_sce_vjp, None),
                               reads=((0, 1), ()))


def _check_labels(op, logits, labels):
    z = getattr(logits, "shape", np.shape(logits))
    t = labels.data if isinstance(labels, Tensor) else np.asarray(labels)
    if len(z) != 2 or t.shape != z[:1]:
        raise ShapeError(f"{op}: needs logits (N, C) and integer labels (N,), got shapes "
                         f"{tuple(z)} and {t.shape}")
    if t.dtype.kind not in "iu":
        raise RetrogradError(f"{op}: labels must be integers, got dtype {t.dtype}")


def softmax_cross_entropy(logits, labels):
    """Per-row cross-entropy of softmax(logits) (N, C) against integer labels (N,)."""
    if not getattr(labels, "_symbolic", False):
        _check_labels("softmax_cross_entropy", logits, labels)
    return apply(_softmax_cross_entropy, logits, labels)


# Binary cross-entropy of probabilities, PyTorch's way: the logs are clamped at -100, so
# p = 0 or 1 gives a large finite loss, and the gradient's denominator p(1 - p) at 1e-12,
# so a saturated sigmoid (p rounded to 0 or 1) gets a finite gradient -- the derivative of
# the clamped logs (0 · 1/0) would be nan there.
_BCE_EPS = 1e-12


def _bce_forward(p, t):
    with np.errstate(divide="ignore"):
        return -(t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log1p(-p), -100))


def _clamped_log(x):
    """max(log x, -100) as ops, finite (and warning-free) at x = 0."""
    pos = x > 0
    return where(pos, maximum(log(where(pos, x, 1)), -100.0), -100.0)


_bce = defop("binary_cross_entropy", _bce_forward, (
    lambda g, out, p, t: g * (p - t) / maximum(p * (1 - p), _BCE_EPS),
    lambda g, out, p, t: g * (_clamped_log(1 - p) - _clamped_log(p))), reads=((0, 1), (0,)))


def binary_cross_entropy(p, t):
    """Elementwise -(t·log p + (1 - t)·log(1 - p)), the logs clamped at -100 (as PyTorch)."""
    return apply(_bce, p, t)
