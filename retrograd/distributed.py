"""Data-parallel training on MPI (Horovod's model): every rank computes the gradients
of its slice of each global batch, one allreduce sums them, every rank makes the same
update. ``pip install 'retrograd[mpi]'`` (mpi4py and MPICH from PyPI), then
``mpiexec -n 2 retrograd train ...`` or, in a script, ``rg.distributed.init()``
before ``rg.train.fit`` (fit then shards the data and reduces the gradients itself).

Without an MPI launcher this module runs as a world of one process and never
imports mpi4py. Collectives wait at most ``RETROGRAD_MPI_TIMEOUT`` seconds (default
60): a rank that died or hangs makes the others stop with a clear error (and
``MPI_Abort``), never a silent hang.

The numbers: the loss is a mean over the batch, so the global gradient is
``sum_r (n_r / n) g_r`` over the ranks' slices; each rank scales its gradient by
``n_r / n`` before the sum, which gives one process's gradient to float32 rounding
(also for an uneven last batch). Dropout and batch statistics are per rank (as in
PyTorch's DDP without SyncBatchNorm), so those models train alike, not bit-alike.
"""
from __future__ import annotations

import hashlib
import os
import signal
import sys
import time

import numpy as np

from .errors import RetrogradError

__all__ = ["init", "rank", "world_size", "is_main", "allreduce_gradients",
           "broadcast_parameters", "DataParallel", "sharded_loader", "check_same",
           "DistributedError", "under_mpi"]

TIMEOUT = 60.0
SPIN = 0.002      # seconds a collective is polled flat out before polling sleeps between tests
# the launchers' variables that say "this process is one rank of several"
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")


class DistributedError(RetrogradError):
    """Ranks disagree (model, data) or a collective did not complete in time."""


class _World:
    comm = None          # an mpi4py communicator, or None for a world of one
    rank, size = 0, 1
    timeout = TIMEOUT


_world = None


def under_mpi() -> bool:
    """Whether an MPI launcher started this process as one of several (cheap: the
    environment only, nothing imported)."""
    return any(os.environ.get(v, "1") not in ("", "0", "1") for v in _SIZE_VARS)


def init() -> _World:
    """Join the MPI world the launcher made (idempotent). A process not started by
    mpiexec (or started with -n 1) is a world of one and needs no mpi4py."""
    global _world
    if _world is not None:
        return _world
    w = _World()
    text = os.environ.get("RETROGRAD_MPI_TIMEOUT", "")
    try:
        w.timeout = float(text) if text else TIMEOUT
    except ValueError:
        raise DistributedError(f"RETROGRAD_MPI_TIMEOUT={text!r} is not a number of "
                               "seconds") from None
    if under_mpi():
        try:
            from mpi4py import MPI
        except ImportError:
            raise DistributedError("started by an MPI launcher, but mpi4py is not installed: "
                                   "pip install 'retrograd[mpi]'") from None
        w.comm = MPI.COMM_WORLD
        w.rank, w.size = w.comm.Get_rank(), w.comm.Get_size()
    _world = w
    return w


def rank() -> int:
    return init().rank


def world_size() -> int:
    return init().size


def is_main() -> bool:
    """Rank 0: the one that prints and writes files."""
    return init().rank == 0


def active():
    """The world when this process is one of several ranks, else None (fit's test: the
    module is imported and init() was called; nothing else is looked at)."""
    return _world if _world is not None and _world.size > 1 else None


# ------------------------------------------------------------ collectives with a deadline
def _wait(req, what):
    """Complete a non-blocking request, or abort the job after the timeout."""
    w = _world
    start = time.monotonic()
    spin, deadline = start + SPIN, start + w.timeout
    while not req.Test():             # Test drives MPICH's progress engine
        now = time.monotonic()
        if now > spin:                # a quick collective costs no sleep, a slow one no CPU
            if now > deadline:
                fail(f"rank {w.rank}: {what} did not complete within {w.timeout:g} s "
                     "(RETROGRAD_MPI_TIMEOUT): another rank died or hangs")
            time.sleep(5e-5)


