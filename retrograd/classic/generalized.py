"""Seed 002's generalized delta rule, per pattern, for a net with one hidden layer.

Notation as in the notes (Micheli, "Derivation of the Back-propagation based
learning algorithm"): input units i with o_i = x_i, hidden units j, output units
k; w_tu is the weight *to* unit t *from* unit u, so the arrays here are indexed
[to, from]: ``w_ji`` has shape (J, I) and ``w_kj`` shape (K, J) -- the transpose
of the library's W (n_in, n_out). Biases ``b_j``, ``b_k`` are weights from a unit
whose output is always 1.

    net_t = Σ_u w_tu o_u + b_t,      o_t = f(net_t)
    E_p   = ½ Σ_k (d_k − o_k)²
    δ_t   = −∂E_p/∂net_t                                   (note the sign)
    δ_k   = (d_k − o_k) f′(net_k)                          output units (Case 1)
    δ_j   = (Σ_k δ_k w_kj) f′(net_j)                       hidden units (Case 2)
    Δ_p w_tu = δ_t o_u = −∂E_p/∂w_tu
    w_tu^new = w_tu + η δ_t o_u

Because δ is −∂E/∂net here, the update *adds* η δ o; seed 001's δ = +∂J/∂z (used
in mlp.py and by the autodiff engine) is the same number with the other sign.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .functions import activation, derivative

__all__ = ["DeltaRuleStep", "generalized_delta_rule", "train_generalized", "TwoLayerNet",
           "GeneralizedResult"]


@dataclass
class DeltaRuleStep:
    """One pattern's pass: the forward values, the deltas, the weight changes and the
    updated weights (the inputs are not modified)."""
    o_i: np.ndarray
    net_j: np.ndarray
    o_j: np.ndarray
    net_k: np.ndarray
    o_k: np.ndarray
    E: float
    delta_k: np.ndarray
    delta_j: np.ndarray
    dw_kj: np.ndarray       # Δ_p w_kj = δ_k o_j   (= −∂E_p/∂w_kj)
    db_k: np.ndarray        # Δ_p b_k  = δ_k · 1
    dw_ji: np.ndarray       # Δ_p w_ji = δ_j o_i
    db_j: np.ndarray
    w_ji: np.ndarray        # the new weights, w + η Δ_p w
    b_j: np.ndarray
    w_kj: np.ndarray
    b_k: np.ndarray


def generalized_delta_rule(x, d, w_ji, b_j, w_kj, b_k, eta=0.5, f="sigmoid") -> DeltaRuleStep:
    """One step of back-propagation on pattern (x, d) in seed 002's notation."""
    o_i = np.asarray(x, dtype=float)                  # input units: o_i = x_i
    d = np.atleast_1d(np.asarray(d, dtype=float))

    # forward: net_t = Σ_u w_tu o_u (+ b_t), o_t = f(net_t)
    net_j = w_ji @ o_i + b_j
    o_j = activation(f, net_j)
    net_k = w_kj @ o_j + b_k
    o_k = activation(f, net_k)
    E = 0.5 * float(((d - o_k) ** 2).sum())          # E_p = ½ Σ_k (d_k − o_k)²

    # Case 1, output units: δ_k = (d_k − o_k) f′(net_k)
    delta_k = (d - o_k) * derivative(f, net_k, o_k)
    # Case 2, hidden units: δ_j = (Σ_k δ_k w_kj) f′(net_j) -- the δ_k are back-propagated
    delta_j = (delta_k @ w_kj) * derivative(f, net_j, o_j)

    # Δ_p w_tu = δ_t o_u
    dw_kj, db_k = np.outer(delta_k, o_j), delta_k
    dw_ji, db_j = np.outer(delta_j, o_i), delta_j

    # w_new = w + η δ_t o_u
    return DeltaRuleStep(o_i, net_j, o_j, net_k, o_k, E, delta_k, delta_j, dw_kj, db_k, dw_ji,
                         db_j, w_ji + eta * dw_ji, b_j + eta * db_j, w_kj + eta * dw_kj,
                         b_k + eta * db_k)


@dataclass
class TwoLayerNet:
    """The weights of an I-J-K net in the notes' [to, from] layout."""
    w_ji: np.ndarray
    b_j: np.ndarray
    w_kj: np.ndarray
    b_k: np.ndarray
    f: str = "sigmoid"

    @classmethod
    def random(cls, I, J, K, f="sigmoid", seed=0, scale=1.0):
        """Small random weights U(−scale, scale), seeded."""
        rng = np.random.default_rng(seed)
        u = lambda *shape: rng.uniform(-scale, scale, shape)
        return cls(u(J, I), u(J), u(K, J), u(K), f)

    def __call__(self, x):
        o_j = activation(self.f, np.asarray(x, dtype=float) @ self.w_ji.T + self.b_j)
        return activation(self.f, o_j @ self.w_kj.T + self.b_k)


@dataclass
class GeneralizedResult:
    net: TwoLayerNet
    E_tot: list = field(default_factory=list)     # E_tot = Σ_p E_p after each epoch
    epochs: int = 0
    converged: bool = False


def train_generalized(net: TwoLayerNet, X, D, eta=0.5, epochs=1000, tol=None) -> GeneralizedResult:
    """Online back-propagation (Algorithm 1, stochastic version): the generalized delta
    rule on each pattern in turn, until E_tot ≤ tol or the epochs run out."""
    X = np.asarray(X, dtype=float)
    D = np.asarray(D, dtype=float).reshape(len(X), -1)

    def E_tot():
        return 0.5 * float(((D - net(X)) ** 2).sum())

    res = GeneralizedResult(net, [E_tot()])
    for epoch in range(1, epochs + 1):
        for x, d in zip(X, D):
            s = generalized_delta_rule(x, d, net.w_ji, net.b_j, net.w_kj, net.b_k, eta, net.f)
            net.w_ji, net.b_j, net.w_kj, net.b_k = s.w_ji, s.b_j, s.w_kj, s.b_k
        res.E_tot.append(E_tot())
        res.epochs = epoch
        if tol is not None and res.E_tot[-1] <= tol:
            res.converged = True
            break
    return res
