"""Convolution and pooling layers with PyTorch's names, parameter shapes and init:
Conv1d, Conv2d, ConvTranspose2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten,
Upsample. Each checks its input's layout and channels and names itself when it refuses."""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..errors import RetrogradError, ShapeError
from ..ops import conv as C
from ..tensor import default_generator
from .module import Module, Parameter


def _tuple(v, n):
    return (int(v),) * n if isinstance(v, (int, np.integer)) else tuple(int(i) for i in v)


def _check(layer, x, ndim, layout, channels=None):
    if x.ndim != ndim:
        raise ShapeError(f"{layer}: input must be {ndim}-d {layout}, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ShapeError(f"{layer}: input has {x.shape[1]} channels (shape {tuple(x.shape)}), "
                         f"expected {channels}")


class _ConvNd(Module):
    """The parameters of a convolution: weight and bias drawn as PyTorch's
    reset_parameters (kaiming_uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in), ..) with
    fan_in = weight.shape[1] * prod(kernel), and the bias from the same bound)."""

    _nd, _transposed = 2, False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, dtype=np.float32, output_padding=0):
        n = self._nd
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride = _tuple(kernel_size, n), _tuple(stride, n)
        self.padding = padding if isinstance(padding, str) else _tuple(padding, n)
        self.dilation, self.groups = _tuple(dilation, n), int(groups)
        self.output_padding = _tuple(output_padding, n)
        name = type(self).__name__
        if self.groups < 1 or self.in_channels % self.groups or self.out_channels % self.groups:
            raise RetrogradError(f"{name}: in_channels ({in_channels}) and out_channels "
                                 f"({out_channels}) must be divisible by groups ({groups})")
        a, b = ((self.in_channels, self.out_channels // self.groups) if self._transposed
                else (self.out_channels, self.in_channels // self.groups))
        shape = (a, b) + self.kernel_size
        bound = 1.0 / math.sqrt(b * math.prod(self.kernel_size))
        gen = default_generator()
        self.weight = Parameter(gen.uniform(-bound, bound, shape).astype(dtype))
        self.bias = Parameter(gen.uniform(-bound, bound, self.out_channels).astype(dtype)) \
            if bias else None

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding not in ((0,) * self._nd, "valid"):
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")


class Conv1d(_ConvNd):
    """1-d convolution of (N, C_in, L); weight (C_out, C_in/groups, k)."""

    _nd = 1

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, dtype=np.float32):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, dtype)

    def forward(self, x):
        _check(f"Conv1d({self.in_channels}, {self.out_channels})", x, 3, "(N, C, L)",
               self.in_channels)
        p = self.padding if isinstance(self.padding, str) else self.padding[0]
        return C.conv1d(x, self.weight, self.bias, self.stride[0], p, self.dilation[0],
                        self.groups)


class Conv2d(_ConvNd):
    """2-d convolution of (N, C_in, H, W); weight (C_out, C_in/groups, kh, kw)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, dtype=np.float32):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, dtype)

    def forward(self, x):
        _check(f"Conv2d({self.in_channels}, {self.out_channels})", x, 4, "(N, C, H, W)",
               self.in_channels)
        return C.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


class ConvTranspose2d(_ConvNd):
    """Transposed 2-d convolution; weight (C_in, C_out/groups, kh, kw) as PyTorch's."""

    _transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, dtype=np.float32):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, dtype, output_padding)

    def forward(self, x):
        _check(f"ConvTranspose2d({self.in_channels}, {self.out_channels})", x, 4,
               "(N, C, H, W)", self.in_channels)
        return C.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)


class _Pool2d(Module):
    """A pooling window: kernel_size, stride (default: the kernel size) and padding."""

    def __init__(self, kernel_size, stride=None, padding=0):
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__(kernel_size, stride, padding)
        self.dilation, self.return_indices, self.ceil_mode = dilation, return_indices, ceil_mode

    def forward(self, x):
        _check("MaxPool2d", x, 4, "(N, C, H, W)")
        return C.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode, self.return_indices)


class AvgPool2d(_Pool2d):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__(kernel_size, stride, padding)
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def forward(self, x):
        _check("AvgPool2d", x, 4, "(N, C, H, W)")
        return C.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        self.output_size = output_size

    def forward(self, x):
        _check("AdaptiveAvgPool2d", x, 4, "(N, C, H, W)")
        return C.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class Flatten(Module):
    """Flatten axes start_dim..end_dim into one (PyTorch's defaults keep the batch axis)."""

    def __init__(self, start_dim=1, end_dim=-1):
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        nd = x.ndim
        a, b = (self.start_dim % nd, self.end_dim % nd) if nd else (0, 0)
        if not (-nd <= self.start_dim < nd and -nd <= self.end_dim < nd) or a > b:
            raise ShapeError(f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}): "
                             f"does not fit input of shape {tuple(x.shape)}")
        return ops.reshape(x, tuple(x.shape[:a]) + (-1,) + tuple(x.shape[b + 1:]))

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Upsample(Module):
    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        self.size, self.scale_factor = size, scale_factor
        self.mode, self.align_corners = mode, align_corners

    def forward(self, x):
        _check("Upsample", x, 4, "(N, C, H, W)")
        return C.interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners)

    def extra_repr(self):
        return (f"size={self.size}" if self.size is not None
                else f"scale_factor={self.scale_factor}") + f", mode={self.mode!r}"
