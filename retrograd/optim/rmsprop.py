"""RMSprop (PyTorch's formulation)."""
from __future__ import annotations

from .optimizer import Optimizer, namespace

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop (Hinton, Coursera lecture 6e), exactly as PyTorch: with ``g = ∇ + weight_decay·w``,

        s ← α·s + (1 − α)·g²;   centered: ḡ ← α·ḡ + (1 − α)·g,  r = √(s − ḡ²) + eps,  else r = √s + eps
        momentum > 0:  b ← momentum·b + g/r,  w ← w − lr·b;   else  w ← w − lr·g/r
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        if lr < 0 or eps < 0 or weight_decay < 0 or momentum < 0 or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"RMSprop: need lr, eps, weight_decay, momentum >= 0 and alpha in "
                             f"[0, 1], got lr={lr}, eps={eps}, weight_decay={weight_decay}, "
                             f"momentum={momentum}, alpha={alpha}")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def _init_state(self, w, group):
        xp = namespace(w)
        state = {"square_avg": xp.zeros_like(w)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = xp.zeros_like(w)
        if group["centered"]:
            state["grad_avg"] = xp.zeros_like(w)
        return state

    def _update(self, w, g, state, group):
        alpha, momentum = group["alpha"], group["momentum"]
        xp = namespace(w)
        sq = state["square_avg"]
        sq *= alpha
        sq += (1.0 - alpha) * g * g
        if group["centered"]:
            avg = state["grad_avg"]
            avg += (1.0 - alpha) * (g - avg)
            r = xp.sqrt(sq - avg * avg)
        else:
            r = xp.sqrt(sq)
        r += group["eps"]
        if momentum > 0:
            buf = state["momentum_buffer"]
            buf *= momentum
            buf += g / r
            w -= group["lr"] * buf
        else:
            w -= group["lr"] * g / r
