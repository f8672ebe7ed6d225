"""Activation functions g with their derivatives g′, and losses E with ∇ₒE, in plain NumPy.

Everything in ``retrograd.classic`` is written out by hand from the lecture notes,
without the autodiff engine, so these few formulas are all the calculus it uses.

Activations act on the net input z (seed 002's ``net``) and give the output a
(seed 002's ``o``). Each derivative takes both z and a = g(z), because the
classic derivatives are cheapest in terms of the output:

    sigmoid   g(z) = 1 / (1 + e^−z)    g′(z) = a (1 − a)
    tanh      g(z) = tanh z            g′(z) = 1 − a²
    relu      g(z) = max(z, 0)         g′(z) = [z > 0]       (0 at the kink, as retrograd)
    identity  g(z) = z                 g′(z) = 1
    softmax   g(z)ₖ = e^zₖ / Σₘ e^zₘ    not elementwise: ∂aₘ/∂zₖ = aₘ([m = k] − aₖ)

Softmax mixes the units of a layer, so it has no g′ to multiply by; it is allowed
only as an output activation, where BP1 applies its Jacobian (see mlp.backprop).

Losses are per pattern (seed 002's E_p); with K outputs, target y (seed 002's d)
and output a (seed 002's o):

    sse             E = ½ Σₖ (yₖ − aₖ)²                       ∂E/∂aₖ = aₖ − yₖ
    mse             E = (1/K) Σₖ (yₖ − aₖ)²                   ∂E/∂aₖ = 2 (aₖ − yₖ) / K
    cross_entropy   E = −Σₖ yₖ log aₖ          (softmax output; y one-hot or probabilities)
                    E = −Σₖ [yₖ log aₖ + (1 − yₖ) log(1 − aₖ)]     (sigmoid output)
                    in both cases δᴸ = ∂E/∂zᴸ = a − y: g′ cancels against ∂E/∂a

``mse`` is the library's ``nn.MSELoss`` (the mean over all entries once averaged
over patterns), ``sse`` is seed 002's E_p and ``nn.SSELoss``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["ACTIVATIONS", "LOSSES", "Activation", "activation", "derivative", "loss_value",
           "loss_grad", "check_pairing", "sigmoid", "softmax"]


def sigmoid(z):
    """1 / (1 + e^−z), with e = e^−|z| as 1/(1 + e) for z ≥ 0 and e/(1 + e) below: no
    overflow for any z and accurate in both tails. It is the form retrograd's op uses
    (ops/elementwise.py); the tanh form 0.5 + 0.5·tanh(z/2) rounds sigmoid(−30) to 0 in
    float32."""
    e = np.exp(-np.abs(z))
    s = 1 / (1 + e)
    return np.where(z >= 0, s, e * s)[()]      # [()]: a scalar for a scalar, as a ufunc


def softmax(z):
    """e^zₖ / Σₘ e^zₘ over the last axis."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))   # the shift changes nothing but overflow
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Activation:
    """One activation: g, its elementwise g′(z, a) (None for softmax, which mixes the units
    of a layer), and g′ as the notes write it in seed 002's o and net (for ``explain``)."""
    name: str
    g: Callable
    g_prime: Callable | None = None
    g_prime_text: str | None = None

    @property
    def elementwise(self) -> bool:
        """Whether g′ is elementwise, i.e. whether the activation may be a hidden one."""
        return self.g_prime is not None


_TABLE = {a.name: a for a in (
    Activation("sigmoid", sigmoid, lambda z, a: a * (1.0 - a), "o(1 − o)"),
    Activation("tanh", np.tanh, lambda z, a: 1.0 - a * a, "1 − o²"),
    Activation("relu", lambda z: np.maximum(z, 0.0), lambda z, a: (z > 0).astype(z.dtype),
               "[net > 0]"),
    Activation("identity", lambda z: z + 0.0, lambda z, a: np.ones_like(z), "1"),
    Activation("softmax", softmax),
)}
ACTIVATIONS = tuple(_TABLE)
LOSSES = ("sse", "mse", "cross_entropy")


def get(name) -> Activation:
    """The table's record for ``name`` (ValueError naming the choices if there is none)."""
    if name not in _TABLE:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return _TABLE[name]


def activation(name, z):
    """a = g(z)."""
    return get(name).g(z)


def derivative(name, z, a):
    """g′(z), elementwise (a = g(z) is passed because most g′ are cheapest in terms of a)."""
    act = get(name)
    if not act.elementwise:
        raise ValueError(f"{name} has no elementwise derivative: use it only as the output "
                         "activation, where BP1 applies its Jacobian")
    return act.g_prime(z, a)


def check_pairing(output, loss):
    """Raise ValueError for an output activation / loss pair that makes no sense."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    get(output)
    if loss == "cross_entropy" and output not in ("softmax", "sigmoid"):
        raise ValueError(f"cross_entropy needs probabilities at the output (softmax or sigmoid), "
                         f"not {output}: log of a {output} output is undefined where it is ≤ 0")


def loss_value(loss, a, y, output):
    """E_p for each pattern: a and y of shape (N, K) -> (N,)."""
    if loss == "sse":
        return 0.5 * ((y - a) ** 2).sum(axis=-1)
    if loss == "mse":
        return ((y - a) ** 2).mean(axis=-1)
    if loss == "cross_entropy":
        with np.errstate(divide="ignore"):
            if output == "softmax":
                return -(y * np.log(a)).sum(axis=-1)
            return -(y * np.log(a) + (1 - y) * np.log(1 - a)).sum(axis=-1)
    raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")


def loss_grad(loss, a, y):
    """∂E_p/∂a for each pattern (for sse and mse; cross-entropy's δ is written out in BP1)."""
    if loss == "sse":
        return a - y
    if loss == "mse":
        return 2.0 * (a - y) / a.shape[-1]
    raise ValueError(f"loss_grad: no ∂E/∂a is used for {loss!r} (BP1 uses δ = a − y)")
