"""Scaled dot-product attention (Vaswani et al., 2017), as PyTorch's functional form.

A composite of matmul, where/add, softmax and matmul: differentiable to any order
through those ops' own rules. MultiheadAttention (nn/transformer.py) builds on it.
"""
from __future__ import annotations

import math

import numpy as np

from .. import arrays, ops
from ..errors import RetrogradError, ShapeError
from ..tensor import Tensor

__all__ = ["scaled_dot_product_attention", "attention_weights"]


def _dtype(m):
    """A mask's dtype: a tensor's, an array's of any namespace, or NumPy's for a list."""
    return m.dtype if isinstance(m, Tensor) or arrays.is_foreign(m) else np.asarray(m).dtype


def masked_scores(scores, mask, allowed):
    """Attention scores with ``mask`` applied: a boolean mask excludes entries by -inf
    (``allowed``: True marks the entries that take part, as scaled_dot_product_attention;
    else True marks those left out, as MultiheadAttention's masks), a float mask is added.
    The mask is an op input, so a compiled function takes a new one at each call."""
    dtype = _dtype(mask)
    k = arrays.kind(dtype)
    if k == "b":
        return ops.where(mask, scores, -math.inf) if allowed else ops.where(mask, -math.inf, scores)
    if k != "f":
        raise RetrogradError(f"attention: a mask must be boolean or float, got dtype {dtype}")
    same = arrays.numpy_dtype(dtype) == arrays.numpy_dtype(scores.dtype)
    return scores + (mask if same else ops.astype(mask, scores.dtype))


def attention_weights(q, k, masks=(), allowed=True, scale=None, dropout_p=0.0, generator=None):
    """softmax(q·kᵀ·scale + masks) over the keys (then dropped out with ``dropout_p``);
    ``masks``: a sequence, each applied by masked_scores."""
    if q.ndim < 2 or k.ndim < 2 or q.shape[-1] != k.shape[-1]:
        raise ShapeError(f"scaled_dot_product_attention: query {tuple(q.shape)} and key "
                         f"{tuple(k.shape)} must be (..., L, E) and (..., S, E)")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    scores = ops.matmul(q * scale, ops.swapaxes(k, -1, -2))
    for m in masks:
        scores = masked_scores(scores, m, allowed)
    w = ops.softmax(scores, axis=-1)
    if dropout_p:
        if not 0 < dropout_p < 1:
            raise ValueError(f"attention: dropout_p must be in [0, 1), got {dropout_p}")
        w = w * ops.bernoulli_mask(w, dropout_p, generator)
    return w


def _causal(L, S):
    """PyTorch's causal mask: query i sees keys 0..i. A NumPy constant (the standard has
    no tril): ops on arrays of another namespace move it to their device."""
    return np.tril(np.ones((L, S), dtype=bool))


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, *, mask=None, generator=None):
    """softmax(Q·Kᵀ·scale + mask)·V for Q (..., L, E), K (..., S, E), V (..., S, Ev), with
    PyTorch's semantics: a boolean ``attn_mask`` (or ``mask``) marks by True the entries
    that take part, a float mask is added to the scores, ``is_causal`` lets query i see
    keys 0..i, ``scale`` defaults to 1/sqrt(E), and ``dropout_p`` drops attention weights
    (always, as F.scaled_dot_product_attention: pass 0.0 in eval). A row whose every
    entry is masked gives NaN, as PyTorch's math path does."""
    if mask is not None:
        if attn_mask is not None:
            raise ValueError("scaled_dot_product_attention: pass attn_mask or mask, not both")
        attn_mask = mask
    if is_causal:
        if attn_mask is not None:   # PyTorch's rule too
            raise ValueError("scaled_dot_product_attention: is_causal and attn_mask are "
                             "exclusive")
        attn_mask = _causal(query.shape[-2], key.shape[-2])
    if value.shape[-2] != key.shape[-2]:
        raise ShapeError(f"scaled_dot_product_attention: key {tuple(key.shape)} and value "
                         f"{tuple(value.shape)} must have the same number of entries S")
    masks = () if attn_mask is None else (attn_mask,)
    w = attention_weights(query, key, masks, True, scale, dropout_p, generator)
    return ops.matmul(w, value)
