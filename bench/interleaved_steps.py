#!/usr/bin/env python
"""Implementations of bench.py's cases timed in ONE process, their blocks interleaved:
on a machine others load, each block of every implementation sees the same load, so
the ratios hold where bench.py's per-process medians wander (its table is the record).

    python bench/interleaved_steps.py B1,B2,B4 retrograd.compile,retrograd.numba,jax

Prints per case the min and median ms/step of 15 blocks and the load average.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402


def main(cases, impls, blocks=15):
    for name in cases:
        case = B.CASES[name]
        data = B.make_data(case)
        runners = {}
        for impl in impls:
            runners[impl] = B.builder(impl, case)(case, data)
            for _ in range(5):
                runners[impl].step()
            runners[impl].sync()
        n = max(1, int(0.05 / _one(runners)))        # ~50 ms blocks
        times = {k: [] for k in runners}
        for _ in range(blocks):
            for k, r in runners.items():
                t = time.perf_counter()
                for _ in range(n):
                    r.step()
                r.sync()
                times[k].append((time.perf_counter() - t) / n * 1e3)
        print(name, "  ".join(f"{k}: min {min(v):.3f} med {np.median(v):.3f} ms"
                              for k, v in times.items()), f"load {os.getloadavg()[0]:.1f}",
              flush=True)


def _one(runners):
    t = time.perf_counter()
    for r in runners.values():
        r.step()
        r.sync()
    return (time.perf_counter() - t) / len(runners)


if __name__ == "__main__":
    main(sys.argv[1].split(","), (sys.argv[2] if len(sys.argv) > 2
                                  else "retrograd.compile,retrograd.numba,jax").split(","))
