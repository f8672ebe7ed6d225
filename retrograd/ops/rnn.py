"""The LSTM recurrence over a whole sequence as one op (``lstm_scan``).

Composed of per-step ops, an LSTM's backward is dozens of small ops per step, and
the gradient of W_hh arrives as one (H, 4H) product and sum per step. As one record
the forward is a plain NumPy loop, and the VJP -- written in retrograd ops, so it is
differentiable again -- is the textbook BPTT recursion: everything that does not
depend on the recursion (the gate derivatives, the products the deltas are scaled by)
is computed for all steps at once, the loop per step is five small ops, and
∂L/∂W_hh = Σ_t h_{t-1}ᵀ δ_t is a single matmul over all steps (as cuDNN and PyTorch).
"""
from __future__ import annotations

import numpy as np

from ..arrays import namespace
from ..errors import ShapeError
from .base import apply, defop
from .elementwise import _sigmoid, tanh
from .linalg import matmul
from .shape import concatenate, expand_dims, reshape, stack, transpose


def _lstm_scan(xw, h0, c0, w_hh, reverse, out=None):
    """Per step (in time order, backwards if ``reverse``): a = xw_t + h @ W_hh; gates
    i, f, g, o = σ, σ, tanh, σ of a's four blocks (PyTorch's order); c = f·c + i·g;
    h = o·tanh(c). Returns (L, N, 6H): per step [h, c, i, f, g, o]. Every step writes
    into ``out`` (in compiled code a planned buffer) and two scratch buffers: no
    allocation in the loop."""
    if type(xw) is not np.ndarray:
        return _xp_lstm_scan(namespace(xw, h0, c0, w_hh), xw, h0, c0, w_hh, reverse)
    L, N, G = xw.shape
    H = G // 4
    dt = np.result_type(xw, h0, c0, w_hh)
    if out is None:
        out = np.empty((L, N, 6 * H), dt)
    a, tmp = np.empty((N, G), dt), np.empty((N, H), dt)
    h, c = h0, c0
    # σ(a) = 1 / (1 + e^-a): e^-a overflowing to inf gives 0, as it should (no warning)
    with np.errstate(over="ignore"):
        for t in (range(L - 1, -1, -1) if reverse else range(L)):
            np.matmul(h, w_hh, out=a)
            a += xw[t]
            y = out[t]
            s = y[:, 2 * H:]
            np.negative(a, out=s)
            np.exp(s, out=s)
            s += 1
            np.reciprocal(s, out=s)
            i, f, g, o = (y[:, k * H:(k + 1) * H] for k in range(2, 6))
            np.tanh(a[:, 2 * H:3 * H], out=g)
            c_new = np.multiply(f, c, out=y[:, H:2 * H])
            c_new += np.multiply(i, g, out=tmp)
            h = np.multiply(o, np.tanh(c_new, out=tmp), out=y[:, :H])
            c = c_new
    return out


def _xp_lstm_scan(xp, xw, h0, c0, w_hh, reverse):
    """_lstm_scan in the standard's words (another namespace): the same step, its
    [h, c, i, f, g, o] concatenated, the steps stacked."""
    L, H = xw.shape[0], xw.shape[2] // 4
    h, c = h0, c0
    steps = [None] * L
    for t in (range(L - 1, -1, -1) if reverse else range(L)):
        a = xp.matmul(h, w_hh) + xw[t, ...]
        s = 1 / (xp.exp(-a) + 1)
        i, f, o = s[:, :H], s[:, H:2 * H], s[:, 3 * H:]
        g = xp.tanh(a[:, 2 * H:3 * H])
        c = f * c + i * g
        h = o * xp.tanh(c)
        steps[t] = xp.concat([h, c, i, f, g, o], axis=-1)
    return xp.stack(steps, axis=0)


