"""Symbolic values: the graph half of seed 004's "symbol-to-symbol" backprop.

A ``Var`` is a Tensor whose value is not known, only its shape and dtype
(``ShapeDtype``, which stands where a Tensor keeps its ndarray). Any op applied
to a Var goes through the same ``apply`` as eager code; ``apply`` asks the
value, and a Var records the op itself (``Var._record``, ``record`` below): it
works out the output's shape and dtype and returns a new Var that remembers the
op, its inputs and parameters -- exactly the fields an eager Tensor keeps. So
the eager backward walk, run over Vars with ``create_graph=True``, *builds* the
gradient as more graph nodes (build_grad), using the very same VJP rules.
"""
from __future__ import annotations

import math

import numpy as np

from ..arrays import require_numpy
from ..errors import RetrogradError, ShapeError, TraceError
from ..ops import base
from ..ops.shape import astype, stop_gradient
from ..tensor import Tensor

__all__ = ["ShapeDtype", "Var", "Tracer", "TraceError", "record"]


class ShapeDtype:
    """Shape and dtype of a value that is not computed yet (what ``Var._data`` holds), and
    the order of its axes in memory that eager NumPy would give it (``layout``, see
    ``layout_of``; None: C order, or not known)."""

    __slots__ = ("shape", "dtype", "layout")

    def __init__(self, shape, dtype, layout=None):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.layout = layout

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return math.prod(self.shape)

    def __repr__(self):
        return f"ShapeDtype({self.shape}, {self.dtype})"


def _concrete_needed(what):
    def refuse(self, *args, **kwargs):
        raise TraceError(
            f"{what} of a traced value ({self.describe()}): its value is unknown while the graph "
            "is being built, so Python code cannot branch on it. Use rg.where for "
            "data-dependent choices, list Python-number arguments that steer control flow "
            "in rg.compile(fn, static_argnums=...), or run this function eagerly "
            "(rg.compile(fn, fallback='eager'))")
    return refuse


class Var(Tensor):
    """A symbolic tensor in a graph: an input, a parameter, or an op's output."""

    __slots__ = ("graph", "kind", "index", "value", "weak")

    def __init__(self, graph, kind, shape, dtype, name=None, value=None, weak=False,
                 layout=None):
        super().__init__(np.zeros(0))      # placeholder, replaced below
        self._data = ShapeDtype(shape, dtype, layout)
        self.graph = graph
        self.kind = kind                    # "input" | "param" | "op"
        self.name = name
        self.value = value                  # a parameter's ndarray
        # weak: a Python float argument of rg.compile (or a result of ops on those only),
        # promoting as a Python float does -- float32 * weak stays float32 -- and, like
        # one in eager code, not a tensor to differentiate
        self.weak = weak
        self.requires_grad = self._data.dtype.kind in "fc" and not weak
        self.index = graph._register(self) if graph is not None else -1

    def describe(self):
        what = self.name or (self._op.name if self._op is not None else self.kind)
        return f"%{self.index} {what} {self.shape} {self.dtype}"

    def __repr__(self):
        return f"Var({self.describe()})"

    # values do not exist yet
    __bool__ = _concrete_needed("bool()")
    __float__ = _concrete_needed("float()")
    __int__ = _concrete_needed("int()")
    __index__ = _concrete_needed("using as an index")
    item = _concrete_needed("item()")
    numpy = _concrete_needed("numpy()")
    tolist = _concrete_needed("tolist()")
    __array__ = _concrete_needed("converting to a NumPy array")
    __iter__ = _concrete_needed("iterating")

    @property
    def data(self):
        raise TraceError(
            f".data of a traced value ({self.describe()}): it has no array while the graph "
            "is being built. Compute with rg ops on the tensor itself, or run this function "
            "eagerly (rg.compile(fn, fallback='eager'))")

    @data.setter
    def data(self, value):
        raise TraceError(f"setting .data of a traced value ({self.describe()}): graph values "
                         "cannot change")

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    # graph values are immutable: ``v += x`` rebinds the name to a new value
    def __iadd__(self, other):
        return self + other

    def __isub__(self, other):
        return self - other

    def __imul__(self, other):
        return self * other

    def __itruediv__(self, other):
        return self / other

    def __setitem__(self, idx, value):
        raise TraceError("t[idx] = v on a graph value: graph values cannot change; "
                         "build the new value with rg.where or rg.concatenate")

    def backward(self, *args, **kwargs):
        raise TraceError("backward() on a graph value: in a Graph use g.backward(cost); in a "
                         "compiled function use rg.grad / rg.value_and_grad, which build the "
                         "gradient as part of the graph")


