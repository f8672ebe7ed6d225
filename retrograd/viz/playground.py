"""An interactive page that steps through backpropagation: ``retrograd explain --html``.

``playground(model, x, y, steps=20, lr=0.5)`` trains a small sigmoid/tanh/relu MLP for a
few steps and records, for every step, the numbers ``retrograd explain`` prints -- the
forward pass, the output deltas, the back-propagated deltas layer by layer, ∂E/∂w = −δ·o
(checked against autodiff and finite differences) and the update -- by calling
``explain.network_numbers`` at each step's weights. The panel text of every unit and
weight is cut from explain's own sections, so the page shows the same characters the
command prints. ``expression_playground(expr, at)`` does the same for seed 001's
adjoint graphs. Both return a ``Playground``: ``.save(path)`` writes one self-contained
HTML file (inline SVG and script, data as JSON, a CSP that forbids every network
request); ``_repr_html_`` shows it in a notebook inside an iframe.
"""
from __future__ import annotations

import dataclasses
import html
import json
import re

import numpy as np

from .. import explain as ex
from ..classic.functions import loss_value
from ..classic.mlp import forward as classic_forward
from ..errors import RetrogradError

__all__ = ["Playground", "playground", "expression_playground", "MAX_UNITS", "MAX_STEPS"]

MAX_UNITS = 48          # all layers together: "small MLPs up to a few dozen units"
MAX_LAYER = 16          # per layer
MAX_STEPS = 200
GRID = 21               # the loss landscape's grid is GRID × GRID


class Playground:
    """A recorded run: ``data`` (what the page draws), ``html()``, ``save(path)``."""

    def __init__(self, data: dict):
        self.data = data

    def html(self) -> str:
        from ._playground_page import render
        return render(self.data)

    def save(self, path):
        """Write the page atomically (it appears whole or not at all); returns the path."""
        from ..io import atomic_write
        with atomic_write(path, "w") as f:
            f.write(self.html())
        return path

    def _repr_html_(self):
        # an iframe keeps the page's ids, script and CSP apart from the notebook and from
        # any other playground shown in it
        return (f'<iframe srcdoc="{html.escape(self.html(), quote=True)}" '
                'sandbox="allow-scripts" style="width:100%;height:760px;border:0"></iframe>')


# ====================================================================== networks

def _from_model(model):
    """(sizes, [f of each layer], W, b) of an rg.nn.Sequential of Linear and activations."""
    from ..nn import Linear, Sequential
    if not isinstance(model, Sequential):
        raise RetrogradError(f"playground: expected layer sizes such as (2, 2, 1) or an "
                             f"rg.nn.Sequential of Linear and activations, got "
                             f"{type(model).__name__}")
    sizes, acts, W, b = [], [], [], []
    for layer in model:
        name = type(layer).__name__.lower()
        if isinstance(layer, Linear):
            if layer.bias is None:
                raise RetrogradError("playground: every Linear needs a bias (the notes' b(t))")
            if sizes and sizes[-1] != layer.n_in:
                raise RetrogradError(f"playground: Linear({layer.n_in}, …) follows a layer of "
                                     f"{sizes[-1]} units")
            sizes = sizes or [layer.n_in]
            sizes.append(layer.n_out)
            acts.append("identity")
            W.append(np.asarray(layer.weight.data, dtype=float))
            b.append(np.asarray(layer.bias.data, dtype=float))
        elif name in ("sigmoid", "tanh", "relu", "identity", "softmax") and acts \
                and acts[-1] == "identity":
            acts[-1] = name
        else:
            raise RetrogradError(f"playground: cannot draw a {type(layer).__name__} layer; use "
                                 "Linear followed by Sigmoid, Tanh, ReLU, Identity or Softmax")
    if not W:
        raise RetrogradError("playground: the model has no Linear layer")
    if len(set(acts[:-1])) > 1:
        raise RetrogradError(f"playground: the hidden layers must share one activation, got "
                             f"{', '.join(acts[:-1])}")
    return tuple(sizes), acts, W, b


