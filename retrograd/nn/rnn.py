"""Recurrent layers: RNN (tanh/relu), LSTM, GRU, and their cells.

Gate order, parameter names and initial/final state layout are PyTorch's; the weight
matrices are stored (in, out) like Linear's (PyTorch's transposed), so a step is
``x_t @ weight_ih + h @ weight_hh``. Backpropagation through time is nothing but
autodiff through the unrolled loop of ordinary ops (seed 001 §3.4): the gradient of
the shared weights is the sum of their per-step contributions, which the backward
walk's multi-path rule adds up. Being ops, it is twice differentiable and compiles.
Truncated BPTT: ``h.detach()`` of the state carried to the next chunk.

Speed: an LSTM layer is one matmul x @ W_ih for all steps and one ``lstm_scan`` op
(ops/rnn.py: the recurrence as a NumPy loop, BPTT as one lstm_bptt op in its VJP, with
∂L/∂W_hh as one matmul over all steps). RNN and GRU are composed of per-step ops
(each step: x_t @ W_ih + b, h @ W_hh, one sigmoid over the gates and slices of it), and
there the input projection is done per step: slicing step t out of one (L, N, G·H)
product has a VJP that scatters into a zero array of that whole shape, so a traced
backward (rg.compile, higher orders) would cost L² · N · G·H (2x slower for 32 steps,
measured), while the per-step products cost the same flops as one big one. (An eager
first-order backward adds each slice's cotangent in place instead -- getitem's
``accumulate=``, autodiff._add_in_place -- so a user's own loop over x[t] is linear.) For the same reason their layers hand
the next layer the per-step outputs as a list and stack them once, for the caller.
"""
from __future__ import annotations

import math

import numpy as np

from .. import arrays, ops
from ..errors import RetrogradError, ShapeError
from ..ops.rnn import lstm_scan
from ..tensor import Tensor, default_generator, zeros
from . import functional as F
from .module import Module, Parameter

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}
_NAMES = {"RNN_TANH": "RNN", "RNN_RELU": "RNN", "LSTM": "LSTM", "GRU": "GRU"}


# ---------------------------------------------------------------- one time step
# xw: x_t @ W_ih + b_ih (+ b_hh, folded in for RNN and LSTM), (N, G·H)

def _rnn_step(xw, h, w_hh, b_hh, relu=False):
    a = xw + ops.matmul(h, w_hh)
    return ops.relu(a) if relu else ops.tanh(a)


def _lstm_step(xw, h, c, w_hh):
    """PyTorch's gate order i, f, g, o: c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c')."""
    H = h.shape[-1]
    a = xw + ops.matmul(h, w_hh)
    s = ops.sigmoid(a)              # one sigmoid over all four gates; g's part is unused
    i, f, o = s[..., :H], s[..., H:2 * H], s[..., 3 * H:]
    g = ops.tanh(a[..., 2 * H:3 * H])
    c = f * c + i * g
    return o * ops.tanh(c), c


def _gru_step(xw, h, w_hh, b_hh):
    """PyTorch's r, z, n: n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h' = (1 − z) ⊙ n + z ⊙ h."""
    H = h.shape[-1]
    gh = ops.matmul(h, w_hh)
    if b_hh is not None:
        gh = gh + b_hh
    s = ops.sigmoid(xw[..., :2 * H] + gh[..., :2 * H])
    r, z = s[..., :H], s[..., H:]
    n = ops.tanh(xw[..., 2 * H:] + r * gh[..., 2 * H:])
    return n + z * (h - n)


def _step(mode, xw, state, w_hh, b_hh):
    """The new state (a tuple: (h,) or (h, c)) after one step."""
    if mode == "LSTM":
        return _lstm_step(xw, state[0], state[1], w_hh)
    if mode == "GRU":
        return (_gru_step(xw, state[0], w_hh, b_hh),)
    return (_rnn_step(xw, state[0], w_hh, b_hh, relu=mode == "RNN_RELU"),)


def _input_bias(mode, b_ih, b_hh):
    """The bias added to x_t @ W_ih: both biases for RNN and LSTM (they only ever appear
    summed), b_ih alone for GRU (its b_hn sits inside r ⊙ (...))."""
    if b_ih is None:
        return None
    return b_ih if mode == "GRU" else b_ih + b_hh


def _zeros(shape, like):
    """A zero state of ``like``'s dtype, namespace and device."""
    d = like._data
    if isinstance(d, np.ndarray) or not arrays.is_foreign(d):    # (or a graph value)
        return zeros(shape, dtype=like.dtype)
    return Tensor._make(arrays.namespace(d).zeros(shape, dtype=d.dtype, device=arrays.device(d)))


