"""The computational graph of a tensor as a picture, with the backward pass drawn on it.

``to_dot(t)`` walks the graph that made ``t`` (every op output remembers its op and
its inputs) and writes Graphviz DOT: a box per leaf, an ellipse per op, an edge from
each input to the op that used it. ``trace_gradients(loss)`` runs the backward pass
with a hook on every node, so each node can also show its adjoint's norm
‖∂L/∂node‖ -- the backward pass drawn over the forward one.
"""
from __future__ import annotations

import html
import os
import shutil
import subprocess

import numpy as np

from ..errors import RetrogradError
from ..tensor import Tensor

__all__ = ["to_dot", "trace_gradients", "GradientTrace", "draw_graph", "graph", "Graph",
           "GraphvizNotFound", "graphviz_available"]

GRAD_COLOR = "#c0392b"           # the backward pass: red
STYLE = {                         # node kind -> DOT attributes
    "param": 'shape=box, style="rounded,filled", fillcolor="#d6eaf8"',
    "input": 'shape=box, style="rounded,filled", fillcolor="#eeeeee"',
    "const": 'shape=plaintext, fontsize=10',
    "op": 'shape=ellipse, style=filled, fillcolor="#fef9e7"',
}


class GraphvizNotFound(RetrogradError):
    """SVG/PNG was asked for but Graphviz's ``dot`` program is not on PATH.
    The DOT file was written all the same; its path is ``.dot_path``."""

    def __init__(self, dot_path, formats):
        self.dot_path = dot_path
        super().__init__(
            f"wrote {dot_path}; Graphviz's 'dot' program is needed for {'/'.join(f.upper() for f in formats)} "
            f"output and is not installed (install Graphviz, e.g. 'apt install graphviz', "
            f"'brew install graphviz' or 'conda install graphviz', or open the DOT file in a Graphviz viewer)")


def graphviz_available() -> bool:
    return shutil.which("dot") is not None


# --------------------------------------------------------------------------- gradients

class GradientTrace(dict):
    """{node: ‖∂L/∂node‖} for every node the backward pass reached (nodes are Tensors,
    keyed by identity), plus ``.loss``, the tensor it started from."""

    loss = None


def trace_gradients(loss: Tensor, grad=None) -> GradientTrace:
    """Run ``loss.backward(retain_graph=True)`` and record the Frobenius norm of the
    adjoint ∂L/∂node of every node on the way (leaves and intermediate results alike),
    through ``register_hook``. Leaves' ``.grad`` is accumulated as in any backward;
    the graph is kept, so ``to_dot(loss, grads=trace)`` can draw it afterwards."""
    if not isinstance(loss, Tensor) or not loss.requires_grad:
        raise RetrogradError("trace_gradients: the loss must be a Tensor that requires grad "
                             "(made from inputs with requires_grad=True, outside rg.no_grad())")
    trace = GradientTrace()
    trace.loss = loss
    handles = []
    for node in _nodes(loss):
        if isinstance(node, Tensor) and node.requires_grad:
            def record(g, node=node):
                trace[node] = float(np.linalg.norm(np.asarray(g.data, dtype=np.float64)))
            handles.append(node.register_hook(record))
    try:
        loss.backward(grad, retain_graph=True)
    finally:
        for h in handles:
            h.remove()
    return trace


# --------------------------------------------------------------------------- DOT

