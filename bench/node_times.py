#!/usr/bin/env python
"""Where a compiled step's time goes: the median time of each call in the generated
function of one of bench.py's cases (a NumPy node, or a whole Numba segment).

    python bench/node_times.py B3 retrograd.compile
    python bench/node_times.py B6 retrograd.numba --steps 50

Each call of the generated function's namespace (f<id> for a node, k<id> for a Numba
segment) is wrapped in a timer, so a call's time includes ~0.2 us of timing; lines the
generator writes inline (views, reshapes, a bias gradient's ones @ g) are not timed. The
step's own time (the optimizer's update and the Python around it included) is printed
first, then the calls, slowest first.
"""
import argparse
import collections
import gc
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402


def _executable():
    """The largest compiled program alive (the case's step or HVP)."""
    from retrograd.graph.executor import Executable
    exes = [o for o in gc.get_objects() if issubclass(type(o), Executable)]   # (type(): no
    # __class__ lookups on foreign objects, some of which warn)
    return max(exes, key=lambda e: len(e.program.nodes))


def _calls(source):
    """{name called in a line of the generated source: that line}."""
    calls = {}
    for line in source.splitlines():
        if "  # " not in line:
            continue
        rhs = line.split("= ", 1)[-1] if "= " in line else line.strip()
        calls[rhs.split("(")[0].strip()] = line.strip()
    return calls


def _instrument(exe, times):
    g = exe._fn.__globals__
    calls = _calls(exe.source)
    for name in calls:
        fn = g.get(name)
        if callable(fn):
            def timed(*a, _fn=fn, _name=name, **kw):
                t = time.perf_counter()
                out = _fn(*a, **kw)
                times[_name].append(time.perf_counter() - t)
                return out
            g[name] = timed
    return calls


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", choices=sorted(B.CASES))
    ap.add_argument("impl", choices=["retrograd.compile", "retrograd.numba"])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    case = B.CASES[args.case]
    runner = B.builder(args.impl, case)(case, B.make_data(case))
    for _ in range(3):
        runner.step()
    exe = _executable()
    times = collections.defaultdict(list)
    calls = _instrument(exe, times)
    t = time.perf_counter()
    for _ in range(args.steps):
        runner.step()
    runner.sync()
    step = (time.perf_counter() - t) / args.steps
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"{args.case} {args.impl} ({exe.backend} backend): step {step * 1e3:.3f} ms, "
          f"the timed calls {sum(med.values()) * 1e3:.3f} ms (sum of medians), "
          f"load {os.getloadavg()[0]:.1f}")
    for k, v in sorted(med.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"{v * 1e3:8.3f} ms  {calls[k][:110]}")


if __name__ == "__main__":
    main()
