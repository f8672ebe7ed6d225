"""Fit XOR with a 2-2-1 sigmoid network, written with nothing but the autodiff engine.

The forward pass is three lines; backprop is `loss.backward()`; the update is
plain batch gradient descent on the four patterns (seed 002's setting).
"""
import numpy as np

import retrograd as rg

X = rg.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = rg.tensor([[0.0], [1.0], [1.0], [0.0]])

rg.manual_seed(0)
W1 = rg.tensor(rg.randn(2, 2).numpy(), requires_grad=True)
b1 = rg.zeros(2, requires_grad=True)
W2 = rg.tensor(rg.randn(2, 1).numpy(), requires_grad=True)
b2 = rg.zeros(1, requires_grad=True)
params = [W1, b1, W2, b2]

for epoch in range(5001):
    h = rg.sigmoid(X @ W1 + b1)
    out = rg.sigmoid(h @ W2 + b2)
    loss = 0.5 * ((out - Y) ** 2).sum()          # E = ½ Σ (d - o)²
    for p in params:
        p.grad = None
    loss.backward()
    with rg.no_grad():
        for p in params:
            p.data -= 2.0 * p.grad.data           # η = 2
    if epoch % 1000 == 0:
        print(f"epoch {epoch:5d}  E = {loss.item():.6f}")

pred = (out.numpy() > 0.5).astype(int).ravel()
print("outputs:", np.round(out.numpy().ravel(), 3), "-> predictions", pred, "targets", [0, 1, 1, 0])
print("accuracy:", (pred == np.array([0, 1, 1, 0])).mean())