def _nodes(root):
    """Every Tensor and Python scalar reachable from ``root``, inputs before users."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        if isinstance(node, Tensor) and node._inputs:
            for inp in reversed(node._inputs):
                if isinstance(inp, Tensor):
                    stack.append((inp, False))
    return order


def _kind(t: Tensor) -> str:
    from ..nn.module import Parameter
    if isinstance(t, Parameter):
        return "param"
    if not t.requires_grad and t.size == 1:
        return "const"
    return "input"


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape)) if t.ndim else "scalar"


def _params_text(params) -> str:
    parts = []
    for k, v in (params or {}).items():
        if v is None or v is False or isinstance(v, (np.ndarray, Tensor)):
            continue
        text = f"{k}={v!r}"
        if len(text) <= 24:
            parts.append(text)
    return ", ".join(parts)


def _label(title, lines, norm):
    """An HTML-like DOT label: bold title, small grey lines, the adjoint norm in red."""
    rows = [f"<b>{html.escape(title, quote=False)}</b>"]
    rows += [f'<font point-size="10" color="#555555">{html.escape(s, quote=False)}</font>' for s in lines if s]
    if norm is not None:
        rows.append(f'<font point-size="10" color="{GRAD_COLOR}">‖∂L/∂·‖ = {norm:.4g}</font>')
    return "<" + "<br/>".join(rows) + ">"


def to_dot(tensor: Tensor, show_grad: bool = True, grads=None, rankdir: str = "TB",
           title: str | None = None) -> str:
    """Graphviz DOT source for the graph that computed ``tensor``.

    Leaves are boxes labelled with their name (if set), kind, shape and dtype:
    ``param`` (an ``nn.Parameter``), ``input`` (any other leaf tensor), ``const``
    (a Python scalar or a one-element tensor needing no gradient; its value is shown).
    Ops are ellipses with the op name, its static parameters and the output shape.
    With ``show_grad``, a node shows ‖∂L/∂node‖ in red when ``grads`` (a
    ``trace_gradients`` result, or any {tensor: norm} mapping) has it, or else, for a
    leaf or a ``retain_grad()`` tensor, the norm of its ``.grad``; nodes carrying a
    gradient get a red border. The loss node is drawn with a double border.
    """
    if not isinstance(tensor, Tensor) and hasattr(tensor, "to_dot"):
        return tensor.to_dot()       # a define-then-run Graph or a compiled Program
    if not isinstance(tensor, Tensor):
        raise TypeError(f"to_dot: expected a Tensor, a retrograd.graph.Graph or a compiled "
                        f"Program (rg.compile(f).program(*args)), got {type(tensor).__name__}")
    ids, count = {}, 0
    lines = ["digraph retrograd {",
             f'  graph [rankdir={rankdir}, fontname="Helvetica", nodesep=0.3, ranksep=0.35'
             + (f', label="{_escape(title)}", labelloc=t' if title else "") + "];",
             '  node [fontname="Helvetica", fontsize=12];',
             '  edge [color="#555555", arrowsize=0.7];']
    freed = False
    for node in _nodes(tensor):
        nid = ids[id(node)] = f"n{count}"
        count += 1
        norm = None
        if show_grad:
            if grads is not None and node in grads:
                norm = float(grads[node])
            elif node.grad is not None and (node._op is None or node._retains_grad):
                norm = float(np.linalg.norm(np.asarray(node.grad.data, dtype=np.float64)))
        if node._op is None:
            kind = _kind(node)
            if kind == "const":
                title_ = node.name or f"{node.data.item():.4g}"
                info = [f"const {node.dtype}"]
            else:
                title_ = node.name or kind
                info = [(f"{kind} " if node.name else "") + f"{_shape(node)} {node.dtype}"]
            attrs = STYLE[kind]
        else:
            kind = "op"
            title_ = node._op.name
            info = [_params_text(node._params), f"{_shape(node)} {node.dtype}"]
            if node.name:
                info.insert(0, node.name)
            if node._inputs is None:
                freed = True
                info.append("inputs freed by backward")
            attrs = STYLE["op"]
        if norm is not None:
            attrs += f', color="{GRAD_COLOR}", penwidth=1.6'
        if node is tensor:
            attrs += ", peripheries=2"
        lines.append(f"  {nid} [label={_label(title_, info, norm)}, {attrs}];")
        for pos, inp in enumerate(node._inputs or ()):
            if isinstance(inp, Tensor):
                src = ids[id(inp)]
            else:                                   # a Python scalar: its own small node
                src = f"n{count}"
                count += 1
                lines.append(f'  {src} [label="{inp!r}", {STYLE["const"]}];')
            edge = f' [label="{pos}", fontsize=9, fontcolor="#888888"]' if len(node._inputs) > 1 \
                and node._op.name in _ORDERED else ""
            lines.append(f"  {src} -> {nid}{edge};")
    if freed:
        lines.append('  note [shape=note, fontsize=10, label="part of the graph was freed by '
                     'backward(); use retain_graph=True or rg.viz.trace_gradients(loss)"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


# ops whose input order matters: their edges are numbered
_ORDERED = {"sub", "div", "pow", "matmul", "where", "concatenate", "stack", "scatter_add",
            "maximum", "minimum", "clip"}


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


# --------------------------------------------------------------------------- rendering

def _render(dot_source: str, fmt: str) -> bytes:
    exe = shutil.which("dot")
    if exe is None:
        raise RetrogradError(f"Graphviz's 'dot' program is needed for {fmt.upper()} output")
    r = subprocess.run([exe, f"-T{fmt}"], input=dot_source.encode("utf-8"), capture_output=True,
                       timeout=60)
    if r.returncode != 0:
        msg = r.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RetrogradError(f"Graphviz 'dot -T{fmt}' failed: {msg[0] if msg else r.returncode}")
    return r.stdout


def draw_graph(tensor: Tensor, path, grads=None, formats=None, **kw) -> list[str]:
    """Write the graph of ``tensor`` to ``path`` and return the paths written.

    The DOT file (``path`` with a ``.dot`` suffix) is always written. SVG/PNG/PDF
    files are made with Graphviz's ``dot`` program: ``formats`` (e.g. ``("svg",)``)
    or, by default, the suffix of ``path`` (``graph.svg`` → DOT + SVG). Without ``dot``
    on PATH this raises ``GraphvizNotFound`` after writing the DOT file.
    ``grads`` and the other keywords go to ``to_dot``.
    """
    from ..io import atomic_write
    base, ext = os.path.splitext(os.fspath(path))
    ext = ext.lower().lstrip(".")
    if formats is None:
        formats = () if ext in ("dot", "gv", "") else (ext,)
    formats = [f.lower().lstrip(".") for f in formats]
    source = to_dot(tensor, grads=grads, **kw)
    dot_path = base + (".gv" if ext == "gv" else ".dot")
    with atomic_write(dot_path, "wb") as f:
        f.write(source.encode("utf-8"))
    written = [dot_path]
    if formats and not graphviz_available():
        raise GraphvizNotFound(dot_path, formats)
    for fmt in formats:
        out = f"{base}.{fmt}"
        data = _render(source, fmt)
        with atomic_write(out, "wb") as f:
            f.write(data)
        written.append(out)
    return written


class Graph:
    """A drawable graph for notebooks: ``rg.viz.graph(loss)`` shows as SVG in Jupyter
    when Graphviz is installed, and as its DOT text otherwise."""

    def __init__(self, tensor: Tensor, grads=None, **kw):
        self.tensor, self.grads, self.kw = tensor, grads, kw
        self.source = to_dot(tensor, grads=grads, **kw)
        self._svg = None

    def _repr_svg_(self):
        if self._svg is None and graphviz_available():
            self._svg = _render(self.source, "svg").decode("utf-8")
        return self._svg

    def _repr_markdown_(self):
        if self._repr_svg_() is not None:      # the picture is there: no text alongside
            return None
        return "```dot\n" + self.source + "```\n\n*(install Graphviz to see this graph as a picture)*"

    def save(self, path, formats=None) -> list[str]:
        return draw_graph(self.tensor, path, grads=self.grads, formats=formats, **self.kw)

    def __str__(self):
        return self.source

    def __repr__(self):
        return f"<retrograd graph: {self.source.count(' -> ')} edges; str() gives the DOT source>"


def graph(tensor: Tensor, grads=None, **kw) -> Graph:
    """``rg.viz.graph(loss, grads=rg.viz.trace_gradients(loss))`` -- for Jupyter."""
    return Graph(tensor, grads=grads, **kw)
