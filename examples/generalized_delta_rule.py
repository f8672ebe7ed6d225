"""Seed 002: the generalized delta rule on the 2-2-1 sigmoid net, then XOR learned with it.

The rule in the notes' notation (w_tu: the weight *to* unit t *from* unit u):

    δ_k = (d_k − o_k) f′(net_k)            output units
    δ_j = (Σ_k δ_k w_kj) f′(net_j)         hidden units: the δ_k travel back along w_kj
    w_tu ← w_tu + η δ_t o_u

retrograd.classic.generalized_delta_rule computes exactly these lines in NumPy; here we
take one step on XOR's pattern (1, 0) → 1, check that η δ o is −η ∂E/∂w as the autodiff
engine computes it, and then train on all four patterns, pattern by pattern (online).
`retrograd explain` prints the same step with every number.
"""
import os

import numpy as np

import retrograd as rg
from retrograd import classic
from retrograd.explain import network_weights

FAST = os.environ.get("RETROGRAD_FAST") == "1"

# The weights `retrograd explain` uses (seed 0), turned into the notes' [to, from] layout.
(W1, W2), (b1, b2) = network_weights([2, 2, 1], seed=0)
w_ji, b_j, w_kj, b_k = W1.T, b1, W2.T, b2

x, d, eta = np.array([1.0, 0.0]), np.array([1.0]), 0.5
s = classic.generalized_delta_rule(x, d, w_ji, b_j, w_kj, b_k, eta=eta)
print(f"o_j = {np.round(s.o_j, 6)}   o_k = {np.round(s.o_k, 6)}   E_p = {s.E:.6f}")
print(f"δ_k = (d − o)·o(1 − o) = {s.delta_k}")
print(f"δ_j = (δ_k w_kj)·o(1 − o) = {s.delta_j}")
print(f"Δw_kj = δ_k o_j = {s.dw_kj}")

# The same gradient from the autodiff engine: ∂E/∂w, with E = ½ Σ (d − o)².
P = [rg.tensor(p, requires_grad=True) for p in (w_ji, b_j, w_kj, b_k)]
o_j = rg.sigmoid(P[0] @ rg.tensor(x) + P[1])
o_k = rg.sigmoid(P[2] @ o_j + P[3])
E = 0.5 * ((rg.tensor(d) - o_k) ** 2).sum()
grads = rg.autograd_grad(E, P)
same = all(np.allclose(mine, -g.numpy(), rtol=1e-12, atol=1e-15)
           for mine, g in zip([s.dw_ji, s.db_j, s.dw_kj, s.db_k], grads))
print(f"generalized delta rule: Δ_p w = δ·o = −∂E/∂w (autodiff) {'✓' if same else '✗'}")

# Online back-propagation (Algorithm 1, stochastic version) on XOR. The 2-2-1 net has
# local minima, so we start from seeded small random weights known to reach the solution.
X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
D = np.array([0, 1, 1, 0], dtype=float)
net = classic.TwoLayerNet.random(2, 2, 1, seed=3)
res = classic.train_generalized(net, X, D, eta=2.0, epochs=1000 if FAST else 4000, tol=0.02)
for epoch in range(0, res.epochs + 1, max(1, res.epochs // 5)):
    print(f"epoch {epoch:5d}   E_tot = {res.E_tot[epoch]:.6f}")
out = net(X).ravel()
learned = np.array_equal(out > 0.5, D > 0.5)
print(f"outputs {np.round(out, 3)} -> XOR {'learned' if learned else 'not learned'} "
      f"after {res.epochs} epochs")
