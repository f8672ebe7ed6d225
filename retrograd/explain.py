"""``retrograd explain``: backpropagation printed step by step, in the notes' words.

Two explanations, each returned as text (the CLI prints it):

``explain_network()`` -- one pattern through a small MLP, by default the 2-2-1
sigmoid net of seed 002's figures, in the order of seed 002's derivation: the
forward pass (net and o of every unit), the output deltas, the back-propagated
hidden deltas, ∂E/∂w = −δ·o for every weight and bias, and the update
w_new = w + η δ o. The numbers come from ``retrograd.classic`` (the equations
written out by hand, no autodiff); every gradient is then checked against the
autodiff engine and against central finite differences and marked ✓ (or ✗ with
the numbers). The notes give no numeric weights, so they are drawn from
U(−1, 1) with a seed and rounded to 2 decimals, which keeps the arithmetic
short enough to redo by hand.

``explain_expression("sin(x1) + x1*x2", {"x1": 2, "x2": 5})`` -- seed 001
§4.2–4.5: the expression's computation graph as a forward trace w1 … wn (inputs
first, then every operation in the order Python evaluates it), then the
adjoints w̄ᵢ = ∂f/∂wᵢ in reverse order, each with the chain-rule step that
produced it, summing over every path, and finally ∂f/∂xᵢ as a formula in the
inputs, checked against autodiff. The expression is parsed with ``ast`` and
only a whitelist of node types is accepted (numbers, names, + - * / **, unary
minus and calls of sin cos tan exp log sqrt tanh sigmoid relu abs); nothing is
ever passed to eval or exec.

How the code is laid out: ``explain_network`` checks its arguments into a
``NetworkSpec``, ``network_numbers(spec)`` computes every number it prints
(``NetworkNumbers``), and one renderer per numbered section turns those into lines.
Each operation an expression may use is one ``_Operation`` record (its NumPy value,
retrograd op, formula and local partials) that the parser, the printer, the chain
rule and the autodiff check all read; the activations are ``retrograd.classic``'s.
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import autodiff, classic, ops
from .check import central_differences
from .classic.functions import ACTIVATIONS, LOSSES
from .classic.functions import derivative as _g_prime
from .classic.functions import get as activation_record
from .classic.functions import loss_value as _loss_value
from .classic.functions import sigmoid as _sigmoid
from .errors import RetrogradError
from .nn import RNN
from .tensor import Tensor, tensor

__all__ = ["ExplainError", "explain_network", "explain_expression", "network_weights",
           "NetworkSpec", "NetworkNumbers", "network_numbers", "parse_expression", "parse_point",
           "parse_numbers", "FUNCTIONS"]


class ExplainError(RetrogradError):
    """A network or an expression that cannot be explained (one line for the CLI)."""


def _n(v) -> str:
    """A number as printed: 7 significant digits, no trailing zeros, no "-0"."""
    v = float(v)
    if v == 0:
        return "0"
    return f"{v:.7g}"


def _p(v) -> str:
    """A number as a factor in a product: negative numbers in parentheses."""
    s = _n(v)
    return f"({s})" if s.startswith("-") else s


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


# ====================================================================== networks

# the vocabulary is retrograd.classic's: a hidden unit needs an elementwise f′
HIDDEN_ACTIVATIONS = tuple(n for n in ACTIVATIONS if activation_record(n).elementwise)
OUTPUT_ACTIVATIONS = ACTIVATIONS
NET_LOSSES = LOSSES
MAX_UNITS = 10           # every weight is printed: keep the nets small
# the notes name units i (input), j (hidden), k (output); deeper nets count back from j
_HIDDEN_LETTERS = "jhgedcba"

_LOSS_TEXT = {
    "sse": "E = ½ Σ_k (d_k − o_k)²",
    "mse": "E = (1/K) Σ_k (d_k − o_k)²",
    ("cross_entropy", "softmax"): "E = −Σ_k d_k log o_k",
    ("cross_entropy", "sigmoid"): "E = −Σ_k [d_k log o_k + (1 − d_k) log(1 − o_k)]",
}


def _layer_letters(n_layers):
    """Unit letters per layer: i for the inputs, k for the outputs, j, h, g, … below k."""
    hidden = n_layers - 2
    if hidden > len(_HIDDEN_LETTERS):
        raise ExplainError(f"explain shows at most {len(_HIDDEN_LETTERS)} hidden layers")
    return ["i"] + list(_HIDDEN_LETTERS[:hidden])[::-1] + ["k"]


def network_weights(sizes, seed=0):
    """The weights ``explain`` uses: W (n_in, n_out) and b per layer, drawn from U(−1, 1)
    with ``np.random.default_rng(seed)`` (for each layer W, then b) and rounded to 2 decimals."""
    rng = np.random.default_rng(seed)
    W, b = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        W.append(np.round(rng.uniform(-1, 1, (n_in, n_out)), 2) + 0.0)    # + 0.0: no -0.0
        b.append(np.round(rng.uniform(-1, 1, n_out), 2) + 0.0)
    return W, b


# ---------------------------------------------------------------- the spec

@dataclass(frozen=True)
class NetworkSpec:
    """What ``explain_network`` explains, checked: the layer sizes, f of each layer 1 … L
    (the last is the output's), the loss, the weights' seed, η and the pattern (x, d)."""
    sizes: tuple
    activations: tuple
    loss: str
    seed: int
    lr: float
    x: np.ndarray
    d: np.ndarray

    @property
    def L(self):
        """The number of weight layers (seed 001's L)."""
        return len(self.sizes) - 1

    @property
    def output(self):
        return self.activations[-1]

    @classmethod
    def from_arguments(cls, layers=(2, 2, 1), activation="sigmoid", output=None, loss="sse",
                       seed=0, lr=0.5, x=None, target=None, max_units=MAX_UNITS) -> "NetworkSpec":
        """The spec of ``explain_network``'s arguments, or ExplainError (in the order the
        checks are listed, so the first problem is the one reported). ``max_units`` per
        layer: the printout's limit; the HTML playground draws wider layers."""
        sizes = tuple(int(s) for s in layers)
        _check_size_and_seed(sizes, seed, max_units)
        output = _check_functions(sizes[-1], activation, output, loss)
        if not (lr > 0 and math.isfinite(lr)):
            raise ExplainError(f"the learning rate must be positive, got {lr}")
        x, d = _check_pattern(sizes, output, loss, x, target)
        _layer_letters(len(sizes))
        return cls(sizes, (activation,) * (len(sizes) - 2) + (output,), loss, seed, lr, x, d)


def _check_size_and_seed(sizes, seed, max_units=MAX_UNITS):
    if len(sizes) < 2 or min(sizes) < 1:
        raise ExplainError(f"--layers needs an input and an output size, all positive, e.g. 2-2-1; "
                           f"got {'-'.join(map(str, sizes)) or 'none'}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ExplainError(f"--seed must be a non-negative integer, got {seed}")
    if max(sizes) > max_units:
        raise ExplainError(f"explain shows every weight: use at most {max_units} units per layer")


def _check_functions(K, activation, output, loss):
    """The output activation (its default filled in) for K output units, after checking
    the hidden one, the loss and how they pair."""
    if activation not in HIDDEN_ACTIVATIONS:
        raise ExplainError(f"unknown activation {activation!r}; choose one of "
                           f"{', '.join(HIDDEN_ACTIVATIONS)}")
    if loss not in NET_LOSSES:
        raise ExplainError(f"unknown loss {loss!r}; choose one of {', '.join(NET_LOSSES)}")
    if output is None:
        output = ("softmax" if K > 1 else "sigmoid") if loss == "cross_entropy" else activation
    if output not in OUTPUT_ACTIVATIONS:
        raise ExplainError(f"unknown output activation {output!r}; choose one of "
                           f"{', '.join(OUTPUT_ACTIVATIONS)}")
    if output == "softmax" and K < 2:
        raise ExplainError("a softmax over one output unit is always 1: use at least 2 outputs")
    if loss == "cross_entropy" and output not in ("softmax", "sigmoid"):
        raise ExplainError(f"cross_entropy needs a softmax or sigmoid output, not {output}")
    return output


def _check_pattern(sizes, output, loss, x, target):
    """(x, d) as float vectors; by default x = (1, 0, 1, …) and d = 1 or the first class."""
    K = sizes[-1]
    if x is None:
        x = [(1.0, 0.0)[i % 2] for i in range(sizes[0])]
    if target is None:
        target = [1.0] if K == 1 else [1.0] + [0.0] * (K - 1)
    x, d = _vector(x, sizes[0], "--input"), _vector(target, K, "--target")
    if loss == "cross_entropy":
        if np.any((d < 0) | (d > 1)):
            raise ExplainError("cross_entropy targets must lie in [0, 1]")
        if output == "softmax" and not np.isclose(d.sum(), 1.0):
            raise ExplainError("with a softmax output the targets must sum to 1 (e.g. 1,0)")
    return x, d


def _vector(v, n, what):
    v = np.atleast_1d(np.asarray(v, dtype=float))
    if v.ndim != 1 or len(v) != n:
        raise ExplainError(f"{what} needs {n} value{'s' if n != 1 else ''}, got {len(v)}")
    if not np.all(np.isfinite(v)):
        raise ExplainError(f"{what} must be finite numbers")
    return v


# ---------------------------------------------------------------- the numbers

@dataclass
class GradientCheck:
    """∂E/∂p for one kind of parameter (weights or biases), one array per layer: by hand
    (retrograd.classic), by autodiff and by central differences, and which ones agree."""
    by_hand: list
    autodiff: list
    finite_differences: list
    autodiff_ok: list = field(init=False)
    finite_differences_ok: list = field(init=False)

    def __post_init__(self):
        # autodiff does the same float64 arithmetic in another order, so it agrees to
        # rounding; central differences carry truncation and rounding error, hence looser
        self.autodiff_ok = [np.isclose(g, a, rtol=1e-9, atol=1e-12)
                            for g, a in zip(self.by_hand, self.autodiff)]
        self.finite_differences_ok = [np.isclose(g, f, rtol=1e-5, atol=1e-8)
                                      for g, f in zip(self.by_hand, self.finite_differences)]


@dataclass
class NetworkNumbers:
    """Every number ``explain_network`` prints. Layer l (1 … L) is index l−1 of ``net``,
    ``delta``, ``f_prime``; ``o[l]`` are its outputs and ``o[0] = x``. δ has seed 002's
    sign, −∂E/∂net."""
    W: list
    b: list
    net: list
    o: list
    E: float
    delta: list
    f_prime: list                 # f′(net) of each layer; None for a softmax output
    grad_W: GradientCheck
    grad_b: GradientCheck
    new_W: list                   # w + η·δ_t·o_u
    new_b: list
    E_after: float
    softmax_e: np.ndarray | None  # e = −∂E/∂o, for a softmax output under sse or mse
    relu_kinks: list              # (layer l, unit t) where a relu's net is exactly 0


def network_numbers(spec: NetworkSpec, W=None, b=None) -> NetworkNumbers:
    """One pattern's forward pass, deltas, gradients (checked) and update, from
    ``retrograd.classic``'s hand-written equations; at the weights W, b (default:
    ``network_weights(spec.sizes, spec.seed)``, as printed)."""
    if W is None:
        W, b = network_weights(spec.sizes, spec.seed)
    acts, x, d, L = list(spec.activations), spec.x, spec.d, spec.L
    r = classic.backprop(W, b, acts, x, d, loss=spec.loss)
    net, o = r.z, r.a
    delta = [-v for v in r.delta]            # seed 002's δ = −∂E/∂net
    f_prime = [_g_prime(f, net[l], o[l + 1]) if activation_record(f).elementwise else None
               for l, f in enumerate(acts)]
    ad_W, ad_b = _autodiff_grads(W, b, acts, x, d, spec.loss)
    fd_W, fd_b = _finite_difference_grads([w.copy() for w in W], [v.copy() for v in b], acts, x,
                                          d, spec.loss)
    new_W = [W[l] + spec.lr * delta[l] * o[l][:, None] for l in range(L)]
    new_b = [b[l] + spec.lr * delta[l] for l in range(L)]
    softmax_e = None
    if spec.output == "softmax" and spec.loss != "cross_entropy":
        softmax_e = (d - o[L]) * (1.0 if spec.loss == "sse" else 2.0 / spec.sizes[-1])
    kinks = [(l + 1, t) for l in range(L) if acts[l] == "relu"
             for t in range(spec.sizes[l + 1]) if net[l][t] == 0]
    return NetworkNumbers(
        W, b, net, o, _pattern_loss(spec, o[L]), delta, f_prime,
        GradientCheck(r.grad_W, ad_W, fd_W), GradientCheck(r.grad_b, ad_b, fd_b), new_W, new_b,
        _pattern_loss(spec, classic.forward(new_W, new_b, acts, x[None, :]).a[-1][0]),
        softmax_e, kinks)


def _pattern_loss(spec, o_out):
    return float(_loss_value(spec.loss, o_out[None, :], spec.d[None, :], spec.output)[0])


def _traced_activation(name, z):
    """f(z) in retrograd's ops: sigmoid, tanh and relu are ops of the same name."""
    if name == "identity":
        return z
    if name == "softmax":
        return ops.softmax(z, axis=-1)
    return getattr(ops, name)(z)


def _autodiff_grads(W, b, acts, x, d, loss):
    """∂E/∂W and ∂E/∂b from retrograd's autodiff engine (float64)."""
    Wt = [tensor(w, requires_grad=True) for w in W]
    bt = [tensor(v, requires_grad=True) for v in b]
    a = tensor(x)
    for w, v, f in zip(Wt, bt, acts):
        a = _traced_activation(f, a @ w + v)
    y = tensor(d)
    if loss == "sse":
        E = 0.5 * ((y - a) ** 2).sum()
    elif loss == "mse":
        E = ((y - a) ** 2).mean()
    elif acts[-1] == "softmax":
        E = -(y * ops.log(a)).sum()
    else:
        E = -(y * ops.log(a) + (1 - y) * ops.log(1 - a)).sum()
    grads = autodiff.grad(E, Wt + bt)
    return [g.numpy() for g in grads[:len(W)]], [g.numpy() for g in grads[len(W):]]


def _finite_difference_grads(W, b, acts, x, d, loss, eps=1e-6):
    """Central differences (E(w + ε) − E(w − ε)) / 2ε for every weight and bias."""
    def E():
        a = classic.forward(W, b, acts, x[None, :]).a[-1]
        return float(_loss_value(loss, a, d[None, :], acts[-1])[0])

    return [[central_differences(E, p, eps).reshape(p.shape) for p in arrays] for arrays in (W, b)]


# ---------------------------------------------------------------- the text

class _Names:
    """Units, weights and biases in the notes' names: layer l (0 = input), unit n."""
    def __init__(self, n_layers):
        self.letters = _layer_letters(n_layers)

    def unit(self, l, n):
        return f"{self.letters[l]}{n + 1}"

    def weight(self, l, u, t):
        """The weight of layer l+1 from unit u (of layer l) to unit t."""
        return f"w({self.unit(l + 1, t)}←{self.unit(l, u)})"

    def bias(self, l, t):
        return f"b({self.unit(l + 1, t)})"


def _columns(rows):
    """Rows of cells as lines, every column but the last padded to its widest cell."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    return ["  " + "   ".join([c.ljust(w) for c, w in zip(row, widths)] + [row[-1]])
            for row in rows]


def _vec(v):
    return "(" + ", ".join(_n(e) for e in v) + ")"


def _header(spec, nums, names):
    sizes = spec.sizes
    units = lambda l: " ".join(names.unit(l, n) for n in range(sizes[l]))
    desc = [f"input {units(0)}"] + [
        f"{'output' if l == spec.L else 'hidden'} {units(l)} ({spec.activations[l - 1]})"
        for l in range(1, spec.L + 1)]
    loss_text = _LOSS_TEXT.get((spec.loss, spec.output), _LOSS_TEXT.get(spec.loss))
    lines = [f"retrograd explain: one step of back-propagation on a {'-'.join(map(str, sizes))} "
             "network (seed 002, the generalized delta rule)",
             "  units: " + " → ".join(desc),
             f"  loss {loss_text}   ({spec.loss}),   learning rate η = {_n(spec.lr)}",
             f"  pattern x = {_vec(spec.x)},   target d = {_vec(spec.d)}",
             "  weights w(t←u) into unit t from unit u, and biases b(t) (the weight from a unit "
             "whose o is always 1),",
             f"  drawn from U(−1, 1) with seed {spec.seed} and rounded to 2 decimals:"]
    for l in range(spec.L):
        for t in range(sizes[l + 1]):
            parts = [f"{names.weight(l, u, t)} = {_n(nums.W[l][u, t])}" for u in range(sizes[l])]
            lines.append("    " + "   ".join(parts + [f"{names.bias(l, t)} = {_n(nums.b[l][t])}"]))
    return lines + [
        "  δ_t = −∂E/∂net_t, the sign of seed 002 (seed 001's δ = ∂J/∂z is its negative), so",
        "  ∂E/∂w(t←u) = −δ_t·o_u and the update w + η·δ_t·o_u is w − η·∂E/∂w."]


def _forward_section(number, spec, nums, names):
    W, b, net, o = nums.W, nums.b, nums.net, nums.o
    lines = [f"{number}. forward pass: net_t = Σ_u w(t←u)·o_u + b(t),   o_t = f(net_t)"]
    lines += [f"  o_{names.unit(0, n)} = x{n + 1} = {_n(spec.x[n])}" for n in range(spec.sizes[0])]
    rows = []
    for l in range(1, spec.L + 1):
        for t in range(spec.sizes[l]):
            terms = " + ".join(f"{_p(W[l - 1][u, t])}·{_p(o[l - 1][u])}"
                               for u in range(spec.sizes[l - 1]))
            unit = names.unit(l, t)
            rows.append((f"net_{unit} = {terms} + {_p(b[l - 1][t])} = {_n(net[l - 1][t])}",
                         f"o_{unit} = {spec.activations[l - 1]}(net_{unit}) = {_n(o[l][t])}"))
    lines += _columns(rows)
    if spec.output == "softmax":
        lines.append("  (softmax: o_k = e^net_k / Σ_m e^net_m over the output units)")
    return lines + [f"  E = {_n(nums.E)}"]


def _output_delta_section(number, spec, nums, names):
    L, K, f, d, o = spec.L, spec.sizes[-1], spec.output, spec.d, nums.o[spec.L]
    delta = nums.delta[L - 1]
    unit = lambda k: names.unit(L, k)
    scale = "" if spec.loss == "sse" else f"(2/{K})·"
    if spec.loss == "cross_entropy":
        return [f"{number}. output deltas: δ_k = d_k − o_k   (f′(net_k) cancels against ∂E/∂o_k)"
                ] + [f"  δ_{unit(k)} = {_n(d[k])} − {_p(o[k])} = {_n(delta[k])}" for k in range(K)]
    if f == "softmax":
        e = nums.softmax_e
        s = float((e * o).sum())
        return [f"{number}. output deltas: δ_k = o_k·(e_k − Σ_m e_m·o_m),  "
                f"e_k = −∂E/∂o_k = {scale}(d_k − o_k)   (softmax: o_m depends on every net_k)",
                f"  e = ({', '.join(_n(v) for v in e)}),   Σ_m e_m·o_m = {_n(s)}"] + [
                f"  δ_{unit(k)} = {_p(o[k])}·({_n(e[k])} − {_p(s)}) = {_n(delta[k])}"
                for k in range(K)]
    fp = nums.f_prime[L - 1]
    return [f"{number}. output deltas: δ_k = {scale}(d_k − o_k)·f′(net_k),   "
            f"f′ = {activation_record(f).g_prime_text} for {f}"] + [
            f"  δ_{unit(k)} = {scale}({_n(d[k])} − {_p(o[k])})·{_p(fp[k])} = {_n(delta[k])}"
            for k in range(K)]


def _hidden_delta_section(number, spec, nums, names):
    lines = [f"{number}. hidden deltas, back-propagated from the layer above: "
             "δ_j = (Σ_k δ_k·w(k←j))·f′(net_j)"]
    delta = nums.delta
    for l in range(spec.L - 1, 0, -1):              # hidden layer l, fed back from layer l+1
        f = spec.activations[l - 1]
        f_text = f"f′ = {activation_record(f).g_prime_text} for {f}"
        up, here = names.letters[l + 1], names.letters[l]
        if spec.L > 2 or f != spec.output:           # the section's formula says it otherwise
            lines.append(f"  layer {here}: δ_{here} = (Σ_{up} δ_{up}·w({up}←{here}))·"
                         f"f′(net_{here}),   {f_text}")
        else:
            lines.append(f"  {f_text}")
        fp = nums.f_prime[l - 1]
        for j in range(spec.sizes[l]):
            s = " + ".join(f"{_p(delta[l][k])}·{_p(nums.W[l][j, k])}"
                           for k in range(spec.sizes[l + 1]))
            lines.append(f"  δ_{names.unit(l, j)} = ({s})·{_p(fp[j])} = {_n(delta[l - 1][j])}")
    return lines


def _gradient_rows(spec, nums, names):
    """(name, o_u, [by hand, autodiff, finite differences], [autodiff ok, fd ok]) for every
    weight and bias, from the output layer down, each unit's bias after its weights."""
    gW, gb = nums.grad_W, nums.grad_b
    for l in range(spec.L - 1, -1, -1):
        for t in range(spec.sizes[l + 1]):
            for u in range(spec.sizes[l]):
                yield (names.weight(l, u, t), nums.o[l][u], l, t,
                       [g[l][u, t] for g in (gW.by_hand, gW.autodiff, gW.finite_differences)],
                       [ok[l][u, t] for ok in (gW.autodiff_ok, gW.finite_differences_ok)])
            yield (names.bias(l, t), 1.0, l, t,
                   [g[l][t] for g in (gb.by_hand, gb.autodiff, gb.finite_differences)],
                   [ok[l][t] for ok in (gb.autodiff_ok, gb.finite_differences_ok)])


def _gradient_section(number, spec, nums, names):
    rows = []
    for name, o_u, l, t, (g, g_ad, g_fd), (ok_ad, ok_fd) in _gradient_rows(spec, nums, names):
        rows.append((f"∂E/∂{name} = −{_p(nums.delta[l][t])}·{_p(o_u)} = {_n(g)}",
                     f"autodiff {_n(g_ad)} {_mark(ok_ad)}",
                     f"finite differences {_n(g_fd)} {_mark(ok_fd)}"))
    return [f"{number}. gradients ∂E/∂w(t←u) = −δ_t·o_u  (for a bias o_u = 1), each checked "
            "against autodiff and finite differences"] + _columns(rows)


def _update_section(number, spec, nums, names):
    W, b, delta, o, lr = nums.W, nums.b, nums.delta, nums.o, _n(spec.lr)
    lines = [f"{number}. update: w_new = w + η·δ_t·o_u  (= w − η·∂E/∂w),  η = {lr}"]
    for l in range(spec.L - 1, -1, -1):
        for t in range(spec.sizes[l + 1]):
            for u in range(spec.sizes[l]):
                lines.append(f"  {names.weight(l, u, t)} = {_n(W[l][u, t])} + {lr}·"
                             f"{_p(delta[l][t])}·{_p(o[l][u])} = {_n(nums.new_W[l][u, t])}")
            lines.append(f"  {names.bias(l, t)} = {_n(b[l][t])} + {lr}·{_p(delta[l][t])} "
                         f"= {_n(nums.new_b[l][t])}")
    E0, E1 = nums.E, nums.E_after
    trend = "the step went downhill" if E1 < E0 else "the step did not lower E (η too large?)"
    return lines + [f"  after the update E = {_n(E1)} (before: {_n(E0)}): {trend}"]


def _checks_summary(spec, nums, names):
    n_all = sum(g.size for g in nums.grad_W.by_hand + nums.grad_b.by_hand)
    n_ad = sum(int(ok.sum()) for ok in nums.grad_W.autodiff_ok + nums.grad_b.autodiff_ok)
    n_fd = sum(int(ok.sum()) for ok in
               nums.grad_W.finite_differences_ok + nums.grad_b.finite_differences_ok)
    lines = [f"checks: {n_ad} of {n_all} gradients agree with autodiff {_mark(n_ad == n_all)}, "
             f"{n_fd} of {n_all} with finite differences {_mark(n_fd == n_all)}"]
    if nums.relu_kinks:
        kinks = ", ".join(f"net_{names.unit(l, t)}" for l, t in nums.relu_kinks)
        lines.append(f"note: {kinks} = 0 is relu's kink: retrograd (like the notes' code) takes "
                     "relu′(0) = 0, while finite differences see the average of the two slopes "
                     "there")
    return lines


def explain_network(layers=(2, 2, 1), activation="sigmoid", output=None, loss="sse", seed=0,
                    lr=0.5, x=None, target=None) -> str:
    """One step of back-propagation on one pattern, explained; returns the text.

    layers: all layer sizes, e.g. (2, 2, 1) (the default, seed 002's net) or (2, 3, 2).
    activation: f of the hidden units (sigmoid, tanh, relu, identity).
    output: f of the output units; default the same as the hidden ones, except for
        cross_entropy: softmax with several outputs, sigmoid with one.
    loss: "sse" (½ Σ (d − o)², seed 002's E_p), "mse" or "cross_entropy".
    seed: the weights are ``network_weights(layers, seed)``.
    lr: η.  x, target: the pattern; default x = (1, 0, 1, …), d = 1 for one output or
        the first class one-hot -- for the 2-2-1 net, XOR's (1, 0) → 1.
    """
    spec = NetworkSpec.from_arguments(layers, activation, output, loss, seed, lr, x, target)
    nums = network_numbers(spec)
    names = _Names(len(spec.sizes))
    # the numbered sections in seed 002's order; a net without hidden layers has no hidden deltas
    sections = [_forward_section, _output_delta_section,
                *([_hidden_delta_section] if spec.L > 1 else []), _gradient_section,
                _update_section]
    lines = _header(spec, nums, names)
    for number, section in enumerate(sections, 1):
        lines += ["", *section(number, spec, nums, names)]
    lines += ["", *_checks_summary(spec, nums, names)]
    return "\n".join(lines) + "\n"


# ====================================================================== expressions

CONSTANTS = {"pi": math.pi, "e": math.e}
MAX_EXPRESSION = 500       # characters; also keeps ast.parse far from its recursion limit
MAX_NODES = 60

# ---- a tiny symbolic algebra, just enough to print the chain-rule steps readably

_ADD, _MUL, _NEG, _POW, _ATOM = 1, 2, 3, 4, 5


class _S:
    """An expression as text with its precedence; ``const`` when it is a known number."""
    __slots__ = ("text", "prec", "const", "inner", "recip")

    def __init__(self, text, prec=_ATOM, const=None, inner=None, recip=None):
        self.text, self.prec, self.const = text, prec, const
        self.inner = inner          # set on −a: a
        self.recip = recip          # set on 1/a: a


def _num(v):
    v = float(v)
    s = _n(v)
    return _S(s, _NEG if s.startswith("-") else _ATOM, v)


def _var(name):
    return _S(name)


def _wrap(s, prec):
    return f"({s.text})" if s.prec < prec else s.text


def _neg(a):
    if a.const is not None:
        return _num(-a.const)
    if a.inner is not None:
        return a.inner
    return _S("−" + _wrap(a, _MUL), _NEG, inner=a)        # −a·b needs no parentheses


def _add(a, b):
    if a.const == 0:
        return b
    if b.const == 0:
        return a
    if a.const is not None and b.const is not None:
        return _num(a.const + b.const)
    if b.inner is not None:
        return _sub(a, b.inner)
    return _S(f"{_wrap(a, _ADD)} + {_wrap(b, _ADD)}", _ADD)


def _sub(a, b):
    if b.const == 0:
        return a
    if a.const == 0:
        return _neg(b)
    if a.const is not None and b.const is not None:
        return _num(a.const - b.const)
    return _S(f"{_wrap(a, _ADD)} − {_wrap(b, _ADD + 1)}", _ADD)


def _mul(a, b):
    if a.const == 0 or b.const == 0:
        return _num(0)
    if a.const == 1:
        return b
    if b.const == 1:
        return a
    if a.const is not None and b.const is not None:
        return _num(a.const * b.const)
    if a.const == -1:
        return _neg(b)
    if b.const == -1:
        return _neg(a)
    if b.const is not None and a.const is None:        # numbers first: 2·x, not x·2
        a, b = b, a
    if a.inner is not None:                            # (−a)·b = −(a·b)
        return _neg(_mul(a.inner, b))
    if b.inner is not None:
        return _neg(_mul(a, b.inner))
    if b.recip is not None:                            # a·(1/b) = a/b
        return _div(a, b.recip)
    if a.recip is not None:
        return _div(b, a.recip)
    return _S(f"{_wrap(a, _MUL)}·{_wrap(b, _MUL)}", _MUL)


def _div(a, b):
    if b.const == 1:
        return a
    if a.const == 0:
        return _num(0)
    if a.inner is not None:
        return _neg(_div(a.inner, b))
    return _S(f"{_wrap(a, _MUL)}/{_wrap(b, _MUL + 1)}", _MUL, recip=b if a.const == 1 else None)


def _pow(a, b):
    if b.const == 1:
        return a
    if b.const == 0:
        return _num(1)
    return _S(f"{_wrap(a, _POW + 1)}^{_wrap(b, _POW)}", _POW)


def _call(fn, a):
    return _S(f"{fn}({a.text})")


# ---- the operations: one record each, read by the parser, the evaluator, the printer,
# ---- the chain rule and the autodiff check

@dataclass(frozen=True)
class _Operation:
    """Everything explain knows about one operation of an expression.

    value: its NumPy form, the first operand a np.float64 (the forward trace);
    traced: the same in retrograd's ops, on tensors (the autodiff check);
    formula: the same on _S formulas (the printed algebra);
    partials(A, [B,] a, [b]): [(∂/∂operand as a _S, its value)] for each operand, given
        the operands as formulas A, B and as numbers a, b;
    symbol: the infix symbol of a binary operator, or the prefix of neg;
    syntax: the ast operator class it is written with (None for a function call)."""
    name: str
    value: Callable
    traced: Callable
    formula: Callable
    partials: Callable
    symbol: str = ""
    syntax: type | None = None

    def show(self, operands):
        """The operation written with the given operand texts: "w1 + w2", "−w1", "sin(w1)"."""
        if len(operands) == 2:
            return self.symbol.join(operands)
        if self.symbol:
            return self.symbol + operands[0]
        return f"{self.name}({operands[0]})"


def _div_partials(A, B, a, b):
    return [(_div(_num(1), B), 1.0 / b), (_neg(_div(A, _pow(B, _num(2)))), -a / b ** 2)]


def _pow_partials(A, B, a, b):
    exp_minus_1 = _num(B.const - 1) if B.const is not None else _sub(B, _num(1))
    return [(_mul(B, _pow(A, exp_minus_1)), b * np.float64(a) ** (b - 1)),
            (_mul(_pow(A, B), _call("log", A)), np.float64(a) ** b * np.log(a))]


_OPERATORS = (
    _Operation("add", lambda a, b: a + b, lambda p, q: p + q, _add,
               lambda A, B, a, b: [(_num(1), 1.0), (_num(1), 1.0)], " + ", ast.Add),
    _Operation("sub", lambda a, b: a - b, lambda p, q: p - q, _sub,
               lambda A, B, a, b: [(_num(1), 1.0), (_num(-1), -1.0)], " − ", ast.Sub),
    _Operation("mul", lambda a, b: a * b, lambda p, q: p * q, _mul,
               lambda A, B, a, b: [(B, b), (A, a)], "·", ast.Mult),
    _Operation("div", lambda a, b: a / b, lambda p, q: p / q, _div, _div_partials, "/", ast.Div),
    _Operation("pow", lambda a, b: a ** b, lambda p, q: p ** q, _pow, _pow_partials, "^", ast.Pow),
    _Operation("neg", lambda a: -a, lambda p: -p, _neg, lambda A, a: [(_num(-1), -1.0)], "−",
               ast.USub),
)


def _function(name, value, traced, partial):
    """A function f(a) of one operand; ``partial(A, a)`` is f′ as a formula and a number."""
    return _Operation(name, value, traced, lambda A: _call(name, A),
                      lambda A, a: [partial(A, a)])


def _sigmoid_partial(A, a):
    s, v = _call("sigmoid", A), _sigmoid(a)
    return _mul(s, _S(f"(1 − {s.text})")), v * (1 - v)


_FUNCTIONS = (
    _function("sin", np.sin, ops.sin, lambda A, a: (_call("cos", A), np.cos(a))),
    _function("cos", np.cos, ops.cos, lambda A, a: (_neg(_call("sin", A)), -np.sin(a))),
    # retrograd has no tan op: the check differentiates sin/cos
    _function("tan", np.tan, lambda t: ops.sin(t) / ops.cos(t),
              lambda A, a: (_div(_num(1), _pow(_call("cos", A), _num(2))), 1.0 / np.cos(a) ** 2)),
    _function("exp", np.exp, ops.exp, lambda A, a: (_call("exp", A), np.exp(a))),
    _function("log", np.log, ops.log, lambda A, a: (_div(_num(1), A), 1.0 / a)),
    _function("sqrt", np.sqrt, ops.sqrt,
              lambda A, a: (_div(_num(1), _mul(_num(2), _call("sqrt", A))), 0.5 / np.sqrt(a))),
    _function("tanh", np.tanh, ops.tanh,
              lambda A, a: (_sub(_num(1), _pow(_call("tanh", A), _num(2))), 1.0 - np.tanh(a) ** 2)),
    _function("sigmoid", _sigmoid, ops.sigmoid, _sigmoid_partial),
    _function("relu", lambda v: np.maximum(v, 0.0), ops.relu,
              lambda A, a: (_S(f"[{A.text} > 0]"), float(a > 0))),
    _function("abs", np.abs, ops.abs, lambda A, a: (_call("sign", A), float(np.sign(a)))),
)
_OPERATIONS = {op.name: op for op in _OPERATORS + _FUNCTIONS}
FUNCTIONS = tuple(op.name for op in _FUNCTIONS)
_SYNTAX = {op.syntax: op.name for op in _OPERATORS}


_FORBIDDEN = {ast.Attribute: "attribute access", ast.Lambda: "lambda", ast.Subscript: "indexing",
              ast.Compare: "comparisons", ast.BoolOp: "and/or", ast.IfExp: "if-else",
              ast.Starred: "*arguments", ast.keyword: "keyword arguments",
              ast.NamedExpr: "assignment (:=)", ast.JoinedStr: "f-strings"}


@dataclass
class _Node:
    """One wᵢ of the graph: an input (op "input") or an operation on earlier nodes and
    constants (floats)."""
    index: int
    op: str
    args: list
    value: float
    var: str | None = None

    @property
    def name(self):
        return f"w{self.index}"


def _bad(node, why=None):
    what = why or _FORBIDDEN.get(type(node)) or type(node).__name__
    raise ExplainError(f"--expr: not allowed: {what}; use numbers, variables, + - * / **, "
                       f"unary minus and the functions {' '.join(FUNCTIONS)}")


def parse_expression(text: str, values: dict):
    """Parse ``text`` into the list of graph nodes w1 … wn (inputs first, in the order of
    ``values``), evaluated at ``values``. Only whitelisted syntax is accepted."""
    if not isinstance(text, str) or not text.strip():
        raise ExplainError("--expr: the expression is empty")
    if len(text) > MAX_EXPRESSION:
        raise ExplainError(f"--expr: the expression is longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ExplainError(f"--expr: not a valid expression: {e.msg} in {text.strip()!r}") from None
    except (ValueError, RecursionError, MemoryError):
        raise ExplainError(f"--expr: cannot parse {text.strip()!r}") from None
    parser = _Parser(values)
    with np.errstate(all="ignore"):
        result = parser.walk(tree.body)
    if not isinstance(result, _Node) or not parser.used:
        raise ExplainError("--expr: the expression does not depend on any variable")
    unused = [v for v in values if v not in parser.used]
    if unused:
        raise ExplainError(f"--at gives {', '.join(unused)}, which the expression does not use")
    return parser.nodes, result


class _Parser:
    """Turns a whitelisted ``ast`` into nodes, evaluating each as it goes; an operation on
    constants only is folded into its value (a float)."""

    def __init__(self, values):
        self.nodes = [_Node(i + 1, "input", [], float(v), var=name)
                      for i, (name, v) in enumerate(values.items())]
        self.inputs = {n.var: n for n in self.nodes}
        self.used = set()

    def make(self, op, args):
        if len(self.nodes) >= MAX_NODES:
            raise ExplainError(f"--expr: more than {MAX_NODES} operations; explain is for small "
                               "expressions")
        value = _evaluate(op, [a.value if isinstance(a, _Node) else a for a in args])
        if all(not isinstance(a, _Node) for a in args):      # constants only: fold
            return value
        node = _Node(len(self.nodes) + 1, op, args, value)
        if not math.isfinite(value):
            shown = _op_text(node, lambda a: _n(a.value) if isinstance(a, _Node) else _n(a))
            raise ExplainError(f"--expr: {shown} is not a finite number at the given point")
        self.nodes.append(node)
        return node

    def walk(self, node):
        """The node or constant an ``ast`` node evaluates to (ExplainError if not allowed).
        The operations recurse here, one frame per level, so that the deepest expression
        MAX_EXPRESSION allows stays below Python's recursion limit."""
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
            return self.walk(node.operand)
        if isinstance(node, ast.BinOp):             # each op is checked before its operands
            return self.make(self.operator(node), [self.walk(node.left), self.walk(node.right)])
        if isinstance(node, ast.UnaryOp):
            return self.make(self.operator(node), [self.walk(node.operand)])
        if isinstance(node, ast.Call):
            return self.make(self.function(node), [self.walk(node.args[0])])
        _bad(node)

    def constant(self, node):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            _bad(node, f"the constant {node.value!r}")
        try:
            return float(node.value)
        except OverflowError:
            raise ExplainError("--expr: a number in the expression is too large") from None

    def name(self, node):
        if node.id in self.inputs:
            self.used.add(node.id)
            return self.inputs[node.id]
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if node.id in FUNCTIONS:
            raise ExplainError(f"--expr: {node.id} is a function: write {node.id}(...)")
        if node.id.startswith("_"):          # no hint to give a value to __import__ and the like
            raise ExplainError(f"--expr: unknown name {node.id!r}")
        raise ExplainError(f"--expr: unknown name {node.id!r}; give its value with --at "
                           f"{node.id}=...")

    def operator(self, node):
        """The operation a BinOp or a UnaryOp (other than unary plus) is written with."""
        op = _SYNTAX.get(type(node.op))
        if op is None:
            _bad(node, f"the operator {type(node.op).__name__}")
        return op

    def function(self, node):
        """The name of the function a call calls, once the call is checked."""
        if not isinstance(node.func, ast.Name):
            _bad(node.func)
        if node.func.id not in FUNCTIONS:
            raise ExplainError(f"--expr: unknown function {node.func.id!r}; the functions are "
                               f"{' '.join(FUNCTIONS)}")
        if node.keywords:
            _bad(node.keywords[0])
        if len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
            raise ExplainError(f"--expr: {node.func.id} takes exactly one argument")
        return node.func.id


def _evaluate(op, v):
    return float(_OPERATIONS[op].value(np.float64(v[0]), *v[1:]))


def _op_text(node, name):
    """The node's operation, with operands rendered by ``name``: "sin(w1)", "w1·w2"."""
    return _OPERATIONS[node.op].show([name(x) for x in node.args])


def _node_formula(node, sym):
    """The node's operation as a _S, operands rendered by ``sym``."""
    return _OPERATIONS[node.op].formula(*[sym(x) for x in node.args])


def _chain_term(bar, s):
    """One term w̄_k·∂w_k/∂wᵢ of the chain rule, with the partial ``s`` written out."""
    if s.const == 1:
        return bar
    if s.const == -1:
        return "−" + bar
    if s.inner is not None:
        return "−" + bar + "·" + _wrap(s.inner, _MUL)
    return bar + "·" + _wrap(s, _MUL)


def _sum_text(terms):
    text = terms[0]
    for t in terms[1:]:
        text += f" − {t[1:]}" if t.startswith("−") else f" + {t}"
    return text


def _local_partials(node, sym):
    """[(position, ∂node/∂operand as a _S, its value)] for the operands that are nodes;
    ``sym(arg)`` renders an operand (a node or a constant) as a _S."""
    formulas = [sym(a) for a in node.args]
    values = [a.value if isinstance(a, _Node) else a for a in node.args]
    with np.errstate(all="ignore"):
        parts = _OPERATIONS[node.op].partials(*formulas, *values)
    return [(i, s, float(v)) for i, (s, v) in enumerate(parts) if isinstance(node.args[i], _Node)]


def _autodiff_expression(nodes, out_node):
    """∂f/∂x for the inputs by retrograd's autodiff engine, replaying the graph with its ops."""
    t = {}
    ins = [n for n in nodes if n.op == "input"]
    for n in nodes:
        if n.op == "input":
            t[n.index] = tensor(np.float64(n.value), requires_grad=True)
            continue
        a = [t[x.index] if isinstance(x, _Node) else x for x in n.args]
        if not isinstance(a[0], Tensor):            # a constant on the left: 2**x
            a[0] = tensor(np.float64(a[0]))
        t[n.index] = _OPERATIONS[n.op].traced(*a)
    grads = autodiff.grad(t[out_node.index], [t[n.index] for n in ins], allow_unused=True)
    return [0.0 if g is None else float(g.item()) for g in grads]


def _trace_section(expr, nodes, f):
    """The title and the forward trace: the inputs, then each operation wᵢ with its value."""
    ins = [n for n in nodes if n.op == "input"]
    point = ", ".join(f"{n.var} = {_n(n.value)}" for n in ins)
    lines = [f"retrograd explain: reverse-mode autodiff of f({', '.join(n.var for n in ins)}) = "
             f"{expr.strip()} at {point}",
             "(seed 001 §4.2–4.5: the computation graph, forward propagation of values, "
             "back propagation of adjoints)",
             "",
             "forward trace: the inputs, then each operation as a node wᵢ with its value"]
    wname = lambda a: a.name if isinstance(a, _Node) else _n(a)
    wval = lambda a: _p(a.value) if isinstance(a, _Node) else _p(a)
    rows = [(f"w{n.index} = {n.var}", f"= {_n(n.value)}") if n.op == "input" else
            (f"w{n.index} = {_op_text(n, wname)}", f"= {_op_text(n, wval)} = {_n(n.value)}")
            for n in nodes]
    return lines + _columns(rows) + [f"  f = {f.name} = {_n(f.value)}"]


def _uses(nodes):
    """For each wᵢ, the nodes w_k that use it, in the forward order, with ∂w_k/∂wᵢ:
    {i: [(w_k, the partial in terms of the w's, its value)]} and {i: [(w_k, the partial in
    terms of the inputs)]}; one entry per use, so x·x lists w_k twice."""
    consumers = {n.index: [] for n in nodes}
    x_terms = {n.index: [] for n in nodes}
    sym_x = {}                                         # wᵢ as a formula in the inputs
    for n in nodes:
        if n.op == "input":
            sym_x[n.index] = _var(n.var)
            continue
        to_x = lambda a: sym_x[a.index] if isinstance(a, _Node) else _num(a)
        to_w = lambda a: _var(a.name) if isinstance(a, _Node) else _num(a)
        sym_x[n.index] = _node_formula(n, to_x)
        for (i, s_w, v), (_, s_x, _) in zip(_local_partials(n, to_w), _local_partials(n, to_x)):
            consumers[n.args[i].index].append((n, s_w, v))
            x_terms[n.args[i].index].append((n, s_x))
    return consumers, x_terms


def _adjoint_line(n, uses, bar):
    """w̄ᵢ's line: the chain rule in general, with the partials written out, in numbers."""
    generic = " + ".join(f"w̄{k.index}·∂w{k.index}/∂w{n.index}" for k, _, _ in uses)
    concrete = _sum_text([_chain_term(f"w̄{k.index}", s) for k, s, _ in uses])
    line = f"  w̄{n.index} = {generic}"
    if concrete != generic:
        line += f" = {concrete}"
    if len(uses) > 1 or uses[0][2] != 1:          # the numbers, unless it is just w̄_k·1
        line += " = " + " + ".join(f"{_p(bar[k.index])}·{_p(v)}" for k, _, v in uses)
    line += f" = {_n(bar[n.index])}"
    if len(uses) > 1:
        line += f"   ({len(uses)} paths summed)"
    return line


def _adjoint_section(nodes, f):
    """The adjoints in reverse order: (lines, {i: w̄ᵢ}, {i: w̄ᵢ as a formula in the inputs})."""
    lines = ["", "adjoints w̄ᵢ = ∂f/∂wᵢ in reverse order: w̄ᵢ = Σ_k w̄_k·∂w_k/∂wᵢ over the nodes "
             "w_k that use wᵢ (one term per path)"]
    consumers, x_terms = _uses(nodes)
    bar = {f.index: 1.0}                       # the grad-table: wᵢ -> w̄ᵢ
    bar_x = {f.index: _num(1)}
    for n in reversed(nodes):
        uses = consumers[n.index]
        if n.index == f.index:
            lines.append(f"  w̄{n.index} = ∂f/∂f = 1")
        elif not uses:
            bar[n.index], bar_x[n.index] = 0.0, _num(0)
            lines.append(f"  w̄{n.index} = 0   (f does not depend on w{n.index})")
        else:
            bar[n.index] = float(sum(bar[k.index] * v for k, _, v in uses))
            sx = _num(0)
            for k, s in x_terms[n.index]:
                sx = _add(sx, _mul(bar_x[k.index], s))
            bar_x[n.index] = sx
            lines.append(_adjoint_line(n, uses, bar))
    return lines, bar, bar_x


def _expression_gradient_section(nodes, f, bar, bar_x):
    """∂f/∂xᵢ = w̄ᵢ of each input, as a formula and a number, checked against autodiff."""
    lines = ["", "gradient, checked against retrograd's autodiff:"]
    ins = [n for n in nodes if n.op == "input"]
    for n, g_ad in zip(ins, _autodiff_expression(nodes, f)):
        g = bar[n.index]
        ok = bool(np.isclose(g, g_ad, rtol=1e-12, atol=1e-14))
        formula, value = bar_x[n.index].text, _n(g)
        shown = f"{formula} = {value}" if formula != value else value
        lines.append(f"  ∂f/∂{n.var} = w̄{n.index} = {shown}   autodiff {_n(g_ad)} {_mark(ok)}")
    return lines


def explain_expression(expr: str, at) -> str:
    """Reverse-mode autodiff of ``expr`` at the point ``at`` (a dict such as
    {"x1": 2, "x2": 5}, or the text "x1=2,x2=5"), explained as in seed 001 §4.5."""
    values = parse_point(at) if isinstance(at, str) else {str(k): float(v) for k, v in at.items()}
    nodes, f = parse_expression(expr, values)
    adjoint_lines, bar, bar_x = _adjoint_section(nodes, f)
    lines = (_trace_section(expr, nodes, f) + adjoint_lines
             + _expression_gradient_section(nodes, f, bar, bar_x))
    return "\n".join(lines) + "\n"


def parse_point(text: str) -> dict:
    """"x1=2,x2=5" -> {"x1": 2.0, "x2": 5.0}, in the given order."""
    values = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not name:
            raise ExplainError(f"--at: expected name=value pairs like x1=2,x2=5, got {part!r}")
        if not name.isidentifier():
            raise ExplainError(f"--at: {name!r} is not a variable name")
        if name in FUNCTIONS or name in CONSTANTS:
            kind = "function" if name in FUNCTIONS else "constant"
            raise ExplainError(f"--at: {name} is a {kind}, not a variable")
        if name in values:
            raise ExplainError(f"--at: {name} is given twice")
        try:
            v = float(value)
        except ValueError:
            raise ExplainError(f"--at: {name}={value.strip()!r} is not a number") from None
        if not math.isfinite(v):
            raise ExplainError(f"--at: {name} must be a finite number")
        values[name] = v
    if not values:
        raise ExplainError("--at: give the point, e.g. --at x1=2,x2=5")
    return values


def parse_numbers(text: str, what: str = "--input") -> list:
    """"1,0" -> [1.0, 0.0] (for --input and --target)."""
    try:
        values = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ExplainError(f"{what}: expected numbers like 1,0, got {text!r}") from None
    if not values:
        raise ExplainError(f"{what}: expected numbers like 1,0, got {text!r}")
    return values


# ====================================================================== recurrent nets (BPTT)

RNN_SIZES = (2, 2, 3)          # inputs, hidden units, time steps: every number is printed


@dataclass
class RNNNumbers:
    """Every number ``explain_rnn`` prints. Time steps t = 1 … T are index t of ``h``
    (``h[0]`` = h_0 = 0) and index t−1 of ``x``, ``y``, ``z``, ``delta``; δ_t = ∂J/∂z_t
    (seed 001's sign). ``checks`` maps a printed quantity to (by hand, autodiff, finite
    differences or None)."""
    Wx: np.ndarray             # (hidden, inputs): z_t = W_x x_t + W_h h_{t−1} + b
    Wh: np.ndarray
    b: np.ndarray
    x: np.ndarray              # (T, inputs)
    y: np.ndarray              # (T, hidden): the targets of h_t
    z: np.ndarray
    h: np.ndarray              # (T + 1, hidden)
    J: float
    dJdh: np.ndarray           # ∂J/∂h_t through the loss at step t only: h_t − y_t
    carried: np.ndarray        # W_hᵀ δ_{t+1}: what flows back from step t + 1 (0 at t = T)
    delta: np.ndarray
    terms: dict                # "W_h", "W_x", "b" -> the per-step terms of the sum
    checks: dict = field(default_factory=dict)


def rnn_numbers(seed=0) -> RNNNumbers:
    """BPTT by hand (NumPy, float64) for the 3-step RNN, checked against retrograd's
    autodiff (rg.nn.RNN, and an unrolled graph for the δs) and central differences."""
    n_in, n_h, T = RNN_SIZES
    rng = np.random.default_rng(seed)
    draw = lambda *shape: np.round(rng.uniform(-1, 1, shape), 2) + 0.0    # + 0.0: no -0.0
    Wx, Wh, b, x, y = draw(n_h, n_in), draw(n_h, n_h), draw(n_h), draw(T, n_in), draw(T, n_h)
    h, z = np.zeros((T + 1, n_h)), np.zeros((T, n_h))
    for t in range(T):                                   # forward, unrolled
        z[t] = Wx @ x[t] + Wh @ h[t] + b
        h[t + 1] = np.tanh(z[t])
    J = 0.5 * float(((h[1:] - y) ** 2).sum())
    dJdh, carried, delta = h[1:] - y, np.zeros((T, n_h)), np.zeros((T, n_h))
    for t in range(T - 1, -1, -1):                       # backward through time
        if t < T - 1:
            carried[t] = Wh.T @ delta[t + 1]
        delta[t] = (dJdh[t] + carried[t]) * (1 - h[t + 1] ** 2)
    terms = {"W_h": [np.outer(delta[t], h[t]) for t in range(T)],
             "W_x": [np.outer(delta[t], x[t]) for t in range(T)],
             "b": [delta[t] for t in range(T)]}
    nums = RNNNumbers(Wx, Wh, b, x, y, z, h, J, dJdh, carried, delta, terms)
    _rnn_checks(nums)
    return nums


def _rnn_loss_by_layer(Wx, Wh, b, h0, x, y):
    """J computed by rg.nn.RNN(2, 2) with these weights (stored (in, out): W_xᵀ, W_hᵀ);
    returns (J, output, the parameters and h0 as tensors)."""
    n_h, n_in = Wx.shape
    layer = RNN(n_in, n_h, dtype=np.float64)
    layer.load_state_dict({"weight_ih_l0": Wx.T, "weight_hh_l0": Wh.T, "bias_ih_l0": b,
                           "bias_hh_l0": np.zeros_like(b)})
    h0 = tensor(h0[None, None, :], requires_grad=True)
    out, _ = layer(tensor(x[:, None, :]), h0)
    J = 0.5 * ((out[:, 0, :] - tensor(y)) ** 2).sum()
    return J, out, layer, h0


def _rnn_checks(nums):
    """Every printed number by hand vs autodiff (and the gradients vs finite differences)."""
    T = len(nums.x)
    J, out, layer, h0 = _rnn_loss_by_layer(nums.Wx, nums.Wh, nums.b, nums.h[0], nums.x, nums.y)
    gx, gh, gb, gh0 = autodiff.grad(J, [layer.weight_ih_l0, layer.weight_hh_l0,
                                        layer.bias_ih_l0, h0])
    # the δs: the same recurrence as a graph of ops, differentiated w.r.t. each z_t
    Wx, Wh, b = (tensor(a, requires_grad=True) for a in (nums.Wx, nums.Wh, nums.b))
    h, zs, J2 = tensor(nums.h[0]), [], 0.0
    for t in range(T):
        zs.append(Wx @ tensor(nums.x[t]) + Wh @ h + b)
        h = ops.tanh(zs[-1])
        J2 = J2 + 0.5 * ((h - tensor(nums.y[t])) ** 2).sum()
    deltas = autodiff.grad(J2, zs)

    def loss_at(Wx_, Wh_, b_):
        return lambda: float(_rnn_loss_by_layer(Wx_, Wh_, b_, nums.h[0], nums.x, nums.y)[0].data)

    arrays = [nums.Wx.copy(), nums.Wh.copy(), nums.b.copy()]
    fd = [central_differences(loss_at(*arrays), a).reshape(a.shape) for a in arrays]
    c = nums.checks
    c["h"] = (nums.h[1:], out.numpy()[:, 0, :], None)
    c["J"] = (np.array(nums.J), J.numpy(), None)
    c["delta"] = (nums.delta, np.stack([d.numpy() for d in deltas]), None)
    c["W_h"] = (sum(nums.terms["W_h"]), gh.numpy().T, fd[1])
    c["W_x"] = (sum(nums.terms["W_x"]), gx.numpy().T, fd[0])
    c["b"] = (sum(nums.terms["b"]), gb.numpy(), fd[2])
    c["h_0"] = (nums.Wh.T @ nums.delta[0], gh0.numpy()[0, 0], None)


def _ok(by_hand, other, fd=False):
    # autodiff does the same float64 arithmetic in another order (agrees to rounding);
    # central differences carry truncation error, hence looser (as explain_network)
    return bool(np.allclose(by_hand, other, rtol=1e-5 if fd else 1e-9, atol=1e-8 if fd else 1e-12))


def _mat(m):
    return "[" + "; ".join(" ".join(_n(e) for e in row) for row in m) + "]"


def _checked(nums, key, index=None):
    """'autodiff … ✓' (and 'finite differences … ✓') for the quantity ``key``."""
    hand, ad, fd = nums.checks[key]
    pick = (lambda a: a) if index is None else (lambda a: a[index])
    show = _vec if np.ndim(pick(hand)) == 1 else (_mat if np.ndim(pick(hand)) == 2 else _n)
    text = f"autodiff {show(pick(ad))} {_mark(_ok(pick(hand), pick(ad)))}"
    if fd is not None:
        text += f"   finite differences {show(pick(fd))} {_mark(_ok(pick(hand), pick(fd), True))}"
    return text


def _rnn_header(nums, seed):
    n_in, n_h, T = RNN_SIZES
    lines = [f"retrograd explain --rnn: backpropagation through time (BPTT) for a {T}-step RNN "
             "(seed 001 §3.4)",
             f"  {n_in} inputs, {n_h} hidden units, {T} steps:  z_t = W_x x_t + W_h h_(t−1) + b,  "
             "h_t = tanh(z_t),  h_0 = 0",
             "  loss J = ½ Σ_t ‖h_t − y_t‖²  (a target y_t for every state)",
             "  one W_x, W_h, b shared by every step, drawn from U(−1, 1) with seed "
             f"{seed} and rounded to 2 decimals (matrices row by row):",
             f"    W_x = {_mat(nums.Wx)}   W_h = {_mat(nums.Wh)}   b = {_vec(nums.b)}"]
    for t in range(T):
        lines.append(f"    x_{t + 1} = {_vec(nums.x[t])}   y_{t + 1} = {_vec(nums.y[t])}")
    lines += ["  δ_t = ∂J/∂z_t (seed 001's δ). The unrolled net is a feed-forward net with one "
              "layer per step whose",
              "  layers share their weights: BP1–BP4 hold per step, and each shared weight's "
              "gradient is the sum over the steps.",
              "  rg.nn.RNN stores the matrices (in, out), as Linear: weight_ih_l0 = W_xᵀ, "
              "weight_hh_l0 = W_hᵀ."]
    return lines


def _rnn_forward_section(nums):
    lines = ["1. the unrolled forward pass: the same layer at every step, fed its own last state"]
    for t in range(len(nums.x)):
        s = t + 1
        lines.append(f"  z_{s} = W_x x_{s} + W_h h_{t} + b = {_vec(nums.Wx @ nums.x[t])} + "
                     f"{_vec(nums.Wh @ nums.h[t])} + {_vec(nums.b)} = {_vec(nums.z[t])}")
        lines.append(f"    h_{s} = tanh(z_{s}) = {_vec(nums.h[s])}   {_checked(nums, 'h', t)}")
    lines.append(f"  J = {_n(nums.J)}   {_checked(nums, 'J')}")
    return lines


def _rnn_delta_section(nums):
    T = len(nums.x)
    lines = ["2. the deltas flowing back through time: δ_t = (∂J/∂h_t + W_hᵀ δ_(t+1)) ⊙ tanh′(z_t),",
             "   tanh′(z_t) = 1 − h_t²; ∂J/∂h_t = h_t − y_t is the loss's own part (BP1), "
             "W_hᵀ δ_(t+1) what step t+1 sends back",
             f"   (BP2, with W_h in the place of Θ^(l+1)); nothing comes back into the last step: "
             f"δ_{T + 1} = 0"]
    for t in range(T - 1, -1, -1):
        s = t + 1
        tp = 1 - nums.h[s] ** 2
        carried = (f"W_hᵀ δ_{s + 1} = {_vec(nums.carried[t])}" if t < T - 1
                   else f"W_hᵀ δ_{s + 1} = {_vec(nums.carried[t])} (none)")
        lines.append(f"  t = {s}: ∂J/∂h_{s} = h_{s} − y_{s} = {_vec(nums.dJdh[t])}   {carried}")
        lines.append(f"    δ_{s} = ({_vec(nums.dJdh[t])} + {_vec(nums.carried[t])}) ⊙ "
                     f"{_vec(tp)} = {_vec(nums.delta[t])}   {_checked(nums, 'delta', t)}")
    lines.append(f"  and the initial state gets ∂J/∂h_0 = W_hᵀ δ_1 = "
                 f"{_vec(nums.checks['h_0'][0])}   {_checked(nums, 'h_0')}")
    return lines


def _rnn_gradient_section(nums):
    T = len(nums.x)
    lines = ["3. the gradients of the shared weights: BP4/BP3 at every step, summed over the steps"]
    for key, formula, factor in (("W_h", "δ_t h_(t−1)ᵀ", "h"), ("W_x", "δ_t x_tᵀ", "x"),
                                 ("b", "δ_t", None)):
        lines.append(f"  ∂J/∂{key} = Σ_t {formula}")
        for t in range(T):
            s = t + 1
            term = nums.terms[key][t]
            if factor is None:
                lines.append(f"    t = {s}: δ_{s} = {_vec(term)}")
            else:
                other = nums.h[t] if factor == "h" else nums.x[t]
                name = f"h_{t}" if factor == "h" else f"x_{s}"
                lines.append(f"    t = {s}: δ_{s} {name}ᵀ = {_vec(nums.delta[t])} {_vec(other)}ᵀ "
                             f"= {_mat(term)}")
        show = _vec if key == "b" else _mat
        lines.append(f"    sum: {show(nums.checks[key][0])}   {_checked(nums, key)}")
    return lines


def _rnn_summary(nums):
    n_ad = n_all = n_fd = n_fd_all = 0
    for hand, ad, fd in nums.checks.values():
        hand, ad = np.atleast_1d(hand), np.atleast_1d(ad)
        n_all += hand.size
        n_ad += int(np.isclose(hand, ad, rtol=1e-9, atol=1e-12).sum())
        if fd is not None:
            n_fd_all += hand.size
            n_fd += int(np.isclose(hand, fd, rtol=1e-5, atol=1e-8).sum())
    return [f"checks: {n_ad} of {n_all} numbers agree with autodiff {_mark(n_ad == n_all)}, "
            f"{n_fd} of {n_fd_all} weight gradients with finite differences "
            f"{_mark(n_fd == n_fd_all)}"]


def explain_rnn(seed=0) -> str:
    """Backpropagation through time for a 3-step tanh RNN (2 inputs, 2 hidden units),
    explained in seed 001's notation; returns the text. The unrolled forward states,
    the deltas flowing back through time, and each shared weight's gradient as the sum
    of its per-step terms -- every number checked against autodiff (rg.nn.RNN), the
    weight gradients also against finite differences. ``seed`` draws the weights,
    inputs and targets (U(−1, 1), rounded to 2 decimals)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ExplainError(f"--seed must be a non-negative integer, got {seed!r}")
    nums = rnn_numbers(int(seed))
    lines = _rnn_header(nums, seed)
    for section in (_rnn_forward_section, _rnn_delta_section, _rnn_gradient_section):
        lines += ["", *section(nums)]
    lines += ["", *_rnn_summary(nums)]
    return "\n".join(lines) + "\n"
