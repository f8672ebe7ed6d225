#!/usr/bin/env python
"""A loop over x[t] (an RNN written by hand: h = tanh(x[t] @ w + h)), differentiated
eagerly and compiled, with the time per call -- the numbers behind README's notes on
getitem's in-place adjoint (``accumulate=``) and the compiler's scatter_sum fold.

    python bench/slice_loop.py                  # L = 32, 256, 1024 steps, batch 32, width 64

Eager: forward + backward of one call (min of 3). Compiled: rg.compile of the gradient
(NumPy backend), the min of 5 calls after the first (trace, compile). Each beside the way
it ran before: getitem's rule (a whole-x scatter per step) instead of its accumulate=, and
the compiler's passes without simplify (which folds the scatters).
"""
import os
import sys
import time

import numpy as np

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import retrograd as rg  # noqa: E402


def loss(x, w):
    h = rg.zeros((x.shape[1], w.shape[1]))
    for t in range(x.shape[0]):
        h = rg.tanh(x[t] @ w + h)
    return h.sum()


def _best(f, n):
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def main(steps=(32, 256, 1024)):
    rng = np.random.default_rng(0)
    w0 = (rng.standard_normal((64, 64)) * 0.1).astype(np.float32)
    getitem = rg.ops.shape._getitem
    for n in steps:
        x0 = rng.standard_normal((n, 32, 64)).astype(np.float32)

        def eager():
            x = rg.tensor(x0, requires_grad=True)
            loss(x, rg.tensor(w0, requires_grad=True)).backward()
        now = _best(eager, 3)
        accumulate, getitem.accumulate = getitem.accumulate, None     # the rule's way
        try:
            before = _best(eager, 1 if n > 256 else 3)
        finally:
            getitem.accumulate = accumulate
        timed = []
        for passes in (("fold", "simplify", "cse", "dce"), ("fold", "cse", "dce")):
            grad = rg.compile(rg.grad(loss, argnums=(0, 1)), backend="numpy", passes=passes)
            grad(x0, w0)
            timed.append(_best(lambda: grad(x0, w0), 5 if n <= 256 else 2))
        print(f"L={n:5d}  eager forward+backward {now * 1e3:7.1f} ms (by the rule "
              f"{before * 1e3:7.1f})   compiled gradient {timed[0] * 1e3:7.1f} ms a call "
              f"(unfolded {timed[1] * 1e3:7.1f})", flush=True)

if __name__ == "__main__":
    main()