def _patterns(x, y, sizes):
    """x, y as (P, n_in) and (P, K) float arrays, or None where not given (explain's
    default pattern, which one given pattern may complete)."""
    try:
        X = None if x is None else np.atleast_2d(np.asarray(x, dtype=float))
        D = None if y is None else np.asarray(y, dtype=float)
    except (TypeError, ValueError):
        raise RetrogradError("playground: x and y must be numbers, one row per pattern, all "
                             "rows of one length") from None
    if D is not None:
        D = D.reshape(len(X), -1) if X is not None and D.size % max(len(X), 1) == 0 \
            else np.atleast_2d(D)
    if (X is None) != (D is None) and len(X if D is None else D) > 1:
        raise RetrogradError("playground: several patterns need both x and y (--input and --target)")
    if X is not None and D is not None and len(X) != len(D):
        raise RetrogradError(f"playground: {len(X)} input patterns but {len(D)} targets")
    if len(sizes) >= 2 and ((X is not None and X.shape[1] != sizes[0])
                            or (D is not None and D.shape[1] != sizes[-1])):
        raise RetrogradError(f"playground: the net is {'-'.join(map(str, sizes))}; a pattern "
                             f"needs {sizes[0]} inputs and {sizes[-1]} targets")
    return X, D


def playground(model=(2, 2, 1), x=None, y=None, steps=20, lr=0.5, mode="pattern",
               activation="sigmoid", output=None, loss="sse", seed=0, weights=None) -> Playground:
    """Record ``steps`` steps of gradient descent on a small MLP for the page.

    model: layer sizes such as (2, 2, 1) or "2-2-1" (weights ``explain.network_weights``,
        the numbers ``retrograd explain`` prints), or an ``rg.nn.Sequential`` of Linear
        and Sigmoid/Tanh/ReLU/Identity/Softmax layers (its weights are read, not changed).
    x, y: one pattern (vectors) or several (rows); default explain's pattern.
    mode: "pattern" -- each step is one pattern in turn (online learning, seed 002's
        per-pattern rule; one pattern is exactly explain's step); "batch" -- each step
        sums ∂E_p/∂w over every pattern (E = Σ_p E_p) and updates once.
    weights: the two weights of the loss landscape, as (layer, from unit, to unit) with
        layer 0 the first weight layer; default the two that move the most.
    """
    if isinstance(model, str):
        model = tuple(int(s) for s in model.split("-") if s.strip())
    if isinstance(model, (tuple, list)):
        sizes, W0, b0 = tuple(int(s) for s in model), None, None
    else:
        sizes, acts, W0, b0 = _from_model(model)
        activation, output = (acts[0] if len(acts) > 1 else "sigmoid"), acts[-1]
    if len(sizes) >= 2 and sum(sizes) > MAX_UNITS:
        raise RetrogradError(f"playground: draws at most {MAX_UNITS} units, the net has "
                             f"{sum(sizes)}")
    if isinstance(steps, bool) or not (isinstance(steps, (int, np.integer))
                                       and 1 <= steps <= MAX_STEPS):
        raise RetrogradError(f"playground: steps must be an integer from 1 to {MAX_STEPS}, "
                             f"got {steps}")
    if mode not in ("pattern", "batch"):
        raise RetrogradError(f"playground: mode must be 'pattern' or 'batch', got {mode!r}")
    X, D = _patterns(x, y, sizes)
    spec = ex.NetworkSpec.from_arguments(sizes, activation, output, loss, seed, lr,
                                         None if X is None else X[0],
                                         None if D is None else D[0], max_units=MAX_LAYER)
    X = spec.x[None, :] if X is None else X       # explain's default pattern
    D = spec.d[None, :] if D is None else D
    # every pattern goes through explain's checks (targets of a softmax, of cross-entropy)
    specs = [ex.NetworkSpec.from_arguments(sizes, activation, spec.output, loss, seed, lr, xp,
                                           dp, max_units=MAX_LAYER) for xp, dp in zip(X, D)]
    if W0 is None:
        W0, b0 = ex.network_weights(sizes, seed)
    return Playground(_record(spec, specs, W0, b0, steps, mode, weights))


def _record(spec, specs, W, b, steps, mode, weights):
    names = ex._Names(len(spec.sizes))
    head = ex._header(spec, ex.network_numbers(spec, W, b), names)
    records, path = [], []
    for s in range(steps):
        used = list(range(len(specs))) if mode == "batch" else [s % len(specs)]
        rec = _step(spec, [specs[p] for p in used], W, b, names, mode)
        rec["patterns"] = used
        records.append(rec)
        path.append((W, b))
        W, b = rec.pop("_new")
    path.append((W, b))
    return {"kind": "network", "title": head[0], "about": [h.strip() for h in head[1:3]],
            "sizes": list(spec.sizes), "letters": names.letters, "mode": mode,
            "activations": list(spec.activations),
            "phases": _phases(spec, names), "steps": records,
            # the loss curve: every pattern's loss at each step's weights (for one pattern,
            # explain's E; per-pattern steps would zigzag between the patterns' own E)
            "loss": [_total_loss(spec, specs, W_s, b_s) for W_s, b_s in path],
            "npatterns": len(specs),
            "landscape": _landscape(spec, specs, path, weights, names)}


