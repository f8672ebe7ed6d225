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
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass

import numpy as np

from . import classic
from .check import central_differences
from .classic.functions import derivative as _g_prime
from .classic.functions import loss_value as _loss_value
from .errors import RetrogradError

__all__ = ["ExplainError", "explain_network", "explain_expression", "network_weights",
           "parse_expression", "parse_point", "parse_numbers", "FUNCTIONS"]


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

HIDDEN_ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity")
OUTPUT_ACTIVATIONS = HIDDEN_ACTIVATIONS + ("softmax",)
NET_LOSSES = ("sse", "mse", "cross_entropy")
MAX_UNITS = 10           # every weight is printed: keep the nets small
# the notes name units i (input), j (hidden), k (output); deeper nets count back from j
_HIDDEN_LETTERS = "jhgedcba"

_F_PRIME_TEXT = {"sigmoid": "o(1 − o)", "tanh": "1 − o²", "relu": "[net > 0]", "identity": "1"}
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


def _autodiff_grads(W, b, acts, x, d, loss):
    """∂E/∂W and ∂E/∂b from retrograd's autodiff engine (float64)."""
    import retrograd as rg
    Wt = [rg.tensor(w, requires_grad=True) for w in W]
    bt = [rg.tensor(v, requires_grad=True) for v in b]
    a = rg.tensor(x)
    for w, v, f in zip(Wt, bt, acts):
        z = a @ w + v
        g = {"sigmoid": rg.sigmoid, "tanh": rg.tanh, "relu": rg.relu, "identity": lambda t: t,
             "softmax": lambda t: rg.softmax(t, axis=-1)}[f]
        a = g(z)
    y = rg.tensor(d)
    if loss == "sse":
        E = 0.5 * ((y - a) ** 2).sum()
    elif loss == "mse":
        E = ((y - a) ** 2).mean()
    elif acts[-1] == "softmax":
        E = -(y * rg.log(a)).sum()
    else:
        E = -(y * rg.log(a) + (1 - y) * rg.log(1 - a)).sum()
    grads = rg.autograd_grad(E, Wt + bt)
    return [g.numpy() for g in grads[:len(W)]], [g.numpy() for g in grads[len(W):]]


def _finite_difference_grads(W, b, acts, x, d, loss, eps=1e-6):
    """Central differences (E(w + ε) − E(w − ε)) / 2ε for every weight and bias."""
    def E():
        a = classic.forward(W, b, acts, x[None, :]).a[-1]
        return float(_loss_value(loss, a, d[None, :], acts[-1])[0])

    return [[central_differences(E, p, eps).reshape(p.shape) for p in arrays] for arrays in (W, b)]


