"""Tensor: an ndarray plus the record of the op that made it.

A Tensor made by an op while some input requires grad is a node of the
computation graph: it remembers its op, its input Tensors and the op's static
parameters. That is all the backward walk (autodiff.py) needs, and because the
output *is* the node there are no reference cycles: a graph lives exactly as
long as the Tensors that reach it.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import math
import threading
import weakref

import numpy as np

from . import arrays as _xp
from .errors import RetrogradError

__all__ = [
    "Tensor", "tensor", "as_tensor", "no_grad", "enable_grad", "set_grad_enabled",
    "is_grad_enabled", "manual_seed", "zeros", "ones", "full", "arange", "eye",
    "rand", "randn", "zeros_like", "ones_like", "full_like", "rand_like", "randn_like",
]


# --------------------------------------------------------------------------- grad mode

class _GradMode(threading.local):
    enabled = True


_mode = _GradMode()


def is_grad_enabled() -> bool:
    return _mode.enabled


class set_grad_enabled(contextlib.ContextDecorator):
    """Context manager / decorator that turns graph recording on or off."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)

    def __enter__(self):
        self.prev = _mode.enabled
        _mode.enabled = self.mode
        return self

    def __exit__(self, *exc):
        _mode.enabled = self.prev
        return False


class no_grad(set_grad_enabled):
    """``with rg.no_grad():`` -- ops run on arrays and record nothing."""

    def __init__(self):
        super().__init__(False)


class enable_grad(set_grad_enabled):
    def __init__(self):
        super().__init__(True)


# --------------------------------------------------------------------------- dtypes

def _default_array(data, dtype=None) -> np.ndarray:
    """Python data -> float32 (floats) / int64 (ints) / bool; ndarrays keep their dtype."""
    if isinstance(data, Tensor):
        arr = data.data
    elif isinstance(data, (np.ndarray, np.generic)):
        arr = np.asarray(data)
    elif _xp.is_foreign(data):          # CuPy, array_api_strict, ...: kept where it is
        return data if dtype is None else _xp.astype(data, dtype)
    else:
        try:
            arr = np.asarray(data)
        except ValueError as e:            # ragged nested lists
            raise TypeError(f"rg.tensor: cannot make a tensor from this "
                            f"{type(data).__name__}: {e}") from None
        if arr.dtype == np.float64:        # Python floats
            arr = arr.astype(np.float32)
        elif arr.dtype.kind == "i":        # Python ints
            arr = arr.astype(np.int64, copy=False)
        elif arr.dtype == object:
            raise TypeError(f"rg.tensor: cannot make a tensor from {type(data).__name__} "
                            "(ragged nested lists or non-numeric values)")
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return arr


def _check_can_require_grad(arr: np.ndarray, where: str = "tensor"):
    if _xp.kind(arr.dtype) not in "fc":
        raise RetrogradError(
            f"{where}: only floating-point tensors can require gradients, got dtype {arr.dtype}")


# --------------------------------------------------------------------------- versions
#
# In-place changes made through retrograd (``t += x``, ``t[i] = v``, ``t.data = ...``,
# optimizer steps) bump a version counter, so that a backward that would read a value
# changed after its op recorded it raises instead of returning a wrong gradient.
# A global clock counts the changes; every node remembers the clock when it was
# recorded (``_rec``, one integer store per op), and backward only looks closer at a
# node when the clock has moved since -- never in the usual forward/backward/step loop.

_clock = 0


class _Version:
    """A data array's in-place history: ``version`` counts the changes, ``epoch`` is
    the clock at the last one, ``recent`` the clock at the last few (to tell the
    version a node saw in error messages). Shared by a tensor, its ``.detach()`` and
    the tensors made from it by view ops (slicing, reshape, transpose: see
    ``share_version``), which all hold the same memory. Writes into the raw ndarray
    (``t.data[...] = v``, ``t.numpy()``) are invisible to it."""

    __slots__ = ("version", "epoch", "recent", "views")

    def __init__(self, continues: "_Version | None" = None):
        self.version = 0 if continues is None else continues.version
        self.epoch = 0 if continues is None else continues.epoch
        self.recent = collections.deque(() if continues is None else continues.recent, maxlen=8)
        self.views = None       # weak references to the view tensors of this memory

    def live_views(self) -> list:
        return [] if self.views is None else [v for v in (r() for r in self.views) if v is not None]

    def version_at(self, clock: int) -> int | None:
        """The version at the moment the clock read ``clock`` (None if too long ago)."""
        newer = sum(1 for e in self.recent if e > clock)
        if newer == len(self.recent) == self.recent.maxlen:
            return None
        return self.version - newer