def _phases(spec, names):
    """The notes' order: forward, output deltas, hidden deltas from the top, ∂E/∂w, update."""
    L = spec.L
    ph = [{"name": "1. forward: net and o", "kind": "forward", "layer": 0},
          {"name": "2. output deltas δ_k (BP1)", "kind": "delta", "layer": L}]
    ph += [{"name": f"3. hidden deltas δ_{names.letters[l]} (BP2)", "kind": "delta", "layer": l}
           for l in range(L - 1, 0, -1)]
    n = 3 + (L > 1)                 # explain's section numbers
    ph += [{"name": f"{n}. ∂E/∂w = −δ·o (BP3, BP4)", "kind": "grad", "layer": 0},
           {"name": f"{n + 1}. update: w + η·δ·o", "kind": "update", "layer": 0}]
    return ph


def _cells(line):
    """The cells of one of explain's column lines (columns are 3+ spaces apart)."""
    return re.split(r"\s{3,}", line.strip())


def _pattern_lines(spec, nums, names, ph_index):
    """{item id: [[phase, text], …]}: explain's own lines for every unit and weight."""
    L, sizes = spec.L, spec.sizes
    out = {}
    add = lambda key, phase, text: out.setdefault(key, []).append([phase, text])
    fwd = ex._forward_section(1, spec, nums, names)[1:]
    for n in range(sizes[0]):
        add(f"u-0-{n}", 0, fwd[n].strip())
    rows = iter(fwd[sizes[0]:])
    for l in range(1, L + 1):
        for t in range(sizes[l]):
            for cell in _cells(next(rows)):
                add(f"u-{l}-{t}", 0, cell)
    out_d = ex._output_delta_section(2, spec, nums, names)
    for k in range(sizes[-1]):
        add(f"u-{L}-{k}", ph_index[L], out_d[len(out_d) - sizes[-1] + k].strip())
    if L > 1:
        hid = iter(ex._hidden_delta_section(3, spec, nums, names)[1:])
        for l in range(L - 1, 0, -1):
            rule = next(hid).strip()
            for j in range(sizes[l]):
                add(f"u-{l}-{j}", ph_index[l], rule)
                add(f"u-{l}-{j}", ph_index[l], next(hid).strip())
    for l in range(1, L + 1):                     # δ_t = −∂E/∂b(t), which autodiff gives
        for t in range(sizes[l]):
            ad, ok = nums.grad_b.autodiff[l - 1][t], nums.grad_b.autodiff_ok[l - 1][t]
            add(f"u-{l}-{t}", ph_index[l], f"δ = −∂E/∂{names.bias(l - 1, t)}: autodiff "
                f"{ex._n(-ad)} {ex._mark(bool(ok))}")
    grads = iter(ex._gradient_section(4, spec, nums, names)[1:])
    g_phase = max(ph_index.values()) + 1
    for l in range(L - 1, -1, -1):
        for t in range(sizes[l + 1]):
            for key in [f"w-{l}-{u}-{t}" for u in range(sizes[l])] + [f"b-{l}-{t}"]:
                add(key, g_phase, "   ".join(_cells(next(grads))))
    return out