def layout_of(a):
    """The order of ndarray ``a``'s axes in memory, outermost first, where ``a`` is a
    permutation of a dense block but not in C order -- e.g. (1, 2, 3, 0) for the
    (N, C, H, W) view of a batch-last (C, H, W, N) array, as conv2d's results are -- else
    None. The memory planner gives elementwise results this layout, as NumPy's ufuncs do
    eagerly: in C order, reading such inputs (and the views of the result) would copy."""
    if a.ndim < 2 or a.flags.c_contiguous:
        return None
    order = tuple(sorted(range(a.ndim), key=lambda i: (-a.strides[i], i)))
    return order if a.transpose(order).flags.c_contiguous else None


def allocate(shape, dtype, layout=None, make=np.empty):
    """A new array of ``shape`` (by ``make``: np.empty, np.zeros) laid out in memory as
    ``layout`` says."""
    if layout is None:
        return make(shape, dtype)
    return make([shape[i] for i in layout], dtype).transpose(np.argsort(layout))


_dummies: dict = {}          # zero stand-ins by (shape, dtype, layout), for one trace at a time


def _dummy(x):
    """A stand-in array with x's shape, dtype and layout, for working out output shapes
    (and layouts)."""
    if isinstance(x, Var):
        if x.weak:
            return 0.0
        key = (x.shape, x.dtype, x._data.layout)
        arr = _dummies.get(key)
        if arr is None:
            arr = _dummies[key] = allocate(*key, make=np.zeros)
        return arr
    return x._data if isinstance(x, Tensor) else x


def _elementwise_layout(args, shape):
    """The layout NumPy gives an elementwise result of ``shape``: that of its full-shape
    operands where they share one (a broadcast operand does not count), else C order."""
    layouts = {a._data.layout if isinstance(a, Var) else layout_of(np.asarray(a._data))
               for a in args if isinstance(a, Tensor) and tuple(a.shape) == tuple(shape)}
    return layouts.pop() if len(layouts) == 1 else None


def _host_only(t):
    """Refuse to capture a tensor of another namespace: compiled code is NumPy code."""
    what = f" '{t.name}'" if t.name else ""
    require_numpy(t._data, f"rg.compile: captured tensor{what} of shape {t.shape}")