def share_version(view: "Tensor", base) -> "Tensor":
    """``view`` was made by a view op (slicing, reshape, transpose) of ``base``: when its
    data shares memory with base's, both count in-place changes on one counter, so a
    change through either is seen by a backward that saved the other."""
    if (isinstance(base, Tensor) and isinstance(base._data, np.ndarray)   # graph values: none
            and isinstance(view._data, np.ndarray)
            and np.may_share_memory(view._data, base._data)):
        vc = base._vc
        if vc is None:
            vc = base._vc = _Version()
        view._vc = vc
        # remembered (weakly) so that a recorded in-place op, which gives its tensor a new
        # array, can refuse to split a view from its base (ops/__init__.py)
        views = vc.views
        if views is None:
            views = vc.views = []
        elif len(views) >= 16 and not len(views) & (len(views) - 1):
            # dead references are dropped at 16, 32, 64, ... entries: amortised O(1) per
            # view (a weight gets a new transpose view every backward)
            views = vc.views = [r for r in views if r() is not None]
        views.append(weakref.ref(view))
    return view


def _bump_versions(ts):
    """_bump_version of each tensor of ``ts``, in one call (a fused optimizer's update of
    all its parameters: 18 calls were ~3 us of B2's compiled step)."""
    global _clock
    clock = _clock
    for t in ts:
        clock += 1
        vc = t._vc
        if vc is None:
            vc = t._vc = _Version()
        vc.version += 1
        vc.epoch = clock
        vc.recent.append(clock)
    _clock = clock


def _bump_version(t: "Tensor", new_array: bool = False):
    """Count one in-place change of ``t``'s data. ``new_array``: ``t`` now holds a
    different array, so aliases of the old one keep the old counter."""
    global _clock
    _clock += 1
    vc = t._vc
    if vc is None or new_array:
        vc = t._vc = _Version(vc)
    vc.version += 1
    vc.epoch = _clock
    vc.recent.append(_clock)


# --------------------------------------------------------------------------- Tensor

_new = object.__new__

