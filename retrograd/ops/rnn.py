"""The LSTM recurrence over a whole sequence as one op (``lstm_scan``).

Composed of per-step ops, an LSTM's backward is dozens of small ops per step, and
the gradient of W_hh arrives as one (H, 4H) product and sum per step. As one record
the forward is a plain NumPy loop, and the VJP -- written in retrograd ops, so it is
differentiable again -- is the textbook BPTT recursion: everything that does not
depend on the recursion (the gate derivatives, the products the deltas are scaled by)
is computed for all steps at once, the recursion itself is one op (lstm_bptt, whose
VJP is its transpose lstm_bptt_adjoint and back), and ∂L/∂W_hh = Σ_t h_{t-1}ᵀ δ_t is a
single matmul over all steps (as cuDNN and PyTorch). Each of the three ops has a Numba
form (its ``lowering=``): the Numba backend runs its whole time loop as one njit call.
"""
from __future__ import annotations

import numpy as np

from ..arrays import namespace, numpy_dtype
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


def _run_order(L, reverse):
    return range(L - 1, -1, -1) if reverse else range(L)


def _zero_step(x):
    """One step of zeros shaped as x's steps (a NumPy constant: ops move it to x's device)."""
    return np.zeros((1,) + tuple(x.shape[1:]), numpy_dtype(x.dtype))


def _next_run(x, reverse):
    """Entry t: x at the step run after t (0 for the step run last), along axis 0."""
    zero = _zero_step(x)
    return concatenate([zero, x[:-1]] if reverse else [x[1:], zero], axis=0)


