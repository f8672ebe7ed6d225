"""Per-layer gradient and delta magnitudes over training: vanishing gradients made visible.

Each sigmoid a layer's delta passes through multiplies it by g′(z) ≤ ¼ (seed 001,
BP2: δˡ = (Θˡ⁺¹)ᵀδˡ⁺¹ ⊙ g′(zˡ)), so in a deep sigmoid network the first layers learn
far more slowly than the last; with ReLU, g′ is 0 or 1 and the deltas keep their size.
"""
from __future__ import annotations

import numpy as np

from ..errors import RetrogradError
from ..tensor import Tensor
from . import _mpl

__all__ = ["GradientMonitor", "plot_gradient_flow"]


def _mean_abs(g) -> float:
    return float(np.mean(np.abs(np.asarray(g.data, dtype=np.float64))))


class GradientMonitor:
    """Records, for every backward pass through ``model``, each layer's mean |∂L/∂W|
    and (with ``deltas=True``) mean |δ| = mean |∂L/∂z| of the layer's output z.

    A layer is a module with a ``weight`` parameter (``nn.Linear``), numbered from
    the input. Hooks on the weights (and on the layers' outputs for the deltas) do
    the recording, so it works with any training loop, ``rg.train.fit`` included::

        mon = rg.viz.GradientMonitor(model)
        fit(model, loss_fn, opt, (x, y), epochs=20)
        mon.grads                     # (backward passes, layers)
        rg.viz.plot_gradient_flow(mon, "gradient_flow.png")
        mon.remove()                  # or use ``with GradientMonitor(model) as mon:``

    The deltas hook wraps each layer's ``forward`` on that instance (undone by
    ``remove()``); the Tensor class is not touched.
    """

    def __init__(self, model, deltas: bool = True):
        from ..nn.module import Module, Parameter
        if not isinstance(model, Module):
            raise RetrogradError(f"GradientMonitor: expected an nn.Module, got {type(model).__name__}")
        self.layers = [(name, m) for name, m in model.named_modules()
                       if isinstance(getattr(m, "weight", None), Parameter)]
        if not self.layers:
            raise RetrogradError("GradientMonitor: the model has no layers with a 'weight' parameter")
        self.names = [f"layer {i + 1}" for i in range(len(self.layers))]
        self.records: list[dict] = []
        self.track_deltas = deltas
        self._grad = {}
        self._delta = {}
        self._handles = []
        self._wrapped = []
        for i, (_, layer) in enumerate(self.layers):
            self._handles.append(layer.weight.register_hook(lambda g, i=i: self._on_grad(i, g)))
            if deltas:
                self._wrap(i, layer)

    # ---- recording
    def _wrap(self, i, layer):
        forward = layer.forward

        def hooked_forward(*args, **kwargs):
            out = forward(*args, **kwargs)
            if isinstance(out, Tensor) and out.requires_grad:
                out.register_hook(lambda g: self._on_delta(i, g))
            return out
        self._wrapped.append((layer, hooked_forward, vars(layer).get("forward")))
        layer.forward = hooked_forward              # an instance attribute, removed by remove()

    def _on_delta(self, i, g):
        total, count = self._delta.get(i, (0.0, 0))
        self._delta[i] = (total + _mean_abs(g), count + 1)

    def _on_grad(self, i, g):
        if i in self._grad:                         # a backward that missed some layer
            self._flush()
        self._grad[i] = _mean_abs(g)
        if len(self._grad) == len(self.layers):     # every delta comes before its W's gradient
            self._flush()

    def _flush(self):
        if not self._grad:
            return
        n = len(self.layers)
        grad = np.array([self._grad.get(i, np.nan) for i in range(n)])
        delta = None
        if self.track_deltas and self._delta:
            delta = np.array([self._delta[i][0] / self._delta[i][1] if i in self._delta else np.nan
                              for i in range(n)])
        self.records.append({"step": len(self.records), "grad": grad, "delta": delta})
        self._grad, self._delta = {}, {}

    # ---- results
    @property
    def grads(self) -> np.ndarray:
        """Mean |∂L/∂W| per backward pass (rows) and layer (columns, input first)."""
        self._flush()
        return np.array([r["grad"] for r in self.records]).reshape(-1, len(self.layers))

    @property
    def deltas(self) -> np.ndarray:
        """Mean |δ| per backward pass and layer (NaN where a forward was not hooked)."""
        self._flush()
        n = len(self.layers)
        return np.array([r["delta"] if r["delta"] is not None else np.full(n, np.nan)
                         for r in self.records]).reshape(-1, n)

    def remove(self):
        """Take the hooks off the weights and layers."""
        for h in self._handles:
            h.remove()
        for layer, hooked, previous in self._wrapped:
            if vars(layer).get("forward") is hooked:
                if previous is None:
                    del layer.forward
                else:
                    layer.forward = previous
        self._handles, self._wrapped = [], []
        self._flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False

    def __repr__(self):
        return f"<GradientMonitor: {len(self.layers)} layers, {len(self.records)} backward passes>"


