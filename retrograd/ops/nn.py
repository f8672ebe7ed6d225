"""Embedding lookup and its adjoint, the scatter-add of rows.

The ids are an op *input* (data, no gradient), not a static parameter: a compiled
step takes new token ids at every call. ``embedding`` and ``embedding_vjp`` are each
other's VJPs, so the pair is differentiable to any order.
"""
from __future__ import annotations

import numpy as np

from ..arrays import device, namespace, numpy_dtype, reduce_at, to_numpy
from ..errors import RetrogradError
from .base import apply, defop


def _check_ids(ids, num, who):
    # at run time, as class_labels: compiled code sees the ids only when it runs
    if type(ids) is not np.ndarray:       # another namespace: min and max where ids live
        xp = namespace(ids)
        if ids.size and (int(xp.min(ids)) < 0 or int(xp.max(ids)) >= num):
            _check_ids(to_numpy(ids), num, who)
        return
    if ids.size and (ids.min() < 0 or ids.max() >= num):
        bad = ids[(ids < 0) | (ids >= num)].flat[0]
        raise RetrogradError(f"{who}: id {bad} is out of range for {num} embeddings "
                             f"(ids must be in 0..{num - 1})")


def _embedding_forward(weight, ids, who, padding_idx):
    _check_ids(ids, weight.shape[0], who)
    return np.take(weight, ids, axis=0)


def _embedding_vjp_forward(g, ids, num, padding_idx):
    d = g.shape[-1]
    out = np.zeros((num, d), g.dtype)
    flat = ids.reshape(-1)
    if flat.size:       # rows of equal ids summed as runs of the sorted ids: ~2x np.add.at
        order = np.argsort(flat, kind="stable")
        sorted_ids = flat[order]
        starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
        out[sorted_ids[starts]] = np.add.reduceat(g.reshape(-1, d)[order], starts, axis=0)
    if padding_idx is not None:
        out[padding_idx] = 0             # the padding row is not trained (PyTorch)
    return out


def _embedding_in(xp, weight, ids, who, padding_idx):
    _check_ids(ids, weight.shape[0], who)
    rows = xp.take(weight, xp.reshape(ids, (-1,)), axis=0)
    return xp.reshape(rows, tuple(ids.shape) + tuple(weight.shape[1:]))


def _embedding_vjp_in(xp, g, ids, num, padding_idx):
    d = g.shape[-1]
    out = reduce_at(xp, num, xp.reshape(ids, (-1,)), xp.reshape(g, (-1, d)))
    if padding_idx is None:
        return out
    pad = xp.arange(num, device=device(g))[:, None] == padding_idx
    return xp.where(pad, xp.zeros_like(out), out)


def _weight_rule(g, out, weight, ids, who, padding_idx):
    return embedding_vjp(g, ids, weight.shape[0], padding_idx)


def _g_rule(u, out, g, ids, num, padding_idx):
    # the adjoint of "scatter-add, then zero the padding row" is "zero it, then gather"
    if padding_idx is not None:
        keep = np.ones((num, 1), numpy_dtype(u.dtype))
        keep[padding_idx] = 0
        u = u * keep
    return apply(_embedding, u, ids, who="embedding_vjp", padding_idx=padding_idx)


_embedding = defop("embedding", _embedding_forward, (_weight_rule, None), reads=((1,), ()),
                   fresh=True, doc="Rows of ``weight`` picked by integer ``ids``: weight[ids].",
                   xp_forward=_embedding_in)
_embedding_vjp = defop("embedding_vjp", _embedding_vjp_forward, (_g_rule, None),
                       reads=((1,), ()), fresh=True,
                       doc="The rows of ``g`` added into a (num, D) zero array at ``ids``.",
                       xp_forward=_embedding_vjp_in)


def embedding(weight, ids, padding_idx=None, who="embedding"):
    """``weight[ids]`` for a (num, D) weight and integer ids of any shape; the gradient
    is the scatter-add of the output gradient's rows (none to row ``padding_idx``).
    ``who`` names the caller in the error for an id out of range."""
    return apply(_embedding, weight, ids, who=who, padding_idx=padding_idx)


def embedding_vjp(g, ids, num, padding_idx=None):
    """The (num, D) array of ``g``'s rows (shape ids.shape + (D,)) added up at ``ids``,
    row ``padding_idx`` zero: the gradient of ``embedding``'s weight."""
    return apply(_embedding_vjp, g, ids, num=int(num), padding_idx=padding_idx)
