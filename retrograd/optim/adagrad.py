"""Adagrad (PyTorch's formulation)."""
from __future__ import annotations

from .optimizer import Optimizer, namespace

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """Adagrad (Duchi, Hazan & Singer 2011), exactly as PyTorch: with ``g = ∇ + weight_decay·w``
    and step t,

        s ← s + g²  (s starts at initial_accumulator_value)
        w ← w − lr/(1 + (t − 1)·lr_decay) · g / (√s + eps)
    """

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10):
        if min(lr, lr_decay, weight_decay, initial_accumulator_value, eps) < 0:
            raise ValueError("Adagrad: lr, lr_decay, weight_decay, initial_accumulator_value "
                             "and eps must be >= 0")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps))

    def _init_state(self, w, group):
        return {"sum": namespace(w).full_like(w, group["initial_accumulator_value"])}

    def _update(self, w, g, state, group):
        s = state["sum"]
        s += g * g
        clr = group["lr"] / (1.0 + (state["step"] - 1) * group["lr_decay"])
        w -= clr * g / (namespace(w).sqrt(s) + group["eps"])
