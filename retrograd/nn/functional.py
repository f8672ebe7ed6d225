"""Losses and dropout as functions of tensors (the modules in losses.py wrap these).

Each loss takes ``reduction`` = "mean" (over the batch), "sum" or "none".
"""
from __future__ import annotations

from .. import ops
from ..errors import RetrogradError, ShapeError
from ..ops.loss import binary_cross_entropy as _bce
from ..ops.loss import nll
from ..tensor import as_tensor


def _reduce(per_item, reduction, who):
    if reduction == "mean":
        return ops.mean(per_item)
    if reduction == "sum":
        return ops.sum(per_item)
    if reduction == "none":
        return per_item
    raise ValueError(f"{who}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _same_shape(a, b, who):
    if a.shape != b.shape:
        raise ShapeError(f"{who}: input has shape {a.shape} but target has shape {b.shape}")


def _float_target(target, like, who):
    t = as_tensor(target)
    if t.dtype.kind not in "fcb" and t.dtype.kind not in "iu":
        raise RetrogradError(f"{who}: target must be numeric, got dtype {t.dtype}")
    if t.dtype != like.dtype:
        t = ops.astype(t, like.dtype)
    _same_shape(like, t, who)
    return t


def mse_loss(input, target, reduction="mean"):
    """mean((input - target)²) over all entries (PyTorch's MSELoss)."""
    t = _float_target(target, input, "mse_loss")
    d = input - t
    return _reduce(d * d, reduction, "mse_loss")


def sse_loss(input, target, reduction="sum"):
    """Seed 002's E = ½ Σ (d − o)²: half the squared error, summed over outputs and,
    by default, over the patterns of the batch ("mean" averages over patterns)."""
    t = _float_target(target, input, "sse_loss")
    d = t - input
    per_pattern = ops.sum(d * d, axis=tuple(range(1, d.ndim))) * 0.5 if d.ndim > 1 else d * d * 0.5
    return _reduce(per_pattern, reduction, "sse_loss")


def cross_entropy(logits, target, reduction="mean"):
    """Softmax cross-entropy of logits (N, C) against integer class labels (N,) or
    against one-hot / probability rows (N, C). Computed from log-softmax, so it is
    finite for logits of any size."""
    if logits.ndim != 2:
        raise ShapeError(f"cross_entropy: logits must have shape (batch, classes), got {logits.shape}")
    n, c = logits.shape
    t = as_tensor(target)
    if t.dtype.kind in "iu":
        if t.shape != (n,):
            raise ShapeError(f"cross_entropy: integer labels must have shape ({n},) for logits "
                             f"{logits.shape}, got {t.shape}")
        per_item = ops.softmax_cross_entropy(logits, t)
    elif t.dtype.kind == "f":
        if t.shape != logits.shape:
            hint = (" (class labels must be an integer array: use labels.astype(np.int64))"
                    if t.shape == (n,) else "")
            raise ShapeError(f"cross_entropy: float targets must be one-hot or probability rows "
                             f"of shape {logits.shape}, got {t.shape}{hint}")
        t = ops.astype(t, logits.dtype)
        per_item = -ops.sum(t * ops.log_softmax(logits, axis=1), axis=1)
    else:
        raise RetrogradError(f"cross_entropy: targets of dtype {t.dtype} are neither class "
                             "labels (integers) nor probabilities (floats)")
    return _reduce(per_item, reduction, "cross_entropy")


def nll_loss(log_probs, target, reduction="mean"):
    """Negative log-likelihood of integer labels given log-probabilities (N, C)."""
    t = as_tensor(target)
    if t.dtype.kind not in "iu":
        raise RetrogradError(f"nll_loss: labels must be integers, got dtype {t.dtype}")
    if log_probs.ndim != 2 or t.shape != log_probs.shape[:1]:
        raise ShapeError(f"nll_loss: needs log-probabilities (batch, classes) and labels "
                         f"(batch,), got shapes {log_probs.shape} and {t.shape}")
    per_item = nll(log_probs, t)            # checks the label values, also in compiled code
    return _reduce(per_item, reduction, "nll_loss")


def binary_cross_entropy(input, target, reduction="mean"):
    """-(t·log p + (1 − t)·log(1 − p)) for probabilities p; the logs are clamped at
    -100 as in PyTorch, so p = 0 or 1 gives a large finite loss, not inf, and a finite
    gradient (ops/loss.py)."""
    t = _float_target(target, input, "binary_cross_entropy")
    return _reduce(_bce(input, t), reduction, "binary_cross_entropy")


def binary_cross_entropy_with_logits(logits, target, reduction="mean"):
    """BCE of sigmoid(z) computed as softplus(z) − t·z: exact and finite for any z."""
    t = _float_target(target, logits, "binary_cross_entropy_with_logits")
    return _reduce(ops.softplus(logits) - t * logits, reduction, "binary_cross_entropy_with_logits")


def dropout(x, p=0.5, training=True, generator=None):
    """Inverted dropout: zero each entry with probability p and scale the rest by
    1/(1 − p), so nothing changes at evaluation time."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    return x * ops.bernoulli_mask(x, p, generator)
