"""MultiheadAttention and TransformerEncoderLayer, PyTorch's, from library parts.

Copying weights from PyTorch: ``in_proj_weight`` (3E, E), ``in_proj_bias`` (3E,) and,
with kdim/vdim, ``q_proj_weight`` (E, E), ``k_proj_weight`` (E, kdim), ``v_proj_weight``
(E, vdim) are raw Parameters in PyTorch's own layout (rows = output units: q = x·Wqᵀ), so
they copy as they are. ``out_proj`` is a retrograd Linear, which stores its weight
(in, out) -- PyTorch's transposed -- so ``out_proj.weight`` takes ``torch_out_proj.weight.T``
(as every Linear does; ``linear1`` / ``linear2`` of the encoder layer too).
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..errors import RetrogradError, ShapeError
from . import init as initializers
from .attention import attention_weights
from .layers import Dropout, Linear
from .module import Module, Parameter
from .normalization import LayerNorm

__all__ = ["MultiheadAttention", "TransformerEncoderLayer"]


class MultiheadAttention(Module):
    """Multi-head attention (Vaswani et al., 2017) with PyTorch's parameters, masks and
    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False) -> (output, weights)``.

    Inputs are (L, N, E) -- or (N, L, E) with ``batch_first`` -- or unbatched (L, E).
    Masks follow MultiheadAttention's convention (not scaled_dot_product_attention's):
    a boolean True marks what is *left out*; a float mask is added to the scores.
    ``key_padding_mask`` is (N, S); ``attn_mask`` (L, S) or (N·num_heads, L, S).
    ``weights`` are (N, L, S) averaged over heads, or (N, num_heads, L, S), or None
    when ``need_weights`` is False. See the module docstring for copying torch weights.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = False, kdim: int | None = None, vdim: int | None = None,
                 dtype=np.float32):
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim {embed_dim} is not divisible by "
                             f"num_heads {num_heads}")
        self.embed_dim, self.num_heads = int(embed_dim), int(num_heads)
        self.kdim, self.vdim = int(kdim or embed_dim), int(vdim or embed_dim)
        self.dropout, self.batch_first, self.head_dim = float(dropout), batch_first, embed_dim // num_heads
        E = self.embed_dim
        xavier = initializers.get("glorot")
        self.same_dim = self.kdim == E and self.vdim == E
        if self.same_dim:
            self.in_proj_weight = Parameter(xavier((3 * E, E), dtype=dtype))
        else:
            self.q_proj_weight = Parameter(xavier((E, E), dtype=dtype))
            self.k_proj_weight = Parameter(xavier((E, self.kdim), dtype=dtype))
            self.v_proj_weight = Parameter(xavier((E, self.vdim), dtype=dtype))
        self.in_proj_bias = Parameter(np.zeros(3 * E, dtype)) if bias else None
        self.out_proj = Linear(E, E, bias=bias, dtype=dtype)

    # ---- projections
    def _weights(self):
        E = self.embed_dim
        if self.same_dim:
            w = self.in_proj_weight
            return w[:E], w[E:2 * E], w[2 * E:]
        return self.q_proj_weight, self.k_proj_weight, self.v_proj_weight

    def _project(self, query, key, value):
        E, b = self.embed_dim, self.in_proj_bias
        if self.same_dim and query is key and key is value:     # self-attention: one matmul
            qkv = ops.matmul(query, ops.transpose(self.in_proj_weight))
            qkv = qkv if b is None else qkv + b
            return qkv[..., :E], qkv[..., E:2 * E], qkv[..., 2 * E:]
        out = []
        for i, (x, w) in enumerate(zip((query, key, value), self._weights())):
            y = ops.matmul(x, ops.transpose(w))
            out.append(y if b is None else y + b[i * E:(i + 1) * E])
        return out

    def _heads(self, x):
        """(N, L, E) -> (N, H, L, head_dim)."""
        n, l, _ = x.shape
        return ops.transpose(ops.reshape(x, (n, l, self.num_heads, self.head_dim)), (0, 2, 1, 3))

    # ---- masks
    def _mask(self, attn_mask, key_padding_mask, n, L, S):
        """The masks, each of a shape that broadcasts to the scores' (N, H, L, S)."""
        masks = []
        if attn_mask is not None:
            shape = tuple(attn_mask.shape)
            if shape == (L, S):
                masks.append(attn_mask)
            elif shape == (n * self.num_heads, L, S):
                masks.append(ops.reshape(attn_mask, (n, self.num_heads, L, S)))
            else:
                raise ShapeError(f"MultiheadAttention: attn_mask has shape {shape}, expected "
                                 f"({L}, {S}) or ({n * self.num_heads}, {L}, {S})")
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (n, S):
                raise ShapeError(f"MultiheadAttention: key_padding_mask has shape "
                                 f"{tuple(key_padding_mask.shape)}, expected ({n}, {S})")
            masks.append(ops.reshape(key_padding_mask, (n, 1, 1, S)))
        return masks

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        if is_causal and attn_mask is None:     # PyTorch: is_causal is a hint about attn_mask
            raise RetrogradError("MultiheadAttention: is_causal needs attn_mask (it is a hint "
                                 "that attn_mask is the causal mask)")
        unbatched = query.ndim == 2
        if unbatched:
            query, key, value = (ops.expand_dims(t, 0) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = ops.expand_dims(key_padding_mask, 0)
        elif not self.batch_first:              # (L, N, E) -> (N, L, E): views
            query, key, value = (ops.swapaxes(t, 0, 1) for t in (query, key, value))
        self._check(query, key, value)
        n, L, S = query.shape[0], query.shape[1], key.shape[1]
        q, k, v = (self._heads(t) for t in self._project(query, key, value))
        masks = self._mask(attn_mask, key_padding_mask, n, L, S)
        w = attention_weights(q, k, masks, allowed=False,
                              dropout_p=self.dropout if self.training else 0.0)
        out = ops.reshape(ops.transpose(ops.matmul(w, v), (0, 2, 1, 3)), (n, L, self.embed_dim))
        out = self.out_proj(out)
        if unbatched:
            out = out[0]
        elif not self.batch_first:
            out = ops.swapaxes(out, 0, 1)
        if not need_weights:
            return out, None
        weights = ops.mean(w, axis=1) if average_attn_weights else w
        return out, weights[0] if unbatched else weights

    def _check(self, query, key, value):
        E = self.embed_dim
        ok = (query.ndim == key.ndim == value.ndim == 3 and query.shape[-1] == E
              and key.shape[-1] == self.kdim and value.shape[-1] == self.vdim
              and key.shape[:2] == value.shape[:2] and query.shape[0] == key.shape[0])
        if not ok:
            raise ShapeError(f"MultiheadAttention({E}, {self.num_heads}): query, key and value "
                             f"have shapes {tuple(query.shape)}, {tuple(key.shape)}, "
                             f"{tuple(value.shape)} (as batch-first), expected (N, L, {E}), "
                             f"(N, S, {self.kdim}), (N, S, {self.vdim})")

    def extra_repr(self):
        return (f"{self.embed_dim}, {self.num_heads}, dropout={self.dropout}, "
                f"batch_first={self.batch_first}")


_ACTIVATIONS = {"relu": ops.relu, "gelu": ops.gelu}


class TransformerEncoderLayer(Module):
    """PyTorch's TransformerEncoderLayer: self-attention and a feed-forward block, each
    with dropout, a residual connection and LayerNorm (after, or before with
    ``norm_first``). ``forward(src, src_mask=None, src_key_padding_mask=None)``; the masks
    as MultiheadAttention's. Parameter names are PyTorch's (self_attn.*, linear1, linear2,
    norm1, norm2); Linear weights are stored transposed (see the module docstring)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation="relu", layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True,
                 dtype=np.float32):
        if isinstance(activation, str) and activation not in _ACTIVATIONS:
            raise ValueError(f"TransformerEncoderLayer: activation must be 'relu', 'gelu' or "
                             f"a function, got {activation!r}")
        self.self_attn = MultiheadAttention(d_model, nhead, dropout, bias, batch_first,
                                            dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, init="he", dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1, self.dropout2 = Dropout(dropout), Dropout(dropout)
        self.activation = _ACTIVATIONS.get(activation, activation)

    def _sa(self, x, mask, padding):
        return self.dropout1(self.self_attn(x, x, x, key_padding_mask=padding, attn_mask=mask,
                                            need_weights=False)[0])

    def _ff(self, x):
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        if is_causal and src_mask is None:      # as MultiheadAttention: a hint about src_mask
            raise RetrogradError("TransformerEncoderLayer: is_causal needs src_mask (it is a "
                                 "hint that src_mask is the causal mask)")
        x = src
        if self.norm_first:
            x = x + self._sa(self.norm1(x), src_mask, src_key_padding_mask)
            return x + self._ff(self.norm2(x))
        x = self.norm1(x + self._sa(x, src_mask, src_key_padding_mask))
        return self.norm2(x + self._ff(x))
