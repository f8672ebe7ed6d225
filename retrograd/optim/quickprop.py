"""Quickprop (Fahlman 1988): a per-weight secant (quasi-Newton) step."""
from __future__ import annotations

import numpy as np

from .optimizer import Optimizer, namespace

__all__ = ["Quickprop"]


class Quickprop(Optimizer):
    """Quickprop, after S. E. Fahlman, "An empirical study of learning speed in
    back-propagation networks", CMU-CS-88-162 (1988), and the update routine of
    his reference code.

    Each weight is treated independently, with E(w) assumed to be a parabola
    through the current and previous slopes. With ``g = ∂E/∂w + weight_decay·w``
    (Fahlman used 0.0001·w), ``g⁻`` and ``Δw⁻`` the slope and step of the previous
    update, ``ε = lr`` and ``μ`` the maximum growth factor:

        quadratic (secant) step:   Δw = g / (g⁻ − g) · Δw⁻

    which lands exactly on the minimum of a quadratic. Cases, per weight:

    1. Δw⁻ = 0 (first step, or a weight that did not move): the secant step is
       undefined, take a plain gradient step  Δw = −ε·g.
    2. The secant step would be too large (g/(g⁻ − g) ≥ μ), infinite (g = g⁻) or
       uphill (the slope grew along the direction of travel, |g| > |g⁻|, so the
       parabola opens downward): take the maximum step  μ·Δw⁻  instead.
       Fahlman's single test for all three, used here: g is still at least
       μ/(1+μ)·g⁻ against the direction of Δw⁻, i.e.
       sign(Δw⁻)·(g − μ/(1+μ)·g⁻) ≤ 0.
    3. Otherwise the secant step itself (its factor lies in (−1, μ)).

    In cases 2 and 3 Fahlman adds the gradient term −ε·g while the descent
    direction −g still agrees with the last step (g·Δw⁻ < 0: "add in linear term
    if current slope is still positive/negative"), and uses the quadratic term
    alone once the slope has changed sign (the minimum was overshot). Since every step goes downhill on the
    slope it was computed from (Δw⁻·g⁻ < 0), this is the same as g·g⁻ > 0. So μ
    caps the quadratic term; the gradient term comes on top of it. Where a secant
    step is not finite (possible only from a hand-made state) the gradient step
    of case 1 is used.
    """

    def __init__(self, params, lr=0.01, mu=1.75, weight_decay=0.0):
        if lr < 0 or mu <= 0 or weight_decay < 0:
            raise ValueError(f"Quickprop: need lr >= 0, mu > 0, weight_decay >= 0, "
                             f"got lr={lr}, mu={mu}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, mu=mu, weight_decay=weight_decay))

    def _init_state(self, w, group):
        xp = namespace(w)
        return {"prev_grad": xp.zeros_like(w), "prev_step": xp.zeros_like(w)}

    def _update(self, w, g, state, group):
        lr, mu = group["lr"], group["mu"]
        prev_g, prev_step = state["prev_grad"], state["prev_step"]
        xp = namespace(w)
        direction = xp.sign(prev_step)
        capped = direction * (g - mu / (1.0 + mu) * prev_g) <= 0
        with np.errstate(divide="ignore", invalid="ignore"):   # (NumPy's warnings only)
            quad = xp.where(capped, mu * prev_step, prev_step * g / (prev_g - g))
        gradient_only = (direction == 0) | ~xp.isfinite(quad)
        if xp is np:
            quad[gradient_only] = 0
        else:
            quad = xp.where(gradient_only, 0.0, quad)
        linear = gradient_only | (direction * g < 0)
        step = quad - xp.where(linear, lr * g, 0)
        w += step
        prev_g[...] = g
        prev_step[...] = step
