"""The LSTM recurrence over a whole sequence as one op (``lstm_scan``).

Composed of per-step ops, an LSTM's backward is dozens of small ops per step, and
the gradient of W_hh arrives as one (H, 4H) product and sum per step. As one record
the forward is a plain NumPy loop, and the VJP -- written in retrograd ops, so it is
differentiable again -- is the textbook BPTT recursion as one op (lstm_bptt), which
computes each step's coefficients (the gate derivatives, tanh c, ...) from the scan's
result in its own loop, one step at a time; its VJP is its transpose lstm_bptt_adjoint
and back, with the coefficients' part in elementwise ops. ∂L/∂W_hh = Σ_t h_{t-1}ᵀ δ_t is
a single matmul over all steps (as cuDNN and PyTorch). Each of the three ops has a Numba
form (its ``lowering=``): the Numba backend runs its whole time loop as one njit call.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ..arrays import namespace, numpy_dtype
from ..errors import ShapeError
from .base import apply, defop
from .elementwise import tanh
from .linalg import matmul
from .shape import concatenate, expand_dims, reshape, transpose


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
    δ_t = ([dc_t·g, dc_t·c_prev, dc_t·i, dh_t·tanh c_t] + ∂L/∂gates_t) ⊙ gate'. The whole
    recursion, its coefficients (functions of the states) included, is one op (lstm_bptt,
    reading the scan's result), and ∂L/∂W_hh = Σ_t h_{t-1}ᵀ δ_t one matmul over all steps
    (as cuDNN and PyTorch)."""
    L, N = out.shape[0], out.shape[1]
    H = out.shape[-1] // 6
    y = apply(_bptt, g, out, c0, w_hh, reverse=reverse, gated=True)
    dxw = y[..., 2 * H:]
    first = L - 1 if reverse else 0
    dh0 = matmul(dxw[first], transpose(w_hh))
    dc0 = y[first, :, H:2 * H] * out[first, :, 3 * H:4 * H]
    # the states before each step, in time order: h0 before the first step run
    h0_ = expand_dims(h0, 0)
    h_prev = concatenate([out[1:, :, :H], h0_] if reverse else [h0_, out[:-1, :, :H]], axis=0)
    n = L * N
    dw_hh = matmul(transpose(reshape(h_prev, (n, H))), reshape(dxw, (n, 4 * H)))
    return [dxw, dh0, dc0, dw_hh]


# ---------------------------------------------------------------- the BPTT recursion
#
# lstm_bptt is the recursion of the deltas: linear in its input x, its coefficients
# functions of the scan's result ``states`` (per step [h, c, i, f, g, o]) and c0
# (_step_terms): k = o·(1 − tanh²c), the gate derivatives d = [i(1−i), f(1−f), 1 − g²,
# o(1−o)] and u = [g, c_prev, i, tanh c]. x and the result y are laid out as the states,
# per step [h-part (H) | c-part (H) | gate part (4H)]. Per step, in the reverse of the
# order the scan ran ('next': the step run after t, its terms 0 for the step run last):
#     dh = x_h + δ_next W_hhᵀ;  dc = x_c + dh·k + dc_next·f_next;
#     δ = [dc, dc, dc, dh] ⊙ u ⊙ d + x_gates (⊙ d too if ``gated``);     y_t = [dh, dc, δ].
# Gated, x is the cotangent of the states: lstm_scan's VJP is this one op, its coefficients
# computed in its loop. Not gated, it is the recursion R itself, which higher orders use.
# lstm_bptt_adjoint is Rᵀ (run in scan order): R's VJP in x is Rᵀ (times d where gated),
# Rᵀ's is R, and both share one rule for the cotangents of the states, c0 and W_hh
# (_coefficients), so that every order of derivative is these two ops and elementwise ones.

def _step_terms(xp, states, c0, reverse):
    """(tanh c, k, d, u) of every step (see above), from the states and c0, in the words
    of ``xp``: an array namespace, or _OPS (retrograd ops: differentiable)."""
    H = states.shape[-1] // 6
    c = states[..., H:2 * H]
    i, f, g, o = (states[..., k * H:(k + 1) * H] for k in range(2, 6))
    tc = xp.tanh(c)
    c0_ = xp.expand_dims(c0, axis=0)
    c_prev = xp.concat([c[1:, ...], c0_] if reverse else [c0_, c[:-1, ...]], axis=0)
    d = xp.concat([(1 - i) * i, (1 - f) * f, 1 - g * g, (1 - o) * o], axis=-1)
    u = xp.concat([g, c_prev, i, tc], axis=-1)
    return tc, (1 - tc * tc) * o, d, u


