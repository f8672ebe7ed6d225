"""matplotlib, imported only when a picture is drawn.

Figures are made with ``matplotlib.figure.Figure`` and saved through the Agg
renderer, never through pyplot, so drawing a picture changes no global matplotlib
state (a notebook's backend stays what it was).
"""
from __future__ import annotations

import os

from ..errors import MissingDependency  # noqa: F401 (rg.viz.MissingDependency, as before)

INSTALL = "pip install 'retrograd[viz]'"


def figure(width=10.0, height=4.0):
    """A new Agg-backed Figure (``MissingDependency`` if matplotlib is absent)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependency(f"matplotlib is needed for plots: {INSTALL}") from None
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, path):
    """Save ``fig`` to ``path`` (format from the suffix: .png, .svg, .pdf) and return the
    path; with ``path=None`` return the Figure itself (Jupyter shows it)."""
    if path is None:
        return fig
    from ..io import atomic_write
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1][1:].lower() or None     # (None: matplotlib's default, png)
    # atomically, as every file retrograd writes: a crash or a bad format leaves an
    # earlier plot of the same name whole
    with atomic_write(path, "wb") as f:
        fig.savefig(f, dpi=120, format=fmt)
    return path