def _lstm_scan_vjp(g, out, xw, h0, c0, w_hh, reverse):
    """BPTT. With δ_t = ∂L/∂a_t (the pre-activations) and 'next' the step run after t:
    dh_t = ∂L/∂h_t + δ_next W_hhᵀ;  dc_t = ∂L/∂c_t + dh_t·o·(1 − tanh²c_t) + dc_next·f_next;
    δ_t = [dc_t·g, dc_t·c_prev, dc_t·i, dh_t·tanh c_t] ⊙ gate' (+ the cotangent of the
    gates themselves, which reaches them only in higher-order derivatives)."""
    L = out.shape[0]
    H = out.shape[-1] // 6
    cs, gates = out[..., H:2 * H], out[..., 2 * H:]
    i, f, gg, o = (out[..., k * H:(k + 1) * H] for k in range(2, 6))
    steps = list(range(L - 1, -1, -1) if reverse else range(L))
    # states before each step, in time order: c0 before the first step run
    if reverse:
        h_prev = concatenate([out[1:, :, :H], expand_dims(h0, 0)], axis=0)
        c_prev = concatenate([cs[1:], expand_dims(c0, 0)], axis=0)
    else:
        h_prev = concatenate([expand_dims(h0, 0), out[:-1, :, :H]], axis=0)
        c_prev = concatenate([expand_dims(c0, 0), cs[:-1]], axis=0)
    tc = tanh(cs)
    sig = gates * (1 - gates)
    deriv = concatenate([sig[..., :2 * H], 1 - gg * gg, sig[..., 3 * H:]], axis=-1)
    # δ_t = [dc_t, dc_t, dc_t, dh_t] ⊙ scale_t + direct_t
    scale = concatenate([gg, c_prev, i, tc], axis=-1) * deriv
    direct = g[..., 2 * H:] * deriv
    keep = o * (1 - tc * tc)
    w_t = transpose(w_hh)
    deltas = [None] * L
    dh = dc = None
    for k in range(L - 1, -1, -1):          # the steps in the reverse of the order they ran
        t = steps[k]
        dh = g[t, :, :H] if dh is None else g[t, :, :H] + matmul(deltas[steps[k + 1]], w_t)
        dc_t = g[t, :, H:2 * H] + dh * keep[t]
        dc = dc_t if dc is None else dc_t + dc * f[steps[k + 1]]
        deltas[t] = concatenate([dc, dc, dc, dh], axis=-1) * scale[t] + direct[t]
    first = steps[0]
    dxw = stack(deltas, axis=0)
    dh0 = matmul(deltas[first], w_t)
    dc0 = dc * f[first]
    n = out.shape[0] * out.shape[1]
    dw_hh = matmul(transpose(reshape(h_prev, (n, H))), reshape(dxw, (n, 4 * H)))
    return [dxw, dh0, dc0, dw_hh]


_scan = defop("lstm_scan", _lstm_scan, _lstm_scan_vjp, variadic=True, out=True,
              reads=((1, 2, 3, "out"),), args=("xw", "h0", "c0", "w_hh"),
              doc="The LSTM recurrence over a sequence (see lstm_scan).")


def lstm_scan(xw, h0, c0, w_hh, reverse=False):
    """The LSTM recurrence over a sequence, given the input projections for every step.

    xw: (L, N, 4H), x_t @ W_ih + b_ih + b_hh for every step t; h0, c0: (N, H);
    w_hh: (H, 4H), stored (in, out). Gates in PyTorch's order i, f, g, o. ``reverse``
    runs the steps from t = L-1 down to 0 (a bidirectional layer's backward direction).
    Returns (L, N, 6H): per step t the concatenation [h_t, c_t, i_t, f_t, g_t, o_t]."""
    shapes = [tuple(getattr(v, "shape", np.shape(v))) for v in (xw, h0, c0, w_hh)]
    (xs, hs, cs, ws) = shapes
    if (len(xs) != 3 or xs[-1] % 4 or len(hs) != 2 or hs != cs or ws != (hs[1], xs[-1])
            or hs[0] != xs[1] or 4 * hs[1] != xs[-1] or xs[0] < 1):
        raise ShapeError(f"lstm_scan: expected xw (L, N, 4H), h0 and c0 (N, H), w_hh (H, 4H); "
                         f"got shapes {xs}, {hs}, {cs}, {ws}")
    return apply(_scan, xw, h0, c0, w_hh, reverse=bool(reverse))
