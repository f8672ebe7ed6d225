"""Op cases: convolution, pooling, unfold/fold, interpolate (joined into tests/cases.py's table)."""
from __future__ import annotations

import numpy as np

import retrograd as rg

from opcase import Case
from torch_oracle import torch   # None without it: those tests are skipped

F = rg.nn.functional
T = torch.nn.functional if torch else None

def _gathered_max(x, k, s, p):
    """max_pool2d(x, k, stride=s, padding=p) as pool_gather at max_pool2d_argmax."""
    n, c, h, w = x.shape
    geo = dict(kernel_size=(k, k), stride=(s, s), padding=(p, p), dilation=(1, 1),
               out_size=((h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1))
    arg = rg.ops.apply(rg.ops.REGISTRY["max_pool2d_argmax"], x, **geo)
    return rg.ops.apply(rg.ops.REGISTRY["pool_gather"], x, arg, **geo)


CASES: list = [
    # ---- convolutions: strides, padding, dilation, groups, rectangular kernels, bias
    Case("conv2d", lambda x, w, b: F.conv2d(x, w, b),
         lambda x, w, b: T.conv2d(x, w, b), ((2, 3, 6, 5), (4, 3, 3, 2), (4,))),
    Case("conv2d_stride_pad", lambda x, w: F.conv2d(x, w, stride=2, padding=1),
         lambda x, w: T.conv2d(x, w, stride=2, padding=1), ((2, 2, 7, 6), (3, 2, 3, 3))),
    Case("conv2d_dilation_groups", lambda x, w, b: F.conv2d(x, w, b, stride=(1, 2), padding=(2, 1),
                                                            dilation=(2, 1), groups=2),
         lambda x, w, b: T.conv2d(x, w, b, stride=(1, 2), padding=(2, 1), dilation=(2, 1),
                                  groups=2), ((2, 4, 6, 7), (6, 2, 2, 3), (6,))),
    Case("conv2d_same", lambda x, w: F.conv2d(x, w, padding="same", dilation=(1, 2)),
         lambda x, w: T.conv2d(x, w, padding="same", dilation=(1, 2)),
         ((1, 2, 5, 6), (3, 2, 2, 3))),
    Case("conv2d_depthwise", lambda x, w: F.conv2d(x, w, padding=1, groups=3),
         lambda x, w: T.conv2d(x, w, padding=1, groups=3), ((2, 3, 4, 4), (3, 1, 3, 3))),
    Case("conv1d", lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1, dilation=2),
         lambda x, w, b: T.conv1d(x, w, b, stride=2, padding=1, dilation=2),
         ((2, 3, 9), (4, 3, 3), (4,))),
    Case("conv1d_groups_same", lambda x, w: F.conv1d(x, w, padding="same", groups=2),
         lambda x, w: T.conv1d(x, w, padding="same", groups=2), ((2, 4, 7), (2, 2, 4))),
    Case("conv_transpose2d", lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1,
                                                                output_padding=1),
         lambda x, w, b: T.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
         ((2, 3, 3, 4), (3, 2, 3, 2), (2,))),
    Case("conv_transpose2d_groups_dilation",
         lambda x, w: F.conv_transpose2d(x, w, stride=(1, 2), padding=(1, 0), groups=2,
                                         dilation=(2, 1)),
         lambda x, w: T.conv_transpose2d(x, w, stride=(1, 2), padding=(1, 0), groups=2,
                                         dilation=(2, 1)), ((2, 4, 3, 3), (4, 1, 2, 3))),
    # ---- im2col and col2im themselves
    Case("unfold", lambda x: F.unfold(x, (2, 3), dilation=(1, 2), padding=1, stride=(2, 1)),
         lambda x: T.unfold(x, (2, 3), dilation=(1, 2), padding=1, stride=(2, 1)), ((2, 2, 5, 6),)),
    Case("fold", lambda c: F.fold(c, (5, 4), (2, 3), padding=(1, 0), stride=(2, 1)),
         lambda c: T.fold(c, (5, 4), (2, 3), padding=(1, 0), stride=(2, 1)), ((2, 12, 6),)),
    # ---- pooling (distinct inputs: a max has no ties, off the kinks)
    Case("max_pool2d", lambda x: F.max_pool2d(x, 2), lambda x: T.max_pool2d(x, 2),
         ((2, 3, 5, 6),), domain="distinct"),
    Case("max_pool2d_overlap_pad", lambda x: F.max_pool2d(x, 3, stride=2, padding=1),
         lambda x: T.max_pool2d(x, 3, stride=2, padding=1), ((2, 2, 7, 6),), domain="distinct"),
    Case("max_pool2d_dilation_ceil",
         lambda x: F.max_pool2d(x, (2, 3), stride=(2, 1), padding=(1, 1), dilation=(2, 1),
                                ceil_mode=True),
         lambda x: T.max_pool2d(x, (2, 3), stride=(2, 1), padding=(1, 1), dilation=(2, 1),
                                ceil_mode=True), ((1, 2, 6, 5),), domain="distinct"),
    # pool_gather at the argmax is the max pooling (its VJP pool_scatter, that one's again
    # pool_gather), overlapping windows
    Case("pool_gather_argmax", lambda x: _gathered_max(x, 3, 2, 1),
         lambda x: T.max_pool2d(x, 3, stride=2, padding=1), ((2, 2, 7, 6),), domain="distinct"),
    Case("avg_pool2d", lambda x: F.avg_pool2d(x, 2), lambda x: T.avg_pool2d(x, 2), ((2, 3, 5, 6),)),
    Case("avg_pool2d_stride_pad", lambda x: F.avg_pool2d(x, (3, 2), stride=(2, 1), padding=1),
         lambda x: T.avg_pool2d(x, (3, 2), stride=(2, 1), padding=1), ((2, 2, 7, 5),)),
    Case("avg_pool2d_exclude_pad", lambda x: F.avg_pool2d(x, 3, stride=2, padding=1,
                                                          count_include_pad=False),
         lambda x: T.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False),
         ((2, 2, 6, 7),)),
    Case("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, (3, 4)),
         lambda x: T.adaptive_avg_pool2d(x, (3, 4)), ((2, 3, 7, 6),)),
    Case("adaptive_avg_pool2d_divisible", lambda x: F.adaptive_avg_pool2d(x, 2),
         lambda x: T.adaptive_avg_pool2d(x, 2), ((2, 3, 4, 6),)),
    # ---- resampling
    Case("interpolate_nearest", lambda x: F.interpolate(x, size=(7, 3)),
         lambda x: T.interpolate(x, size=(7, 3)), ((2, 2, 4, 5),)),
    Case("interpolate_nearest_scale", lambda x: F.interpolate(x, scale_factor=2),
         lambda x: T.interpolate(x, scale_factor=2), ((1, 2, 3, 4),)),
    Case("interpolate_bilinear", lambda x: F.interpolate(x, scale_factor=1.7, mode="bilinear"),
         lambda x: T.interpolate(x, scale_factor=1.7, mode="bilinear"), ((2, 2, 4, 5),)),
    Case("interpolate_bilinear_align", lambda x: F.interpolate(x, size=(6, 3), mode="bilinear",
                                                               align_corners=True),
         lambda x: T.interpolate(x, size=(6, 3), mode="bilinear", align_corners=True),
         ((2, 2, 4, 5),)),
    # ---- a small LeNet-like composite: conv, relu, max pool, conv transpose, flatten
    Case("conv_net", lambda x, w1, w2: F.conv_transpose2d(
            F.max_pool2d(rg.tanh(F.conv2d(x, w1, padding=1)), 2), w2, stride=2).reshape(2, -1),
         lambda x, w1, w2: T.conv_transpose2d(
            T.max_pool2d(torch.tanh(T.conv2d(x, w1, padding=1)), 2), w2, stride=2).reshape(2, -1),
         ((2, 2, 6, 6), (3, 2, 3, 3), (3, 2, 2, 2)), tol=dict(atol=1e-5)),
]


def _np_max_pool_argmax(a):
    """NumPy reference of max_pool2d(kernel 2)'s argmax (the kernel offset of each window's
    maximum) on a (3, 4) image."""
    w = a.reshape(1, 1, 3, 4)[:, :, :2, :]
    blocks = w.reshape(1, 1, 1, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(1, 1, 1, 2, 4)
    return blocks.argmax(-1)


def _np_max_pool_indices(a):
    """... and its indices (flat into H·W, PyTorch's return_indices)."""
    k = _np_max_pool_argmax(a)
    return (k // 2) * 4 + np.arange(2) * 2 + k % 2


# ops without a gradient, checked forward-only against NumPy: name -> (ours, numpy's)
NONDIFF: dict = {
    "max_pool2d_indices": (lambda a: F.max_pool2d(a.reshape(1, 1, 3, 4), 2, return_indices=True)[1],
                           _np_max_pool_indices),
    "max_pool2d_argmax": (lambda a: rg.ops.apply(
        rg.ops.REGISTRY["max_pool2d_argmax"], a.reshape(1, 1, 3, 4), kernel_size=(2, 2),
        stride=(2, 2), padding=(0, 0), dilation=(1, 1), out_size=(1, 2)), _np_max_pool_argmax),
}
