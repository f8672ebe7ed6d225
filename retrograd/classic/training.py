"""Gradient descent with the explicit backprop of mlp.py: batch, minibatch or online.

Seed 002, Algorithm 1: compute the error, compute the gradient, update every
weight, repeat until the error is small enough (or the epochs run out). The
gradient (Step 1) is ``mlp.backprop``; the update (Step 2) is the standard one,
w ← w − η ∂J/∂w. ``batch_size`` chooses the version the notes distinguish:

    batch_size=None   batch learning: one step per epoch on all patterns (seed 003)
    batch_size=1      online / stochastic learning: one step per pattern (seed 002)
    batch_size=k      minibatch SGD (seed 001 §3.3)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .mlp import Network

__all__ = ["train", "TrainResult"]


@dataclass
class TrainResult:
    """``losses[e]``: J on the whole training set after epoch e+1 (``losses[0]`` is before
    training); ``converged``: J reached ``tol``; ``epochs``: epochs run."""
    losses: list = field(default_factory=list)
    epochs: int = 0
    converged: bool = False


def train(net: Network, X, Y, *, loss="sse", lr=0.5, epochs=1000, batch_size=None,
          reduction=None, weight_decay=0.0, tol=None, shuffle=True, seed=0,
          callback=None) -> TrainResult:
    """Train ``net`` in place by gradient descent; returns a TrainResult.

    tol: stop once J ≤ tol (Algorithm 1's "while E_tot > ε").
    shuffle: visit minibatches/patterns in a fresh random order each epoch (seeded).
    callback: ``callback(epoch, J)`` after every epoch.
    """
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float).reshape(len(X), -1)
    n = len(X)
    bs = n if batch_size in (None, "full") else int(batch_size)
    if bs < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    rng = np.random.default_rng(seed)

    def cost():
        return net.loss(X, Y, loss, reduction, weight_decay)

    result = TrainResult(losses=[cost()])
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n) if shuffle and bs < n else np.arange(n)
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            r = net.backprop(X[idx], Y[idx], loss, reduction, weight_decay)   # Step 1
            net.step(r, lr)                                                    # Step 2
        J = cost()
        result.losses.append(J)
        result.epochs = epoch
        if callback is not None:
            callback(epoch, J)
        if tol is not None and J <= tol:
            result.converged = True
            break
    return result