def _step(spec, specs, W, b, names, mode):
    """One training step: explain's numbers for each pattern at W, b, then the update."""
    L = spec.L
    ph_index = {L: 1, **{l: 1 + (L - l) for l in range(L - 1, 0, -1)}}
    pats, gW, gb = [], [np.zeros_like(w) for w in W], [np.zeros_like(v) for v in b]
    for sp in specs:
        nums = ex.network_numbers(sp, W, b)
        for l in range(L):
            gW[l] += nums.grad_W.by_hand[l]
            gb[l] += nums.grad_b.by_hand[l]
        pats.append({"x": sp.x.tolist(), "d": sp.d.tolist(), "E": nums.E,
                     "o": [v.tolist() for v in nums.o], "net": [v.tolist() for v in nums.net],
                     "delta": [v.tolist() for v in nums.delta],
                     "gW": [g.tolist() for g in nums.grad_W.by_hand],
                     "gb": [g.tolist() for g in nums.grad_b.by_hand],
                     "ok": bool(all(ok.all() for ok in nums.grad_W.autodiff_ok
                                    + nums.grad_b.autodiff_ok)),
                     "lines": _pattern_lines(sp, nums, names, ph_index)})
    if len(specs) == 1:                           # explain's own update lines
        upd = ex._update_section(5, specs[0], nums, names)
        new_W, new_b, E_after = nums.new_W, nums.new_b, nums.E_after
        lines = _update_lines(spec, upd[1:-1])
        tail, sums = upd[-1].strip(), {}
    else:                                         # the batch rule: Δw = η Σ_p δ_p o_p
        new_W = [W[l] - spec.lr * gW[l] for l in range(L)]
        new_b = [b[l] - spec.lr * gb[l] for l in range(L)]
        lines = _batch_update_lines(spec, W, b, gW, gb, new_W, new_b, names)
        sums = _batch_sum_lines(spec, gW, gb, names)
        E_after = _total_loss(spec, specs, new_W, new_b)
        tail = f"after the update E = Σ_p E_p = {ex._n(E_after)}"
    return {"W": [w.tolist() for w in W], "b": [v.tolist() for v in b],
            "gW": [g.tolist() for g in gW], "gb": [g.tolist() for g in gb],
            "newW": [w.tolist() for w in new_W], "newb": [v.tolist() for v in new_b],
            "E": float(sum(p["E"] for p in pats)), "E_after": float(E_after),
            "pats": pats, "update": lines, "sums": sums, "after": tail, "_new": (new_W, new_b)}


def _update_lines(spec, lines):
    """{item id: text} from explain's update lines (same order as its loops)."""
    it, out = iter(lines), {}
    for l in range(spec.L - 1, -1, -1):
        for t in range(spec.sizes[l + 1]):
            for key in [f"w-{l}-{u}-{t}" for u in range(spec.sizes[l])] + [f"b-{l}-{t}"]:
                out[key] = next(it).strip()
    return out


def _batch_update_lines(spec, W, b, gW, gb, new_W, new_b, names):
    lr, out = ex._n(spec.lr), {}
    for l in range(spec.L):
        for t in range(spec.sizes[l + 1]):
            for u in range(spec.sizes[l]):
                out[f"w-{l}-{u}-{t}"] = (
                    f"{names.weight(l, u, t)} = {ex._n(W[l][u, t])} − {lr}·Σ_p ∂E_p/∂w = "
                    f"{ex._n(W[l][u, t])} − {lr}·{ex._p(gW[l][u, t])} = {ex._n(new_W[l][u, t])}")
            out[f"b-{l}-{t}"] = (f"{names.bias(l, t)} = {ex._n(b[l][t])} − {lr}·"
                                 f"{ex._p(gb[l][t])} = {ex._n(new_b[l][t])}")
    return out


def _batch_sum_lines(spec, gW, gb, names):
    """{item id: "∂E/∂w = Σ_p ∂E_p/∂w = g"}: what a batch step's update uses."""
    out = {}
    for l in range(spec.L):
        for t in range(spec.sizes[l + 1]):
            for u in range(spec.sizes[l]):
                w = names.weight(l, u, t)
                out[f"w-{l}-{u}-{t}"] = f"∂E/∂{w} = Σ_p ∂E_p/∂{w} = {ex._n(gW[l][u, t])}"
            bn = names.bias(l, t)
            out[f"b-{l}-{t}"] = f"∂E/∂{bn} = Σ_p ∂E_p/∂{bn} = {ex._n(gb[l][t])}"
    return out


def _total_loss(spec, specs, W, b):
    X = np.stack([s.x for s in specs])
    D = np.stack([s.d for s in specs])
    a = classic_forward(W, b, list(spec.activations), X).a[-1]
    return float(loss_value(spec.loss, a, D, spec.output).sum())