_OPS = SimpleNamespace(tanh=tanh, expand_dims=expand_dims, concat=concatenate)


def _before(t, L, reverse):
    """The step run before step t, or None for the step run first."""
    s = t + 1 if reverse else t - 1
    return s if 0 <= s < L else None


def _step_gate_terms(st, tc, d, H):
    """tanh c and the gate derivatives d of one step's states ``st`` (N, 6H), into tc and d."""
    np.tanh(st[:, H:2 * H], out=tc)
    gates = st[:, 2 * H:]
    np.subtract(1, gates, out=d)
    d *= gates
    g, dg = st[:, 4 * H:5 * H], d[:, 2 * H:3 * H]
    np.multiply(g, g, out=dg)
    np.subtract(1, dg, out=dg)


def _lstm_bptt(x, states, c0, w_hh, reverse, gated, out=None):
    """Each step's coefficients are computed in the loop, into scratch buffers of one step:
    no array of the whole sequence but the result."""
    if type(x) is not np.ndarray:
        return _xp_lstm_bptt(namespace(x, states, c0, w_hh), x, states, c0, w_hh, reverse, gated)
    L, N, S = x.shape
    H = S // 6
    dt = np.result_type(x, states, c0, w_hh)
    if out is None:
        out = np.empty((L, N, S), dt)
    # a contiguous Wᵀ: the step's product ran 1.5x faster than on w_hh.T's strides
    w_t = w_hh.T
    tc, tmp, d = np.empty((N, H), dt), np.empty((N, H), dt), np.empty((N, 4 * H), dt)
    nxt = None
    for t in _run_order(L, not reverse):
        y, xt, st = out[t], x[t], states[t]
        dh, dc, delta = y[:, :H], y[:, H:2 * H], y[:, 2 * H:]
        if nxt is None:
            dh[...] = xt[:, :H]
        else:
            np.matmul(out[nxt, :, 2 * H:], w_t, out=dh)
            dh += xt[:, :H]
        _step_gate_terms(st, tc, d, H)
        np.multiply(tc, tc, out=tmp)              # dc = x_c + dh·k [+ dc_next·f_next]
        np.subtract(1, tmp, out=tmp)
        tmp *= st[:, 5 * H:]
        tmp *= dh
        np.add(xt[:, H:2 * H], tmp, out=dc)
        if nxt is not None:
            dc += np.multiply(out[nxt, :, H:2 * H], states[nxt, :, 3 * H:4 * H], out=tmp)
        prev = _before(t, L, reverse)
        c_prev = c0 if prev is None else states[prev, :, H:2 * H]
        for k, (m, v) in enumerate(((dc, st[:, 4 * H:5 * H]), (dc, c_prev),
                                    (dc, st[:, 2 * H:3 * H]), (dh, tc))):
            np.multiply(m, v, out=delta[:, k * H:(k + 1) * H])
        if gated:
            delta += xt[:, 2 * H:]
            delta *= d
        else:
            delta *= d
            delta += xt[:, 2 * H:]
        nxt = t
    return out


