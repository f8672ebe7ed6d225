"""Losses and dropout as functions of tensors (the modules in losses.py wrap these), and
convolution, pooling and resampling (retrograd/ops/conv.py's, re-exported as PyTorch's F.*).

Each loss takes ``reduction`` = "mean" (over the batch), "sum" or "none".
"""
from __future__ import annotations

import builtins

from .. import ops
from ..arrays import kind
from ..errors import RetrogradError, ShapeError
from ..ops.loss import binary_cross_entropy as _bce
from ..ops.loss import IgnoredLabel, nll
from ..ops.conv import (adaptive_avg_pool2d, avg_pool2d, conv1d, conv2d,  # noqa: F401
                        conv_transpose2d, fold, interpolate, max_pool2d, unfold)
from ..tensor import as_tensor
from .attention import scaled_dot_product_attention  # noqa: F401 (the layers' functional forms)
from .embedding import dropout2d, embedding  # noqa: F401
from .normalization import batch_norm, group_norm, layer_norm  # noqa: F401


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
    if kind(t.dtype) not in "fcbiu":
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


def _class_weight(weight, logits, who):
    """``weight`` as a (C,) tensor of the logits' dtype, or None."""
    if weight is None:
        return None
    w = as_tensor(weight)
    if kind(w.dtype) not in "fiu":
        raise RetrogradError(f"{who}: weight must be a float array of one weight per class, "
                             f"got dtype {w.dtype}")
    if w.shape != (logits.shape[1],):
        raise ShapeError(f"{who}: weight must have shape ({logits.shape[1]},), one per class "
                         f"of input {logits.shape}, got {w.shape}")
    return ops.astype(w, logits.dtype) if w.dtype != logits.dtype else w


def _labelled(per_row, logits, labels, weight, ignore_index, smoothing, reduction, who):
    """PyTorch's weighted, ignoring, smoothed loss of integer labels, where ``per_row(safe)``
    is the unweighted -log p[label] of each row. Ignored rows are given label 0 (so the
    value check passes them and still refuses every other label out of range), weight 0,
    and the mean divides by the summed weights of the rows kept (PyTorch's weighted mean)."""
    n, c = logits.shape
    safe, keep = labels, None
    if ignore_index is not None:
        ignored = ops.equal(labels, int(ignore_index))
        safe = ops.where(ignored, 0, labels)
        keep = ops.astype(ops.logical_not(ignored), logits.dtype)
    row_w = keep if weight is None else -nll(ops.broadcast_to(weight, (n, c)), safe)
    if weight is not None and keep is not None:
        row_w = row_w * keep
    loss = per_row(safe) if row_w is None else per_row(safe) * row_w
    if smoothing:       # (1 - e)·nll + e/C · Σ_c w_c·(-log p_c), as PyTorch
        lsm = ops.log_softmax(logits, axis=1)
        smooth = -ops.sum(lsm if weight is None else lsm * weight, axis=1)
        loss = loss * (1.0 - smoothing) + (smooth if keep is None else smooth * keep) * (
            smoothing / c)
    if reduction == "mean" and row_w is not None:
        return ops.sum(loss) / ops.sum(row_w)
    return _reduce(loss, reduction, who)


class _DefaultIgnore(int):
    """PyTorch's default ignore_index, -100, told apart from an explicit -100. With the
    default the fused loss alone runs (the benchmarked step stays as fast as before); a
    label -100 there raises IgnoredLabel, which eager code answers by the masked path, so
    eager results are PyTorch's. A compiled step has no values at trace time, so it refuses
    such a label at run time with a clear error; an explicit ignore_index compiles the mask."""

    def __repr__(self):
        return "-100"


IGNORE_INDEX = _DefaultIgnore(-100)


def _plain(labels, weight, ignore_index, smoothing):
    """Whether the fused loss alone is the answer: no weights, no smoothing, and no label
    can equal ignore_index (or it is the default, see _DefaultIgnore)."""
    return (weight is None and not smoothing
            and (ignore_index is IGNORE_INDEX or ignore_index is None
                 or (kind(labels.dtype) == "u" and ignore_index < 0)))


