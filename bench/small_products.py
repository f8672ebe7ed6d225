#!/usr/bin/env python
"""Two measurements behind README's Benchmarks notes, on this machine:

1. OpenBLAS's g @ W.T (the backward product of a layer whose weight is stored (in, out))
   against g @ W and against g @ (a contiguous copy of W.T), on one thread, for the
   shapes of B2, B1's output layer and B6's recurrent product.
2. A fused elementwise loop as Numba runs it serially and with ``prange`` (two threads),
   alone and right after an OpenBLAS product: the two thread pools share the cores.

    python bench/small_products.py          # needs numba (pip install -e '.[fast]')
"""
import time

import numpy as np
from threadpoolctl import threadpool_limits


def _us(f, n=2000, blocks=10):
    """min and median µs per call over ``blocks`` blocks of n // blocks calls."""
    per = []
    for _ in range(blocks):
        t = time.perf_counter()
        for _ in range(n // blocks):
            f()
        per.append((time.perf_counter() - t) / (n // blocks) * 1e6)
    return min(per), float(np.median(per))


def transposed_products():
    rng = np.random.default_rng(0)
    print("g @ W.T against g @ W, one BLAS thread (us: min / median)")
    for what, (m, k, n) in {"B2 hidden layer": (32, 64, 64), "B1 output layer": (500, 100, 10),
                            "B6 recurrent": (32, 128, 512)}.items():
        g = rng.standard_normal((m, n), dtype=np.float32)
        w = rng.standard_normal((k, n), dtype=np.float32)     # g @ w.T: (m, k)
        wt = np.ascontiguousarray(w.T)
        out = np.empty((m, k), np.float32)
        with threadpool_limits(1, user_api="blas"):
            rows = {"g @ W.T (a view)": lambda: np.matmul(g, w.T, out=out),
                    "g @ W.T (contiguous)": lambda: np.matmul(g, wt, out=out),
                    "the copy of W.T": lambda: np.copyto(wt, w.T)}
            print(f"  {what} {(m, n)} @ {(n, k)}: " + ", ".join(
                f"{k_} {a:.2f} / {b:.2f}" for k_, (a, b) in ((k_, _us(f)) for k_, f in rows.items())))


def parallel_loops():
    import numba

    def relu(x, o):
        for i in numba.prange(x.shape[0]):
            for j in range(x.shape[1]):
                v = x[i, j]
                o[i, j] = v if v > 0 else np.float32(0)

    serial = numba.njit(relu)
    parallel = numba.njit(parallel=True)(relu)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 1024), dtype=np.float32)
    o = np.empty_like(x)
    a, w = x, rng.standard_normal((1024, 1024), dtype=np.float32)
    c = np.empty((256, 1024), np.float32)
    serial(x, o), parallel(x, o)
    print("a ReLU loop over (256, 1024) float32: us alone (min / median), and what it adds "
          "between two (256, 1024) @ (1024, 1024) products (median of 40 interleaved pairs)")
    for name, f in {"serial": lambda: serial(x, o), "prange": lambda: parallel(x, o)}.items():
        alone = _us(f, 500)
        added = []
        for _ in range(40):
            base = _us(lambda: (np.matmul(a, w, out=c), np.matmul(a, w, out=c)), 1, 1)[0]
            both = _us(lambda: (np.matmul(a, w, out=c), f(), np.matmul(a, w, out=c)), 1, 1)[0]
            added.append(both - base)
        print(f"  {name}: alone {alone[0]:.1f} / {alone[1]:.1f}; between products "
              f"{np.median(added):.0f}")

if __name__ == "__main__":
    transposed_products()
    parallel_loops()
