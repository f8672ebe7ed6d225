"""Matrix products: 1-D, 2-D and batched (broadcast) ``matmul``, and ``dot``."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..tensor import Tensor
from .base import apply, defop
from .shape import reshape, sum_to, swapaxes, transpose


def _as_matrices(g, a, b):
    """View 1-D operands as matrices, as matmul does: a (n,) -> (1, n), b (n,) -> (n, 1),
    and give the cotangent the shape of the matrix product."""
    a2 = reshape(a, (1,) + a.shape) if a.ndim == 1 else a
    b2 = reshape(b, b.shape + (1,)) if b.ndim == 1 else b
    out_shape = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) + (a2.shape[-2], b2.shape[-1])
    return reshape(g, out_shape), a2, b2


def _matmul_vjp_a(g, out, a, b):
    if a.ndim == 2 and b.ndim == 2:            # the common case, without reshapes
        return g @ transpose(b)
    g2, a2, b2 = _as_matrices(g, a, b)
    return reshape(sum_to(g2 @ swapaxes(b2, -1, -2), a2.shape), a.shape)


def _matmul_vjp_b(g, out, a, b):
    if a.ndim == 2 and b.ndim == 2:
        return transpose(a) @ g
    g2, a2, b2 = _as_matrices(g, a, b)
    return reshape(sum_to(swapaxes(a2, -1, -2) @ g2, b2.shape), b.shape)


def _matmul_shape(a, b):
    """Output shape and dtype without multiplying (used when tracing)."""
    sa, sb = a.shape, b.shape
    if len(sa) == 0 or len(sb) == 0 or sa[-1] != (sb[-2] if len(sb) > 1 else sb[0]):
        raise ShapeError(f"matmul: shapes {sa} and {sb} are not aligned")
    batch = np.broadcast_shapes(sa[:-2], sb[:-2])
    core = (sa[-2],) if len(sa) > 1 else ()
    core += (sb[-1],) if len(sb) > 1 else ()
    return batch + core, np.result_type(a.dtype, b.dtype)


_matmul = defop("matmul", np.matmul, (_matmul_vjp_a, _matmul_vjp_b), shape=_matmul_shape,
                reads=((1,), (0,)))


def _shape(x):
    return x.shape if isinstance(x, Tensor) else np.shape(x)


def matmul(a, b):
    """Matrix product with NumPy's rules (``a @ b``): 1-D vectors, 2-D matrices,
    and stacks of matrices that broadcast over leading axes."""
    try:
        return apply(_matmul, a, b)
    except ShapeError:
        pass
    # explain the failure (checked only now, off the hot path)
    sa, sb = _shape(a), _shape(b)
    if len(sa) == 0 or len(sb) == 0:
        raise ShapeError(f"matmul: operands must be at least 1-d, got shapes {sa} and {sb}")
    ka = sa[-1]
    kb = sb[-2] if len(sb) > 1 else sb[0]
    if ka != kb:
        raise ShapeError(f"matmul: shapes {sa} and {sb} are not aligned: "
                         f"{ka} (last axis of the first) != {kb} "
                         f"({'second-to-last' if len(sb) > 1 else 'only'} axis of the second)")
    raise ShapeError(f"matmul: the batch axes of shapes {sa} and {sb} do not broadcast")


def dot(a, b):
    """``np.dot`` for vectors and matrices (the notes' ``dot(x, w1)``); a scalar operand
    multiplies. For stacks of matrices use ``matmul``, whose broadcasting is unambiguous."""
    sa, sb = _shape(a), _shape(b)
    if len(sa) == 0 or len(sb) == 0:
        return a * b
    if len(sa) > 2 or len(sb) > 2:
        raise ShapeError(f"dot: shapes {sa} and {sb}: dot of arrays with more than 2 axes is "
                         "ambiguous here; use rg.matmul (batched) instead")
    return matmul(a, b)