def _lstm_bptt_adjoint(a, states, c0, w_hh, reverse, out=None):
    """Rᵀ, the transpose of lstm_bptt's recursion in x (not gated): per step, in the order
    the scan ran ('prev': the step run before t, its terms 0 for the step run first):
        e = a_gates + z_h,prev W_hh;  v = e ⊙ d ⊙ u;
        z_c = a_c + v_i + v_f + v_g + z_c,prev·f;  z_h = a_h + v_o + z_c·k;  z_t = [z_h, z_c, e]."""
    if type(a) is not np.ndarray:
        return _xp_lstm_bptt_adjoint(namespace(a, states, c0, w_hh), a, states, c0, w_hh,
                                     reverse)
    L, N, S = a.shape
    H = S // 6
    dt = np.result_type(a, states, c0, w_hh)
    if out is None:
        out = np.empty((L, N, S), dt)
    v, d = np.empty((N, 4 * H), dt), np.empty((N, 4 * H), dt)
    tc, tmp = np.empty((N, H), dt), np.empty((N, H), dt)
    prev = None
    for t in _run_order(L, reverse):
        z, at, st = out[t], a[t], states[t]
        zh, zc, e = z[:, :H], z[:, H:2 * H], z[:, 2 * H:]
        if prev is None:
            e[...] = at[:, 2 * H:]
        else:
            np.matmul(out[prev, :, :H], w_hh, out=e)
            e += at[:, 2 * H:]
        _step_gate_terms(st, tc, d, H)
        np.multiply(e, d, out=v)
        c_prev = c0 if prev is None else states[prev, :, H:2 * H]
        np.multiply(v[:, :H], st[:, 4 * H:5 * H], out=zc)
        zc += np.multiply(v[:, H:2 * H], c_prev, out=tmp)
        zc += np.multiply(v[:, 2 * H:3 * H], st[:, 2 * H:3 * H], out=tmp)
        zc += at[:, H:2 * H]
        if prev is not None:
            zc += np.multiply(out[prev, :, H:2 * H], st[:, 3 * H:4 * H], out=tmp)
        np.multiply(tc, tc, out=tmp)              # z_h = a_h + v_o + z_c·k
        np.subtract(1, tmp, out=tmp)
        tmp *= st[:, 5 * H:]
        tmp *= zc
        np.multiply(v[:, 3 * H:], tc, out=zh)
        zh += tmp
        zh += at[:, :H]
        prev = t
    return out


def _xp_lstm_bptt(xp, x, states, c0, w_hh, reverse, gated):
    """_lstm_bptt in the standard's words (another namespace): the coefficients of all steps
    at once, each step's [dh, dc, δ] joined, the steps stacked (no writes into arrays)."""
    L, H = x.shape[0], x.shape[-1] // 6
    _, k, d, u = _step_terms(xp, states, c0, reverse)
    f = states[..., 3 * H:4 * H]
    steps, nxt = [None] * L, None
    for t in _run_order(L, not reverse):
        dh = x[t, :, :H]
        if nxt is not None:
            dh = dh + xp.matmul(steps[nxt][:, 2 * H:], xp.matrix_transpose(w_hh))
        dc = x[t, :, H:2 * H] + dh * k[t, ...]
        if nxt is not None:
            dc = dc + steps[nxt][:, H:2 * H] * f[nxt, ...]
        m = xp.concat([dc, dc, dc, dh], axis=-1) * u[t, ...]
        xg = x[t, :, 2 * H:]
        delta = (m + xg) * d[t, ...] if gated else m * d[t, ...] + xg
        steps[t] = xp.concat([dh, dc, delta], axis=-1)
        nxt = t
    return xp.stack(steps, axis=0)


def _xp_lstm_bptt_adjoint(xp, a, states, c0, w_hh, reverse):
    """_lstm_bptt_adjoint in the standard's words (another namespace)."""
    L, H = a.shape[0], a.shape[-1] // 6
    tc, k, d, u = _step_terms(xp, states, c0, reverse)
    f = states[..., 3 * H:4 * H]
    steps, prev = [None] * L, None
    for t in _run_order(L, reverse):
        e = a[t, :, 2 * H:]
        if prev is not None:
            e = e + xp.matmul(steps[prev][:, :H], w_hh)
        v = e * d[t, ...] * u[t, ...]
        zc = v[:, :H] + v[:, H:2 * H] + v[:, 2 * H:3 * H] + a[t, :, H:2 * H]
        if prev is not None:
            zc = zc + steps[prev][:, H:2 * H] * f[t, ...]
        zh = v[:, 3 * H:] + zc * k[t, ...] + a[t, :, :H]
        steps[t] = xp.concat([zh, zc, e], axis=-1)
        prev = t
    return xp.stack(steps, axis=0)


