"""The error surface of the 2-2-1 XOR net over two weights, with a gradient-descent path
(seed 002, Figure 1).

Train the net as in examples/xor.py, then hold every weight but two fixed and evaluate
E = ½ Σ (d − o)² on a grid of values for that pair: a slice of the error surface. From a
point up on its slope, plain gradient descent on just those two weights walks down into
the valley where the trained weights lie. Writes loss_landscape.png (or the path given).
"""
import sys

import retrograd as rg
import retrograd.viz

X = rg.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = rg.tensor([[0.0], [1.0], [1.0], [0.0]])

rg.manual_seed(0)
W1 = rg.tensor(rg.randn(2, 2).numpy(), requires_grad=True, name="W1")
b1 = rg.zeros(2, requires_grad=True)
W2 = rg.tensor(rg.randn(2, 1).numpy(), requires_grad=True, name="W2")
b2 = rg.zeros(1, requires_grad=True)
params = [W1, b1, W2, b2]


def E():
    h = rg.sigmoid(X @ W1 + b1)
    out = rg.sigmoid(h @ W2 + b2)
    return 0.5 * ((out - Y) ** 2).sum()


for epoch in range(3000):                      # batch gradient descent, η = 2
    loss = E()
    for p in params:
        p.grad = None
    loss.backward()
    with rg.no_grad():
        for p in params:
            p.data -= 2.0 * p.grad.data
print(f"trained: E = {E().item():.6f}")

# the two weights leaving input 1: to hidden unit 1 and to hidden unit 2
wa, wb = (W1, (0, 0)), (W1, (0, 1))
A, B, Z = rg.viz.loss_landscape(E, params, wa, wb, span=7.0, steps=61)
a0, b0 = W1.data[0, 0].item(), W1.data[0, 1].item()
path = rg.viz.descent_path(E, params, wa, wb, lr=5.0, steps=200, start=(a0 + 4.5, b0 + 3.5))
print(f"gradient descent on the two weights: E {path[0, 2]:.4f} -> {path[-1, 2]:.6f} "
      f"in {len(path) - 1} steps")

out = sys.argv[1] if len(sys.argv) > 1 else "loss_landscape.png"
rg.viz.plot_landscape(A, B, Z, out, path_points=path,
                      labels=("$w_{x_1 \\to h_1}$", "$w_{x_1 \\to h_2}$"),
                      title="2-2-1 sigmoid net on XOR: E = ½Σ(d − o)² over two weights")
print(f"wrote {out}")
