"""``rg.linalg``: the ops under NumPy's ``np.linalg`` names (NumPy 2 has these there too)."""
from .ops import cross, diagonal, matmul, norm, outer, tensordot, trace

__all__ = ["norm", "matmul", "tensordot", "outer", "cross", "trace", "diagonal"]