def _prev_run(x, reverse):
    """Entry t: x at the step run before t (0 for the step run first), along axis 0."""
    zero = _zero_step(x)
    return concatenate([x[1:], zero] if reverse else [zero, x[:-1]], axis=0)


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
    gates themselves, which reaches them only in higher-order derivatives). Everything
    but the recursion is computed for all steps at once; the recursion is one op
    (lstm_bptt), and ∂L/∂W_hh = Σ_t h_{t-1}ᵀ δ_t one matmul over all steps."""
    L, N = out.shape[0], out.shape[1]
    H = out.shape[-1] // 6
    cs, gates = out[..., H:2 * H], out[..., 2 * H:]
    i, f, gg, o = (out[..., k * H:(k + 1) * H] for k in range(2, 6))
    # states before each step, in time order: h0, c0 before the first step run
    h0_, c0_ = expand_dims(h0, 0), expand_dims(c0, 0)
    h_prev = concatenate([out[1:, :, :H], h0_] if reverse else [h0_, out[:-1, :, :H]], axis=0)
    c_prev = concatenate([cs[1:], c0_] if reverse else [c0_, cs[:-1]], axis=0)
    tc = tanh(cs)
    sig = gates * (1 - gates)
    deriv = concatenate([sig[..., :2 * H], 1 - gg * gg, sig[..., 3 * H:]], axis=-1)
    # δ_t = [dc_t, dc_t, dc_t, dh_t] ⊙ scale_t + direct_t
    scale = concatenate([gg, c_prev, i, tc], axis=-1) * deriv
    keep = o * (1 - tc * tc)
    x = concatenate([g[..., 2 * H:] * deriv, g[..., :2 * H]], axis=-1)
    y = apply(_bptt, x, keep, f, scale, w_hh, reverse=reverse)
    dxw, dc = y[..., :4 * H], y[..., 5 * H:]
    first = L - 1 if reverse else 0
    dh0 = matmul(dxw[first], transpose(w_hh))
    dc0 = dc[first] * f[first]
    n = L * N
    dw_hh = matmul(transpose(reshape(h_prev, (n, H))), reshape(dxw, (n, 4 * H)))
    return [dxw, dh0, dc0, dw_hh]


# ---------------------------------------------------------------- the BPTT recursion
#
# lstm_bptt is the linear recursion of the deltas, with its coefficients (keep, f, scale,
# W_hh) computed beforehand; its input x and result y are per step [δ-part (4H) | h-part
# (H) | c-part (H)]. Per step, in the reverse of the order the scan ran ('next': the step
# run after t, its terms 0 for the step run last):
#     dh = x_h + δ_next W_hhᵀ;  dc = x_c + dh·keep + dc_next·f_next;
#     δ = [dc, dc, dc, dh] ⊙ scale + x_δ;          y_t = [δ, dh, dc].
# lstm_bptt_adjoint is its transpose in x (run in scan order): each one's VJP in x is the
# other, and both share one rule for the cotangents of the coefficients (_coefficients),
# so that every order of derivative is these two ops and elementwise ones.

def _bptt_blocks(v, t, N, H):
    """Step t of a (L, N, 6H) array as (N, 6, H) blocks: 0-3 δ (i, f, g, o), 4 h, 5 c."""
    return np.reshape(v[t], (N, 6, H))


def _lstm_bptt(x, keep, f, scale, w_hh, reverse, out=None):
    if type(x) is not np.ndarray:
        return _xp_lstm_bptt(namespace(x, keep, f, scale, w_hh), x, keep, f, scale, w_hh, reverse)
    L, N, S = x.shape
    H = S // 6
    dt = np.result_type(x, keep, f, scale, w_hh)
    if out is None:
        out = np.empty((L, N, S), dt)
    w_t, tmp = w_hh.T, np.empty((N, H), dt)
    nxt = None
    for t in _run_order(L, not reverse):
        y, xt = _bptt_blocks(out, t, N, H), _bptt_blocks(x, t, N, H)
        dh, dc = y[:, 4], y[:, 5]
        if nxt is None:
            dh[...] = xt[:, 4]
        else:
            np.matmul(out[nxt, :, :4 * H], w_t, out=dh)
            dh += xt[:, 4]
        np.multiply(dh, keep[t], out=dc)
        dc += xt[:, 5]
        if nxt is not None:
            dc += np.multiply(out[nxt, :, 5 * H:], f[nxt], out=tmp)
        s = np.reshape(scale[t], (N, 4, H))
        np.multiply(s[:, :3], dc[:, None], out=y[:, :3])
        np.multiply(s[:, 3], dh, out=y[:, 3])
        y[:, :4] += xt[:, :4]
        nxt = t
    return out


def _lstm_bptt_adjoint(x, keep, f, scale, w_hh, reverse, out=None):
    """The transpose of _lstm_bptt in x: per step, in the order the scan ran ('prev': the
    step run before t, its terms 0 for the step run first):
        a = x_δ + z_h,prev W_hh;  u = a ⊙ scale;
        z_c = x_c + u_i + u_f + u_g + z_c,prev·f;  z_h = x_h + u_o + z_c·keep;  z_t = [a, z_h, z_c]."""
    if type(x) is not np.ndarray:
        return _xp_lstm_bptt_adjoint(namespace(x, keep, f, scale, w_hh), x, keep, f, scale,
                                     w_hh, reverse)
    L, N, S = x.shape
    H = S // 6
    dt = np.result_type(x, keep, f, scale, w_hh)
    if out is None:
        out = np.empty((L, N, S), dt)
    u, tmp = np.empty((N, 4, H), dt), np.empty((N, H), dt)
    prev = None
    for t in _run_order(L, reverse):
        z, xt = _bptt_blocks(out, t, N, H), _bptt_blocks(x, t, N, H)
        a, zh, zc = z[:, :4], z[:, 4], z[:, 5]
        if prev is None:
            a[...] = xt[:, :4]
        else:
            np.matmul(out[prev, :, 4 * H:5 * H], w_hh, out=np.reshape(u, (N, 4 * H)))
            np.add(u, xt[:, :4], out=a)
        np.multiply(a, np.reshape(scale[t], (N, 4, H)), out=u)
        np.add(u[:, 0], u[:, 1], out=zc)
        zc += u[:, 2]
        zc += xt[:, 5]
        if prev is not None:
            zc += np.multiply(out[prev, :, 5 * H:], f[t], out=tmp)
        np.multiply(zc, keep[t], out=zh)
        zh += u[:, 3]
        zh += xt[:, 4]
        prev = t
    return out


def _xp_lstm_bptt(xp, x, keep, f, scale, w_hh, reverse):
    """_lstm_bptt in the standard's words (another namespace): the same recursion, each
    step's [δ, dh, dc] joined, the steps stacked (no writes into arrays)."""
    L, N, S = x.shape
    H = S // 6
    steps, nxt = [None] * L, None
    for t in _run_order(L, not reverse):
        xt = xp.reshape(x[t, ...], (N, 6, H))
        dh = xt[:, 4, :]
        if nxt is not None:
            dh = dh + xp.matmul(steps[nxt][:, :4 * H], xp.matrix_transpose(w_hh))
        dc = dh * keep[t, ...] + xt[:, 5, :]
        if nxt is not None:
            dc = dc + steps[nxt][:, 5 * H:] * f[nxt, ...]
        s = xp.reshape(scale[t, ...], (N, 4, H))
        d = xp.concat([s[:, :3, :] * dc[:, None, :], (s[:, 3, :] * dh)[:, None, :]], axis=1)
        d = d + xt[:, :4, :]
        steps[t] = xp.concat([xp.reshape(d, (N, 4 * H)), dh, dc], axis=-1)
        nxt = t
    return xp.stack(steps, axis=0)


