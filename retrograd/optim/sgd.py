"""Stochastic gradient descent with momentum (PyTorch's formulation)."""
from __future__ import annotations

from .. import arrays
from .optimizer import Optimizer

__all__ = ["SGD"]


class SGD(Optimizer):
    """SGD, exactly as PyTorch: with ``g = ∇ + weight_decay·w`` (``-∇`` if maximize),

        b ← g  (first step),   b ← momentum·b + (1 − dampening)·g  (later steps)
        d = g + momentum·b  (nesterov)   or   d = b  (momentum > 0)   or   d = g
        w ← w − lr·d
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0, maximize=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: invalid lr={lr}, momentum={momentum} or "
                             f"weight_decay={weight_decay} (must be >= 0)")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov momentum requires momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      nesterov=nesterov, weight_decay=weight_decay,
                                      maximize=maximize))

    def _update(self, w, g, state, group):
        momentum = group["momentum"]
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = arrays.copy(g)
            else:
                buf *= momentum
                buf += (1.0 - group["dampening"]) * g
            g = g + momentum * buf if group["nesterov"] else buf
        w -= group["lr"] * g
