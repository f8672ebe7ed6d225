"""Adam and AdamW (PyTorch's formulation)."""
from __future__ import annotations

import math

import numpy as np

from .optimizer import Optimizer, namespace

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), exactly as PyTorch: with ``g = ∇ + weight_decay·w``,

        m ← β₁·m + (1 − β₁)·g,   v ← β₂·v + (1 − β₂)·g²,   v̂ = max(v̂, v) if amsgrad else v
        w ← w − lr/(1 − β₁ᵗ) · m / (√v̂ / √(1 − β₂ᵗ) + eps)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"{type(self).__name__}: need lr, eps, weight_decay >= 0 and betas "
                             f"in [0, 1), got lr={lr}, eps={eps}, weight_decay={weight_decay}, "
                             f"betas={betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad))

    def _init_state(self, w, group):
        xp = namespace(w)
        state = {"exp_avg": xp.zeros_like(w), "exp_avg_sq": xp.zeros_like(w)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = xp.zeros_like(w)
        return state

    def _update(self, w, g, state, group):
        lr, (beta1, beta2), t = group["lr"], group["betas"], state["step"]
        xp = namespace(w)
        if not self.l2_weight_decay:             # AdamW: decoupled decay
            w *= 1.0 - lr * group["weight_decay"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (1.0 - beta1) * (g - m)
        v *= beta2
        v += (1.0 - beta2) * g * g
        if group["amsgrad"]:
            v_max = state.setdefault("max_exp_avg_sq", xp.zeros_like(w))
            if xp is np:
                v = np.maximum(v_max, v, out=v_max)
            else:
                v_max[...] = xp.maximum(v_max, v)
                v = v_max
        # (x ** 0.5, not math.sqrt: optim/rule.py traces it into the Numba step)
        denom = xp.sqrt(v) / (1.0 - beta2 ** t) ** 0.5 + group["eps"]
        w -= lr / (1.0 - beta1 ** t) * m / denom


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019): Adam without L2 in the gradient; instead
    the weights decay directly, ``w ← w·(1 − lr·weight_decay)``, before the Adam step."""

    l2_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
