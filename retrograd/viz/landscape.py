"""The error surface over two weights (seed 002, Figure 1) and a gradient-descent path on it.

Pick two scalar weights, hold every other weight fixed, and evaluate the loss on a
grid of values for the pair: that is the slice of the error surface the notes draw.
``descent_path`` runs plain gradient descent on just those two weights, so its path
lies on the same surface.
"""
from __future__ import annotations

import numpy as np

from ..errors import RetrogradError
from ..tensor import Tensor, no_grad
from . import _mpl

__all__ = ["loss_landscape", "descent_path", "plot_landscape"]


def _resolve(params, spec):
    """(tensor, index) from (tensor | position in params | parameter name, index)."""
    try:
        p, idx = spec
    except (TypeError, ValueError):
        raise RetrogradError(f"a weight is given as (parameter, index), e.g. (W1, (0, 1)); got {spec!r}") from None
    from ..nn.module import Module
    named = {}
    if isinstance(params, Module):
        named = dict(params.named_parameters())
    elif isinstance(params, dict):
        named = dict(params)
    listed = list(named.values()) if named else list(params or [])
    if isinstance(p, str):
        if p not in named:
            raise RetrogradError(f"no parameter named {p!r}; the names are {sorted(named)}")
        p = named[p]
    elif isinstance(p, (int, np.integer)):
        if not -len(listed) <= p < len(listed):
            raise RetrogradError(f"parameter index {p} is out of range for {len(listed)} parameters")
        p = listed[p]
    if not isinstance(p, Tensor):
        raise RetrogradError(f"expected a parameter tensor, a name or a position; got {type(p).__name__}")
    idx = () if idx is None else tuple(int(i) for i in np.atleast_1d(idx))
    try:
        entry = p.data[idx]
    except IndexError:
        raise RetrogradError(f"index {idx} is out of range for a parameter of shape {p.shape}") from None
    if np.ndim(entry) != 0:
        raise RetrogradError(f"index {idx} picks {np.shape(entry)} entries of a parameter of shape "
                             f"{p.shape}; it must pick one scalar weight")
    return p, idx


def _value(loss) -> float:
    return float(loss.item() if isinstance(loss, Tensor) else loss)


