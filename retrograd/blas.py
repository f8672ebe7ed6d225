"""How many BLAS threads a training run uses.

OpenBLAS splits all but the smallest matrix products across every core (the default
net's 32x784 @ 784x100 runs 1.6x faster on two threads of an idle 2-core VM). On a
machine whose cores are busy with other work, a worker thread that is not scheduled
stalls the whole product for a time slice (milliseconds), so a 0.07 ms product can take
many times longer: with two busy processes on a 2-core VM, the default ``retrograd
train`` took 10.8 to 39.8 s with OpenBLAS's threads and 2.5 to 2.8 s with one
(``bench/blas_threads.py``). Threads pay only when each gets far more work than a time
slice, so ``fit`` gives a product one thread per ``WORK_PER_THREAD`` multiply-adds, and
leaves BLAS alone when that is all of them.

Override: ``fit(blas_threads=N)`` (or None: leave BLAS as it is), or the environment
variable ``RETROGRAD_BLAS_THREADS`` = ``auto`` (the default), ``none`` or a positive
integer. A thread count the user gave BLAS itself (``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ...) is respected.
"""
from __future__ import annotations

import contextlib
import os

from .errors import RetrogradError

ENV = "RETROGRAD_BLAS_THREADS"
# variables through which a user sets the BLAS threads; "auto" then changes nothing
BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
            "VECLIB_MAXIMUM_THREADS")
# ~1.5 ms of float32 multiply-adds on one core of a 2-core AMD EPYC VM (45 GFLOP/s):
# well above a scheduler time slice's worth of waiting for a descheduled worker
WORK_PER_THREAD = 2 ** 26
# OpenBLAS's gemm runs a product of fewer multiply-adds on one thread whatever it is set
# to (interface/gemm.c: SMP_THRESHOLD_MIN 65536 x GEMM_MULTITHREAD_THRESHOLD 4)
OPENBLAS_ONE_THREAD = 65536 * 4


def threads_for(work: int, available: int) -> int:
    """BLAS threads for products of ``work`` multiply-adds with ``available`` threads."""
    return max(1, min(available, int(work) // WORK_PER_THREAD))


def product_work(model, batch: int) -> int:
    """Multiply-adds of the largest product of a step: batch x each 2-D weight's size
    (x @ W in forward, and the two products of its backward, are all this size)."""
    sizes = [p.data.size for p in model.parameters() if p.data.ndim == 2]
    return batch * max(sizes, default=0)


def requested_threads(blas_threads):
    """The request, as "auto", None or an int, from the argument or the environment."""
    if isinstance(blas_threads, str) and blas_threads == "auto":
        text = os.environ.get(ENV, "auto").strip().lower()
        if text in ("auto", ""):
            return "auto"
        if text == "none":
            return None
        if not text.isdigit() or int(text) < 1:
            raise RetrogradError(f"{ENV} must be auto, none or a positive integer, "
                                 f"got {os.environ[ENV]!r}")
        return int(text)
    if blas_threads is None:
        return None
    if isinstance(blas_threads, bool) or not isinstance(blas_threads, int) or blas_threads < 1:
        raise RetrogradError(f"fit: blas_threads must be 'auto', None or a positive int, "
                             f"got {blas_threads!r}")
    return blas_threads


def limit(blas_threads, work: int):
    """A context in which BLAS uses the threads ``blas_threads`` asks for ("auto":
    ``threads_for(work, ...)``); leaves BLAS alone where nothing needs changing."""
    want = requested_threads(blas_threads)
    if want is None or (want == "auto" and any(os.environ.get(v) for v in BLAS_ENV)):
        return contextlib.nullcontext()
    # threadpoolctl is a dependency (pure Python, no dependencies of its own) because the
    # default command's speed depends on it; without it (an install with --no-deps) the
    # run still works, at BLAS's own threading.
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    if want == "auto":
        have = max((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"),
                   default=1)
        want = threads_for(work, have)
        if want >= have:
            return contextlib.nullcontext()
    return threadpool_limits(want, user_api="blas")


class _Pinned:
    """BLAS at ``threads`` while a compiled program runs, then back to what it had: two
    C calls per library each way (~5 us in all), made only for a program whose products
    ``threads_for`` gives fewer threads than BLAS has (a threadpoolctl context costs ~13 us
    and its threadpool_info a full library scan)."""

    def __init__(self, libs, threads):
        self.libs, self.threads, self.old = libs, threads, ()

    def __enter__(self):
        self.old = [lc.get_num_threads() for lc in self.libs]
        for lc in self.libs:
            lc.set_num_threads(self.threads)

    def __exit__(self, *exc):
        for lc, n in zip(self.libs, self.old):
            lc.set_num_threads(n)


def pinned(work: int):
    """A reusable context for running a compiled program's products (at most ``work``
    multiply-adds) on the threads $RETROGRAD_BLAS_THREADS names, or None: BLAS left as it
    is. Only a number set there pins them: under "auto" a compiled program keeps BLAS's
    own threads -- on the quiet 2-core VM B1's compiled step took 2.13 ms pinned to the one
    thread ``threads_for`` gives it and 1.28 ms on OpenBLAS's two (``bench/bench.py --cases
    B1``); ``fit`` limits the threads itself while it trains, where contention is likelier."""
    want = requested_threads("auto")
    if not isinstance(want, int):
        return None
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    if work < OPENBLAS_ONE_THREAD:
        return None                      # OpenBLAS runs these on one thread itself
    libs = ThreadpoolController().select(user_api="blas").lib_controllers
    have = max((lc.num_threads for lc in libs), default=1)
    return _Pinned(libs, want) if libs and want != have else None


def scipy_single(work: int):
    """A context keeping SciPy's own OpenBLAS -- the BLAS of Numba's np.dot -- on one thread
    while a Numba program whose products take up to ``work`` multiply-adds runs, or None
    (none loaded, the threads set by the user, or products OpenBLAS runs on one thread
    anyway: the pinning's ~4 us were 4 % of B2's step). Its
    products are small (numba_backend sends those from 2^20 multiply-adds to NumPy's
    matmul), and its two threads beside NumPy's OpenBLAS pool on two cores fought it: B6's
    Numba step took 38.8 ms against 14 pinned (bench/bench.py --cases B6)."""
    if (requested_threads("auto") != "auto" or any(os.environ.get(v) for v in BLAS_ENV)
            or work < OPENBLAS_ONE_THREAD):
        return None
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    libs = [lc for lc in ThreadpoolController().select(user_api="blas").lib_controllers
            if "scipy.libs" in lc.filepath.replace(os.sep, "/") and lc.num_threads > 1]
    return _Pinned(libs, 1) if libs else None
