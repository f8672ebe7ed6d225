"""Op cases: scans, sorting, gather/scatter, mod (joined into tests/cases.py's table)."""
from __future__ import annotations

import numpy as np

import retrograd as rg

from opcase import Case
from torch_oracle import torch   # None without it: those tests are skipped

# index arrays (repeated entries: the gradients must accumulate)
I_ROWS = np.array([[2, 0, 2, 1], [1, 1, 0, 3]])            # along axis 1 of a (3, 4) or (2, 4)
I_COLS = np.array([[0, 2, 1, 0], [2, 2, 0, 1]])            # along axis 0 of a (3, 4)
I_FLAT = np.array([[5, 0], [11, 5]])
I_LIST = np.array([2, 0, 2])
I_UNIQUE = np.array([[3, 0], [1, 2]])                      # scatter: one write per place
MASK = np.array([[True, False, True, True], [False, True, False, False], [True, True, False, True]])
# one exact zero in each row of a (3, 4) (the cumprod gradient at a zero), and two
ONE_ZERO = np.array([[1, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 0]]) == 0
THREE_ZEROS = np.array([[1, 0, 0, 1, 0], [0, 0, 1, 0, 1], [0, 1, 0, 1, 0]]) == 0
X_ZERO = np.array([[False, True, False, False], [False] * 4, [False] * 4])
SRC_ZERO = np.array([[False, False, False, True], [True, False, False, False]])
TWO_ZEROS = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 1]]) == 0


def _t(a):
    return torch.as_tensor(a)


