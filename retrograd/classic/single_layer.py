"""The single-layer learning rules, one unit per output, trained online pattern by pattern.

Each rule keeps a weight vector w (plus a bias b, the weight W₀ of a constant
input x₀ = 1) per output unit and, for each pattern (x, d) in turn, adds a
correction proportional to the input x:

    Perceptron (Rosenblatt 1957)   o = [w·x + b > 0]        w ← w + η (d − o) x
    LMS / Widrow–Hoff (1960)       o = w·x + b              w ← w + η (d − o) x
    Sigmoid unit (seed 000)        o = g(in), in = w·x + b  W_j ← W_j + α·Err·g′(in)·x_j

They look alike but are different rules: the perceptron's o is thresholded, so it
only moves on a mistake and stops for good once every pattern is right (it
converges in finitely many steps on linearly separable data); LMS is gradient
descent on ½(d − o)² of the *linear* output; seed 000's rule is gradient descent
on E = ½ Err², Err = y − g(in), with g the logistic sigmoid, whose g′(in) = g(1 − g).

All three draw one line (a hyperplane) through input space, so none can represent
XOR: "Single-layer perceptrons ... adjusting weights moves the location,
orientation, and steepness of [the] cliff" (seed 000) -- but it is one cliff.
Targets are 0/1; the class is o > 0.5 (for the perceptron, o itself). A run has
*converged* when an epoch ends with every training pattern classified correctly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .functions import sigmoid

__all__ = ["Perceptron", "LMS", "WidrowHoff", "SigmoidUnit", "RuleResult"]


@dataclass
class RuleResult:
    """``converged``: every pattern right at the end of epoch ``epochs``; ``errors[e]``:
    patterns misclassified after epoch e+1; ``sse[e]``: ½ Σ (d − o)² then."""
    converged: bool
    epochs: int
    w: np.ndarray
    b: np.ndarray
    errors: list = field(default_factory=list)
    sse: list = field(default_factory=list)


class _SingleLayerRule:
    name = "rule"

    def __init__(self, lr=0.1, epochs=100, shuffle=False, seed=0):
        self.lr, self.epochs, self.shuffle, self.seed = lr, epochs, shuffle, seed
        self.w = self.b = None

    def net(self, X):
        """in = w·x + b for every pattern and unit, shape (N, K)."""
        return np.atleast_2d(X) @ self.w + self.b

    def output(self, X):                               # o, shape (N, K)
        raise NotImplementedError

    def predict(self, X):
        """Class 0/1 per pattern and output unit."""
        return (self.output(X) > 0.5).astype(int)

    def update(self, x, d):                            # one pattern: change self.w, self.b
        raise NotImplementedError

    def _init(self, n_in, n_out):
        self.w = np.zeros((n_in, n_out))       # zero start: one unit needs no symmetry breaking
        self.b = np.zeros(n_out)

    def fit(self, X, y) -> RuleResult:
        """Train online on (X, y), y of shape (N,) or (N, K) with 0/1 entries."""
        X = np.asarray(X, dtype=float)
        D = np.asarray(y, dtype=float).reshape(len(X), -1)
        self._init(X.shape[1], D.shape[1])
        rng = np.random.default_rng(self.seed)
        errors, sse = [], []
        for epoch in range(1, self.epochs + 1):
            order = rng.permutation(len(X)) if self.shuffle else range(len(X))
            for p in order:
                self.update(X[p], D[p])
            errors.append(int((self.predict(X) != D).any(axis=1).sum()))
            sse.append(0.5 * float(((D - self.output(X)) ** 2).sum()))
            if errors[-1] == 0:
                return RuleResult(True, epoch, self.w.copy(), self.b.copy(), errors, sse)
        return RuleResult(False, self.epochs, self.w.copy(), self.b.copy(), errors, sse)

    def __repr__(self):
        return f"{type(self).__name__}(lr={self.lr}, epochs={self.epochs})"


class Perceptron(_SingleLayerRule):
    """Rosenblatt's perceptron rule: o = step(w·x + b), w ← w + η (d − o) x.

    (d − o) is 0 on a correct pattern, so the weights change only on mistakes. On
    linearly separable data it stops after finitely many mistakes (the perceptron
    convergence theorem); on XOR it cycles for ever.
    """
    name = "perceptron"

    def __init__(self, lr=1.0, epochs=100, shuffle=False, seed=0):
        super().__init__(lr, epochs, shuffle, seed)

    def output(self, X):
        return (self.net(X) > 0).astype(float)

    def update(self, x, d):
        o = self.output(x)[0]
        self.w += self.lr * np.outer(x, d - o)
        self.b += self.lr * (d - o)


class LMS(_SingleLayerRule):
    """The LMS (least mean squares) or Widrow–Hoff delta rule of the ADALINE:
    o = w·x + b (a linear unit), w ← w + η (d − o) x.

    It is stochastic gradient descent on ½(d − o)², so it settles near the
    least-squares weights, thresholded at 0.5 to classify. For XOR the
    least-squares line is w = 0, b = ½: it cannot separate the classes.
    """
    name = "LMS (Widrow–Hoff)"

    def output(self, X):
        return self.net(X)

    def update(self, x, d):
        o = self.output(x)[0]
        self.w += self.lr * np.outer(x, d - o)
        self.b += self.lr * (d - o)


WidrowHoff = LMS


class SigmoidUnit(_SingleLayerRule):
    """Seed 000's rule for one sigmoid unit: W_j ← W_j + α × Err × g′(in) × x_j.

    With E = ½ Err², Err = y − g(in), in = Σ_j W_j x_j (x₀ = 1 for the bias):
    ∂E/∂W_j = −Err × g′(in) × x_j, so the rule is gradient descent with step α.
    g is the logistic sigmoid and g′(in) = g(in)(1 − g(in)).
    """
    name = "sigmoid unit (seed 000)"

    def __init__(self, lr=0.5, epochs=1000, shuffle=False, seed=0):
        super().__init__(lr, epochs, shuffle, seed)

    def output(self, X):
        return sigmoid(self.net(X))                       # g(in) = 1 / (1 + e^−in)

    def update(self, x, d):
        o = self.output(x)[0]                     # g(in)
        err = d - o                               # Err = y − h_W(x)
        g_prime = o * (1 - o)                     # g′(in)
        self.w += self.lr * np.outer(x, err * g_prime)      # α × Err × g′(in) × x_j
        self.b += self.lr * err * g_prime                   # x₀ = 1