def _xp_lstm_bptt_adjoint(xp, x, keep, f, scale, w_hh, reverse):
    """_lstm_bptt_adjoint in the standard's words (another namespace)."""
    L, N, S = x.shape
    H = S // 6
    steps, prev = [None] * L, None
    for t in _run_order(L, reverse):
        xt = xp.reshape(x[t, ...], (N, 6, H))
        a = xt[:, :4, :]
        if prev is not None:
            a = a + xp.reshape(xp.matmul(steps[prev][:, 4 * H:5 * H], w_hh), (N, 4, H))
        u = a * xp.reshape(scale[t, ...], (N, 4, H))
        zc = u[:, 0, :] + u[:, 1, :] + u[:, 2, :] + xt[:, 5, :]
        if prev is not None:
            zc = zc + steps[prev][:, 5 * H:] * f[t, ...]
        zh = zc * keep[t, ...] + u[:, 3, :] + xt[:, 4, :]
        steps[t] = xp.concat([xp.reshape(a, (N, 4 * H)), zh, zc], axis=-1)
        prev = t
    return xp.stack(steps, axis=0)


def _coefficients(y, z, reverse):
    """The cotangents of keep, f, scale, W_hh of lstm_bptt, from its states y and the
    adjoint's states z: d/dθ <z̄, Rᵀ(x̄; θ)> is d/dθ <R(z̄; θ), x̄>, so one rule serves both
    ops (y = R's result and z = Rᵀ of its cotangent, or y = R of Rᵀ's cotangent)."""
    L, N = y.shape[0], y.shape[1]
    H = y.shape[-1] // 6
    y_d, y_h, y_c = y[..., :4 * H], y[..., 4 * H:5 * H], y[..., 5 * H:]
    z_d, z_h, z_c = z[..., :4 * H], z[..., 4 * H:5 * H], z[..., 5 * H:]
    scale = z_d * concatenate([y_c, y_c, y_c, y_h], axis=-1)
    keep = z_c * y_h
    f = _prev_run(z_c, reverse) * y_c
    n = L * N
    w_hh = matmul(transpose(reshape(z_h, (n, H))), reshape(_next_run(y_d, reverse), (n, 4 * H)))
    return [keep, f, scale, w_hh]


def _lstm_bptt_vjp(g, out, x, keep, f, scale, w_hh, reverse):
    z = apply(_bptt_adjoint, g, keep, f, scale, w_hh, reverse=reverse)
    return [z, *_coefficients(out, z, reverse)]


def _lstm_bptt_adjoint_vjp(g, out, x, keep, f, scale, w_hh, reverse):
    y = apply(_bptt, g, keep, f, scale, w_hh, reverse=reverse)
    return [y, *_coefficients(y, out, reverse)]



# ---------------------------------------------------------------- the Numba forms
#
# The loops graph/numba_backend.py compiles for these ops (their ``lowering=`` fact; plain
# Python here, so that NumPy alone never needs Numba): the whole time loop in one
# function, per step one np.dot (BLAS) and one loop over (N, H) computing all four gate
# blocks. They restate the NumPy forms above; tests/test_rnn.py checks that they agree.

def _lstm_scan_numba(xw, h0, c0, w_hh, reverse, out):
    """_lstm_scan for float32. tanh (and σ(a) = (1 + tanh(a/2))/2) is a rational function
    accurate to a few float32 ulps (Eigen's, clamped where tanh rounds to ±1): LLVM
    vectorises it, where math.tanh is a libm call per element (~12 ns; B6's gates ran 2x
    slower than NumPy's 9 calls that way, 3x faster this way)."""
    def th(v):
        x = min(max(v, np.float32(-7.99881172180175781)), np.float32(7.99881172180175781))
        x2 = x * x
        p = np.float32(-2.76076847742355e-16)
        p = p * x2 + np.float32(2.00018790482477e-13)
        p = p * x2 + np.float32(-8.60467152213735e-11)
        p = p * x2 + np.float32(5.12229709037114e-08)
        p = p * x2 + np.float32(1.48572235717979e-05)
        p = p * x2 + np.float32(6.37261928875436e-04)
        p = p * x2 + np.float32(4.89352455891786e-03)
        q = np.float32(1.19825839466702e-06)
        q = q * x2 + np.float32(1.18534705686654e-04)
        q = q * x2 + np.float32(2.26843463243900e-03)
        q = q * x2 + np.float32(4.89352518554385e-03)
        return v if abs(v) < np.float32(0.0004) else x * p / q

    L, N, G = xw.shape
    H = G // 4
    half = np.float32(0.5)
    a, h = np.empty((N, G), out.dtype), np.empty((N, H), out.dtype)
    h[:] = h0
    for k in range(L):
        t = L - 1 - k if reverse else k
        np.dot(h, w_hh, a)
        # the gates [i, f, g, o] into out[t, :, 2H:], then c and h from them
        for r in range(N):
            ar, xr, y = a[r], xw[t, r], out[t, r, 2 * H:]
            for j in range(2 * H):
                y[j] = half * th(half * (ar[j] + xr[j])) + half
            for j in range(2 * H, 3 * H):
                y[j] = th(ar[j] + xr[j])
            for j in range(3 * H, G):
                y[j] = half * th(half * (ar[j] + xr[j])) + half
        for r in range(N):
            y = out[t, r]
            c_prev = c0[r] if k == 0 else out[t + 1 if reverse else t - 1, r, H:2 * H]
            for j in range(H):
                c = y[3 * H + j] * c_prev[j] + y[2 * H + j] * y[4 * H + j]
                y[H + j] = c
                y[j] = h[r, j] = y[5 * H + j] * th(c)
    return out