CASES: list = [
    # ---- remainders
    Case("mod", rg.mod, lambda a, b: torch.remainder(a, b), ((3, 4), (4,)), domain="away0"),
    Case("mod_scalar", lambda a: a % 0.7, lambda a: torch.remainder(a, 0.7), ((3, 4),)),
    Case("rmod", lambda b: 2.5 % b, lambda b: torch.remainder(torch.full_like(b, 2.5), b),
         ((3, 4),), domain="away0"),
    Case("remainder_method", lambda a, b: a.remainder(b), lambda a, b: a.remainder(b),
         ((3, 4), (3, 1)), domain="away0"),
    Case("fmod", rg.fmod, lambda a, b: torch.fmod(a, b), ((3, 4), (4,)), domain="away0"),
    Case("fmod_scalar", lambda a: rg.fmod(a, -0.6), lambda a: torch.fmod(a, -0.6), ((3, 4),)),
    # ---- scans
    Case("cumsum", lambda a: rg.cumsum(a, axis=1), lambda a: torch.cumsum(a, 1), ((3, 4),)),
    Case("cumsum_flat", rg.cumsum, lambda a: a.flatten().cumsum(0), ((3, 4),)),
    Case("cumsum_neg_axis", lambda a: a.cumsum(axis=-2), lambda a: a.cumsum(-2), ((2, 3, 4),)),
    Case("cumprod", lambda a: rg.cumprod(a, axis=1), lambda a: torch.cumprod(a, 1), ((3, 4),)),
    Case("cumprod_flat", rg.cumprod, lambda a: a.flatten().cumprod(0), ((2, 3),)),
    Case("cumprod_one_zero", lambda a: rg.cumprod(rg.where(ONE_ZERO, 0.0, a), axis=1),
         lambda a: torch.cumprod(a.masked_fill(_t(ONE_ZERO), 0.0), 1), ((3, 4),)),
    Case("cumprod_two_zeros", lambda a: rg.cumprod(rg.where(TWO_ZEROS, 0.0, a), axis=1),
         lambda a: torch.cumprod(a.masked_fill(_t(TWO_ZEROS), 0.0), 1), ((3, 4),)),
    Case("cumprod_three_zeros", lambda a: rg.cumprod(rg.where(THREE_ZEROS, 0.0, a), axis=1),
         lambda a: torch.cumprod(a.masked_fill(_t(THREE_ZEROS), 0.0), 1), ((3, 5),)),
    Case("cummax", lambda a: rg.cummax(a, 1).values, lambda a: torch.cummax(a, 1).values,
         ((3, 5),), domain="distinct"),
    Case("cummin", lambda a: a.cummin(axis=0)[0], lambda a: torch.cummin(a, 0).values,
         ((4, 3),), domain="distinct"),
    Case("logcumsumexp", lambda a: rg.logcumsumexp(a * 3, 1),
         lambda a: torch.logcumsumexp(a * 3, 1), ((3, 4),)),
    Case("logcumsumexp_axis0", lambda a: a.logcumsumexp(axis=-3),
         lambda a: a.logcumsumexp(-3), ((4, 2, 3),)),
    Case("diff", rg.diff, lambda a: torch.diff(a), ((3, 5),)),
    Case("diff_n2_prepend", lambda a, p: rg.diff(a, n=2, axis=0, prepend=p, append=0.5),
         lambda a, p: torch.diff(a, n=2, dim=0, prepend=p, append=torch.full((1, 3), 0.5,
                                                                          dtype=a.dtype)),
         ((4, 3), (1, 3))),
    # ---- sorting
    Case("sort", lambda a: rg.sort(a, axis=1), lambda a: torch.sort(a, 1).values, ((3, 4),),
         domain="distinct"),
    Case("sort_descending", lambda a: rg.sort(a, axis=0, descending=True),
         lambda a: torch.sort(a, 0, descending=True).values, ((3, 4),), domain="distinct"),
    Case("sort_flat", lambda a: rg.sort(a, axis=None), lambda a: torch.sort(a.flatten()).values,
         ((3, 4),), domain="distinct"),
    Case("topk", lambda a: rg.topk(a, 2, axis=1).values, lambda a: torch.topk(a, 2, 1).values,
         ((3, 5),), domain="distinct"),
    Case("topk_smallest", lambda a: a.topk(3, axis=0, largest=False)[0],
         lambda a: torch.topk(a, 3, 0, largest=False).values, ((4, 3),), domain="distinct"),
    # ---- gather family
    # (squared, so that the gradient's own op, take_add, gets a cotangent that needs grad)
    Case("take", lambda a: rg.take(a, I_ROWS, axis=1) ** 2, lambda a: a[:, _t(I_ROWS)] ** 2,
         ((3, 4),)),
    Case("take_flat", lambda a: a.take(I_FLAT), lambda a: torch.take(a, _t(I_FLAT)), ((3, 4),)),
    Case("index_select", lambda a: rg.index_select(a, 0, I_LIST),
         lambda a: torch.index_select(a, 0, _t(I_LIST)), ((3, 4),)),
    Case("take_along_axis", lambda a: rg.take_along_axis(a, I_ROWS, axis=1),
         lambda a: torch.take_along_dim(a, _t(I_ROWS), 1), ((2, 4),)),
    Case("take_along_axis_bcast", lambda a: rg.take_along_axis(a, I_LIST[:, None], axis=0),
         lambda a: torch.take_along_dim(a, _t(I_LIST[:, None]), 0), ((3, 4),)),
    Case("gather", lambda a: rg.gather(a, 0, I_COLS), lambda a: torch.gather(a, 0, _t(I_COLS)),
         ((3, 4),)),
    Case("gather_smaller", lambda a: a.gather(1, I_UNIQUE),
         lambda a: torch.gather(a, 1, _t(I_UNIQUE)), ((3, 5),)),
    Case("scatter", lambda x, s: rg.scatter(x, 1, I_UNIQUE, s),
         lambda x, s: torch.scatter(x, 1, _t(I_UNIQUE), s), ((3, 4), (2, 2))),
    Case("scatter_value", lambda x: x.scatter(1, I_UNIQUE, 2.0),
         lambda x: torch.scatter(x, 1, _t(I_UNIQUE), 2.0), ((3, 4),)),
    Case("scatter_reduce_sum", lambda x, s: rg.scatter_reduce(x, 1, I_ROWS, s, "sum"),
         lambda x, s: torch.scatter_reduce(x, 1, _t(I_ROWS), s, "sum"), ((3, 4), (2, 4))),
    Case("scatter_reduce_sum_noself",
         lambda x, s: rg.scatter_reduce(x, 0, I_COLS, s, "sum", include_self=False),
         lambda x, s: torch.scatter_reduce(x, 0, _t(I_COLS), s, "sum", include_self=False),
         ((3, 4), (2, 4))),
    Case("scatter_reduce_mean", lambda x, s: x.scatter_reduce(1, I_ROWS, s, "mean"),
         lambda x, s: torch.scatter_reduce(x, 1, _t(I_ROWS), s, "mean"), ((3, 4), (2, 4))),
    Case("scatter_reduce_mean_noself",
         lambda x, s: rg.scatter_reduce(x, 1, I_ROWS, s, "mean", include_self=False),
         lambda x, s: torch.scatter_reduce(x, 1, _t(I_ROWS), s, "mean", include_self=False),
         ((3, 4), (2, 4))),
    Case("scatter_reduce_amax", lambda x, s: rg.scatter_reduce(x, 1, I_ROWS, s, "amax"),
         lambda x, s: torch.scatter_reduce(x, 1, _t(I_ROWS), s, "amax"), ((3, 4), (2, 4)),
         domain="distinct"),
    Case("scatter_reduce_amin_noself",
         lambda x, s: rg.scatter_reduce(x, 0, I_COLS, s, "amin", include_self=False),
         lambda x, s: torch.scatter_reduce(x, 0, _t(I_COLS), s, "amin", include_self=False),
         ((3, 4), (2, 4)), domain="distinct"),
    Case("scatter_reduce_prod", lambda x, s: rg.scatter_reduce(x, 1, I_ROWS, s, "prod"),
         lambda x, s: torch.scatter_reduce(x, 1, _t(I_ROWS), s, "prod"), ((3, 4), (2, 4))),
    # exact zeros: one in x, one src alone at its place, one sharing its place with another src
    Case("scatter_reduce_prod_zeros",
         lambda x, s: rg.scatter_reduce(rg.where(X_ZERO, 0.0, x), 1, I_ROWS,
                                        rg.where(SRC_ZERO, 0.0, s), "prod"),
         lambda x, s: torch.scatter_reduce(x.masked_fill(_t(X_ZERO), 0.0), 1, _t(I_ROWS),
                                           s.masked_fill(_t(SRC_ZERO), 0.0), "prod"),
         ((3, 4), (2, 4))),
    Case("scatter_reduce_prod_noself",
         lambda x, s: rg.scatter_reduce(x, 0, I_COLS, s, "prod", include_self=False),
         lambda x, s: torch.scatter_reduce(x, 0, _t(I_COLS), s, "prod", include_self=False),
         ((3, 4), (2, 4))),
    Case("masked_fill", lambda a: rg.masked_fill(a, MASK, 0.5),
         lambda a: a.masked_fill(_t(MASK), 0.5), ((3, 4),)),
    Case("masked_fill_tensor", lambda a, v: a.masked_fill(MASK, v),
         lambda a, v: a.masked_fill(_t(MASK), v), ((3, 4), ())),
]

# ops without a gradient, checked forward-only against NumPy: name -> (ours, numpy's)
NONDIFF: dict = {
    "argsort": (lambda a: rg.argsort(a, axis=1), lambda a: np.argsort(a, axis=1, kind="stable")),
    "cum_extremum_indices": (lambda a: rg.cummax(a, 0).indices,
                             lambda a: np.array([np.argmax(a[:i + 1], axis=0)
                                                 for i in range(len(a))])),
}