def _fused(loss, logits, labels, ignore_index, reduction, who):
    """The fused per-row ``loss``, reduced; the masked path if a default-ignored label shows."""
    ignore = -100 if ignore_index is IGNORE_INDEX else None
    try:
        return _reduce(loss(logits, labels, ignore), reduction, who)
    except IgnoredLabel:        # eager only: compiled code raises it at run time
        return _labelled(lambda safe: loss(logits, safe), logits, labels, None, -100, 0.0,
                         reduction, who)


def _check_smoothing(label_smoothing, who):
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{who}: label_smoothing must be in [0, 1], got {label_smoothing}")


def cross_entropy(logits, target, reduction="mean", weight=None, ignore_index=IGNORE_INDEX,
                  label_smoothing=0.0):
    """Softmax cross-entropy of logits (N, C) against integer class labels (N,) or
    against one-hot / probability rows (N, C). Computed from log-softmax, so it is
    finite for logits of any size. ``weight`` (C,), ``ignore_index`` (labels only) and
    ``label_smoothing`` follow PyTorch's CrossEntropyLoss."""
    if logits.ndim != 2:
        raise ShapeError(f"cross_entropy: logits must have shape (batch, classes), got {logits.shape}")
    _check_smoothing(label_smoothing, "cross_entropy")
    n, c = logits.shape
    w = _class_weight(weight, logits, "cross_entropy")
    t = as_tensor(target)
    k = kind(t.dtype)
    if k in "iu":
        if t.shape != (n,):
            raise ShapeError(f"cross_entropy: integer labels must have shape ({n},) for logits "
                             f"{logits.shape}, got {t.shape}")
        if _plain(t, w, ignore_index, label_smoothing):
            return _fused(ops.softmax_cross_entropy, logits, t, ignore_index, reduction,
                          "cross_entropy")
        return _labelled(lambda safe: ops.softmax_cross_entropy(logits, safe), logits, t, w,
                         ignore_index, label_smoothing, reduction, "cross_entropy")
    if k == "f":
        if t.shape != logits.shape:
            hint = (" (class labels must be an integer array: use labels.astype(np.int64))"
                    if t.shape == (n,) else "")
            raise ShapeError(f"cross_entropy: float targets must be one-hot or probability rows "
                             f"of shape {logits.shape}, got {t.shape}{hint}")
        t = ops.astype(t, logits.dtype)
        if label_smoothing:                  # PyTorch: t(1 - e) + e/C; ignore_index is unused
            t = t * (1.0 - label_smoothing) + label_smoothing / c
        lsm = ops.log_softmax(logits, axis=1)
        per_item = -ops.sum(t * (lsm if w is None else lsm * w), axis=1)
        return _reduce(per_item, reduction, "cross_entropy")
    raise RetrogradError(f"cross_entropy: targets of dtype {t.dtype} are neither class "
                         "labels (integers) nor probabilities (floats)")


def nll_loss(log_probs, target, reduction="mean", weight=None, ignore_index=IGNORE_INDEX):
    """Negative log-likelihood of integer labels given log-probabilities (N, C);
    ``weight`` and ``ignore_index`` as PyTorch's NLLLoss."""
    t = as_tensor(target)
    if kind(t.dtype) not in "iu":
        raise RetrogradError(f"nll_loss: labels must be integers, got dtype {t.dtype}")
    if log_probs.ndim != 2 or t.shape != log_probs.shape[:1]:
        raise ShapeError(f"nll_loss: needs log-probabilities (batch, classes) and labels "
                         f"(batch,), got shapes {log_probs.shape} and {t.shape}")
    w = _class_weight(weight, log_probs, "nll_loss")
    if _plain(t, w, ignore_index, 0.0):
        return _fused(nll, log_probs, t, ignore_index, reduction, "nll_loss")  # checks values
    return _labelled(lambda safe: nll(log_probs, safe), log_probs, t, w, ignore_index, 0.0,
                     reduction, "nll_loss")


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


def l1_loss(input, target, reduction="mean"):
    """|input - target| per entry (PyTorch's L1Loss)."""
    t = _float_target(target, input, "l1_loss")
    return _reduce(ops.abs(input - t), reduction, "l1_loss")


