"""In-place operators on Tensors: ``t += x``, ``t -= x``, ``t *= x``, ``t /= x`` and
``t[idx] = v``, changing the array or recording the change, where PyTorch allows them."""
from __future__ import annotations

import operator

import numpy as np

from .. import tensor as _tensor
from ..arrays import device, is_foreign, namespace, numpy_dtype, to_numpy
from ..errors import RetrogradError, ShapeError, TraceError
from ..tensor import Tensor, _bump_version, _mode
from .base import tracing
from .elementwise import where
from .index import _scattered_in
from .shape import (_canonical_index, _full_basic, _is_basic, astype, broadcast_to, positions,
                    scatter_add)

__all__ = ["inplace_method", "setitem"]

# `t += x`, `t -= x`, `t *= x`, `t /= x` and `t[idx] = v`, where PyTorch allows them:
#  * when nothing needs recording (grad mode off, or neither side requires grad) the
#    array itself is changed -- every alias of it sees the change -- and t's version
#    counter is bumped, so a node that saved t before refuses to backprop;
#  * on a leaf that requires grad, with grad mode on: an error (do it under no_grad);
#  * otherwise (t is a non-leaf, or x requires grad) the op is recorded and t -- the
#    same Python object -- becomes its output, as in PyTorch. Its old value lives on as
#    a node of its own, so the gradient is right; t gets a new array (aliases of the
#    old one keep the old value) and a bumped version.
# Graph values (graph.Var) are immutable: Var's own `v += x` rebinds the name and its
# `v[i] = u` is refused; here, a graph value on the right (`t += v`, `t[i] = v`) -- a value
# that records ops itself (`_record`), with no array to write -- makes a new value or is
# refused.

def _refuse_leaf(what):
    raise RetrogradError(
        f"a leaf tensor that requires grad is being used in an in-place operation ({what}): "
        "that would change a value the graph may still need. Do it under rg.no_grad() "
        "(e.g. a manual update step), or on a copy (t = t + x)")


def _refuse_traced(what, instead):
    raise RetrogradError(
        f"in-place operation ({what}) on a tensor that requires grad inside rg.compile: the "
        f"change would happen once, at trace time, not on every call; {instead}")


def _refuse_views(t, what):
    vc = t._vc
    if vc is not None and vc.views is not None and vc.live_views():
        # retrograd gives a recorded in-place result a new array (the old value stays for
        # the backward), so a view and its base would silently part: PyTorch writes through
        # and rebases the base's gradient; we refuse rather than diverge
        raise RetrogradError(
            f"in-place operation ({what}) that autograd records, on a tensor that shares its "
            "memory with a view (a slice, reshape or transpose; or is one): the write would "
            "reach only one of them; compute it out of place (t = t + x, rg.where, "
            "rg.concatenate), or change the data under rg.no_grad()")


def _record_inplace(t, compute, what):
    """Record ``compute(old value of t)`` and make ``t`` the resulting node."""
    _refuse_views(t, what)
    old = Tensor._make(t._data, t._op, t._inputs, t._params)
    old.requires_grad, old._rec = t.requires_grad, t._rec
    for slot in ("_site", "_prev"):        # _site: set by detect_anomaly only
        value = getattr(t, slot, None)
        if value is not None:
            setattr(old, slot, value)
    # the change counts against the old value, as in PyTorch: nodes recorded before it
    # that read t refuse to backprop (its own op, recorded after, sees the old value)
    _bump_version(t)
    old._vc = t._vc
    new = compute(old)
    if new.shape != old.shape:             # in place, t keeps its shape and dtype
        raise ShapeError(f"{what}: the result has shape {new.shape}, the tensor {old.shape}")
    if new.dtype != old.dtype:
        if not np.can_cast(new.dtype, old.dtype, "same_kind"):
            raise RetrogradError(f"{what}: the result has dtype {new.dtype}, which cannot be "
                                 f"stored in the tensor's {old.dtype}")
        new = astype(new, old.dtype)
    t._data, t._op, t._inputs, t._params = new._data, new._op, new._inputs, new._params
    t.requires_grad = new.requires_grad
    t._vc = _tensor._Version(t._vc)        # a new array: aliases of the old one keep theirs
    t._rec = _tensor._clock
    t._prev = (_tensor._clock, old)        # for the nodes that took t before the change
    site = getattr(new, "_site", None)
    if site is not None:
        t._site = site
    return t


