"""retrograd on a GPU: the op-case table and B1-B3 training steps with CuPy arrays.

    python bench/gpu_check.py                      # CuPy on the first CUDA device
    python bench/gpu_check.py --xp array_api_strict  # a dry run on the CPU (what CI can do)

1. Every op case of tests/cases.py (forward, a VJP and, where the case has one, a
   Hessian-vector product, in float64) on arrays of the namespace, against NumPy
   (rg.check.namespace_check: each result must also still be an array of the namespace).
2. B1-B3 of bench/bench.py (its eager retrograd step: the same sizes, data and initial
   weights, float32; forward, backward, SGD) with the data and parameters in the namespace -- the
   step's loss and weights against the NumPy step's, then its time per step against
   PyTorch on CUDA (and retrograd on the host's NumPy for scale).

Without CuPy or a CUDA device it prints why and exits 0: nothing to check on this machine.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "tests")]

import bench  # noqa: E402  (the cases, their data and the PyTorch loss)

import retrograd as rg  # noqa: E402
from retrograd.check import namespace_check  # noqa: E402


def cuda_namespace():
    """(cupy, its device) or (None, why not)."""
    try:
        import cupy
    except ImportError:
        return None, "CuPy is not installed (pip install cupy-cuda12x)"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None, "no CUDA device"
    except Exception as e:                      # no driver: cupy raises its own error types
        return None, f"no CUDA device ({type(e).__name__}: {e})"
    return cupy, cupy.cuda.Device(0)


def namespace_of(name):
    """(xp, device, synchronize, label) for --xp, or exit 0 with the reason."""
    if name == "cupy":
        xp, dev = cuda_namespace()
        if xp is None:
            print(f"gpu_check: skipped: {dev}")
            sys.exit(0)
        return xp, None, lambda: xp.cuda.Device().synchronize(), f"CuPy {xp.__version__} on CUDA"
    if name == "array_api_strict":
        import array_api_strict as xp
        return xp, xp.Device("device1"), lambda: None, "array_api_strict (CPU dry run)"
    raise SystemExit(f"gpu_check: --xp must be cupy or array_api_strict, got {name!r}")


# ---------------------------------------------------------------- 1. the op cases

def check_ops(xp, device, names=None):
    from cases import CASES
    failed, worst = [], 0.0
    for case in CASES:
        if names and case.name not in names:
            continue
        try:
            worst = max(worst, namespace_check(case.fn, *case.inputs(seed=11), xp=xp,
                                               device=device, second_order=case.second_order))
        except Exception as e:                  # every case is reported, not just the first
            failed.append((case.name, f"{type(e).__name__}: {e}".splitlines()[0][:200]))
    n = len(names) if names else len(CASES)
    print(f"op cases: {n - len(failed)}/{n} equal NumPy's (largest relative difference "
          f"{worst:.1e})")
    for name, why in failed:
        print(f"  FAILED {name}: {why}")
    return not failed


# ---------------------------------------------------------------- 2. training steps

def torch_step(case, d):
    """bench's PyTorch step on CUDA (None without a CUDA build)."""
    try:
        import torch
    except ImportError:
        return None, "not installed"
    if not torch.cuda.is_available():
        return None, "no CUDA"
    act = torch.tanh if case.act == "tanh" else torch.relu
    X, y = torch.from_numpy(d.X).cuda(), torch.from_numpy(d.y).cuda()
    params = [torch.tensor(p, device="cuda", requires_grad=True) for p in d.params]

    def step():
        bench._torch_sgd_step(torch, bench._torch_loss(params, X, y, act), params)
    return step, torch.cuda.synchronize


def per_step(step, sync, seconds):
    """Median seconds per step of five blocks of ~seconds/5 each, after two warm-up steps."""
    for _ in range(2):
        step()
    sync()
    t0 = time.perf_counter()
    step()
    sync()
    n = max(1, int(seconds / 5 / max(time.perf_counter() - t0, 1e-6)))
    blocks = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        sync()
        blocks.append((time.perf_counter() - t0) / n)
    return float(np.median(blocks))


def check_steps(xp, device, sync, cases, seconds):
    ok = True
    for name in cases:
        try:
            ok &= check_step(xp, device, sync, name, seconds)
        except Exception as e:                  # report the case, go on with the next
            print(f"{name}: FAILED: {type(e).__name__}: {e}".splitlines()[0][:300])
            ok = False
    return ok


def check_step(xp, device, sync, name, seconds):
    """One case: the step's numbers against NumPy's, then its speed."""
    case = bench.CASES[name]
    d = bench.make_data(case)
    ref = bench.build_retrograd(case, d)                   # bench's eager step, on NumPy
    ours = bench.build_retrograd(case, d, lambda a: rg.to_namespace(a, xp, device))
    ref.step()
    ours.step()
    (l0, p0), (l1, p1) = ((s["loss"], s["params"]) for s in (ref.state(), ours.state()))
    diff = max(abs(l1 - l0) / abs(l0), *(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-30)
                                         for a, b in zip(p0, p1)))
    same = diff < 1e-4
    t_ours = per_step(ours.step, sync, seconds)
    t_host = per_step(ref.step, lambda: None, seconds)
    t_step, t_sync = torch_step(case, d)
    t_torch = per_step(t_step, t_sync, seconds) if t_step is not None else None
    torch_text = (f"{t_torch * 1e3:.3f} ms ({t_ours / t_torch:.2f}x)" if t_torch
                  else f"— ({t_sync})")
    print(f"{name} {case.desc}: one step {'equals' if same else 'DIFFERS FROM'} NumPy's "
          f"(relative {diff:.1e}); retrograd {t_ours * 1e3:.3f} ms/step, PyTorch CUDA "
          f"{torch_text}, retrograd on NumPy {t_host * 1e3:.3f} ms")
    return same


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--xp", default="cupy", help="cupy (default) or array_api_strict")
    p.add_argument("--cases", default="B1,B2,B3", help="training cases of bench/bench.py")
    p.add_argument("--ops", default=None, help="comma-separated op case names (default all)")
    p.add_argument("--no-ops", action="store_true", help="skip the op-case table")
    p.add_argument("--time", type=float, default=1.0, help="seconds timed per implementation")
    a = p.parse_args(argv)
    xp, device, sync, label = namespace_of(a.xp)
    print(f"gpu_check: retrograd {rg.__version__} with {label}")
    ok = True
    if not a.no_ops:
        ok &= check_ops(xp, device, a.ops.split(",") if a.ops else None)
    if a.cases:
        ok &= check_steps(xp, device, sync, a.cases.split(","), a.time)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