_lstm_scan_numba.dtypes = (np.dtype(np.float32),)


def _lstm_bptt_numba(x, keep, f, scale, w_hh, reverse, out):
    """_lstm_bptt (the steps in the reverse of the scan's order)."""
    L, N, S = x.shape
    H = S // 6
    dh = np.zeros((N, H), out.dtype)
    d, dc, f_next = np.zeros((N, 4 * H), out.dtype), np.zeros((N, H), out.dtype), f[0]
    for k in range(L):
        t = k if reverse else L - 1 - k
        if k > 0:
            np.dot(d, w_hh.T, dh)
        for r in range(N):
            xr, y, sr, kr, dr, dcr = x[t, r], out[t, r], scale[t, r], keep[t, r], d[r], dc[r]
            fr = f_next[r]
            for j in range(H):
                hj = xr[4 * H + j] + dh[r, j]
                cj = xr[5 * H + j] + hj * kr[j]
                if k > 0:
                    cj += dcr[j] * fr[j]
                y[4 * H + j], y[5 * H + j], dcr[j] = hj, cj, cj
            for j in range(3 * H):
                dr[j] = y[j] = y[5 * H + j % H] * sr[j] + xr[j]
            for j in range(3 * H, 4 * H):
                dr[j] = y[j] = y[j + H] * sr[j] + xr[j]
        f_next = f[t]
    return out


def _lstm_bptt_adjoint_numba(x, keep, f, scale, w_hh, reverse, out):
    """_lstm_bptt_adjoint (the steps in the scan's order)."""
    L, N, S = x.shape
    H = S // 6
    a = np.zeros((N, 4 * H), out.dtype)
    zh, zc = np.zeros((N, H), out.dtype), np.zeros((N, H), out.dtype)
    for k in range(L):
        t = L - 1 - k if reverse else k
        if k > 0:
            np.dot(zh, w_hh, a)
        for r in range(N):
            xr, y, sr, kr, fr = x[t, r], out[t, r], scale[t, r], keep[t, r], f[t, r]
            ar, zcr = a[r], zc[r]
            for j in range(4 * H):
                y[j] = xr[j] + ar[j]
            for j in range(H):
                cj = (xr[5 * H + j] + y[j] * sr[j] + y[H + j] * sr[H + j]
                      + y[2 * H + j] * sr[2 * H + j])
                if k > 0:
                    cj += zcr[j] * fr[j]
                hj = xr[4 * H + j] + y[3 * H + j] * sr[3 * H + j] + cj * kr[j]
                zh[r, j], zcr[j], y[4 * H + j], y[5 * H + j] = hj, cj, hj, cj
    return out


_BPTT_ARGS = ("x", "keep", "f", "scale", "w_hh")
_bptt = defop("lstm_bptt", _lstm_bptt, _lstm_bptt_vjp, variadic=True, out=True,
              reads=((1, 2, 3, 4, "out"),), args=_BPTT_ARGS, lowering=_lstm_bptt_numba,
              doc="The BPTT recursion of lstm_scan's VJP (see ops/rnn.py).")
_bptt_adjoint = defop("lstm_bptt_adjoint", _lstm_bptt_adjoint, _lstm_bptt_adjoint_vjp,
                      variadic=True, out=True, reads=((1, 2, 3, 4, "out"),), args=_BPTT_ARGS,
                      lowering=_lstm_bptt_adjoint_numba,
                      doc="The transpose of lstm_bptt (see ops/rnn.py).")


_scan = defop("lstm_scan", _lstm_scan, _lstm_scan_vjp, variadic=True, out=True,
              reads=((1, 2, 3, "out"),), args=("xw", "h0", "c0", "w_hh"), lowering=_lstm_scan_numba,
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
