"""Optimizer: the base class every update rule in retrograd.optim builds on.

An optimizer holds ``param_groups`` (PyTorch-style dicts: ``"params"`` plus the
hyperparameters for those parameters) and ``state`` (one dict per parameter).
``step()`` walks the parameters that have a gradient and hands each one, as plain
ndarrays, to the subclass's ``_update``, which changes ``p.data`` *in place*:
compiled graphs hold references to those arrays, so they are never rebound.
The update computes in the parameters' namespace (``namespace(w)``, retrograd.arrays:
NumPy, or CuPy / array_api_strict after ``Module.to``), with NumPy's fast paths
(``out=``, masked in-place updates) kept for ndarrays.
"""
from __future__ import annotations

import numpy as np

from .. import arrays
from ..tensor import Tensor, _bump_version, enable_grad

__all__ = ["Optimizer"]


def namespace(w):
    """The namespace a parameter's update computes in (the type test first: NumPy's
    update pays nothing for the others)."""
    # (optim/rule.py traces an update on stand-ins that are no arrays: NumPy's names)
    return arrays.namespace(w) if type(w) is not np.ndarray and arrays.is_foreign(w) else np


def _is_array(v) -> bool:
    return isinstance(v, np.ndarray) or arrays.is_foreign(v)


def _host_copy(v) -> np.ndarray:
    """A NumPy copy of a state array of any namespace (checkpoints hold host data)."""
    return v.copy() if isinstance(v, np.ndarray) else np.array(arrays.to_numpy(v))


