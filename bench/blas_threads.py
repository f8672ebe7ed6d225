"""Time `python -m retrograd train` with BLAS's own threading and with retrograd's choice.

    python bench/blas_threads.py                      # 5 runs of each, alternating
    python bench/blas_threads.py --repeats 8 --contend 2 -- --epochs 5

Each run is a fresh process of this checkout's retrograd (PYTHONPATH = the repository)
training into a temporary folder; the two settings alternate so that a change in the
machine's load hits both alike. "blas default" runs with RETROGRAD_BLAS_THREADS=none
(OpenBLAS uses every core for every product above its small threshold); "retrograd auto"
with the variable unset (see retrograd/blas.py). --contend N starts N busy processes
for the duration, to reproduce a machine whose cores are taken by other work; it is
meant for a quiet machine, so leave it at 0 where others are already running.
Prints the wall seconds of every run, then min / median / max per setting.
"""
import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = {"blas default": "none", "retrograd auto": None}


def _spin():
    while True:
        pass


def run_once(setting, train_args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    env.pop("RETROGRAD_BLAS_THREADS", None)
    if setting is not None:
        env["RETROGRAD_BLAS_THREADS"] = setting
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "retrograd", "train", "--no-progress",
               "--out", os.path.join(tmp, "r"), *train_args]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"blas_threads.py: {' '.join(cmd)} failed: {r.stderr.strip()}")
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="runs per setting (default 5)")
    ap.add_argument("--contend", type=int, default=0, metavar="N",
                    help="busy processes to run meanwhile (default 0)")
    ap.add_argument("train_args", nargs="*", help="after --: extra arguments for retrograd train")
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var):
            print(f"note: {var}={os.environ[var]} is set, so both settings use it")
    spinners = [mp.Process(target=_spin, daemon=True) for _ in range(args.contend)]
    for p in spinners:
        p.start()
    times = {name: [] for name in SETTINGS}
    try:
        for i in range(args.repeats):
            for name, setting in SETTINGS.items():
                s = run_once(setting, args.train_args)
                times[name].append(s)
                load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
                print(f"run {i + 1}  {name:15s} {s:6.2f} s   (load {load:.2f})", flush=True)
    finally:
        for p in spinners:
            p.terminate()
    print(f"\n{os.cpu_count()} CPUs, {args.contend} busy processes, "
          f"train {' '.join(args.train_args) or '(defaults)'}; wall seconds per run:")
    for name, ts in times.items():
        print(f"  {name:15s} min {min(ts):6.2f}  median {statistics.median(ts):6.2f}  max {max(ts):6.2f}")


if __name__ == "__main__":
    main()
