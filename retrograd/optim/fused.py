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
state, an eager ``optimizer.step()``, a new parameter group -- is noticed by the
next ``sync()`` (``step()`` starts with one), which gathers the flat arrays
afresh (or, when the per-parameter states disagree, e.g. different step counts,
leaves that group to the ordinary per-parameter ``optimizer.step()``).
"""
from __future__ import annotations

import operator
import warnings

import numpy as np

from ..arrays import require_numpy
from ..errors import ShapeError
from ..tensor import Tensor, _bump_versions

__all__ = ["FusedUpdate", "can_fuse"]

#: elements per update call: temporaries stay ~1 MiB (float32), in cache
CHUNK = 1 << 18


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

    def __init__(self, group, params, lowering=None):
        self.group, self.params = group, params
        self.lowering = lowering         # compiles a traced update (see FusedUpdate)
        self.rules = {}                  # state entries -> (Rule, kernel), or None: untraceable
        self.shapes = shapes = [p.shape for p in params]
        for p in params:
            require_numpy(p._data, "optim.fused (the compiled step's update)")
        dtype = params[0].dtype
        self.w = np.concatenate([p._data.ravel() for p in params]).astype(dtype, copy=False)
        self.views = _flat_views(self.w, shapes)
        self.g = np.zeros_like(self.w)
        self.grads = [Tensor._make(v) for v in _flat_views(self.g, shapes)]
        for p, v in zip(params, self.views):
            p._data = v                  # the same values, now living in the flat array
        self.state = None                # the flat state; None: not gathered, or cannot be
        self.pstates = [None] * len(params)   # the per-parameter dicts we last wrote
        self._published = {}             # state name -> the flat array those dicts view

    def sync(self, opt):
        """Take in what changed behind the bucket's back since its last update, in one
        pass over its parameters (the common case: nothing). ``p.data`` rebound: its
        values are copied into its slice. ``opt.state[p]`` not the dict we last wrote,
        not at our step count or with other entries (an eager ``optimizer.step()``, a
        loaded or replaced state): the flat state is gathered afresh."""
        flat, state = self.state, opt.state
        if flat is not None:
            n, keys = flat["step"], len(flat)
        for p, v, s in zip(self.params, self.views, self.pstates):
            if p._data is not v:
                self._rebind(p, v)
            if flat is not None and (state.get(p) is not s or s["step"] != n or len(s) != keys):
                flat = None
        if flat is None and self.group is not None:
            self.gather(opt, opt.param_groups[self.group])

    @staticmethod
    def _rebind(p, v):
        """``p.data`` was replaced by another array: copy its values into ``p``'s slice."""
        require_numpy(p._data, "optim.fused (the compiled step's update): a parameter moved "
                      "by Module.to")
        if p._data.shape != v.shape or p._data.dtype != v.dtype:
            raise ShapeError(f"a parameter of shape {v.shape} and dtype {v.dtype} was given "
                             f"data of shape {p._data.shape} and dtype {p._data.dtype}; "
                             "compile the training step again")
        v[...] = p._data
        p._data = v

    def gather(self, opt, group):
        """Build the flat state from ``opt.state`` and publish it; ``state`` stays None
        when it cannot be one array (parameters at different step counts or with
        different kinds of state: ``FusedUpdate.update`` then steps them per parameter)."""
        self.state, self.pstates, self._published = None, [None] * len(self.params), {}
        states = [opt.state.get(p) for p in self.params]
        if all(s is None for s in states):
            self.state = {"step": 0, **opt._init_state(self.w, group)}
        else:
            if any(s is None for s in states):
                return
            keys = set(states[0])
            if (any(set(s) != keys or s.get("step") != states[0].get("step") for s in states)
                    or not all(isinstance(states[0][k], np.ndarray) for k in keys - {"step"})):
                return
            self.state = {k: (states[0][k] if k == "step" else
                              np.concatenate([s[k].ravel() for s in states]).astype(
                                  self.w.dtype, copy=False))
                          for k in keys}
        self.publish(opt)

    def publish(self, opt):
        """Make ``opt.state[p]`` views of the flat state arrays (new ones the update
        created included), with the flat step count."""
        views = {k: _flat_views(v, self.shapes) for k, v in self.state.items()
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

    def _lowered(self, opt, group) -> bool:
        """The update as one compiled loop over the flat arrays (``lowering``, from the
        optimizer's own ``_update`` traced by optim.rule); False where there is none: no
        lowering, an update that cannot be traced (a state array it creates: SGD's
        momentum buffer on step one), or one the compiler refused."""
        flat = self.state
        keys = tuple(flat)
        for attempt in (0, 1):
            found = self.rules.get(keys, False)
            if found is False or attempt:            # first time, or the guards failed
                found = self.rules[keys] = self._lower(opt, group)
            if found is None:
                return False
            rule, kernel = found
            coefs = rule.coefs(group, flat["step"])
            if coefs is not None:
                break
        else:
            return False
        try:
            kernel(self.w, self.g, *[flat[k] for k in rule.names], coefs)
        except Exception as e:       # noqa: BLE001 (a compile failure: see _lower)
            if not getattr(self.lowering, "is_compile_error", lambda e: False)(e):
                raise
            self.rules[keys] = None
            warnings.warn(f"{type(opt).__name__}: the compiled update failed to compile "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); using the "
                          "NumPy update", RuntimeWarning, stacklevel=5)
            return False
        return True

    def _lower(self, opt, group):
        from .rule import trace
        try:
            rule = trace(opt, group, self.state, self.w.dtype)
        except Exception:       # noqa: BLE001 (Untraceable, or a method no stand-in has:
            return None         # either way the NumPy update runs, and raises the user's errors)
        return rule, self.lowering(rule)

    def _update(self, opt, group) -> bool:
        """``opt._update`` over the flat arrays, a chunk at a time: the temporaries of an
        update rule are then chunk-sized (cache-resident, and no peak of a whole
        model's size). State arrays the rule creates or replaces are stitched back;
        returns whether there were any (they need publishing)."""
        if self.lowering is not None and self._lowered(opt, group):
            return False
        flat, n = self.state, self.w.size
        arrays = {k for k, v in flat.items() if isinstance(v, np.ndarray)}
        chunks = {}                       # state name -> its array for each chunk
        for a in range(0, n, CHUNK):
            w = self.w[a:a + CHUNK]
            cs = {k: (v[a:a + CHUNK] if k in arrays else v) for k, v in flat.items()}
            opt._update(w, opt._gradient_array(w, self.g[a:a + CHUNK], group), cs, group)
            for k, v in cs.items():
                if isinstance(v, np.ndarray):
                    chunks.setdefault(k, []).append(v)
        new = False
        for k, parts in chunks.items():   # arrays the rule made (SGD's momentum buffer on
            if k not in arrays or any(v.base is not flat[k] for v in parts):   # step one)
                flat[k] = parts[0] if len(parts) == 1 else np.concatenate(parts)
                new = True
        return new

    def steady_rule(self, opt):
        """The Rule (optim.rule) of this bucket's update once its state has settled, for a
        compiled step to run inside its own kernel (``kernel_args``); None: no update here,
        or none that traces. Traced at the next step's count; where the update creates
        state on its first step (SGD's momentum buffer), after a dry run of that step on
        one element."""
        from .rule import trace
        if self.group is None or self.state is None or self.w.size == 0:
            return None
        group = opt.param_groups[self.group]
        state = {**self.state, "step": self.state["step"] + 1}
        for attempt in (0, 1):
            try:
                return trace(opt, group, state, self.w.dtype)
            except Exception:    # noqa: BLE001 (Untraceable, or a method no stand-in has)
                if attempt:
                    return None
            try:
                state = {k: v[:1].copy() if isinstance(v, np.ndarray) else v
                         for k, v in state.items()}
                w = self.w[:1].copy()
                with np.errstate(all="ignore"):
                    opt._update(w, opt._gradient_array(w, np.zeros_like(w), group), state, group)
                state["step"] += 1
            except Exception:    # noqa: BLE001 (the real step raises it, with its context)
                return None

    def kernel_args(self, opt, rule):
        """(state arrays in ``rule``'s order, coefficients) for running the next step's
        update as ``rule`` inside a compiled kernel; None where that does not hold now (no
        flat state, other state entries, a guard of the rule that fails): ``update`` then
        runs it as usual."""
        flat = self.state
        if flat is None or len(flat) != len(rule.names) + 1:
            return None
        arrays = [flat.get(k) for k in rule.names]
        n, dtype = self.w.shape, self.w.dtype
        for a in arrays:      # the kernel's loop reads each state array at every index of w
            if (type(a) is not np.ndarray or a.shape != n or a.dtype != dtype
                    or not a.flags.c_contiguous):
                return None
        coefs = rule.coefs(opt.param_groups[self.group], flat["step"] + 1)
        return None if coefs is None else (arrays, coefs)

    def update(self, opt, ran=False) -> bool:
        """Hand out the gradients and run the update once on the flat arrays (``sync``
        first); ``ran``: a compiled kernel already ran it (``kernel_args``), only the step
        count and the per-parameter views follow. False when there is no flat state
        (nothing updated)."""
        for p, g in zip(self.params, self.grads):
            p.grad = g
        if self.group is None:
            return True
        if self.state is None:
            return False
        flat = self.state
        flat["step"] += 1
        if not ran and self._update(opt, opt.param_groups[self.group]):
            self.publish(opt)
        step = flat["step"]
        for s in self.pstates:
            s["step"] = step
        _bump_versions(self.params)   # a graph that saved p before the step must not backprop
        return True


