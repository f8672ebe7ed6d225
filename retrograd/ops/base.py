"""The op record and the one entry point every op call goes through.

An op is a NumPy ``forward`` and its vector-Jacobian products, side by side.
The VJPs are written with retrograd ops, never raw NumPy, so a gradient is
itself a graph and can be differentiated again (seed 004: symbol-to-symbol).
"""
from __future__ import annotations

import threading

import numpy as np

from ..errors import AxisError, RetrogradError, ShapeError
from ..tensor import Tensor, _mode, as_tensor

_make = Tensor._make

REGISTRY: dict[str, "Op"] = {}


class Op:
    """One primitive.

    forward(*arrays, **params) -> ndarray
    vjp: a tuple with one rule per input, ``rule(g, out, *inputs, **params)`` giving
         the cotangent of that input (None for inputs with no gradient) -- a rule
         runs only if its input needs a gradient; or, for ops with a variable number
         of inputs (``variadic=True``), one rule returning a sequence of cotangents;
         or None for ops with no gradient at all (comparisons, argmax).
    reads: for each rule, the values it reads -- input positions, and "out" for the
         op's own output -- as Chainer's retain_inputs/retain_outputs. Shapes and
         dtypes do not count (an in-place change keeps them). Backward refuses a node
         only when a value its needed rules read was changed in place since it was
         recorded (as PyTorch); None (undeclared) counts every input and the output.
    rewrite: ``rewrite(*args, **params)`` -> (op, args, params) to record instead, or None:
         an exact, better-conditioned form chosen when the node is recorded, so eager,
         Graph and rg.compile all compute (and differentiate) the same thing.
    """

    __slots__ = ("name", "forward", "vjp", "variadic", "doc", "pure", "writes_out", "elementwise",
                 "shape", "reads", "rewrite")

    def __init__(self, name, forward, vjp=None, variadic=False, doc=None, pure=True, out=None,
                 shape=None, reads=None):
        self.name = name
        self.forward = forward
        self.vjp = vjp
        self.variadic = variadic
        self.doc = doc
        n_rules = 0 if vjp is None else 1 if variadic else len(vjp)
        if reads is not None and len(reads) != n_rules:
            raise ValueError(f"op {name!r}: reads= has {len(reads)} entries for {n_rules} rules")
        self.reads = reads
        # what the graph compiler may do with it: pure ops can be folded and shared (CSE);
        # ops whose forward takes ``out=`` write into preallocated buffers, and elementwise
        # ones may overwrite an input that is no longer needed
        self.pure = pure
        ufunc = isinstance(forward, np.ufunc)
        self.writes_out = ufunc if out is None else out
        self.elementwise = ufunc and forward.signature is None
        # shape(*inputs, **params) -> (shape, dtype), for tracing without running forward
        # (needed by impure ops, whose forward must not run at trace time); by default the
        # tracer runs forward on zero-filled stand-ins
        self.shape = shape
        self.rewrite = None

    @property
    def differentiable(self) -> bool:
        return self.vjp is not None

    def read_by(self, needs) -> set | None:
        """The values (input positions, "out") read by the rules for the inputs flagged
        in ``needs``; None: undeclared, so all of them."""
        if self.reads is None:
            return None
        if self.variadic:
            return set(self.reads[0]) if any(needs) else set()
        return {v for r, need in zip(self.reads, needs) if need for v in r}

    def input_vjps(self, g, out, inputs, params, needs):
        """Cotangents for the inputs flagged in ``needs`` (None elsewhere)."""
        if self.variadic:
            return self.vjp(g, out, *inputs, **params)
        return [rule(g, out, *inputs, **params) if need and rule is not None else None
                for rule, need in zip(self.vjp, needs)]

    def __repr__(self):
        return f"<op {self.name}>"


def defop(name, forward, vjp=None, variadic=False, doc=None, pure=True, out=None,
          shape=None, reads=None) -> Op:
    if name in REGISTRY:
        raise ValueError(f"op {name!r} defined twice")
    op = REGISTRY[name] = Op(name, forward, vjp, variadic, doc, pure, out, shape, reads)
    return op


