"""Op cases: einsum and friends, movement ops, pad modes, norm (joined into tests/cases.py's table)."""
from __future__ import annotations

import numpy as np

import retrograd as rg

from opcase import Case
from torch_oracle import torch   # None without it: those tests are skipped

F = torch.nn.functional if torch else None
LA = torch.linalg if torch else None
INF = np.inf


def shifted(a, k=3.0):
    """a + k·I: a well-conditioned matrix for inv, solve, det, slogdet (a where on a mask,
    so a keeps its dtype and namespace)."""
    return rg.where(np.eye(a.shape[-1], dtype=bool), a + k, a)


def tshifted(a, k=3.0):
    return a + torch.eye(a.shape[-1], dtype=a.dtype) * k


def signed_logabsdet(sign, logabsdet):
    return sign * logabsdet

CASES: list = [
    # ---- einsum: contractions, implicit output, repeated labels, '...', three operands
    Case("einsum_matmul", lambda a, b: rg.einsum("ij,jk->ik", a, b),
         lambda a, b: torch.einsum("ij,jk->ik", a, b), ((3, 4), (4, 2))),
    Case("einsum_implicit", lambda a, b: rg.einsum("ij,kj", a, b),
         lambda a, b: torch.einsum("ij,kj", a, b), ((3, 4), (2, 4))),
    Case("einsum_batched_ellipsis", lambda a, b: rg.einsum("...ij,...jk->...ik", a, b),
         lambda a, b: torch.einsum("...ij,...jk->...ik", a, b), ((2, 3, 4), (4, 2))),
    Case("einsum_trace", lambda a: rg.einsum("ii", a), lambda a: torch.einsum("ii", a), ((4, 4),)),
    Case("einsum_diagonal", lambda a, b: rg.einsum("ii,i->i", a, b),
         lambda a, b: torch.einsum("ii,i->i", a, b), ((3, 3), (3,))),
    Case("einsum_sum_one_operand_axis", lambda a, b: rg.einsum("ijk,j->i", a, b),
         lambda a, b: torch.einsum("ijk,j->i", a, b), ((2, 3, 4), (3,))),
    Case("einsum_three", lambda a, b, c: rg.einsum("ij,jk,k->i", a, b, c),
         lambda a, b, c: torch.einsum("ij,jk,k->i", a, b, c), ((2, 3), (3, 4), (4,))),
    Case("einsum_outer_transpose", lambda a, b: rg.einsum("i,j->ji", a, b),
         lambda a, b: torch.einsum("i,j->ji", a, b), ((3,), (2,))),
    Case("tensordot", lambda a, b: rg.tensordot(a, b), lambda a, b: torch.tensordot(a, b),
         ((2, 3, 4), (3, 4, 2))),
    Case("tensordot_pairs", lambda a, b: rg.tensordot(a, b, axes=([0, 2], [2, 0])),
         lambda a, b: torch.tensordot(a, b, dims=([0, 2], [2, 0])), ((2, 3, 4), (4, 3, 2))),
    Case("outer", rg.outer, lambda a, b: torch.outer(a.flatten(), b), ((2, 3), (4,))),
    Case("inner", rg.inner, lambda a, b: torch.inner(a, b), ((2, 3, 4), (5, 4))),
    Case("cross", rg.cross, lambda a, b: LA.cross(a, b.expand(4, 3), dim=-1), ((4, 3), (3,))),
    Case("cross_axis0", lambda a, b: rg.cross(a, b, axis=0),
         lambda a, b: LA.cross(a, b, dim=0), ((3, 4), (3, 4))),
    Case("trace", rg.trace, lambda a: torch.trace(a), ((3, 4),)),
    Case("trace_offset_axes", lambda a: rg.trace(a, -1, axis1=2, axis2=0),
         lambda a: torch.diagonal(a, -1, 2, 0).sum(-1), ((4, 2, 3),)),
    # (times x, so that the adjoint's own gradient, diagonal again, is exercised)
    Case("diagonal", lambda a: rg.diagonal(a, 1) * a[0, :3], lambda a: torch.diagonal(a, 1) * a[0, :3],
         ((4, 4),)),
    Case("diagonal_axes", lambda a: rg.diagonal(a, -1, axis1=-1, axis2=0),
         lambda a: torch.diagonal(a, -1, -1, 0), ((3, 2, 4),)),
    Case("tril", lambda a: rg.tril(a), lambda a: torch.tril(a), ((2, 3, 4),)),
    Case("triu_k", lambda a: rg.triu(a, -1), lambda a: torch.triu(a, -1), ((4, 3),)),
    # ---- movement
    Case("flip", lambda a: rg.flip(a, (0, -1)), lambda a: torch.flip(a, (0, -1)), ((2, 3, 4),)),
    Case("flip_all", rg.flip, lambda a: torch.flip(a, (0, 1)), ((3, 4),)),
    Case("roll", lambda a: rg.roll(a, (1, -2), axis=(0, 2)),
         lambda a: torch.roll(a, (1, -2), dims=(0, 2)), ((2, 3, 4),)),
    Case("roll_flat", lambda a: rg.roll(a, 5), lambda a: torch.roll(a, 5), ((3, 4),)),
    Case("repeat", lambda a: rg.repeat(a, 2, axis=1),
         lambda a: torch.repeat_interleave(a, 2, dim=1), ((2, 3),)),
    Case("repeat_counts", lambda a: rg.repeat(a, [2, 0, 1], axis=0),
         lambda a: torch.repeat_interleave(a, torch.tensor([2, 0, 1]), dim=0), ((3, 4),)),
    Case("repeat_flat", lambda a: a.repeat(2), lambda a: torch.repeat_interleave(a, 2), ((2, 3),)),
    Case("tile", lambda a: rg.tile(a, (2, 1, 3)), lambda a: torch.tile(a, (2, 1, 3)), ((3, 2),)),
    Case("moveaxis", lambda a: rg.moveaxis(a, (0, 1), (-1, 0)),
         lambda a: torch.moveaxis(a, (0, 1), (-1, 0)), ((2, 3, 4),)),
    Case("rollaxis", lambda a: rg.rollaxis(a, 2, 0), lambda a: torch.movedim(a, 2, 0), ((2, 3, 4),)),
    Case("array_split", lambda a: rg.array_split(a, 3, axis=1)[0] * rg.array_split(a, 3, axis=1)[2],
         lambda a: torch.tensor_split(a, 3, dim=1)[0] * torch.tensor_split(a, 3, dim=1)[2],
         ((2, 5),)),
    Case("hstack", lambda a, b: rg.hstack([a, b]), lambda a, b: torch.hstack([a, b]),
         ((3, 2), (3, 4))),
    Case("hstack_1d", lambda a, b: rg.hstack([a, b]), lambda a, b: torch.hstack([a, b]),
         ((3,), (2,))),
    Case("vstack_1d", lambda a, b: rg.vstack([a, b]), lambda a, b: torch.vstack([a, b]),
         ((3,), (2, 3))),
    # ---- pad modes (x squared after the pad: the second-order graph then goes through
    # the pad's adjoint and its adjoint, the pad again)
    Case("pad_reflect", lambda a: rg.pad(a, ((1, 2), (2, 1)), mode="reflect") ** 2,
         lambda a: F.pad(a[None], (2, 1, 1, 2), mode="reflect")[0] ** 2, ((3, 4),)),
    Case("pad_replicate", lambda a: rg.pad(a, ((0, 0), (1, 2), (3, 0)), mode="replicate") ** 2,
         lambda a: F.pad(a, (3, 0, 1, 2), mode="replicate") ** 2, ((2, 3, 4),)),
    Case("pad_circular", lambda a: rg.pad(a, ((0, 0), (2, 3), (1, 4)), mode="circular") ** 2,
         lambda a: F.pad(a[None], (1, 4, 2, 3), mode="circular")[0] ** 2, ((2, 3, 4),)),
    # (borders longer than the axis: NumPy's repeated reflection; PyTorch refuses them)
    Case("pad_reflect_long", lambda a: rg.pad(a, (5, 7), mode="reflect") ** 2, None, ((3,),)),
    Case("pad_wrap_long", lambda a: rg.pad(a, ((4, 9),), mode="wrap") * a[0], None, ((3,),)),
    Case("F_pad", lambda a: rg.nn.functional.pad(a, (1, 2, 0, 1), mode="reflect") * 1.5,
         lambda a: F.pad(a, (1, 2, 0, 1), mode="reflect") * 1.5, ((2, 3, 4),)),
    # ---- norm (vector, then matrix; kinked ords off their kinks)
    Case("norm", rg.norm, lambda a: LA.norm(a), ((3, 4),)),
    Case("norm_axis", lambda a: rg.norm(a, axis=-1, keepdims=True),
         lambda a: LA.vector_norm(a, dim=-1, keepdim=True), ((3, 4),)),
    Case("norm_1", lambda a: rg.norm(a, 1), lambda a: LA.vector_norm(a, 1), ((5,),),
         domain="away0"),
    Case("norm_inf", lambda a: rg.norm(a, INF, axis=0), lambda a: LA.vector_norm(a, INF, dim=0),
         ((4, 3),), domain="distinct"),
    Case("norm_neg_inf", lambda a: rg.norm(a, -INF), lambda a: LA.vector_norm(a, -INF),
         ((5,),), domain="distinct"),
    Case("norm_p3", lambda a: rg.norm(a, 3, axis=1), lambda a: LA.vector_norm(a, 3, dim=1),
         ((3, 4),), domain="away0"),
    Case("norm_fro", lambda a: rg.norm(a, "fro", axis=(0, 2)),
         lambda a: LA.matrix_norm(a, "fro", dim=(0, 2)), ((2, 3, 4),)),
    Case("norm_matrix_1", lambda a: rg.norm(a, 1), lambda a: LA.matrix_norm(a, 1), ((3, 4),),
         domain="distinct"),
    Case("norm_matrix_inf", lambda a: rg.norm(a, -INF, axis=(2, 1), keepdims=True),
         lambda a: LA.matrix_norm(a, -INF, dim=(2, 1), keepdim=True), ((2, 3, 4),),
         domain="distinct"),
    Case("linalg_norm", lambda a: rg.linalg.norm(a, 2, axis=0), lambda a: LA.vector_norm(a, 2, dim=0),
         ((3, 4),)),
    # ---- inv, solve, det, slogdet (a random matrix + n·I: well conditioned)
    Case("inv", lambda a: rg.linalg.inv(shifted(a)), lambda a: LA.inv(tshifted(a)), ((2, 3, 3),)),
    Case("solve", lambda a, b: rg.linalg.solve(shifted(a), b),
         lambda a, b: LA.solve(tshifted(a), b), ((2, 3, 3), (3, 2))),
    Case("solve_vector", lambda a, b: rg.linalg.solve(shifted(a), b),
         lambda a, b: LA.solve(tshifted(a), b), ((2, 3, 3), (3,))),
    Case("det", lambda a: rg.linalg.det(shifted(a)), lambda a: LA.det(tshifted(a)), ((2, 3, 3),)),
    # (-3·I: a negative determinant; sign * logabsdet, the sign without a gradient)
    Case("slogdet", lambda a: signed_logabsdet(*rg.linalg.slogdet(shifted(a, -3.0))),
         lambda a: signed_logabsdet(*LA.slogdet(tshifted(a, -3.0))), ((2, 3, 3),)),
]

# ops without a gradient, checked forward-only against NumPy: name -> (ours, numpy's)
NONDIFF: dict = {
    # (the (3, 4) inputs as three 2 x 2 matrices)
    "det_sign": (lambda a: rg.linalg.slogdet(a.reshape(3, 2, 2))[0],
                 lambda a: np.linalg.slogdet(a.reshape(3, 2, 2))[0]),
    "any": (lambda a: rg.any(a > 2, axis=1), lambda a: np.any(a > 2, axis=1)),
    "all": (lambda a: rg.all(a > -4, axis=0, keepdims=True),
            lambda a: np.all(a > -4, axis=0, keepdims=True)),
    "isclose": (lambda a, b: rg.isclose(a, b, rtol=0.5, atol=0.1),
                lambda a, b: np.isclose(a, b, rtol=0.5, atol=0.1)),
}
