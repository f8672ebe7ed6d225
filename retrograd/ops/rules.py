"""What an op's ``simplify`` rule may ask of a program node (graph/program.py's Node):
its ``kind`` ("op", "const", "ext"), ``op``, ``inputs``, ``params``, ``shape``,
``dtype`` and, for a constant, ``value``. The helpers live here, beside the ops,
so that a rule is written in its op's record without importing the compiler."""
from __future__ import annotations

import numpy as np


def is_const(n, value) -> bool:
    """Whether node ``n`` is a constant equal to ``value`` everywhere."""
    if n.kind != "const":
        return False
    v = n.value
    return np.ndim(v) == 0 and v == value if not isinstance(v, np.ndarray) else (
        v.size > 0 and bool(np.all(v == value)))


def passes_through(n, x) -> bool:
    """Whether ``x`` can stand for node ``n``: the same shape and dtype."""
    return n.shape == x.shape and n.dtype == x.dtype


def same_shape(n):
    """The rule of a movement op that is the identity at its input's shape."""
    x = n.inputs[0]
    return x if n.shape == x.shape else None


def op_of(n):
    """The op computing node ``n``, or None (an input or a constant)."""
    return n.op if n.kind == "op" else None