def _huber(d, delta):
    """½d² for |d| ≤ delta, else delta·(|d| - ½delta): with q = min(|d|, delta) both are
    q·(|d| - ½q), one expression, no branch to select."""
    a = ops.abs(d)
    q = ops.minimum(a, delta)
    return q * (a - 0.5 * q)


def huber_loss(input, target, reduction="mean", delta=1.0):
    """Quadratic within ``delta`` of the target, linear beyond (PyTorch's HuberLoss)."""
    if not delta > 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    t = _float_target(target, input, "huber_loss")
    return _reduce(_huber(input - t, float(delta)), reduction, "huber_loss")


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """Huber loss divided by ``beta``: ½d²/beta within beta, |d| - ½beta beyond; beta = 0
    is the L1 loss (PyTorch's SmoothL1Loss)."""
    if not beta >= 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    t = _float_target(target, input, "smooth_l1_loss")
    d = input - t
    per = ops.abs(d) if beta == 0 else _huber(d, float(beta)) * (1.0 / beta)
    return _reduce(per, reduction, "smooth_l1_loss")


def kl_div(input, target, reduction="mean", log_target=False):
    """KL(target ‖ q) for log-probabilities ``input`` = log q, entry by entry:
    target·(log target - input), 0 where target = 0 (PyTorch's kl_div; with
    ``log_target`` the target is log p). Reductions as PyTorch: "batchmean" sums and
    divides by the batch size input.shape[0] (the true KL divergence per example);
    "mean" divides by the number of entries."""
    who = "kl_div"
    t = _float_target(target, input, who)
    if log_target:
        per = ops.exp(t) * (t - input)
    else:       # xlogy(t, t): log of 1 where t <= 0 keeps the value and gradient finite
        pos = ops.greater(t, 0.0)
        per = ops.where(pos, t * ops.log(ops.where(pos, t, 1.0)), 0.0) - t * input
    if reduction == "batchmean":
        if input.ndim == 0:
            raise ShapeError(f"{who}: reduction 'batchmean' needs a batch axis, got shape ()")
        return ops.sum(per) * (1.0 / input.shape[0])
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{who}: reduction must be 'batchmean', 'mean', 'sum' or 'none', "
                         f"got {reduction!r}")
    return _reduce(per, reduction, who)


_TORCH_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def pad(input, pad, mode="constant", value=0):
    """PyTorch's F.pad: ``pad`` = (left, right) of the last axis, then (left, right) of the
    one before, ...; modes 'constant' (with ``value``), 'reflect', 'replicate', 'circular'
    (rg.pad with its pad_width turned around). As PyTorch, a reflect pad must be shorter than
    its axis and a circular one no longer; negative (cropping) pads are refused."""
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ShapeError(f"pad: pad {pad} must hold (left, right) pairs for at most the "
                         f"{input.ndim} axes of shape {input.shape}")
    if mode not in _TORCH_PAD_MODES:
        raise RetrogradError(f"pad: mode must be one of {_TORCH_PAD_MODES}, got {mode!r}")
    k = len(pad) // 2
    width = [(0, 0)] * (input.ndim - k) + [pad[2 * i:2 * i + 2] for i in reversed(range(k))]
    for axis, (lo, hi) in enumerate(width):
        n = input.shape[axis]
        if (mode == "reflect" and builtins.max(lo, hi) >= n) or (
                mode == "circular" and builtins.max(lo, hi) > n):
            raise ShapeError(f"pad: {mode} padding ({lo}, {hi}) of axis {axis} of shape "
                             f"{input.shape} must be {'<' if mode == 'reflect' else '<='} its "
                             f"size {n}")
    if mode == "constant":
        return ops.pad(input, width, constant_values=value)
    return ops.pad(input, width, mode)


def dropout(x, p=0.5, training=True, generator=None):
    """Inverted dropout: zero each entry with probability p and scale the rest by
    1/(1 − p), so nothing changes at evaluation time."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    return x * ops.bernoulli_mask(x, p, generator)
