#!/usr/bin/env python
"""Three measurements behind README's note on B5's batch-last loops, on this machine, over
B5's first activations ((N, C, H, W) = (64, 6, 24, 24), laid out (C, H, W, N)):

1. A fused bias-add-ReLU loop as the Numba backend generates it, indexing the (N, C, H, W)
   view (Numba types it 'A': every index goes through the strides) against indexing the
   C-contiguous (C, H, W, N) array it is a transpose of (what the backend now does).
2. The bias gradient's sum over (N, H, W) with one running sum against 8 lanes.
3. A window argmax loop that branches on the winner against one of selects, and the
   pooling ops' Numba forms (ops/conv.py, selects) against their NumPy forms.

    python bench/batch_last.py          # needs numba (pip install -e '.[fast]')
"""
import time

import numba
import numpy as np

from retrograd.native.numba_helpers import loop_form
from retrograd.ops import conv

_jit = numba.njit(error_model="numpy", nogil=True)


@_jit
def relu_view(x, b, o):
    for i1 in range(6):
        for i2 in range(24):
            for i3 in range(24):
                for i0 in range(64):
                    t = np.float32(x[i0, i1, i2, i3] + b[i1, 0, 0])
                    o[i0, i1, i2, i3] = np.float32(t if t > 0 or t != t else 0.0)


@_jit
def relu_transpose(x, b, o):
    for i1 in range(6):
        for i2 in range(24):
            for i3 in range(24):
                for i0 in range(64):
                    t = np.float32(x[i1, i2, i3, i0] + b[i1, 0, 0])
                    o[i1, i2, i3, i0] = np.float32(t if t > 0 or t != t else 0.0)


@_jit
def sum_one_chain(x):
    r = np.zeros(6)
    for i1 in range(6):
        for i2 in range(24):
            for i3 in range(24):
                for i0 in range(64):
                    r[i1] += x[i1, i2, i3, i0]
    return r


@_jit
def sum_lanes(x):
    # as the backend writes it (_Segment._lanes): 8 scalar partial sums, folded pairwise
    r = np.zeros(6)
    for i1 in range(6):
        for i2 in range(24):
            for i3 in range(24):
                q0 = q1 = q2 = q3 = q4 = q5 = q6 = q7 = 0.0
                for j in range(0, 64, 8):
                    q0 += x[i1, i2, i3, j]
                    q1 += x[i1, i2, i3, j + 1]
                    q2 += x[i1, i2, i3, j + 2]
                    q3 += x[i1, i2, i3, j + 3]
                    q4 += x[i1, i2, i3, j + 4]
                    q5 += x[i1, i2, i3, j + 5]
                    q6 += x[i1, i2, i3, j + 6]
                    q7 += x[i1, i2, i3, j + 7]
                r[i1] += ((q0 + q1) + (q2 + q3)) + ((q4 + q5) + (q6 + q7))
    return r


@_jit
def argmax_branch(x, best, arg):
    """The 2x2 windows' first maxima, the winner taken by a branch (the forms before)."""
    for c in range(6):
        for i in range(12):
            for j in range(12):
                best[c, i, j] = -np.inf
                arg[c, i, j] = 0
                for k in range(4):
                    xr = x[c, 2 * i + k // 2, 2 * j + k % 2]
                    for t in range(64):
                        if xr[t] > best[c, i, j, t] or xr[t] != xr[t]:
                            best[c, i, j, t] = xr[t]
                            arg[c, i, j, t] = k


@_jit
def argmax_select(x, best, arg):
    """The same with selects and an integer blend (the forms now)."""
    for c in range(6):
        for i in range(12):
            for j in range(12):
                best[c, i, j] = -np.inf
                arg[c, i, j] = 0
                for k in range(4):
                    xr, kk = x[c, 2 * i + k // 2, 2 * j + k % 2], np.int8(k)
                    for t in range(64):
                        e, m, a = xr[t], best[c, i, j, t], arg[c, i, j, t]
                        take = np.int8(e > m) | np.int8(e != e)
                        arg[c, i, j, t] = a + take * (kk - a)
                        wins = e if e > m else m
                        best[c, i, j, t] = e if e != e else wins


def _us(f, n=200, blocks=7):
    """min µs per call over ``blocks`` blocks of n calls (after one warm-up call)."""
    f()
    best = float("inf")
    for _ in range(blocks):
        t = time.perf_counter()
        for _ in range(n):
            f()
        best = min(best, (time.perf_counter() - t) / n * 1e6)
    return best


def main():
    rng = np.random.default_rng(0)
    stored = rng.standard_normal((6, 24, 24, 64), dtype=np.float32)
    x = stored.transpose(3, 0, 1, 2)                      # (N, C, H, W), batch-last
    b = rng.standard_normal((6, 1, 1), dtype=np.float32)
    out = np.empty_like(stored)
    print("bias-add-ReLU loop (us): over the view "
          f"{_us(lambda: relu_view(x, b, out.transpose(3, 0, 1, 2))):.0f}, "
          f"over its C-contiguous transpose {_us(lambda: relu_transpose(stored, b, out)):.0f}")
    print(f"sum over (N, H, W) (us): one running sum {_us(lambda: sum_one_chain(stored)):.0f}, "
          f"8 lanes {_us(lambda: sum_lanes(stored)):.0f}, "
          f"NumPy {_us(lambda: x.sum(axis=(0, 2, 3))):.0f}")
    b8, a8 = np.empty((6, 12, 12, 64), np.float32), np.empty((6, 12, 12, 64), np.int8)
    print("2x2 window argmax loop (us): a branch "
          f"{_us(lambda: argmax_branch(stored, b8, a8)):.0f}, "
          f"selects {_us(lambda: argmax_select(stored, b8, a8)):.0f}")
    geo = dict(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1),
               out_size=(12, 12))
    arg = np.empty((6, 12, 12, 64), np.int8).transpose(3, 0, 1, 2)
    best = np.empty((6, 12, 12, 64), np.float32).transpose(3, 0, 1, 2)
    g = rng.standard_normal((6, 12, 12, 64), dtype=np.float32).transpose(3, 0, 1, 2)
    grad = np.empty_like(stored).transpose(3, 0, 1, 2)
    forms = {name: loop_form("retrograd.ops.conv", f"_{name}_numba")
             for name in ("pool_max", "pool_argmax", "pool_scatter")}
    forms["pool_argmax"](x, out=arg, **geo)
    rows = {"max": (lambda: forms["pool_max"](x, out=best, **geo),
                    lambda: conv._pool_max(x, **geo)),
            "argmax": (lambda: forms["pool_argmax"](x, out=arg, **geo),
                       lambda: conv._pool_argmax(x, **geo)),
            "scatter": (lambda: forms["pool_scatter"](g, arg, shape=x.shape, out=grad, **geo),
                        lambda: conv._pool_scatter(g, arg, shape=x.shape, **geo))}
    print("2x2 max pooling (us, Numba form / NumPy form): " + ", ".join(
        f"{k} {_us(a):.0f} / {_us(b):.0f}" for k, (a, b) in rows.items()))


if __name__ == "__main__":
    main()
