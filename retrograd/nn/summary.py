"""A model summary: each layer, its output shape (when an input shape is given) and its
parameter count, as text and as an HTML table (``Module._repr_html_`` in Jupyter).

Imports only tensor.py (not module.py), so Module's methods can call it; modules are
read through their own methods (named_modules, named_parameters)."""
from __future__ import annotations

import numpy as np

from .. import _html
from ..tensor import Tensor, no_grad, zeros


class Summary:
    """rows: (name, type, output shape or None, own parameter count) per module;
    total / trainable: parameter counts of the whole model."""

    def __init__(self, model, rows, input_shape):
        self.model_name, self.rows, self.input_shape = type(model).__name__, rows, input_shape
        params = model.parameters()
        self.total = sum(p.size for p in params)
        self.trainable = sum(p.size for p in params if p.requires_grad)

    def _table(self):
        shapes = self.input_shape is not None
        headers = ["layer", "type"] + (["output shape"] if shapes else []) + ["parameters"]
        body = [[name, kind] + ([shape if shape is not None else "-"] if shapes else [])
                + [f"{count:,}"] for name, kind, shape, count in self.rows]
        return headers, body

    def _caption(self):
        inp = f", input {self.input_shape}" if self.input_shape is not None else ""
        return f"{self.model_name}: {self.total:,} parameters ({self.trainable:,} trainable){inp}"

    def _repr_html_(self):
        headers, body = self._table()
        return _html.table(headers, body, caption=self._caption(),
                           footer=[["total", ""] + ([""] if self.input_shape is not None else [])
                                   + [f"{self.total:,}"]])

    def __str__(self):
        headers, body = self._table()
        widths = [max(len(str(r[i])) for r in [headers] + body) for i in range(len(headers))]
        line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
        return "\n".join([self._caption(), line(headers), *map(line, body)])

    __repr__ = __str__


def _shape_of(out):
    if isinstance(out, Tensor):
        return tuple(out.shape)
    if isinstance(out, (tuple, list)):
        return tuple(_shape_of(o) for o in out)
    return None


def _record_shapes(model, input_shape, dtype):
    """Run one forward on zeros of ``input_shape`` (batch included) under no_grad, in
    eval mode (BatchNorm's running statistics untouched, no dropout), noting each
    module's output shape; every module's forward and mode are restored after."""
    shapes, modules = {}, list(model.named_modules())
    modes = [m.training for _, m in modules]

    def recorder(name, forward):
        def run(*args, **kwargs):
            out = forward(*args, **kwargs)
            shapes[name] = _shape_of(out)
            return out
        return run

    try:
        for name, m in modules:
            m.forward = recorder(name, m.forward)        # an instance attribute, deleted below
        model.eval()
        with no_grad():
            model(zeros(tuple(input_shape), dtype=dtype))
    finally:
        for (_, m), mode in zip(modules, modes):
            vars(m).pop("forward", None)
            m.training = mode
    return shapes


def summary(model, input_shape=None, dtype=np.float32) -> Summary:
    """``rg.nn.summary(model, (1, 784))``: a table of the layers (every sub-module with
    its own parameters or no children), output shapes for an input of ``input_shape``
    (batch axis included) and parameter counts; prints as text, shows as HTML in
    Jupyter."""
    shapes = _record_shapes(model, input_shape, dtype) if input_shape is not None else {}
    rows = []
    for name, m in model.named_modules():
        own = [p for n, p in m.named_parameters() if "." not in n]
        leaf = not list(m.named_children())
        if own or (leaf and name) or (leaf and m is model):   # the root: its own weights
            rows.append((name or "(self)", type(m).__name__, shapes.get(name),
                         sum(p.size for p in own)))
    input_shape = tuple(input_shape) if input_shape is not None else None
    return Summary(model, rows, input_shape)
