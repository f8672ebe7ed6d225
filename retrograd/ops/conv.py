"""Convolution, pooling and resampling of NCHW images, as PyTorch's.

Two primitives carry the convolutions: ``im2col`` (every kernel window of the padded
input as a column, copied by one strided copy) and ``col2im`` (the windows added
back). Each is the other's VJP, both linear, so every convolution below is a composite
of them and matmul -- conv2d = im2col, then one matmul with the weight;
conv_transpose2d = matmul, then col2im -- and is differentiable to any order for free:
conv2d's input VJP is a transposed convolution, conv_transpose2d's a convolution.
``unfold`` and ``fold`` are im2col and col2im in PyTorch's (N, C·kh·kw, L) layout.

Max pooling is the windows' maxima, whose VJP scatters the gradient to each window's
first maximum (as PyTorch's) at its kernel offset (an argmax op, no gradient: integers);
the scatter's VJP is a gather at the same offsets and the gather's the scatter. Average,
adaptive pooling and interpolation are reshapes, sums and matrix products with constant
matrices.
"""
from __future__ import annotations

import math

import numpy as np

from ..arrays import device, kind, namespace
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
    return tuple(_block_count(*a) for a in zip(size, kernel, dilation, padding, stride))


def _block_count(n, k, d, p, s):
    """The number of positions of a kernel of k taps (dilation d) along n values padded by
    p each side, at stride s."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _shape(x):
    return tuple(x.shape) if isinstance(x, Tensor) else np.shape(x)


def _need_4d(x, who, what="input", layout="(N, C, H, W)"):
    shape = _shape(x)
    if len(shape) != 4:
        raise ShapeError(f"{who}: {what} must be 4-d {layout}, got shape {shape}")
    return shape


# ---------------------------------------------------------------- the Numba forms' layout
#
# Some ops carry a Numba form (their ``lowering=``: plain Python, compiled only by
# graph/numba_backend.py) looping over (C, H, W, N) arrays, the batch innermost, where
# LLVM vectorises the loops: views of conv2d's batch-last results, copies of other layouts.

def _chwn(x):
    """x (N, C, H, W) as a C-contiguous (C, H, W, N) array: a view where x is batch-last."""
    return np.ascontiguousarray(x.transpose(1, 2, 3, 0))


def _chwn_empty(shape, dtype):
    """A new (N, C, H, W) array laid out batch-last."""
    n, c, h, w = shape
    return np.empty((c, h, w, n), dtype).transpose(3, 0, 1, 2)


def _put_back(t, out):
    """out = t (C, H, W, N) unless t is a view of out."""
    if t.ctypes.data != out.ctypes.data:
        out[:] = t.transpose(3, 0, 1, 2)


# ---------------------------------------------------------------- im2col / col2im

# The columns are laid out (C·kh·kw, oh·ow·N), the batch innermost: the windows' copy
# (and col2im's adds) then run over long contiguous rows (ow·N values), where the
# NCHW layout would give rows of ow (NumPy pays per row), and a convolution is ONE 2-d
# matmul with the (C_out, C·kh·kw) weight, whose VJPs are 2-d matmuls too.

def _im2col(x, kernel_size, dilation, padding, stride):
    (kh, kw), (ph, pw) = kernel_size, padding
    n, c, h, w = x.shape
    oh, ow = _blocks((h, w), kernel_size, dilation, padding, stride)
    if type(x) is not np.ndarray:
        return _xp_im2col(namespace(x), x, kernel_size, dilation, padding, stride, (oh, ow))
    xt = x.transpose(1, 2, 3, 0)                       # (C, H, W, N), a view
    if ph or pw:
        padded = np.zeros((c, h + 2 * ph, w + 2 * pw, n), x.dtype)
        padded[:, ph:ph + h, pw:pw + w] = xt
        xt = padded
    elif not xt.flags.c_contiguous:     # (a batch-last input, conv2d's result, is already)
        xt = np.ascontiguousarray(xt)
    # every window at once as one strided view, copied by one call (kh·kw copies of the
    # offsets' slices cost ~60% more on B5's images, the calls' overhead)
    (dh, dw), (sh, sw), (s_c, s_h, s_w, s_n) = dilation, stride, xt.strides
    windows = np.lib.stride_tricks.as_strided(
        xt, (c, kh, kw, oh, ow, n), (s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw, s_n),
        writeable=False)
    out = np.empty((c, kh, kw, oh, ow, n), x.dtype)
    np.copyto(out, windows)
    return out.reshape(c * kh * kw, oh * ow * n)


def _offset_window(i, j, kernel_size, dilation, stride, out_size):
    """The (H, W) slices of a (C, H, W, N) image that kernel offset (i, j) reads for every
    window: rows i·dh + sh·t, columns j·dw + sw·u."""
    (dh, dw), (sh, sw), (oh, ow) = dilation, stride, out_size
    return (slice(None), slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
            slice(j * dw, j * dw + sw * (ow - 1) + 1, sw), Ellipsis)


def _xp_pad_hw(xp, a, rows, cols, value):
    """(B, H, W, B') padded along H and W by (lo, hi) pairs of ``value`` (concatenated
    slabs: the standard has no pad)."""
    def side(a, axis, width):
        shape = list(a.shape)
        shape[axis] = width
        return xp.full(tuple(shape), value, dtype=a.dtype, device=device(a))
    for axis, (lo, hi) in ((1, rows), (2, cols)):
        if lo or hi:
            a = xp.concat([side(a, axis, lo), a, side(a, axis, hi)], axis=axis)
    return a


def _xp_im2col(xp, x, kernel_size, dilation, padding, stride, out_size):
    """im2col in the standard's words (no as_strided): the window slices of every kernel
    offset, stacked."""
    (kh, kw), (ph, pw), (oh, ow) = kernel_size, padding, out_size
    n, c = x.shape[:2]
    xt = _xp_pad_hw(xp, xp.permute_dims(x, (1, 2, 3, 0)), (ph, ph), (pw, pw), 0)
    out = xp.stack([xt[_offset_window(i, j, kernel_size, dilation, stride, out_size)]
                    for i in range(kh) for j in range(kw)], axis=1)
    return xp.reshape(out, (c * kh * kw, oh * ow * n))


def _xp_col2im(xp, cols, shape, kernel_size, dilation, padding, stride, out_size):
    """col2im in the standard's words: each kernel offset's windows added into their
    slices (item assignment of slices, which the standard has; not JAX's arrays)."""
    (kh, kw), (ph, pw), (oh, ow) = kernel_size, padding, out_size
    n, c, h, w = shape
    c6 = xp.reshape(cols, (c, kh, kw, oh, ow, n))
    xt = xp.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype=cols.dtype, device=device(cols))
    for i in range(kh):
        for j in range(kw):
            window = _offset_window(i, j, kernel_size, dilation, stride, out_size)
            xt[window] = xt[window] + c6[:, i, j, ...]
    return xp.permute_dims(xt[:, ph:ph + h, pw:pw + w, :], (3, 0, 1, 2))


