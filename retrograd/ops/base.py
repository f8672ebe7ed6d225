"""The op record and the one entry point every op call goes through.

An op is a NumPy ``forward`` and its vector-Jacobian products, side by side.
The VJPs are written with retrograd ops, never raw NumPy, so a gradient is
itself a graph and can be differentiated again (seed 004: symbol-to-symbol).
"""
from __future__ import annotations

import inspect
import threading
from types import MethodType

import numpy as np

from ..arrays import device, is_numpy, kind, namespace, promote
from ..errors import AxisError, RetrogradError, ShapeError
from .. import tensor as _tensor
from ..tensor import Tensor, _mode, as_tensor
from . import numba_forms

_new = object.__new__

REGISTRY: dict[str, "Op"] = {}


class Op:
    """One primitive, and every fact about it (one record per op).

    forward(*arrays, **params) -> ndarray
    vjp: a tuple with one rule per input, ``rule(g, out, *inputs, **params)`` giving
         the cotangent of that input (None for inputs with no gradient) -- a rule
         runs only if its input needs a gradient; or, for ops with a variable number
         of inputs (``variadic=True``), one rule returning a sequence of cotangents;
         or None for ops with no gradient at all (comparisons, argmax). A rule may
         return a cotangent in the broadcast (output) shape: the backward walk sums
         it back to its input's shape (autodiff._walk), so rules read ``g * b``.
    reads: for each rule, the values it reads -- input positions, and "out" for the
         op's own output -- as Chainer's retain_inputs/retain_outputs. Shapes and
         dtypes do not count (an in-place change keeps them). Backward refuses a node
         only when a value its needed rules read was changed in place since it was
         recorded (as PyTorch); None (undeclared) counts every input and the output.
    rewrite: ``rewrite(*args, **params)`` -> (op, args, params) to record instead, or None:
         an exact, better-conditioned form chosen when the node is recorded, so eager,
         Graph and rg.compile all compute (and differentiate) the same thing.
    fresh: the result is always a new array, never a view of an input (the compiled
         code's memory planner may then reuse the input's buffer); default: True for
         ops writing into ``out=``, else False (may be a view: the safe assumption).
    kernel: ``kernel(node)`` -> a ``Kernel`` (a specialised NumPy expression for this
         node of a compiled program, e.g. ``x.T`` for a 2-D transpose) or None (call
         ``forward``).
    simplify: ``simplify(node)`` -> an existing node that ``node`` equals (x * 1 is x),
         or ``(op, inputs, params)`` to compute it by instead (x * -1 is neg(x)), or
         None: the algebraic identities of graph/program.py's simplify pass.
    xp_forward: ``xp_forward(xp, *arrays, **params)``, the forward on arrays of another
         namespace ``xp`` (retrograd.arrays), for ops whose ``forward`` is NumPy-only;
         for a ufunc forward it defaults to the array API's function of that name
         (``np.add`` -> ``xp.add``). Ops without it compute with the namespace of their
         inputs in ``forward`` itself.
    lowering: how a loop-generating backend computes the op, for ops that are not
         elementwise (those have ``scalar``): "reduce_add", "reduce_max", "reduce_min" (over
         the params axis/keepdims), "reduce_to" (to the param shape), "blas_dot", "view_T",
         "cast" (elementwise to the node's dtype), "rows_lse_pick" and "rows_softmax_onehot"
         (the fused softmax cross-entropy and its gradient); or a function, the op's
         Numba form: ``form(*inputs, **params, out=array)`` in loops and np.dot that
         Numba compiles (kept in the op's file, tested against ``forward``), for the dtypes
         in its ``dtypes`` attribute (default float32 and float64); None: it has none.
         A form whose ``eager`` attribute is True replaces a NumPy loop of many calls: it
         runs in place of ``forward`` wherever Numba is installed (``run``, ops/numba_forms.py),
         and the op needs ``shape``.
    scalar: for an elementwise op, ``scalar(*names, **params)`` -> a Python expression of
         one element (``"({a} * {b})"``, ``"math.exp({x})"``) for code generators that
         fuse loops (the Numba backend); None where it has none for these params. The
         names are evaluated once by the caller; outside the op's domain the form means
         what it does compiled (nan, inf as in C and NumPy), not CPython's exceptions.

    accumulate: for an op of one input, ``accumulate(acc, g, x, **params)``, adding the
         cotangent of its input ``x`` into ``acc`` (an array of its shape and dtype) in place: what a
         first-order backward on NumPy arrays runs instead of the rule, where the rule's
         result would be mostly zeros -- getitem's adds g into its slice, so a loop over
         x[t] costs each step's slice, not a whole-x array per step (L² for L steps).
         The rule stays the definition (higher orders, traces, other namespaces).

    An op is called like the function it is: ``exp(x)`` is ``apply(exp, x)``.
    """

    def __init__(self, name, forward, vjp=None, variadic=False, doc=None, pure=True, out=None,
                 shape=None, reads=None, fresh=None, kernel=None, simplify=None, scalar=None,
                 args=None, lowering=None, xp_forward=None, accumulate=None):
        self.name = self.__name__ = self.__qualname__ = name
        self.forward = forward
        self.vjp = vjp
        self.variadic = variadic
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
        self.fresh = self.writes_out if fresh is None else fresh
        # shape(*inputs, **params) -> (shape, dtype), for tracing without running forward
        # (needed by impure ops, whose forward must not run at trace time); by default the
        # tracer runs forward on zero-filled stand-ins
        self.shape = shape
        self.rewrite = None
        self.kernel, self.simplify, self.scalar = kernel, simplify, scalar
        self.lowering = lowering
        if accumulate is not None and (variadic or n_rules != 1):
            raise ValueError(f"op {name!r}: accumulate= is for an op of one differentiable input")
        self.accumulate = accumulate
        self.xp_forward = xp_forward
        if xp_forward is None and ufunc:
            self.xp_forward = _standard_function(name, forward)
        # what eager apply and the NumPy generator call: the forward, or for an op whose
        # Numba form replaces its NumPy loop (its ``eager`` attribute), a dispatcher to it
        self.run = forward
        if getattr(lowering, "eager", False):
            if shape is None:
                raise ValueError(f"op {name!r}: a Numba form run eagerly needs shape= (its "
                                 "result is allocated before the form runs)")
            self.run = numba_forms.dispatcher(self)
        self.__doc__ = doc
        self.__signature__ = _signature(forward, vjp, variadic, args)

    @property
    def differentiable(self) -> bool:
        return self.vjp is not None

    def __get__(self, obj, cls=None):
        # as a Tensor method (``t.exp()``, ``a * b``) an op binds like a function
        return self if obj is None else MethodType(self, obj)

    def __reduce__(self):
        # one object, as a function is: a copy or a pickle of an op is the registered op
        return _registered, (self.name,)

    def forward_in(self, xp, arrays, params):
        """The forward on arrays of namespace ``xp`` (not NumPy): ``xp_forward`` where the
        NumPy forward is a ufunc or NumPy-only, else the forward itself, which takes its
        namespace from its inputs."""
        if self.xp_forward is not None:
            return self.xp_forward(xp, *arrays, **params)
        return self.forward(*arrays, **params)

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
        return f"<op {self.name}{self.__signature__ or ''}>"


