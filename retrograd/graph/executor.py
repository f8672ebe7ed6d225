"""Memory planning and code generation: a Program becomes one straight-line
Python function of NumPy calls writing into preallocated buffers.

Planning walks the schedule once, tracking for every value the *storage* it
lives in (an op whose result may be a view -- reshape, transpose, slicing --
shares its input's storage). A storage we allocated is free again after the
last use of every value living in it (liveness). An op that can write into
``out=`` gets, in order of preference:

  1. the buffer of an input that dies here (elementwise ops only: in-place),
  2. a free buffer of the same shape and dtype from the pool (reuse),
  3. a new buffer, allocated once when the plan is made (preallocation).

An elementwise op's buffer is laid out in memory as NumPy would lay out its result
eagerly (the node's ``layout``, recorded at trace time): the batch-last images of
conv2d stay batch-last, so the views and reshapes downstream stay views, not copies.

Code generation then emits one line per node, e.g.
``v7 = f7(v3, v5, out=b2)``: no interpreter loop, no dict lookups, no
per-call allocation for the planned buffers.
"""
from __future__ import annotations

import functools
import re
import threading
from threading import get_ident

import numpy as np

from .. import blas
from ..ops.base import Kernel, out_kw
from .ir import allocate


def select_kernel(n):
    """The cheapest way to compute op node ``n``: the specialised NumPy expression its op's
    record gives for it (``Op.kernel``), else a call of the op's own forward."""
    if n.weak:      # arithmetic on Python-float arguments stays a Python float, as in eager
        return Kernel(lambda a, o, f=f"f{n.id}": f"float({f}({', '.join(a)}))")
    op = n.op
    k = op.kernel(n) if op.kernel is not None else None
    if k is not None:
        return k
    return Kernel(lambda a, o, f=f"f{n.id}": f"{f}({', '.join(a)}{out_kw(o)})",
                  op.writes_out, op.elementwise, fresh=op.fresh)


class Plan:
    def __init__(self):
        self.out_buffer = {}      # node -> buffer index (written with out=)
        self.buffers = []         # (shape, dtype, layout) of each preallocated buffer
        self.inplace = 0          # how many ops overwrite a dying input
        self.reused = 0           # how many ops reuse a pooled buffer
        self.peak_bytes = 0       # bytes of all preallocated buffers
        self.copy_outputs = set() # outputs that are views of planned buffers


def plan_memory(prog, reuse=True, persistent_outputs=False, kernels=None, layouts=True):
    """Assign preallocated buffers to the ops that can write into ``out=``.

    Outputs are never put in a shared buffer: by default they are fresh arrays on
    every call (safe to hand to the user); with ``persistent_outputs`` each gets a
    buffer of its own that later calls overwrite (for internal use such as gradients
    consumed at once by an optimizer). ``layouts``: elementwise results get buffers laid
    out as their nodes' layouts (else all are in C order)."""
    plan = Plan()
    if kernels is None:
        kernels = {n: select_kernel(n) for n in prog.nodes if n.kind == "op"}
    outputs = {id(o) for o in prog.outputs}
    last_use = {}
    for i, n in enumerate(prog.nodes):
        for x in n.inputs:
            last_use[id(x)] = i
    dies_at = {}
    for k, i in last_use.items():
        if k not in outputs:
            dies_at.setdefault(i, []).append(k)

    storage = {}                  # id(value) -> tuple of the planned buffers it may live in
    holders = {}                  # buffer -> number of live values living in it
    free = {}                     # (shape, dtype) -> buffers nobody lives in

    def layout(n, k):
        return n.layout if layouts and k.elementwise else None

    def new_buffer(n, k):
        plan.buffers.append((n.shape, n.dtype, layout(n, k)))
        plan.peak_bytes += int(np.prod(n.shape)) * n.dtype.itemsize
        return len(plan.buffers) - 1

    for i, n in enumerate(prog.nodes):
        buf = None
        k = kernels.get(n)
        if k is not None and k.writes_out and id(n) not in outputs:
            key = (n.shape, n.dtype, layout(n, k))
            if reuse and k.elementwise:             # 1. overwrite an input dying here
                for x in n.inputs:
                    b = plan.out_buffer.get(x)
                    if (b is not None and storage.get(id(x)) == (b,) and holders[b] == 1
                            and last_use.get(id(x)) == i and plan.buffers[b] == key):
                        buf = b
                        plan.inplace += 1
                        break
            if buf is None and reuse and free.get(key):  # 2. a freed buffer
                buf = free[key].pop()
                plan.reused += 1
            if buf is None:                          # 3. a new one
                buf = new_buffer(n, k)
        elif k is not None and k.writes_out and persistent_outputs:
            plan.out_buffer[n] = new_buffer(n, k)       # an output's own buffer, never shared
        if buf is not None:
            plan.out_buffer[n] = buf
            storage[id(n)] = (buf,)
        elif k is not None and not k.fresh:
            # may be a view of its inputs: it keeps their buffers alive
            storage[id(n)] = tuple({b for x in n.inputs for b in storage.get(id(x), ())})
        else:
            storage[id(n)] = ()
        if id(n) in outputs and storage[id(n)] and n not in plan.out_buffer:
            plan.copy_outputs.add(n)   # a view into a reused buffer: hand out a copy
        for b in storage[id(n)]:
            if b is not None:
                holders[b] = holders.get(b, 0) + 1
        for k in dies_at.get(i, ()):                 # liveness: release what dies here
            for b in storage.get(k, ()):
                if b is None:
                    continue
                holders[b] -= 1
                if holders[b] == 0:
                    free.setdefault(plan.buffers[b], []).append(b)
    return plan