class _Captures(threading.local):
    """The captures (rg.compile traces) in progress in this thread, innermost on top:
    each trace belongs to the thread that runs it, so eager code in other threads runs
    as usual. A capture also records ops on tensors that require grad but are not graph
    values (model parameters): they must be recomputed on every call, not frozen."""
    top = None                # the innermost capture; each keeps the one around it (.outer)


_captures = _Captures()
# captures in progress in all threads: apply's fast test, so that eager code pays a
# global read, not a thread-local one, while nothing is traced anywhere
_n_captures = 0
_count_lock = threading.Lock()


def push_capture(capture):
    global _n_captures
    capture.outer, _captures.top = _captures.top, capture
    with _count_lock:
        _n_captures += 1


def pop_capture(capture):
    global _n_captures
    if _captures.top is not capture:
        raise RetrogradError("captures must end in the order they began")
    _captures.top = capture.outer
    with _count_lock:
        _n_captures -= 1


def capturing():
    """The capture in progress in this thread (an object with ``record(op, args, params)``
    and ``lifted(tensor)``), or None."""
    return _captures.top


def tracing() -> bool:
    """Whether rg.compile is tracing in this thread."""
    return _captures.top is not None


# Set by rg.detect_anomaly() (retrograd.autodiff): called with (op, input arrays, result)
# after every eager op. Off, it costs apply one global test.
anomaly_hook = None


_SCALARS = (int, float, bool)


def apply(op: Op, *args, **params) -> Tensor:
    """Run ``op`` on Tensors (or Python scalars, or arrays) and record it if needed.

    Python scalars stay Python scalars so NumPy 2's promotion treats them as weak:
    ``float32_tensor * 0.5`` is float32. Arrays become constant Tensors. This is the
    hot path of eager mode, hence the single loop and the inlined Tensor construction.
    """
    if op.rewrite is not None:
        new = op.rewrite(*args, **params)
        if new is not None:
            op, args, params = new
    arrays = []
    record = False
    recorder = None
    has_tensor = False
    for a in args:
        if isinstance(a, Tensor):
            arrays.append(a._data)
            has_tensor = True
            if a.requires_grad:
                record = True
            if a._record is not None:      # a value that records ops itself (graph.Var)
                recorder = a._record
        elif isinstance(a, _SCALARS):
            arrays.append(a)
        else:
            return _apply_lifted(op, args, params)
    if not has_tensor:
        return _apply_lifted(op, args, params)
    if recorder is not None:
        return recorder(op, args, params)
    if record and _n_captures and _captures.top is not None:
        return _captures.top.record(op, args, params)
    try:
        out = op.forward(*arrays, **params)
    except (ValueError, IndexError) as e:
        shapes = ", ".join(str(np.shape(a)) for a in arrays)
        kind = AxisError if isinstance(e, IndexError) else ShapeError   # keep `except IndexError`
        raise kind(f"{op.name}: {e} (operand shapes: {shapes})") from None
    except TypeError as e:
        kinds = ", ".join(str(getattr(a, "dtype", type(a).__name__)) for a in arrays)
        raise RetrogradError(f"{op.name}: {e} (operand types: {kinds})") from None
    if type(out) is not np.ndarray:
        out = np.asarray(out)
    # an integer or boolean result (a cast, a comparison) carries no gradient, as in PyTorch
    if record and _mode.enabled and op.vjp is not None and out.dtype.kind in "fc":
        out = _make(out, op, args, params)
    else:
        out = _make(out, None, None, None)
    if anomaly_hook is not None:
        anomaly_hook(op, arrays, out)
    return out


def _apply_lifted(op, args, params):
    """apply() for arguments that are arrays or lists (or only scalars): make them
    constant Tensors first; with no tensor at all, scalars take the default dtype."""
    has_tensor = any(isinstance(a, Tensor) for a in args)
    return apply(op, *(a if isinstance(a, Tensor) or (has_tensor and isinstance(a, _SCALARS))
                       else as_tensor(a) for a in args), **params)
