"""The fit loop: minibatch training with progress, metrics, early stopping,
learning-rate schedules, checkpoints (every ``save_every`` epochs) and exact resume.

Model selection and early stopping watch a validation set held out of the training
data (``validation_split``), never the test set. A NaN or infinite loss or weight
stops training with ``TrainingDiverged`` before anything of that epoch is saved.

Batch, minibatch and online learning (seed 001 §3.3, seed 002) are the same
loop with ``batch_size`` = the whole set, k, or 1.

Interrupting: while ``fit`` runs (in the main thread), SIGINT (Ctrl-C) and SIGTERM
only raise a flag; the loop stops at the next batch boundary, where the model and
the optimizer are consistent, writes a checkpoint of that exact point (with the
position in the epoch and every random state) and raises ``TrainingInterrupted``, a
``KeyboardInterrupt``. ``resume`` then continues to the same result as an
uninterrupted run. A second signal stops at once; the checkpoint on disk is then
the last one written (an epoch's end, or an earlier interruption point).
"""
from __future__ import annotations

import json
import math
import os
import signal
import threading
import time

import numpy as np

from . import arrays, blas, io
from .data import ArrayDataset, DataLoader
from .errors import RetrogradError
from .tensor import Tensor, as_tensor, default_generator, no_grad

__all__ = ["fit", "evaluate", "predict", "accuracy", "validation_split", "History",
           "TrainingInterrupted", "TrainingDiverged"]

CHECKPOINT = "last.npz"
BEST = "best.npz"
HISTORY = "history.json"
MIN_IMPROVEMENT = 1e-4   # relative; what counts as a better loss for early stopping
VALIDATION_FRACTION = 0.1


def validation_split(x, y, fraction: float = VALIDATION_FRACTION, seed: int = 0):
    """``((x_train, y_train), (x_val, y_val))``: ``fraction`` of the rows, drawn by a
    permutation from ``seed``, held out for validation (model selection and early
    stopping; the test split is never looked at while training). With too few rows
    to hold out even one (fewer than 10 at 10 %), the validation part is None."""
    n = len(x)
    k = int(n * fraction)
    if k == 0:
        return (x, y), None
    perm = np.random.default_rng(seed).permutation(n)
    return (x[perm[k:]], y[perm[k:]]), (x[perm[:k]], y[perm[:k]])


