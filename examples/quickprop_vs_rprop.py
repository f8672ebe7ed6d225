"""Seed 002's update rules: standard back-prop (SGD), Quickprop and Rprop on the same problem.

Seed 002 separates the gradient computation (backprop) from the update rule: "Standard
Back-prop, Quick-prop, R-prop, ...". Here all three get the same gradients of the same
problem -- XOR with a 2-3-1 sigmoid net, E = ½ Σ (d − o)², batch learning -- from the
same random starts, and we count the epochs until the problem is solved, with Fahlman's
criterion (1988): every output within 0.4 of its target.

    SGD         w ← w − η ∂E/∂w
    Quickprop   a secant step per weight, Δw = g / (g⁻ − g) · Δw⁻ (Fahlman 1988)
    Rprop       only the sign of ∂E/∂w, with a step size per weight that grows while
                the sign stays and shrinks when it flips (Riedmiller & Braun 1993)

Set RETROGRAD_FAST=1 for fewer starts.
"""
import os

import numpy as np

import retrograd as rg

FAST = os.environ.get("RETROGRAD_FAST") == "1"
STARTS, MAX_EPOCHS = (4, 500) if FAST else (10, 2000)
HIDDEN = 3

X = rg.tensor(np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64))
D = np.array([[0], [1], [1], [0]], dtype=np.float64)

OPTIMIZERS = {
    "SGD (η = 2)": lambda p: rg.optim.SGD(p, lr=2.0),
    "Quickprop (ε = 1, μ = 1.75)": lambda p: rg.optim.Quickprop(p, lr=1.0, mu=1.75),
    "Rprop (Δ₀ = 0.1)": lambda p: rg.optim.Rprop(p, lr=0.1),
}


def epochs_to_solve(make_optimizer, seed):
    """Batch training from the weights of ``seed``; the epochs it took, or None."""
    rng = np.random.default_rng(seed)
    W1 = rg.tensor(rng.uniform(-1, 1, (2, HIDDEN)), requires_grad=True)
    b1 = rg.tensor(rng.uniform(-1, 1, HIDDEN), requires_grad=True)
    W2 = rg.tensor(rng.uniform(-1, 1, (HIDDEN, 1)), requires_grad=True)
    b2 = rg.tensor(rng.uniform(-1, 1, 1), requires_grad=True)
    opt = make_optimizer([W1, b1, W2, b2])
    for epoch in range(MAX_EPOCHS + 1):
        o = rg.sigmoid(rg.sigmoid(X @ W1 + b1) @ W2 + b2)
        if np.all(np.abs(o.numpy() - D) < 0.4):
            return epoch
        E = 0.5 * ((o - D) ** 2).sum()
        opt.zero_grad()
        E.backward()                      # the same backprop for every optimizer ...
        opt.step()                        # ... and a different update rule
    return None


print(f"XOR, 2-{HIDDEN}-1 sigmoid net, batch learning, {STARTS} random starts, "
      f"at most {MAX_EPOCHS} epochs each")
print(f"{'update rule':30s}{'solved':>8s}{'median epochs':>15s}   epochs per start")
for name, make in OPTIMIZERS.items():
    runs = [epochs_to_solve(make, seed) for seed in range(STARTS)]
    done = sorted(r for r in runs if r is not None)
    median = f"{np.median(done):.0f}" if done else "-"
    each = " ".join("-" if r is None else str(r) for r in runs)
    print(f"{name:30s}{len(done):>5d}/{STARTS:<2d}{median:>15s}   {each}")