def _series(source):
    """(layer names, grads array, deltas array or None) from a monitor or a list of records."""
    if isinstance(source, GradientMonitor):
        d = source.deltas
        return source.names, source.grads, (d if np.isfinite(d).any() else None)
    records = list(source)
    if not records:
        raise RetrogradError("plot_gradient_flow: there are no records (no backward pass was seen)")
    if isinstance(records[0], dict):
        g = np.array([r["grad"] for r in records], dtype=float)
        ds = [r.get("delta") for r in records]
        d = None if all(x is None for x in ds) else np.array(
            [np.full(g.shape[1], np.nan) if x is None else x for x in ds], dtype=float)
    else:
        g, d = np.asarray(records, dtype=float), None
    return [f"layer {i + 1}" for i in range(g.shape[1])], g, d


def plot_gradient_flow(monitors, path=None, title: str | None = None, last: float = 0.1):
    """Per-layer gradient magnitudes: for each run, mean |∂L/∂W| of every layer over the
    backward passes (log scale), and a profile panel comparing runs layer by layer
    (averaged over the ``last`` fraction of the passes); a second row does the same
    for the deltas when they were recorded.

    ``monitors``: a ``GradientMonitor``, a list of its records, or a dict
    ``{"sigmoid": monitor_a, "relu": monitor_b}`` to compare runs.
    Writes ``path`` and returns it (the Figure if ``path`` is None)."""
    runs = monitors if isinstance(monitors, dict) else {"": monitors}
    runs = {label: _series(src) for label, src in runs.items()}
    if any(g.size == 0 for _, g, _ in runs.values()):
        raise RetrogradError("plot_gradient_flow: a monitor has no records (no backward pass was seen)")
    kinds = [("grad", "mean |∂L/∂W|")]
    if any(d is not None for _, _, d in runs.values()):
        kinds.append(("delta", "mean |δ| = mean |∂L/∂z|"))
    ncols = len(runs) + 1
    fig = _mpl.figure(4.4 * ncols, 3.6 * len(kinds))
    axes = fig.subplots(len(kinds), ncols, squeeze=False)
    for row, (kind, ylabel) in enumerate(kinds):
        prof = axes[row, -1]
        for col, (label, (names, g, d)) in enumerate(runs.items()):
            values = g if kind == "grad" else d
            ax = axes[row, col]
            if values is None:
                ax.set_axis_off()
                continue
            colors = _mpl_colors(len(names))
            steps = np.arange(len(values))
            for j, name in enumerate(names):
                ax.plot(steps, values[:, j], color=colors[j], lw=1.2, label=name)
            ax.set_yscale("log")
            ax.set_xlabel("backward pass")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{label}: {kind} per layer" if label else f"{kind} per layer")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7, ncol=2 if len(names) > 5 else 1)
            tail = values[-max(1, int(round(len(values) * last))):]
            prof.plot(np.arange(1, len(names) + 1), np.nanmean(tail, axis=0), "o-",
                      label=label or None)
        prof.set_yscale("log")
        prof.set_xlabel("layer (1 = nearest the input)")
        prof.set_ylabel(ylabel)
        prof.set_xticks(np.arange(1, max(len(n) for n, _, _ in runs.values()) + 1))
        prof.set_title(f"{kind} profile (last {last:.0%} of passes)")
        prof.grid(alpha=0.3, which="both")
        if len(runs) > 1:
            prof.legend()
    if title:
        fig.suptitle(title)
    return _mpl.save(fig, path)


def _mpl_colors(n):
    from matplotlib import colormaps
    cmap = colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.0, 0.85, n)]
