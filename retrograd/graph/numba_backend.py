"""The Numba backend: a planned Program lowered to ``numba.njit`` machine code.

The same Program and memory plan as the NumPy generator (executor.py); what changes is
how runs of nodes are computed. ``segments`` splits the schedule into

  seg    a run of lowerable nodes, generated as ONE njit function: chains of
         elementwise ops of one shape fused into one loop nest over their output
         (each op's ``scalar=`` form, inputs broadcast by index arithmetic, a value
         kept in a register unless a later node outside the loop needs it),
         reductions (sum, sum_to, max, min) as loops accumulating in float64,
         2-D matmul through NumPy's own BLAS (numba_blas.py), 2-D transposes as views,
         the fused softmax cross-entropy ops as row loops, and ops with a Numba form
         (``lowering=`` a plain-Python loop function in the op's record file, e.g.
         lstm_scan's whole time loop) as a call of it, njit-compiled
         (numba_helpers.loop_form);
  py     any other node (gather, sort, random, ...): the NumPy generator's line.

The Python driver is the NumPy generator's function with each segment one call, so the
plan's buffers, per-thread copies (Executable._thread_fn), bound outputs and error
messages are the NumPy backend's. A node that writes no planned buffer and needs nothing
of the open segment runs before it instead of splitting it (class_labels, weight views).

Compile latency: the njit functions of a program are one Python file under
``$RETROGRAD_CACHE_DIR/numba`` (default ``~/.cache/retrograd/numba``), named by a hash of
its text and written atomically; ``cache=True`` then keeps the machine code next to it,
so a second process loads it instead of compiling. Programs not loaded for
``$RETROGRAD_CACHE_DAYS`` days (default 30; 0 keeps everything) are removed, at most once a
day, when a program is cached (prune_cache).
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import inspect
import math
import operator
import os
import re
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np

from .. import blas
from ..errors import MissingDependency, RetrogradError, SettingError
from ..native import available, failure, form_dtypes, load_blas, raised_by_numba
from .executor import Executable, _bind, _dot_work, generate
from .ir import allocate

_FLOAT = (np.dtype(np.float32), np.dtype(np.float64))
BACKENDS = ("auto", "numpy", "numba")


def resolve(backend, who="rg.compile") -> str:
    """'numpy', 'numba' or 'auto' for a backend name. 'auto': $RETROGRAD_BACKEND if set,
    else 'auto' where Numba is installed -- each program then gets the backend that wins
    on it (``choose``) -- and 'numpy' where it is not."""
    if backend not in BACKENDS:
        raise SettingError(f"{who}: backend must be one of {', '.join(map(repr, BACKENDS))}, "
                           f"got {backend!r}")
    if backend == "auto":
        env = os.environ.get("RETROGRAD_BACKEND", "auto")
        if env not in BACKENDS:
            raise SettingError(f"{who}: RETROGRAD_BACKEND must be one of "
                               f"{', '.join(map(repr, BACKENDS))}, got {env!r}")
        if env != "auto":
            return resolve(env, who)
        return "auto" if available() else "numpy"
    if backend == "numba":
        if not available():
            raise MissingDependency(f"{who}: backend='numba' needs Numba and SciPy: "
                                    "pip install 'retrograd[fast]'")
        load_blas()
    return backend


# What 'auto' takes Numba for: a program of many small nodes nearly all of which lower
# (fused loops and one call instead of a NumPy call, ~1-2 us, per node). One interleaved
# in-process run (min of 15 blocks, load ~3.5, ms/step, NumPy backend vs Numba):
#   B2 90 op nodes, 100% lowered, 2.4k elements a node:  0.227 vs 0.110 (JAX 0.147)
#   B1 22 nodes, 82% lowered, 41k elements a node (the big products, tanh: NumPy calls):
#      1.852 vs 1.858 (JAX 1.898)
#   B4 HVP of B1, 45 nodes, 84%, 27k a node: 2.93 vs 3.03 (JAX 3.12)
#   B3 31 nodes, 71%, 219k a node; B5 78, 54%, 90k; B6 534, 46% (lstm_scan is NumPy's)
# and from the run, B5 (conv, pooling: NumPy nodes) 5.9 vs 7.4, B6 (lstm_scan)
# 11.1 vs 36.2. Fewer than AUTO_NODES nodes save too little per call to repay the first
# compile (seconds; a cached one loads in ~0.3 s).
AUTO_NODES = 48
AUTO_LOWERED = 0.9
AUTO_SIZE = 8192
# Numba's first compile takes ~0.1 s per lowered node (B2's 91 nodes: 8.4 s from an empty
# cache; an unrolled 32-step loop's ~330: 35 s): past AUTO_MAX_NODES the first call would
# cost more than 'auto' can know it repays
AUTO_MAX_NODES = 128


def choose(prog) -> str:
    """The backend 'auto' runs ``prog`` on (see AUTO_NODES above)."""
    ops = [n for n in prog.nodes if n.kind == "op" and not n.weak]
    if len(ops) > AUTO_MAX_NODES:
        return "numpy"
    kinds = [_kind(n) for n in ops]
    if any(k == "form" and getattr(n.op.lowering, "replaces_loop", False)
           for n, k in zip(ops, kinds)):
        # an op's own loop in place of a NumPy loop of many calls or passes (the LSTM's
        # time loop: B6 9.1 ms with Numba against 11.3; col2im and max pooling of batch-last
        # images: B5 5.99 against 8.84; bench/bench.py --cases B6 and B5, one run each)
        load_blas()
        return "numba"
    if len(ops) < AUTO_NODES:
        return "numpy"
    lowered = sum(k is not None for k in kinds)
    size = sum(math.prod(n.shape) for n in ops) / len(ops)
    if lowered >= AUTO_LOWERED * len(ops) and size <= AUTO_SIZE:
        load_blas()
        return "numba"
    return "numpy"


def for_run(backend, steps, who="fit") -> str:
    """The backend of a training run of ``steps`` steps (as ``resolve``; 'auto' stays
    NumPy for a run too short to repay Numba's first compile)."""
    backend = resolve(backend, who)
    return "numpy" if backend == "auto" and steps < AUTO_STEPS else backend


# ~seconds of first compile over ~0.1 ms saved a step (B2)
AUTO_STEPS = 10_000


# ---------------------------------------------------------------- what can be lowered

def _lit(v):
    """Source text of a scalar constant, or None (then the node is not lowered)."""
    if isinstance(v, (bool, np.bool_)):
        return repr(bool(v))
    if isinstance(v, (int, np.integer)):
        return repr(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        s = repr(f) if math.isfinite(f) else "np.nan" if f != f else "np.inf" if f > 0 else "-np.inf"
        return s if type(v) is float else f"np.{np.dtype(type(v)).name}({s})"
    if isinstance(v, tuple) and all(isinstance(e, (int, np.integer)) for e in v):
        return "(" + "".join(f"{int(e)}, " for e in v) + ")"      # a Numba form's geometry
    return None


def _scalar_expr(n, args):
    """One element of elementwise node ``n`` from the names ``args``, or None."""
    if n.op.lowering == "cast":
        return args[0] if n.dtype.kind == "f" else f"({args[0]} != 0)"
    if n.op.scalar is None:
        return None
    try:
        e = n.op.scalar(*args, **n.params)
    except (TypeError, ValueError):
        return None
    # (Numba has NumPy's fmod for scalars, not the math module's)
    return e.replace("math.fmod(", "np.fmod(") if isinstance(e, str) else None


# Numba computes math.tanh, math.exp, ... one element at a time in the C library (~10-20 ns
# each); NumPy's loops for them are SIMD. From LIBM_SIZE elements on (where NumPy's
# per-call overhead is small beside the loop), such an op stays a NumPy call: B1's tanh
# over (500, 100) ran 1.6x slower fused.
LIBM_SIZE = 4096
_LIBM = re.compile(r"math\.(?!isfinite|isnan|isinf|floor|ceil|trunc|copysign|sqrt)|\*\*")


# A product of at least NUMPY_DOT multiply-adds stays NumPy's matmul call: Numba's np.dot
# goes through SciPy's own OpenBLAS (0.3.30 beside NumPy's 0.3.31 here), which ran B1's
# X.T @ delta, (784, 500) @ (500, 100), 12% slower (1044 vs 928 us, best of 15x20, one
# thread, interleaved; the forward product took the same time); from this size on a
# NumPy call's ~2 us (and a segment split) are under 1% of the product.
NUMPY_DOT = 1 << 20
# A bias gradient (leading axes summed) of at least NUMPY_COLUMN_SUMS elements stays NumPy's
# ones @ g, one BLAS call: 2x faster than a float64 loop on a contiguous (1024, 512) g (25.6
# vs 66.8 us), 8x on B6's gate gradients, a (32, 32, 512) slice of the BPTT result, whose
# strides keep the loop from vectorising (212 us); below it a segment split costs more
NUMPY_COLUMN_SUMS = 1 << 17


def _is_array(i):
    return not i.is_scalar_const and not i.weak


def _kind(n):
    """How op node ``n`` is lowered: 'ew', 'view', 'dot', 'reduce', 'rows', 'form',
    'labels', or None."""
    if n.weak or not n.op.pure or n.dtype is None:
        return None
    ins = n.inputs
    if 0 in n.shape or any(0 in i.shape for i in ins if not i.is_scalar_const):
        return None
    if any(i.is_scalar_const and _lit(i.value) is None for i in ins):
        return None
    if any(not i.is_scalar_const and (i.dtype is None or i.dtype.kind not in "fbiu"
                                      or i.dtype == np.float16) for i in ins):
        return None             # (Numba has no float16 arithmetic: a cast of one stays NumPy's)
    how = n.op.lowering
    arrays = [i for i in ins if _is_array(i)]
    if how == "check_labels":
        return "labels" if ins[0].dtype.kind in "iu" and ins[0].shape else None
    if callable(how):
        return _form_kind(n, how, arrays)
    if (n.dtype in _FLOAT or n.dtype.kind == "b") and (n.op.scalar is not None or how == "cast"):
        try:
            if np.broadcast_shapes(n.shape, *[i.shape for i in arrays]) != n.shape:
                return None
        except ValueError:
            return None
        e = _scalar_expr(n, [f"_{k}" for k in range(len(ins))])
        if e is None or (math.prod(n.shape) >= LIBM_SIZE and _LIBM.search(e)):
            return None
        return "ew"
    if n.dtype not in _FLOAT or len(arrays) != len(ins):
        return None
    if how == "view_T" and tuple(n.params.get("axes") or ()) == (1, 0):
        return "view"
    if how == "blas_dot" and all(len(i.shape) == 2 and i.dtype == n.dtype for i in ins):
        return "dot" if math.prod(ins[0].shape) * ins[1].shape[-1] < NUMPY_DOT else None
    if how in _REDUCE and ins[0].dtype == n.dtype:
        if (how == "reduce_to" and n.shape == ins[0].shape[-1:] and len(ins[0].shape) > 1
                and math.prod(ins[0].shape) >= NUMPY_COLUMN_SUMS):
            return None         # a large bias gradient: NumPy's ones @ g (ops/shape.py)
        return "reduce"
    if how in _ROWS and len(ins[0].shape) == 2 and ins[0].dtype == n.dtype and (
            len(ins) == 1 and tuple(n.params.get("axis") or ()) == (1,)
            or len(ins) == 2 and ins[1].dtype.kind in "iu" and len(ins[1].shape) == 1):
        return "rows"
    return None


# row-wise ops of a matrix (the softmax family): the numba_helpers function of each
_ROWS = {"rows_lse_pick": "_sce", "rows_softmax_onehot": "_smo", "rows_softmax": "_softmax"}


_LABEL_ERROR = "class_labels: a label is out of range"


def _form_kind(n, form, arrays):
    """'form' where op node ``n`` has a Numba form (its ``lowering=`` is a plain-Python
    loop function, ``form(*inputs, **params, out=...)``) for its first input's dtype (one
    of the form's ``dtypes``, default float32 and float64), every input is an array of that
    dtype (an integer one at the form's ``int_inputs``) and so is the node (an integer one
    where the form has ``int_output``), it or an input is laid out as the form's ``layout``
    where it names one (where its loops beat NumPy) and every parameter is a literal."""
    if len(arrays) != len(n.inputs) or arrays[0].dtype not in form_dtypes(form):
        return None
    ints = getattr(form, "int_inputs", ())
    if any(i.dtype.kind not in "iu" if k in ints else i.dtype != arrays[0].dtype
           for k, i in enumerate(arrays)):
        return None
    if n.dtype.kind not in "iu" if getattr(form, "int_output", False) else n.dtype != arrays[0].dtype:
        return None
    want = getattr(form, "layout", None)
    if want is not None and want != n.layout and all(i.layout != want for i in arrays):
        return None
    if any(_lit(v) is None for v in n.params.values()):
        return None
    return "form"


# a reduction's start value and the step folding in one element e (NaN propagates, as np.max)
_REDUCE = {"reduce_add": ("0.0", "{r} += {e}"), "reduce_to": ("0.0", "{r} += {e}"),
           "reduce_max": ("-np.inf", "if {e} > {r} or {e} != {e}: {r} = {e}"),
           "reduce_min": ("np.inf", "if {e} < {r} or {e} != {e}: {r} = {e}")}


def segments(prog, plan):
    """The schedule as ("py", node) and ("seg", [nodes]) items (see the module docstring)."""
    items, seg, produced = [], None, set()
    # label checks of the program's inputs wait for their first consumer and run in its
    # segment (a segment of its own costs a call: 13 us on B3, against ~0.1 us inside one)
    pending = []

    def place_py(n):
        nonlocal seg
        if (seg is not None and n not in plan.out_buffer
                and not any(i in produced for i in n.inputs)):
            # writes no planned buffer and needs nothing of the open segment: it runs before
            # the segment (a write into a buffer could clobber a value the segment still reads)
            items.insert(len(items) - 1, ("py", n))
        else:
            seg = None
            items.append(("py", n))

    for n in prog.nodes:
        if n.kind != "op":
            continue
        kind = _kind(n)
        if kind == "labels" and all(i.kind != "op" for i in n.inputs):
            pending.append(n)
            continue
        ready = [p for p in pending if p in n.inputs]
        pending = [p for p in pending if p not in ready]
        if kind is None:
            for p in ready:
                place_py(p)
            place_py(n)
            continue
        if seg is None:
            seg, produced = [], set()
            items.append(("seg", seg))
        seg += ready + [n]
        produced.update(ready + [n])
    items += [("py", p) for p in pending]
    # a segment of views alone is not worth a call
    return [it for s in items for it in (
        [("py", n) for n in s[1]] if s[0] == "seg" and all(_kind(n) in ("view", "labels")
                                                           for n in s[1])
        else [s])]


def _storage(prog, plan, kernels):
    """The planned buffers each value may live in (as executor.plan_memory tracks them)."""
    st = {}
    for n in prog.nodes:
        if n in plan.out_buffer:
            st[n] = {plan.out_buffer[n]}
        elif n.kind == "op" and not kernels[n].fresh:
            st[n] = set().union(*[st.get(i, set()) for i in n.inputs])
        else:
            st[n] = set()
    return st


# ---------------------------------------------------------------- code generation

_CAST = {np.dtype(np.float32): "np.float32", np.dtype(np.float64): "np.float64"}


def _index(shape, loop, layout=None):
    """Index expression of an array of ``shape`` broadcast to a loop nest over ``loop``;
    ``layout``: of the array's transpose by that order (its physical form, _permuted)."""
    off = len(loop) - len(shape)
    idx = ["0" if s == 1 and loop[d + off] != 1 else f"i{d + off}" for d, s in enumerate(shape)]
    if layout is not None:
        idx = [idx[a] for a in layout]
    return "[" + (", ".join(idx) + ("," if len(idx) == 1 else "") if idx else "()") + "]"


def _permuted(layout):
    """Whether an array laid out as ``layout`` is neither C- nor F-contiguous. Numba types
    such an array 'A' and indexes it through every stride, unvectorised: on B5's batch-last
    images a ReLU loop took 6x as long as over the C-contiguous (C, H, W, N) array it is a
    transpose of, so kernels index that transpose (``layout`` order) instead."""
    if layout is None or len(layout) < 3:
        return False
    c = tuple(range(len(layout)))
    return tuple(layout) not in (c, c[::-1])


def _nest(shape, body, indent="    ", order=None):
    """Lines of a loop nest over ``shape`` around ``body`` (a list of lines), the axes in
    ``order`` outermost first (default: C order; a node's layout, so that the innermost
    loop walks the contiguous axis of an array laid out so)."""
    order = range(len(shape)) if order is None or len(order) != len(shape) else order
    return _loops(shape, order, body, indent)


def _loops(shape, axes, body, indent="    "):
    """Lines of loops over ``axes`` of ``shape`` (outermost first) around ``body``."""
    lines = [f"{indent}{'    ' * k}for i{d} in range({shape[d]}):" for k, d in enumerate(axes)]
    pad = indent + "    " * len(axes)
    return lines + [pad + b for b in body]


_LANES = 8      # partial results of a reduction along its innermost loop (_Segment._reduce)


class _Segment:
    """One segment's njit function: its source, parameters and the values it returns."""

    def __init__(self, k, nodes, names, consumers, outputs, plan, storage):
        self.name = f"k{k}"
        self.inside = set(nodes)
        self.nodes, self.names, self.plan, self.storage = nodes, names, plan, storage
        inside = set(nodes)
        self.returns = [n for n in nodes if n in outputs or any(c not in inside for c in consumers[n])]
        # what the kernel hands back: a value written into a planned buffer is that buffer,
        # which the driver names itself (boxing a returned array costs ~0.25 us)
        self.passed = [n for n in self.returns if n not in plan.out_buffer or _kind(n) == "view"]
        self.groups = self._groups()
        group_of = {n: g for g in self.groups for n in g}
        # a value needs an array when something outside its loop reads it
        self.arrays = {n for n in nodes if n in self.returns or _kind(n) != "ew"
                       or any(c in inside and group_of.get(c) is not group_of[n] for c in consumers[n])}
        # a value from outside that lives in a planned buffer is passed as that buffer: a
        # loop writing the same buffer in place then reads and writes through one array,
        # which LLVM vectorises (two arrays that may overlap get a runtime check that
        # fails for an in-place loop, and the scalar loop ran: 4x slower on B3's ReLUs)
        self.outer = {i: f"b{plan.out_buffer[i]}" if i in plan.out_buffer else names[i]
                      for n in nodes for i in n.inputs if i not in inside}
        self.params = []              # the names the driver passes, in order
        for n in nodes:
            for i in n.inputs:
                if i not in inside and not i.is_scalar_const and self.outer[i] not in self.params:
                    self.params.append(self.outer[i])
        for n in nodes:
            b = f"b{plan.out_buffer[n]}" if n in self.arrays and n in plan.out_buffer else None
            if b is not None and b not in self.params:      # (in-place nodes share one)
                self.params.append(b)
        # parameters laid out _permuted: the driver passes p.transpose(layout) as p_p, the
        # loops index that, everything else the view p_p.transpose(inverse) (named p)
        self.phys = {}              # a kernel's name of an array -> (its transpose's, layout)
        self.node_of = {v: k for k, v in names.items()}
        for p in self.params:
            b = int(p[1:]) if p[0] == "b" else None
            layout = (plan.buffers[b][2] if b is not None
                      else getattr(self.node_of.get(p), "layout", None))
            if _permuted(layout):
                self.phys[p] = (f"{p}_p", tuple(int(a) for a in layout))
        self.prologue = [f"    {p} = {q}.transpose({_back(layout)!r})"
                         for p, (q, layout) in self.phys.items()]
        self.body = []
        done = set()
        for n in nodes:
            g = group_of.get(n)
            if g is not None:
                if id(g) not in done:
                    done.add(id(g))
                    self._loop(g)
            else:
                getattr(self, "_" + _kind(n))(n)

    def _groups(self):
        """Consecutive elementwise nodes of one shape fused into one loop, unless a load
        other than at the loop's own index could see a store of the same loop into the
        same buffer (the plan reuses buffers in schedule order, a loop runs its nodes
        interleaved)."""
        groups, cur, stores, odd = [], None, set(), set()
        for n in self.nodes:
            if _kind(n) != "ew":
                cur = None
                continue
            mine = {self.plan.out_buffer[n]} if n in self.plan.out_buffer else set()
            loads = set()
            for i in n.inputs:
                if _is_array(i) and (cur is None or i not in cur):
                    direct = i in self.plan.out_buffer and i.shape == n.shape
                    if not direct:
                        loads |= self.storage.get(i, set())
            if (cur is None or cur[0].shape != n.shape or mine & odd or loads & (stores | mine)):
                cur, stores, odd = [], set(), set()
                groups.append(cur)
            cur.append(n)
            stores |= mine
            odd |= loads
        return groups

    def ref(self, i):
        """The kernel's name for the array or scalar value of node ``i``."""
        if i.is_scalar_const:
            return _lit(i.value)
        return f"v{i.id}" if i in self.inside else self.outer[i]

    def _out(self, n, alloc=True):
        """Bind ``v<id>`` to n's planned buffer or a new array (laid out as n's layout)."""
        v = f"v{n.id}"
        if n in self.plan.out_buffer:
            b = f"b{self.plan.out_buffer[n]}"
            self.body.append(f"    {v} = {b}")
            if b in self.phys:
                self.phys[v] = self.phys[b]
        elif alloc and n.layout is not None and list(n.layout) != list(range(len(n.shape))):
            # stored in its layout's order, as eager NumPy's result (a pooling of batch-last
            # images stays batch-last)
            layout = tuple(int(a) for a in n.layout)
            stored = tuple(n.shape[a] for a in layout)
            if _permuted(layout):
                self.phys[v] = (f"{v}_p", layout)
            self.body += [f"    {v}_p = np.empty({stored!r}, np.{n.dtype.name})",
                          f"    {v} = {v}_p.transpose({_back(layout)!r})"]
        elif alloc:
            self.body.append(f"    {v} = np.empty({n.shape!r}, np.{n.dtype.name})")

    def _at(self, ref, shape, loop):
        """The element of array ``ref`` (of ``shape``) at the loop nest's index over ``loop``:
        through its C-contiguous transpose where it has one (_permuted)."""
        if ref in self.phys:
            q, layout = self.phys[ref]
            return f"{q}{_index(shape, loop, layout)}"
        return f"{ref}{_index(shape, loop)}"

    def _loop(self, group):
        shape = group[0].shape
        members = set(group)
        for n in group:
            if n in self.arrays:
                self._out(n)
        loads, body, stores = {}, [], []
        for n in group:
            args = []
            for i in n.inputs:
                if i in members:
                    args.append(f"t{i.id}")
                elif _is_array(i):
                    src = self._at(self.ref(i), i.shape, shape)
                    if src not in loads:
                        loads[src] = f"a{len(loads)}"
                    args.append(loads[src])
                else:
                    args.append(self.ref(i))
            e = _scalar_expr(n, args)
            cast = _CAST.get(n.dtype, "bool")
            body.append(f"t{n.id} = {cast}({e})")
            if n in self.arrays:
                stores.append(f"{self._at(f'v{n.id}', shape, shape)} = t{n.id}")
        # every load of an element before any store of it: in-place buffers stay correct
        self.body += _nest(shape, [f"{a} = {src}" for src, a in loads.items()] + body + stores,
                           order=group[0].layout)

    def _view(self, n):
        self.body.append(f"    v{n.id} = {self.ref(n.inputs[0])}.T")

    def _labels(self, n):
        """class_labels: a range check in the loop, the labels passed on. A bad label raises
        a bare ValueError here; the driver then runs the op's own check for its message
        (NumbaExecutable._generate). ~0.1 us, where the NumPy call took ~6 (5 % of B2)."""
        x = n.inputs[0]
        self.body += _nest(x.shape, [f"e = {self.ref(x)}{_index(x.shape, x.shape)}",
                                     f"if e < 0 or e >= {int(n.params['classes'])}:",
                                     f"    raise ValueError(\"{_LABEL_ERROR}\")"])
        self.body.append(f"    v{n.id} = {self.ref(x)}")

    def _dot(self, n):
        a, b = (self.ref(i) for i in n.inputs)
        if n in self.plan.out_buffer:
            self._out(n)
            self.body.append(f"    _dot({a}, {b}, v{n.id})")
        else:
            self.body.append(f"    v{n.id} = _dot_new({a}, {b})")

    def _reduce(self, n):
        x = n.inputs[0]
        shape, nd = x.shape, len(x.shape)
        how = n.op.lowering
        if how == "reduce_to":          # to params["shape"]: leading axes and 1-sides summed
            lead = nd - len(n.params["shape"])
            axes = set(range(lead)) | {d + lead for d, s in enumerate(n.params["shape"])
                                       if s == 1 and shape[d + lead] != 1}
            keep = list(range(lead, nd))
        else:
            ax = n.params.get("axis")
            axes = set(range(nd)) if ax is None else {a % nd for a in ax}
            keep = list(range(nd)) if n.params.get("keepdims") else [d for d in range(nd)
                                                                    if d not in axes]
        # the accumulator (float64) is indexed like the output (reduced axes 0, or dropped)
        oidx = ["0" if d in axes else f"i{d}" for d in keep]
        acc = f"r{n.id}" + ("[" + ", ".join(oidx) + ("," if len(oidx) == 1 else "") + "]"
                            if oidx else "")
        init, fold = _REDUCE[how]
        self._out(n)
        self.body.append(f"    r{n.id} = np.full({n.shape!r}, {init})" if oidx
                         else f"    r{n.id} = {init}")
        order = list(x.layout or range(nd))
        load = f"e = {self._at(self.ref(x), shape, shape)}"
        if order and order[-1] in axes and shape[order[-1]] >= 2 * _LANES:
            body = self._lanes(n, order[-1], shape[order[-1]], load, init, fold, acc)
            self.body += _loops(shape, order[:-1], body)
        else:
            self.body += _nest(shape, [load, fold.format(r=acc, e="e")], order=order)
        store = self._at(f"v{n.id}", n.shape, n.shape)
        out = _index(n.shape, n.shape) if oidx else ""
        self.body += _nest(n.shape, [f"{store} = {_CAST[n.dtype]}(r{n.id}{out})"])

    @staticmethod
    def _lanes(n, d, m, load, init, fold, acc):
        """The innermost loop of a reduction along its axis ``d`` (``m`` long) as _LANES
        interleaved partial results, folded together at its end: one running sum carried
        from element to element waits out each add's latency (B5's bias gradients over
        batch-last images: 0.30 ms one at a time, 0.12 in lanes)."""
        lanes = [f"q{n.id}_{k}" for k in range(_LANES)]
        whole = m - m % _LANES
        body = [f"{q} = {init}" for q in lanes] + [f"for j{n.id} in range(0, {whole}, {_LANES}):"]
        for k, q in enumerate(lanes):
            body += [f"    i{d} = j{n.id} + {k}", f"    {load}", "    " + fold.format(r=q, e="e")]
        if whole < m:
            body += [f"for i{d} in range({whole}, {m}):", f"    {load}",
                     "    " + fold.format(r=lanes[0], e="e")]
        step = 1
        while step < _LANES:            # pairwise: ((q0 q1) (q2 q3)) ((q4 q5) (q6 q7))
            body += [fold.format(r=lanes[k], e=lanes[k + step])
                     for k in range(0, _LANES, 2 * step)]
            step *= 2
        return body + [fold.format(r=acc, e=lanes[0])]

    def _rows(self, n):
        self._out(n)
        args = ", ".join(self.ref(i) for i in n.inputs)
        self.body.append(f"    {_ROWS[n.op.lowering]}({args}, v{n.id})")

    def _form(self, n):
        """A call of the op's njit Numba form, writing the node's buffer (or a new array)."""
        form = n.op.lowering
        self._out(n)
        args = [self.ref(i) for i in n.inputs] + [f"{k}={_lit(v)}" for k, v in n.params.items()]
        self.body.append(f"    {_form_name(form)}({', '.join(args)}, out=v{n.id})")

    def forms(self):
        """The Numba forms this segment calls."""
        return {n.op.lowering for n in self.nodes if _kind(n) == "form"}

    def _checks(self):
        """Lines refusing an argument of another shape than traced: the loops' bounds are
        the traced shapes, so a call of the executable with other arrays (rg.compile itself
        always matches the signature first) must not read past their ends."""
        lines = []
        for p in self.params:
            n = self.node_of.get(p)
            if n is None or n.kind == "const" or n.weak:
                continue
            user = next(c for c in self.nodes if n in c.inputs).op.name
            lines += [f"    if {p}.shape != {n.shape!r}:",
                      f"        raise ValueError(\"{user}: operands could not be broadcast: an "
                      f"operand's shape is not the traced {n.shape}\")"]
        return lines

    def fuse_update(self, rules):
        """End this (the program's last) kernel with the optimizer's update of each flat
        array whose rule is given: ``_update<j>`` (the rule's loop), run when the driver's
        flag ``uf[j]`` is 1 and marked done (2). Its arrays and coefficients are the
        trailing parameters, which the driver passes as ``*u`` (compile_step builds u)."""
        self.update_params = ["uf"]
        for j, rule in enumerate(rules):
            if rule is None:
                continue
            states = [f"us{j}_{k}" for k in range(len(rule.names))]
            self.update_params += [f"uw{j}", f"ug{j}", *states, f"uc{j}"]
            self.body += [f"    if uf[{j}] == 1:",
                          f"        _update{j}({', '.join(self.update_params[-3 - len(states):])})",
                          f"        uf[{j}] = 2"]

    update_params = ()

    def source(self):
        ret = ", ".join(f"v{n.id}" for n in self.passed)
        body = self.prologue + self._checks() + self.body
        params = ", ".join([*(self.phys[p][0] if p in self.phys else p for p in self.params),
                            *self.update_params])
        return (f"@_jit\ndef {self.name}({params}):\n" + "\n".join(body)
                + f"\n    return ({ret}{',' if ret else ''})\n")


def _update_kernels(rules):
    """Module text of the update loops a program's last kernel calls (``_update<j>``)."""
    return "".join("@_jit\n" + rule.source.replace("def kernel(", f"def _update{j}(", 1) + "\n\n"
                   for j, rule in enumerate(rules) if rule is not None)


class UpdateSlots:
    """The optimizer updates a compiled step's last kernel runs (NumbaExecutable.fuse_update):
    ``rules[j]`` the Rule of flat array j (optim.fused bucket j), or None. ``args(opt,
    buckets)`` is the ``u`` of one call; ``ran()`` then says which updates ran."""

    def __init__(self, rules, dtypes):
        self.rules, self.dtypes = rules, dtypes
        self.flags = np.zeros(len(rules), np.int64)
        self.coefs = [np.zeros(r.n_coefs if r is not None else 0) for r in rules]
        # what an update not run this call is passed: arrays of its types, of no length
        self._idle = [[np.zeros(0, dt), np.zeros(0, dt), *[np.zeros(0, dt)] * len(r.names)]
                      if r is not None else None for r, dt in zip(rules, dtypes)]
        self._u = None                  # the last call's u, and the flat states it passed
        self._states = None
        self._done = [2 if r is not None else 0 for r in rules]    # flags when all ran
        self._last = [None] * len(rules)    # the coefficients last written

    def args(self, opt, buckets):
        """``u``: the flags, then each update's arrays and coefficients. The arrays are
        checked afresh only when a bucket's flat state is another dict than on the last
        call that ran (a new layout, a loaded state), or that call did not run it."""
        flags = self.flags
        states = [b.state for b in buckets]
        last = self._states
        if (flags.tolist() != self._done or last is None or len(last) != len(states)
                or not all(map(operator.is_, last, states))):
            return self._check(opt, buckets, states)
        for j, rule in enumerate(self.rules):
            if rule is not None:
                coefs = rule.coefs(opt.param_groups[buckets[j].group], states[j]["step"] + 1)
                if coefs is None:
                    return self._check(opt, buckets, states)
                if coefs != self._last[j]:        # (a constant learning rate: no write)
                    self.coefs[j][:] = self._last[j] = coefs
                flags[j] = 1
        return self._u

    def _check(self, opt, buckets, states):
        self.flags[:] = 0
        u, ok = [self.flags], len(buckets) == len(self.rules)
        for j, rule in enumerate(self.rules):
            if rule is None:
                continue
            b = buckets[j] if ok else None
            got = (b.kernel_args(opt, rule)
                   if b is not None and b.w.dtype == self.dtypes[j] else None)
            if got is None:
                u += [*self._idle[j], self.coefs[j]]
                continue
            arrays, coefs = got
            self.coefs[j][:] = self._last[j] = coefs
            self.flags[j] = 1
            u += [b.w, b.g, *arrays, self.coefs[j]]
        self._u, self._states = u, states if ok else None
        return u

    def ran(self):
        """Which updates the last call ran (flag 2: the kernel got to its end)."""
        return [f == 2 for f in self.flags.tolist()]


_HEADER = '''"""Generated by retrograd's Numba backend (retrograd/graph/numba_backend.py)."""
import math
import numpy as np
import numba

_jit = numba.njit(cache=True, error_model="numpy", nogil=True)
from retrograd.native.numba_helpers import dot as _dot, dot_new as _dot_new
from retrograd.native.numba_helpers import softmax_cross_entropy as _sce
from retrograd.native.numba_helpers import softmax_minus_onehot as _smo
from retrograd.native.numba_helpers import softmax_rows as _softmax
from retrograd.native.numba_helpers import loop_form as _loop_form  # code {helpers}


'''


def _header():
    """_HEADER with a digest of retrograd/native: a kernel's cached machine code holds the
    helpers it calls (see _code_digest), so a changed helper must change the kernel text."""
    from ..native.numba_cache import native_digest
    return _HEADER.format(helpers=native_digest())


def _back(layout):
    """The axes that transpose an array stored in ``layout`` order back to its own."""
    return tuple(int(a) for a in np.argsort(layout))


def _form_name(form):
    return f"_form_{form.__name__.lstrip('_')}"


def _form_imports(segs):
    """Header lines binding each op Numba form the segments call to its njit function, each
    with a digest of the form's code (``_code_digest``)."""
    forms = sorted(set().union(*[s.forms() for s in segs]), key=_form_name)
    return "".join(f"{_form_name(f)} = _loop_form({f.__module__!r}, {f.__name__!r})  "
                   f"# code {_code_digest(f)}\n" for f in forms) + ("\n\n" if forms else "")


def _code_digest(form):
    """A digest of the source of an op's Numba form and of the helpers it calls. Numba's
    cache of a kernel does not follow the functions the kernel calls: without this in the
    kernel's text (which names its cache file), a changed form -- a new retrograd -- kept
    running as the machine code cached with the old one compiled in."""
    module = sys.modules[form.__module__]
    h = hashlib.sha256()
    for fn in [form] + [getattr(module, name) for name in getattr(form, "helpers", ())]:
        try:
            h.update(inspect.getsource(fn).encode())
        except (OSError, TypeError):        # no source file: the bytecode stands in for it
            h.update(fn.__code__.co_code + repr(fn.__code__.co_consts).encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- the on-disk cache

def cache_dir() -> str:
    root = os.environ.get("RETROGRAD_CACHE_DIR")
    root = root or os.path.join(os.path.expanduser("~"), ".cache", "retrograd")
    return os.path.join(root, "numba")


_MODULES = {}          # module name -> module: one import per process


def _write_once(path, text):
    """``text`` at ``path``, written atomically (a temporary file renamed into place): two
    processes writing the same program at once both leave the whole file. An existing file
    with the same text is left alone (a new mtime would make Numba's cache index stale)."""
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    except OSError:
        pass
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".py")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


#: days a cached program may go unused before prune_cache removes it
CACHE_DAYS = 30
_PREFIX = "retrograd_numba_"


def cache_days() -> float:
    """RETROGRAD_CACHE_DAYS (0: never prune), else CACHE_DAYS."""
    value = os.environ.get("RETROGRAD_CACHE_DAYS", "")
    try:
        return float(value) if value else CACHE_DAYS
    except ValueError:
        raise RetrogradError(f"RETROGRAD_CACHE_DAYS must be a number of days, got "
                             f"{value!r}") from None


def _touch(path):
    """Set ``path``'s mtime to now, making it empty if it is not there."""
    try:
        os.utime(path)
    except FileNotFoundError:
        open(path, "a").close()


def _mark_used(folder, name):
    """Record that program ``name`` was loaded now: the mtime of its ``.used`` marker (the
    .py file's own mtime must stay: Numba's index of the machine code checks it)."""
    with contextlib.suppress(OSError):        # (a read-only cache still serves)
        _touch(os.path.join(folder, name + ".used"))


def prune_cache(folder=None, days=None, now=None) -> list[str]:
    """Remove the cached programs (their .py file, marker and Numba's machine code) not
    loaded for ``days`` days (default RETROGRAD_CACHE_DAYS or CACHE_DAYS; 0 keeps all);
    returns the names removed. Runs by itself at most once a day, when a program is
    cached. Files of other kinds in the folder are left alone."""
    folder = cache_dir() if folder is None else folder
    days = cache_days() if days is None else days
    now = time.time() if now is None else now
    if days <= 0:
        return []
    removed = []
    compiled = os.path.join(folder, "__pycache__")
    machine_code = os.listdir(compiled) if os.path.isdir(compiled) else []
    for entry in os.listdir(folder):
        if not (entry.startswith(_PREFIX) and entry.endswith(".py")):
            continue
        name = entry[:-3]
        used = os.path.join(folder, name + ".used")
        when = os.path.getmtime(used if os.path.exists(used) else os.path.join(folder, entry))
        if now - when < days * 86400:
            continue
        machine = [os.path.join(compiled, f) for f in machine_code if f.startswith(name + ".")]
        for path in [os.path.join(folder, entry), used] + machine:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        removed.append(name)
    return removed


def _prune_daily(folder):
    """prune_cache at most once a day per cache folder (its ``.pruned`` stamp); a cache
    that cannot be pruned (permissions, a file vanishing meanwhile) is left as it is."""
    days = cache_days()
    if days <= 0:
        return
    stamp = os.path.join(folder, ".pruned")
    try:
        if time.time() - os.path.getmtime(stamp) < 86400:
            return
    except OSError:
        pass
    with contextlib.suppress(OSError):
        _touch(stamp)
        prune_cache(folder, days)


_OWN_FOLDER = None


def _own_folder(folder, error):
    """Where this process keeps its generated code when the cache ``folder`` cannot be
    written: one temporary folder, removed at exit, and one warning saying why every
    process now compiles afresh."""
    global _OWN_FOLDER
    if _OWN_FOLDER is None:
        _OWN_FOLDER = tempfile.mkdtemp(prefix="retrograd-numba-")
        atexit.register(shutil.rmtree, _OWN_FOLDER, True)
        warnings.warn(f"retrograd: the Numba cache folder {folder} cannot be written "
                      f"({error.strerror or error}); compiled code is kept for this process only "
                      "(set RETROGRAD_CACHE_DIR to a writable folder)", stacklevel=4)
    return _OWN_FOLDER


def load_module(text):
    """Import the generated module ``text`` from the cache folder (written there first)."""
    name = _PREFIX + hashlib.sha256(text.encode()).hexdigest()[:32]
    mod = _MODULES.get(name)
    if mod is not None:
        return mod
    folder = cache_dir()
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)     # code is imported from it
        _prune_daily(folder)
        path = os.path.join(folder, name + ".py")
        _write_once(path, text)
        _mark_used(folder, name)
    except OSError as e:
        path = os.path.join(_own_folder(folder, e), name + ".py")
        _write_once(path, text)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod          # Numba's cache finds a function's module by name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec.loader.exec_module(mod)
    _MODULES[name] = mod
    return mod


# ---------------------------------------------------------------- the optimizer's update

_UPDATE_HEADER = '''"""Generated by retrograd's Numba backend from an optimizer's own update (optim/rule.py)."""
import numpy as np
import numba


@numba.njit(cache=True, error_model="numpy", nogil=True)
'''


def update_kernel(rule):
    """The njit function of an optimizer update traced by optim.rule: one loop over the
    flat parameter, gradient and state arrays (optim.fused calls it with ``FusedUpdate``'s
    ``lowering``)."""
    return load_module(_UPDATE_HEADER + rule.source).kernel


update_kernel.is_compile_error = raised_by_numba


# ---------------------------------------------------------------- the executable

class NumbaExecutable(Executable):
    """An Executable whose lowerable segments run as njit functions (see the module
    docstring). ``compile_seconds``: the first call's Numba compile (or cache load) time."""

    backend = "numba"

    def __init__(self, *args, **kwargs):
        self.compile_seconds = None
        self.update_slots = None     # the optimizer updates its last kernel runs (fuse_update)
        super().__init__(*args, **kwargs)
        from retrograd.native import numba_blas
        if self._blas is None and numba_blas.BLAS == "scipy":
            # the products SciPy's BLAS runs where NumPy's cannot be called (numba_blas.py):
            # the segments' products, and whatever an op's Numba form computes (B6's
            # per-step products: counted as large)
            nodes = [n for s in self.segments for n in s.nodes]
            work = max([_dot_work(n) for n in nodes if _kind(n) == "dot"]
                       + [blas.OPENBLAS_ONE_THREAD for n in nodes if _kind(n) == "form"],
                       default=0)
            self._blas = blas.scipy_single(work)

    def _generate(self, prog, plan, kernels, name):
        self._kernels = kernels
        names = {}
        for k, n in enumerate(prog.externals):
            names[n] = f"x{k}"
        for n in prog.nodes:
            if n.kind == "const":
                names[n] = f"c{n.id}"
            elif n.kind == "op":
                names[n] = f"v{n.id}"
        consumers = {n: [] for n in prog.nodes}
        for n in prog.nodes:
            for i in n.inputs:
                consumers[i].append(n)
        items = segments(prog, plan)
        storage = _storage(prog, plan, kernels)
        outputs = set(prog.outputs)
        segs = [_Segment(k, it[1], names, consumers, outputs, plan, storage)
                for k, it in enumerate(x for x in items if x[0] == "seg")]
        self.segments, self._items = segs, items
        slots = self.update_slots
        if slots is not None:
            segs[-1].fuse_update(slots.rules)
        self.kernel_source = (_header() + _form_imports(segs)
                              + (_update_kernels(slots.rules) if slots is not None else "")
                              + "\n\n".join(s.source() for s in segs))
        mod = load_module(self.kernel_source) if segs else None
        ns = {"np": np}
        zero_d = {names[n] for n in prog.nodes if n.kind != "const" and n.shape == () and not n.weak
                  and n in names}
        lines, it = [], iter(segs)
        for kind, body in items:
            if kind == "seg":
                s = next(it)
                ns[s.name] = getattr(mod, s.name)
                ret = ", ".join(names[n] for n in s.passed)
                lhs = f"{ret}, = " if ret else ""
                # a 0-d value may be a NumPy scalar (a full reduction's): the kernel indexes it
                params = [f"np.asarray({p})" if p in zero_d else
                          f"{p}.transpose({s.phys[p][1]!r})" if p in s.phys
                          else p for p in s.params]
                params += ["*u"] if s.update_params else []
                call = (f"{lhs}{s.name}({', '.join(params)})  # numba: "
                        + ", ".join(n.op.name for n in s.nodes))
                checks = [n for n in s.nodes if _kind(n) == "labels"]
                if checks:      # the kernel found a bad label: the op's own error says which
                    lines += ["    try:", "        " + call, "    except ValueError:"]
                    lines += [f"        f{n.id}({names[n.inputs[0]]})" for n in checks]
                    lines.append("        raise")
                    ns.update({f"f{n.id}": _bind(n) for n in checks})
                else:
                    lines.append("    " + call)
                lines += [f"    {names[n]} = b{plan.out_buffer[n]}  # {n.op.name}"
                          for n in s.returns if n not in s.passed]
                continue
            n = body
            k = kernels[n]
            ns[f"f{n.id}"] = _bind(n)
            ns.update(k.consts)
            out = f"b{plan.out_buffer[n]}" if n in plan.out_buffer else None
            lines.append(f"    v{n.id} = {k.emit([names[i] for i in n.inputs], out)}  # {n.op.name}")
        for n in prog.nodes:
            if n.kind == "const":
                ns[f"c{n.id}"] = n.value
        outs = ", ".join(f"np.array({names[o]}, copy=True)" if o in plan.copy_outputs else names[o]
                         for o in prog.outputs)
        args = [names[n] for n in prog.externals] + self._extra()
        src = (f"def {name}({', '.join(args)}):\n" + "".join(line + "\n" for line in lines)
               + f"    return ({outs}{',' if outs else ''})\n")
        for b, spec in enumerate(plan.buffers):
            ns[f"b{b}"] = allocate(*spec)
        return src, ns

    def _extra(self):
        """The driver's parameters after the program's inputs: ``u``, the arguments of the
        fused optimizer updates (fuse_update)."""
        return ["u"] if self.update_slots is not None else []

    def fuse_update(self, rules, dtypes):
        """Run the optimizer's update of flat array j (``rules[j]``, a Rule of optim.rule,
        or None; ``dtypes[j]`` its dtype) at the end of the program's last kernel, so that a
        training step is one call: the driver then takes one more argument, ``u`` =
        ``update_slots.args(...)``. Only before the first call and where the program ends
        in a Numba segment; returns the UpdateSlots, or None (the update stays apart)."""
        if (self.compile_seconds is not None or self.update_slots is not None
                or self.backend != "numba" or not self._items or self._items[-1][0] != "seg"
                or not any(r is not None for r in rules)):
            return None
        self.update_slots = UpdateSlots(list(rules), list(dtypes))
        self.source, ns = self._generate(self.program, self.plan, self._kernels, self._name)
        self._rebind(ns)
        return self.update_slots

    def _rebind(self, ns):
        """Run the regenerated driver ``self.source`` in ``ns``, with the buffers (bound ones
        included) of the one it replaces."""
        self._code = compile(self.source, f"<retrograd {self._name}>", "exec")
        for b in range(len(self.plan.buffers)):
            ns[f"b{b}"] = self._fn.__globals__[f"b{b}"]
        exec(self._code, ns)                                            # our own generated code
        self._fn = ns[self._name]
        self._bindings += 1                   # other threads' copies: regenerate

    def _call(self, arrays):
        if self.compile_seconds is not None:
            return super()._call(arrays)
        t = time.perf_counter()
        try:
            with warnings.catch_warnings():     # NumbaPerformanceWarning on a strided np.dot
                warnings.simplefilter("ignore")
                out = super()._call(arrays)
        except Exception as e:
            if not raised_by_numba(e):
                raise
            # a lowering Numba cannot compile is our bug, not the user's: say so, and run the
            # program as NumPy code from now on (the nodes before the failed segment ran
            # twice: a random op among them drew twice)
            warnings.warn(f"rg.compile: Numba could not compile {self._name} "
                          f"({failure(e)}); running it "
                          "with the NumPy backend", RuntimeWarning, stacklevel=3)
            self._to_numpy()
            out = super()._call(arrays)
        self.compile_seconds = time.perf_counter() - t
        return out

    def _to_numpy(self):
        # (a fused update's arguments are taken and ignored: compile_step, seeing them
        # not run, updates as for a NumPy step)
        self.source, ns = generate(self.program, self.plan, self._kernels, self._name,
                                   self._extra())
        self._rebind(ns)
        self.backend, self.segments = "numpy", []


def executable(prog, backend, **kwargs):
    """The Executable of ``prog`` for a resolved backend name ('auto': ``choose``)."""
    # 'numpy' asked for is NumPy calls only; chosen by 'auto', ops whose Numba form replaces
    # a NumPy loop still run it (ops/numba_forms.py)
    native = backend == "auto"
    if native:
        backend = choose(prog)
    if backend == "numba":
        return NumbaExecutable(prog, **kwargs)
    if backend != "numpy":
        raise RetrogradError(f"unknown backend {backend!r}")
    return Executable(prog, native=native, **kwargs)
