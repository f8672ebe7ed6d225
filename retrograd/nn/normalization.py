"""Normalisation layers: BatchNorm1d/2d, LayerNorm, GroupNorm, and their functional forms.

Each is a composite of existing ops (mean, rsqrt, broadcasting arithmetic), so its
gradient of any order comes from those ops' own rules. The per-channel work (the
statistics, the scale ``weight / std``) is done on the small (C,) arrays, so a large
input is passed over as few times as possible: centre, then one multiply-add.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..errors import RetrogradError, ShapeError
from ..tensor import no_grad
from .module import Buffer, Module, Parameter

__all__ = ["batch_norm", "layer_norm", "group_norm", "BatchNorm1d", "BatchNorm2d", "LayerNorm",
           "GroupNorm"]


def _channel_shape(x):
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _affine(xc, rstd, weight, bias, shape):
    """xc·rstd·weight + bias, the scale formed on the small statistics first."""
    scale = rstd if weight is None else rstd * ops.reshape(weight, shape)
    y = xc * scale
    return y if bias is None else y + ops.reshape(bias, shape)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """PyTorch's F.batch_norm over (N, C, *): normalise each channel by its batch mean and
    (biased) variance when ``training`` (or when there are no running statistics), else by
    ``running_mean`` / ``running_var``. Training updates the running statistics (nn.Buffer,
    via ``assign``) as PyTorch does: ``r <- (1 - momentum)·r + momentum·s``, with the
    *unbiased* batch variance for running_var; ``momentum`` may be a 0-d tensor (the
    cumulative average of BatchNorm(momentum=None))."""
    if x.ndim < 2:
        raise ShapeError(f"batch_norm: input must be (N, C, ...), got shape {x.shape}")
    shape, c = _channel_shape(x), x.shape[1]
    for what, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ShapeError(f"batch_norm: {what} has shape {tuple(t.shape)}, expected ({c},) "
                             f"for input {x.shape}")
    if not training and running_mean is not None and running_var is not None:
        rstd = ops.rsqrt(ops.reshape(running_var, shape) + eps)
        return _affine(x - ops.reshape(running_mean, shape), rstd, weight, bias, shape)
    axes = (0,) + tuple(range(2, x.ndim))
    n = x.size // c
    if n <= 1:      # PyTorch's error: the variance of one value is no statistic
        raise ShapeError(f"batch_norm: expected more than 1 value per channel when training, "
                         f"got input of shape {x.shape}")
    mean = ops.mean(x, axes, keepdims=True)
    xc = x - mean
    var = ops.mean(xc * xc, axes, keepdims=True)
    if training and running_mean is not None:
        _update_running(running_mean, running_var, mean, var, momentum, n, c)
    return _affine(xc, ops.rsqrt(var + eps), weight, bias, shape)


def _update_running(running_mean, running_var, mean, var, momentum, n, c):
    for what, t in (("running_mean", running_mean), ("running_var", running_var)):
        if not isinstance(t, Buffer):
            raise RetrogradError(f"batch_norm: training updates {what}, which must be an "
                                 f"nn.Buffer (a module's state), got {type(t).__name__}")
    with no_grad():         # state, not part of the differentiated function
        keep = 1 - momentum
        running_mean.assign(running_mean * keep + ops.reshape(mean, (c,)) * momentum)
        running_var.assign(running_var * keep + ops.reshape(var, (c,)) * (momentum * n / (n - 1)))


class _BatchNorm(Module):
    """The common part of BatchNorm1d / 2d (``_dims``: the input ranks accepted)."""

    _dims: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, dtype=np.float32):
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        c = self.num_features
        self.weight = Parameter(np.ones(c, dtype)) if affine else None
        self.bias = Parameter(np.zeros(c, dtype)) if affine else None
        if track_running_stats:     # PyTorch's buffer names, so state dicts carry over
            self.running_mean = Buffer(np.zeros(c, dtype), name="running_mean")
            self.running_var = Buffer(np.ones(c, dtype), name="running_var")
            self.num_batches_tracked = Buffer(np.array(0, np.int64), name="num_batches_tracked")
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def _check(self, x):
        if x.ndim not in self._dims or x.shape[1] != self.num_features:
            want = " or ".join(f"{d}-d" for d in self._dims)
            raise ShapeError(f"{type(self).__name__}({self.num_features}): input has shape "
                             f"{tuple(x.shape)}, expected {want} with {self.num_features} "
                             "channels on axis 1")

    def forward(self, x):
        self._check(x)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.assign(self.num_batches_tracked + 1)
            if self.momentum is None:           # cumulative moving average, as PyTorch
                momentum = 1.0 / ops.astype(self.num_batches_tracked, x.dtype)
        use_batch = self.training or self.running_mean is None
        return batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                          use_batch, momentum, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs over N (and L), per channel C."""
    _dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs over N, H and W, per channel C."""
    _dims = (4,)


def _normalized(x, axes, eps):
    """(x - mean)·rsqrt(var + eps) over ``axes`` (biased variance)."""
    xc = x - ops.mean(x, axes, keepdims=True)
    return xc, ops.rsqrt(ops.mean(xc * xc, axes, keepdims=True) + eps)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """PyTorch's F.layer_norm: normalise over the last ``len(normalized_shape)`` axes, then
    scale by ``weight`` and shift by ``bias`` (both of shape normalized_shape)."""
    ns = (int(normalized_shape),) if isinstance(normalized_shape, (int, np.integer)) \
        else tuple(int(s) for s in normalized_shape)
    k = len(ns)
    if k == 0 or tuple(x.shape[x.ndim - k:]) != ns or x.ndim < k:
        raise ShapeError(f"layer_norm: input of shape {tuple(x.shape)} does not end in the "
                         f"normalized shape {ns}")
    xc, rstd = _normalized(x, tuple(range(x.ndim - k, x.ndim)), eps)
    y = xc * rstd
    if weight is not None:
        y = y * weight
    return y if bias is None else y + bias


class LayerNorm(Module):
    """Layer normalisation over the trailing ``normalized_shape`` axes (PyTorch's)."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, dtype=np.float32):
        self.normalized_shape = (int(normalized_shape),) if isinstance(
            normalized_shape, (int, np.integer)) else tuple(int(s) for s in normalized_shape)
        self.eps, self.elementwise_affine = float(eps), elementwise_affine
        ns = self.normalized_shape
        self.weight = Parameter(np.ones(ns, dtype)) if elementwise_affine else None
        self.bias = Parameter(np.zeros(ns, dtype)) if elementwise_affine and bias else None

    def forward(self, x):
        return layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """PyTorch's F.group_norm: the C channels of (N, C, *) in ``num_groups`` groups, each
    group of each sample normalised over its channels and positions; then a per-channel
    ``weight`` and ``bias``."""
    if x.ndim < 2 or x.shape[1] % num_groups:
        raise ShapeError(f"group_norm: input of shape {tuple(x.shape)} does not split into "
                         f"{num_groups} groups of channels on axis 1")
    n, c = x.shape[:2]
    xc, rstd = _normalized(ops.reshape(x, (n, num_groups, -1)), (2,), eps)
    y = ops.reshape(xc * rstd, x.shape)
    shape = _channel_shape(x)
    if weight is not None:
        y = y * ops.reshape(weight, shape)
    return y if bias is None else y + ops.reshape(bias, shape)


class GroupNorm(Module):
    """Group normalisation (Wu & He, 2018), PyTorch's GroupNorm."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, dtype=np.float32):
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels {num_channels} is not divisible by "
                             f"num_groups {num_groups}")
        self.num_groups, self.num_channels = int(num_groups), int(num_channels)
        self.eps, self.affine = float(eps), affine
        self.weight = Parameter(np.ones(num_channels, dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_channels, dtype)) if affine else None

    def forward(self, x):
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ShapeError(f"GroupNorm({self.num_groups}, {self.num_channels}): input has "
                             f"shape {tuple(x.shape)}, expected {self.num_channels} channels "
                             "on axis 1")
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"
