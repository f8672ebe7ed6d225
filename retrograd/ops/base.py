"""The op record and the one entry point every op call goes through.

An op is a NumPy ``forward`` and its vector-Jacobian products, side by side.
The VJPs are written with retrograd ops, never raw NumPy, so a gradient is
itself a graph and can be differentiated again (seed 004: symbol-to-symbol).
"""
from __future__ import annotations

import numpy as np

from ..errors import RetrogradError, ShapeError
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
    """

    __slots__ = ("name", "forward", "vjp", "variadic", "doc")

    def __init__(self, name, forward, vjp=None, variadic=False, doc=None):
        self.name = name
        self.forward = forward
        self.vjp = vjp
        self.variadic = variadic
        self.doc = doc

    @property
    def differentiable(self) -> bool:
        return self.vjp is not None

    def input_vjps(self, g, out, inputs, params, needs):
        """Cotangents for the inputs flagged in ``needs`` (None elsewhere)."""
        if self.variadic:
            return self.vjp(g, out, *inputs, **params)
        return [rule(g, out, *inputs, **params) if need and rule is not None else None
                for rule, need in zip(self.vjp, needs)]

    def __repr__(self):
        return f"<op {self.name}>"


def defop(name, forward, vjp=None, variadic=False, doc=None) -> Op:
    if name in REGISTRY:
        raise ValueError(f"op {name!r} defined twice")
    op = REGISTRY[name] = Op(name, forward, vjp, variadic, doc)
    return op


_SCALARS = (int, float, bool)


def apply(op: Op, *args, **params) -> Tensor:
    """Run ``op`` on Tensors (or Python scalars, or arrays) and record it if needed.

    Python scalars stay Python scalars so NumPy 2's promotion treats them as weak:
    ``float32_tensor * 0.5`` is float32. Arrays become constant Tensors. This is the
    hot path of eager mode, hence the single loop and the inlined Tensor construction.
    """
    arrays = []
    record = False
    has_tensor = False
    for a in args:
        if isinstance(a, Tensor):
            arrays.append(a._data)
            has_tensor = True
            if a.requires_grad:
                record = True
        elif isinstance(a, _SCALARS):
            arrays.append(a)
        else:
            return _apply_lifted(op, args, params)
    if not has_tensor:
        return _apply_lifted(op, args, params)
    try:
        out = op.forward(*arrays, **params)
    except (ValueError, IndexError) as e:
        shapes = ", ".join(str(np.shape(a)) for a in arrays)
        raise ShapeError(f"{op.name}: {e} (operand shapes: {shapes})") from None
    except TypeError as e:
        kinds = ", ".join(str(getattr(a, "dtype", type(a).__name__)) for a in arrays)
        raise RetrogradError(f"{op.name}: {e} (operand types: {kinds})") from None
    if type(out) is not np.ndarray:
        out = np.asarray(out)
    if record and _mode.enabled and op.vjp is not None:
        return _make(out, op, args, params)
    return _make(out, None, None, None)


def _apply_lifted(op, args, params):
    """apply() for arguments that are arrays or lists (or only scalars): make them
    constant Tensors first; with no tensor at all, scalars take the default dtype."""
    has_tensor = any(isinstance(a, Tensor) for a in args)
    return apply(op, *(a if isinstance(a, Tensor) or (has_tensor and isinstance(a, _SCALARS))
                       else as_tensor(a) for a in args), **params)
