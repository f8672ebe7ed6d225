"""``rg.linalg``: the ops under NumPy's ``np.linalg`` names (NumPy 2 has these there too);
inv, solve, det and slogdet only here, as in NumPy."""
from .ops import cross, det, diagonal, inv, matmul, norm, outer, slogdet, solve, tensordot, trace

__all__ = ["norm", "matmul", "tensordot", "outer", "cross", "trace", "diagonal", "inv", "solve",
           "det", "slogdet"]
