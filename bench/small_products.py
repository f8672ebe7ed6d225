#!/usr/bin/env python
"""Three measurements behind README's Benchmarks notes, on this machine:

1. OpenBLAS's g @ W.T (the backward product of a layer whose weight is stored (in, out))
   against g @ W and against g @ (a contiguous copy of W.T), on one thread, for the
   shapes of B2, B1's output layer and B6's recurrent product.
2. A fused elementwise loop as Numba runs it serially and with ``prange`` (two threads),
   alone and right after an OpenBLAS product: the two thread pools share the cores.
3. B2's products in Numba code (numba_blas.gemm): the register tiles of
   native/numba_tiles.py against the same call through BLAS, on one thread.
4. B3's products and B6's per-step ones, one at a time, hot in cache, on BLAS's own
   threads: their GFLOP/s outside a training step, against a 2048^3 product's, in NumPy
   and (where torch is installed) in PyTorch, whose x86 wheels bring their own BLAS.

    python bench/small_products.py          # needs numba (pip install -e '.[fast]')
"""
import os
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


def tiled_products():
    import numba
    from retrograd.native import numba_blas
    from retrograd.native.numba_helpers import dot
    blas = numba.njit(lambda a, b, c: numba_blas._blas(a, b, c))
    rng = np.random.default_rng(0)
    h, g, w = (rng.standard_normal(s, dtype=np.float32) for s in ((32, 64), (32, 64), (64, 64)))
    print("B2's (32, 64) products in compiled code, one thread (us: min / median)")
    with threadpool_limits(1, user_api="blas"):
        for what, a, b in [("forward h @ W", h, w), ("backward h.T @ g", h.T, g),
                           ("backward g @ W.T", g, w.T)]:
            out = np.empty((a.shape[0], b.shape[1]), np.float32)
            dot(a, b, out), blas(a, b, out)
            tiles, plain = _us(lambda: dot(a, b, out)), _us(lambda: blas(a, b, out))
            print(f"  {what} {a.shape} @ {b.shape}: tiles {tiles[0]:.2f} / {tiles[1]:.2f}, "
                  f"BLAS {plain[0]:.2f} / {plain[1]:.2f}")


def large_products():
    """B3's products and B6's per-step ones: NumPy's BLAS, and PyTorch's (its own BLAS:
    MKL on x86) on the same operands where torch is installed."""
    try:
        import torch
        torch.set_num_threads(os.cpu_count())
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    h1, g2 = (rng.standard_normal((256, 1024), dtype=np.float32) for _ in range(2))
    x, g1 = rng.standard_normal((256, 784), dtype=np.float32), h1
    w1 = rng.standard_normal((784, 1024), dtype=np.float32)
    w2 = rng.standard_normal((1024, 1024), dtype=np.float32)
    h, d = rng.standard_normal((32, 128), dtype=np.float32), rng.standard_normal((32, 512), dtype=np.float32)
    w_hh = rng.standard_normal((128, 512), dtype=np.float32)
    big = rng.standard_normal((2048, 2048), dtype=np.float32)
    print("products alone, BLAS's own threads (GFLOP/s of the best of 10 blocks: NumPy"
          + (", PyTorch)" if torch else ")"))
    for what, a, b in [("B3 x @ W1", x, w1), ("B3 h1 @ W2", h1, w2), ("B3 g2 @ W2.T", g2, w2.T),
                       ("B3 h1.T @ g2", h1.T, g2), ("B3 x.T @ g1", x.T, g1),
                       ("B6 h @ W_hh", h, w_hh), ("B6 d @ W_hh.T", d, np.ascontiguousarray(w_hh.T)),
                       ("2048^3", big, big)]:
        out = np.empty((a.shape[0], b.shape[1]), np.float32)
        n = 10 if what == "2048^3" else 50 if what.startswith("B3") else 2000
        flop = 2 * a.shape[0] * a.shape[1] * b.shape[1] / 1e3
        rates = [flop / _us(lambda: np.matmul(a, b, out=out), n)[0]]
        if torch is not None:
            ta, tb, to = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
            rates.append(flop / _us(lambda: torch.matmul(ta, tb, out=to), n)[0])
        print(f"  {what} {a.shape} @ {b.shape}: " + ", ".join(f"{r:.0f}" for r in rates))


if __name__ == "__main__":
    transposed_products()
    parallel_loops()
    tiled_products()
    large_products()
