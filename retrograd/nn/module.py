"""Module and Parameter: the PyTorch-shaped container for trainable tensors.

A Module finds its parameters and sub-modules by looking at its own attributes
(in the order they were assigned), so a layer is just a class that sets
``self.weight = Parameter(...)`` -- no registration calls.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import arrays
from ..errors import RetrogradError, ShapeError, TraceError
from ..ops import base
from ..tensor import Tensor, _bump_version


class Parameter(Tensor):
    """A leaf tensor that requires grad and that Modules collect as trainable."""

    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True, dtype=None, name=None):
        super().__init__(data.data if isinstance(data, Tensor) else data,
                         requires_grad=requires_grad, dtype=dtype, name=name)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


def _buffer_record(op, args, params):
    """apply() for an op on a Buffer: inside rg.compile the buffer is a graph input read at
    every call (the trace's stand-in for it), else a constant tensor of its current array."""
    cap = base.capturing()
    lift = getattr(cap, "lift_state", None)
    args = tuple((lift(a) if lift is not None else Tensor._make(a._data))
                 if isinstance(a, Buffer) else a for a in args)
    return base.apply(op, *args, **params)


class Buffer(Tensor):
    """A module's state that is not trained (PyTorch's register_buffer): BatchNorm's
    running statistics. Modules collect buffers as they do Parameters, by attribute;
    they are saved by ``state_dict`` and never handed to optimizers (not parameters).

    A buffer changes only by ``assign``. Compiled code reads a buffer afresh at every call
    (it is state, not a constant frozen at trace time), and an ``assign`` made while
    tracing happens at every call of the compiled function, as it would eagerly."""

    __slots__ = ()
    _record = staticmethod(_buffer_record)       # ops on a buffer go through _buffer_record
    _state = True           # what a trace (graph.ir.Tracer.lift) reads at every call

    def __init__(self, data, dtype=None, name=None):
        super().__init__(data.data if isinstance(data, Tensor) else data, dtype=dtype, name=name)

    def assign(self, value):
        """Make ``value`` (a tensor or array of this buffer's shape) the buffer's value, cast
        to its dtype: now, or, inside rg.compile, at every call of the compiled code."""
        if not isinstance(value, Tensor):
            value = Tensor(value if arrays.is_foreign(value) else np.asarray(value))
        what = f"buffer '{self.name}'" if self.name else "the buffer"
        if value.shape != self.shape:
            raise ShapeError(f"Buffer.assign: value has shape {value.shape}, {what} "
                             f"{self.shape}")
        cap = base.capturing()
        if cap is not None and hasattr(cap, "assign"):
            cap.assign(self, value)
        elif isinstance(value._data, np.ndarray) and isinstance(self._data, np.ndarray):
            # a new array: graphs recorded before keep the value they read
            self._data = np.array(value._data, dtype=self.dtype)
        elif arrays.is_foreign(value._data) or arrays.is_foreign(self._data):
            self._data = _new_array_like(value._data, self._data)
        else:                                          # a graph value, no trace to run it
            raise TraceError(
                f"Buffer.assign: a graph value for {what} outside "
                "rg.compile: a define-then-run Graph cannot update module state; call "
                "model.eval() first, or use rg.compile / rg.graph.compile_step")

    def __repr__(self):
        return f"Buffer(shape={self.shape}, dtype={self.dtype})"


def _new_array_like(value, like):
    """``value`` as a new array of ``like``'s namespace, device and dtype."""
    xp = arrays.namespace(like)
    moved = arrays.to_namespace(value, xp, arrays.device(like))
    return xp.astype(moved, arrays.dtype_of(xp, like.dtype), copy=True)


def _copy_into(t, arr):
    """Copy the host array ``arr`` into the foreign array of ``t``, in place, cast as
    np.copyto(casting="same_kind") would."""
    host = np.empty(arr.shape, arrays.numpy_dtype(t.dtype))
    np.copyto(host, arr, casting="same_kind")
    t._data[...] = arrays.to_namespace(host, arrays.namespace(t._data), arrays.device(t._data))
    _bump_version(t)


class Module:
    """Base class of layers and models: override ``forward``."""

    training = True

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        if base._n_captures:             # (no trace anywhere: one test)
            capture = base.capturing()
            if capture is not None:      # rg.compile: the trace depends on self.training
                capture.called(self)
        return self.forward(*args, **kwargs)

    # ---- structure
    def _members(self):
        """(name, member) for parameters, buffers and sub-modules, in assignment order."""
        for name, value in vars(self).items():
            if isinstance(value, (Parameter, Buffer, Module)):
                yield name, value
            elif isinstance(value, (list, tuple)) and value and all(
                    isinstance(v, (Module, Parameter, Buffer)) for v in value):
                for i, v in enumerate(value):     # lists of layers or of parameters
                    yield f"{name}.{i}" if name != "_layers" else str(i), v

    def named_children(self):
        for name, m in self._members():
            if isinstance(m, Module):
                yield name, m

    def children(self):
        return [m for _, m in self.named_children()]

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, m in self.named_children():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return [m for _, m in self.named_modules()]

    def named_parameters(self, prefix=""):
        seen = set()
        for name, m in self._members():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(m, Parameter):
                if id(m) not in seen:
                    seen.add(id(m))
                    yield full, m
            elif isinstance(m, Module):
                for n, p in m.named_parameters(full):
                    if id(p) not in seen:
                        seen.add(id(p))
                        yield n, p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix=""):
        """(name, Buffer) for the buffers of this module and its sub-modules."""
        for name, m in self._members():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(m, Buffer):
                yield full, m
            elif isinstance(m, Module):
                yield from m.named_buffers(full)

    def buffers(self):
        return [b for _, b in self.named_buffers()]

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # ---- modes and gradients
    def train(self, mode: bool = True):
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, xp, device=None):
        """Move every parameter and buffer to array namespace ``xp`` (a module: ``numpy``,
        ``cupy``, ``array_api_strict``...) on ``device`` (default: the namespace's), in
        place: the same Parameter objects hold the new arrays, so an optimizer made before
        keeps working (its state follows at its next step); gradients move with them.
        ``model.to(numpy)`` brings the model back to the host; ``xp`` may also be the
        namespace's name (``"cupy"``). Returns the module."""
        xp = arrays.namespace_module(xp, f"{type(self).__name__}.to")
        for _, t in self._named_state():
            # (a copy, as a move to a device makes one: never memory shared with the old array)
            data = arrays.to_namespace(t._data, xp, device, copy=True)
            if data is not t._data:
                t._data = data
                _bump_version(t, new_array=True)    # graphs saved before must not backprop
            if isinstance(t.grad, Tensor):
                t.grad = Tensor._make(arrays.to_namespace(t.grad._data, xp, device, copy=True))
        arrays.count_move()
        return self

    # ---- state
    def state_dict(self, layout: str = "retrograd") -> "OrderedDict[str, np.ndarray]":
        """Parameter and buffer name -> a copy of its array (parameters first).

        ``layout="torch"``: the matrices retrograd stores as PyTorch's transpose (Linear's
        weight is (in, out), PyTorch's (out, in); RNN/LSTM/GRU weights likewise) are
        transposed, so the dict loads into the same torch.nn model (same names)."""
        flip = self._torch_transposed_names(layout)
        # NumPy arrays whatever the namespace the model computes in (a checkpoint is host data)
        return OrderedDict((n, (arrays.to_numpy(p.data).T if n in flip
                                else arrays.to_numpy(p.data)).copy())
                           for n, p in self._named_state())

    def _torch_transposed_names(self, layout):
        """Full names of the parameters a layout="torch" dict holds transposed: each
        module lists its own in ``_torch_transposed``."""
        if layout not in ("retrograd", "torch"):
            raise ValueError(f"layout must be 'retrograd' or 'torch', got {layout!r}")
        if layout == "retrograd":
            return set()
        return {f"{prefix}.{n}" if prefix else n for prefix, m in self.named_modules()
                for n in getattr(m, "_torch_transposed", ())}

    def _named_state(self):
        yield from self.named_parameters()
        yield from self.named_buffers()

    def load_state_dict(self, state, strict: bool = True, layout: str = "retrograd"):
        """Copy arrays into the parameters and buffers in place (their dtype is kept).
        ``layout="torch"``: ``state`` is a PyTorch model's (see ``state_dict``)."""
        flip = self._torch_transposed_names(layout)
        own = dict(self._named_state())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise RetrogradError(f"{type(self).__name__}.load_state_dict: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        for name, p in own.items():
            if name not in state:
                continue
            value = state[name]
            arr = arrays.to_numpy(value) if arrays.is_foreign(value) else np.asarray(value)
            arr = arr.T if name in flip else arr
            if arr.shape != p.shape:
                raise ShapeError(f"{type(self).__name__}.load_state_dict: '{name}' has shape "
                                 f"{arr.shape} in the state dict but {p.shape} in the model")
            if type(p.data) is np.ndarray:
                np.copyto(p.data, arr, casting="same_kind")
            else:       # the model's namespace and device are kept
                _copy_into(p, arr)
        return self

    # ---- display
    def extra_repr(self) -> str:
        return ""

    def _repr_html_(self):
        """Jupyter: a table of the layers and their parameter counts (nn.summary with an
        input shape adds the output shapes)."""
        from .summary import summary
        return summary(self)._repr_html_()

    def __repr__(self):
        children = list(self.named_children())
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not children:
            return head + ")"
        lines = [head]
        for name, m in children:
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return "\n".join(lines) + "\n)"


class Sequential(Module):
    """Layers applied in order: ``Sequential(Linear(784, 100), Tanh(), Linear(100, 10))``."""

    def __init__(self, *layers):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: item {i} is a {type(layer).__name__}, not a Module")
        self._layers = list(layers)

    def forward(self, x):
        for i, layer in enumerate(self._layers):
            try:
                x = layer(x)
            except ShapeError as e:
                raise ShapeError(f"Sequential layer {i} ({type(layer).__name__}): {e}") from None
        return x

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Sequential(*self._layers[i])
        return self._layers[i]

    def __len__(self):
        return len(self._layers)

    def __iter__(self):
        return iter(self._layers)

    def append(self, layer):
        self._layers.append(layer)
        return self