def _state_tensor(h, like):
    """An initial state given as an array, as a tensor of ``like``'s dtype (a NumPy one
    joins ``like``'s namespace at its first op)."""
    if arrays.is_foreign(h):
        return Tensor(arrays.astype(h, like.dtype))
    return Tensor(np.asarray(h, dtype=arrays.numpy_dtype(like.dtype)))


def _uniform(shape, k, dtype):
    return default_generator().uniform(-k, k, shape).astype(dtype)


def _check_mode_args(who, input_size, hidden_size, nonlinearity):
    if int(input_size) < 1 or int(hidden_size) < 1:
        raise ValueError(f"{who}: input_size and hidden_size must be positive, got "
                         f"{input_size} and {hidden_size}")
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{who}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")


# ---------------------------------------------------------------- layers

class _RNNBase(Module):
    mode = "RNN_TANH"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, dtype=np.float32):
        who = _NAMES[self.mode]
        _check_mode_args(who, input_size, hidden_size, nonlinearity)
        if int(num_layers) < 1:
            raise ValueError(f"{who}: num_layers must be at least 1, got {num_layers}")
        if not 0 <= dropout < 1:
            raise ValueError(f"{who}: dropout must be in [0, 1), got {dropout}")
        if self.mode.startswith("RNN") and nonlinearity == "relu":
            self.mode = "RNN_RELU"
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.num_layers, self.bias = int(num_layers), bool(bias)
        self.batch_first, self.dropout = bool(batch_first), float(dropout)
        self.bidirectional = bool(bidirectional)
        self.nonlinearity = nonlinearity
        D, H, G = self.num_directions, self.hidden_size, _GATES[self.mode] * self.hidden_size
        k = 1 / math.sqrt(H)            # PyTorch's init: every parameter U(-1/√H, 1/√H)
        self._param_names = []          # per (layer, direction): the four names
        for layer in range(self.num_layers):
            n_in = self.input_size if layer == 0 else H * D
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                names = [f"weight_ih{sfx}", f"weight_hh{sfx}", f"bias_ih{sfx}", f"bias_hh{sfx}"]
                setattr(self, names[0], Parameter(_uniform((n_in, G), k, dtype)))
                setattr(self, names[1], Parameter(_uniform((H, G), k, dtype)))
                if self.bias:
                    setattr(self, names[2], Parameter(_uniform((G,), k, dtype)))
                    setattr(self, names[3], Parameter(_uniform((G,), k, dtype)))
                self._param_names.append(names)

    @property
    def _torch_transposed(self):          # PyTorch's weight_ih/hh are (gates·H, in)
        return [n for names in self._param_names for n in names[:2]]

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    def _weights(self, layer, d):
        names = self._param_names[layer * self.num_directions + d]
        return [getattr(self, n, None) for n in names]

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s

    # ---- forward
    def forward(self, x, hx=None):
        """x: (L, N, input_size), or (N, L, input_size) with batch_first, or unbatched
        (L, input_size). hx: h0 of shape (num_layers·num_directions, N, hidden_size)
        (LSTM: the pair (h0, c0)); zeros when None. Returns (output, h_n) -- LSTM:
        (output, (h_n, c_n)) -- with output (L, N, num_directions·hidden_size)."""
        who = _NAMES[self.mode]
        x = x if isinstance(x, Tensor) else Tensor(x if arrays.is_foreign(x) else np.asarray(x))
        if x.ndim not in (2, 3):
            raise ShapeError(f"{who}: input must be 2-d (unbatched) or 3-d, got shape "
                             f"{tuple(x.shape)}")
        batched = x.ndim == 3
        if x.shape[-1] != self.input_size:
            raise ShapeError(f"{who} layer 0: input has shape {tuple(x.shape)}, expected the "
                             f"last axis to be input_size={self.input_size}")
        if not batched:
            x = ops.expand_dims(x, 0 if self.batch_first else 1)
        time_axis = 1 if self.batch_first else 0
        L, N = x.shape[time_axis], x.shape[1 - time_axis]
        states = self._initial_states(hx, N, batched, x)
        if self.mode == "LSTM":
            seq = ops.swapaxes(x, 0, 1) if self.batch_first else x
            output, h_n = self._lstm_layers(seq, states)
            output = ops.swapaxes(output, 0, 1) if self.batch_first else output
        else:
            output, h_n = self._stepped_layers(x, L, states, time_axis)
        if not batched:
            output = ops.squeeze(output, time_axis ^ 1)
            h_n = tuple(ops.squeeze(h, 1) for h in h_n)
        return output, (h_n if self.mode == "LSTM" else h_n[0])

    def _stepped_layers(self, x, L, states, time_axis):
        """RNN and GRU: the layers step by step, each handing the next its per-step
        outputs as a list; returns (output, final states)."""
        xs = [x[:, t] if self.batch_first else x[t] for t in range(L)]
        finals = []
        for layer in range(self.num_layers):
            if layer and self.dropout and self.training:
                xs = [F.dropout(xt, self.dropout, True) for xt in xs]
            outs = []
            for d in range(self.num_directions):
                k = layer * self.num_directions + d
                ys, final = self._direction(xs, tuple(s[k] for s in states), layer, d)
                outs.append(ys)
                finals.append(final)
            xs = outs[0] if len(outs) == 1 else [ops.concatenate([a, b], axis=-1)
                                                 for a, b in zip(*outs)]
        output = ops.stack(xs, axis=time_axis)
        return output, tuple(ops.stack([f[i] for f in finals], axis=0) for i in range(len(states)))

    def _lstm_layers(self, seq, states):
        """LSTM: each direction of each layer is one input projection for all steps (one
        matmul) and one lstm_scan op; ``seq`` is time-major (L, N, F)."""
        H, D = self.hidden_size, self.num_directions
        finals_h, finals_c = [], []
        for layer in range(self.num_layers):
            if layer and self.dropout and self.training:
                seq = F.dropout(seq, self.dropout, True)
            outs = []
            for d in range(D):
                k = layer * D + d
                w_ih, w_hh, b_ih, b_hh = self._weights(layer, d)
                # one 2-d product for all steps: its VJP for W_ih is then one matmul too
                # (a 3-d x @ W would take a product per step and sum them)
                L, N, F_in = seq.shape
                xw = ops.reshape(ops.matmul(ops.reshape(seq, (L * N, F_in)), w_ih), (L, N, -1))
                bias = _input_bias(self.mode, b_ih, b_hh)
                if bias is not None:
                    xw = xw + bias
                y = lstm_scan(xw, states[0][k], states[1][k], w_hh, reverse=bool(d))
                last = 0 if d else -1           # the backward direction ends at t = 0
                outs.append(y[..., :H])
                finals_h.append(y[last, :, :H])
                finals_c.append(y[last, :, H:2 * H])
            seq = outs[0] if D == 1 else ops.concatenate(outs, axis=-1)
        return seq, (ops.stack(finals_h, axis=0), ops.stack(finals_c, axis=0))

    def _direction(self, xs, state, layer, d):
        """One direction of one layer over the sequence: (outputs per step, final state)."""
        w_ih, w_hh, b_ih, b_hh = self._weights(layer, d)
        bias = _input_bias(self.mode, b_ih, b_hh)
        ys = [None] * len(xs)
        for t in (reversed(range(len(xs))) if d else range(len(xs))):
            xw = ops.matmul(xs[t], w_ih)
            if bias is not None:
                xw = xw + bias
            state = _step(self.mode, xw, state, w_hh, b_hh)
            ys[t] = state[0]
        return ys, state

    def _initial_states(self, hx, N, batched, x):
        """(h0,) or (h0, c0), each of shape (num_layers·num_directions, N, H), in the
        dtype, namespace and device of the input ``x``."""
        who = _NAMES[self.mode]
        n_states = 2 if self.mode == "LSTM" else 1
        shape = (self.num_layers * self.num_directions, N, self.hidden_size)
        if hx is None:
            return (_zeros(shape, x),) * n_states
        if self.mode == "LSTM":
            if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise RetrogradError(f"LSTM: the initial state must be a pair (h0, c0), got "
                                     f"{type(hx).__name__}")
            hx = tuple(hx)
        else:
            hx = (hx,)
        out = []
        for name, h in zip(("h0", "c0"), hx):
            h = h if isinstance(h, Tensor) else _state_tensor(h, x)
            want = shape if batched else (shape[0], shape[2])
            if tuple(h.shape) != want:
                raise ShapeError(f"{who}: {name} has shape {tuple(h.shape)}, expected "
                                 f"(num_layers*num_directions, N, hidden_size) = {want}"
                                 if batched else
                                 f"{who}: {name} has shape {tuple(h.shape)}, expected "
                                 f"(num_layers*num_directions, hidden_size) = {want} for an "
                                 "unbatched input")
            out.append(h if batched else ops.expand_dims(h, 1))
        return tuple(out)