def _json_safe(value):
    """NaN and infinities are not JSON: they become null (as Python's json cannot
    otherwise be read back by strict parsers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class History(list):
    """One dict per epoch: epoch, train_loss, train_acc, val_loss, val_acc (on the
    validation set, when there is one), lr, seconds. In JSON non-finite numbers are null."""

    def to_json(self, path):
        """One row a line. fit rewrites the file at every save, so each row is encoded
        once and kept (the rewrite is a join, not a re-encoding of the whole run)."""
        cache = self.__dict__.setdefault("_encoded", [])
        del cache[next((i for i, (row, _) in enumerate(cache)
                        if i >= len(self) or row is not self[i]), len(cache)):]
        for row in self[len(cache):]:
            cache.append((row, json.dumps(_json_safe(row), allow_nan=False)))
        with io.atomic_write(path, "w") as f:
            f.write("[\n" + ",\n".join(text for _, text in cache) + "\n]\n" if cache else "[]\n")

    def to_csv(self, path):
        keys = list(self[0]) if self else []
        with io.atomic_write(path, "w") as f:
            f.write(",".join(keys) + "\n")
            for row in self:
                f.write(",".join("" if row.get(k) is None else str(row.get(k)) for k in keys) + "\n")

    def column(self, key):
        return [row.get(key) for row in self]


def accuracy(output, target) -> float:
    """Fraction correct: argmax for several outputs (integer labels or one-hot rows);
    for a single output, > 0.5 (probabilities) against 0/1 targets."""
    out = np.asarray(output)
    t = np.asarray(target)
    if out.ndim == 2 and out.shape[1] > 1:
        pred = out.argmax(axis=1)
        truth = t.argmax(axis=1) if t.ndim == 2 else t
    else:
        pred = (out.reshape(len(out), -1)[:, 0] > 0.5).astype(np.int64)
        truth = t.reshape(len(t), -1)[:, 0].round().astype(np.int64)
    return float((pred == truth).mean()) if len(pred) else math.nan


def _is_classification(target) -> bool:
    t = np.asarray(target)
    return t.dtype.kind in "iu" or (t.ndim == 2 and t.shape[1] > 1) or (
        t.dtype.kind == "f" and t.size and np.all((t == 0) | (t == 1)))


def predict(model, x, batch_size: int = 1000) -> np.ndarray:
    """Model outputs for ``x`` (eval mode, no graph), as an ndarray of shape (n, k).
    One unbatched row (shape ``(features,)``) is a batch of one: the result is (1, k)."""
    x = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    was = model.training
    model.eval()
    try:
        with no_grad():
            outs = [model(as_tensor(x[i:i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was)
    return np.concatenate(outs) if outs else np.zeros((0,))


def evaluate(model, loss_fn, x, y, batch_size: int = 1000) -> dict:
    """{"loss", "accuracy"} over a whole data set (accuracy only for classification)."""
    out = predict(model, x, batch_size)
    with no_grad():
        loss = float(loss_fn(as_tensor(out), y).item()) if len(x) else math.nan
    acc = accuracy(out, y) if _is_classification(y) else None
    return {"loss": loss, "accuracy": acc}


def _progress(iterable, total, desc, enabled, initial=0):
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:            # tqdm is a dependency, but the loop must not need it
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, unit="batch", dynamic_ncols=True,
                initial=initial)


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped ``fit``. A ``KeyboardInterrupt``, so it stops a script
    as Ctrl-C always did; the message says what the checkpoint holds.

    signum: the signal (``signal.SIGINT`` / ``signal.SIGTERM``); epoch: the epoch that
    was running; batch: batches of it finished; batches: batches per epoch;
    checkpoint: the path of ``last.npz`` (None without out_dir); saved: what that file
    holds, ``(epoch, batch)`` -- ``batch`` 0 is the end of ``epoch`` -- or None;
    exact: True when the checkpoint is the point where training stopped;
    history: the History so far (completed epochs).
    """

    def __init__(self, signum, epoch, batch, batches, checkpoint, saved, exact, history):
        self.signum, self.epoch, self.batch, self.batches = signum, epoch, batch, batches
        self.checkpoint, self.saved, self.exact, self.history = checkpoint, saved, exact, history
        super().__init__(self.describe())

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except (TypeError, ValueError):
            return "an interrupt"

    def describe(self) -> str:
        """One sentence: the signal, where training stopped, what the checkpoint holds."""
        if self.batch >= self.batches:
            where = f"after epoch {self.epoch}"
        elif self.batch == 0:
            where = f"at the start of epoch {self.epoch}"
        else:
            where = f"in epoch {self.epoch} after batch {self.batch} of {self.batches}"
        head = f"interrupted by {self.signal_name} {where}"
        if self.checkpoint is None:
            return head + " (no out_dir: nothing saved)"
        if self.exact:
            return f"{head}; {self.checkpoint} holds that point"
        if self.saved is None:
            return f"{head}; stopped before any checkpoint was written"
        e, b = self.saved
        held = f"epoch {e}" if b == 0 else f"epoch {e + 1} up to batch {b}"
        return f"{head} (stopped at once); {self.checkpoint} holds {held}"


class TrainingDiverged(RetrogradError):
    """The loss, the validation loss or a parameter became NaN or infinite. Nothing of
    that epoch was saved: ``checkpoint`` (None without out_dir) still holds ``saved``
    (``(epoch, batch)`` as in TrainingInterrupted, or None); history: the finite epochs."""

    def __init__(self, epoch, what, checkpoint, saved, history):
        self.epoch, self.checkpoint, self.saved, self.history = epoch, checkpoint, saved, history
        if checkpoint is None:
            kept = "nothing was saved (no out_dir)"
        elif saved is None:
            kept = "no checkpoint had been written yet"
        else:
            e, b = saved
            kept = f"{checkpoint} holds epoch {e}" if b == 0 else \
                f"{checkpoint} holds epoch {e + 1} up to batch {b}"
        super().__init__(f"training diverged in epoch {epoch}: {what}; nothing of it was saved "
                         f"and {kept}; lower the learning rate or check the data")


class _StopSignals:
    """For the duration of ``fit``: SIGINT and SIGTERM set ``received`` instead of
    interrupting, so the loop can stop between steps with a consistent model. A second
    signal raises KeyboardInterrupt at once. Only in the main thread (the only place
    Python can install handlers); signals that are ignored (e.g. SIGINT of a background
    job) stay ignored; the previous handlers come back on exit."""

    def __init__(self, deferred=False):
        self.received = None
        # data-parallel: a signal is only ``pending`` until the ranks agree on it (at the
        # same batch boundary on every rank; see _Run._agree_on_stop)
        self.deferred, self.pending = deferred, None
        self._old = {}

    def _handler(self, signum, frame):
        if self.received is None and self.pending is None:
            if self.deferred:
                self.pending = signum
            else:
                self.received = signum
            return
        raise KeyboardInterrupt                   # a second signal: stop now

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
            if sig is None:
                continue
            try:
                old = signal.getsignal(sig)
                if old is None or old == signal.SIG_IGN:
                    continue
                signal.signal(sig, self._handler)
            except (ValueError, OSError):
                continue
            self._old[sig] = old
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
        return False


