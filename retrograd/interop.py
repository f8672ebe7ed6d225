"""Arrays from other libraries without a copy: ``rg.from_dlpack``.

The other direction is the Tensor's own ``__dlpack__``: ``torch.from_dlpack(t)``,
``jax.dlpack.from_dlpack(t)`` and ``np.from_dlpack(t)`` share its memory.
"""
from __future__ import annotations

import numpy as np

from .errors import RetrogradError
from .tensor import Tensor

__all__ = ["from_dlpack"]


def from_dlpack(x) -> Tensor:
    """A Tensor sharing memory with ``x``: anything with ``__dlpack__`` on the CPU (a NumPy
    array, a PyTorch tensor, a JAX array). Writes through one are seen in the other (a
    JAX array is immutable: its tensor is read-only). It does not require grad; a torch
    tensor that does must be ``.detach()``ed first, as torch itself insists."""
    try:
        arr = np.from_dlpack(x)
    except (AttributeError, TypeError, BufferError, RuntimeError) as e:
        kind = f"{type(x).__module__}.{type(x).__qualname__}".removeprefix("builtins.")
        raise RetrogradError(f"from_dlpack: cannot share the memory of a {kind} "
                             f"({type(e).__name__}: {e})") from None
    return Tensor._make(arr)