def inplace_method(fn, ufunc, symbol, name):
    """The Tensor method for ``t <symbol>= x`` (``fn`` the op, ``ufunc`` its NumPy form)."""
    def method(self, other):
        if isinstance(other, Tensor) and other._record is not None:
            return fn(self, other)         # a plain tensor plus a graph value: a new value
        other_rg = isinstance(other, Tensor) and other.requires_grad
        if tracing() and (self.requires_grad or other_rg):
            if self.requires_grad:
                _refuse_traced(f"'{symbol}'", f"write t = t {symbol[0]} x instead")
            return fn(self, other)         # a plain tensor plus a traced value: a new value
        if not (_mode.enabled and (self.requires_grad or other_rg)):
            if type(self._data) is not np.ndarray and is_foreign(self._data):
                _foreign_update(self, _IN_PLACE[symbol], other)
                return self
            if not self._data.flags.writeable:
                raise RetrogradError(f"'{symbol}': the tensor's array is read-only")
            value = other._data if isinstance(other, Tensor) else other
            try:
                ufunc(self._data, value, out=self._data)
            except ValueError as e:
                raise ShapeError(f"'{symbol}': {e} (shapes: {self.shape} and "
                                 f"{np.shape(value)})") from None
            except TypeError as e:
                raise RetrogradError(f"'{symbol}': {e}") from None
            _bump_version(self)
            return self
        if self.requires_grad and self._op is None:
            _refuse_leaf(f"'{symbol}'")
        return _record_inplace(self, lambda old: fn(old, old if other is self else other),
                               f"'{symbol}'")
    method.__name__ = method.__qualname__ = name
    return method


_IN_PLACE = {"+=": operator.iadd, "-=": operator.isub, "*=": operator.imul,
             "/=": operator.itruediv}


def _on_device(value, like):
    """A value for an array of another namespace: NumPy arrays moved to its device."""
    value = value._data if isinstance(value, Tensor) else value
    if isinstance(value, np.ndarray):
        value = namespace(like).asarray(value, device=device(like))
    return value


def _foreign_update(t, iop, other):
    # the standard's in-place operator (it changes the array, so aliases see it, where
    # the library allows; a library of immutable arrays returns a new one)
    t._data = iop(t._data, _on_device(other, t._data))
    _bump_version(t)


def _foreign_setitem(t, idx, value):
    """``t[idx] = value`` (unrecorded) on an array of another namespace: basic indices in
    place by the standard's setitem; integer arrays and masks (which the standard cannot
    assign) give t a new array, each place's last value written, as NumPy's."""
    data, value = t._data, _on_device(value, t._data)
    xp = namespace(data)
    if _is_basic(idx):
        at = tuple(i for i in _full_basic(idx) if i is not None)   # (no None in a setitem)
        data[at] = value if isinstance(value, (int, float, bool)) else xp.reshape(
            xp.broadcast_to(value, data[_full_basic(idx)].shape), data[at].shape)
    else:
        pos = positions(data.shape, idx)
        lin = pos.reshape(-1)
        places, first = np.unique(lin[::-1], return_index=True)
        values = xp.reshape(xp.broadcast_to(xp.asarray(value, dtype=data.dtype, device=device(
            data)), pos.shape), (-1,))
        which = xp.asarray(len(lin) - 1 - first, device=device(data))
        t._data = _scattered_in(xp, data, places, xp.take(values, which, axis=0))
    _bump_version(t)


def _assigned(old, idx, value):
    """``old`` with ``old[idx]`` replaced by ``value``, differentiably in both."""
    shape, dtype = old.shape, old.dtype
    counts = np.zeros(shape, np.intp)
    np.add.at(counts, idx, 1)
    mask = counts > 0
    if isinstance(value, Tensor) and value.requires_grad:
        if counts.max(initial=0) > 1:
            raise RetrogradError("t[idx] = v: the index repeats an element, so which value it "
                                 "gets (and its gradient) would be ambiguous")
        v = broadcast_to(astype(value, dtype), counts[idx].shape)
        placed = scatter_add(v, idx, shape)
    else:
        placed = np.zeros(shape, numpy_dtype(dtype))     # (a constant: moved where old is)
        value = value._data if isinstance(value, Tensor) else value
        placed[idx] = to_numpy(value) if is_foreign(value) else value
    return where(mask, placed, old)


def setitem(self, idx, value):
    """``t[idx] = value`` (the Tensor method)."""
    if isinstance(value, Tensor) and value._record is not None:
        raise TraceError("t[idx] = v on a graph value: graph values cannot change; "
                             "build the new value with rg.where or rg.concatenate")
    value_rg = isinstance(value, Tensor) and value.requires_grad
    if tracing() and (self.requires_grad or value_rg):
        _refuse_traced("t[idx] = v", "build the new value with rg.where")
    if not (_mode.enabled and (self.requires_grad or value_rg)):
        if type(self._data) is not np.ndarray and is_foreign(self._data):
            return _foreign_setitem(self, _canonical_index(idx), value)
        self._data[_canonical_index(idx)] = value._data if isinstance(value, Tensor) else value
        _bump_version(self)
        return
    if self.requires_grad and self._op is None:
        _refuse_leaf("t[idx] = v")
    _record_inplace(self, lambda old: _assigned(old, _canonical_index(idx), value), "t[idx] = v")
