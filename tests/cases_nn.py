"""Op cases: normalisation, embedding, attention (joined into tests/cases.py's table)."""
from __future__ import annotations

import numpy as np

import retrograd as rg

from opcase import Case
from torch_oracle import torch   # None without it: those tests are skipped

CASES: list = [
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
