#!/usr/bin/env python
"""Data-parallel steps/s on MPI: the bench's B1 and B3 on 1 and 2 ranks (one BLAS thread
per rank), with the allreduce time per step.

    python bench/mpi_bench.py                     # B1, B3 on 1 and 2 ranks
    python bench/mpi_bench.py --ranks 1,2,4 --cases B1 --blocks 5

A "step" is one compiled training step (forward, backward, plain SGD) on the GLOBAL
batch (B1: 784-100-10 tanh, 500 rows; B3: 784-1024-1024-10 ReLU, 256 rows), each rank
computing its slice and the ranks summing the flat gradient array with one Allreduce
(rg.distributed.DataParallel). Each configuration runs in a fresh ``mpiexec -n N``,
``--repeats`` times, interleaved; rank 0 times blocks of steps (the median block is a
run's steps/s), the table gives the median and the best run, and the speed-up of the
medians. "allreduce" is the mean time per step spent in the gradient sum (scaling +
MPI_Iallreduce + waiting for it, so it includes waiting for the slower rank), "bare" the
same Allreduce timed alone. On a machine shared with other work, compare the best runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = {"B1": ((784, 100, 10), "tanh", 500, 60), "B3": ((784, 1024, 1024, 10), "relu", 256, 8)}


def worker(case, blocks):
    import numpy as np
    sys.path.insert(0, ROOT)
    import retrograd as rg
    from retrograd import distributed as dist
    sizes, act, batch, steps = CASES[case]
    w = dist.init()
    rg.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], batch)
    lo, hi = dist.shard_bounds(batch, w.rank, w.size)
    xb, yb = rg.tensor(x[lo:hi]), rg.tensor(y[lo:hi])
    model = rg.nn.MLP(list(sizes), act)
    opt = rg.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = rg.nn.CrossEntropyLoss()
    if w.size > 1:
        step = dist.DataParallel(model, loss_fn, opt)
        step.global_rows = batch
    else:
        step = rg.graph.compile_step(model, loss_fn, opt)
    for _ in range(3):
        step(xb, yb)
    rates, reduce_s, n = [], 0.0, 0
    for _ in range(blocks):
        dist.barrier()
        r0 = getattr(step, "reduce_seconds", 0.0)
        t = time.perf_counter()
        for _ in range(steps):
            step(xb, yb)
        rates.append(steps / (time.perf_counter() - t))
        reduce_s += getattr(step, "reduce_seconds", 0.0) - r0
        n += steps
    bare = 0.0
    if w.size > 1:
        g = np.zeros(sum(p.size for p in model.parameters()), np.float32)
        t = time.perf_counter()
        for _ in range(20):
            dist.allreduce_(g)
        bare = (time.perf_counter() - t) / 20
    if dist.is_main():
        print(json.dumps({"case": case, "ranks": w.size, "steps_per_s": statistics.median(rates),
                          "allreduce_ms": 1e3 * reduce_s / n, "bare_allreduce_ms": 1e3 * bare,
                          "floats": int(sum(p.size for p in model.parameters()))}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--cases", default="B1,B3")
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5, help="runs of each, interleaved")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.blocks)
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep +
                           os.environ.get("PATH", ""))
    if mpiexec is None:
        sys.exit("mpi_bench: no mpiexec; pip install 'retrograd[mpi]'")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_"))}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               RETROGRAD_BLAS_THREADS="1")
    print(f"load average before: {os.getloadavg()}, {os.cpu_count()} CPUs")
    configs = [(c, int(n)) for c in args.cases.split(",") for n in args.ranks.split(",")]
    runs = {k: [] for k in configs}
    for _ in range(args.repeats):      # interleaved, so a change of load hits all alike
        for case, n in configs:
            runs[case, n].append(_one(mpiexec, env, case, n, args.blocks))
    print(f"{'case':4} {'ranks':>5} {'steps/s median':>14} {'best':>7} {'speed-up':>8} "
          f"{'allreduce ms/step':>17} {'bare allreduce ms':>17}")
    for case, n in configs:
        rs = runs[case, n]
        rate = statistics.median(r["steps_per_s"] for r in rs)
        best = max(r["steps_per_s"] for r in rs)
        base = statistics.median(r["steps_per_s"] for r in runs[case, configs[0][1]])
        print(f"{case:4} {n:>5} {rate:>14.1f} {best:>7.1f} {rate / base:>8.2f} "
              f"{statistics.median(r['allreduce_ms'] for r in rs):>17.3f} "
              f"{statistics.median(r['bare_allreduce_ms'] for r in rs):>17.3f}")
    print(f"load average after: {os.getloadavg()}")


def _one(mpiexec, env, case, n, blocks):
    cmd = [mpiexec, "-n", str(n), sys.executable, os.path.abspath(__file__),
           "--worker", case, "--blocks", str(blocks)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if out.returncode:
        sys.exit(f"mpi_bench: {case} on {n} ranks failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])

if __name__ == "__main__":
    main()