class Tracer:
    """The trace in progress (rg.compile), a capture of ops/base: tensors that require
    grad but are not graph values (captured model parameters) are lifted into the graph
    as "captured" Vars the first time an op uses them, so the compiled code reads them on
    every call. ``with Tracer(g):`` makes it this thread's innermost capture."""

    def __init__(self, graph):
        self.graph = graph
        self._lifted = {}                    # id(tensor) -> (tensor, Var)
        self.outer = None                    # the capture around this one (base.push_capture)
        self.updates = {}                    # id(buffer) -> (buffer, its new value)
        self.modules = {}                    # id(module) -> module, for each module called

    def called(self, module):
        """``module`` ran in this trace: what was traced depends on its ``training``."""
        self.modules.setdefault(id(module), module)

    def lift(self, t):
        if isinstance(t, Var) or not isinstance(t, Tensor):
            return t
        if type(t._data) is not np.ndarray:
            _host_only(t)
        if not t.requires_grad:     # module state (nn.Buffer) is read at every call too
            return self.lift_state(t) if getattr(t, "_state", False) else t
        hit = self._lifted.get(id(t))
        if hit is None:
            v = Var(self.graph, "captured", t.shape, t.dtype, name=t.name or "param", value=t)
            hit = self._lifted[id(t)] = (t, v)
        return hit[1]

    def lift_state(self, t):
        """A module buffer (nn.Buffer): a captured input read at every call, not a
        constant; after an ``assign`` in this trace, the value assigned."""
        hit = self._lifted.get(id(t))
        if hit is None:
            _host_only(t)
            v = Var(self.graph, "captured", t.shape, t.dtype, name=t.name or "buffer", value=t)
            v.requires_grad = False
            hit = self._lifted[id(t)] = (t, v)
        return hit[1]

    def assign(self, t, value):
        """Buffer ``t`` takes ``value`` at every call: the compiled function returns it as
        an extra output, written back (see Compiled.trace); later reads in this trace see it."""
        if isinstance(value, Var):
            value = astype(value, t.dtype)
        else:                           # a constant: written at every call all the same
            value = Tensor(np.asarray(value._data, dtype=t.dtype))
        self._lifted[id(t)] = (t, value)
        self.updates[id(t)] = (t, value)

    def lifted(self, t):
        """``t`` itself, or its graph stand-in if this trace captured it."""
        if isinstance(t, Var):
            return t
        hit = self._lifted.get(id(t))
        return hit[1] if hit is not None else t

    def record(self, op, args, params):
        return record(op, args, params)

    def __enter__(self):
        base.push_capture(self)
        return self

    def __exit__(self, *exc):
        base.pop_capture(self)
        return False


def record(op, args, params):
    """``apply`` for symbolic inputs: shape inference by running the NumPy forward on
    zero stand-ins (once, at trace time), then a new Var node."""
    tr = base.capturing()
    if tr is not None:
        args = tuple(tr.lift(a) for a in args)
    graph = next(a.graph for a in args if isinstance(a, Var))
    for a in args:
        if isinstance(a, Var) and a.graph is not graph:
            raise TraceError(f"{op.name}: inputs come from two different graphs")
    layout = None
    if op.shape is not None:
        shape, dtype = op.shape(*args, **params)
    elif op.elementwise:
        # broadcast the shapes; the dtype from the op on one-element stand-ins (cheap, and
        # exactly NumPy's promotion, weak Python scalars included)
        try:
            shape = np.broadcast_shapes(*[a.shape for a in args if isinstance(a, Tensor)])
        except ValueError:
            shapes = ", ".join(str(getattr(a, "shape", ())) for a in args)
            raise ShapeError(f"{op.name}: operands could not be broadcast together "
                             f"(operand shapes: {shapes})") from None
        tiny = [_dummy(a) if isinstance(a, Var) and a.weak else
                np.zeros((1,) * a.ndim, a.dtype) if isinstance(a, Tensor) else a for a in args]
        with np.errstate(all="ignore"):
            dtype = np.asarray(op.forward(*tiny, **params)).dtype
        layout = _elementwise_layout(args, shape)
    else:
        try:
            with np.errstate(all="ignore"):
                out = np.asarray(op.forward(*[_dummy(a) for a in args], **params))
        except (ValueError, IndexError) as e:
            shapes = ", ".join(str(getattr(a, "shape", ())) for a in args)
            raise ShapeError(f"{op.name}: {e} (operand shapes: {shapes})") from None
        shape, dtype, layout = out.shape, out.dtype, layout_of(out)
    # ops on weak scalars only (s * 2) give a weak scalar, as Python arithmetic would
    weak = np.dtype(dtype).kind == "f" and tuple(shape) == () and all(
        isinstance(a, Var) and a.weak for a in args if isinstance(a, Tensor))
    v = Var(graph, "op", shape, dtype, weak=weak, layout=layout)
    v._op, v._inputs, v._params = op, tuple(args), params
    if op.vjp is None:                  # (Var() already refuses grad to int/bool results)
        v.requires_grad = False
    return v


# a Var records the ops applied to it (ops/base.apply asks the value)
Var._record = staticmethod(record)
# and its detach() is a node too (Tensor.detach would wrap the Var's stand-in, no array)
Var.detach = stop_gradient
