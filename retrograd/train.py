"""The fit loop: minibatch training with progress, metrics, early stopping,
learning-rate schedules, a checkpoint every epoch and exact resume.

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

from . import blas, io
from .data import ArrayDataset, DataLoader
from .errors import RetrogradError
from .tensor import as_tensor, default_generator, no_grad

__all__ = ["fit", "evaluate", "predict", "accuracy", "History", "TrainingInterrupted"]

CHECKPOINT = "last.npz"
BEST = "best.npz"
HISTORY = "history.json"
MIN_IMPROVEMENT = 1e-4   # relative; what counts as a better loss for early stopping


class History(list):
    """One dict per epoch: epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds."""

    def to_json(self, path):
        with io.atomic_write(path, "w") as f:
            json.dump(list(self), f, indent=1)

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
    """Model outputs for ``x`` (eval mode, no graph), as an ndarray."""
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


class _StopSignals:
    """For the duration of ``fit``: SIGINT and SIGTERM set ``received`` instead of
    interrupting, so the loop can stop between steps with a consistent model. A second
    signal raises KeyboardInterrupt at once. Only in the main thread (the only place
    Python can install handlers); signals that are ignored (e.g. SIGINT of a background
    job) stay ignored; the previous handlers come back on exit."""

    def __init__(self):
        self.received = None
        self._old = {}

    def _handler(self, signum, frame):
        if self.received is None:
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
        meta=None, compile: bool = True, blas_threads="auto") -> History:
    """Train ``model`` on ``train = (x, y)`` and return the History.

    batch_size: 1 (online), k (minibatch) or "full"/None (batch learning).
    early_stopping: stop after this many epochs without a better validation loss
        (training loss when there is no validation set).
    out_dir: where ``last.npz`` (every epoch), ``best.npz`` and ``history.json`` go.
    resume: True to continue from ``out_dir/last.npz``, or a checkpoint path. The model,
        optimizer, scheduler, shuffling and dropout random state, history, early-stopping
        state and the position inside an interrupted epoch are restored, so the run ends
        exactly as an uninterrupted one would.
    step: optional ``step(xb, yb) -> (loss, output)`` doing forward, backward and update.
    compile: when no step is given, run each step as one compiled call
        (rg.graph.compile_step; the same numbers as eager up to float rounding), or, with
        False, eagerly: forward, loss.backward(), optimizer.step().
    meta: a JSON-like dict stored in every checkpoint (e.g. the model's configuration).
    blas_threads: BLAS threads while training: "auto" (one per 2**26 multiply-adds of the
        largest product, unless RETROGRAD_BLAS_THREADS or OMP/OPENBLAS_NUM_THREADS say
        otherwise; see retrograd.blas), a positive int, or None to leave BLAS as it is.

    SIGINT (Ctrl-C) or SIGTERM while fit runs in the main thread: training stops at the
    next batch boundary, ``last.npz`` gets that exact point (with out_dir), and
    ``TrainingInterrupted`` (a KeyboardInterrupt) is raised; see its ``describe()``.
    """
    x_train, y_train = train
    loader = DataLoader(ArrayDataset(x_train, y_train), batch_size=batch_size, shuffle=shuffle,
                        seed=seed)
    classify = _is_classification(y_train)
    history = History()
    start, best, bad_epochs = 1, math.inf, 0
    partial = None                 # the position inside an interrupted epoch, when resuming
    last_path = os.path.join(out_dir, CHECKPOINT) if out_dir else None
    saved = None                   # (epoch, batch) that last.npz holds; batch 0 = epoch's end

    if resume:
        path = resume if isinstance(resume, (str, os.PathLike)) else last_path
        if path is None:
            raise RetrogradError("fit(resume=True) needs out_dir (or pass the checkpoint path)")
        ck = io.load(path)
        _restore(ck, path, model, optimizer, scheduler, loader)
        history = History(ck["history"])
        start, best, bad_epochs = ck["epoch"] + 1, ck["best"], ck["bad_epochs"]
        partial = ck.get("partial")
        if partial is not None and not 0 < partial["batch"] < len(loader):
            raise io.CheckpointError(
                f"{path}: was written after batch {partial['batch']} of epoch {start}, but an "
                f"epoch now has {len(loader)} batches; resume with the same data and batch size")
        saved = (ck["epoch"], partial["batch"] if partial else 0)
        if log:
            log(f"resumed from {path} after epoch {ck['epoch']}" + (
                f" and batch {partial['batch']} of epoch {start}" if partial else ""))

    def eager_step(xb, yb):
        out = model(xb)
        loss = loss_fn(out, yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss, out

    if step is None:
        from .graph import compile_step
        step = compile_step(model, loss_fn, optimizer) if compile else eager_step

    def save_last(done_epochs, loader_rng, position):
        nonlocal saved
        io.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict() if scheduler is not None else None,
                 "epoch": done_epochs, "best": best, "bad_epochs": bad_epochs,
                 "loader_rng": loader_rng, "partial": position,
                 "global_rng": default_generator().bit_generator.state,
                 "history": list(history), "meta": meta}, last_path)
        saved = (done_epochs, position["batch"] if position else 0)

    stop = _StopSignals()
    epoch, b, bar = start, 0, None

    def interrupted(exact):
        return TrainingInterrupted(stop.received or signal.SIGINT, epoch, b, len(loader),
                                   last_path, saved, exact, history)

    threads = blas.limit(blas_threads,
                         blas.product_work(model, min(loader.batch_size, len(x_train))))
    with stop, threads:
        try:
            for epoch in range(start, epochs + 1):
                if early_stopping is not None and bad_epochs >= early_stopping:
                    break
                t0 = time.perf_counter()
                model.train()
                epoch_rng = loader.generator_state()     # this epoch's order is drawn from it
                total, seen, correct, b = 0.0, 0, 0, 0
                batches = iter(loader)
                if partial is not None:                  # skip what ran before the interruption
                    b = partial["batch"]
                    total, seen, correct = partial["total"], partial["seen"], partial["correct"]
                    t0 -= partial["seconds"]
                    for _ in range(b):
                        next(batches)
                    partial = None
                bar = _progress(batches, len(loader), f"epoch {epoch}/{epochs}", progress, b)
                for xb, yb in bar:
                    if stop.received is not None:       # stop between steps, consistently
                        if out_dir and b > 0:
                            save_last(epoch - 1, epoch_rng, {
                                "batch": b, "total": total, "seen": seen, "correct": correct,
                                "seconds": round(time.perf_counter() - t0, 4)})
                        raise interrupted(exact=out_dir is not None and saved == (epoch - 1, b))
                    loss, out = step(xb, yb)
                    n = len(xb)
                    lv = float(loss.item())
                    if not math.isfinite(lv):
                        raise RetrogradError(f"fit: the loss became {lv} in epoch {epoch}; lower "
                                             "the learning rate or check the data")
                    total += lv * n
                    seen += n
                    if classify:
                        correct += accuracy(out.numpy(), yb.numpy()) * n
                    b += 1
                    if bar is not batches and hasattr(bar, "set_postfix"):
                        bar.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
                if hasattr(bar, "close"):
                    bar.close()
                row = {"epoch": epoch, "train_loss": total / max(seen, 1),
                       "train_acc": (correct / max(seen, 1)) if classify else None}
                if val is not None:
                    ev = evaluate(model, loss_fn, *val)
                    row["val_loss"], row["val_acc"] = ev["loss"], ev["accuracy"]
                row["lr"] = optimizer.param_groups[0]["lr"]
                row["seconds"] = round(time.perf_counter() - t0, 4)
                history.append(row)

                monitored = row.get("val_loss", row["train_loss"])
                if best == math.inf or monitored < best - MIN_IMPROVEMENT * abs(best):   # noise is no progress
                    best, bad_epochs = monitored, 0
                    if out_dir:
                        io.save({"model": model.state_dict(), "epoch": epoch, "meta": meta},
                                os.path.join(out_dir, BEST))
                else:
                    bad_epochs += 1
                if scheduler is not None:
                    if hasattr(scheduler, "best"):         # ReduceLROnPlateau watches the metric
                        scheduler.step(monitored)
                    else:
                        scheduler.step()
                if log:
                    log(_format_row(row, epochs))
                if out_dir:
                    save_last(epoch, loader.generator_state(), None)
                    history.to_json(os.path.join(out_dir, HISTORY))
                if stop.received is not None:
                    b = len(loader)
                    raise interrupted(exact=out_dir is not None)
            if stop.received is not None:        # arrived as early stopping ended the loop
                epoch, b = (history[-1]["epoch"] if history else start - 1), len(loader)
                raise interrupted(exact=out_dir is not None)
        except TrainingInterrupted:
            raise
        except KeyboardInterrupt:            # a second signal, or Ctrl-C outside the handler
            if stop.received is None:
                stop.received = signal.SIGINT
            raise interrupted(exact=False) from None
        finally:
            if bar is not None and hasattr(bar, "close"):
                bar.close()
    return history


def _restore(ck, path, model, optimizer, scheduler, loader):
    """Load a last.npz into the objects of a run; a checkpoint that does not fit them
    (another model, optimizer, or not a training checkpoint) is a CheckpointError."""
    missing = [k for k in ("model", "optimizer", "epoch", "best", "bad_epochs", "loader_rng",
                           "global_rng", "history") if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise io.CheckpointError(f"{path}: not a training checkpoint to resume from (no "
                                 f"{', '.join(missing)}; best.npz holds only the model: resume "
                                 "from last.npz)")
    try:
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        if scheduler is not None and ck.get("scheduler") is not None:
            scheduler.load_state_dict(ck["scheduler"])
        loader.set_generator_state(ck["loader_rng"])
        default_generator().bit_generator.state = ck["global_rng"]
    except (KeyError, ValueError, TypeError, IndexError, RetrogradError) as e:
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