def loss_landscape(loss_fn, params, weight_a, weight_b, span=1.0, steps=41):
    """The loss over a grid of two scalar weights, every other weight held fixed.

    loss_fn: ``loss_fn()`` -> the loss (a Tensor or a float) at the current weights.
    params: the parameters (a Module, a {name: tensor} dict or a list), used to look
        weights up by name or position; may be None when tensors are given directly.
    weight_a, weight_b: ``(parameter, index)`` with parameter a Tensor, a name or a
        position in ``params``, and index picking one entry, e.g. ``(W1, (0, 1))``.
    span: how far each weight moves either way (a number, or one per weight).
    steps: grid points per axis; an odd number puts the current weights at the centre.

    Returns ``(A, B, Z)``, each of shape (steps, steps): the two weights' values (as
    ``np.meshgrid`` makes them) and the loss there. The weights are restored.
    """
    (pa, ia), (pb, ib) = _resolve(params, weight_a), _resolve(params, weight_b)
    if pa is pb and ia == ib:
        raise RetrogradError("loss_landscape: the two weights are the same entry")
    sa, sb = np.broadcast_to(np.asarray(span, dtype=float), (2,))
    steps = int(steps)
    if steps < 2:
        raise RetrogradError("loss_landscape: steps must be at least 2")
    offsets = np.linspace(-1.0, 1.0, steps)
    if steps % 2:
        offsets[steps // 2] = 0.0                 # exactly the current weights at the centre
    a0, b0 = pa.data[ia].item(), pb.data[ib].item()
    # the values the weights really take, in their own dtype
    a_vals = np.asarray(a0 + sa * offsets, dtype=pa.dtype).astype(float)
    b_vals = np.asarray(b0 + sb * offsets, dtype=pb.dtype).astype(float)
    A, B = np.meshgrid(a_vals, b_vals)
    Z = np.empty_like(A)
    try:
        with no_grad():
            for j, b in enumerate(b_vals):
                pb.data[ib] = b
                for i, a in enumerate(a_vals):
                    pa.data[ia] = a
                    Z[j, i] = _value(loss_fn())
    finally:
        pa.data[ia], pb.data[ib] = a0, b0
    return A, B, Z


def descent_path(loss_fn, params, weight_a, weight_b, lr=0.1, steps=50, start=None):
    """Plain gradient descent on the two weights only: w ← w − lr·∂L/∂w, ``steps`` times.

    ``start``: the (a, b) to start from (default: the current values). Returns an array
    of shape (steps + 1, 3): the columns a, b and the loss at each point. The weights
    are restored afterwards (and no ``.grad`` is touched), so the path can be drawn on
    ``loss_landscape``'s surface with ``plot_landscape(..., path_points=path)``.
    """
    from ..autodiff import grad as autograd_grad
    (pa, ia), (pb, ib) = _resolve(params, weight_a), _resolve(params, weight_b)
    a0, b0 = pa.data[ia].item(), pb.data[ib].item()
    a, b = (a0, b0) if start is None else (float(start[0]), float(start[1]))
    tensors = [pa] if pa is pb else [pa, pb]
    points = []
    try:
        for k in range(int(steps) + 1):
            pa.data[ia], pb.data[ib] = a, b
            a, b = pa.data[ia].item(), pb.data[ib].item()    # as stored (e.g. float32)
            loss = loss_fn()
            if not isinstance(loss, Tensor) or not loss.requires_grad:
                raise RetrogradError("descent_path: loss_fn() must return a Tensor computed from "
                                     "the weights (not under rg.no_grad())")
            points.append((a, b, _value(loss)))
            if k == steps:
                break
            gs = autograd_grad(loss, tensors, allow_unused=True)
            ga, gb = gs[0], gs[-1]
            da = 0.0 if ga is None else ga.data[ia].item()
            db = 0.0 if gb is None else gb.data[ib].item()
            a, b = a - lr * da, b - lr * db
    finally:
        pa.data[ia], pb.data[ib] = a0, b0
    return np.array(points)


def plot_landscape(A, B, Z, path=None, path_points=None, labels=("$w_a$", "$w_b$"),
                   title: str | None = None, surface: bool = True, levels: int = 30):
    """Contours of the loss over the two weights (and a 3-D surface beside them), with
    the current weights (the grid centre) marked and, if given, a gradient-descent path
    drawn on both: ``path_points`` is an (n, 2) or (n, 3) array of (a, b[, loss]) rows,
    as ``descent_path`` returns. Writes ``path`` and returns it (the Figure if None)."""
    A, B, Z = (np.asarray(v, dtype=float) for v in (A, B, Z))
    if not A.shape == B.shape == Z.shape or A.ndim != 2:
        raise RetrogradError(f"plot_landscape: A, B, Z must be 2-D arrays of one shape; got "
                             f"{A.shape}, {B.shape}, {Z.shape}")
    pts = None if path_points is None else np.asarray(path_points, dtype=float)
    fig = _mpl.figure(11.0 if surface else 5.8, 4.8)
    ax = fig.add_subplot(1, 2 if surface else 1, 1)
    filled = ax.contourf(A, B, Z, levels=levels, cmap="viridis")
    ax.contour(A, B, Z, levels=levels, colors="k", linewidths=0.3, alpha=0.5)
    fig.colorbar(filled, ax=ax, label="loss")
    centre = (A[A.shape[0] // 2, A.shape[1] // 2], B[B.shape[0] // 2, B.shape[1] // 2])
    ax.plot(*centre, "x", color="white", ms=9, mew=2, label="current weights")
    if pts is not None:
        ax.plot(pts[:, 0], pts[:, 1], ".-", color="#e74c3c", lw=1.5, ms=3, label="gradient descent")
        ax.plot(pts[0, 0], pts[0, 1], "o", color="#e74c3c", ms=7, mec="white", label="start")
        ax.plot(pts[-1, 0], pts[-1, 1], "*", color="#f1c40f", ms=14, mec="k", label="end")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title("error surface (contours)")
    ax.legend(loc="best", fontsize=8, framealpha=0.8)
    if surface:
        ax3 = fig.add_subplot(1, 2, 2, projection="3d")
        ax3.plot_surface(A, B, Z, cmap="viridis", linewidth=0, antialiased=True, alpha=0.85)
        if pts is not None and pts.shape[1] >= 3:
            ax3.plot(pts[:, 0], pts[:, 1], pts[:, 2], "-", color="#e74c3c", lw=2, zorder=10)
            ax3.scatter(pts[-1:, 0], pts[-1:, 1], pts[-1:, 2], color="#f1c40f", s=60,
                        edgecolors="k", zorder=11)
        ax3.set_xlabel(labels[0])
        ax3.set_ylabel(labels[1])
        ax3.set_zlabel("loss")
        ax3.set_box_aspect(None, zoom=0.88)          # room for the axis labels
        ax3.set_title("error surface")
    if title:
        fig.suptitle(title)
    return _mpl.save(fig, path)