def _plain(value):
    """NumPy scalars -> Python scalars, recursively through lists and tuples,
    so that hyperparameters and state dicts hold only checkpoint-safe types."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


class Optimizer:
    """Base class: ``Optimizer(params, defaults)``.

    ``params`` is an iterable of Tensors or of dicts (parameter groups, each with
    ``"params"`` and optional hyperparameter overrides of ``defaults``).
    Subclasses define ``_init_state(w, group) -> dict`` (arrays shaped like the
    parameter ``w``) and ``_update(w, g, state, group)``, which updates the
    ndarray ``w`` in place from the gradient ``g``; ``state["step"]`` counts the
    steps taken for that parameter (already incremented when ``_update`` runs).
    """

    #: add ``weight_decay * w`` to the gradient (L2); AdamW decays the weights instead
    l2_weight_decay = True
    #: the update treats every entry on its own, so it may run on many parameters laid
    #: end to end in one array (see optim.fused); False for rules with per-tensor norms
    elementwise = True
    #: arrays.moves when the state last matched its parameters' namespaces (Module.to)
    _moves = 0

    def __init__(self, params, defaults: dict):
        self._moves = arrays.moves
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of Tensors or dicts, got a single Tensor")
        self.defaults = {k: _plain(v) for k, v in defaults.items()}
        self.param_groups: list[dict] = []
        self.state: dict = {}
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            hyper = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} params, {hyper}")
        return "\n".join(lines + [")"])

    # ------------------------------------------------------------------ groups

    def add_param_group(self, group: dict):
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("a parameter group must be a dict with a 'params' entry")
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("parameter group params must be an ordered collection, not a set")
        params = list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or seen & {id(p) for p in params}:
            raise ValueError("some parameters appear in more than one parameter group "
                             "(or twice in one)")
        overrides = {k: _plain(v) for k, v in group.items() if k != "params"}
        self.param_groups.append({"params": params, **self.defaults, **overrides})

    # ------------------------------------------------------------------ stepping

    def zero_grad(self):
        """Set every parameter's ``.grad`` to None."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self, closure=None):
        """One update of every parameter that has a gradient.

        ``closure``, if given, re-evaluates the model (zeroing grads and calling
        backward itself) and returns the loss; it runs with grad enabled before the
        update, and its loss is returned.
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        if self._moves != arrays.moves:     # Module.to moved parameters since the last step
            self._follow_parameters()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                w = p._data
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = {"step": 0, **self._init_state(w, group)}
                state["step"] += 1
                self._update(w, self._gradient(p, group), state, group)
                _bump_version(p)        # a graph that saved p before the step must not backprop
        return loss

    def _follow_parameters(self):
        """Move each state array to its parameter's namespace and device, in a new state
        dict (so that optim.fused, which watches the dicts, gathers its state afresh)."""
        self._moves = arrays.moves
        for p, s in list(self.state.items()):
            xp, on = arrays.namespace(p._data), arrays.device(p._data)
            moved = {k: arrays.to_namespace(v, xp, on) for k, v in s.items()
                     if _is_array(v) and arrays.namespace(v) is not xp}
            if moved:
                self.state[p] = {**s, **moved}

    def _gradient(self, p: Tensor, group: dict) -> np.ndarray:
        """``p``'s gradient as an array of its dtype; negated for ``maximize``,
        plus ``weight_decay * w`` (L2) where the optimizer uses it. Never aliased
        for writing: subclasses must not modify it in place."""
        w = p._data
        g = p.grad._data if isinstance(p.grad, Tensor) else (
            p.grad if arrays.is_foreign(p.grad) else np.asarray(p.grad))
        return self._gradient_array(w, g, group)

    def _gradient_array(self, w: np.ndarray, g: np.ndarray, group: dict) -> np.ndarray:
        """``_gradient`` for the arrays of a parameter ``w`` and its gradient ``g``."""
        if g.shape != w.shape:
            raise ValueError(f"gradient of shape {g.shape} for a parameter of shape {w.shape}")
        if g.dtype is not w.dtype and g.dtype != w.dtype:
            g = g.astype(w.dtype) if isinstance(g, np.ndarray) else arrays.astype(g, w.dtype)
        if group.get("maximize", False):
            g = -g
        wd = group.get("weight_decay", 0.0)
        if wd and self.l2_weight_decay:
            g = g + wd * w
        return g

    def _init_state(self, w: np.ndarray, group: dict) -> dict:
        return {}

    def _update(self, w: np.ndarray, g: np.ndarray, state: dict, group: dict):
        raise NotImplementedError

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``
        with parameters numbered in group order. Holds only dicts, lists, tuples,
        ndarrays (copies, NumPy's whatever the parameters' namespace) and Python
        scalars/str/None, so it can be saved without pickle."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: _plain(v) for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {}
        for p, s in self.state.items():
            if id(p) in index:
                state[index[id(p)]] = {k: _host_copy(v) if _is_array(v) else _plain(v)
                                       for k, v in s.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict):
        """Load a ``state_dict()``: the groups must list as many parameters as this
        optimizer's and every state array must have its parameter's shape (else
        ValueError). Arrays are copied (cast to the parameter's dtype), never aliased."""
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved)} parameter groups, "
                             f"this optimizer has {len(self.param_groups)}")
        index = {}
        for i, (group, sgroup) in enumerate(zip(self.param_groups, saved)):
            if len(sgroup["params"]) != len(group["params"]):
                raise ValueError(f"parameter group {i}: loaded state dict has "
                                 f"{len(sgroup['params'])} parameters, this optimizer has "
                                 f"{len(group['params'])}")
            index.update(zip((int(k) for k in sgroup["params"]), group["params"]))
        state = {}
        for k, s in state_dict["state"].items():
            if int(k) not in index:
                raise ValueError(f"state for parameter {k}, which no parameter group lists")
            p = index[int(k)]
            entry = {}
            for name, v in s.items():
                if name == "step":
                    v = int(v)
                elif _is_array(v):
                    v = arrays.to_numpy(v)
                    if v.shape != p.shape:
                        raise ValueError(f"state '{name}' of parameter {k} has shape {v.shape}, "
                                         f"the parameter has shape {p.shape}")
                    v = _state_array(v, p)
                else:
                    v = _plain(v)
                entry[name] = v
            state[p] = entry
        self.param_groups = [
            {"params": group["params"], **{k: _plain(v) for k, v in sgroup.items() if k != "params"}}
            for group, sgroup in zip(self.param_groups, saved)]
        self.state = state


def _state_array(v: np.ndarray, p: Tensor):
    """A loaded state array as a copy in the namespace and on the device of parameter
    ``p``, floating-point ones cast to its dtype."""
    w = p._data
    if isinstance(w, np.ndarray):
        return np.array(v, dtype=p.dtype if v.dtype.kind == "f" else None)
    host = np.array(v, dtype=arrays.numpy_dtype(w.dtype) if v.dtype.kind == "f" else None)
    return arrays.to_namespace(host, arrays.namespace(w), arrays.device(w))