def _coefficients(y, z, x_gates, terms, states, w_hh, reverse):
    """The cotangents of the states, c0 and W_hh of lstm_bptt, from its result y and the
    adjoint's z: d/dθ <z̄, Rᵀ(x̄; θ)> is d/dθ <R(z̄; θ), x̄>, so one rule serves both ops
    (y = R's result and z = Rᵀ of its cotangent, or y = R of Rᵀ's cotangent). ``x_gates``:
    R's gate input where it was gated (d multiplies it too), else None; ``terms``:
    _step_terms of the states."""
    L, N = y.shape[0], y.shape[1]
    H = y.shape[-1] // 6
    tc, _, d, u = terms
    block = lambda v, j: v[..., j * H:(j + 1) * H]          # noqa: E731
    y_h, y_c, y_d = y[..., :H], y[..., H:2 * H], y[..., 2 * H:]
    z_h, z_c, z_d = z[..., :H], z[..., H:2 * H], z[..., 2 * H:]
    s = z_d * concatenate([y_c, y_c, y_c, y_h], axis=-1)      # of the scale u ⊙ d
    u_bar = s * d
    d_bar = s * u if x_gates is None else s * u + z_d * x_gates
    k_bar = z_c * y_h
    n = L * N
    w_bar = matmul(transpose(reshape(z_h, (n, H))), reshape(_next_run(y_d, reverse), (n, 4 * H)))
    # through d = [i(1−i), f(1−f), 1 − g², o(1−o)], u = [g, c_prev, i, tanh c], k = o(1 − tanh²c)
    i, f, g, o = (block(states, j) for j in range(2, 6))
    dtc = 1 - tc * tc
    d_i = block(d_bar, 0) * (1 - 2 * i) + block(u_bar, 2)
    d_f = block(d_bar, 1) * (1 - 2 * f) + _prev_run(z_c, reverse) * y_c
    d_g = block(u_bar, 0) - 2 * g * block(d_bar, 2)
    d_o = block(d_bar, 3) * (1 - 2 * o) + k_bar * dtc
    # c enters tanh c, and is the next step's c_prev; c0 the first step's
    d_c = (block(u_bar, 3) - 2 * k_bar * o * tc) * dtc + _next_run(block(u_bar, 1), reverse)
    dc0 = block(u_bar, 1)[L - 1 if reverse else 0]
    d_h = np.zeros(tuple(y_h.shape), numpy_dtype(y.dtype))     # h enters no coefficient
    return [concatenate([d_h, d_c, d_i, d_f, d_g, d_o], axis=-1), dc0, w_bar]


def _lstm_bptt_vjp(g, out, x, states, c0, w_hh, reverse, gated):
    z = apply(_bptt_adjoint, g, states, c0, w_hh, reverse=reverse)
    terms = _step_terms(_OPS, states, c0, reverse)
    if not gated:
        return [z, *_coefficients(out, z, None, terms, states, w_hh, reverse)]
    H = x.shape[-1] // 6
    dx = concatenate([z[..., :2 * H], z[..., 2 * H:] * terms[2]], axis=-1)
    return [dx, *_coefficients(out, z, x[..., 2 * H:], terms, states, w_hh, reverse)]


def _lstm_bptt_adjoint_vjp(g, out, a, states, c0, w_hh, reverse):
    y = apply(_bptt, g, states, c0, w_hh, reverse=reverse, gated=False)
    terms = _step_terms(_OPS, states, c0, reverse)
    return [y, *_coefficients(y, out, None, terms, states, w_hh, reverse)]


# ---------------------------------------------------------------- the Numba forms
#
# The loops graph/numba_backend.py compiles for these ops (their ``lowering=`` fact; plain
# Python here, so that NumPy alone never needs Numba): the whole time loop in one
# function, per step one np.dot (BLAS) and one pass over (N, H) computing all four gate
# blocks. They restate the NumPy forms above; tests/test_rnn.py checks that they agree.

def _tanh_f32(v):
    """tanh of a float32 as a rational function accurate to a few ulps (Eigen's, clamped
    where tanh rounds to ±1): LLVM vectorises it, where math.tanh is a libm call per
    element (~12 ns; B6's gates ran 2x slower than NumPy's 9 calls that way, 3x faster
    this way). σ(a) is (1 + tanh(a/2))/2."""
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


# Each loop writes only arrays of the function's own, few of them (the step's results are
# copied into ``out`` after, by explicit loops), and indexes each step's 2-D arrays: loops
# storing into ``out`` while reading it, into many arrays, through slice assignment, or
# over a slice made for every row, ran 1.5-4x slower (B6's shapes).

def _matmul_into(a, b, out):
    """out = a @ b (compiled: through NumPy's BLAS, native/numba_blas.py)."""
    np.dot(a, b, out)


