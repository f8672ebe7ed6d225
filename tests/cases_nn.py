"""Op cases: normalisation, embedding, attention (joined into tests/cases.py's table)."""
from __future__ import annotations

import numpy as np

import retrograd as rg
from retrograd.ops import rnn as ops_rnn
from retrograd.ops.base import apply as rg_apply

from opcase import Case
from torch_oracle import torch   # None without it: those tests are skipped

F = rg.nn.functional
TF = torch.nn.functional if torch is not None else None

IDS = np.array([[2, 0, 2], [4, 2, 1]])          # repeated ids: the gradient accumulates
SDPA_MASK = np.array([[True, False, True, True, False], [True, True, False, True, True],
                      [False, True, True, False, True]])
FLOAT_MASK = np.linspace(-1.0, 1.0, 15).reshape(3, 5)


def _t(a):
    return torch.tensor(a)


def _bn_eval_torch(x, rm, rv, w, b):
    # PyTorch's batch_norm has no gradient for the running statistics: its formula
    shape = (1, -1, 1)
    return (x - rm.reshape(shape)) / torch.sqrt(rv.reshape(shape) * rv.reshape(shape) + 0.5
                                                + 1e-5) * w.reshape(shape) + b.reshape(shape)


def _torch_causal_attention(q, k, v):
    # PyTorch's causal kernel (flash attention on CPU) has no second derivative: the math
    s = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
    return torch.softmax(s.masked_fill(~causal, float("-inf")), -1) @ v


CASES: list = [
    # ---- normalisation (composites: their gradients are those of mean, rsqrt, ...)
    Case("batch_norm_train", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
         lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True), ((4, 3, 5), (3,), (3,))),
    Case("batch_norm_2d_train", lambda x: F.batch_norm(x, None, None, training=True, eps=1e-3),
         lambda x: TF.batch_norm(x, None, None, training=True, eps=1e-3), ((3, 2, 2, 3),)),
    Case("batch_norm_eval", lambda x, rm, rv, w, b: F.batch_norm(x, rm, rv * rv + 0.5, w, b),
         _bn_eval_torch, ((4, 3, 2), (3,), (3,), (3,), (3,))),
    Case("layer_norm", lambda x, w, b: F.layer_norm(x, (4, 5), w, b),
         lambda x, w, b: TF.layer_norm(x, (4, 5), w, b), ((3, 4, 5), (4, 5), (4, 5))),
    Case("layer_norm_plain", lambda x: F.layer_norm(x, 6, eps=1e-3),
         lambda x: TF.layer_norm(x, (6,), eps=1e-3), ((2, 6),)),
    Case("group_norm", lambda x, w, b: F.group_norm(x, 3, w, b),
         lambda x, w, b: TF.group_norm(x, 3, w, b), ((2, 6, 3), (6,), (6,))),
    Case("group_norm_2d", lambda x: F.group_norm(x, 2),
         lambda x: TF.group_norm(x, 2), ((2, 4, 2, 2),)),
    # ---- embedding: ids are data (an op input), repeated ones accumulate
    Case("embedding", lambda w: F.embedding(IDS, w), lambda w: TF.embedding(_t(IDS), w),
         ((5, 3),)),
    # (padding_idx is not here: its row's zero gradient is by definition, not the derivative
    # finite differences see; tests/test_norm_attention.py checks it against PyTorch)
    Case("embedding_vjp", lambda g: rg.ops.nn.embedding_vjp(g, IDS, 5),
         lambda g: torch.zeros(5, 3, dtype=g.dtype).index_add(0, _t(IDS).reshape(-1),
                                                              g.reshape(-1, 3)), ((2, 3, 3),)),
    Case("embedding_vjp_padding", lambda g: rg.ops.nn.embedding_vjp(g, IDS, 5, padding_idx=2),
         lambda g: torch.zeros(5, 3, dtype=g.dtype).index_add(
             0, _t(IDS).reshape(-1), g.reshape(-1, 3) * (_t(IDS) != 2).reshape(-1, 1)),
         ((2, 3, 3),)),
    # ---- attention
    Case("sdpa", F.scaled_dot_product_attention, TF.scaled_dot_product_attention if TF else None,
         ((2, 3, 4), (2, 5, 4), (2, 5, 3))),
    Case("sdpa_bool_mask", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, SDPA_MASK),
         lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, _t(SDPA_MASK)),
         ((2, 3, 4), (2, 5, 4), (2, 5, 2))),
    Case("sdpa_float_mask_scale",
         lambda q, k, v: F.scaled_dot_product_attention(q, k, v, mask=FLOAT_MASK, scale=0.3),
         lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, _t(FLOAT_MASK), scale=0.3),
         ((3, 4), (5, 4), (5, 2))),
    Case("sdpa_causal", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
         lambda q, k, v: _torch_causal_attention(q, k, v),
         ((1, 2, 4, 3), (1, 2, 4, 3), (1, 2, 4, 3))),
]

# ops without a gradient, checked forward-only against NumPy: name -> (ours, numpy's)
NONDIFF: dict = {
}


# ---- recurrent (retrograd/ops/rnn.py; the layers are tested in tests/test_rnn.py)

def _torch_lstm_scan(xw, h0, c0, w, reverse=False):
    """PyTorch's LSTM recurrence, written out: per step [h, c, i, f, g, o]."""
    H, L = h0.shape[-1], xw.shape[0]
    h, c, outs = h0, c0, [None] * L
    for t in (reversed(range(L)) if reverse else range(L)):
        a = xw[t] + h @ w
        i, f, o = (torch.sigmoid(a[:, k * H:(k + 1) * H]) for k in (0, 1, 3))
        g = torch.tanh(a[:, 2 * H:3 * H])
        c = f * c + i * g
        h = o * torch.tanh(c)
        outs[t] = torch.cat([h, c, i, f, g, o], -1)
    return torch.stack(outs)


CASES += [
    Case("lstm_scan", lambda xw, h0, c0, w: rg.lstm_scan(xw, h0, c0, w), _torch_lstm_scan,
         ((3, 2, 8), (2, 2), (2, 2), (2, 8))),
    Case("lstm_scan_reverse", lambda xw, h0, c0, w: rg.lstm_scan(xw, h0, c0, w, reverse=True),
         lambda *a: _torch_lstm_scan(*a, reverse=True), ((4, 1, 4), (1, 1), (1, 1), (1, 4))),
]

# lstm_scan's BPTT recursion and its transpose (ops/rnn.py), each the other's VJP in x:
# checked directly (finite differences, first and second order) with arbitrary states
# (the coefficients are functions of them), both directions, lstm_bptt gated or not;
# inputs x (a for the adjoint), states, c0, w_hh
_BPTT_SHAPES = ((3, 2, 12), (3, 2, 12), (2, 2), (2, 8))
CASES += [
    Case(f"lstm_bptt{'_gated' if gated else ''}{'_reverse' if rev else ''}",
         (lambda gated, rev: lambda *a: rg_apply(ops_rnn._bptt, *a, reverse=rev, gated=gated))(
             gated, rev), None, _BPTT_SHAPES)
    for gated in (False, True) for rev in (False, True)
] + [
    Case(f"lstm_bptt_adjoint{'_reverse' if rev else ''}",
         (lambda rev: lambda *a: rg_apply(ops_rnn._bptt_adjoint, *a, reverse=rev))(rev), None,
         _BPTT_SHAPES)
    for rev in (False, True)
]
