"""Training curves from a run's history (``rg.train.fit``'s History or history.json)."""
from __future__ import annotations

import json
import os

import numpy as np

from ..errors import RetrogradError
from . import _mpl

__all__ = ["load_history", "plot_history"]


def load_history(history_or_path) -> list[dict]:
    """A list of per-epoch dicts from a History/list, a history.json file, or a run folder.
    A file that is not such a list (or whose numbers are not numbers) is a RetrogradError
    naming it and the first bad entry."""
    where = "history"
    if isinstance(history_or_path, (str, os.PathLike)):
        path = where = os.fspath(history_or_path)
        if os.path.isdir(path):
            path = where = os.path.join(path, "history.json")
        if not os.path.exists(path):
            raise RetrogradError(f"{path}: no such file (a run folder written by 'retrograd train' "
                                 "or rg.train.fit(out_dir=...) has a history.json)")
        try:
            with open(path, encoding="utf-8") as f:
                rows = json.load(f)
        except (ValueError, RecursionError) as e:
            what = e if isinstance(e, ValueError) else "nested too deeply"
            raise RetrogradError(f"{path}: not a valid history file ({what})") from None
    else:
        rows = history_or_path
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise RetrogradError(f"{where}: expected a list of per-epoch dicts (epoch, train_loss, "
                             "...)")
    if not rows:
        raise RetrogradError(f"{where}: it is empty -- no epoch has finished yet")
    for i, row in enumerate(rows):
        for key in _NUMBERS:
            v = row.get(key)
            if v is not None and not _is_number(v):
                raise RetrogradError(f"{where}: entry {i + 1} has {key} = {v!r:.60}, not a "
                                     "number")
    return rows


_NUMBERS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")


def _is_number(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        float(v)                 # an int of 400 digits is no float
    except OverflowError:
        return False
    return True


def _column(rows, key):
    return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows])


def plot_history(history_or_path, path=None, title: str | None = None):
    """Loss and accuracy per epoch, train vs validation (and the learning rate when it
    changed during the run). Writes ``path`` (.png/.svg/.pdf) and returns it; with
    ``path=None`` returns the matplotlib Figure."""
    rows = load_history(history_or_path)
    epoch = np.array([r.get("epoch", i + 1) for i, r in enumerate(rows)], dtype=float)
    panels = [("loss", "train_loss", "val_loss")]
    if np.isfinite(_column(rows, "train_acc")).any() or np.isfinite(_column(rows, "val_acc")).any():
        panels.append(("accuracy", "train_acc", "val_acc"))
    lr = _column(rows, "lr")
    show_lr = np.isfinite(lr).sum() > 1 and np.nanmax(lr) != np.nanmin(lr)

    fig = _mpl.figure(4.6 * (len(panels) + show_lr), 3.8)
    axes = fig.subplots(1, len(panels) + show_lr, squeeze=False)[0]
    for ax, (what, train_key, val_key) in zip(axes, panels):
        for key, label, style in ((train_key, "train", "-"), (val_key, "validation", "--")):
            y = _column(rows, key)
            if np.isfinite(y).any():
                ax.plot(epoch, y, style, marker="o" if len(rows) <= 30 else None, ms=3, label=label)
        if what == "loss":
            pos = np.concatenate([_column(rows, train_key), _column(rows, val_key)])
            pos = pos[np.isfinite(pos)]
            if pos.size and pos.min() > 0 and pos.max() / pos.min() > 100:
                ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        ax.set_title(what)
        ax.grid(alpha=0.3)
        ax.legend()
    if show_lr:
        ax = axes[-1]
        ax.plot(epoch, lr, color="tab:green")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title("learning rate")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _mpl.save(fig, path)