class Tensor:
    """An n-dimensional array that can record how it was computed.

    ``requires_grad`` marks tensors whose gradient we want; any op with such an
    input records itself (``_op``, ``_inputs``, ``_params``) on its output.
    Leaves (``_op is None``) accumulate ``.grad`` on backward.
    """

    # _vc: the data's _Version (None until first changed or detached); _rec: the clock
    # when this node was recorded; _site: where it was made, set only by detect_anomaly;
    # _prev: (clock, old value node) once a recorded in-place op replaced this tensor's
    # node (unset until then; autodiff._as_recorded follows it)
    __slots__ = ("_data", "requires_grad", "grad", "_op", "_inputs", "_params",
                 "_hooks", "_retains_grad", "name", "_vc", "_rec", "_site", "_prev",
                 "__weakref__")
    __array_priority__ = 1000   # ndarray <op> Tensor -> our reflected operator
    # values that record ops on themselves instead of computing them (retrograd.graph.Var)
    # set this to ``record(op, args, params)``; ops/base.apply asks the value
    _record = None
    __array_ufunc__ = None      # numpy must not swallow Tensors into object arrays

    def __init__(self, data, requires_grad: bool = False, dtype=None, name: str | None = None):
        arr = _default_array(data, dtype)
        if requires_grad:
            _check_can_require_grad(arr)
        self._data = arr
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._op = None
        self._inputs = None
        self._params = None
        self._hooks = None
        self._retains_grad = False
        self.name = name
        self._vc = None
        self._rec = _clock

    @classmethod
    def _make(cls, data: np.ndarray, op=None, inputs=None, params=None) -> "Tensor":
        """Fast constructor used by ops (no dtype inference, no checks)."""
        t = _new(cls)
        t._data = data
        t.requires_grad = op is not None
        t._op = op
        t._inputs = inputs
        t._params = params
        t.grad = t._hooks = t.name = t._vc = None
        t._retains_grad = False
        t._rec = _clock
        return t

    # ---- data access
    @property
    def data(self) -> np.ndarray:
        return self._data

    @data.setter
    def data(self, value):
        arr = value.data if isinstance(value, Tensor) else value
        if type(arr) is not np.ndarray and not _xp.is_foreign(arr):   # (an ndarray: as is)
            arr = np.asarray(arr)
        # `t.data -= x` changes the array in place and then assigns it back, the same one:
        # same array, same counter (shared with .detach()); a new array, a counter of its own
        new_array = arr is not self._data
        self._data = arr
        _bump_version(self, new_array)       # nodes that saved this tensor see new values

    @property
    def version(self) -> int:
        """How many in-place changes retrograd has seen to this tensor's data."""
        return 0 if self._vc is None else self._vc.version

    def numpy(self) -> np.ndarray:
        """The data as an ndarray: the tensor's own memory, or a host copy of an array that
        lives elsewhere (another namespace, a GPU)."""
        return _xp.to_numpy(self._data)

    def __array__(self, dtype=None, copy=None):
        if type(self._data) is not np.ndarray:
            arr = _xp.to_numpy(self._data)
            return arr if dtype is None else arr.astype(dtype)
        if dtype is not None and dtype != self._data.dtype:
            return self._data.astype(dtype)
        return self._data.copy() if copy else self._data

    # DLPack: zero-copy exchange with NumPy, PyTorch, JAX (``torch.from_dlpack(t)``), the
    # ndarray's own export. A tensor that requires grad is refused, as PyTorch does: the
    # other library would write into it behind autograd's back; .detach() shares the memory.
    def __dlpack__(self, **kwargs):
        if self.requires_grad:
            raise RetrogradError("Tensor.__dlpack__: cannot export a tensor that requires "
                                 "grad; export tensor.detach() (same memory, no graph)")
        data = self._data if type(self._data) is not np.ndarray else np.asarray(self._data)
        return data.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()

    def item(self):
        if self._data.size != 1:
            raise ValueError(f"item(): only a tensor with one element can be converted to a "
                             f"Python scalar, this one has shape {self.shape}")
        return _xp.to_numpy(self._data).item()

    def tolist(self):
        return _xp.to_numpy(self._data).tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if _xp.kind(self._data.dtype) not in "iub":
            raise TypeError(f"only integer tensors can be used as an index, got {self.dtype}")
        return int(self.item())

    def __bool__(self):
        if self._data.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous; "
                             "use .any() or .all()")
        return bool(self._data)

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    __hash__ = object.__hash__   # tensors are graph nodes: hashed by identity

    # ---- metadata
    @property
    def shape(self) -> tuple:
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def size(self) -> int:
        d = self._data                # (a torch tensor's .size is a method: count the shape)
        return d.size if type(d) is np.ndarray else math.prod(d.shape)

    @property
    def is_leaf(self) -> bool:
        return self._op is None

    @property
    def op_name(self) -> str | None:
        return None if self._op is None else self._op.name

    def __repr__(self):
        body = np.array2string(_xp.to_numpy(self._data), separator=", ", precision=4,
                               threshold=20, prefix="tensor(")
        extras = []
        if type(self._data) is not np.ndarray:
            extras.append(f"dtype={self._data.dtype}, namespace={_xp.name_of(self._data)}")
        elif self._data.dtype not in (np.float32, np.int64, np.bool_):
            extras.append(f"dtype={self._data.dtype}")
        if self._op is not None:
            extras.append(f"op={self._op.name}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        if self.name:
            extras.append(f"name={self.name!r}")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    def _repr_html_(self):          # Jupyter: metadata over the values
        from ._html import tensor
        return tensor(self)

    # ---- autograd API
    def backward(self, grad=None, retain_graph: bool = False, create_graph: bool = False):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad."""
        from .autodiff import backward
        backward(self, grad, retain_graph=retain_graph, create_graph=create_graph)

    def detach(self) -> "Tensor":
        """Same data (and version counter), cut from the graph."""
        t = Tensor._make(self._data)
        if self._vc is None:
            self._vc = _Version()
        t._vc = self._vc
        return t

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        if not self.is_leaf:
            raise RetrogradError("requires_grad_() can only be changed on leaf tensors; "
                                 "use .detach() to make a leaf")
        if flag:
            _check_can_require_grad(self._data, "requires_grad_")
        self.requires_grad = bool(flag)
        return self

    def retain_grad(self) -> "Tensor":
        """Keep ``.grad`` on a non-leaf tensor (its delta) after backward."""
        if not self.requires_grad:
            raise RetrogradError("retain_grad() on a tensor that does not require grad")
        self._retains_grad = True
        return self

    def register_hook(self, fn):
        """``fn(grad)`` runs when this tensor's gradient is computed; a non-None
        return value replaces the gradient. Returns a handle with ``.remove()``."""
        if not self.requires_grad:
            raise RetrogradError("register_hook() on a tensor that does not require grad")
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(fn)
        hooks = self._hooks

        class _Handle:
            def remove(self_):
                if fn in hooks:
                    hooks.remove(fn)
        return _Handle()

    def zero_grad(self):
        self.grad = None

    # Python operators and Tensor methods -- the in-place ones (`+=`, `t[i] = v`)
    # included -- are attached at the bottom of ops/__init__.py, so that `x + y` and
    # `rg.add(x, y)` are literally the same function.


def _unwrap_index(idx):
    if isinstance(idx, Tensor):
        return idx.data
    if isinstance(idx, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in idx)
    if isinstance(idx, list):
        return np.asarray([i.data if isinstance(i, Tensor) else i for i in idx])
    return idx


# --------------------------------------------------------------------------- creation

def tensor(data, requires_grad: bool = False, dtype=None, name: str | None = None) -> Tensor:
    """Make a new leaf tensor. Python floats -> float32, Python ints -> int64,
    NumPy arrays keep their dtype. The data is copied."""
    arr = _default_array(data, dtype)
    if arr is (data.data if isinstance(data, Tensor) else data):
        arr = _xp.copy(arr)
    return Tensor(arr, requires_grad=requires_grad, name=name)


def as_tensor(data, dtype=None) -> Tensor:
    """A Tensor sharing memory with ``data`` where possible (no copy, no grad)."""
    if isinstance(data, Tensor) and (dtype is None or data.dtype == dtype):
        return data
    return Tensor._make(_default_array(data, dtype))


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def _creator(fill):
    @functools.wraps(fill)
    def make(*shape, dtype=np.float32, requires_grad=False):
        return Tensor(fill(_shape_arg(shape), dtype), requires_grad=requires_grad)
    return make


zeros = _creator(lambda shape, dtype: np.zeros(shape, dtype))
ones = _creator(lambda shape, dtype: np.ones(shape, dtype))
zeros.__doc__ = "rg.zeros(2, 3) or rg.zeros((2, 3)): a float32 tensor of zeros."
ones.__doc__ = "rg.ones(2, 3) or rg.ones((2, 3)): a float32 tensor of ones."


def full(shape, fill_value, dtype=np.float32, requires_grad=False) -> Tensor:
    shape = (shape,) if np.isscalar(shape) else tuple(shape)
    return Tensor(np.full(shape, fill_value, dtype), requires_grad=requires_grad)


def arange(start, stop=None, step=1, dtype=None, requires_grad=False) -> Tensor:
    if dtype is None:
        ints = all(isinstance(v, (int, np.integer)) for v in (start, stop, step) if v is not None)
        dtype = np.int64 if ints else np.float32
    arr = np.arange(start, stop, step, dtype=dtype) if stop is not None else np.arange(start, step=step, dtype=dtype)
    return Tensor(arr, requires_grad=requires_grad)


def eye(n, m=None, dtype=np.float32, requires_grad=False) -> Tensor:
    return Tensor(np.eye(n, m, dtype=dtype), requires_grad=requires_grad)


# One seedable generator for everything random in retrograd (init, dropout, shuffling).
_rng = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Seed retrograd's global random generator; returns it."""
    global _rng
    _rng = np.random.default_rng(seed)
    return _rng


def default_generator() -> np.random.Generator:
    return _rng


def rand(*shape, dtype=np.float32, requires_grad=False, generator=None) -> Tensor:
    """Uniform [0, 1) samples."""
    g = generator or _rng
    return Tensor(g.random(_shape_arg(shape)).astype(dtype, copy=False), requires_grad=requires_grad)


def randn(*shape, dtype=np.float32, requires_grad=False, generator=None) -> Tensor:
    """Standard normal samples."""
    g = generator or _rng
    return Tensor(g.standard_normal(_shape_arg(shape)).astype(dtype, copy=False),
                  requires_grad=requires_grad)


def _like(maker):
    def make_like(t, dtype=None, requires_grad=False, **kw):
        data = t.data if isinstance(t, Tensor) else t
        arr = _xp.to_numpy(data)
        out = maker(arr.shape, dtype=dtype or arr.dtype, requires_grad=requires_grad, **kw)
        if type(data) is not np.ndarray and _xp.is_foreign(data):   # same namespace, device
            out._data = _xp.to_namespace(out._data, _xp.namespace(data), _xp.device(data))
        return out
    make_like.__name__ = maker.__name__ + "_like"
    make_like.__doc__ = f"Like rg.{maker.__name__}, with the shape and dtype of ``t``."
    return make_like


zeros_like = _like(zeros)
ones_like = _like(ones)
rand_like = _like(rand)
randn_like = _like(randn)


def full_like(t, fill_value, dtype=None, requires_grad=False) -> Tensor:
    arr = np.asarray(t.data if isinstance(t, Tensor) else t)
    return full(arr.shape, fill_value, dtype=dtype or arr.dtype, requires_grad=requires_grad)