def _col2im(cols, shape, kernel_size, dilation, padding, stride):
    (kh, kw), (ph, pw) = kernel_size, padding
    n, c, h, w = shape
    oh, ow = _blocks((h, w), kernel_size, dilation, padding, stride)
    if type(cols) is not np.ndarray:
        return _xp_col2im(namespace(cols), cols, shape, kernel_size, dilation, padding, stride,
                          (oh, ow))
    c6 = cols.reshape(c, kh, kw, oh, ow, n)
    xt = np.zeros((c, h + 2 * ph, w + 2 * pw, n), cols.dtype)
    # windows overlap: add them one kernel offset at a time (kh·kw vectorised adds)
    for i in range(kh):
        for j in range(kw):
            xt[_offset_window(i, j, kernel_size, dilation, stride, (oh, ow))] += c6[:, i, j]
    # (N, C, H, W) as a view of the batch-last result; the next conv reads it as it is
    return xt[:, ph:ph + h, pw:pw + w].transpose(3, 0, 1, 2)


# im2col and col2im as Numba forms: one pass, where col2im's NumPy form zeroes a padded
# image and makes kh·kw strided adds into it. B5's images, hot in cache (64 of 1×28×28
# in C order, and of 6×12×12 batch-last, 5×5 kernels): im2col 0.128 and 0.047 ms against
# NumPy's 0.183 and 0.072, col2im 0.093 and 0.064 against 0.441 and 0.346.