def fail(message, code=1):
    """Print ``message`` (one line, stderr) and end every rank: MPI_Abort, so no rank
    is left waiting in a collective."""
    if message is not None:
        print(f"retrograd: error: {message}", file=sys.stderr, flush=True)
    w = _world
    if w is not None and w.comm is not None:
        if message is not None:
            # mpiexec relays a rank's stderr asynchronously and MPI_Abort ends the job at
            # once: on a busy machine the line was lost (a full CI run saw it empty)
            time.sleep(0.5)
        w.comm.Abort(code)
    raise SystemExit(code)


def allreduce_(buf, what="allreduce", op="sum"):
    """Sum (or max/min) ``buf`` over the ranks, in place, within the timeout."""
    w = init()
    if w.size == 1:
        return buf
    from mpi4py import MPI
    _wait(w.comm.Iallreduce(MPI.IN_PLACE, buf, op={"sum": MPI.SUM, "max": MPI.MAX,
                                                    "min": MPI.MIN}[op]), what)
    return buf


def _bcast_(buf, root, what):
    w = init()
    if w.size > 1:
        _wait(w.comm.Ibcast(buf, root=root), what)
    return buf


def barrier(what="barrier"):
    w = init()
    if w.size > 1:
        _wait(w.comm.Ibarrier(), what)


def agree(ok: bool) -> bool:
    """True when every rank says ``ok``."""
    flag = np.array([0 if ok else 1], np.int32)
    return not allreduce_(flag, "agreeing", "max")[0]


def allreduce_gradients(params, weight=None):
    """Average the ``.grad`` of ``params`` over the ranks (``weight``: this rank's share
    of the sum instead of 1/world size), one concatenated buffer per dtype."""
    w = init()
    scale = 1.0 / w.size if weight is None else weight
    with_grad = [p for p in params if p.grad is not None]
    for dt in {p.grad.dtype for p in with_grad}:
        ps = [p for p in with_grad if p.grad.dtype == dt]
        flat = np.concatenate([p.grad.data.ravel() for p in ps])
        flat *= flat.dtype.type(scale)
        allreduce_(flat, "allreduce of gradients")
        start = 0
        for p in ps:
            p.grad.data[...] = flat[start:start + p.grad.size].reshape(p.grad.shape)
            start += p.grad.size


def broadcast_parameters(model, root=0):
    """Every rank takes rank ``root``'s parameters and buffers (state_dict), in place."""
    state = model.state_dict()
    for name in sorted(state):
        a = state[name]
        if isinstance(a, np.ndarray) and a.size:
            buf = np.ascontiguousarray(a)
            _bcast_(buf, root, f"broadcast of {name}")
            if buf is not a:
                a[...] = buf


def check_same(what: str, signature: str):
    """Refuse to start when the ranks' ``signature`` (e.g. parameter shapes, data
    shapes) differ: DistributedError naming the first rank that differs from rank 0."""
    w = init()
    if w.size == 1:
        return
    digest = np.frombuffer(hashlib.sha256(signature.encode()).digest(), np.int64).copy()
    lo, hi = allreduce_(digest.copy(), f"comparing the {what}", "min"), \
        allreduce_(digest.copy(), f"comparing the {what}", "max")
    if np.array_equal(lo, hi):
        return
    texts = w.comm.allgather(signature)        # every rank is alive: it just reduced
    r = next(i for i, t in enumerate(texts) if t != texts[0])
    raise DistributedError(f"the ranks disagree on the {what}: rank 0 has {texts[0]}, "
                           f"rank {r} has {texts[r]}; every rank must run the same model on "
                           "the same data")


# ------------------------------------------------------------ data
def shard_bounds(n, rank, size):
    """This rank's rows ``[lo, hi)`` of a global batch of ``n`` rows: contiguous slices,
    sizes differing by at most one."""
    return n * rank // size, n * (rank + 1) // size


