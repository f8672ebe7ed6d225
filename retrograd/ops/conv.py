"""Convolution, pooling and resampling of NCHW images, as PyTorch's.

Two primitives carry the convolutions: ``unfold`` (im2col: every kernel window of
the padded input as a column, PyTorch's (N, C·kh·kw, L) layout, one strided copy) and
``fold`` (col2im: the windows added back, a loop over the kh·kw kernel offsets). Each
is the other's VJP, both linear, so every convolution below is a composite of them and
matmul -- conv2d = unfold, then one (batched) matmul with the weight; conv_transpose2d =
matmul, then fold -- and is differentiable to any order for free: conv2d's input VJP
is a transposed convolution, conv_transpose2d's a convolution.

Max pooling is argmax indices (no gradient: integers) and a gather at them, whose VJP
is a scatter at the same indices and the scatter's a gather; so the gradient goes to
the first maximum of each window, as PyTorch's. Average, adaptive pooling and
interpolation are reshapes, sums and matrix products with constant matrices.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..errors import RetrogradError, ShapeError
from ..tensor import Tensor, as_tensor
from .base import apply, defop
from .linalg import matmul
from .reduce import sum as _sum
from .shape import getitem, pad, reshape, swapaxes, transpose


def _pair(v, name, who, low=0):
    """An int or a pair of ints as a pair, each at least ``low``."""
    p = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(p) != 2 or not all(isinstance(i, (int, np.integer)) for i in p):
        raise RetrogradError(f"{who}: {name} must be an int or a pair of ints, got {v!r}")
    if min(p) < low:
        raise RetrogradError(f"{who}: {name} must be >= {low}, got {v!r}")
    return int(p[0]), int(p[1])


def _blocks(size, kernel, dilation, padding, stride):
    """The number of kernel positions along each spatial axis (PyTorch's formula)."""
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, k, d, p, s in zip(size, kernel, dilation, padding, stride))


def _shape(x):
    return tuple(x.shape) if isinstance(x, Tensor) else np.shape(x)


def _need_4d(x, who, what="input", layout="(N, C, H, W)"):
    shape = _shape(x)
    if len(shape) != 4:
        raise ShapeError(f"{who}: {what} must be 4-d {layout}, got shape {shape}")
    return shape


# ---------------------------------------------------------------- unfold / fold (im2col, col2im)

def _unfold(x, kernel_size, dilation, padding, stride):
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = kernel_size, dilation, padding, stride
    n, c, h, w = x.shape
    oh, ow = _blocks((h, w), kernel_size, dilation, padding, stride)
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    s = x.strides
    # every window as one strided view (no copy), then one copy into the column layout
    v = as_strided(x, (n, c, kh, kw, oh, ow), (s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh,
                                               s[3] * sw), writeable=False)
    return v.copy().reshape(n, c * kh * kw, oh * ow)


