"""Resilient backpropagation (Rprop), the variant PyTorch implements."""
from __future__ import annotations

import numpy as np

from .optimizer import Optimizer, namespace

__all__ = ["Rprop"]


class Rprop(Optimizer):
    """Rprop (Riedmiller & Braun 1993) in the iRprop⁻ form of Igel & Hüsken (2000),
    exactly as ``torch.optim.Rprop``: no weight backtracking, only gradient signs.

    Each weight has its own step size Δ, starting at ``lr``. With ``g`` the
    gradient (``+ weight_decay·w`` if set) and ``g⁻`` the one stored last step:

        g·g⁻ > 0:  Δ ← min(Δ·η⁺, Δmax)                 (same sign: speed up)
        g·g⁻ < 0:  Δ ← max(Δ·η⁻, Δmin),  g ← 0         (sign flip: slow down, skip)
        g·g⁻ = 0:  Δ unchanged
        w ← w − sign(g)·Δ,   g⁻ ← g

    ``etas = (η⁻, η⁺)`` are the decrease and increase factors (0 < η⁻ < 1 < η⁺);
    ``step_sizes = (Δmin, Δmax)`` bound every step size. Setting g to zero after a
    sign change means the weight does not move that step and the next step is
    treated as sign-neutral (g·g⁻ = 0).
    """

    def __init__(self, params, lr=0.01, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0),
                 weight_decay=0.0):
        if lr < 0 or not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Rprop: need lr >= 0 and 0 < etas[0] < 1 < etas[1], "
                             f"got lr={lr}, etas={etas}")
        super().__init__(params, dict(lr=lr, etas=tuple(etas), step_sizes=tuple(step_sizes),
                                      weight_decay=weight_decay))

    def _init_state(self, w, group):
        xp = namespace(w)
        return {"prev": xp.zeros_like(w), "step_size": xp.full_like(w, group["lr"])}

    def _update(self, w, g, state, group):
        eta_minus, eta_plus = group["etas"]
        step_size, prev = state["step_size"], state["prev"]
        xp = namespace(w)
        same = g * prev
        flipped = same < 0
        if xp is np:
            step_size[same > 0] *= eta_plus
            step_size[flipped] *= eta_minus
            np.clip(step_size, *group["step_sizes"], out=step_size)
        else:       # the same products, as whole-array selections
            grown = xp.where(same > 0, step_size * eta_plus,
                             xp.where(flipped, step_size * eta_minus, step_size))
            step_size[...] = xp.clip(grown, *group["step_sizes"])
        g = xp.where(flipped, 0, g)
        w -= xp.sign(g) * step_size
        prev[...] = g