def _put(dst, at, src):
    """dst[:, at:at + src.shape[1]] = src."""
    for r in range(src.shape[0]):
        for j in range(src.shape[1]):
            dst[r, at + j] = src[r, j]


def _lstm_scan_numba(xw, h0, c0, w_hh, reverse, out):
    """_lstm_scan for float32."""
    L, N, G = xw.shape
    H = G // 4
    half, one = np.float32(0.5), np.float32(1)
    a, s = np.empty((N, G), out.dtype), np.empty((N, G), out.dtype)
    h, c = np.empty((N, H), out.dtype), np.empty((N, H), out.dtype)
    h[:] = h0
    c[:] = c0
    for k in range(L):
        t = L - 1 - k if reverse else k
        _matmul_into(h, w_hh, a)
        xt = xw[t]
        # the gates [i, f, g, o]: σ(v) = (1 + tanh(v/2))/2 but g = tanh(v)
        for r in range(N):
            for j in range(G):
                is_g = j >= 2 * H and j < 3 * H
                m = one if is_g else half
                s[r, j] = m * _tanh_f32(m * (a[r, j] + xt[r, j])) + (half - m + half)
        for r in range(N):
            for j in range(H):
                c[r, j] = s[r, H + j] * c[r, j] + s[r, j] * s[r, 2 * H + j]
                h[r, j] = s[r, 3 * H + j] * _tanh_f32(c[r, j])
        _put(out[t], 0, h)
        _put(out[t], H, c)
        _put(out[t], 2 * H, s)
    return out


def _lstm_bptt_numba(x, states, c0, w_hh, reverse, gated, out):
    """_lstm_bptt for float32 (the steps in the reverse of the scan's order)."""
    L, N, S = x.shape
    H = S // 6
    one = np.float32(1)
    w_t = np.ascontiguousarray(w_hh.T)     # (BLAS's transpose flag: 20 % slower products)
    # dh, dc: of the step run after t (zero for the step run last), then of this step
    delta, dh = np.zeros((N, 4 * H), out.dtype), np.zeros((N, H), out.dtype)
    dc, tc = np.zeros((N, H), out.dtype), np.empty((N, H), out.dtype)
    for k in range(L):
        t = k if reverse else L - 1 - k
        nx = t if k == 0 else t - 1 if reverse else t + 1      # the step run after t
        if k > 0:
            _matmul_into(delta, w_t, dh)
        xt, st, sn = x[t], states[t], states[nx]
        for r in range(N):
            for j in range(H):
                hj, tcj = dh[r, j] + xt[r, j], _tanh_f32(st[r, H + j])
                cj = (xt[r, H + j] + (one - tcj * tcj) * st[r, 5 * H + j] * hj
                      + dc[r, j] * sn[r, 3 * H + j])
                dh[r, j], dc[r, j], tc[r, j] = hj, cj, tcj
        # c_prev: c0, or the c-part of the step run before
        cs, at = (c0, 0) if k == L - 1 else (states[t + 1 if reverse else t - 1], H)
        for r in range(N):
            for j in range(H):          # δ_i, δ_f, δ_g, δ_o: (dc·g, dc·c_prev, dc·i, dh·tanh c) ...
                i, g = st[r, 2 * H + j], st[r, 4 * H + j]
                e, x0 = dc[r, j] * g, xt[r, 2 * H + j]
                delta[r, j] = (e + x0) * ((one - i) * i) if gated else e * ((one - i) * i) + x0
            for j in range(H):
                f = st[r, 3 * H + j]
                e, x1 = dc[r, j] * cs[r, at + j], xt[r, 3 * H + j]
                delta[r, H + j] = (e + x1) * ((one - f) * f) if gated else e * ((one - f) * f) + x1
            for j in range(H):
                i, g = st[r, 2 * H + j], st[r, 4 * H + j]
                e, x2 = dc[r, j] * i, xt[r, 4 * H + j]
                delta[r, 2 * H + j] = (e + x2) * (one - g * g) if gated else e * (one - g * g) + x2
            for j in range(H):
                o = st[r, 5 * H + j]
                e, x3 = dh[r, j] * tc[r, j], xt[r, 5 * H + j]
                delta[r, 3 * H + j] = (e + x3) * ((one - o) * o) if gated else e * ((one - o) * o) + x3
        _put(out[t], 0, dh)
        _put(out[t], H, dc)
        _put(out[t], 2 * H, delta)
    return out