def _im2col_numba(x, kernel_size, dilation, padding, stride, out):
    """_im2col: out (C·kh·kw, oh·ow·N)."""
    xt = _chwn(x)
    c, h, w, n = xt.shape
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = kernel_size, dilation, padding, stride
    oh, ow = _block_count(h, kh, dh, ph, sh), _block_count(w, kw, dw, pw, sw)
    o = out.reshape(c, kh, kw, oh, ow, n)
    for ch in range(c):
        for u in range(kh):
            for v in range(kw):
                for i in range(oh):
                    r = i * sh - ph + u * dh
                    for j in range(ow):
                        col = j * sw - pw + v * dw
                        orow = o[ch, u, v, i, j]
                        if r < 0 or r >= h or col < 0 or col >= w:
                            orow[:] = 0
                        else:
                            xr = xt[ch, r, col]
                            for t in range(n):
                                orow[t] = xr[t]
    return out


def _col2im_numba(cols, shape, kernel_size, dilation, padding, stride, out):
    """_col2im: out (N, C, H, W), each window's column added to the pixels it read."""
    n, c, h, w = shape
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = kernel_size, dilation, padding, stride
    oh, ow = _block_count(h, kh, dh, ph, sh), _block_count(w, kw, dw, pw, sw)
    c6, ot = np.ascontiguousarray(cols).reshape(c, kh, kw, oh, ow, n), _chwn(out)
    ot[:] = 0
    for ch in range(c):
        for u in range(kh):
            for v in range(kw):
                for i in range(oh):
                    r = i * sh - ph + u * dh
                    if r < 0 or r >= h:
                        continue
                    for j in range(ow):
                        col = j * sw - pw + v * dw
                        if col < 0 or col >= w:
                            continue
                        orow, g = ot[ch, r, col], c6[ch, u, v, i, j]
                        for t in range(n):
                            orow[t] += g[t]
    _put_back(ot, out)
    return out


_im2col_numba.helpers = ("_chwn", "_block_count")
_col2im_numba.helpers = ("_chwn", "_put_back", "_block_count")
_col2im_numba.replaces_loop = True    # of kh·kw NumPy adds: 'auto' picks Numba for it


_im2col_op = defop("im2col", _im2col, (
    lambda g, out, x, kernel_size, dilation, padding, stride:
        col2im(g, x.shape, kernel_size, dilation, padding, stride),), reads=((),), fresh=True,
    lowering=_im2col_numba)
_col2im_op = defop("col2im", _col2im, (
    lambda g, out, cols, shape, kernel_size, dilation, padding, stride:
        apply(_im2col_op, g, kernel_size=kernel_size, dilation=dilation, padding=padding,
              stride=stride),), reads=((),), fresh=True, lowering=_col2im_numba)


