"""HTML for Jupyter's rich display (``_repr_html_``): a tensor's values and metadata, and
tables. Imports nothing of retrograd, so tensor.py and nn/ can reach it from inside a
method without an import cycle."""
from __future__ import annotations

import html

import numpy as np


def table(headers, rows, caption=None, footer=None) -> str:
    """A <table>: ``headers`` and each row a sequence of cells (escaped as text)."""
    esc = lambda v: html.escape(str(v))
    parts = ['<table class="retrograd">']
    if caption:
        parts.append(f"<caption>{esc(caption)}</caption>")
    parts.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>")
    parts.append("<tbody>")
    parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows]
    parts.append("</tbody>")
    if footer:
        parts.append("<tfoot>" + "".join(
            "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in footer)
                     + "</tfoot>")
    parts.append("</table>")
    return "".join(parts)


def tensor(t) -> str:
    """A tensor as a caption of its metadata over its values (summarised past 100,
    as NumPy's printing does), in a <pre> block."""
    data = t._data
    meta = [f"shape={tuple(t.shape)}", f"dtype={t.dtype}"]
    if t.op_name is not None:
        meta.append(f"op={t.op_name}")
    elif t.requires_grad:
        meta.append("requires_grad=True")
    if t.name:
        meta.append(f"name={t.name!r}")
    if isinstance(data, np.ndarray):
        body = np.array2string(data, separator=", ", precision=4, threshold=100)
    else:                                  # a graph value while tracing: no numbers yet
        body = repr(t)
    return (f'<div class="retrograd-tensor"><b>tensor</b> '
            f"<code>{html.escape(', '.join(meta))}</code>"
            f"<pre>{html.escape(body)}</pre></div>")