def can_fuse(optimizer) -> bool:
    """Whether ``optimizer``'s update can run on flat arrays: its rule is elementwise and
    lives in ``_update`` (a subclass that overrides ``step()`` itself keeps its own)."""
    from .optimizer import Optimizer
    cls = type(optimizer)
    return (isinstance(optimizer, Optimizer) and optimizer.elementwise
            and cls.step is Optimizer.step and cls._update is not Optimizer._update)


class FusedUpdate:
    """``optimizer``'s update of ``params`` as one call per flat array (see the module
    docstring). ``grads[i]`` is the gradient array of ``params[i]``: write into it,
    then call ``step()`` -- or, where the gradient arrays must be known to be current
    before they are written (a compiled step binds them), ``sync()``, write, ``update()``.

    ``lowering``: optional ``lowering(rule) -> kernel``, a compiler of the update traced
    from the optimizer's own ``_update`` (optim.rule): ``kernel(w, g, *state arrays,
    coefs)`` then runs it as one loop over each flat array (the Numba step's, given by
    graph.api.compile_step), with NumPy's numbers; updates it cannot trace stay NumPy's."""

    def __init__(self, optimizer, params, lowering=None):
        if not can_fuse(optimizer):
            raise ValueError(f"{type(optimizer).__name__}'s update is not an elementwise "
                             "_update: it cannot run on parameters laid end to end")
        self.optimizer, self.params = optimizer, list(params)
        self._lowering = lowering
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError("FusedUpdate: a parameter is listed twice")
        self.generation = 0            # counts layouts: gradient arrays change with each
        self._build()

    def _build(self):
        opt = self.optimizer
        group_of = {id(p): i for i, g in enumerate(opt.param_groups) for p in g["params"]}
        members = {}
        for p in self.params:
            members.setdefault((group_of.get(id(p)), p.dtype), []).append(p)
        self.buckets = [_Bucket(gi, ps, self._lowering) for (gi, _), ps in members.items()]
        where = {id(p): (b, i) for b in self.buckets for i, p in enumerate(b.params)}
        self.grads = [where[id(p)][0].grads[where[id(p)][1]] for p in self.params]
        # the members of each group the layout follows (not the lists' ids: a new list
        # may reuse a freed one's, and a list may be changed in place)
        self._groups = [tuple(g["params"]) for g in opt.param_groups]

    @property
    def lowering(self):
        return self._lowering

    @lowering.setter
    def lowering(self, lowering):
        if lowering is not self._lowering:
            self._lowering = lowering
            for b in self.buckets:
                b.lowering, b.rules = lowering, {}

    def _same_groups(self) -> bool:
        groups = self.optimizer.param_groups
        return len(groups) == len(self._groups) and all(
            len(g["params"]) == len(ps) and all(map(operator.is_, g["params"], ps))
            for g, ps in zip(groups, self._groups))

    @property
    def grad_arrays(self):
        return [g._data for g in self.grads]

    def sync(self) -> int:
        """The one place that checks whether the flat layout and state still hold, and
        repairs them: the optimizer's groups changed (added, replaced, resized) -> lay the
        parameters out anew, keeping the gradients written so far; then each bucket
        takes in rebound ``p.data`` and an ``opt.state`` changed behind its back. Cheap
        when nothing changed. Returns ``generation``, which a new layout advances."""
        if not self._same_groups():
            grads = [g._data.copy() for g in self.grads]
            self._build()
            for g, new in zip(grads, self.grads):
                new._data[...] = g
            self.generation += 1
        for b in self.buckets:
            b.sync(self.optimizer)
        return self.generation

    def update(self, ran=()):
        """Set every ``p.grad`` to its gradient array and update all parameters, on the
        layout the last ``sync()`` checked; ``ran[k]`` true: a compiled step's kernel
        already updated bucket k (graph.api.compile_step)."""
        opt = self.optimizer
        stale = [b for k, b in enumerate(self.buckets)
                 if not b.update(opt, k < len(ran) and ran[k])]
        if stale:                      # states disagree: the per-parameter path for those
            done = {id(p) for b in self.buckets if b not in stale for p in b.params}
            saved = {p: p.grad for p in self.params if id(p) in done}
            for p in saved:
                p.grad = None          # already updated
            opt.step()
            for p, g in saved.items():
                p.grad = g

    def step(self):
        """``sync()`` then ``update()``: take in what changed, then one update."""
        self.sync()
        self.update()