def col2im(cols, shape, kernel_size, dilation, padding, stride):
    """The adjoint of im2col: columns (C·kh·kw, L·N) summed back into an image ``shape``."""
    return apply(_col2im_op, cols, shape=tuple(shape), kernel_size=kernel_size,
                 dilation=dilation, padding=padding, stride=stride)


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
    cols = apply(_im2col_op, input, kernel_size=k, dilation=d, padding=p, stride=s)
    return transpose(reshape(cols, (c * k[0] * k[1], oh * ow, n)), (2, 0, 1))


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
    cols = reshape(transpose(input, (1, 2, 0)), (shape[1], shape[2] * shape[0]))
    return col2im(cols, (shape[0], shape[1] // (k[0] * k[1])) + size, k, d, p, s)


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
    cols = apply(_im2col_op, input, kernel_size=k, dilation=d, padding=p, stride=s)
    if groups == 1:
        y = matmul(reshape(weight, (co, cg * kh * kw)), cols)             # (C_out, L·N)
    else:
        y = matmul(reshape(weight, (groups, co // groups, cg * kh * kw)),
                   reshape(cols, (groups, cg * kh * kw, oh * ow * n)))   # (G, C_out/G, L·N)
    y = transpose(reshape(y, (co, oh, ow, n)), (3, 0, 1, 2))               # (N, C_out, oh, ow)
    return _with_bias(y, bias, who, co)


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
    x = reshape(transpose(input, (1, 2, 3, 0)), (c, h * w * n))          # (C_in, L·N)
    if groups == 1:
        cols = matmul(transpose(reshape(weight, (c, kk))), x)             # (C_out·kh·kw, L·N)
    else:
        wg = swapaxes(reshape(weight, (groups, c // groups, kk)), -1, -2)
        cols = reshape(matmul(wg, reshape(x, (groups, c // groups, h * w * n))),
                       (co * kh * kw, h * w * n))
    y = col2im(cols, (n, co) + size, k, d, p, s)
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


def _batch_last(a) -> bool:
    """Whether a (N, C, H, W) array is stored batch-innermost, as conv2d's results are
    (views of im2col's layout, kept by the elementwise ops after them)."""
    return a.shape[0] > 1 and a.transpose(1, 2, 3, 0).flags.c_contiguous


def _spatial(a, batch_last):
    """(N, C, H, W) as (B, H, W, B') without a copy in either layout: (C, H, W, N) for a
    batch-last array, else (N·C, H, W, 1); NumPy then runs over its long rows."""
    if batch_last:
        return a.transpose(1, 2, 3, 0)
    return a.reshape(a.shape[0] * a.shape[1], a.shape[2], a.shape[3], 1)


def _unspatial(b, n, c, batch_last):
    return b.transpose(3, 0, 1, 2) if batch_last else b.reshape((n, c) + b.shape[1:3])


# The pooling ops run over the kernel offsets: kh·kw vectorised passes over strided window
# views of the (padded) input, no fancy indexing. Their geometry is (kernel_size, stride,
# padding, dilation, out_size); "argmax" is the kernel offset (0 .. kh·kw-1, row-major) of
# each window's first maximum.

def _far(size, kernel_size, stride, padding, dilation, out_size):
    """How far the last windows reach past the padded input (ceil_mode's overhang)."""
    return [max(0, (o - 1) * s + d * (k - 1) + 1 - (m + 2 * p))
            for o, s, d, k, m, p in zip(out_size, stride, dilation, kernel_size, size, padding)]


def _pool_windows(x, kernel_size, stride, padding, dilation, out_size, fill, batch_last):
    """``window(k)``: the (B, oh, ow, B') view (see _spatial) of x's entry at kernel offset k
    of every window, x padded with ``fill`` (the padding and ceil_mode's overhang)."""
    (ph, pw), kw = padding, kernel_size[1]
    far = _far(x.shape[2:], kernel_size, stride, padding, dilation, out_size)
    xs = _spatial(x, batch_last)
    if ph or pw or any(far):
        xs = np.pad(xs, ((0, 0), (ph, ph + far[0]), (pw, pw + far[1]), (0, 0)),
                    constant_values=fill)
    return lambda k: xs[_offset_window(k // kw, k % kw, kernel_size, dilation, stride, out_size)]


def _lowest(dtype):
    """The value padding takes in a maximum: below every other."""
    return -np.inf if dtype.kind == "f" else False if dtype.kind == "b" else np.iinfo(dtype).min


def _pool_max(x, kernel_size, stride, padding, dilation, out_size):
    """Each window's maximum (a NaN wins, as PyTorch's)."""
    bl = _batch_last(x)
    window = _pool_windows(x, kernel_size, stride, padding, dilation, out_size,
                           _lowest(x.dtype), bl)
    count = kernel_size[0] * kernel_size[1]
    best = window(0).copy() if count == 1 else np.maximum(window(0), window(1))
    for k in range(2, count):
        np.maximum(best, window(k), out=best)
    return _unspatial(best, *x.shape[:2], bl)


def _first_max(window, count, nan):
    """(B, oh, ow, B') kernel offsets of the windows' first maxima (with ``nan``: the last
    NaN, as PyTorch's ``val > max || isnan(val)``), and the maxima."""
    best = window(0).copy()
    arg = np.zeros(best.shape, np.int8 if count < 128 else np.int64)
    for k in range(1, count):
        v = window(k)
        m = v > best                           # strict: ties keep the first, as PyTorch
        if nan:
            m |= np.isnan(v)
        np.maximum(best, v, out=best)
        # arg = where(m, k, arg), as max(arg, k·m) (k grows): NumPy's masked copies are ~5x
        # slower than these two passes
        np.maximum(arg, m * arg.dtype.type(k), out=arg)
    return arg, best


def _argmax_spatial(x, kernel_size, stride, padding, dilation, out_size):
    bl = _batch_last(x)
    window = _pool_windows(x, kernel_size, stride, padding, dilation, out_size,
                           _lowest(x.dtype), bl)
    count = kernel_size[0] * kernel_size[1]
    arg, best = _first_max(window, count, False)
    # a window holding a NaN has a NaN maximum: only then look for NaNs (on the maxima)
    if x.dtype.kind == "f" and np.isnan(best).any():
        arg, _ = _first_max(window, count, True)
    return arg, bl


def _pool_argmax(x, kernel_size, stride, padding, dilation, out_size):
    if type(x) is not np.ndarray:
        return _xp_pool_argmax(namespace(x), x, kernel_size, stride, padding, dilation, out_size)
    arg, bl = _argmax_spatial(x, kernel_size, stride, padding, dilation, out_size)
    return _unspatial(arg, *x.shape[:2], bl)


def _max_pool_indices(x, kernel_size, stride, padding, dilation, out_size):
    """For each window the flat index (into H·W) of its first maximum: PyTorch's
    return_indices."""
    if type(x) is not np.ndarray:
        xp = namespace(x)
        arg = _xp_pool_argmax(xp, x, kernel_size, stride, padding, dilation, out_size)
        origin, offset = (xp.asarray(t, device=device(x)) for t in _window_tables(
            x.shape[3], kernel_size, stride, padding, dilation, out_size))
        return origin + xp.reshape(xp.take(offset, xp.reshape(arg, (-1,))), arg.shape)
    arg, bl = _argmax_spatial(x, kernel_size, stride, padding, dilation, out_size)
    origin, offset = _window_tables(x.shape[3], kernel_size, stride, padding, dilation, out_size)
    return _unspatial(origin[:, :, None] + np.take(offset, arg), *x.shape[:2], bl)


def _window_tables(w, kernel_size, stride, padding, dilation, out_size):
    """The flat index (into H·W) of each window's origin, (oh, ow), and of each kernel
    offset from it, (kh·kw,): an argmax's flat index is their sum (a table lookup: NumPy's
    integer // and % are far slower)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    origin = (np.arange(out_size[0]) * sh - ph)[:, None] * w + (np.arange(out_size[1]) * sw - pw)
    offset = np.array([(k // kw) * dh * w + (k % kw) * dw for k in range(kh * kw)])
    return origin, offset


def _tiles(shape, kernel_size, stride, padding, dilation, out_size):
    """Whether the windows tile the input: each entry in exactly one window."""
    return tuple(padding) == (0, 0) and all(
        s == k and (k == 1 or d == 1) and o * s == n
        for k, s, d, o, n in zip(kernel_size, stride, dilation, out_size, shape[2:]))


def _pool_gather(x, arg, kernel_size, stride, padding, dilation, out_size):
    """x at each window's offset ``arg``: the maxima, for arg = max_pool2d_argmax(x)."""
    if type(x) is not np.ndarray:
        return _xp_pool_gather(namespace(x, arg), x, arg, kernel_size, stride, padding,
                               dilation, out_size)
    bl = _batch_last(arg)
    window = _pool_windows(x, kernel_size, stride, padding, dilation, out_size, 0, bl)
    ks = _spatial(arg, bl)
    out = np.zeros(ks.shape, x.dtype)
    exact = x.dtype.kind != "f" or np.isfinite(x).all()
    for k in range(kernel_size[0] * kernel_size[1]):
        if exact:         # x·1 and x·0 by a multiply: np.where is ~10x slower
            out += window(k) * (ks == k)
        else:             # an inf or NaN times the 0 of an offset not taken would be NaN
            out = np.where(ks == k, window(k), out)
    return _unspatial(out, *arg.shape[:2], bl)


def _pool_scatter(g, arg, shape, kernel_size, stride, padding, dilation, out_size):
    """zeros(shape) with each window's g added at its offset ``arg`` (max pooling's VJP)."""
    if type(g) is not np.ndarray:
        return _xp_pool_scatter(namespace(g, arg), g, arg, shape, kernel_size, stride, padding,
                                dilation, out_size)
    (kh, kw), (ph, pw), (h, w) = kernel_size, padding, shape[2:]
    bl = _batch_last(arg)          # x's layout, which the input gradient then keeps
    gs, ks = _spatial(g, bl), _spatial(arg, bl)
    far = _far(shape[2:], kernel_size, stride, padding, dilation, out_size)
    b1, b2 = gs.shape[0], gs.shape[3]
    size = (b1, h + 2 * ph + far[0], w + 2 * pw + far[1], b2)
    tiles = _tiles(shape, kernel_size, stride, padding, dilation, out_size)
    out = np.empty(size, g.dtype) if tiles else np.zeros(size, g.dtype)
    exact = g.dtype.kind != "f" or np.isfinite(g).all()
    for k in range(kh * kw):
        view = out[_offset_window(k // kw, k % kw, kernel_size, dilation, stride, out_size)]
        if exact and tiles:         # each entry written once, by one multiply into its view
            np.multiply(gs, ks == k, out=view)
            continue
        # (an inf or NaN times the 0 of an offset not taken would be NaN: np.where)
        part = gs * (ks == k) if exact else np.where(ks == k, gs, g.dtype.type(0))
        if tiles:
            view[...] = part
        else:                       # overlapping windows add up
            view += part
    return _unspatial(out[:, ph:ph + h, pw:pw + w], *shape[:2], bl)


# the same in the standard's words, on the (N·C, H, W, 1) layout

def _xp_windows(xp, x, kernel_size, stride, padding, dilation, out_size, fill):
    (ph, pw), kw = padding, kernel_size[1]
    n, c, h, w = x.shape
    far = _far((h, w), kernel_size, stride, padding, dilation, out_size)
    xs = _xp_pad_hw(xp, xp.reshape(x, (n * c, h, w, 1)), (ph, ph + far[0]), (pw, pw + far[1]),
                    fill)
    return lambda k: xs[_offset_window(k // kw, k % kw, kernel_size, dilation, stride, out_size)]


def _xp_lowest(xp, dtype):
    return -math.inf if kind(dtype) == "f" else int(xp.iinfo(dtype).min)


def _xp_pool_max(xp, x, kernel_size, stride, padding, dilation, out_size):
    window = _xp_windows(xp, x, kernel_size, stride, padding, dilation, out_size,
                         _xp_lowest(xp, x.dtype))
    best = window(0)
    for k in range(1, kernel_size[0] * kernel_size[1]):
        best = xp.maximum(best, window(k))
    return xp.reshape(best, x.shape[:2] + tuple(out_size))


def _xp_pool_argmax(xp, x, kernel_size, stride, padding, dilation, out_size):
    floating = kind(x.dtype) == "f"
    window = _xp_windows(xp, x, kernel_size, stride, padding, dilation, out_size,
                         _xp_lowest(xp, x.dtype))
    count = kernel_size[0] * kernel_size[1]
    best = window(0)
    arg = xp.zeros(best.shape, dtype=xp.int8 if count < 128 else xp.int64, device=device(x))
    for k in range(1, count):
        v = window(k)
        m = v > best                           # strict: ties keep the first, as PyTorch
        if floating:
            m = xp.logical_or(m, xp.isnan(v))
        best = xp.maximum(best, v)
        arg = xp.where(m, xp.asarray(k, dtype=arg.dtype, device=device(x)), arg)
    return xp.reshape(arg, x.shape[:2] + tuple(out_size))


def _xp_pool_gather(xp, x, arg, kernel_size, stride, padding, dilation, out_size):
    window = _xp_windows(xp, x, kernel_size, stride, padding, dilation, out_size, 0)
    ks = xp.reshape(arg, window(0).shape)
    out = window(0)
    for k in range(1, kernel_size[0] * kernel_size[1]):
        out = xp.where(ks == k, window(k), out)
    return xp.reshape(out, arg.shape)


def _xp_pool_scatter(xp, g, arg, shape, kernel_size, stride, padding, dilation, out_size):
    """Each kernel offset's share added into its window slices (item assignment of
    slices, as _xp_col2im)."""
    (kh, kw), (ph, pw) = kernel_size, padding
    n, c, h, w = shape
    far = _far((h, w), kernel_size, stride, padding, dilation, out_size)
    gs = xp.reshape(g, (n * c,) + tuple(out_size) + (1,))
    ks = xp.reshape(arg, gs.shape)
    zero = xp.zeros((), dtype=g.dtype, device=device(g))
    out = xp.zeros((n * c, h + 2 * ph + far[0], w + 2 * pw + far[1], 1), dtype=g.dtype,
                   device=device(g))
    for k in range(kh * kw):
        window = _offset_window(k // kw, k % kw, kernel_size, dilation, stride, out_size)
        out[window] = out[window] + xp.where(ks == k, gs, zero)
    return xp.reshape(out[:, ph:ph + h, pw:pw + w, :], tuple(shape))


def _pool_max_forward(x, **geo):
    if type(x) is not np.ndarray:
        return _xp_pool_max(namespace(x), x, **geo)
    return _pool_max(x, **geo)


# ---------------------------------------------------------------- max pooling's Numba forms
#
# One pass over the windows where NumPy makes kh·kw passes with temporaries. B5's first
# pooling (bench/bench.py): max 0.045 ms against NumPy's 0.072, argmax 0.043 against
# 0.137, the scatter 0.052 against 0.112.
# Padding and ceil_mode's overhang are skipped (the NumPy forms' -inf is never taken).

def _tap(i, j, u, v, stride, padding, dilation, h, w):
    """The pixel (row, column) that kernel offset (u, v) of window (i, j) reads, or
    (-1, -1) where it lies in the padding or the overhang."""
    r = i * stride[0] - padding[0] + u * dilation[0]
    col = j * stride[1] - padding[1] + v * dilation[1]
    return (r, col) if 0 <= r < h and 0 <= col < w else (-1, -1)


def _pool_first_max(x, kernel_size, stride, padding, dilation, best, arg):
    """best[b, c, i, j]: window (i, j)'s maximum (a NaN wins), arg: the kernel offset of
    its first maximum (of its last NaN where it holds one, as the NumPy form)."""
    xt, bt, at = _chwn(x), _chwn(best), _chwn(arg)
    c, h, w, n = xt.shape
    kh, kw = kernel_size
    for ch in range(c):
        for i in range(bt.shape[1]):
            for j in range(bt.shape[2]):
                bo, ao = bt[ch, i, j], at[ch, i, j]
                bo[:] = -np.inf
                ao[:] = 0
                for u in range(kh):
                    for v in range(kw):
                        r, col = _tap(i, j, u, v, stride, padding, dilation, h, w)
                        if r < 0:
                            continue
                        xr, k = xt[ch, r, col], ao.dtype.type(u * kw + v)
                        for t in range(n):
                            # branch-free (LLVM vectorises it): a branch on which value
                            # wins is mispredicted on every other element of real data
                            # (14x slower on B5's pooling, 2-core EPYC)
                            e, m, a = xr[t], bo[t], ao[t]
                            take = ao.dtype.type(e > m) | ao.dtype.type(e != e)
                            ao[t] = a + take * (k - a)
                            wins = e if e > m else m
                            bo[t] = e if e != e else wins
    _put_back(bt, best)
    _put_back(at, arg)


def _pool_max_numba(x, kernel_size, stride, padding, dilation, out_size, out):
    """_pool_max."""
    _pool_first_max(x, kernel_size, stride, padding, dilation, out,     # (offsets unread:
                    _chwn_empty(out.shape, np.int8))                      # int8 may wrap)
    return out


def _pool_argmax_numba(x, kernel_size, stride, padding, dilation, out_size, out):
    """_pool_argmax."""
    _pool_first_max(x, kernel_size, stride, padding, dilation,
                    _chwn_empty(out.shape, x.dtype), out)
    return out


def _pool_scatter_numba(g, arg, shape, kernel_size, stride, padding, dilation, out_size, out):
    """_pool_scatter."""
    gt, at, ot = _chwn(g), _chwn(arg), _chwn(out)
    c, oh, ow, n = gt.shape
    h, w = ot.shape[1], ot.shape[2]
    kh, kw = kernel_size
    ot[:] = 0
    for ch in range(c):
        for i in range(oh):
            for j in range(ow):
                gr, ar = gt[ch, i, j], at[ch, i, j]
                for u in range(kh):
                    for v in range(kw):
                        r, col = _tap(i, j, u, v, stride, padding, dilation, h, w)
                        if r < 0:
                            continue
                        orow, k = ot[ch, r, col], ar.dtype.type(u * kw + v)
                        for t in range(n):      # a select, not a branch (_pool_first_max)
                            d = gr[t]
                            orow[t] += d if ar[t] == k else gr.dtype.type(0)
    _put_back(ot, out)
    return out


for _form in (_pool_max_numba, _pool_argmax_numba, _pool_scatter_numba):
    _form.helpers = ("_pool_first_max", "_tap", "_chwn", "_chwn_empty", "_put_back")
    _form.layout = (1, 2, 3, 0)     # lowered for batch-last images only: on C-order ones
    # NumPy's passes are faster than these loops' copies (0.135 ms against 0.167, B5's pool)
    _form.replaces_loop = True      # of kh·kw NumPy passes: 'auto' picks Numba for it
_pool_argmax_numba.int_output = True      # the offsets: int8 (int64 past 127 offsets)
_pool_scatter_numba.int_inputs = (1,)


# max_pool2d's VJP scatters g to each window's first maximum; pool_scatter's VJP is
# pool_gather at the same offsets and pool_gather's pool_scatter: differentiable to any order
_max_op = defop("max_pool2d", _pool_max_forward, (
    lambda g, out, x, kernel_size, stride, padding, dilation, out_size: pool_scatter(
        g, apply(_argmax_op, x, kernel_size=kernel_size, stride=stride, padding=padding,
                 dilation=dilation, out_size=out_size),
        x.shape, kernel_size, stride, padding, dilation, out_size),), reads=((0,),), fresh=True,
    lowering=_pool_max_numba)
_argmax_op = defop("max_pool2d_argmax", _pool_argmax, fresh=True, lowering=_pool_argmax_numba)
_indices_op = defop("max_pool2d_indices", _max_pool_indices, fresh=True)
_gather_op = defop("pool_gather", _pool_gather, (
    lambda g, out, x, arg, kernel_size, stride, padding, dilation, out_size: pool_scatter(
        g, arg, x.shape, kernel_size, stride, padding, dilation, out_size), None),
    reads=((1,), ()), fresh=True)
_scatter_op = defop("pool_scatter", _pool_scatter, (
    lambda g, out, gg, arg, shape, kernel_size, stride, padding, dilation, out_size: apply(
        _gather_op, g, arg, kernel_size=kernel_size, stride=stride, padding=padding,
        dilation=dilation, out_size=out_size), None),
    reads=((1,), ()), fresh=True, lowering=_pool_scatter_numba)


def pool_scatter(g, arg, shape, kernel_size, stride, padding, dilation, out_size):
    """zeros(shape) with each window's g (N, C, oh, ow) added at its kernel offset ``arg``
    (max_pool2d_argmax): the VJP of max pooling."""
    return apply(_scatter_op, g, arg, shape=tuple(shape), kernel_size=kernel_size,
                 stride=stride, padding=padding, dilation=dilation, out_size=out_size)


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
    geo = dict(kernel_size=k, stride=s, padding=p, dilation=d,
               out_size=_pool_size(who, (h, w), k, s, p, d, ceil_mode))
    out = apply(_max_op, input, **geo)
    return (out, apply(_indices_op, input, **geo)) if return_indices else out


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
        cols = apply(_im2col_op, input, kernel_size=k, dilation=(1, 1), padding=p, stride=s)
        total = transpose(_sum(reshape(cols, (c, k[0] * k[1], oh, ow, n)), axis=1), (3, 0, 1, 2))
    if divisor_override is not None:
        return total * (1.0 / divisor_override)
    if count_include_pad or p == (0, 0):
        return total * (1.0 / (k[0] * k[1]))
    ones = np.ones((1, 1, h, w), _shape_dtype(input))
    counts = _im2col(ones, k, (1, 1), p, s).sum(axis=0).reshape(1, 1, oh, ow)
    return total / counts


def _shape_dtype(x):
    """The NumPy dtype of the constant matrices of a resampling of x (another library's
    dtype by its name: they join x's namespace when applied)."""
    dt = x.dtype if isinstance(x, Tensor) else np.asarray(x).dtype
    if kind(dt) != "f":
        return np.dtype(np.float32)
    return dt if isinstance(dt, np.dtype) else np.dtype(str(dt).rsplit(".", 1)[-1])


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
