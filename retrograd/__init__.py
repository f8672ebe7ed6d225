"""retrograd: a NumPy-native deep-learning library built around backpropagation.

    import retrograd as rg
    x = rg.tensor([[1.0, 2.0]], requires_grad=True)
    y = rg.tanh(x @ rg.randn(2, 3)).sum()
    y.backward()
    x.grad
"""
from importlib import import_module as _import_module

from . import malloc as _malloc

_malloc.tune()        # large NumPy temporaries reused, not page-faulted anew each step

from . import arrays, autodiff, data, graph, io, nn, ops, optim
from .arrays import to_namespace
from . import linalg
from .graph import compile
from .io import CheckpointError, load, save
from .interop import from_dlpack
from .autodiff import grad as autograd_grad
from .autodiff import detect_anomaly
from .check import GradcheckReport, gradcheck, gradgradcheck
from .errors import (AnomalyError, AxisError, GradcheckError, MissingDependency, RetrogradError,
                     SettingError, ShapeError)
from .functional import grad, hessian, hvp, jacobian, jvp, value_and_grad, vjp
from .ops import *  # noqa: F401,F403  (every op as rg.<name>)
from .tensor import (Tensor, arange, as_tensor, default_generator, enable_grad, eye, full, full_like,
                     is_grad_enabled, manual_seed, no_grad, ones, ones_like, rand, rand_like, randn,
                     randn_like, set_grad_enabled, tensor, zeros, zeros_like)

__version__ = "0.1.0"

float32 = "float32"
float64 = "float64"

# Loaded on first use (PEP 562), so `import retrograd` stays light: the teaching layer
# (explain, classic), plotting (viz, which needs matplotlib), the training loop (train),
# ONNX export (onnx, which needs the onnx package), the scikit-learn estimators (sklearn,
# which needs scikit-learn) and data-parallel training (distributed, which imports mpi4py
# only under mpiexec).
_LAZY = ("classic", "distributed", "explain", "onnx", "sklearn", "train", "viz")


def __getattr__(name):
    if name in _LAZY:
        return _import_module(f".{name}", __name__)   # binds it as an attribute too
    raise AttributeError(f"module 'retrograd' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