# NumPy ufuncs whose array-API function has another name
_STANDARD_NAMES = {"absolute": "abs", "power": "pow", "arccos": "acos", "arcsin": "asin",
                   "arctan": "atan", "arccosh": "acosh", "arcsinh": "asinh", "arctanh": "atanh",
                   "arctan2": "atan2", "true_divide": "divide", "rint": "round"}


# standard functions defined on floating-point arguments only, whose ufuncs compute
# integers (and bools) as float64
_FLOATING = frozenset({
    "divide", "exp", "expm1", "log", "log1p", "log2", "log10", "logaddexp", "sqrt", "sin",
    "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "asinh", "acosh",
    "atanh", "hypot", "copysign"})


def _standard_function(name, ufunc):
    """``xp_forward`` for a ufunc forward: the array API's function of the same name, on
    its arguments promoted as the ufunc would (a bool mask times a float: ``g * (x > 0)``;
    integers as floats for ``exp``)."""
    std = _STANDARD_NAMES.get(ufunc.__name__, ufunc.__name__)
    floating = std in _FLOATING

    def xp_forward(xp, *arrays, **params):
        f = getattr(xp, std, None)
        if f is None:
            raise RetrogradError(f"{name}: namespace {xp.__name__} has no {std}()")
        args = promote(xp, *arrays, 1.0)[:-1] if floating else promote(xp, *arrays)
        return f(*args, **params)
    xp_forward.__name__ = f"xp_{std}"
    return xp_forward


def _registered(name):
    return REGISTRY[name]


def _signature(forward, vjp, variadic, args):
    """The signature an op is called with: its inputs, positional (``args``, else the names
    its first rule takes after ``g, out``, else those of a NumPy ufunc's inputs)."""
    if args is None and vjp is not None and not variadic and vjp[0] is not None:
        args = tuple(inspect.signature(vjp[0]).parameters)[2:]
    if args is None and isinstance(forward, np.ufunc):
        args = ("x",) if forward.nin == 1 else ("a", "b")[:forward.nin]
    if args is None:
        return None
    P = inspect.Parameter
    return inspect.Signature([P(a, P.POSITIONAL_ONLY) for a in args])