def sharded_loader(dataset, batch_size, shuffle=True, seed=0, drop_last=False):
    """A DataLoader over this rank's slice of every global batch of ``batch_size``: the
    order is drawn from ``seed`` on every rank alike (reshuffled per epoch), so N ranks
    together see exactly the batches one process sees."""
    from .data import DataLoader
    w = init()
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, seed=seed,
                      drop_last=drop_last, shard=(w.rank, w.size))


# ------------------------------------------------------------ the training step
class DataParallel:
    """``step(xb, yb) -> (loss, output)`` for this rank's slice ``xb`` of a global batch
    of ``n`` rows (``step.global_rows = n`` before the call; fit sets it): the
    gradients are scaled by this rank's share and summed over the ranks -- one
    ``Allreduce`` of each flat gradient array of the compiled step (one per parameter
    group and dtype), or of one concatenated buffer eagerly -- then the optimizer
    updates. Broadcasts rank 0's parameters at construction, so the ranks start alike.
    Not bucketed nor overlapped with the backward pass: the compiled step computes every
    gradient in one generated call, so no gradient is ready before the others, and one
    sum of the whole flat array moves the same bytes in the fewest calls.
    """

    def __init__(self, model, loss_fn, optimizer, compile=True):
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        init()
        broadcast_parameters(model)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.global_rows, self.steps, self.reduce_seconds = None, 0, 0.0
        self._fault = _test_fault()
        self.compiled = None
        if compile:
            from .graph import compile_step
            self.compiled = compile_step(model, loss_fn, optimizer, on_gradients=self._reduce)

    def _share(self, n):
        return n / self.global_rows if self.global_rows else 1.0 / _world.size

    def _reduce(self, arrays):
        """Scale by this rank's share, then one in-place sum per array."""
        t = time.perf_counter()
        share = self._share(self._rows)
        for a in arrays:
            a *= a.dtype.type(share)
            allreduce_(a, f"allreduce of gradients (step {self.steps + 1})")
        self.reduce_seconds += time.perf_counter() - t

    def __call__(self, xb, yb):
        if self._fault is not None:
            self._fault(self.steps + 1)
        n = self._rows = len(xb)
        if n == 0:                      # an uneven last batch left this rank no rows
            result = self._empty_step(xb)
        elif self.compiled is not None:
            result = self.compiled(xb, yb)
        else:
            result = self._eager(xb, yb, n)
        self.steps += 1
        return result

    def _eager(self, xb, yb, n):
        out = self.model(xb)
        loss = self.loss_fn(out, yb)
        self.optimizer.zero_grad()
        loss.backward()
        t = time.perf_counter()
        allreduce_gradients(self.params, self._share(n))
        self.reduce_seconds += time.perf_counter() - t
        self.optimizer.step()
        return loss, out

    def _empty_step(self, xb):
        """No rows: add nothing to the sum, but take part in it and in the update."""
        from .tensor import Tensor
        fused = self.compiled.fused if self.compiled is not None else None
        if fused is not None:
            fused.sync()
            arrays = [b.g for b in fused.buckets]
            for a in arrays:
                a[...] = 0
            self._reduce(arrays)
            fused.update()
        else:
            for p in self.params:
                p.grad = Tensor._make(np.zeros(p.shape, p.dtype))
            allreduce_gradients(self.params, 0.0)
            self.optimizer.step()
        return Tensor._make(np.zeros((), np.float32)), Tensor._make(np.zeros((0,), np.float32))


def _test_fault():
    """Tests only: RETROGRAD_MPI_TEST_FAULT=rank:step:kill|exit|sleep makes that rank die
    by SIGKILL, exit at once with status 17, or hang at that step, to check that the
    others stop with a clear error."""
    spec = os.environ.get("RETROGRAD_MPI_TEST_FAULT")
    if not spec:
        return None
    r, step, action = spec.split(":")
    if int(r) != _world.rank:
        return None

    def fault(k):
        if k == int(step):
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if action == "exit":
                os._exit(17)
            time.sleep(10 * _world.timeout + 60)
    return fault