def _fold(cols, output_size, kernel_size, dilation, padding, stride):
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = kernel_size, dilation, padding, stride
    n, ck, _ = cols.shape
    h, w = output_size
    oh, ow = _blocks(output_size, kernel_size, dilation, padding, stride)
    c6 = cols.reshape(n, ck // (kh * kw), kh, kw, oh, ow)
    out = np.zeros((n, ck // (kh * kw), h + 2 * ph, w + 2 * pw), cols.dtype)
    # windows overlap: add them one kernel offset at a time (kh·kw vectorised adds)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                j * dw:j * dw + sw * (ow - 1) + 1:sw] += c6[:, :, i, j]
    return np.ascontiguousarray(out[:, :, ph:ph + h, pw:pw + w]) if ph or pw else out


_unfold_op = defop("unfold", _unfold, (
    lambda g, out, x, kernel_size, dilation, padding, stride:
        fold(g, x.shape[2:], kernel_size, dilation, padding, stride),), reads=((),), fresh=True)
_fold_op = defop("fold", _fold, (
    lambda g, out, cols, output_size, kernel_size, dilation, padding, stride:
        unfold(g, kernel_size, dilation, padding, stride),), reads=((),), fresh=True)


def _geometry(who, kernel_size, dilation, padding, stride):
    return (_pair(kernel_size, "kernel_size", who, 1), _pair(dilation, "dilation", who, 1),
            _pair(padding, "padding", who, 0), _pair(stride, "stride", who, 1))


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """im2col, as ``torch.nn.functional.unfold``: (N, C, H, W) -> (N, C·kh·kw, L), each
    column one kernel window of the zero-padded input, L windows in row-major order."""
    k, d, p, s = _geometry("unfold", kernel_size, dilation, padding, stride)
    n, c, h, w = _need_4d(input, "unfold")
    oh, ow = _blocks((h, w), k, d, p, s)
    if oh < 1 or ow < 1:
        raise ShapeError(f"unfold: kernel {k} (dilation {d}) does not fit input {(h, w)} "
                         f"padded by {p}")
    return apply(_unfold_op, input, kernel_size=k, dilation=d, padding=p, stride=s)


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """col2im, as ``torch.nn.functional.fold``: (N, C·kh·kw, L) -> (N, C, H, W) with
    ``output_size`` (H, W), overlapping windows summed; the adjoint of unfold."""
    k, d, p, s = _geometry("fold", kernel_size, dilation, padding, stride)
    size = _pair(output_size, "output_size", "fold", 1)
    shape = _shape(input)
    if len(shape) != 3:
        raise ShapeError(f"fold: input must be 3-d (N, C*kh*kw, L), got shape {shape}")
    blocks = _blocks(size, k, d, p, s)
    if shape[1] % (k[0] * k[1]) or shape[2] != blocks[0] * blocks[1] or min(blocks) < 1:
        raise ShapeError(f"fold: input of shape {shape} does not fit output_size {size} with "
                         f"kernel {k}: expected (N, C*{k[0] * k[1]}, {blocks[0] * blocks[1]})")
    return apply(_fold_op, input, output_size=size, kernel_size=k, dilation=d, padding=p,
                 stride=s)


# ---------------------------------------------------------------- convolutions

def _same_padding(who, kernel, dilation, stride):
    """PyTorch's padding='same': total d·(k-1) per axis, the odd one extra on the far side."""
    if stride != (1, 1):
        raise RetrogradError(f"{who}: padding='same' is not supported for strided "
                             f"convolutions (stride {stride}), as in PyTorch")
    total = [d * (k - 1) for k, d in zip(kernel, dilation)]
    return tuple((t // 2, t - t // 2) for t in total)


def _padding(who, padding, kernel, dilation, stride):
    """(symmetric padding for unfold, or None; ((lo, hi), (lo, hi)) to pad first, or None)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), None
        if padding == "same":
            both = _same_padding(who, kernel, dilation, stride)
            if all(lo == hi for lo, hi in both):
                return (both[0][0], both[1][0]), None
            return (0, 0), both
        raise RetrogradError(f"{who}: padding must be an int, a pair, 'valid' or 'same', "
                             f"got {padding!r}")
    return _pair(padding, "padding", who), None


def _with_bias(y, b, who, c_out):
    if b is None:
        return y
    if _shape(b) != (c_out,):
        raise ShapeError(f"{who}: bias must have shape ({c_out},), got {_shape(b)}")
    return y + reshape(b, (c_out, 1, 1))


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-d cross-correlation as ``torch.nn.functional.conv2d``: input (N, C_in, H, W),
    weight (C_out, C_in/groups, kh, kw), bias (C_out,); padding an int, a pair, 'valid'
    or 'same'. im2col (unfold) and one matmul per group."""
    who = "conv2d"
    n, c, h, w = _need_4d(input, who)
    co, cg, kh, kw = _need_4d(weight, who, "weight", "(C_out, C_in/groups, kh, kw)")
    groups = int(groups)
    if groups < 1 or c % groups or co % groups or cg * groups != c:
        raise ShapeError(f"{who}: input of shape {(n, c, h, w)} and weight of shape "
                         f"{(co, cg, kh, kw)} with groups={groups}: need C_in = "
                         f"weight.shape[1] * groups and C_out divisible by groups")
    k, d, s = (kh, kw), _pair(dilation, "dilation", who, 1), _pair(stride, "stride", who, 1)
    p, pre = _padding(who, padding, k, d, s)
    if pre is not None:
        input = pad(input, ((0, 0), (0, 0)) + pre)
        h, w = h + sum(pre[0]), w + sum(pre[1])
    oh, ow = _blocks((h, w), k, d, p, s)
    if oh < 1 or ow < 1:
        raise ShapeError(f"{who}: kernel {k} (dilation {d}) is larger than input {(h, w)} "
                         f"padded by {p}")
    cols = apply(_unfold_op, input, kernel_size=k, dilation=d, padding=p, stride=s)
    if groups == 1:
        y = matmul(reshape(weight, (co, cg * kh * kw)), cols)             # (N, C_out, L)
    else:
        y = matmul(reshape(weight, (groups, co // groups, cg * kh * kw)),
                   reshape(cols, (n, groups, cg * kh * kw, oh * ow)))     # (N, G, C_out/G, L)
    return _with_bias(reshape(y, (n, co, oh, ow)), bias, who, co)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-d cross-correlation as ``torch.nn.functional.conv1d``: input (N, C_in, L), weight
    (C_out, C_in/groups, k); conv2d on a height-1 image."""
    who = "conv1d"
    xs, ws = _shape(input), _shape(weight)
    if len(xs) != 3 or len(ws) != 3:
        raise ShapeError(f"{who}: input must be 3-d (N, C, L) and weight 3-d (C_out, "
                         f"C_in/groups, k), got shapes {xs} and {ws}")
    one = lambda v, name: (1, _pair(v, name, who, 0)[0]) if not isinstance(v, str) else v
    y = conv2d(reshape(input, (xs[0], xs[1], 1, xs[2])), reshape(weight, ws[:2] + (1, ws[2])),
               bias, one(stride, "stride"),
               padding if isinstance(padding, str) else (0, _pair(padding, "padding", who)[0]),
               one(dilation, "dilation"), groups)
    return reshape(y, (y.shape[0], y.shape[1], y.shape[3]))


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """The transposed convolution (the adjoint of conv2d in its input), as
    ``torch.nn.functional.conv_transpose2d``: input (N, C_in, H, W), weight (C_in,
    C_out/groups, kh, kw). One matmul per group, then fold (col2im)."""
    who = "conv_transpose2d"
    n, c, h, w = _need_4d(input, who)
    ci, cog, kh, kw = _need_4d(weight, who, "weight", "(C_in, C_out/groups, kh, kw)")
    groups = int(groups)
    if groups < 1 or ci != c or c % groups:
        raise ShapeError(f"{who}: input of shape {(n, c, h, w)} and weight of shape "
                         f"{(ci, cog, kh, kw)} with groups={groups}: need C_in = "
                         f"weight.shape[0], divisible by groups")
    k = (kh, kw)
    s, p = _pair(stride, "stride", who, 1), _pair(padding, "padding", who)
    d, op = _pair(dilation, "dilation", who, 1), _pair(output_padding, "output_padding", who)
    if any(o >= max(si, di) for o, si, di in zip(op, s, d)):
        raise RetrogradError(f"{who}: output_padding {op} must be smaller than either stride "
                             f"{s} or dilation {d}")
    size = tuple((i - 1) * si - 2 * pi + di * (ki - 1) + oi + 1
                 for i, si, pi, di, ki, oi in zip((h, w), s, p, d, k, op))
    if min(size) < 1:
        raise ShapeError(f"{who}: input {(h, w)} with kernel {k}, stride {s} and padding {p} "
                         f"gives an empty output {size}")
    co, kk = cog * groups, cog * kh * kw
    x = reshape(input, (n, c, h * w))
    if groups == 1:
        cols = matmul(transpose(reshape(weight, (c, kk))), x)             # (N, C_out·kh·kw, L)
    else:
        wg = swapaxes(reshape(weight, (groups, c // groups, kk)), -1, -2)
        cols = reshape(matmul(wg, reshape(x, (n, groups, c // groups, h * w))),
                       (n, co * kh * kw, h * w))
    y = apply(_fold_op, cols, output_size=size, kernel_size=k, dilation=d, padding=p, stride=s)
    return _with_bias(y, bias, who, co)


# ---------------------------------------------------------------- max pooling

def _pool_size(who, size, kernel, stride, padding, dilation, ceil_mode):
    """Output size of a pooling, PyTorch's formula (ceil_mode: a last window may start in
    the padding's far side but not beyond it)."""
    out = []
    for n, k, s, p, d in zip(size, kernel, stride, padding, dilation):
        span = n + 2 * p - d * (k - 1) - 1
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= n + p:
            o -= 1
        out.append(o)
    if min(out) < 1:
        raise ShapeError(f"{who}: kernel {kernel} (dilation {dilation}) does not fit input "
                         f"{tuple(size)} padded by {padding}")
    return tuple(out)


def _max_pool_indices(x, kernel_size, stride, padding, dilation, out_size):
    """For each window the flat index (into H·W) of its first maximum (a NaN wins)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    h, w = x.shape[2:]
    oh, ow = out_size
    far = [max(0, (o - 1) * s + d * (k - 1) + 1 - (n + 2 * p))      # ceil_mode's overhang
           for o, s, d, k, n, p in zip(out_size, stride, dilation, kernel_size, (h, w), padding)]
    if ph or pw or any(far):
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph + far[0]), (pw, pw + far[1])),
                   constant_values=-np.inf)
    nan = x.dtype.kind == "f" and bool(np.isnan(x).any())
    window = lambda i, j: x[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                            j * dw:j * dw + sw * (ow - 1) + 1:sw]
    best = window(0, 0).copy()
    arg = np.zeros(best.shape, np.int64)
    for i in range(kh):
        for j in range(kw):
            if i or j:
                v = window(i, j)
                m = v > best                       # strict: ties keep the first, as PyTorch
                if nan:
                    m |= np.isnan(v)
                np.copyto(best, v, where=m)
                np.copyto(arg, i * kw + j, where=m)
    rows = (np.arange(oh) * sh - ph)[:, None] + (arg // kw) * dh
    cols = (np.arange(ow) * sw - pw) + (arg % kw) * dw
    return rows * w + cols


def _gather(x, idx, unique):
    n, c = x.shape[:2]
    return np.take_along_axis(x.reshape(n, c, -1), idx.reshape(n, c, -1), 2).reshape(idx.shape)


def _scatter(g, idx, shape, unique):
    n, c = shape[:2]
    plane = math.prod(shape[2:])
    if unique:                  # windows that do not overlap: each index at most once
        out = np.zeros((n, c, plane), g.dtype)
        np.put_along_axis(out, idx.reshape(n, c, -1), g.reshape(n, c, -1), 2)
        return out.reshape(shape)
    flat = (idx.reshape(n * c, -1) + (np.arange(n * c) * plane)[:, None]).ravel()
    out = np.bincount(flat, weights=g.ravel(), minlength=n * c * plane)
    return out.astype(g.dtype, copy=False).reshape(shape)


_indices_op = defop("max_pool2d_indices", lambda x, kernel_size, stride, padding, dilation,
                    out_size: _max_pool_indices(x, kernel_size, stride, padding, dilation,
                                                out_size), fresh=True)
_gather_op = defop("pool_gather", _gather, (
    lambda g, out, x, idx, unique: pool_scatter(g, idx, x.shape, unique), None),
    reads=((1,), ()), fresh=True)
_scatter_op = defop("pool_scatter", _scatter, (
    lambda g, out, gg, idx, shape, unique: apply(_gather_op, g, idx, unique=unique), None),
    reads=((1,), ()), fresh=True)


def pool_scatter(g, idx, shape, unique=False):
    """zeros(shape) with g (N, C, ...) added at the flat spatial indices ``idx`` (the VJP of
    max pooling; ``unique``: no index repeats within a plane)."""
    return apply(_scatter_op, g, idx, shape=tuple(shape), unique=bool(unique))


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max pooling as ``torch.nn.functional.max_pool2d`` (stride defaults to kernel_size,
    padding counts as -inf); with ``return_indices`` also the flat index into H·W of each
    window's maximum. The gradient goes to the first maximum of each window."""
    who = "max_pool2d"
    n, c, h, w = _need_4d(input, who)
    k = _pair(kernel_size, "kernel_size", who, 1)
    s = k if stride is None else _pair(stride, "stride", who, 1)
    p, d = _pair(padding, "padding", who), _pair(dilation, "dilation", who, 1)
    if any(2 * pi > ki for pi, ki in zip(p, k)):
        raise RetrogradError(f"{who}: padding {p} must be at most half of kernel_size {k}")
    out_size = _pool_size(who, (h, w), k, s, p, d, ceil_mode)
    idx = apply(_indices_op, input, kernel_size=k, stride=s, padding=p, dilation=d,
                out_size=out_size)
    unique = all(si >= di * (ki - 1) + 1 for si, di, ki in zip(s, d, k))
    out = apply(_gather_op, input, idx, unique=unique)
    return (out, idx) if return_indices else out


# ---------------------------------------------------------------- average pooling

def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """Average pooling as ``torch.nn.functional.avg_pool2d``: by default the padding's
    zeros count in the mean (count_include_pad=True, PyTorch's default)."""
    who = "avg_pool2d"
    n, c, h, w = _need_4d(input, who)
    k = _pair(kernel_size, "kernel_size", who, 1)
    s = k if stride is None else _pair(stride, "stride", who, 1)
    p = _pair(padding, "padding", who)
    if ceil_mode:       # its last windows' divisors differ; refused rather than approximated
        raise RetrogradError(f"{who}: ceil_mode=True is not supported")
    if any(2 * pi > ki for pi, ki in zip(p, k)):
        raise RetrogradError(f"{who}: padding {p} must be at most half of kernel_size {k}")
    oh, ow = _pool_size(who, (h, w), k, s, p, (1, 1), False)
    if s == k and p == (0, 0):                      # non-overlapping tiles: a reshape and a sum
        x = input if (h, w) == (oh * k[0], ow * k[1]) else getitem(
            input, (slice(None), slice(None), slice(0, oh * k[0]), slice(0, ow * k[1])))
        total = _sum(reshape(x, (n, c, oh, k[0], ow, k[1])), axis=(3, 5))
    else:
        cols = apply(_unfold_op, input, kernel_size=k, dilation=(1, 1), padding=p, stride=s)
        total = _sum(reshape(cols, (n, c, k[0] * k[1], oh, ow)), axis=2)
    if divisor_override is not None:
        return total * (1.0 / divisor_override)
    if count_include_pad or p == (0, 0):
        return total * (1.0 / (k[0] * k[1]))
    ones = np.ones((1, 1, h, w), _shape_dtype(input))
    counts = _unfold(ones, k, (1, 1), p, s).sum(axis=1).reshape(1, 1, oh, ow)
    return total / counts


def _shape_dtype(x):
    dt = x.dtype if isinstance(x, Tensor) else np.asarray(x).dtype
    return dt if dt.kind == "f" else np.dtype(np.float32)


# ---------------------------------------------------------------- adaptive pooling, interpolation

def _adaptive_matrix(n_in, n_out, dtype):
    """(n_out, n_in): row i averages PyTorch's bin [floor(i·n/o), ceil((i+1)·n/o))."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m.astype(dtype)


def _separable(x, mh, mw):
    """mh @ x @ mw.T over the last two axes (mh, mw: constant resampling matrices)."""
    y = x if mw is None else matmul(x, as_tensor(np.ascontiguousarray(mw.T)))
    return y if mh is None else matmul(as_tensor(mh), y)


def adaptive_avg_pool2d(input, output_size):
    """Average pooling to a given output size (an int, a pair, None keeps that axis), as
    ``torch.nn.functional.adaptive_avg_pool2d``, for any input size (the bins then
    overlap and differ in size as PyTorch's)."""
    who = "adaptive_avg_pool2d"
    n, c, h, w = _need_4d(input, who)
    size = (output_size, output_size) if output_size is None or isinstance(
        output_size, (int, np.integer)) else tuple(output_size)
    size = tuple(i if o is None else o for o, i in zip(size, (h, w)))
    oh, ow = _pair(size, "output_size", who, 1)
    if h % oh == 0 and w % ow == 0:
        return avg_pool2d(input, (h // oh, w // ow))
    dt = _shape_dtype(input)
    return _separable(input, None if oh == h else _adaptive_matrix(h, oh, dt),
                      None if ow == w else _adaptive_matrix(w, ow, dt))


def _interp_matrix(n_in, n_out, scale, mode, align_corners, dtype):
    """(n_out, n_in): row j weights the input entries output j is interpolated from,
    with PyTorch's source-index arithmetic (float32 for float32, as its kernels)."""
    ft = np.float32 if dtype == np.float32 else np.float64
    dst = np.arange(n_out)
    m = np.zeros((n_out, n_in), np.float64)
    if mode == "nearest":
        r = ft(1.0 / scale) if scale else ft(n_in) / ft(n_out)
        src = np.minimum(np.floor(dst.astype(ft) * r).astype(np.int64), n_in - 1)
        m[dst, src] = 1.0
        return m.astype(dtype)
    if align_corners:
        r = ft(n_in - 1) / ft(n_out - 1) if n_out > 1 else ft(0)
        src = r * dst.astype(ft)
    else:
        r = ft(1.0 / scale) if scale else ft(n_in) / ft(n_out)
        src = np.maximum(r * (dst.astype(ft) + ft(0.5)) - ft(0.5), ft(0))
    i0 = src.astype(np.int64)
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    l1 = src - i0.astype(ft)
    np.add.at(m, (dst, i0), (ft(1) - l1).astype(np.float64))
    np.add.at(m, (dst, i1), l1.astype(np.float64))
    return m.astype(dtype)


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """Resize (N, C, H, W) images as ``torch.nn.functional.interpolate``, mode 'nearest' or
    'bilinear' (align_corners as PyTorch, default False): each a product with two constant
    interpolation matrices, so its VJP is the adjoint resampling."""
    who = "interpolate"
    n, c, h, w = _need_4d(input, who)
    if mode not in ("nearest", "bilinear"):
        raise RetrogradError(f"{who}: mode must be 'nearest' or 'bilinear', got {mode!r}")
    if mode == "nearest" and align_corners is not None:
        raise RetrogradError(f"{who}: align_corners applies to mode 'bilinear' only")
    if (size is None) == (scale_factor is None):
        raise RetrogradError(f"{who}: give exactly one of size and scale_factor")
    if size is not None:
        out, scales = _pair(size, "size", who, 1), (None, None)
    else:
        scales = (scale_factor, scale_factor) if isinstance(scale_factor, (int, float)) \
            else tuple(scale_factor)
        if len(scales) != 2 or min(scales) <= 0:
            raise RetrogradError(f"{who}: scale_factor must be positive (one or a pair), got "
                                 f"{scale_factor!r}")
        out = tuple(int(math.floor(i * float(f))) for i, f in zip((h, w), scales))
        if min(out) < 1:
            raise ShapeError(f"{who}: scale_factor {scale_factor} makes input {(h, w)} empty")
        scales = tuple(float(f) for f in scales)
    dt = _shape_dtype(input)
    mats = [None if o == i and (mode == "nearest" or not align_corners) and (f in (None, 1.0))
            else _interp_matrix(i, o, f, mode, bool(align_corners), dt)
            for i, o, f in zip((h, w), out, scales)]
    return _separable(input, mats[0], mats[1])
