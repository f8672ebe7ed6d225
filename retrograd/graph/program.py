"""A graph lowered for execution, and the optimisation passes over it.

``lower`` turns the Var DAG reachable from some outputs into a ``Program``: a
topologically ordered list of ``Node``s of three kinds --

  ext    a value supplied at run time (a graph input or parameter, or a tensor
         that requires grad captured by a traced function: model parameters)
  const  a value known now (captured constants, Python scalars, folded results)
  op     an op applied to earlier nodes

Each pass takes a Program and returns a new one plus the number of changes, so
each can be run, tested and shown on its own:

  fold_constants   ops whose inputs are all constants are computed now
  simplify         algebraic identities (x*1, x+0, --x, transpose∘transpose, ...)
  cse              common subexpressions computed once (seed 004: f(f(f(w))))
  dce              nodes that no output needs are dropped
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from .ir import Var


class Node:
    __slots__ = ("kind", "op", "inputs", "params", "shape", "dtype", "value", "source", "name", "id",
                 "weak", "layout")

    def __init__(self, kind, shape, dtype, op=None, inputs=(), params=None, value=None,
                 source=None, name=None):
        self.kind, self.op, self.inputs = kind, op, tuple(inputs)
        self.params = params or {}
        self.shape, self.dtype = tuple(shape), np.dtype(dtype) if dtype is not None else None
        self.value, self.source, self.name = value, source, name
        self.id = -1
        self.weak = False         # a Python float at run time (see ir.Var.weak)
        self.layout = None        # the order of its axes in memory eagerly (ir.layout_of)

    @property
    def is_scalar_const(self):
        return self.kind == "const" and not isinstance(self.value, np.ndarray)

    def __repr__(self):
        return f"Node(%{self.id} {self.kind} {self.op.name if self.op else self.name or ''})"


class Program:
    """Nodes in execution order, the ext nodes in argument order, and the outputs."""

    def __init__(self, nodes, externals, outputs):
        self.nodes, self.externals, self.outputs = list(nodes), list(externals), list(outputs)
        for i, n in enumerate(self.nodes):
            n.id = i

    @property
    def op_nodes(self):
        return [n for n in self.nodes if n.kind == "op"]

    def count(self, op_name=None):
        return sum(1 for n in self.op_nodes if op_name is None or n.op.name == op_name)

    def __str__(self):
        """One line per node: ``%7 = matmul(%3, %5)  (500, 100) float32``."""
        lines = []
        for n in self.nodes:
            if n.kind == "op":
                args = ", ".join(_ref(i) for i in n.inputs)
                extra = "".join(f", {k}={_short(v)}" for k, v in n.params.items())
                lines.append(f"%{n.id} = {n.op.name}({args}{extra})  {n.shape} {n.dtype}")
            elif n.kind == "ext":
                lines.append(f"%{n.id} = {n.name or 'input'}  {n.shape} {n.dtype}")
            elif not n.is_scalar_const:
                lines.append(f"%{n.id} = const  {n.shape} {n.dtype}")
        lines.append("return " + ", ".join(_ref(o) for o in self.outputs))
        return "\n".join(lines)

    def to_dot(self, title=None):
        """Graphviz DOT of the program: run-time inputs as boxes, ops as ellipses with
        their output shapes, constants folded into the labels of their users."""
        out = ["digraph program {", '  graph [rankdir=TB, fontname="Helvetica"'
               + (f', label="{title}", labelloc=t' if title else "") + "];",
               '  node [fontname="Helvetica", fontsize=11];']
        outputs = {id(o) for o in self.outputs}
        for n in self.nodes:
            if n.is_scalar_const:
                continue
            if n.kind == "op":
                consts = ", ".join(repr(i.value) for i in n.inputs if i.is_scalar_const)
                label = f"%{n.id} {n.op.name}" + (f" ({consts})" if consts else "") + f"\\n{n.shape}"
                style = "shape=ellipse" + (", peripheries=2" if id(n) in outputs else "")
            else:
                label = f"%{n.id} {n.name or n.kind}\\n{n.shape} {n.dtype}"
                style = "shape=box" + (", style=filled, fillcolor=lightyellow" if n.kind == "ext" else "")
            out.append(f'  n{n.id} [label="{label}", {style}];')
            for i in n.inputs:
                if not i.is_scalar_const:
                    out.append(f"  n{i.id} -> n{n.id};")
        out.append("}")
        return "\n".join(out)


def _ref(n):
    return repr(n.value) if n.is_scalar_const else f"%{n.id}"


def _short(v):
    if isinstance(v, np.ndarray):
        return f"array{v.shape}"
    if isinstance(v, tuple) and any(isinstance(i, np.ndarray) for i in v):
        return "(" + ", ".join(_short(i) for i in v) + ")"
    return repr(v)


# ---------------------------------------------------------------- lowering

def lower(outputs, externals=()):
    """The Program computing ``outputs`` (Vars or Tensors). ``externals`` fixes the
    order of the run-time arguments (input/param Vars); captured tensors that require
    grad are appended after them, read at each run."""
    memo: dict[int, Node] = {}
    nodes: list[Node] = []
    ext_nodes: list[Node] = []

    def ext(v, name):
        n = Node("ext", v.shape, v.dtype, source=v, name=name)
        memo[id(v)] = n
        nodes.append(n)
        ext_nodes.append(n)
        return n

    for v in externals:
        ext(v, v.name or v.kind)

    def add(n):
        nodes.append(n)
        return n

    def visit(root):
        stack = [(root, False)]
        while stack:
            v, expanded = stack.pop()
            if not isinstance(v, Tensor) or id(v) in memo:
                continue
            if expanded:
                memo[id(v)] = node_for(v)
                continue
            stack.append((v, True))
            if isinstance(v, Var) and v.kind == "op":
                stack.extend((i, False) for i in v._inputs if isinstance(i, Tensor))

    def node_for(v):
        if isinstance(v, Var):
            if v.kind == "captured":             # read the captured tensor at each run
                n = ext(v, v.name)
                n.source = v.value
                return n
            if v.kind != "op":
                return ext(v, v.name or v.kind)
            inputs = [memo[id(i)] if isinstance(i, Tensor) else add(scalar(i)) for i in v._inputs]
            n = Node("op", v.shape, v.dtype, op=v._op, inputs=inputs, params=v._params)
            n.weak, n.layout = v.weak, v._data.layout
        elif v.requires_grad:                    # live: a parameter the optimizer updates
            return ext(v, v.name or "param")
        else:
            # a constant, frozen now by a copy (as in JAX): with the live array, the
            # folded parts would keep the old values and the rest read the new ones
            n = Node("const", v.shape, v.dtype, value=frozen(v._data))
        nodes.append(n)
        return n

    copies: dict[int, np.ndarray] = {}           # id(base array) -> its frozen copy

    def frozen(a):
        """A copy of constant ``a``; views of one array (X and the X.T of its gradient)
        stay views of one copy, so a captured batch is held once, not once per view (a
        small view of a large array is copied alone)."""
        base = a
        while isinstance(base.base, np.ndarray):
            base = base.base
        if not base.flags.c_contiguous or base.nbytes > 2 * a.nbytes:
            return np.array(a, copy=True)
        copy = copies.get(id(base))
        if copy is None:
            copy = copies[id(base)] = base.copy()
        if a is base:
            return copy
        offset = a.__array_interface__["data"][0] - base.__array_interface__["data"][0]
        return np.ndarray(a.shape, a.dtype, buffer=copy, offset=offset, strides=a.strides)

    for o in outputs:
        visit(o)
    outs = [memo[id(o)] if isinstance(o, Tensor) else add(scalar(o)) for o in outputs]
    return Program(nodes, ext_nodes, outs)


def scalar(value):
    return Node("const", (), None, value=value)


# ---------------------------------------------------------------- pass machinery

def _rebuild(prog, new_nodes, replace):
    """Re-point inputs and outputs through ``replace`` and renumber."""
    def resolve(n):
        while n in replace:
            n = replace[n]
        return n
    for n in new_nodes:
        if n.kind == "op":
            n.inputs = tuple(resolve(i) for i in n.inputs)
    return Program(new_nodes, prog.externals, [resolve(o) for o in prog.outputs])


def dce(prog):
    """Keep only nodes some output depends on (and every ext, the run-time arguments)."""
    live = set()
    stack = list(prog.outputs)
    while stack:
        n = stack.pop()
        if id(n) in live:
            continue
        live.add(id(n))
        stack.extend(n.inputs)
    kept = [n for n in prog.nodes if id(n) in live or n.kind == "ext"]
    return Program(kept, prog.externals, prog.outputs), len(prog.nodes) - len(kept)


def fold_constants(prog):
    """Compute now every pure op whose inputs are all constants."""
    changed = 0
    for n in prog.nodes:
        if n.kind == "op" and n.op.pure and all(i.kind == "const" for i in n.inputs):
            with np.errstate(all="ignore"):
                n.value = np.asarray(n.op.forward(*[i.value for i in n.inputs], **n.params))
            n.kind, n.op, n.inputs, n.params = "const", None, (), {}
            changed += 1
    return Program(prog.nodes, prog.externals, prog.outputs), changed


def _freeze(v):
    if isinstance(v, np.ndarray):
        return ("nd", v.dtype.str, v.shape, v.tobytes())
    if isinstance(v, (tuple, list)):
        return tuple(_freeze(i) for i in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, slice):
        return ("slice", v.start, v.stop, v.step)
    if isinstance(v, np.dtype):
        return ("dtype", v.str)
    return v


def _key(n):
    if n.kind == "const":
        if n.is_scalar_const:
            return ("scalar", type(n.value), n.value)
        return ("const", n.value.dtype.str, n.value.shape, n.value.tobytes()) if n.value.size <= 64 else None
    if n.kind == "ext" or not n.op.pure:
        return None
    return (n.op, tuple(id(i) for i in n.inputs), _freeze(n.params))


def cse(prog):
    """Compute each distinct (op, inputs, params) once. Random ops are never merged."""
    seen, replace, kept = {}, {}, []
    for n in prog.nodes:
        if n.kind == "op":
            n.inputs = tuple(replace.get(i, i) for i in n.inputs)
        k = _key(n)
        if k is not None and k in seen:
            replace[n] = seen[k]
            continue
        if k is not None:
            seen[k] = n
        kept.append(n)
    return _rebuild(prog, kept, replace), len(replace)


# ---------------------------------------------------------------- algebraic simplification

def simplify(prog):
    """Apply each op's own algebraic identities (``Op.simplify``: x*1, x+0, -(-x),
    transpose∘transpose, reshape∘reshape, ...): a node equal to an earlier one is
    replaced by it, and a node with a cheaper form is recomputed by that."""
    changed, replace = 0, {}
    for n in prog.nodes:
        if n.kind != "op":
            continue
        n.inputs = tuple(replace.get(i, i) for i in n.inputs)
        rule = n.op.simplify
        new = rule(n) if rule is not None else None
        if new is None:
            continue
        if isinstance(new, Node):
            replace[n] = new
        else:
            n.op, n.inputs, n.params = new[0], tuple(new[1]), dict(new[2])
        changed += 1
    kept = [n for n in prog.nodes if n not in replace]
    return _rebuild(prog, kept, replace), changed


PASSES = {"fold": fold_constants, "simplify": simplify, "cse": cse, "dce": dce}


def optimize(prog, passes=("fold", "simplify", "cse", "dce"), log=None):
    """Run the passes until nothing changes; ``log`` collects (pass, changes) pairs."""
    for _ in range(10):
        total = 0
        for name in passes:
            prog, changed = PASSES[name](prog)
            total += changed
            if log is not None:
                log.append((name, changed))
        if not total:
            break
    return prog
