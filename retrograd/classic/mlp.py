"""Backpropagation for a multilayer perceptron, written out equation by equation.

This is seed 001's algorithm (§3.1–3.3) in the library's layout. Per layer
l = 1 … L, with a⁰ = x:

    z^l = a^(l−1) W^l + b^l           W^l of shape (n_in, n_out), as rg.nn.Linear
    a^l = g^l(z^l)

and the four equations (seed 001 §3.1; δ^l ≡ ∂J/∂z^l):

    BP1  δ^L = ∇_a J ⊙ g′(z^L)                  the output layer
    BP2  δ^l = (δ^(l+1) W^(l+1)ᵀ) ⊙ g′(z^l)      each hidden layer, from the one above
    BP3  ∂J/∂b^l = δ^l
    BP4  ∂J/∂W^l = a^(l−1)ᵀ δ^l                  (one pattern: the outer product a^(l−1) ⊗ δ^l)

Seed 001 writes the weights the other way round, Θ^l = (W^l)ᵀ of shape
(n_out, n_in) acting on column vectors, so its (Θ^(l+1))ᵀ δ^(l+1) is our
δ^(l+1) W^(l+1)ᵀ on row vectors; the numbers are the same.

Sign: δ here is +∂J/∂z (seeds 001, 003, 004), which is what the autodiff engine
puts in ``z.grad``. Seed 002's δ is −∂E/∂net, the same numbers with the opposite
sign; see ``generalized.py`` for the rule in that notation.

A batch X of shape (N, n_in) is seed 003's BackwardProp: the rows are the
patterns, δ^l has shape (N, n_l), and BP4 becomes ∂J/∂W^l = A^(l−1)ᵀ Δ^l, which
sums the per-pattern outer products. The batch cost is

    J = (1/N) Σₚ E_p + λ Σ_l ‖W^l‖²     reduction="mean"  (seed 001 §3.3: Δ += (1/m)∇J⁽ⁱ⁾)
    J =       Σₚ E_p + λ Σ_l ‖W^l‖²     reduction="sum"   (seed 002: E_tot = Σₚ E_p)

so each row of a batch δ is 1/N (mean) or 1 (sum) times that pattern's own δ.
The default reduction is the one ``retrograd.nn`` uses for the same loss: "sum"
for sse (``nn.SSELoss``), "mean" for mse and cross_entropy.

Weight decay follows seed 004 (Algorithm 3: J = L + λΩ(θ) with
Ω = Σᵢⱼ Wᵢⱼ², weights only, not biases). Its gradient adds 2λW to BP4
("it will always contribute 2λW^(i) to the gradient on W^(i)"). Note that an
optimizer's ``weight_decay=wd`` (``rg.optim.SGD``) adds wd·W, which corresponds
to λ = wd/2.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .functions import activation as g
from .functions import check_pairing, derivative as g_prime, loss_grad, loss_value

__all__ = ["Network", "Forward", "Backprop", "forward", "backprop", "backprop_per_pattern",
           "default_reduction"]


def default_reduction(loss: str) -> str:
    """The batch reduction retrograd.nn uses for this loss: sse sums, the others average."""
    return "sum" if loss == "sse" else "mean"


@dataclass
class Forward:
    """The forward pass: z[l] and a[l+1] for layer l+1 of the notes (a[0] is the input x)."""
    z: list
    a: list


@dataclass
class Backprop:
    """Everything backpropagation computed, layer by layer.

    Layer l of the notes (1 … L) is index l−1 of ``z``, ``delta``, ``grad_W`` and
    ``grad_b``; ``a`` has one more entry, ``a[0] = x``, so that ``a[l]`` is aˡ and
    layer l computes ``z[l-1] = a[l-1] @ W[l-1] + b[l-1]``. For one pattern (x of
    shape (n_in,)) every δ is a vector; for a batch, one row per pattern.
    """
    z: list
    a: list
    delta: list
    grad_W: list
    grad_b: list
    loss: float                  # J, including the weight-decay term
    penalty: float = 0.0         # the weight-decay term λ Σ ‖W‖² alone
    reduction: str = "mean"


def forward(W, b, activations, x) -> Forward:
    """z^l = a^(l−1) W^l + b^l,  a^l = g^l(z^l)  for l = 1 … L."""
    a, z = [x], []
    for W_l, b_l, f in zip(W, b, activations):
        z_l = a[-1] @ W_l + b_l
        z.append(z_l)
        a.append(g(f, z_l))
    return Forward(z, a)


def backprop(W, b, activations, x, y, loss="sse", reduction=None, weight_decay=0.0) -> Backprop:
    """Gradients of J w.r.t. every W^l and b^l by BP1–BP4, for one pattern or a batch.

    x: one pattern (n_in,) or a batch (N, n_in); y: its target(s), (n_out,) or (N, n_out)
    (cross-entropy with a softmax output: one-hot or probability rows).
    loss: "sse", "mse" or "cross_entropy" (see ``functions.py``).
    reduction: "mean" or "sum" over the patterns of a batch (default: as retrograd.nn).
    weight_decay: λ of seed 004's J = L + λ Σ ‖W‖²; BP4 then adds 2λW.
    """
    L = len(W)
    out = activations[-1]
    check_pairing(out, loss)
    if any(f == "softmax" for f in activations[:-1]):
        raise ValueError("softmax is only allowed as the output activation")
    reduction = reduction or default_reduction(loss)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    one = np.ndim(x) == 1                       # one pattern: work on a batch of one
    X = np.atleast_2d(np.asarray(x, dtype=float))
    Y = np.asarray(y, dtype=float).reshape(len(X), -1)
    if out == "softmax" and loss == "cross_entropy" and not np.allclose(Y.sum(axis=1), 1.0):
        raise ValueError("cross_entropy with a softmax output needs target rows that sum to 1 "
                         "(one-hot or probabilities)")
    N = len(X)
    scale = 1.0 / N if reduction == "mean" else 1.0   # J = scale · Σₚ E_p (+ penalty)

    # forward pass, storing z (net) and a (o) of every layer
    fw = forward(W, b, activations, X)
    z, a = fw.z, fw.a
    penalty = weight_decay * sum(float((W_l ** 2).sum()) for W_l in W)
    J = scale * float(loss_value(loss, a[L], Y, out).sum()) + penalty

    delta = [None] * L
    # BP1: the output delta, δ^L = ∇_a J ⊙ g′(z^L), one row per pattern
    if loss == "cross_entropy":
        # softmax + cross-entropy, and sigmoid + binary cross-entropy: g′ cancels, δ = a − y
        delta[L - 1] = scale * (a[L] - Y)
    elif out == "softmax":
        # softmax is not elementwise: δ = Jacobianᵀ ∇_a J = a ⊙ (∇_a J − Σₘ aₘ (∇_a J)ₘ)
        grad_a = scale * loss_grad(loss, a[L], Y)
        delta[L - 1] = a[L] * (grad_a - (grad_a * a[L]).sum(axis=1, keepdims=True))
    else:
        grad_a = scale * loss_grad(loss, a[L], Y)
        delta[L - 1] = grad_a * g_prime(out, z[L - 1], a[L])

    # BP2: hidden deltas, back-propagated from the layer above
    for l in range(L - 2, -1, -1):
        delta[l] = (delta[l + 1] @ W[l + 1].T) * g_prime(activations[l], z[l], a[l + 1])

    # BP3 and BP4 (+ seed 004's 2λW): gradients of the biases and the weights
    grad_b = [d.sum(axis=0) for d in delta]
    grad_W = [a[l].T @ delta[l] + 2.0 * weight_decay * W[l] for l in range(L)]

    if one:   # back to one pattern's shapes
        z = [v[0] for v in z]
        a = [v[0] for v in a]
        delta = [d[0] for d in delta]
    return Backprop(z=z, a=a, delta=delta, grad_W=grad_W, grad_b=grad_b, loss=J,
                    penalty=penalty, reduction=reduction)


def backprop_per_pattern(W, b, activations, X, Y, loss="sse", reduction=None, weight_decay=0.0):
    """Seed 001 §3.3: run backprop on each pattern and accumulate Δ := Δ + (1/m)∇J⁽ⁱ⁾
    (or Δ + ∇J⁽ⁱ⁾ for reduction="sum"). Returns (grad_W, grad_b, J); it equals the batch
    ``backprop``. The weight-decay gradient 2λW belongs to J once, not to each pattern,
    so it is added once at the end."""
    reduction = reduction or default_reduction(loss)
    m = len(X)
    c = 1.0 / m if reduction == "mean" else 1.0
    grad_W = [np.zeros_like(W_l, dtype=float) for W_l in W]
    grad_b = [np.zeros_like(b_l, dtype=float) for b_l in b]
    J = 0.0
    for x_i, y_i in zip(X, Y):
        r = backprop(W, b, activations, x_i, y_i, loss=loss)
        for l in range(len(W)):
            grad_W[l] += c * r.grad_W[l]
            grad_b[l] += c * r.grad_b[l]
        J += c * r.loss
    penalty = weight_decay * sum(float((W_l ** 2).sum()) for W_l in W)
    grad_W = [gW + 2.0 * weight_decay * W_l for gW, W_l in zip(grad_W, W)]
    return grad_W, grad_b, J + penalty


class Network:
    """A multilayer perceptron as plain arrays: ``W[l]`` (n_in, n_out), ``b[l]`` (n_out,)
    and the activation name of each layer (see ``functions.ACTIVATIONS``).

    ``Network([2, 2, 1], "sigmoid")`` is the 2-2-1 net of seed 002; ``output`` picks a
    different output activation (e.g. "softmax" or "identity"). Weights are drawn from
    U(−s, s), s = √(6 / (n_in + n_out)) (Glorot) or the given ``scale``, by a NumPy
    generator seeded with ``seed``; biases start at zero.
    """
    def __init__(self, sizes=None, activation="sigmoid", output=None, *, seed=0, scale=None,
                 W=None, b=None, activations=None):
        if W is not None:                               # from given weights
            self.W = [np.array(w, dtype=float) for w in W]
            self.b = [np.array(v, dtype=float) for v in (b if b is not None else
                                                         [np.zeros(w.shape[1]) for w in self.W])]
            self.activations = list(activations or [activation] * (len(self.W) - 1)
                                    + [output or activation])
            self.sizes = [self.W[0].shape[0]] + [w.shape[1] for w in self.W]
            return
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"Network: need at least an input and an output size, got {sizes}")
        rng = np.random.default_rng(seed)
        self.sizes = sizes
        self.W, self.b = [], []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            s = np.sqrt(6.0 / (n_in + n_out)) if scale is None else scale
            self.W.append(rng.uniform(-s, s, (n_in, n_out)))
            self.b.append(np.zeros(n_out))
        self.activations = [activation] * (len(sizes) - 2) + [output or activation]

    def forward(self, x) -> Forward:
        return forward(self.W, self.b, self.activations, np.asarray(x, dtype=float))

    def __call__(self, x):
        """The network's output a^L."""
        return self.forward(x).a[-1]

    def backprop(self, x, y, loss="sse", reduction=None, weight_decay=0.0) -> Backprop:
        return backprop(self.W, self.b, self.activations, x, y, loss, reduction, weight_decay)

    def loss(self, x, y, loss="sse", reduction=None, weight_decay=0.0) -> float:
        return self.backprop(x, y, loss, reduction, weight_decay).loss

    def step(self, result: Backprop, lr: float):
        """Gradient descent: W ← W − η ∂J/∂W, b ← b − η ∂J/∂b."""
        for l in range(len(self.W)):
            self.W[l] -= lr * result.grad_W[l]
            self.b[l] -= lr * result.grad_b[l]

    def __repr__(self):
        return f"Network({'-'.join(map(str, self.sizes))}, activations={self.activations})"

    def copy(self) -> "Network":
        return Network(W=[w.copy() for w in self.W], b=[v.copy() for v in self.b],
                       activations=list(self.activations))
