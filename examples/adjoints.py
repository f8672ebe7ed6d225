"""Seed 001 §4.5: the adjoints of f(x1, x2) = sin(x1) + x1·x2 at (x1, x2) = (2, 5).

Reverse-mode autodiff three ways, all giving ∂f/∂x1 = cos(x1) + x2 and ∂f/∂x2 = x1:

1. written out: the forward trace w1 … w5 and the adjoints w̄5 … w̄1, as the notes draw
   them (this is `retrograd explain --expr "sin(x1) + x1*x2" --at x1=2,x2=5`);
2. the engine: build f from tensors, call f.backward(), read x1.grad and x2.grad;
3. the functional form rg.grad, which returns the gradient function.
"""
import numpy as np

import retrograd as rg
from retrograd.explain import explain_expression

# 1. the notes' derivation, printed
print(explain_expression("sin(x1) + x1*x2", {"x1": 2.0, "x2": 5.0}))

# 2. the same with the autodiff engine: x1 feeds two nodes (sin and ·), so its adjoint
#    is the sum over both paths -- the grad-table in retrograd/autodiff.py does that sum
x1 = rg.tensor(2.0, dtype=np.float64, requires_grad=True)
x2 = rg.tensor(5.0, dtype=np.float64, requires_grad=True)
f = rg.sin(x1) + x1 * x2
f.backward()
print(f"f.backward():  ∂f/∂x1 = {x1.grad.item():.6f}   ∂f/∂x2 = {x2.grad.item():g}")

# 3. as a function transform; cos(2) + 5 by hand for comparison
df = rg.grad(lambda a, b: rg.sin(a) + a * b, argnums=(0, 1))
g1, g2 = df(np.float64(2.0), np.float64(5.0))
print(f"rg.grad:       ∂f/∂x1 = {g1.item():.6f}   ∂f/∂x2 = {g2.item():g}   "
      f"(by hand: cos(2) + 5 = {np.cos(2.0) + 5.0:.6f}, x1 = 2)")
