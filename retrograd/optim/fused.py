"""One update call for many parameters: the optimizer's own rule on flat arrays.

Every optimizer here updates each entry of a parameter independently (SGD, Adam,
Rprop, Quickprop, ...). So running its ``_update`` once on all the parameters of
a group laid end to end in one array gives exactly the numbers of running it
parameter by parameter -- with two or three NumPy calls per step instead of two
or three per parameter (PyTorch's "foreach"/multi-tensor apply, by layout).

``FusedUpdate(optimizer, params)`` moves each parameter's data into a slice of
one flat array per (parameter group, dtype) and hands out gradient arrays that
are slices of a flat gradient array (a compiled step writes its gradients
straight into them). ``step()`` then runs the update once per flat array. The
per-parameter view stays what users and checkpoints see: ``p.data`` is a view
of the flat array, ``optimizer.state[p]`` holds views of the flat state and the
same step count, and ``state_dict()`` / ``load_state_dict()`` work as before.
Anything changed behind its back -- ``p.data`` rebound, a loaded optimizer
state, a new parameter group -- is noticed at the next ``step()``, which gathers
the flat arrays afresh (or, when the per-parameter states disagree, e.g.
different step counts, runs the ordinary per-parameter ``optimizer.step()``).
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..tensor import Tensor, _bump_version

__all__ = ["FusedUpdate"]


def _flat_views(flat, shapes):
    """Views of consecutive slices of ``flat``, one per shape."""
    views, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape, dtype=np.int64))
        views.append(flat[start:start + size].reshape(shape))
        start += size
    return views


class _Bucket:
    """The parameters of one group (``group`` None: in no group, never updated) and
    dtype, with their flat data, gradient and optimizer state."""

    def __init__(self, group, params):
        self.group, self.params = group, params
        shapes = [p.shape for p in params]
        dtype = params[0].dtype
        self.w = np.concatenate([p._data.ravel() for p in params]).astype(dtype, copy=False)
        self.views = _flat_views(self.w, shapes)
        self.g = np.zeros_like(self.w)
        self.grads = [Tensor._make(v) for v in _flat_views(self.g, shapes)]
        for p, v in zip(params, self.views):
            p._data = v                  # the same values, now living in the flat array
        self.state = None                # flat state dict, or None: gather before the next step
        self.pstates = [None] * len(params)   # the per-parameter dicts we last wrote
        self._published = {}             # state name -> the flat array those dicts view

    def data_in_place(self):
        """Rebind any parameter whose ``.data`` was replaced: copy its new values in."""
        for p, v in zip(self.params, self.views):
            if p._data is not v:
                if p._data.shape != v.shape:
                    raise ShapeError(f"a parameter of shape {v.shape} was given data of shape "
                                     f"{p._data.shape}; compile the training step again")
                v[...] = p._data
                p._data = v

    def gather(self, opt, group) -> bool:
        """Build the flat state from ``opt.state``; False when it cannot be one array
        (parameters at different step counts or with different kinds of state)."""
        states = [opt.state.get(p) for p in self.params]
        if all(s is None for s in states):
            self.state = {"step": 0, **opt._init_state(self.w, group)}
        else:
            if any(s is None for s in states):
                return False
            keys = set(states[0])
            if (any(set(s) != keys or s.get("step") != states[0].get("step") for s in states)
                    or not all(isinstance(states[0][k], np.ndarray) for k in keys - {"step"})):
                return False
            self.state = {k: (states[0][k] if k == "step" else
                              np.concatenate([s[k].ravel() for s in states]).astype(
                                  self.w.dtype, copy=False))
                          for k in keys}
        self.pstates = [None] * len(self.params)
        self._published = {}
        self.publish(opt)
        return True

    def publish(self, opt):
        """Make ``opt.state[p]`` views of the flat state (new arrays the update created
        included) with the flat step count."""
        shapes = [p.shape for p in self.params]
        views = {k: _flat_views(v, shapes) for k, v in self.state.items()
                 if isinstance(v, np.ndarray) and self._published.get(k) is not v}
        self._published.update((k, self.state[k]) for k in views)
        step = self.state["step"]
        for i, p in enumerate(self.params):
            s = self.pstates[i]
            if s is None:
                s = self.pstates[i] = opt.state[p] = {}
            s["step"] = step
            for k, vs in views.items():
                s[k] = vs[i]

    def in_sync(self, opt) -> bool:
        return self.state is not None and all(
            opt.state.get(p) is s for p, s in zip(self.params, self.pstates))


class FusedUpdate:
    """``optimizer``'s update of ``params`` as one call per flat array (see the module
    docstring). ``grads[i]`` is the gradient array of ``params[i]``: write into it,
    then call ``step()``."""

    def __init__(self, optimizer, params):
        if not optimizer.elementwise:
            raise ValueError(f"{type(optimizer).__name__}'s update is not elementwise: "
                             "it cannot run on parameters laid end to end")
        self.optimizer, self.params = optimizer, list(params)
        self._layout = None
        self._build()

    def _group_key(self):
        return [(id(g["params"]), len(g["params"])) for g in self.optimizer.param_groups]

    def _build(self):
        opt = self.optimizer
        group_of = {id(p): i for i, g in enumerate(opt.param_groups) for p in g["params"]}
        members = {}
        for p in self.params:
            members.setdefault((group_of.get(id(p)), p.dtype), []).append(p)
        self.buckets = [_Bucket(gi, ps) for (gi, _), ps in members.items()]
        where = {id(p): (b, i) for b in self.buckets for i, p in enumerate(b.params)}
        self.grads = [where[id(p)][0].grads[where[id(p)][1]] for p in self.params]
        self._layout = self._group_key()

    @property
    def grad_arrays(self):
        return [g._data for g in self.grads]

    def step(self):
        """Set every ``p.grad`` to its gradient array and update all parameters."""
        opt = self.optimizer
        if self._group_key() != self._layout:     # groups added or replaced: lay out anew
            grads = [g._data.copy() for g in self.grads]
            self._build()
            for g, new in zip(grads, self.grads):
                new._data[...] = g
        fallback = False
        for b in self.buckets:
            b.data_in_place()
            for p, g in zip(b.params, b.grads):
                p.grad = g
            if b.group is None:
                continue
            group = opt.param_groups[b.group]
            if not b.in_sync(opt) and not b.gather(opt, group):
                fallback = True            # states disagree: the per-parameter path below
                b.state = None
                continue
            b.state["step"] += 1
            opt._update(b.w, opt._gradient_array(b.w, b.g, group), b.state, group)
            b.publish(opt)
            for p in b.params:
                _bump_version(p)           # a graph that saved p before the step must not backprop
        if fallback:
            stale = [b for b in self.buckets if b.state is None and b.group is not None]
            keep = {id(p) for b in self.buckets if b not in stale for p in b.params}
            saved = {p: p.grad for p in self.params if id(p) in keep}
            for p in saved:
                p.grad = None              # already updated above
            opt.step()
            for p, g in saved.items():
                p.grad = g