class Kernel:
    """How a compiled program computes one node: ``emit(args, out)`` gives the Python
    expression (``out``: the name of a buffer to write into, or None), and the flags tell
    the memory planner whether it writes into ``out=`` (and elementwise, so it may
    overwrite a dying input), whether its result is a new array or may be a view, and
    which constants the expression names (``consts``: name -> value)."""

    __slots__ = ("emit", "writes_out", "elementwise", "fresh", "consts")

    def __init__(self, emit, writes_out=False, elementwise=False, fresh=True, consts=None):
        self.emit, self.writes_out, self.elementwise = emit, writes_out, elementwise
        self.fresh, self.consts = fresh, consts or {}


def out_kw(o):
    """The ``, out=b3`` of an emitted call (nothing when ``o`` is None)."""
    return f", out={o}" if o else ""


def defop(name, forward, vjp=None, variadic=False, doc=None, pure=True, out=None,
          shape=None, reads=None, **facts) -> Op:
    """Define and register an op (``facts``: fresh, kernel, simplify, scalar, args, lowering,
    xp_forward, accumulate; see Op)."""
    if name in REGISTRY:
        raise ValueError(f"op {name!r} defined twice")
    op = REGISTRY[name] = Op(name, forward, vjp, variadic, doc, pure, out, shape, reads, **facts)
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
    record = has_tensor = foreign = False
    recorder = None
    for a in args:
        if isinstance(a, Tensor):
            d = a._data
            arrays.append(d)
            has_tensor = True
            if a.requires_grad:
                record = True
            # a value that records ops itself (graph.Var; a plain Tensor never does)
            if type(a) is not Tensor and a._record is not None:
                recorder = a._record
            elif type(d) is not np.ndarray:     # an array of another namespace (CuPy, ...)
                foreign = True
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
    if foreign:
        out = _forward_foreign(op, arrays, params)
    else:
        try:
            out = op.run(*arrays, **params)
        except (ValueError, IndexError) as e:
            shapes = ", ".join(str(np.shape(a)) for a in arrays)
            # (an AxisError is an IndexError: `except IndexError` around an op still works)
            error = AxisError if isinstance(e, IndexError) else ShapeError
            raise error(f"{op.name}: {e} (operand shapes: {shapes})") from None
        except TypeError as e:
            kinds = ", ".join(str(getattr(a, "dtype", type(a).__name__)) for a in arrays)
            raise RetrogradError(f"{op.name}: {e} (operand types: {kinds})") from None
        if type(out) is not np.ndarray:
            out = np.asarray(out)
    # the result: Tensor._make's fields, set here (a call less on every op)
    t = _new(Tensor)
    t._data = out
    # an integer or boolean result (a cast, a comparison) carries no gradient, as in PyTorch
    if (record and _mode.enabled and op.vjp is not None
            and (out.dtype.kind if not foreign else kind(out.dtype)) in "fc"):
        t.requires_grad = True
        t._op, t._inputs, t._params = op, args, params
    else:
        t.requires_grad = False
        t._op = t._inputs = t._params = None
    t.grad = t._hooks = t.name = t._vc = None
    t._retains_grad = False
    t._rec = _tensor._clock
    if anomaly_hook is not None:
        anomaly_hook(op, arrays, t)
    return t


Op.__call__ = apply          # exp(x) is apply(exp, x): no wrapper function in between


def _forward_foreign(op, arrays, params):
    """The forward on arrays of another namespace (arrays.py): the op computes in their
    namespace, a NumPy ufunc as the standard function of the same name."""
    xp = namespace(*arrays)
    if any(type(a) is np.ndarray for a in arrays):
        # NumPy constants (index arrays, masks) join the others' namespace and device, as
        # JAX moves NumPy arguments onto its device
        on = device(next(a for a in arrays if not is_numpy(a)))
        arrays = [xp.asarray(a, device=on) if type(a) is np.ndarray else a for a in arrays]
    try:
        out = op.forward_in(xp, arrays, params)
    except (ValueError, IndexError, TypeError, AttributeError, RuntimeError) as e:
        # (RuntimeError, TypeError: also an op that reached for NumPy on a device array)
        shapes = ", ".join(str(getattr(a, "shape", ())) for a in arrays)
        raise RetrogradError(f"{op.name}: {e} (operand shapes: {shapes}; "
                             f"namespace {xp.__name__})") from None
    return out


def _apply_lifted(op, args, params):
    """apply() for arguments that are arrays or lists (or only scalars): make them
    constant Tensors first; with no tensor at all, scalars take the default dtype."""
    has_tensor = any(isinstance(a, Tensor) for a in args)
    return apply(op, *(a if isinstance(a, Tensor) or (has_tensor and isinstance(a, _SCALARS))
                       else as_tensor(a) for a in args), **params)
