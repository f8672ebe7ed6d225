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

import collections
import functools
import threading
import warnings

import numpy as np

from .. import autodiff
from ..arrays import require_numpy
from ..errors import RetrogradError, ShapeError, TraceError
from ..tensor import Tensor, enable_grad
from .numba_backend import executable, resolve, update_kernel
from .ir import Tracer, Var, _dummies
from .program import lower, optimize

PASSES = ("fold", "simplify", "cse", "dce")


def _compile_program(outputs, externals, passes=PASSES, persistent_outputs=False, name="compiled",
                     backend="numpy"):
    _dummies.clear()                    # tracing is over: drop its zero stand-ins
    prog = lower(outputs, externals)
    prog = optimize(prog, passes) if passes else prog
    return executable(prog, backend, reuse=bool(passes), persistent_outputs=persistent_outputs,
                      name=name)


# ---------------------------------------------------------------- define-then-run

class Graph:
    """A computation declared first and run later (Marian's expression graph).

        g = Graph()
        x = g.input("x", shape=(500, 784)); w1 = g.param("w1", shape=(784, 100))
        cost = ...rg ops on x, w1...
        g.forward({x: X})        # -> value of the cost (the last node the user built)
        g.backward(cost)         # -> fills w1.grad
    """

    def __init__(self, name: str | None = None):
        self.name = name
        self.vars: list[Var] = []
        self._feeds = None
        self._cache = {}
        self._last = None            # the last node the user built (not a gradient node)
        self._cost = None            # the node last passed to backward
        self._building_grads = False

    def _register(self, v):
        self.vars.append(v)
        self._cache.clear()          # the graph changed
        if not self._building_grads:
            self._last = v
        return len(self.vars) - 1

    def _default_output(self):
        """What forward returns by default: the cost given to backward, else the last node
        the user built -- never a gradient node that backward added after it."""
        out = self._cost if self._cost is not None else self._last
        if out is None:
            raise RetrogradError("Graph.forward: the graph is empty")
        return out

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
        by default, of the cost (the node last passed to ``backward``, else the last node
        built, gradients not counted), as ndarrays."""
        self._feeds = feeds if feeds is not None else self._feeds
        single = outputs is None or isinstance(outputs, Var)
        outs = [self._default_output()] if outputs is None else ([outputs] if single else list(outputs))
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
            self._building_grads = True
            try:
                with enable_grad():
                    gs = autodiff.grad(cost, wrt, create_graph=True, allow_unused=True)
            finally:
                self._building_grads = False
            self._cache[key] = [g if g is not None else Tensor._make(np.zeros(w.shape, w.dtype))
                                for g, w in zip(gs, wrt)]
        return self._cache[key]

    def backward(self, cost, feeds=None):
        """Run forward and backward for ``cost`` with ``feeds`` (default: the last ones
        given to forward); each parameter's ``.grad`` becomes an ndarray. Returns the cost."""
        self._feeds = feeds if feeds is not None else self._feeds
        self._cost = cost
        grads = self.gradients(cost)
        values = self._run([cost] + grads, self._feeds)
        for p, g in zip(self.params, values[1:]):
            p.grad = g
        return values[0]

    # ---- looking at it
    def program(self, outputs=None, optimized=True):
        """The lowered (and by default optimised) Program for ``outputs``."""
        outs = [self._default_output()] if outputs is None else (
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


_TRACE_LOCK = threading.RLock()     # traces share the zero stand-ins (ir._dummies): one at a time
CACHE_SIZE = 64                     # traces kept per compiled function (least recently used go)
RETRACE_WARNING = 8                 # traces of one function before a warning says why


def _static_key(i, a):
    """A cache key for a static argument's value (NaN and -0.0 keyed by their bits)."""
    if isinstance(a, float):
        return (float, a.hex())
    if isinstance(a, (Tensor, np.ndarray)):
        raise ValueError(f"rg.compile: static_argnums {i} is an array; static arguments are "
                         "Python values (hashable)")
    try:
        hash(a)
    except TypeError:
        raise TraceError(f"rg.compile: static argument {i} ({type(a).__name__}) must be "
                         "hashable") from None
    return (type(a), a)


class Compiled:
    """A traced-and-compiled function (see ``compile``)."""

    def __init__(self, fn, passes=PASSES, fallback=None, persistent_outputs=False,
                 static_argnums=(), cache_size=CACHE_SIZE, backend="auto"):
        self.backend = resolve(backend)
        if fallback not in (None, "eager"):
            raise ValueError("rg.compile: fallback must be None or 'eager'")
        static = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
        if not all(isinstance(i, int) for i in static):
            raise ValueError(f"rg.compile: static_argnums must be ints, got {static_argnums!r}")
        if not (isinstance(cache_size, int) and cache_size >= 1):
            raise ValueError(f"rg.compile: cache_size must be a positive int, got {cache_size!r}")
        self.fn, self.passes, self.fallback = fn, passes, fallback
        self.persistent_outputs = persistent_outputs
        self.static, self.cache_size = frozenset(static), cache_size
        self.cache = collections.OrderedDict()   # signature -> entry, least recently used first
        self.traces = 0
        self._lock = threading.RLock()           # the cache's bookkeeping, across threads
        functools.update_wrapper(self, fn)

    def signature(self, args):
        """The cache key of a call: shapes and dtypes of arrays, the type of a Python
        float (a traced input), the value of anything else (static). None: ``args``
        hold traced values (a call inside another trace, which then runs inline)."""
        sig = []
        static, n = self.static, len(args)
        for i, a in enumerate(args):
            if static and self._is_static(i, n):     # (the common no-static call: one test)
                sig.append(_static_key(i, a))
            elif isinstance(a, Tensor):
                if isinstance(a, Var):
                    return None
                d = a._data
                if type(d) is not np.ndarray:    # (CuPy's dtypes would match NumPy's keys)
                    require_numpy(d, f"rg.compile: argument {i} of {self.__name__}")
                sig.append((d.shape, d.dtype))
            elif isinstance(a, (np.ndarray, np.generic)):    # (np.float64 is strong: an array)
                sig.append((a.shape, a.dtype))
            elif type(a) is float:
                sig.append(float)
            elif isinstance(a, (int, bool, str, type(None), float)):
                sig.append(_static_key(i, a))
            else:
                require_numpy(a, f"rg.compile: argument {i} of {self.__name__}")
                raise TraceError(f"rg.compile: cannot pass a {type(a).__name__} to a compiled "
                                 "function; pass tensors, arrays or Python numbers")
        return tuple(sig)

    def _is_static(self, i, n):
        """Whether argument ``i`` of ``n`` is in static_argnums (negative ones count from
        the end, as in jax.jit)."""
        return bool(self.static) and (i in self.static or i - n in self.static)

    def _is_input(self, i, a, n):
        return not self._is_static(i, n) and (
            isinstance(a, (Tensor, np.ndarray, np.generic)) or type(a) is float)

    def trace(self, *args):
        """Trace ``fn`` for these arguments' signature; returns the cache entry."""
        for i in self.static:
            if not -len(args) <= i < len(args):
                raise ValueError(f"rg.compile: static_argnums {i} is out of range for "
                                 f"{len(args)} arguments")
        g = Graph(name=getattr(self.fn, "__name__", "fn"))
        sym, positions = [], []
        for i, a in enumerate(args):
            if not self._is_input(i, a, len(args)):
                sym.append(a)
                continue
            positions.append(i)
            if type(a) is float:
                sym.append(Var(g, "input", (), np.float64, name=f"arg{i}", weak=True))
            else:
                arr = a._data if isinstance(a, Tensor) else np.asarray(a)
                sym.append(g.input(f"arg{i}", arr.shape, arr.dtype))
        with _TRACE_LOCK:
            try:
                with enable_grad(), Tracer(g) as tracer:
                    result = self.fn(*sym)
            finally:
                _dummies.clear()            # the stand-ins are only needed while tracing
        leaves = []
        tree = _flatten(result, leaves)
        if not leaves and not tracer.updates:
            raise TraceError(
                f"rg.compile: {getattr(self.fn, '__name__', 'the function')} returned no tensor "
                f"({type(result).__name__}): traced code has no side effects, so a compiled "
                "function must return the tensors it computes")
        inputs = [sym[i] for i in positions]
        # buffers assigned in the trace (BatchNorm's running statistics): their new values
        # are extra outputs after the function's own, written back at every call
        state = [(len(leaves) + k, b) for k, (b, _) in enumerate(tracer.updates.values())]
        leaves += [v for _, v in tracer.updates.values()]
        exe = _compile_program(leaves, inputs, self.passes, self.persistent_outputs,
                               name=g.name if g.name.isidentifier() else "fn", backend=self.backend)
        return {"graph": g, "exe": exe, "tree": tree, "n_inputs": len(inputs),
                "positions": tuple(positions), "captured": _captured_tensors(exe),
                "state": state, "modules": tuple(tracer.modules.values()),
                "modes": tuple(m.training for m in tracer.modules.values())}

    def _entry(self, key, args):
        """The cache entry for ``key``, tracing on a miss (bounded LRU, warning on retraces).
        A trace holds for the train/eval modes its modules had (Dropout, BatchNorm trace
        differently): in other modes the key is extended by them, and traced again."""
        with self._lock:
            entry = self._entry_locked(key, args)
            if entry.get("modules") and entry["modes"] != _modes(entry):
                entry = self._entry_locked(key + (_modes(entry),), args)
            return entry

    def _entry_locked(self, key, args):
        entry = self.cache.get(key)
        if entry is not None:
            self.cache.move_to_end(key)
            return entry
        try:
            entry = self.trace(*args)
        except TraceError as e:
            if self.fallback != "eager":
                raise
            warnings.warn(f"rg.compile: running {self.__name__} eagerly: {e}", stacklevel=4)
            entry = {"eager": True, "modules": ()}
        self.cache[key] = entry
        self.traces += 1
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        if self.traces == RETRACE_WARNING:      # once, as torch.compile's recompile warning
            warnings.warn(
                f"rg.compile: {self.__name__} has been traced {self.traces} times (keeping the "
                f"last {self.cache_size}); each new shape, dtype or static value (Python ints, "
                f"bools, strings, static_argnums) costs a trace -- pass values that change as "
                f"arrays or Python floats, which are traced inputs", stacklevel=4)
        return entry

    def __call__(self, *args):
        key = self.signature(args)
        if key is None:                           # inside another trace: trace through fn
            return self.fn(*args)
        entry = self.cache.get(key)
        if entry is None or len(self.cache) > 1 or (entry["modules"]
                                                     and entry["modes"] != _modes(entry)):
            entry = self._entry(key, args)
        if "eager" in entry:
            return self.fn(*(Tensor(a) if isinstance(a, np.ndarray) else a for a in args))
        arrays = [a._data if isinstance(a, Tensor) else a for a in map(args.__getitem__,
                                                                        entry["positions"])]
        try:
            values = entry["exe"](*arrays, *[t._data for t in entry["captured"]])
        except Exception:
            _captured_on_host(entry["captured"])     # a clearer error if Module.to moved them
            raise
        _write_state(entry["state"], values)
        return _unflatten(entry["tree"], values)

    def program(self, *args):
        """The optimised Program this function compiles to for these arguments."""
        return self._entry(self.signature(args), args)["exe"].program

    def source(self, *args):
        """The generated Python source for these arguments."""
        return self._entry(self.signature(args), args)["exe"].source


def _host_inputs(x, y):
    """compile_step's inputs as ndarrays (arrays of another namespace are refused)."""
    require_numpy(x, "compile_step: the input batch")
    require_numpy(y, "compile_step: the target batch")
    return np.asarray(x), np.asarray(y)


def _modes(entry):
    """The train/eval modes now of the modules a trace called."""
    return tuple(m.training for m in entry["modules"])


def _captured_on_host(captured):
    """Refuse captured tensors that Module.to moved to another namespace since the trace."""
    for t in captured:
        require_numpy(t._data, f"rg.compile: a captured tensor of shape {t.shape} was moved by "
                      "Module.to after the trace")


def _write_state(state, values):
    """Each buffer assigned in the trace takes its new value (a copy: outputs may be
    buffers the next call overwrites), as the eager assign does."""
    for i, buf in state:
        buf._data = np.array(values[i], dtype=buf.dtype)


def _captured_tensors(exe):
    """The tensors a traced function captured (its live parameters), in argument order."""
    return [n.source for n in exe.program.externals
            if isinstance(n.source, Tensor) and not isinstance(n.source, Var)]


def _captured(exe):
    """Their current arrays, read at every call (optimizers update them in place)."""
    return [t._data for t in _captured_tensors(exe)]


def compile(fn=None, *, passes=PASSES, fallback=None, static_argnums=(), cache_size=CACHE_SIZE,
            backend="auto"):
    """Trace ``fn`` into a graph once per input signature, optimise it, and run the
    generated code on later calls.

    Arguments: tensors, arrays and Python floats are traced inputs (a float keeps
    Python's weak promotion: ``float32 * s`` stays float32); the signature is their
    shapes and dtypes. Python ints, bools, strings and None, and the arguments listed in
    ``static_argnums`` (as in jax.jit), are static: their values are baked into the
    trace, and each new value traces again. The last ``cache_size`` traces are kept
    (least recently used dropped); a function traced 8 times gets a warning.

    It composes with the function transforms: ``rg.compile(rg.value_and_grad(loss))``
    compiles loss and gradient together. Tensors the function captures that require
    grad (model parameters) and module buffers (nn.Buffer: running statistics, updated by
    every call that assigns them, as eagerly) are read afresh on every call; every other
    captured tensor or array is a constant, copied at trace time (as in JAX): changing it in place later
    does not change the compiled function -- pass it as an argument instead. Python
    control flow on traced values cannot be traced: it raises a TraceError, or with
    ``fallback='eager'`` runs ``fn`` eagerly.

    A compiled function may be called from several threads (its buffers are used by one
    call at a time); traces are made one at a time and see only their own thread's ops.

    ``backend``: "numpy" (generated NumPy calls), "numba" (fused loops compiled by Numba,
    ``pip install 'retrograd[fast]'``; see graph/numba_backend.py) or "auto" (the default:
    $RETROGRAD_BACKEND if set, else, where Numba is installed, each traced program on the
    backend that wins on it: Numba for many small nodes that nearly all lower, see
    graph/numba_backend.choose)."""
    resolve(backend)        # an unknown name or a missing Numba fails here, not at the call
    def make(f):
        return Compiled(f, passes, fallback, static_argnums=static_argnums, cache_size=cache_size,
                        backend=backend)
    return make if fn is None else make(fn)


def compile_step(model, loss_fn, optimizer, passes=PASSES, on_gradients=None, backend="auto"):
    """A whole training step as one compiled call: ``step(x, y) -> (loss, output)``.

    Forward, loss and the gradients of every parameter run as one generated function;
    then the optimizer updates the parameters in place, where the next call reads them.
    For an elementwise optimizer (all of retrograd.optim; see optim.fused) the parameters and gradients
    live in one flat array per parameter group (optim.fused): the generated code writes
    every gradient straight into its slice, and the whole update is one call of the
    optimizer's own rule. ``optimizer.state`` and ``p.grad`` stay per parameter, as after
    an eager step. Gives the same numbers as the eager step up to float rounding.
    One training loop's step: not for concurrent calls from several threads (the
    optimizer's update and the returned gradients are shared). ``backend`` as rg.compile's;
    on "numba" the fused update is one njit loop per flat array (same numbers), run at the
    end of the step's last kernel where the program ends in one (one call a step; not
    with on_gradients, which must see the gradients before the update). ``step.backend``:
    the backend asked for, then (after the first call) the one the program runs on.
    on_gradients: optional ``on_gradients(arrays)`` called between the gradients and the
    update with the gradient arrays, to change in place (rg.distributed sums them over
    MPI ranks): the flat gradient array of each parameter group and dtype (fused), else
    one array per parameter."""
    from ..optim.fused import FusedUpdate, can_fuse
    backend = resolve(backend, "compile_step")
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        require_numpy(p._data, f"compile_step: a parameter of shape {p.shape}")
    fused = FusedUpdate(optimizer, params) if can_fuse(optimizer) else None

    def loss_and_grads(x, y):
        out = model(x)
        loss = loss_fn(out, y)
        grads = autodiff.grad(loss, params, create_graph=True, allow_unused=True)
        return loss, out, [g if g is not None else Tensor._make(np.zeros(p.shape, p.dtype))
                           for g, p in zip(grads, params)]

    compiled = Compiled(loss_and_grads, passes, persistent_outputs=True, backend=backend)
    modules = list(model.modules()) if hasattr(model, "modules") else []
    fast = {}          # signature -> (generated function, captured tensors, copies): the hot path

    def prepare(xd, yd):
        entry = compiled._entry(compiled.signature((xd, yd)), (xd, yd))     # runs nothing
        exe = entry["exe"]
        step.backend = exe.backend      # ('auto': the program's choice)
        copies = []     # gradients the code cannot write into the flat array directly
        slots = None    # the updates the step's last kernel runs itself
        if fused is not None:
            # a Numba step's update is one compiled loop per flat array, traced from the
            # optimizer's own _update (optim.rule); NumPy's where it cannot be traced
            fused.lowering = update_kernel if exe.backend == "numba" else None
            for i, g in enumerate(fused.grad_arrays, start=2):
                if not exe.bind_output(i, g):
                    copies.append((i, g))
            if exe.backend == "numba" and not copies and on_gradients is None:
                # ... and, once every gradient is written where the update reads it, that
                # loop runs at the end of the step's own last kernel: one call a step
                slots = exe.update_slots or exe.fuse_update(
                    [b.steady_rule(optimizer) for b in fused.buckets],
                    [b.w.dtype for b in fused.buckets])
        return (exe, _captured_tensors(exe), copies, fused and fused.generation, entry["state"],
                slots)

    def step(x, y):
        xd = x.data if isinstance(x, Tensor) else x
        yd = y.data if isinstance(y, Tensor) else y
        if type(xd) is not np.ndarray or type(yd) is not np.ndarray:
            xd, yd = _host_inputs(xd, yd)
        # (a step after model.eval() runs the eval-mode trace: no dropout, running stats)
        key = (xd.shape, xd.dtype, yd.shape, yd.dtype, *[m.training for m in modules])
        layout = fused and fused.sync()             # the flat layout and state still hold?
        hit = fast.get(key)
        if hit is None or hit[3] != layout:
            if len(fast) >= CACHE_SIZE:
                fast.pop(next(iter(fast)))          # bounded, as Compiled's own cache
            hit = fast[key] = prepare(xd, yd)       # new signature, or new parameter groups
        exe, captured, copies, _, state, slots = hit
        try:
            if slots is None:
                outs = exe(xd, yd, *[t._data for t in captured])
            else:
                outs = exe(xd, yd, *[t._data for t in captured],
                           slots.args(optimizer, fused.buckets))
        except Exception:
            _captured_on_host(captured)
            raise
        step.backend = exe.backend          # (NumPy's, once Numba could not compile it)
        _write_state(state, outs)           # running statistics, as the eager step
        if fused is None:
            if on_gradients is not None:
                on_gradients(outs[2:])
            for p, g in zip(params, outs[2:]):
                p.grad = Tensor._make(g)
            optimizer.step()
        else:
            for i, g in copies:
                np.copyto(g, outs[i])
            if on_gradients is not None:
                on_gradients([b.g for b in fused.buckets])
            fused.update(() if slots is None else slots.ran())
        return Tensor._make(outs[0]), Tensor._make(outs[1])

    step.fused = fused
    step.prepared = fast  # per signature: (executable, captured, copies, layout generation, state,
    #                                      the fused updates' UpdateSlots or None)
    step.compiled = compiled
    step.backend = compiled.backend
    return step
