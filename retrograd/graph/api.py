"""The two ways into the graph path.

``Graph`` -- define-then-run, as in Marian (seed 001 §4.6): declare inputs and
parameters, write the model with the ordinary ``rg.*`` functions, then
``g.forward(feeds)`` and ``g.backward(cost)``.

``compile(fn)`` -- trace a Python function of tensors once per input signature
(shapes and dtypes) and run the optimised graph on later calls, JAX-style.
``compile_step(model, loss_fn, optimizer)`` builds on it: one call per
training step, forward and backward in one generated function, then the
optimizer's in-place update.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np

from .. import autodiff
from ..errors import RetrogradError, ShapeError
from ..tensor import Tensor, enable_grad
from .executor import Executable
from .ir import TraceError, Tracer, Var, _dummies
from .program import lower, optimize

PASSES = ("fold", "simplify", "cse", "dce")


def _compile_program(outputs, externals, passes=PASSES, persistent_outputs=False, name="compiled"):
    _dummies.clear()                    # tracing is over: drop its zero stand-ins
    log = []
    prog = lower(outputs, externals)
    before = prog.count()
    prog = optimize(prog, passes, log) if passes else prog
    exe = Executable(prog, reuse=bool(passes), persistent_outputs=persistent_outputs, name=name)
    exe.stats = {"nodes_traced": before, "nodes": prog.count(), "passes": log}
    return exe


# ---------------------------------------------------------------- define-then-run

class Graph:
    """A computation declared first and run later (Marian's expression graph).

        g = Graph()
        x = g.input("x", shape=(500, 784)); w1 = g.param("w1", shape=(784, 100))
        cost = ...rg ops on x, w1...
        g.forward({x: X})        # -> value of the last node (the cost)
        g.backward(cost)         # -> fills w1.grad
    """

    def __init__(self, name: str | None = None):
        self.name = name
        self.vars: list[Var] = []
        self._feeds = None
        self._cache = {}

    def _register(self, v):
        self.vars.append(v)
        self._cache.clear()          # the graph changed
        return len(self.vars) - 1

    def input(self, name: str, shape, dtype=np.float32) -> Var:
        return Var(self, "input", shape, dtype, name=name)

    def param(self, name: str, shape, init=None, dtype=None, value=None) -> Var:
        """A trainable parameter; weight matrices start Glorot-uniform and everything else
        (including a (1, n) bias row, as in Marian) at zero, unless ``init`` (a name from
        rg.nn.init or a function of (shape, dtype)) or ``value`` says otherwise."""
        from ..nn import init as inits
        shape = tuple(shape)
        if value is None:
            dtype = np.dtype(dtype or np.float32)
            init = init or ("glorot" if len(shape) == 2 and min(shape) > 1 else "zeros")
            value = inits.get(init)(shape, dtype=dtype)
        else:
            value = np.array(value, dtype=dtype)     # a copy, in the given or its own dtype
            dtype = value.dtype
            if value.shape != shape:
                raise ShapeError(f"Graph.param '{name}': value has shape {value.shape}, "
                                 f"declared {shape}")
        p = Var(self, "param", shape, dtype, name=name)
        p.value = value
        return p

    @property
    def inputs(self):
        return [v for v in self.vars if v.kind == "input"]

    @property
    def params(self):
        return [v for v in self.vars if v.kind == "param"]

    # ---- running
    def _feed_arrays(self, feeds):
        """{id(input Var): array} for the feeds, keyed by input Var or by its name."""
        by_name = {}
        for k, v in (feeds or {}).items():
            var = k if isinstance(k, Var) else next((i for i in self.inputs if i.name == k), None)
            if var is None or var.graph is not self or var.kind != "input":
                raise RetrogradError(f"Graph.forward: {k!r} is not an input of this graph "
                                     f"(inputs: {[i.name for i in self.inputs]})")
            arr = np.asarray(v.data if isinstance(v, Tensor) else v)
            if arr.shape != var.shape:
                raise ShapeError(f"Graph.forward: input '{var.name}' was declared with shape "
                                 f"{var.shape} but fed an array of shape {arr.shape}")
            by_name[id(var)] = arr.astype(var.dtype, copy=False)
        return by_name

    def _run(self, outputs, feeds, persistent=False):
        key = (tuple(id(o) for o in outputs), persistent)
        exe = self._cache.get(key)
        if exe is None:
            exe = _compile_program(outputs, self.inputs + self.params, persistent_outputs=persistent,
                                   name="graph")
            self._cache[key] = exe
        arrays = self._feed_arrays(feeds)
        # only the inputs the requested outputs depend on must be fed
        used = {id(i.source) for n in exe.program.nodes for i in n.inputs if i.kind == "ext"}
        used |= {id(o.source) for o in exe.program.outputs if o.kind == "ext"}
        missing = [v.name for v in self.inputs if id(v) in used and id(v) not in arrays]
        if missing:
            raise RetrogradError(f"Graph: no value fed for input(s) {missing}")
        args = [arrays.get(id(v), np.zeros(v.shape, v.dtype)) if v.kind == "input" else v.value
                for v in self.inputs + self.params]
        return exe(*args, *_captured(exe))

    def forward(self, feeds=None, outputs=None):
        """Evaluate the graph. Returns the value of ``outputs`` (a Var or a list of Vars) or,
        by default, of the last node created (the cost), as ndarrays."""
        self._feeds = feeds if feeds is not None else self._feeds
        single = outputs is None or isinstance(outputs, Var)
        outs = [self.vars[-1]] if outputs is None else ([outputs] if single else list(outputs))
        values = self._run(outs, self._feeds)
        return values[0] if single else values

    def gradients(self, cost, wrt=None):
        """build_grad (seed 004, Alg. 5-6): symbolic gradients of ``cost`` -- new nodes of
        this same graph, made by the ops' own VJP rules. Pruned to the paths from ``wrt``
        (default: all parameters) to the cost."""
        if cost.size != 1:
            raise RetrogradError(f"Graph.gradients: the cost must be a single number, got shape "
                                 f"{cost.shape}")
        wrt = self.params if wrt is None else list(wrt)
        key = ("grads", id(cost), tuple(id(w) for w in wrt))
        if key not in self._cache:
            _fuse_log_softmax(cost)
            with enable_grad():
                gs = autodiff.grad(cost, wrt, create_graph=True, allow_unused=True)
            self._cache[key] = [g if g is not None else Tensor._make(np.zeros(w.shape, w.dtype))
                                for g, w in zip(gs, wrt)]
        return self._cache[key]

    def backward(self, cost, feeds=None):
        """Run forward and backward for ``cost`` with ``feeds`` (default: the last ones
        given to forward); each parameter's ``.grad`` becomes an ndarray. Returns the cost."""
        self._feeds = feeds if feeds is not None else self._feeds
        grads = self.gradients(cost)
        values = self._run([cost] + grads, self._feeds)
        for p, g in zip(self.params, values[1:]):
            p.grad = g
        return values[0]

    # ---- looking at it
    def program(self, outputs=None, optimized=True):
        """The lowered (and by default optimised) Program for ``outputs``."""
        outs = [self.vars[-1]] if outputs is None else (
            [outputs] if isinstance(outputs, Var) else list(outputs))
        prog = lower(outs, self.inputs + self.params)
        return optimize(prog) if optimized else prog

    def __str__(self):
        lines = [f"Graph {self.name or ''}".rstrip()]
        for v in self.vars:
            if v.kind == "op":
                args = ", ".join(f"%{a.index}" if isinstance(a, Var) else
                                 (repr(a) if not isinstance(a, Tensor) else f"const{a.shape}")
                                 for a in v._inputs)
                lines.append(f"  %{v.index} = {v._op.name}({args})  {v.shape} {v.dtype}")
            else:
                lines.append(f"  %{v.index} = {v.kind} '{v.name}'  {v.shape} {v.dtype}")
        return "\n".join(lines)

    def to_dot(self, outputs=None):
        """Graphviz DOT text of the graph (inputs, parameters and op nodes)."""
        out = ["digraph G {", '  rankdir=TB; node [fontname="Helvetica", fontsize=10];']
        for v in self.vars:
            label = (f"{v.name}\\n{v.shape}" if v.kind != "op" else f"{v._op.name}\\n{v.shape}")
            shape = {"input": "box", "param": "box, style=filled, fillcolor=lightyellow"}.get(
                v.kind, "ellipse")
            out.append(f'  n{v.index} [label="{label}", shape={shape}];')
            for a in (v._inputs or ()) if v.kind == "op" else ():
                if isinstance(a, Var):
                    out.append(f"  n{a.index} -> n{v.index};")
        out.append("}")
        return "\n".join(out)


def _fuse_log_softmax(cost):
    """Rewrite log(softmax(z)) as log_softmax(z) before differentiating: the same value,
    finite where softmax underflows, and its gradient is the fused g - softmax·Σg
    (softmax - onehot for one-hot targets) instead of a division by softmax."""
    from ..ops import REGISTRY
    for v in autodiff._toposort([cost]):
        if (isinstance(v, Var) and v._op is not None and v._op.name == "log"
                and isinstance(v._inputs[0], Var) and v._inputs[0]._op is not None
                and v._inputs[0]._op.name == "softmax"):
            s = v._inputs[0]
            v._op, v._inputs, v._params = REGISTRY["log_softmax"], s._inputs, dict(s._params)


# ---------------------------------------------------------------- tracing

def _flatten(obj, leaves):
    if isinstance(obj, Tensor):
        leaves.append(obj)
        return ("leaf", len(leaves) - 1)
    if isinstance(obj, (tuple, list)):
        return (type(obj), [_flatten(o, leaves) for o in obj])
    if isinstance(obj, dict):
        return (dict, [(k, _flatten(v, leaves)) for k, v in obj.items()])
    if obj is None or isinstance(obj, (int, float, bool, str)):
        return ("value", obj)
    raise TraceError(f"rg.compile: a compiled function must return tensors (or tuples, lists "
                     f"and dicts of them), not {type(obj).__name__}")


def _unflatten(tree, values):
    kind, body = tree
    if kind == "leaf":
        return Tensor._make(values[body])
    if kind == "value":
        return body
    if kind is dict:
        return {k: _unflatten(v, values) for k, v in body}
    return kind(_unflatten(v, values) for v in body)


def _signature(args):
    sig = []
    for a in args:
        if isinstance(a, (Tensor, np.ndarray)):
            arr = a.data if isinstance(a, Tensor) else a
            sig.append(("array", arr.shape, arr.dtype.str))
        elif isinstance(a, (int, float, bool, str, type(None))):
            sig.append(("value", type(a), a))
        else:
            raise TraceError(f"rg.compile: cannot pass a {type(a).__name__} to a compiled "
                             "function; pass tensors, arrays or Python numbers")
    return tuple(sig)


class Compiled:
    """A traced-and-compiled function (see ``compile``)."""

    def __init__(self, fn, passes=PASSES, fallback=None, persistent_outputs=False):
        if fallback not in (None, "eager"):
            raise ValueError("rg.compile: fallback must be None or 'eager'")
        self.fn, self.passes, self.fallback = fn, passes, fallback
        self.persistent_outputs = persistent_outputs
        self.cache = {}
        functools.update_wrapper(self, fn)

    def trace(self, *args):
        """Trace ``fn`` for these arguments' signature; returns the cache entry."""
        g = Graph(name=getattr(self.fn, "__name__", "fn"))
        sym = []
        for i, a in enumerate(args):
            if isinstance(a, (Tensor, np.ndarray)):
                arr = a.data if isinstance(a, Tensor) else a
                sym.append(g.input(f"arg{i}", arr.shape, arr.dtype))
            else:
                sym.append(a)
        try:
            with enable_grad(), Tracer(g):
                result = self.fn(*sym)
        finally:
            _dummies.clear()            # the stand-ins are only needed while tracing
        leaves = []
        tree = _flatten(result, leaves)
        inputs = [s for s in sym if isinstance(s, Var)]
        exe = _compile_program(leaves, inputs, self.passes, self.persistent_outputs,
                               name=g.name if g.name.isidentifier() else "fn")
        return {"graph": g, "exe": exe, "tree": tree, "n_inputs": len(inputs)}

    def __call__(self, *args):
        key = _signature(args)
        entry = self.cache.get(key)
        if entry is None:
            try:
                entry = self.cache[key] = self.trace(*args)
            except TraceError as e:
                if self.fallback != "eager":
                    raise
                warnings.warn(f"rg.compile: running {self.__name__} eagerly: {e}", stacklevel=2)
                entry = self.cache[key] = {"eager": True}
        if entry.get("eager"):
            return self.fn(*(Tensor(a) if isinstance(a, np.ndarray) else a for a in args))
        arrays = [a.data if isinstance(a, Tensor) else a for a in args
                  if isinstance(a, (Tensor, np.ndarray))]
        exe = entry["exe"]
        values = exe(*arrays, *_captured(exe))
        return _unflatten(entry["tree"], values)

    def program(self, *args):
        """The optimised Program this function compiles to for these arguments."""
        key = _signature(args)
        if key not in self.cache:
            self.cache[key] = self.trace(*args)
        return self.cache[key]["exe"].program

    def source(self, *args):
        """The generated Python source for these arguments."""
        self.program(*args)
        return self.cache[_signature(args)]["exe"].source


def _captured_tensors(exe):
    """The tensors a traced function captured (its live parameters), in argument order."""
    return [n.source for n in exe.program.externals
            if isinstance(n.source, Tensor) and not isinstance(n.source, Var)]


def _captured(exe):
    """Their current arrays, read at every call (optimizers update them in place)."""
    return [t._data for t in _captured_tensors(exe)]


def compile(fn=None, *, passes=PASSES, fallback=None):
    """Trace ``fn`` into a graph once per input signature (shapes, dtypes, Python
    values), optimise it, and run the generated code on later calls.

    It composes with the function transforms: ``rg.compile(rg.value_and_grad(loss))``
    compiles loss and gradient together. Tensors the function captures that require
    grad (model parameters) are read afresh on every call; other captured tensors are
    constants, fixed at trace time. Python control flow on traced values cannot be
    traced: it raises a TraceError, or with ``fallback='eager'`` runs ``fn`` eagerly."""
    if fn is None:
        return lambda f: Compiled(f, passes, fallback)
    return Compiled(fn, passes, fallback)


def compile_step(model, loss_fn, optimizer, passes=PASSES):
    """A whole training step as one compiled call: ``step(x, y) -> (loss, output)``.

    Forward, loss and the gradients of every parameter run as one generated function;
    then the optimizer updates the parameters in place, where the next call reads them.
    For an elementwise optimizer (all of retrograd.optim; see optim.fused) the parameters and gradients
    live in one flat array per parameter group (optim.fused): the generated code writes
    every gradient straight into its slice, and the whole update is one call of the
    optimizer's own rule. ``optimizer.state`` and ``p.grad`` stay per parameter, as after
    an eager step. Gives the same numbers as the eager step up to float rounding."""
    from ..optim.fused import FusedUpdate, can_fuse
    params = [p for p in model.parameters() if p.requires_grad]
    fused = FusedUpdate(optimizer, params) if can_fuse(optimizer) else None

    def loss_and_grads(x, y):
        out = model(x)
        loss = loss_fn(out, y)
        grads = autodiff.grad(loss, params, create_graph=True, allow_unused=True)
        return loss, out, [g if g is not None else Tensor._make(np.zeros(p.shape, p.dtype))
                           for g, p in zip(grads, params)]

    compiled = Compiled(loss_and_grads, passes, persistent_outputs=True)
    fast = {}          # signature -> (generated function, captured tensors, copies): the hot path

    def prepare(xd, yd):
        compiled.program(xd, yd)                    # trace and compile; runs nothing
        exe = compiled.cache[_signature((xd, yd))]["exe"]
        copies = []     # gradients the code cannot write into the flat array directly
        if fused is not None:
            for i, g in enumerate(fused.grad_arrays, start=2):
                if not exe.bind_output(i, g):
                    copies.append((i, g))
        return exe, _captured_tensors(exe), copies, fused and fused.generation

    def step(x, y):
        xd = x.data if isinstance(x, Tensor) else np.asarray(x)
        yd = y.data if isinstance(y, Tensor) else np.asarray(y)
        key = (xd.shape, xd.dtype, yd.shape, yd.dtype)
        layout = fused and fused.sync()             # the flat layout and state still hold?
        hit = fast.get(key)
        if hit is None or hit[3] != layout:
            hit = fast[key] = prepare(xd, yd)       # new signature, or new parameter groups
        exe, captured, copies, _ = hit
        outs = exe(xd, yd, *[t._data for t in captured])
        if fused is None:
            for p, g in zip(params, outs[2:]):
                p.grad = Tensor._make(g)
            optimizer.step()
        else:
            for i, g in copies:
                np.copyto(g, outs[i])
            fused.update()
        return Tensor._make(outs[0]), Tensor._make(outs[1])

    step.fused = fused
    step.prepared = fast  # per signature: (executable, captured, copies, layout generation)
    step.compiled = compiled
    return step