def fit(model, loss_fn, optimizer, train, val=None, *, epochs: int = 10, batch_size=32,
        shuffle: bool = True, seed: int = 0, scheduler=None, early_stopping: int | None = None,
        out_dir=None, resume=False, progress: bool = True, log=print, step=None,
        meta=None, compile: bool = True, save_every: int = 1, save_interval: float = 0.0,
        resume_lr=None, blas_threads="auto", augment=None, distributed=None, backend="auto",
        verbose=False) -> History:
    """Train ``model`` on ``train = (x, y)`` and return the History.

    batch_size: 1 (online), k (minibatch) or "full"/None (batch learning).
    val: ``(x, y)`` for model selection (``best.npz``) and early stopping; without it
        the training loss is monitored. Never the test set (see ``validation_split``).
    early_stopping: stop after this many epochs without a better validation loss
        (training loss when there is no validation set).
    out_dir: where ``last.npz``, ``best.npz`` and ``history.json`` go, every
        ``save_every`` epochs and after the last one (and at an interruption).
        The checkpoint holds no history (that is history.json's job), so saving stays
        cheap however long the run. save_interval: skip a due save when the last one was
        less than this many seconds ago (fsync costs milliseconds; a run of 2,000 tiny
        epochs should not spend them all on disk); the last epoch, an interruption and
        early stopping always save.
    resume: True to continue from ``out_dir/last.npz``, or a checkpoint path. The model,
        optimizer, scheduler, shuffling and dropout random state, early-stopping
        state and the position inside an interrupted epoch are restored, so the run ends
        exactly as an uninterrupted one would; the history comes from the history.json
        beside the checkpoint.
    step: optional ``step(xb, yb) -> (loss, output)`` doing forward, backward and update.
    compile: when no step is given, run each step as one compiled call
        (rg.graph.compile_step; the same numbers as eager up to float rounding), or, with
        False, eagerly: forward, loss.backward(), optimizer.step().
    backend: how a compiled step runs: "numpy", "numba", or "auto" (RETROGRAD_BACKEND if
        set; else Numba for a run of >= 10k steps whose program has many small nodes that
        it lowers, NumPy otherwise: see graph.numba_backend.choose and for_run).
    verbose: log the compiled step's backend and its first call's time (trace + compile).
    meta: a JSON-like dict stored in every checkpoint (e.g. the model's configuration).
    resume_lr: with resume, a new learning rate for every parameter group in place of
        the checkpoint's (without a scheduler: a schedule's state was built on the old one).
    blas_threads: BLAS threads while training: "auto" (one per 2**26 multiply-adds of the
        largest product, unless RETROGRAD_BLAS_THREADS or OMP/OPENBLAS_NUM_THREADS say
        otherwise; see retrograd.blas), a positive int, or None to leave BLAS as it is.
    augment: optional ``augment(x, rng) -> x`` applied to the inputs of each training
        batch (an ndarray) before the step, e.g. ``lambda x, rng: random_shift(x, 2, rng,
        (28, 28))`` (retrograd.data). ``rng`` is retrograd's global generator
        (``rg.manual_seed``), which checkpoints hold, so a resumed run draws the same
        augmentations as an uninterrupted one; validation and test data are not augmented.
    distributed: None (automatic) trains data-parallel when ``rg.distributed.init()``
        joined a world of several MPI ranks, False never. ``batch_size`` is then the global
        batch: each rank steps on its slice (rg.distributed.DataParallel), only rank 0
        logs and writes out_dir, and every rank reads the checkpoint to resume from.

    A NaN or infinite loss, validation loss or parameter raises ``TrainingDiverged``
    before anything of that epoch is saved: the checkpoints on disk stay the last finite ones.
    SIGINT (Ctrl-C) or SIGTERM while fit runs in the main thread: training stops at the
    next batch boundary, ``last.npz`` gets that exact point (with out_dir), and
    ``TrainingInterrupted`` (a KeyboardInterrupt) is raised; see its ``describe()``.
    """
    x_train, y_train = train
    dataset = _checked_data(train, val, save_every)
    world = _world(distributed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, seed=seed,
                        shard=world and (world.rank, world.size))
    run = _Run(model, loss_fn, optimizer, scheduler, loader, val, _is_classification(y_train),
               epochs=epochs, early_stopping=early_stopping, out_dir=out_dir,
               progress=progress, log=log, meta=meta, save_every=save_every,
               save_interval=save_interval, augment=augment, world=world)
    if resume:
        run.resume(resume, resume_lr)
    run.choose_step(step, compile, backend, verbose)
    stop = run.stop = _StopSignals(deferred=world is not None)
    threads = blas.limit(blas_threads, blas.product_work(
        model, min(loader.batch_size, len(x_train)) // (world.size if world else 1) or 1))
    with stop, threads:
        try:
            for run.epoch in range(run.start, epochs + 1):
                if run.patience_spent():
                    break
                run.run_epoch()
                run.end_epoch()
            run.finish()
        except TrainingInterrupted:
            raise
        except KeyboardInterrupt:            # a second signal, or Ctrl-C outside the handler
            if stop.received is None:
                stop.received = signal.SIGINT
            raise run.interrupted(exact=False, at_once=True) from None
        finally:
            run.close_bar()
    return run.history


def _world(distributed):
    """The MPI world to train data-parallel in, or None (one process). Looks only at
    whether rg.distributed was imported and initialised: a plain run pays nothing."""
    import sys
    mod = sys.modules.get(__package__ + ".distributed")
    return mod.active() if distributed is not False and mod is not None else None


def _checked_data(train, val, save_every):
    """The training set as an ArrayDataset, after refusing what fit cannot train on."""
    dataset = ArrayDataset(*train)
    if len(dataset) == 0:
        raise RetrogradError("fit: the training set is empty (0 rows); there is nothing to "
                             "learn from")
    if val is not None and len(ArrayDataset(*val)) == 0:
        raise RetrogradError("fit: the validation set is empty (0 rows); pass val=None to "
                             "monitor the training loss instead")
    if isinstance(save_every, bool) or not isinstance(save_every, int) or save_every < 1:
        raise RetrogradError(f"fit: save_every must be a positive number of epochs, got "
                             f"{save_every!r}")
    return dataset


class _Run:
    """The state of one ``fit``: where training is (epoch, batch b and the sums of the
    epoch so far), the early-stopping state, and what ``last.npz`` holds (``saved``).
    ``fit`` drives it: resume, then per epoch ``run_epoch`` (the batches) and
    ``end_epoch`` (validation, history, best, schedule, saving), then ``finish``."""

    def __init__(self, model, loss_fn, optimizer, scheduler, loader, val, classify, *, epochs,
                 early_stopping, out_dir, progress, log, meta, save_every, save_interval,
                 augment=None, world=None):
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.scheduler, self.loader, self.val, self.epochs = scheduler, loader, val, epochs
        self.early_stopping = early_stopping
        self.out_dir, self.progress, self.log, self.meta = out_dir, progress, log, meta
        self.save_every, self.save_interval = save_every, save_interval
        self.classify, self.augment = classify, augment
        self.history = History()
        self.start, self.best, self.bad_epochs = 1, math.inf, 0
        self.partial = None        # the position inside an interrupted epoch, when resuming
        self.last_path = os.path.join(out_dir, CHECKPOINT) if out_dir else None
        self.saved = None          # (epoch, batch) that last.npz holds; batch 0 = epoch's end
        self.best_pending = None   # best.npz's content, written at the next save
        self.last_save = time.monotonic()
        self.epoch, self.b, self.bar, self.stop, self.step = 1, 0, None, None, None
        self.place = None          # moves a batch to the model's namespace (Module.to)
        self.t0 = self.epoch_rng = None
        self.total, self.seen, self.correct = 0.0, 0, 0
        self.world = world         # the MPI world of a data-parallel run (rg.distributed)
        if world is not None and world.rank:
            self.log, self.progress = None, False         # rank 0 speaks for all

    # ------------------------------------------------------------ before the loop
    def resume(self, resume, resume_lr):
        """Restore the run from ``resume`` (True: out_dir/last.npz, or a path)."""
        path = resume if isinstance(resume, (str, os.PathLike)) else self.last_path
        if path is None:
            raise RetrogradError("fit(resume=True) needs out_dir (or pass the checkpoint path)")
        ck = io.load(path)
        _restore(ck, path, self.model, self.optimizer, self.scheduler, self.loader)
        self.history = History(_resumed_history(ck, path, self.log))
        self.start, self.best, self.bad_epochs = ck["epoch"] + 1, ck["best"], ck["bad_epochs"]
        self.epoch = self.start
        partial = self.partial = ck.get("partial")
        if partial is not None and not 0 < partial["batch"] < len(self.loader):
            raise io.CheckpointError(
                f"{path}: was written after batch {partial['batch']} of epoch {self.start}, but "
                f"an epoch now has {len(self.loader)} batches; resume with the same data and "
                "batch size")
        self.saved = (ck["epoch"], partial["batch"] if partial else 0)
        if partial is not None and self.world is not None and self.world.rank:
            # the sums are the ranks' together (rank 0 carries them on)
            partial.update(total=0.0, seen=0, correct=0)
        if self.log:
            self.log(f"resumed from {path} after epoch {ck['epoch']}" + (
                f" and batch {partial['batch']} of epoch {self.start}" if partial else ""))
        if resume_lr is not None:
            self._replace_lr(resume_lr)

    def _replace_lr(self, lr):
        if self.scheduler is not None:
            raise RetrogradError("fit: resume_lr cannot replace the learning rate of a run "
                                 "with a scheduler (its state was built on the old one)")
        old = self.optimizer.param_groups[0]["lr"]
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.log and lr != old:
            self.log(f"learning rate {lr:g} replaces the checkpoint's {old:g}")

    def choose_step(self, step, compile, backend="auto", verbose=False):
        if step is not None and self.world is not None and not hasattr(step, "global_rows"):
            # its gradients would stay this rank's: the ranks would drift apart, silently
            raise RetrogradError("fit: in a data-parallel run (rg.distributed) the step must "
                                 "sum the ranks' gradients: pass an rg.distributed.DataParallel "
                                 "step, or distributed=False")
        if step is None and self.world is not None:
            from . import distributed
            distributed.check_same("model and data", _signature(self.model, self.loader))
            step = distributed.DataParallel(self.model, self.loss_fn, self.optimizer, compile)
        placed = _model_namespace(self.model)
        if placed is not None:
            # a model moved to another array namespace (Module.to: CuPy on a GPU...) trains
            # with the eager step, which computes in that namespace; compiled steps are
            # generated NumPy code and refuse it. Batches are moved there once per step.
            xp, on = placed
            self.place = lambda t: Tensor(arrays.to_namespace(t.data, xp, on))
            if step is None and compile and self.log:
                name = arrays.name_of(self.model.parameters()[0].data)
                self.log(f"fit: the model computes in {name}: training with the eager step "
                         "(compiled steps are NumPy-only)")
            compile = False
        if step is None and compile:
            from .graph import compile_step
            from .graph.numba_backend import for_run
            backend = for_run(backend, self.epochs * len(self.loader))
            step = compile_step(self.model, self.loss_fn, self.optimizer, backend=backend)
            if verbose and self.log:
                step = _timed_first_call(step, self.log)
        self.step = step if step is not None else self._eager_step

    def _eager_step(self, xb, yb):
        out = self.model(xb)
        loss = self.loss_fn(out, yb)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss, out

    # ------------------------------------------------------------ one epoch
    def patience_spent(self) -> bool:
        """Early stopping: True (after saying so) when the patience has run out."""
        if self.early_stopping is None or self.bad_epochs < self.early_stopping:
            return False
        if self.log:
            self.log(f"stopped early at epoch {self.epoch - 1}: no better "
                     f"{'validation' if self.val is not None else 'training'} loss for "
                     f"{self.bad_epochs} epochs (best {self.best:.4g})")
        return True

    def run_epoch(self):
        """The batches of ``self.epoch`` (those after an interruption point, on resume)."""
        self.t0 = time.perf_counter()
        self.model.train()
        self.epoch_rng = self.loader.generator_state()   # this epoch's order is drawn from it
        self.total, self.seen, self.correct, self.b = 0.0, 0, 0, 0
        batches = iter(self.loader)
        if self.partial is not None:
            self._skip_done(batches)
        bar = self.bar = _progress(batches, len(self.loader), f"epoch {self.epoch}/{self.epochs}",
                                   self.progress, self.b)
        world = self.world
        for xb, yb in bar:
            if world is not None:
                self._agree_on_stop()
                self.step.global_rows = self.loader.global_rows(self.b)
            if self.stop.received is not None:       # stop between steps, consistently
                self._stop_in_epoch()
            self._batch(xb, yb)
            if bar is not batches and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{self.total / self.seen:.4f}", refresh=False)
        if hasattr(bar, "close"):
            bar.close()

    def _agree_on_stop(self):
        """A signal that reached any rank stops every rank at the same point: it counts
        (``stop.received``) once the ranks have agreed on it, here."""
        from . import distributed
        stop = self.stop
        flag = np.array([int(stop.pending or stop.received or 0)], np.int32)
        got = int(distributed.allreduce_(flag, "agreeing on a stop", "max")[0])
        if got and stop.received is None:
            stop.received = got

    def _reduce_sums(self):
        """The epoch's loss and accuracy sums over every rank's rows (at its end, or
        before saving a point inside it), the same on every rank."""
        from . import distributed
        sums = distributed.allreduce_(np.array([self.total, self.seen, self.correct],
                                               np.float64), "summing the epoch's loss")
        self.total, self.seen, self.correct = float(sums[0]), int(sums[1]), float(sums[2])

    def _skip_done(self, batches):
        """Resuming inside an epoch: skip what ran before the interruption."""
        p, self.partial = self.partial, None
        self.b = p["batch"]
        self.total, self.seen, self.correct = p["total"], p["seen"], p["correct"]
        self.t0 -= p["seconds"]
        for _ in range(self.b):
            next(batches)

    def _batch(self, xb, yb):
        if self.augment is not None:
            xb = as_tensor(self.augment(xb.numpy(), default_generator()))
        if self.place is not None:
            xb, yb = self.place(xb), self.place(yb)
        loss, out = self.step(xb, yb)
        n = len(xb)
        if n == 0:                # data-parallel: an uneven last batch left this rank none
            self.b += 1
            return
        lv = float(loss.item())
        if not math.isfinite(lv):
            raise self.diverged(f"the loss of batch {self.b + 1} is {lv}")
        self.total += lv * n
        self.seen += n
        if self.classify:
            self.correct += accuracy(out.numpy(), yb.numpy()) * n
        self.b += 1

    def _stop_in_epoch(self):
        """A signal arrived: save the point before batch ``b`` and raise."""
        epoch, b = self.epoch, self.b
        # the start of an epoch is the end of the previous one, which save_every may
        # have left unsaved
        if self.world is not None:
            self._reduce_sums()
        if self.out_dir and self.saved != (epoch - 1, b) and (b > 0 or epoch > 1):
            self.save(epoch - 1, self.epoch_rng, {
                "batch": b, "total": self.total, "seen": self.seen, "correct": self.correct,
                "seconds": round(time.perf_counter() - self.t0, 4)} if b else None)
        raise self.interrupted(exact=self.out_dir is not None and self.saved == (epoch - 1, b))

    # ------------------------------------------------------------ the end of an epoch
    def end_epoch(self):
        """Validation, the history row, best/last selection, the schedule, the log line,
        saving when due, and stopping here when a signal arrived during the epoch."""
        row = self._row()
        self.history.append(row)
        monitored = row.get("val_loss", row["train_loss"])
        self._select(monitored)
        if self.scheduler is not None:
            if hasattr(self.scheduler, "best"):      # ReduceLROnPlateau watches the metric
                self.scheduler.step(monitored)
            else:
                self.scheduler.step()
        if self.log:
            self.log(_format_row(row, self.epochs))
        if self.world is not None:
            self._agree_on_stop()
        epoch, signalled = self.epoch, self.stop.received is not None
        due = epoch % self.save_every == 0 and \
            time.monotonic() - self.last_save >= self.save_interval
        if self.out_dir and (due or epoch == self.epochs or signalled):
            self.save(epoch, self.loader.generator_state(), None)
        if signalled:
            self.b = len(self.loader)
            raise self.interrupted(exact=self.out_dir is not None)

    def _row(self):
        """This epoch's history row; TrainingDiverged for a non-finite weight or val loss."""
        if self.world is not None:          # every rank's rows; the same row on every rank
            self._reduce_sums()
        seen = max(self.seen, 1)
        row = {"epoch": self.epoch, "train_loss": self.total / seen,
               "train_acc": (self.correct / seen) if self.classify else None}
        bad = _non_finite_parameter(self.model)
        if bad is not None:
            raise self.diverged(f"parameter {bad} is no longer finite")
        if self.val is not None:
            ev = evaluate(self.model, self.loss_fn, *self.val)
            if not math.isfinite(ev["loss"]):
                raise self.diverged(f"the validation loss is {ev['loss']}")
            row["val_loss"], row["val_acc"] = ev["loss"], ev["accuracy"]
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        row["seconds"] = round(time.perf_counter() - self.t0, 4)
        return row

    def _select(self, monitored):
        """Early-stopping state, and best.npz's content when this epoch is the best."""
        best = self.best
        # noise is no progress
        if best == math.inf or monitored < best - MIN_IMPROVEMENT * abs(best):
            self.best, self.bad_epochs = monitored, 0
            if self.out_dir:                 # a copy: training goes on changing the weights
                self.best_pending = {"model": {k: np.array(v) for k, v in
                                               self.model.state_dict().items()},
                                     "epoch": self.epoch, "meta": self.meta}
        else:
            self.bad_epochs += 1

    def finish(self):
        """After the loop: save what early stopping or save_every left unsaved, and stop
        with TrainingInterrupted when a signal arrived as early stopping ended the loop."""
        done = self.history[-1]["epoch"] if self.history else self.start - 1
        if self.world is not None:
            self._agree_on_stop()
        if self.out_dir and self.history and self.saved != (done, 0):
            self.save(done, self.loader.generator_state(), None)
        if self.stop.received is not None:
            self.epoch, self.b = done, len(self.loader)
            raise self.interrupted(exact=self.out_dir is not None)

    # ------------------------------------------------------------ saving, stopping
    def save(self, done_epochs, loader_rng, position):
        """best.npz when pending, then last.npz at ``done_epochs`` (+ ``position`` inside
        the next epoch), then history.json. In a data-parallel run only rank 0 writes
        (every rank holds the same model); the others only keep the books."""
        if self.world is not None and self.world.rank:
            self.best_pending = None
            self.saved = (done_epochs, position["batch"] if position else 0)
            self.last_save = time.monotonic()
            return
        if self.best_pending is not None:
            io.save(self.best_pending, os.path.join(self.out_dir, BEST))
            self.best_pending = None
        opt, sched = self.optimizer, self.scheduler
        io.save({"model": self.model.state_dict(), "optimizer": opt.state_dict(),
                 "optimizer_type": type(opt).__name__,
                 "scheduler": sched.state_dict() if sched is not None else None,
                 "epoch": done_epochs, "best": self.best, "bad_epochs": self.bad_epochs,
                 "loader_rng": loader_rng, "partial": position,
                 "global_rng": default_generator().bit_generator.state, "meta": self.meta},
                self.last_path)
        self.history.to_json(os.path.join(self.out_dir, HISTORY))
        self.saved = (done_epochs, position["batch"] if position else 0)
        self.last_save = time.monotonic()

    def interrupted(self, exact, at_once=False):
        e = TrainingInterrupted(self.stop.received or signal.SIGINT, self.epoch, self.b,
                                len(self.loader), self.last_path, self.saved, exact, self.history)
        e.at_once = at_once       # a second signal: not at a point the ranks agreed on
        return e

    def diverged(self, what):
        return TrainingDiverged(self.epoch, what, self.last_path, self.saved, self.history)

    def close_bar(self):
        if self.bar is not None and hasattr(self.bar, "close"):
            self.bar.close()


def _signature(model, loader):
    """What every rank of a data-parallel run must agree on: the parameters' names and
    shapes, the data's rows and shapes, the global batch size and the shuffling seed."""
    params = ", ".join(f"{k} {tuple(p.shape)}" for k, p in model.named_parameters())
    arrays = getattr(loader.dataset, "arrays", ())
    data = " and ".join(f"{a.shape[1:]} {a.dtype}" for a in arrays)
    return (f"model [{params}], {len(loader.dataset)} rows of {data}, batch "
            f"{loader.batch_size}, seed {loader.seed}")


def _model_namespace(model):
    """(namespace, device) of a model moved to another array namespace by Module.to, or
    None for a NumPy model."""
    params = model.parameters() if hasattr(model, "parameters") else []
    if params and arrays.is_foreign(params[0].data):
        return arrays.namespace(params[0].data), arrays.device(params[0].data)
    return None


def _non_finite_parameter(model):
    for name, p in model.named_parameters():
        d = p.data
        if isinstance(d, np.ndarray):
            finite = np.isfinite(d).all()
        else:
            xp = arrays.namespace(d)
            finite = bool(xp.all(xp.isfinite(d)))
        if not finite:
            return name
    return None


def _timed_first_call(step, log):
    """``step``, logging how long its first call took (the trace and the compile) and the
    backend it ran on ('auto''s choice; NumPy where Numba could not compile it)."""
    first = []

    def timed(xb, yb):
        if first:
            return step(xb, yb)
        t = time.perf_counter()
        out = step(xb, yb)
        first.append(time.perf_counter() - t)
        log(f"compiled step: {step.backend} backend, first call {first[0]:.2f}s "
            "(trace and compile)")
        return out
    return timed


def _resumed_history(ck, path, log):
    """The epochs up to the checkpoint's, from the history.json beside it (a checkpoint
    of an older version may still hold them itself)."""
    hpath = os.path.join(os.path.dirname(os.fspath(path)), HISTORY)
    if os.path.exists(hpath):
        try:
            with open(hpath, encoding="utf-8") as f:
                rows = json.load(f)
        except (OSError, ValueError) as e:
            raise io.CheckpointError(f"{hpath}: not a valid history file ({e}); fix or remove "
                                     "it to resume without the earlier epochs' history") from None
    else:
        rows = ck.get("history")
        if rows is None:
            if log and ck["epoch"]:
                log(f"note: no {hpath}; the history starts at epoch {ck['epoch'] + 1}")
            return []
    if not isinstance(rows, list) or not all(
            isinstance(r, dict) and isinstance(r.get("epoch"), int) for r in rows):
        raise io.CheckpointError(f"{hpath}: not a valid history file (expected a list of "
                                 "per-epoch dicts with an integer epoch); fix or remove it")
    return [r for r in rows if r["epoch"] <= ck["epoch"]]


def _kind(v):
    """What a hyperparameter is, for comparing a checkpoint's with this optimizer's."""
    if isinstance(v, (bool, np.bool_)) or v is None or isinstance(v, str):
        return type(v).__name__ if not isinstance(v, np.bool_) else "bool"
    if io.is_number(v):
        return "number"
    if isinstance(v, (list, tuple)):
        return ("sequence", tuple(_kind(e) for e in v))
    return type(v).__name__


def _check_training_state(ck, path, optimizer):
    """The scalars and optimizer groups of a last.npz have the types this run needs
    (a crafted or foreign file is a CheckpointError, not a crash later on)."""
    def bad(what):
        return io.CheckpointError(f"{path}: {what}; not a checkpoint this run can resume from")
    if not io.is_int(ck["epoch"]) or ck["epoch"] < 0:
        raise bad(f"'epoch' is {ck['epoch']!r}, not a count of epochs")
    if not io.is_int(ck["bad_epochs"]) or ck["bad_epochs"] < 0:
        raise bad(f"'bad_epochs' is {ck['bad_epochs']!r}, not a count of epochs")
    if not io.is_number(ck["best"]) or math.isnan(ck["best"]):
        raise bad(f"'best' is {ck['best']!r}, not a loss")
    p = ck.get("partial")
    if p is not None and not (isinstance(p, dict) and io.is_int(p.get("batch"))
                              and all(io.is_number(p.get(k)) for k in ("total", "seen", "correct",
                                                                     "seconds"))):
        raise bad(f"'partial' is {p!r}, not a position inside an epoch")
    kind = ck.get("optimizer_type")
    if kind is not None and kind != type(optimizer).__name__:
        raise bad(f"it was written by a {kind} optimizer, this run uses {type(optimizer).__name__}")
    saved = ck["optimizer"]
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or not isinstance(saved.get("state"), dict) or not all(
            isinstance(g, dict) for g in groups):
        raise bad("its optimizer state is malformed")
    for i, (g, mine) in enumerate(zip(groups, optimizer.param_groups)):
        # every hyperparameter this optimizer's rule reads must be there, of its kind
        # (extra ones, such as a scheduler's initial_lr, do no harm)
        want = {k: _kind(v) for k, v in mine.items() if k != "params"}
        got = {k: _kind(g[k]) if k in g else None for k in want}
        if want != got:
            diff = sorted(k for k in want if want[k] != got[k])
            raise bad(f"its optimizer's parameter group {i} does not fit this "
                      f"{type(optimizer).__name__} (hyperparameters {', '.join(diff)})")
        if not math.isfinite(g["lr"]) or g["lr"] <= 0:
            raise bad(f"its learning rate is {g['lr']!r}")


def _restore(ck, path, model, optimizer, scheduler, loader):
    """Load a last.npz into the objects of a run; a checkpoint that does not fit them
    (another model, optimizer, or not a training checkpoint) is a CheckpointError."""
    missing = [k for k in ("model", "optimizer", "epoch", "best", "bad_epochs", "loader_rng",
                           "global_rng") if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise io.CheckpointError(f"{path}: not a training checkpoint to resume from (no "
                                 f"{', '.join(missing)}; best.npz holds only the model: resume "
                                 "from last.npz)")
    _check_training_state(ck, path, optimizer)
    try:
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        if scheduler is not None and ck.get("scheduler") is not None:
            scheduler.load_state_dict(ck["scheduler"])
        loader.set_generator_state(ck["loader_rng"])
        default_generator().bit_generator.state = ck["global_rng"]
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, RetrogradError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise io.CheckpointError(f"{path}: does not fit this run (another model, optimizer or "
                                 f"schedule?): {msg}") from None


def _format_row(row, epochs):
    parts = [f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}", f"loss {row['train_loss']:.4f}"]
    if row.get("train_acc") is not None:
        parts.append(f"acc {row['train_acc']:.4f}")
    if row.get("val_loss") is not None:
        parts.append(f"val_loss {row['val_loss']:.4f}")
    if row.get("val_acc") is not None:
        parts.append(f"val_acc {row['val_acc']:.4f}")
    parts.append(f"lr {row['lr']:.4g}")
    parts.append(f"{row['seconds']:.2f}s")
    return "  ".join(parts)