def _landscape(spec, specs, path, weights, names):
    """E = Σ_p E_p over a grid of two weights, every other weight at its step-0 value,
    and the pair's actual trajectory (the other weights move too: the path is their
    projection, the loss curve shows the loss along it)."""
    traj = [np.concatenate([w.ravel() for w in W]) for W, _ in path]
    index = [(l, u, t) for l in range(spec.L) for u in range(spec.sizes[l])
             for t in range(spec.sizes[l + 1])]
    if weights is None:
        moved = np.abs(traj[-1] - traj[0])
        pick = sorted(np.argsort(-moved, kind="stable")[:2]) if len(index) > 1 else [0, 0]
        weights = [index[i] for i in pick]
    (la, ua, ta), (lb, ub, tb) = [tuple(int(v) for v in w) for w in weights]
    if len(index) < 2 or (la, ua, ta) == (lb, ub, tb):
        return None
    for l, u, t in ((la, ua, ta), (lb, ub, tb)):
        if not (0 <= l < spec.L and 0 <= u < spec.sizes[l] and 0 <= t < spec.sizes[l + 1]):
            raise RetrogradError(f"playground: no weight ({l}, {u}, {t}) in a "
                                 f"{'-'.join(map(str, spec.sizes))} net")
    pa = [float(W[la][ua, ta]) for W, _ in path]
    pb = [float(W[lb][ub, tb]) for W, _ in path]
    span = lambda v: (min(v) - 1.0, max(v) + 1.0)
    A, B = np.linspace(*span(pa), GRID), np.linspace(*span(pb), GRID)
    W0, b0 = [w.copy() for w in path[0][0]], path[0][1]
    Z = np.empty((GRID, GRID))
    for i, vb in enumerate(B):
        for j, va in enumerate(A):
            W0[la][ua, ta], W0[lb][ub, tb] = va, vb
            Z[i, j] = _total_loss(spec, specs, W0, b0)
    return {"a": names.weight(la, ua, ta), "b": names.weight(lb, ub, tb),
            "ida": f"w-{la}-{ua}-{ta}", "idb": f"w-{lb}-{ub}-{tb}",
            "A": A.tolist(), "B": B.tolist(), "Z": Z.tolist(), "path": [pa, pb]}


# ====================================================================== expressions

def expression_playground(expr: str, at) -> Playground:
    """Seed 001 §4.5 as a page: the graph w1 … wn with the forward values, then the
    adjoints w̄ᵢ flowing back, each with explain's chain-rule line, checked by autodiff."""
    values = ex.parse_point(at) if isinstance(at, str) else {str(k): float(v)
                                                            for k, v in at.items()}
    nodes, f = ex.parse_expression(expr, values)
    _, bar, bar_x = ex._adjoint_section(nodes, f)
    consumers, _ = ex._uses(nodes)
    wname = lambda a: a.name if isinstance(a, ex._Node) else ex._n(a)
    # explain's trace rows, one per node after its 4 lines of title
    trace = ex._trace_section(expr, nodes, f)[4:4 + len(nodes)]
    grads = dict(zip([n.index for n in nodes if n.op == "input"],
                     ex._autodiff_expression(nodes, f)))
    out = []
    for n, row in zip(nodes, trace):
        uses = consumers[n.index]
        fwd = "   ".join(_cells(row))
        if n.index == f.index:
            adj = f"w̄{n.index} = ∂f/∂f = 1"
        elif not uses:
            adj = f"w̄{n.index} = 0   (f does not depend on w{n.index})"
        else:
            adj = ex._adjoint_line(n, uses, bar).strip()
        node = {"i": n.index, "op": n.op, "var": n.var, "value": n.value, "bar": bar[n.index],
                "label": n.var if n.op == "input" else ex._op_text(n, wname),
                "args": [a.index for a in n.args if isinstance(a, ex._Node)],
                "forward": fwd, "adjoint": adj,
                "edges": [[k.index, v, f"∂w{k.index}/∂w{n.index} = {sym.text} = {ex._n(v)}"]
                          for k, sym, v in uses]}
        if n.index in grads:
            g = grads[n.index]
            ok = bool(np.isclose(bar[n.index], g, rtol=1e-12, atol=1e-14))
            node["check"] = (f"∂f/∂{n.var} = w̄{n.index} = {bar_x[n.index].text} = "
                             f"{ex._n(bar[n.index])}   autodiff {ex._n(g)} {ex._mark(ok)}")
        out.append(node)
    phases = ([{"name": f"forward: w{n.index}", "kind": "forward", "node": n.index}
               for n in nodes]
              + [{"name": f"adjoint: w̄{n.index}", "kind": "adjoint", "node": n.index}
                 for n in reversed(nodes)]
              + [{"name": "gradient, checked against autodiff", "kind": "check", "node": 0}])
    return Playground({"kind": "expression", "title": (
        f"reverse-mode autodiff of f = {expr.strip()} at "
        + ", ".join(f"{k} = {ex._n(v)}" for k, v in values.items())),
        "about": ["seed 001 §4.2–4.5: forward propagation of values, back propagation of "
                  "adjoints w̄ᵢ = ∂f/∂wᵢ = Σ_k w̄_k·∂w_k/∂wᵢ"],
        "nodes": out, "f": f.index, "phases": phases})