def _vector(v, n, what):
    v = np.atleast_1d(np.asarray(v, dtype=float))
    if v.ndim != 1 or len(v) != n:
        raise ExplainError(f"{what} needs {n} value{'s' if n != 1 else ''}, got {len(v)}")
    if not np.all(np.isfinite(v)):
        raise ExplainError(f"{what} must be finite numbers")
    return v


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
    sizes = [int(s) for s in layers]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ExplainError(f"--layers needs an input and an output size, all positive, e.g. 2-2-1; "
                           f"got {'-'.join(map(str, sizes)) or 'none'}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ExplainError(f"--seed must be a non-negative integer, got {seed}")
    if max(sizes) > MAX_UNITS:
        raise ExplainError(f"explain prints every weight: use at most {MAX_UNITS} units per layer")
    if activation not in HIDDEN_ACTIVATIONS:
        raise ExplainError(f"unknown activation {activation!r}; choose one of "
                           f"{', '.join(HIDDEN_ACTIVATIONS)}")
    if loss not in NET_LOSSES:
        raise ExplainError(f"unknown loss {loss!r}; choose one of {', '.join(NET_LOSSES)}")
    K = sizes[-1]
    if output is None:
        output = ("softmax" if K > 1 else "sigmoid") if loss == "cross_entropy" else activation
    if output not in OUTPUT_ACTIVATIONS:
        raise ExplainError(f"unknown output activation {output!r}; choose one of "
                           f"{', '.join(OUTPUT_ACTIVATIONS)}")
    if output == "softmax" and K < 2:
        raise ExplainError("a softmax over one output unit is always 1: use at least 2 outputs")
    if loss == "cross_entropy" and output not in ("softmax", "sigmoid"):
        raise ExplainError(f"cross_entropy needs a softmax or sigmoid output, not {output}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ExplainError(f"the learning rate must be positive, got {lr}")

    x = _vector([(1.0, 0.0)[i % 2] for i in range(sizes[0])] if x is None else x, sizes[0],
                "--input")
    d = _vector(([1.0] if K == 1 else [1.0] + [0.0] * (K - 1)) if target is None else target, K,
                "--target")
    if loss == "cross_entropy":
        if np.any((d < 0) | (d > 1)):
            raise ExplainError("cross_entropy targets must lie in [0, 1]")
        if output == "softmax" and not np.isclose(d.sum(), 1.0):
            raise ExplainError("with a softmax output the targets must sum to 1 (e.g. 1,0)")

    W, b = network_weights(sizes, seed)
    acts = [activation] * (len(sizes) - 2) + [output]
    L = len(W)
    r = classic.backprop(W, b, acts, x, d, loss=loss)      # every number below comes from here
    o = r.a                                  # o[l]: outputs of layer l (o[0] = x)
    net = r.z                                # net[l-1]: net inputs of layer l
    delta = [-v for v in r.delta]            # seed 002's δ = −∂E/∂net
    ad_W, ad_b = _autodiff_grads(W, b, acts, x, d, loss)
    fd_W, fd_b = _finite_difference_grads([w.copy() for w in W], [v.copy() for v in b], acts, x, d,
                                          loss)

    letters = _layer_letters(len(sizes))
    unit = lambda l, n: f"{letters[l]}{n + 1}"                 # layer l (0 = input), unit n
    wname = lambda l, u, t: f"w({unit(l + 1, t)}←{unit(l, u)})"  # weight of layer l+1 from u to t
    bname = lambda l, t: f"b({unit(l + 1, t)})"
    lines = []
    out = lines.append
    counter = iter(range(1, 10))
    step = lambda: next(counter)     # section numbers (no hidden deltas without a hidden layer)

    # ------------------------------------------------------------------ header
    shape = "-".join(map(str, sizes))
    out(f"retrograd explain: one step of back-propagation on a {shape} network "
        "(seed 002, the generalized delta rule)")
    desc = [f"input {' '.join(unit(0, n) for n in range(sizes[0]))}"]
    for l in range(1, len(sizes)):
        kind = "output" if l == len(sizes) - 1 else "hidden"
        desc.append(f"{kind} {' '.join(unit(l, n) for n in range(sizes[l]))} ({acts[l - 1]})")
    out("  units: " + " → ".join(desc))
    loss_text = _LOSS_TEXT.get((loss, output), _LOSS_TEXT.get(loss))
    out(f"  loss {loss_text}   ({loss}),   learning rate η = {_n(lr)}")
    vec = lambda v: "(" + ", ".join(_n(e) for e in v) + ")"
    out(f"  pattern x = {vec(x)},   target d = {vec(d)}")
    out("  weights w(t←u) into unit t from unit u, and biases b(t) (the weight from a unit whose "
        "o is always 1),")
    out(f"  drawn from U(−1, 1) with seed {seed} and rounded to 2 decimals:")
    for l in range(L):
        for t in range(sizes[l + 1]):
            parts = [f"{wname(l, u, t)} = {_n(W[l][u, t])}" for u in range(sizes[l])]
            out("    " + "   ".join(parts + [f"{bname(l, t)} = {_n(b[l][t])}"]))
    out("  δ_t = −∂E/∂net_t, the sign of seed 002 (seed 001's δ = ∂J/∂z is its negative), so")
    out("  ∂E/∂w(t←u) = −δ_t·o_u and the update w + η·δ_t·o_u is w − η·∂E/∂w.")

    # ------------------------------------------------------------------ 1. forward
    out("")
    out(f"{step()}. forward pass: net_t = Σ_u w(t←u)·o_u + b(t),   o_t = f(net_t)")
    for n in range(sizes[0]):
        out(f"  o_{unit(0, n)} = x{n + 1} = {_n(x[n])}")
    rows = []
    for l in range(1, L + 1):
        for t in range(sizes[l]):
            terms = " + ".join(f"{_p(W[l - 1][u, t])}·{_p(o[l - 1][u])}"
                               for u in range(sizes[l - 1]))
            rows.append((f"net_{unit(l, t)} = {terms} + {_p(b[l - 1][t])} = {_n(net[l - 1][t])}",
                         f"o_{unit(l, t)} = {acts[l - 1]}(net_{unit(l, t)}) = {_n(o[l][t])}"))
    width = max(len(a) for a, _ in rows)
    for a, b_ in rows:
        out(f"  {a.ljust(width)}   {b_}")
    if output == "softmax":
        out("  (softmax: o_k = e^net_k / Σ_m e^net_m over the output units)")
    E0 = float(_loss_value(loss, o[L][None, :], d[None, :], output)[0])
    out(f"  E = {_n(E0)}")

    # ------------------------------------------------------------------ 2. output deltas
    out("")
    f = output
    if loss == "cross_entropy":
        out(f"{step()}. output deltas: δ_k = d_k − o_k   (f′(net_k) cancels against ∂E/∂o_k)")
        for k in range(K):
            out(f"  δ_{unit(L, k)} = {_n(d[k])} − {_p(o[L][k])} = {_n(delta[L - 1][k])}")
    elif f == "softmax":
        scale = "" if loss == "sse" else f"(2/{K})·"
        out(f"{step()}. output deltas: δ_k = o_k·(e_k − Σ_m e_m·o_m),  "
            f"e_k = −∂E/∂o_k = {scale}(d_k − o_k)   (softmax: o_m depends on every net_k)")
        e = (d - o[L]) * (1.0 if loss == "sse" else 2.0 / K)
        s = float((e * o[L]).sum())
        out(f"  e = ({', '.join(_n(v) for v in e)}),   Σ_m e_m·o_m = {_n(s)}")
        for k in range(K):
            out(f"  δ_{unit(L, k)} = {_p(o[L][k])}·({_n(e[k])} − {_p(s)}) = {_n(delta[L - 1][k])}")
    else:
        scale = "" if loss == "sse" else f"(2/{K})·"
        out(f"{step()}. output deltas: δ_k = {scale}(d_k − o_k)·f′(net_k),   "
            f"f′ = {_F_PRIME_TEXT[f]} for {f}")
        fp = _g_prime(f, net[L - 1], o[L])
        for k in range(K):
            out(f"  δ_{unit(L, k)} = {scale}({_n(d[k])} − {_p(o[L][k])})·{_p(fp[k])} "
                f"= {_n(delta[L - 1][k])}")

    # ------------------------------------------------------------------ 3. hidden deltas
    if L > 1:
        out("")
        out(f"{step()}. hidden deltas, back-propagated from the layer above: "
            "δ_j = (Σ_k δ_k·w(k←j))·f′(net_j)")
    for l in range(L - 1, 0, -1):              # hidden layer l, fed back from layer l+1
        f = acts[l - 1]
        up, here = letters[l + 1], letters[l]
        if L > 2 or f != output:
            out(f"  layer {here}: δ_{here} = (Σ_{up} δ_{up}·w({up}←{here}))·f′(net_{here}),"
                f"   f′ = {_F_PRIME_TEXT[f]} for {f}")
        else:
            out(f"  f′ = {_F_PRIME_TEXT[f]} for {f}")
        fp = _g_prime(f, net[l - 1], o[l])
        for j in range(sizes[l]):
            s = " + ".join(f"{_p(delta[l][k])}·{_p(W[l][j, k])}" for k in range(sizes[l + 1]))
            out(f"  δ_{unit(l, j)} = ({s})·{_p(fp[j])} = {_n(delta[l - 1][j])}")

    # ------------------------------------------------------------------ 4. gradients
    out("")
    out(f"{step()}. gradients ∂E/∂w(t←u) = −δ_t·o_u  (for a bias o_u = 1), each checked against "
        "autodiff and finite differences")
    rows, n_ok_ad, n_ok_fd, n_all = [], 0, 0, 0
    for l in range(L - 1, -1, -1):
        for t in range(sizes[l + 1]):
            entries = [(wname(l, u, t), o[l][u], r.grad_W[l][u, t], ad_W[l][u, t], fd_W[l][u, t])
                       for u in range(sizes[l])]
            entries.append((bname(l, t), 1.0, r.grad_b[l][t], ad_b[l][t], fd_b[l][t]))
            for name, o_u, g, g_ad, g_fd in entries:
                ok_ad = bool(np.isclose(g, g_ad, rtol=1e-9, atol=1e-12))
                ok_fd = bool(np.isclose(g, g_fd, rtol=1e-5, atol=1e-8))
                n_ok_ad, n_ok_fd, n_all = n_ok_ad + ok_ad, n_ok_fd + ok_fd, n_all + 1
                lhs = f"∂E/∂{name} = −{_p(delta[l][t])}·{_p(o_u)} = {_n(g)}"
                rows.append((lhs, f"autodiff {_n(g_ad)} {_mark(ok_ad)}",
                             f"finite differences {_n(g_fd)} {_mark(ok_fd)}"))
    w1 = max(len(a) for a, _, _ in rows)
    w2 = max(len(b_) for _, b_, _ in rows)
    for a, b_, c in rows:
        out(f"  {a.ljust(w1)}   {b_.ljust(w2)}   {c}")

    # ------------------------------------------------------------------ 5. update
    out("")
    out(f"{step()}. update: w_new = w + η·δ_t·o_u  (= w − η·∂E/∂w),  η = {_n(lr)}")
    newW = [w.copy() for w in W]
    newb = [v.copy() for v in b]
    for l in range(L - 1, -1, -1):
        for t in range(sizes[l + 1]):
            for u in range(sizes[l]):
                newW[l][u, t] = W[l][u, t] + lr * delta[l][t] * o[l][u]
                out(f"  {wname(l, u, t)} = {_n(W[l][u, t])} + {_n(lr)}·{_p(delta[l][t])}·"
                    f"{_p(o[l][u])} = {_n(newW[l][u, t])}")
            newb[l][t] = b[l][t] + lr * delta[l][t]
            out(f"  {bname(l, t)} = {_n(b[l][t])} + {_n(lr)}·{_p(delta[l][t])} = {_n(newb[l][t])}")
    a_new = classic.forward(newW, newb, acts, x[None, :]).a[-1]
    E1 = float(_loss_value(loss, a_new, d[None, :], output)[0])
    trend = "the step went downhill" if E1 < E0 else "the step did not lower E (η too large?)"
    out(f"  after the update E = {_n(E1)} (before: {_n(E0)}): {trend}")

    out("")
    out(f"checks: {n_ok_ad} of {n_all} gradients agree with autodiff {_mark(n_ok_ad == n_all)}, "
        f"{n_ok_fd} of {n_all} with finite differences {_mark(n_ok_fd == n_all)}")
    kinks = [f"net_{unit(l + 1, t)}" for l in range(L) if acts[l] == "relu"
             for t in range(sizes[l + 1]) if net[l][t] == 0]
    if kinks:
        out(f"note: {', '.join(kinks)} = 0 is relu's kink: retrograd (like the notes' code) takes "
            "relu′(0) = 0, while finite differences see the average of the two slopes there")
    return "\n".join(lines) + "\n"


# ====================================================================== expressions

FUNCTIONS = ("sin", "cos", "tan", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "abs")
CONSTANTS = {"pi": math.pi, "e": math.e}
MAX_EXPRESSION = 500       # characters; also keeps ast.parse far from its recursion limit
MAX_NODES = 60

_NP = {"sin": np.sin, "cos": np.cos, "tan": np.tan, "exp": np.exp, "log": np.log, "sqrt": np.sqrt,
       "tanh": np.tanh, "sigmoid": lambda v: 0.5 + 0.5 * np.tanh(0.5 * v),
       "relu": lambda v: np.maximum(v, 0.0), "abs": np.abs}
_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
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

    used = set()
    nodes = []
    for name, v in values.items():
        nodes.append(_Node(len(nodes) + 1, "input", [], float(v), var=name))
    inputs = {n.var: n for n in nodes}

    def make(op, args):
        if len(nodes) >= MAX_NODES:
            raise ExplainError(f"--expr: more than {MAX_NODES} operations; explain is for small "
                               "expressions")
        vals = [a.value if isinstance(a, _Node) else a for a in args]
        value = _evaluate(op, vals)
        if all(not isinstance(a, _Node) for a in args):      # constants only: fold
            return value
        node = _Node(len(nodes) + 1, op, args, value)
        if not math.isfinite(value):
            shown = _op_text(node, lambda a: _n(a.value) if isinstance(a, _Node) else _n(a))
            raise ExplainError(f"--expr: {shown} is not a finite number at the given point")
        nodes.append(node)
        return node

    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                _bad(node, f"the constant {node.value!r}")
            try:
                return float(node.value)
            except OverflowError:
                raise ExplainError("--expr: a number in the expression is too large") from None
        if isinstance(node, ast.Name):
            if node.id in inputs:
                used.add(node.id)
                return inputs[node.id]
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            if node.id in FUNCTIONS:
                raise ExplainError(f"--expr: {node.id} is a function: write {node.id}(...)")
            raise ExplainError(f"--expr: unknown name {node.id!r}; give its value with --at "
                               f"{node.id}=..." if not node.id.startswith("_") else
                               f"--expr: unknown name {node.id!r}")
        if isinstance(node, ast.BinOp):
            op = _BINOPS.get(type(node.op))
            if op is None:
                _bad(node, f"the operator {type(node.op).__name__}")
            return make(op, [walk(node.left), walk(node.right)])
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.UAdd):
                return walk(node.operand)
            if not isinstance(node.op, ast.USub):
                _bad(node, f"the operator {type(node.op).__name__}")
            return make("neg", [walk(node.operand)])
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                _bad(node.func)
            if node.func.id not in FUNCTIONS:
                raise ExplainError(f"--expr: unknown function {node.func.id!r}; the functions are "
                                   f"{' '.join(FUNCTIONS)}")
            if node.keywords:
                _bad(node.keywords[0])
            if len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
                raise ExplainError(f"--expr: {node.func.id} takes exactly one argument")
            return make(node.func.id, [walk(node.args[0])])
        _bad(node)

    with np.errstate(all="ignore"):
        result = walk(tree)
    if not isinstance(result, _Node) or not used:
        raise ExplainError("--expr: the expression does not depend on any variable")
    unused = [v for v in values if v not in used]
    if unused:
        raise ExplainError(f"--at gives {', '.join(unused)}, which the expression does not use")
    return nodes, result


def _evaluate(op, v):
    if op == "add":
        return float(np.float64(v[0]) + v[1])
    if op == "sub":
        return float(np.float64(v[0]) - v[1])
    if op == "mul":
        return float(np.float64(v[0]) * v[1])
    if op == "div":
        return float(np.float64(v[0]) / v[1])
    if op == "pow":
        return float(np.float64(v[0]) ** v[1])
    if op == "neg":
        return -float(v[0])
    return float(_NP[op](np.float64(v[0])))


def _op_text(node, name):
    """The node's operation, with operands rendered by ``name``: "sin(w1)", "w1·w2"."""
    a = [name(x) for x in node.args]
    sym = {"add": " + ", "sub": " − ", "mul": "·", "div": "/", "pow": "^"}
    if node.op in sym:
        return sym[node.op].join(a)
    if node.op == "neg":
        return f"−{a[0]}"
    return f"{node.op}({a[0]})"


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


def _node_formula(node, sym):
    """The node's operation as a _S, operands rendered by ``sym``."""
    a = [sym(x) for x in node.args]
    ops = {"add": _add, "sub": _sub, "mul": _mul, "div": _div, "pow": _pow}
    if node.op in ops:
        return ops[node.op](a[0], a[1])
    if node.op == "neg":
        return _neg(a[0])
    return _call(node.op, a[0])


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
    A = sym(node.args[0])
    B = sym(node.args[1]) if len(node.args) > 1 else None
    va = node.args[0].value if isinstance(node.args[0], _Node) else node.args[0]
    vb = (node.args[1].value if isinstance(node.args[1], _Node) else node.args[1]) \
        if len(node.args) > 1 else None
    op = node.op
    with np.errstate(all="ignore"):
        if op == "add":
            parts = [(_num(1), 1.0), (_num(1), 1.0)]
        elif op == "sub":
            parts = [(_num(1), 1.0), (_num(-1), -1.0)]
        elif op == "mul":
            parts = [(B, vb), (A, va)]
        elif op == "div":
            parts = [(_div(_num(1), B), 1.0 / vb), (_neg(_div(A, _pow(B, _num(2)))), -va / vb ** 2)]
        elif op == "pow":
            exp_minus_1 = _num(B.const - 1) if B.const is not None else _sub(B, _num(1))
            parts = [(_mul(B, _pow(A, exp_minus_1)), vb * np.float64(va) ** (vb - 1)),
                     (_mul(_pow(A, B), _call("log", A)), np.float64(va) ** vb * np.log(va))]
        elif op == "neg":
            parts = [(_num(-1), -1.0)]
        elif op == "sin":
            parts = [(_call("cos", A), np.cos(va))]
        elif op == "cos":
            parts = [(_neg(_call("sin", A)), -np.sin(va))]
        elif op == "tan":
            parts = [(_div(_num(1), _pow(_call("cos", A), _num(2))), 1.0 / np.cos(va) ** 2)]
        elif op == "exp":
            parts = [(_call("exp", A), np.exp(va))]
        elif op == "log":
            parts = [(_div(_num(1), A), 1.0 / va)]
        elif op == "sqrt":
            parts = [(_div(_num(1), _mul(_num(2), _call("sqrt", A))), 0.5 / np.sqrt(va))]
        elif op == "tanh":
            parts = [(_sub(_num(1), _pow(_call("tanh", A), _num(2))), 1.0 - np.tanh(va) ** 2)]
        elif op == "sigmoid":
            s = _call("sigmoid", A)
            sv = _NP["sigmoid"](va)
            parts = [(_mul(s, _S(f"(1 − {s.text})")), sv * (1 - sv))]
        elif op == "relu":
            parts = [(_S(f"[{A.text} > 0]"), float(va > 0))]
        elif op == "abs":
            parts = [(_call("sign", A), float(np.sign(va)))]
        else:                                      # pragma: no cover (the parser allows no more)
            raise ExplainError(f"no derivative for {op}")
    return [(i, s, float(v)) for i, (s, v) in enumerate(parts) if isinstance(node.args[i], _Node)]


def _autodiff_expression(nodes, out_node):
    """∂f/∂x for the inputs by retrograd's autodiff engine, replaying the graph with its ops."""
    import retrograd as rg
    fns = {"sin": rg.sin, "cos": rg.cos, "tan": lambda t: rg.sin(t) / rg.cos(t), "exp": rg.exp,
           "log": rg.log, "sqrt": rg.sqrt, "tanh": rg.tanh, "sigmoid": rg.sigmoid,
           "relu": rg.relu, "abs": rg.abs}
    t = {}
    ins = [n for n in nodes if n.op == "input"]
    for n in nodes:
        if n.op == "input":
            t[n.index] = rg.tensor(np.float64(n.value), requires_grad=True)
            continue
        a = [t[x.index] if isinstance(x, _Node) else x for x in n.args]
        if n.op in ("add", "sub", "mul", "div", "pow"):
            lhs = a[0] if isinstance(a[0], rg.Tensor) else rg.tensor(np.float64(a[0]))
            t[n.index] = {"add": lambda p, q: p + q, "sub": lambda p, q: p - q,
                          "mul": lambda p, q: p * q, "div": lambda p, q: p / q,
                          "pow": lambda p, q: p ** q}[n.op](lhs, a[1])
        elif n.op == "neg":
            t[n.index] = -a[0]
        else:
            t[n.index] = fns[n.op](a[0])
    grads = rg.autograd_grad(t[out_node.index], [t[n.index] for n in ins], allow_unused=True)
    return [0.0 if g is None else float(g.item()) for g in grads]


def explain_expression(expr: str, at) -> str:
    """Reverse-mode autodiff of ``expr`` at the point ``at`` (a dict such as
    {"x1": 2, "x2": 5}, or the text "x1=2,x2=5"), explained as in seed 001 §4.5."""
    values = parse_point(at) if isinstance(at, str) else {str(k): float(v) for k, v in at.items()}
    nodes, f = parse_expression(expr, values)
    ins = [n for n in nodes if n.op == "input"]
    lines = []
    out = lines.append

    point = ", ".join(f"{n.var} = {_n(n.value)}" for n in ins)
    out(f"retrograd explain: reverse-mode autodiff of f({', '.join(n.var for n in ins)}) = "
        f"{expr.strip()} at {point}")
    out("(seed 001 §4.2–4.5: the computation graph, forward propagation of values, "
        "back propagation of adjoints)")

    # ---- forward trace
    out("")
    out("forward trace: the inputs, then each operation as a node wᵢ with its value")
    wname = lambda a: a.name if isinstance(a, _Node) else _n(a)
    wval = lambda a: _p(a.value) if isinstance(a, _Node) else _p(a)
    rows = []
    for n in nodes:
        if n.op == "input":
            rows.append((f"w{n.index} = {n.var}", f"= {_n(n.value)}"))
        else:
            rows.append((f"w{n.index} = {_op_text(n, wname)}",
                         f"= {_op_text(n, wval)} = {_n(n.value)}"))
    width = max(len(a) for a, _ in rows)
    for a, b in rows:
        out(f"  {a.ljust(width)}   {b}")
    out(f"  f = {f.name} = {_n(f.value)}")

    # ---- adjoints, in reverse order
    out("")
    out("adjoints w̄ᵢ = ∂f/∂wᵢ in reverse order: w̄ᵢ = Σ_k w̄_k·∂w_k/∂wᵢ over the nodes w_k that "
        "use wᵢ (one term per path)")
    consumers = {n.index: [] for n in nodes}           # wᵢ -> [(w_k, ∂w_k/∂wᵢ in w-terms, value)]
    x_terms = {}                                       # wᵢ -> ∂w_k/∂wᵢ in terms of the inputs
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
            x_terms.setdefault(n.args[i].index, []).append((n, s_x))

    bar = {f.index: 1.0}                       # the grad-table: wᵢ -> w̄ᵢ
    bar_x = {f.index: _num(1)}                 # w̄ᵢ as a formula in the inputs
    for n in reversed(nodes):
        if n.index == f.index:
            out(f"  w̄{n.index} = ∂f/∂f = 1")
            continue
        uses = consumers[n.index]              # ascending k: the forward order
        if not uses:
            bar[n.index] = 0.0
            bar_x[n.index] = _num(0)
            out(f"  w̄{n.index} = 0   (f does not depend on w{n.index})")
            continue
        generic = " + ".join(f"w̄{k.index}·∂w{k.index}/∂w{n.index}" for k, _, _ in uses)
        concrete = _sum_text([_chain_term(f"w̄{k.index}", s) for k, s, _ in uses])
        numbers = " + ".join(f"{_p(bar[k.index])}·{_p(v)}" for k, _, v in uses)
        bar[n.index] = float(sum(bar[k.index] * v for k, _, v in uses))
        sx = _num(0)
        for k, s in x_terms[n.index]:
            sx = _add(sx, _mul(bar_x[k.index], s))
        bar_x[n.index] = sx
        line = f"  w̄{n.index} = {generic}"
        if concrete != generic:
            line += f" = {concrete}"
        if len(uses) > 1 or uses[0][2] != 1:          # the numbers, unless it is just w̄_k·1
            line += f" = {numbers}"
        line += f" = {_n(bar[n.index])}"
        if len(uses) > 1:
            line += f"   ({len(uses)} paths summed)"
        out(line)

    # ---- the gradient, checked
    out("")
    out("gradient, checked against retrograd's autodiff:")
    auto = _autodiff_expression(nodes, f)
    for n, g_ad in zip(ins, auto):
        g = bar[n.index]
        ok = bool(np.isclose(g, g_ad, rtol=1e-12, atol=1e-14))
        formula = bar_x[n.index].text
        value = _n(g)
        shown = f"{formula} = {value}" if formula != value else value
        out(f"  ∂f/∂{n.var} = w̄{n.index} = {shown}   autodiff {_n(g_ad)} {_mark(ok)}")
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
