"""The fit loop: minibatch training with progress, metrics, early stopping,
learning-rate schedules, a checkpoint every epoch and exact resume.

Batch, minibatch and online learning (seed 001 §3.3, seed 002) are the same
loop with ``batch_size`` = the whole set, k, or 1.
"""
from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from . import io
from .data import ArrayDataset, DataLoader
from .errors import RetrogradError
from .tensor import as_tensor, default_generator, no_grad

__all__ = ["fit", "evaluate", "predict", "accuracy", "History"]

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


def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:            # tqdm is a dependency, but the loop must not need it
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, unit="batch", dynamic_ncols=True)


def fit(model, loss_fn, optimizer, train, val=None, *, epochs: int = 10, batch_size=32,
        shuffle: bool = True, seed: int = 0, scheduler=None, early_stopping: int | None = None,
        out_dir=None, resume=False, progress: bool = True, log=print, step=None,
        meta=None, compile: bool = True) -> History:
    """Train ``model`` on ``train = (x, y)`` and return the History.

    batch_size: 1 (online), k (minibatch) or "full"/None (batch learning).
    early_stopping: stop after this many epochs without a better validation loss
        (training loss when there is no validation set).
    out_dir: where ``last.npz`` (every epoch), ``best.npz`` and ``history.json`` go.
    resume: True to continue from ``out_dir/last.npz``, or a checkpoint path. The model,
        optimizer, scheduler, shuffling and dropout random state, history and early-stopping
        state are restored, so the run ends exactly as an uninterrupted one would.
    step: optional ``step(xb, yb) -> (loss, output)`` doing forward, backward and update.
    compile: when no step is given, run each step as one compiled call
        (rg.graph.compile_step; the same numbers as eager up to float rounding), or, with
        False, eagerly: forward, loss.backward(), optimizer.step().
    meta: a JSON-like dict stored in every checkpoint (e.g. the model's configuration).
    """
    x_train, y_train = train
    loader = DataLoader(ArrayDataset(x_train, y_train), batch_size=batch_size, shuffle=shuffle,
                        seed=seed)
    classify = _is_classification(y_train)
    history = History()
    start, best, bad_epochs = 1, math.inf, 0

    if resume:
        path = resume if isinstance(resume, (str, os.PathLike)) else (
            os.path.join(out_dir, CHECKPOINT) if out_dir else None)
        if path is None:
            raise RetrogradError("fit(resume=True) needs out_dir (or pass the checkpoint path)")
        ck = io.load(path)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        if scheduler is not None and ck.get("scheduler") is not None:
            scheduler.load_state_dict(ck["scheduler"])
        loader.set_generator_state(ck["loader_rng"])
        default_generator().bit_generator.state = ck["global_rng"]
        history = History(ck["history"])
        start, best, bad_epochs = ck["epoch"] + 1, ck["best"], ck["bad_epochs"]
        if log:
            log(f"resumed from {path} after epoch {ck['epoch']}")

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

    for epoch in range(start, epochs + 1):
        if early_stopping is not None and bad_epochs >= early_stopping:
            break
        t0 = time.perf_counter()
        model.train()
        total, seen, correct = 0.0, 0, 0
        bar = _progress(loader, len(loader), f"epoch {epoch}/{epochs}", progress)
        for xb, yb in bar:
            loss, out = step(xb, yb)
            n = len(xb)
            lv = float(loss.item())
            if not math.isfinite(lv):
                raise RetrogradError(f"fit: the loss became {lv} in epoch {epoch}; lower the "
                                     "learning rate or check the data")
            total += lv * n
            seen += n
            if classify:
                correct += accuracy(out.numpy(), yb.numpy()) * n
            if bar is not loader and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
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
            io.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict() if scheduler is not None else None,
                     "epoch": epoch, "best": best, "bad_epochs": bad_epochs,
                     "loader_rng": loader.generator_state(),
                     "global_rng": default_generator().bit_generator.state,
                     "history": list(history), "meta": meta}, os.path.join(out_dir, CHECKPOINT))
            history.to_json(os.path.join(out_dir, HISTORY))
    return history


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