def _bind(n, native=True):
    """The callable for an op node with its static parameters bound: ``op.run`` (an op's
    Numba form where it replaces a NumPy loop, ops/numba_forms.py), or with ``native`` False the
    NumPy forward itself."""
    fn = n.op.run if native else n.op.forward
    return functools.partial(fn, **n.params) if n.params else fn


def generate(prog, plan, kernels, name="compiled", extra=(), native=True):
    """Python source and namespace of ``run(*externals, *extra) -> tuple of outputs``
    (``extra``: names of parameters the function takes and ignores; ``native``: as _bind's)."""
    ns = {"np": np}
    names = {}
    lines = []
    args = []
    for k, n in enumerate(prog.externals):
        names[n] = f"x{k}"
        args.append(f"x{k}")
    args += extra
    for n in prog.nodes:
        if n.kind == "ext":
            continue
        if n.kind == "const":
            ns[f"c{n.id}"] = n.value      # Python scalars stay Python (weak) scalars
            names[n] = f"c{n.id}"
            continue
        k = kernels[n]
        ns[f"f{n.id}"] = _bind(n, native)
        ns.update(k.consts)
        out = f"b{plan.out_buffer[n]}" if n in plan.out_buffer else None
        v = names[n] = f"v{n.id}"
        lines.append(f"    {v} = {k.emit([names[i] for i in n.inputs], out)}  # {n.op.name}")
    outs = ", ".join(f"np.array({names[o]}, copy=True)" if o in plan.copy_outputs else names[o]
                     for o in prog.outputs)
    src = (f"def {name}({', '.join(args)}):\n" + "".join(line + "\n" for line in lines)
           + f"    return ({outs}{',' if outs else ''})\n")
    for b, spec in enumerate(plan.buffers):
        ns[f"b{b}"] = allocate(*spec)
    return src, ns


def _dot_work(n):
    """Multiply-adds of a 2-D product node (0 for any other node)."""
    if n.kind != "op" or n.op.lowering != "blas_dot" or any(len(i.shape) != 2 for i in n.inputs):
        return 0
    return int(np.prod(n.inputs[0].shape)) * n.inputs[1].shape[1]