class RNN(_RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ih + b_ih + h_{t-1} W_hh + b_hh) (or relu), as
    ``torch.nn.RNN`` with (in, out) weights: weight_ih_l0 (input_size, hidden_size)."""
    mode = "RNN_TANH"


class _Gated(_RNNBase):
    """The gated layers take no ``nonlinearity`` (their gates fix sigmoid and tanh)."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32):
        super().__init__(input_size, hidden_size, num_layers, "tanh", bias, batch_first,
                         dropout, bidirectional, dtype)


class LSTM(_Gated):
    """Long short-term memory, as ``torch.nn.LSTM`` (gates i, f, g, o) with (in, out)
    weights: weight_ih_l0 (input_size, 4·hidden_size). forward(x, (h0, c0)) ->
    (output, (h_n, c_n))."""
    mode = "LSTM"


class GRU(_Gated):
    """Gated recurrent unit, as ``torch.nn.GRU`` (gates r, z, n) with (in, out) weights:
    weight_ih_l0 (input_size, 3·hidden_size)."""
    mode = "GRU"


# ---------------------------------------------------------------- cells

class _CellBase(Module):
    mode = "RNN_TANH"
    _torch_transposed = ("weight_ih", "weight_hh")

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh",
                 dtype=np.float32):
        who = type(self).__name__
        _check_mode_args(who, input_size, hidden_size, nonlinearity)
        if self.mode.startswith("RNN") and nonlinearity == "relu":
            self.mode = "RNN_RELU"
        self.input_size, self.hidden_size, self.bias = int(input_size), int(hidden_size), bias
        self.nonlinearity = nonlinearity
        H, G = self.hidden_size, _GATES[self.mode] * self.hidden_size
        k = 1 / math.sqrt(H)
        self.weight_ih = Parameter(_uniform((self.input_size, G), k, dtype))
        self.weight_hh = Parameter(_uniform((H, G), k, dtype))
        self.bias_ih = Parameter(_uniform((G,), k, dtype)) if bias else None
        self.bias_hh = Parameter(_uniform((G,), k, dtype)) if bias else None

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        return s

    def _initial_state(self, x, hx):
        """x as (N, input_size), the state as a tuple of (N, H), and whether it was batched."""
        who = type(self).__name__
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ShapeError(f"{who}: input has shape {tuple(x.shape)}, expected (N, "
                             f"{self.input_size}) or ({self.input_size},)")
        batched = x.ndim == 2
        x = x if batched else ops.expand_dims(x, 0)
        n_states = 2 if self.mode == "LSTM" else 1
        want = (x.shape[0], self.hidden_size) if batched else (self.hidden_size,)
        if hx is None:
            return x, (_zeros((x.shape[0], self.hidden_size), x),) * n_states, batched
        hx = tuple(hx) if n_states == 2 else (hx,)
        if len(hx) != n_states:
            raise RetrogradError(f"{who}: the state must be a pair (h, c)")
        for name, h in zip(("h", "c"), hx):
            if tuple(h.shape) != want:
                raise ShapeError(f"{who}: {name} has shape {tuple(h.shape)}, expected {want}")
        return x, tuple(h if batched else ops.expand_dims(h, 0) for h in hx), batched

    def forward(self, x, hx=None):
        x, state, batched = self._initial_state(x, hx)
        xw = ops.matmul(x, self.weight_ih)
        bias = _input_bias(self.mode, self.bias_ih, self.bias_hh)
        if bias is not None:
            xw = xw + bias
        state = _step(self.mode, xw, state, self.weight_hh, self.bias_hh)
        if not batched:
            state = tuple(ops.squeeze(s, 0) for s in state)
        return state if self.mode == "LSTM" else state[0]


class RNNCell(_CellBase):
    """One step of RNN: h' = tanh(x W_ih + b_ih + h W_hh + b_hh); forward(x, h=None) -> h'."""
    mode = "RNN_TANH"


class LSTMCell(_CellBase):
    """One step of LSTM: forward(x, (h, c)=None) -> (h', c')."""
    mode = "LSTM"

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32):
        super().__init__(input_size, hidden_size, bias, "tanh", dtype)


class GRUCell(_CellBase):
    """One step of GRU: forward(x, h=None) -> h'."""
    mode = "GRU"

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32):
        super().__init__(input_size, hidden_size, bias, "tanh", dtype)