def _lstm_bptt_adjoint_numba(a, states, c0, w_hh, reverse, out):
    """_lstm_bptt_adjoint for float32 (the steps in the scan's order)."""
    L, N, S = a.shape
    H = S // 6
    one = np.float32(1)
    # e, zh, zc: from the step run before t (zero for the step run first), then of this step
    e = np.zeros((N, 4 * H), out.dtype)
    zh, zc = np.zeros((N, H), out.dtype), np.zeros((N, H), out.dtype)
    for k in range(L):
        t = L - 1 - k if reverse else k
        if k > 0:
            _matmul_into(zh, w_hh, e)
        at, st = a[t], states[t]
        for r in range(N):
            for j in range(4 * H):
                e[r, j] += at[r, 2 * H + j]
        cs, of = (c0, 0) if k == 0 else (states[t + 1 if reverse else t - 1], H)
        for r in range(N):
            for j in range(H):
                tcj = _tanh_f32(st[r, H + j])
                i, f, g, o = st[r, 2 * H + j], st[r, 3 * H + j], st[r, 4 * H + j], st[r, 5 * H + j]
                zc[r, j] = (e[r, j] * ((one - i) * i) * g
                            + e[r, H + j] * ((one - f) * f) * cs[r, of + j]
                            + e[r, 2 * H + j] * (one - g * g) * i + at[r, H + j] + zc[r, j] * f)
                zh[r, j] = (e[r, 3 * H + j] * ((one - o) * o) * tcj
                            + (one - tcj * tcj) * o * zc[r, j] + at[r, j])
        _put(out[t], 0, zh)
        _put(out[t], H, zc)
        _put(out[t], 2 * H, e)
    return out


_F32 = (np.dtype(np.float32),)
for _form in (_lstm_scan_numba, _lstm_bptt_numba, _lstm_bptt_adjoint_numba):
    _form.dtypes, _form.helpers = _F32, ("_tanh_f32", "_put", "_matmul_into")
    _form.replaces_loop = True     # a loop of NumPy calls a step: 'auto' picks Numba for it
    # and eager code and the NumPy code 'auto' generates run it too where Numba is installed
    # (ops/numba_forms.py): B6's eager step 10.8 -> 7.2 ms (bench/bench.py --cases B6)
    _form.eager = True


def _states_shape(xw, h0, c0, w_hh, reverse):
    """lstm_scan's result: (L, N, 6H) per step [h, c, i, f, g, o]."""
    L, N, G = xw.shape
    return (L, N, G // 4 * 6), np.result_type(xw.dtype, h0.dtype, c0.dtype, w_hh.dtype)


def _like_first(first, states, c0, w_hh, reverse, gated=None):
    """lstm_bptt's and lstm_bptt_adjoint's result: laid out as their input."""
    return tuple(first.shape), np.result_type(first.dtype, states.dtype, c0.dtype, w_hh.dtype)


_BPTT_ARGS = ("states", "c0", "w_hh")
_bptt = defop("lstm_bptt", _lstm_bptt, _lstm_bptt_vjp, variadic=True, out=True,
              shape=_like_first, reads=((0, 1, 2, 3, "out"),), args=("x",) + _BPTT_ARGS,
              lowering=_lstm_bptt_numba,
              doc="The BPTT recursion of lstm_scan's VJP (see ops/rnn.py).")
_bptt_adjoint = defop("lstm_bptt_adjoint", _lstm_bptt_adjoint, _lstm_bptt_adjoint_vjp,
                      variadic=True, out=True, shape=_like_first, reads=((1, 2, 3, "out"),),
                      args=("a",) + _BPTT_ARGS, lowering=_lstm_bptt_adjoint_numba,
                      doc="The transpose of lstm_bptt's recursion (see ops/rnn.py).")


_scan = defop("lstm_scan", _lstm_scan, _lstm_scan_vjp, variadic=True, out=True,
              shape=_states_shape, reads=((1, 2, 3, "out"),), args=("xw", "h0", "c0", "w_hh"),
              lowering=_lstm_scan_numba, doc="The LSTM recurrence over a sequence (see lstm_scan).")


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
