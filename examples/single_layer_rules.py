"""Seed 000: single-layer learning rules learn AND and OR, and cannot learn XOR.

Three rules, one unit each, trained online (pattern by pattern) from zero weights:

    Rosenblatt's perceptron   o = [w·x + b > 0]          w ← w + η (d − o) x
    LMS / Widrow–Hoff         o = w·x + b                w ← w + η (d − o) x
    seed 000's sigmoid unit   o = g(in)                  W_j ← W_j + α·Err·g′(in)·x_j

Each draws a single line through the input plane, so XOR -- whose two classes sit on the
diagonals of the square -- is out of reach for all of them however long they train; a
hidden layer (examples/xor.py, examples/generalized_delta_rule.py) fixes that.
"""
import numpy as np

from retrograd import classic

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
PROBLEMS = {"AND": [0, 0, 0, 1], "OR": [0, 1, 1, 1], "XOR": [0, 1, 1, 0]}
RULES = [classic.Perceptron(lr=1.0), classic.LMS(lr=0.1), classic.SigmoidUnit(lr=0.5)]
EPOCHS = 1000

print((f"{'rule':26s}" + "".join(f"{p:29s}" for p in PROBLEMS)).rstrip())
for rule in RULES:
    rule.epochs = EPOCHS
    cells = []
    for name, y in PROBLEMS.items():
        r = rule.fit(X, y)
        cells.append(f"learned in {r.epochs} epochs" if r.converged else
                     f"failed ({r.errors[-1]} wrong after {r.epochs})")
    print(f"{rule.name:26s}" + "".join(f"{c:29s}" for c in cells).rstrip())
print("XOR is not linearly separable: no single-layer rule converged on it.")
