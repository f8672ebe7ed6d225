"""Layers: Linear, Dropout, the activations, and the MLP builder."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..errors import ShapeError
from . import functional as F
from . import init as initializers
from .module import Module, Parameter, Sequential


class Linear(Module):
    """z = x @ W + b with W of shape (n_in, n_out), as in the notes (A = Z W).

    ``init``: "glorot" (default; for tanh/sigmoid), "he" (for ReLU), "lecun",
    "uniform", or any ``f(shape, dtype) -> ndarray``. The bias starts at zero.
    """

    _torch_transposed = ("weight",)       # PyTorch's Linear.weight is (out, in)

    def __init__(self, n_in: int, n_out: int, bias: bool = True, init="glorot", dtype=np.float32):
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.weight = Parameter(initializers.get(init)((self.n_in, self.n_out), dtype=dtype))
        self.bias = Parameter(np.zeros(self.n_out, dtype)) if bias else None

    def forward(self, x):
        if not x.shape or x.shape[-1] != self.n_in:
            raise ShapeError(f"Linear({self.n_in}, {self.n_out}): input has shape {tuple(x.shape)}, "
                             f"expected last axis {self.n_in}")
        z = ops.matmul(x, self.weight)
        return z + self.bias if self.bias is not None else z

    def extra_repr(self):
        return f"{self.n_in}, {self.n_out}, bias={self.bias is not None}"


class Dropout(Module):
    """Inverted dropout with drop probability p; the identity in eval mode."""

    def __init__(self, p: float = 0.5):
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


def _activation(name, fn, doc):
    cls = type(name, (Module,), {"forward": lambda self, x: fn(x), "__doc__": doc})
    return cls


Sigmoid = _activation("Sigmoid", ops.sigmoid, "Logistic sigmoid 1 / (1 + e^-x).")
Tanh = _activation("Tanh", ops.tanh, "Hyperbolic tangent.")
ReLU = _activation("ReLU", ops.relu, "max(x, 0).")
Identity = _activation("Identity", lambda x: x, "Returns its input (a linear output layer).")


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        self.negative_slope = negative_slope

    def forward(self, x):
        return ops.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Softmax(Module):
    def __init__(self, axis: int = -1):
        self.axis = axis

    def forward(self, x):
        return ops.softmax(x, axis=self.axis)

    def extra_repr(self):
        return f"axis={self.axis}"


class LogSoftmax(Softmax):
    def forward(self, x):
        return ops.log_softmax(x, axis=self.axis)


ACTIVATIONS = {"sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU, "leaky_relu": LeakyReLU,
               "identity": Identity, "linear": Identity, "softmax": Softmax,
               "log_softmax": LogSoftmax}
# the nonlinearities of a hidden layer (identity would make the net linear, softmax mixes
# the units of a layer): the choices of `retrograd train/graph --activation`
HIDDEN_ACTIVATIONS = ("tanh", "sigmoid", "relu", "leaky_relu")


def activation(name: str) -> Module:
    try:
        return ACTIVATIONS[name.lower()]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


def MLP(sizes, activation_name: str = "tanh", output_activation: str | None = None,
        dropout: float = 0.0, init=None, dtype=np.float32) -> Sequential:
    """A multilayer perceptron from layer sizes: ``MLP([784, 100, 10], "tanh")`` is
    Linear(784, 100) → Tanh → Linear(100, 10). The output layer has no activation
    unless ``output_activation`` is given (losses such as cross-entropy take logits).
    ``init`` defaults to He for ReLU-like activations and Glorot otherwise."""
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"MLP: need at least an input and an output size, all positive; got {sizes}")
    if init is None:
        init = "he" if activation_name.lower() in ("relu", "leaky_relu") else "glorot"
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(a, b, init=init, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(activation(activation_name))
            if dropout:
                layers.append(Dropout(dropout))
    if output_activation:
        layers.append(activation(output_activation))
    return Sequential(*layers)