class Executable:
    """A planned, generated program: ``exe(*arrays) -> list of arrays``."""

    def __init__(self, prog, reuse=True, persistent_outputs=False, name="compiled", native=True):
        self.program = prog
        self.native = native        # whether ops may run their Numba forms (_bind)
        kernels = {n: select_kernel(n) for n in prog.nodes if n.kind == "op"}
        self.plan = plan_memory(prog, reuse, persistent_outputs, kernels, self.buffer_layouts)
        self.source, ns = self._generate(prog, self.plan, kernels, name)
        self._code = compile(self.source, f"<retrograd {name}>", "exec")
        exec(self._code, ns)                                            # our own generated code
        self._name, self._fn = name, ns[name]
        self._const_outputs = [o for o in prog.outputs if o.kind == "const"]
        # Threads: the planned buffers belong to the thread that made this; any other thread
        # runs its own copy of the function with buffers of its own (made on its first call),
        # so concurrent calls neither wait nor mix values. The making thread pays one
        # get_ident() per call (~0.1 us); a lock would cost ~1 us and serialise the calls.
        # Persistent output buffers (compile_step's gradients) stay shared: such a step is
        # one training loop's, called by one thread at a time.
        self._owner = get_ident()
        self._local = threading.local()
        self._bindings = 0                   # bind_output calls, for the threads' copies
        self._outputs_own = {f"b{self.plan.out_buffer[o]}" for o in prog.outputs
                             if o in self.plan.out_buffer}
        # BLAS threads as $RETROGRAD_BLAS_THREADS names them, for programs whose products
        # OpenBLAS would split (retrograd.blas.pinned); None: BLAS left as it is
        self._blas = blas.pinned(max(map(_dot_work, prog.nodes), default=0))

    backend = "numpy"
    buffer_layouts = True      # elementwise buffers laid out as eagerly (plan_memory)

    def _generate(self, prog, plan, kernels, name):
        """(source, namespace) of the driver function; the Numba backend overrides it."""
        return generate(prog, plan, kernels, name, native=self.native)

    def _thread_fn(self):
        """This thread's copy of the generated function, with buffers of its own."""
        local = self._local
        if getattr(local, "bindings", None) != self._bindings:
            ns = dict(self._fn.__globals__)
            for b, spec in enumerate(self.plan.buffers):
                if f"b{b}" not in self._outputs_own:
                    ns[f"b{b}"] = allocate(*spec)
            exec(self._code, ns)
            local.fn, local.bindings = ns[self._name], self._bindings
        return local.fn

    def _located(self, e):
        """The error ``e`` raised inside the generated code, as eager ``apply`` would word
        it: the op that failed and its operand shapes, plus the generated line."""
        from ..errors import RetrogradError, ShapeError
        tb, line = e.__traceback__, None
        while tb is not None:
            if tb.tb_frame.f_code is self._fn.__code__:
                line = self.source.splitlines()[tb.tb_lineno - 1].strip()
                values = {**tb.tb_frame.f_globals, **tb.tb_frame.f_locals}
            tb = tb.tb_next
        if line is None:
            return e
        code, op = line.split("  # ", 1)
        operands = re.findall(r"\b[xvc]\d+\b", code.split("=", 1)[1])
        if isinstance(e, TypeError):
            kinds = ", ".join(str(getattr(values.get(a), "dtype", "?")) for a in operands)
            return RetrogradError(f"{op}: {e} (operand types: {kinds})\n  in compiled code: {code}")
        shapes = ", ".join(str(np.shape(values[a])) if a in values else "?" for a in operands)
        return ShapeError(f"{op}: {e} (operand shapes: {shapes})\n  in compiled code: {code}")

    def bind_output(self, i: int, array: np.ndarray) -> bool:
        """Make output ``i`` be written straight into ``array`` (same shape and dtype) on
        every call, instead of a buffer of its own -- e.g. a gradient into a slice of an
        optimizer's flat gradient. Only for an output with a persistent buffer that no
        other output shares; returns False (nothing changed) otherwise."""
        n = self.program.outputs[i]
        b = self.plan.out_buffer.get(n)
        if (b is None or self.program.outputs.count(n) != 1 or array.shape != n.shape
                or array.dtype != n.dtype):
            return False
        self._fn.__globals__[f"b{b}"] = array
        self._bindings += 1                  # other threads' copies must see it too
        return True

    def __call__(self, *arrays):
        if self._blas is None:
            return self._call(arrays)
        with self._blas:
            return self._call(arrays)

    def _call(self, arrays):
        fn = self._fn if get_ident() == self._owner else self._thread_fn()
        try:
            outs = fn(*arrays)
        except (ValueError, IndexError, TypeError) as e:
            raise self._located(e) from None
        if self._const_outputs:   # never hand out our constants themselves
            outs = tuple(np.array(o, copy=True) if isinstance(o, np.ndarray) else o for o in outs)
        return [o if isinstance(o, np.ndarray) else np.asarray(o) for o in outs]
