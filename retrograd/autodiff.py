"""The backward walk (seed 004, Algorithms 2, 5 and 6).

1. Order the graph: an iterative depth-first search from the output gives the
   nodes so that every node comes after its inputs (no recursion, so a chain of
   100 000 ops is fine).
2. Prune it: only nodes that require grad are in the graph at all, and when the
   gradient is wanted for particular targets only nodes on a path to a target
   are visited.
3. Walk it backwards with a grad-table: the output's adjoint is 1; each node's
   adjoint is complete once every node that uses it has been visited (reverse
   topological order guarantees that), and its op's VJP rules turn it into
   contributions to its inputs' adjoints, which are summed (the multi-path rule).

With ``create_graph=True`` the walk itself runs with recording on, so the VJPs
-- being ordinary ops -- build a graph of the gradient that can be
differentiated again.

Before a node's VJPs run, its inputs (and its own value) are checked against
in-place changes made since it was recorded (tensor.py's version counters); under
``detect_anomaly()`` its cotangents are checked for NaN and Inf.
"""
from __future__ import annotations

import cmath
import contextlib
import linecache
import os
import sys

import numpy as np

from . import arrays
from . import tensor as _tensor
from .errors import AnomalyError, RetrogradError
from .ops import base
from .ops.shape import _sum_to_op
from .tensor import Tensor, set_grad_enabled

__all__ = ["backward", "grad", "detect_anomaly"]


def _toposort(roots):
    """Nodes reachable from ``roots`` through tensors that require grad, inputs first.

    Tensors hash by identity, so they key the sets and dicts of the walk directly.
    """
    order, seen = [], set()
    clock = _tensor._clock
    stack = [(r, False) for r in roots]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        inputs = node._inputs
        if inputs is None:
            if node._op is not None:
                raise RetrogradError(
                    f"backward through the '{node._op.name}' op a second time: its saved values "
                    "were freed by the first backward; pass retain_graph=True to the first one")
            order.append(node)        # a leaf: (node, True) would be the next entry popped
            continue
        stack.append((node, True))
        if node._rec != clock:
            inputs = _as_recorded(node)
        for inp in inputs:
            if isinstance(inp, Tensor) and inp.requires_grad and inp not in seen:
                stack.append((inp, False))
    return order


def _as_recorded(node: Tensor):
    """Point ``node``'s inputs at the values it was recorded with (and return them). A
    recorded in-place op (``h += x``) makes ``h`` -- the same Python object -- a new node
    and keeps the old value as a node of its own (``h._prev``, see ops/__init__.py): an op
    that took ``h`` before the change took that old value, as its edge in PyTorch's graph
    would."""
    rec, inputs = node._rec, node._inputs
    for i, inp in enumerate(inputs):
        prev = getattr(inp, "_prev", None) if isinstance(inp, Tensor) else None
        if prev is None or prev[0] <= rec:
            continue
        while prev is not None and prev[0] > rec:
            inp = prev[1]
            prev = getattr(inp, "_prev", None)
        inputs = inputs[:i] + (inp,) + inputs[i + 1:]
    node._inputs = inputs
    return inputs


def _seed(root: Tensor, g) -> Tensor:
    if g is None:
        if root.size != 1:
            raise RetrogradError(
                f"backward: the output has shape {root.shape}; a gradient can be created "
                "implicitly only for a single-element output -- pass grad= of that shape")
        data = root._data
        return Tensor._make(arrays.namespace(data).ones_like(data) if arrays.is_foreign(data)
                            else np.ones(root.shape, dtype=root.dtype))
    g = g if isinstance(g, Tensor) else Tensor._make(_lift(g))
    if g.shape != root.shape:
        raise RetrogradError(f"backward: grad has shape {g.shape} but the output has shape "
                             f"{root.shape}")
    if g.dtype != root.dtype:
        g = g.astype(root.dtype)
    return g if g.requires_grad else Tensor._make(arrays.copy(g.data))


def _walk(roots, seeds, targets, retain_graph, create_graph):
    """Propagate adjoints from ``roots``; return {tensor: gradient} for the ``targets``
    (None: for every leaf that requires grad)."""
    for r in roots:
        if not r.requires_grad:
            raise RetrogradError(
                "backward: the output does not require grad -- no input of the computation "
                "had requires_grad=True (or it ran under rg.no_grad())")
    order = _toposort(roots)

    # prune to the nodes on some path from a target to the output (seed 004, Alg. 5)
    wanted = relevant = None
    if targets is not None:
        wanted = set(targets)
        relevant = set(wanted)
        for node in order:
            if node._inputs is not None and any(i in relevant for i in node._inputs
                                                if isinstance(i, Tensor)):
                relevant.add(node)

    table: dict[Tensor, Tensor] = {}          # the grad-table: node -> adjoint so far
    for r, s in zip(roots, seeds):
        table[r] = table[r] + s if r in table else s

    results: dict[Tensor, Tensor] = {}
    owned: set[Tensor] = set()     # adjoints in the table that op.accumulate may add into
    anomaly = base.anomaly_hook is not None
    with set_grad_enabled(create_graph):
        for node in reversed(order):
            g = table.pop(node, None)
            if g is None:
                continue
            if owned:
                owned.discard(g)      # handed on from here: never written into again
            if node._hooks:
                for hook in list(node._hooks):
                    replaced = hook(g)
                    if replaced is not None:
                        g = _conform(replaced, node, "a hook")
            op = node._op
            if op is None or (wanted is not None and node in wanted):
                results[node] = g
                if op is None:
                    continue
            if node._retains_grad:
                node.grad = g if node.grad is None else node.grad + g
            inputs = node._inputs
            if node._rec != _tensor._clock:      # something changed in place since it was made
                _check_versions(node, _needs(inputs, relevant))
            if anomaly or op.variadic:
                needs = _needs(inputs, relevant)
                cts = (_checked_vjps(op, g, node, inputs, needs) if anomaly
                       else op.input_vjps(g, node, inputs, node._params, needs))
                for inp, ct, need in zip(inputs, cts, needs):
                    if ct is not None and need:
                        _accumulate(table, inp, ct, op)
            elif (op.accumulate is not None and not create_graph
                  and _accumulates_in_place(g, inputs[0], relevant)):
                _add_in_place(table, owned, op, g, inputs[0], node._params)
            else:
                # one rule per input, each run only for an input that needs it (input_vjps'
                # contract, inlined: this loop is most of backward's own time)
                params = node._params
                for inp, rule in zip(inputs, op.vjp):
                    if rule is None or not isinstance(inp, Tensor) or not (
                            inp.requires_grad if relevant is None else inp in relevant):
                        continue
                    ct = rule(g, node, *inputs, **params)
                    if ct is not None:
                        _accumulate(table, inp, ct, op)
            if not retain_graph and node._record is None:
                # free the saved values (and mark the node spent); a graph value (Var)
                # keeps its inputs: the graph being traced is still to be compiled
                node._inputs = None
    return results


def _accumulates_in_place(g, x, relevant) -> bool:
    """Whether op.accumulate can add ``g``'s share into ``x``'s adjoint: x needs a gradient
    and both are NumPy arrays of one dtype (a plain Tensor cotangent: first order)."""
    return (isinstance(x, Tensor) and (x.requires_grad if relevant is None else x in relevant)
            and type(g) is Tensor and type(g._data) is np.ndarray
            and type(x._data) is np.ndarray and g._data.dtype == x._data.dtype)


def _add_in_place(table, owned, op, g, x, params):
    """``op.accumulate``: x's cotangent added into an adjoint array of the walk's own (a
    zero one, or a copy of the adjoint other rules gave), which only the grad-table holds."""
    acc = table.get(x)
    if acc is None or acc not in owned:
        data = np.zeros(x._data.shape, x._data.dtype) if acc is None else acc._data.copy()
        acc = table[x] = Tensor._make(data)
        owned.add(acc)
    op.accumulate(acc._data, g._data, x._data, **params)


def _needs(inputs, relevant):
    """Which inputs need a cotangent: those requiring grad (``relevant``: on a path to a
    target)."""
    if relevant is None:
        return [isinstance(i, Tensor) and i.requires_grad for i in inputs]
    return [isinstance(i, Tensor) and i in relevant for i in inputs]


def _accumulate(table, inp: Tensor, ct, op):
    """Add the cotangent ``ct`` that ``op``'s rule gave for ``inp`` to its adjoint."""
    if type(ct) is not Tensor or ct._data.shape != inp._data.shape or (
            ct._data.dtype is not inp._data.dtype and ct._data.dtype != inp._data.dtype):
        ct = _conform(ct, inp, op, reduce=True)
    prev = table.get(inp)
    table[inp] = ct if prev is None else prev + ct


def _check_versions(node: Tensor, needs):
    """Refuse to backprop through ``node`` if a value that the rules it runs read (an
    input, or its own output: ``op.reads``) was changed in place after it was recorded.
    Values they do not read may change, as in PyTorch (``c = a + b; c += 1``)."""
    rec, inputs = node._rec, node._inputs
    read = node._op.read_by(needs)
    for i in (range(len(inputs)) if read is None else sorted(i for i in read if i != "out")):
        inp = inputs[i]
        if isinstance(inp, Tensor) and inp._vc is not None and inp._vc.epoch > rec:
            _modified(node, f"the input {i}", inp)
    if (read is None or "out" in read) and node._vc is not None and node._vc.epoch > rec:
        _modified(node, "the output", node)


def _modified(node: Tensor, which: str, t: Tensor):
    vc = t._vc
    then = vc.version_at(node._rec)
    expected = "an earlier version" if then is None else f"version {then}"
    site = getattr(node, "_site", None)        # only nodes made under detect_anomaly have one
    made = "" if site is None else f"\n'{node._op.name}' was created at {_describe_site(site)}"
    raise RetrogradError(
        f"one of the variables needed for gradient computation has been modified by an "
        f"inplace operation: {which} of '{node._op.name}' (shape {t.shape}, {t.dtype}) is at "
        f"version {vc.version}; expected {expected}. It was changed (by +=, -=, *=, "
        f"/=, t[idx] = v, t.data = ..., or an optimizer step) after '{node._op.name}' used "
        f"it: call backward before changing it, or change a copy{made}")


# ---------------------------------------------------------------------- anomaly mode

class detect_anomaly(contextlib.ContextDecorator):
    """``with rg.detect_anomaly():`` (or as a decorator) -- find where NaN and Inf start.

    Forward: an op whose floating result holds NaN or Inf while none of its inputs did
    raises AnomalyError naming the op and the line of your code that called it.
    Backward: a VJP that turns a finite gradient and finite values into a NaN or Inf
    gradient raises AnomalyError naming the op and the line that created it in
    forward (known for nodes made while anomaly mode was on). Slow -- every result is
    scanned and every node remembers its source line -- so off by default; off, it
    costs one test per op. Global, not per thread. Graph values (Vars, rg.compile) are
    not checked.
    """

    def __enter__(self):
        self.prev = base.anomaly_hook
        base.anomaly_hook = _check_forward
        return self

    def __exit__(self, *exc):
        base.anomaly_hook = self.prev
        return False


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_inside: dict[str, bool] = {}           # filename -> is it part of retrograd?
_in_vjp = False                         # a VJP is running: its ops are checked as a whole


def _caller():
    """(file, line, function) of the innermost frame outside the retrograd package."""
    f = sys._getframe(2)
    while f is not None:
        name = f.f_code.co_filename
        inside = _inside.get(name)
        if inside is None:
            inside = _inside[name] = os.path.abspath(name).startswith(_PACKAGE)
        if not inside:
            return name, f.f_lineno, f.f_code.co_name
        f = f.f_back
    return None


def _describe_site(site) -> str:
    name, line, func = site
    code = linecache.getline(name, line).strip()
    return f"{name}:{line} in {func}" + (f"\n    {code}" if code else "")


def _lift(a, dtype=None):
    """A gradient given as an array, a list or a number, as an array (NumPy's, unless it
    is an array of another namespace)."""
    if isinstance(a, (np.ndarray, list, tuple, int, float, bool, complex, np.generic)):
        return np.asarray(a, dtype=dtype)
    return a if dtype is None or a.dtype == dtype else arrays.astype(a, dtype)


def _finite(a) -> bool:
    if isinstance(a, Tensor):
        a = a._data
    if isinstance(a, np.ndarray):
        return a.dtype.kind not in "fc" or bool(np.isfinite(a).all())
    if arrays.is_foreign(a):
        xp = arrays.namespace(a)
        return arrays.kind(a.dtype) not in "fc" or bool(xp.all(xp.isfinite(a)))
    if isinstance(a, (float, complex)):
        return cmath.isfinite(a)
    return True


def _nonfinite_kind(a: np.ndarray) -> str:
    """'nan', 'inf', '-inf' or several of them, e.g. 'nan and -inf'."""
    if a.dtype.kind == "c":
        return "nan" if np.isnan(a).any() else "inf"
    found = [k for k, bad in (("nan", np.isnan(a)), ("inf", np.isposinf(a)),
                              ("-inf", np.isneginf(a))) if bad.any()]
    return " and ".join(found)


def _check_forward(op, arrays, out: Tensor):
    """base.anomaly_hook: remember where a node was made; refuse NaN/Inf from finite inputs."""
    if out._op is not None:
        out._site = _caller()
    data = out._data
    if _in_vjp or data.dtype.kind not in "fc" or np.isfinite(data).all():
        return
    if all(_finite(a) for a in arrays):
        site = _caller()
        shapes = ", ".join(str(np.shape(a)) for a in arrays)
        where = "" if site is None else f", called at {_describe_site(site)}"
        raise AnomalyError(f"detect_anomaly: the '{op.name}' op produced {_nonfinite_kind(data)} "
                           f"from finite inputs (operand shapes {shapes}){where}")


def _checked_vjps(op, g, node, inputs, needs):
    """op.input_vjps under detect_anomaly: the cotangents must be finite when the incoming
    gradient and the op's inputs and output are."""
    global _in_vjp
    if not isinstance(node._data, np.ndarray):      # graph values have no numbers to check
        return op.input_vjps(g, node, inputs, node._params, needs)
    prev, _in_vjp = _in_vjp, True
    try:
        cts = op.input_vjps(g, node, inputs, node._params, needs)
    finally:
        _in_vjp = prev
    for i, ct in enumerate(cts):
        if ct is None or _finite(ct) or i >= len(inputs) or not needs[i]:
            continue
        if _finite(g) and _finite(node) and all(_finite(a) for a in inputs):
            data = ct._data if isinstance(ct, Tensor) else np.asarray(ct)
            site = getattr(node, "_site", None)
            made = ("it was created before anomaly detection was turned on" if site is None
                    else f"it was created at {_describe_site(site)}")
            raise AnomalyError(
                f"detect_anomaly: the VJP of the '{op.name}' op produced {_nonfinite_kind(data)} "
                f"in the gradient of its input {i} (shape {np.shape(data)}) from finite values; "
                f"{made}")
    return cts


def _conform(ct, like: Tensor, who, reduce=False) -> Tensor:
    """A cotangent in its tensor's shape and dtype. With ``reduce`` (a VJP's result), one
    in the shape the input was broadcast to is summed back to the input's shape -- here,
    once, for every op (tinygrad's way), so rules read ``g * b``; the sum is the sum_to op,
    recorded under create_graph like the rules' own ops, so higher orders see it."""
    if not isinstance(ct, Tensor):
        ct = Tensor._make(_lift(ct, like.dtype))
    shape = like._data.shape
    if reduce and ct._data.shape != shape and _broadcasts_to(shape, ct._data.shape):
        ct = base.apply(_sum_to_op, ct, shape=shape)     # (sum_to, its shapes checked above)
    if ct._data.shape != shape:
        raise RetrogradError(f"{_who(who)} returned a gradient of shape {ct.shape} for a "
                             f"tensor of shape {shape}")
    dtype = ct._data.dtype
    if dtype is not like._data.dtype and dtype != like._data.dtype:
        if arrays.kind(like.dtype) not in "fc":
            # only reachable when requires_grad was set by hand on an integer tensor
            # (Tensor() and requires_grad_() refuse it): casting would truncate the gradient
            raise RetrogradError(f"{_who(who)} sends a gradient to a tensor of dtype "
                                 f"{like.dtype} (shape {shape}) that requires grad; only "
                                 "floating-point tensors can require gradients")
        ct = ct.astype(like.dtype)
    return ct


def _who(who) -> str:
    return who if isinstance(who, str) else f"the '{who.name}' op's VJP"


def _broadcasts_to(shape, target) -> bool:
    """Whether NumPy broadcasting takes ``shape`` to ``target`` (a loop: this runs for
    every broadcast cotangent, a bias's in every layer)."""
    lead = len(target) - len(shape)
    if lead < 0:
        return False
    for s, t in zip(shape, target[lead:]):
        if s != t and s != 1:
            return False
    return True


def backward(root: Tensor, grad=None, retain_graph: bool = False, create_graph: bool = False):
    """``root.backward()``: add d(root)/d(leaf) to ``leaf.grad`` for every leaf requiring grad."""
    retain_graph = retain_graph or create_graph
    seed = _seed(root, grad)
    results = _walk([root], [seed], None, retain_graph, create_graph)
    with set_grad_enabled(create_graph):
        for leaf, g in results.items():
            if not create_graph:
                g = g.detach() if g.requires_grad else g
            leaf.grad = g if leaf.grad is None else leaf.grad + g


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """Gradients of ``outputs`` w.r.t. ``inputs``, returned (not accumulated), as
    ``torch.autograd.grad``. ``inputs`` may be leaves or intermediate tensors."""
    single_out = isinstance(outputs, Tensor)
    outputs = [outputs] if single_out else list(outputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    inputs_t = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    capture = base.capturing()
    if capture is not None:            # inside rg.compile: captured tensors' graph stand-ins
        inputs_t = tuple(capture.lifted(x) for x in inputs_t)
    for i, x in enumerate(inputs_t):
        if not (isinstance(x, Tensor) and x.requires_grad):
            raise RetrogradError(f"grad: input {i} does not require grad")
    if retain_graph is None:
        retain_graph = create_graph
    seeds = [_seed(o, g) for o, g in zip(outputs, grad_outputs)]
    results = _walk(outputs, seeds, inputs_t, retain_graph, create_graph)
    out = []
    for i, x in enumerate(inputs_t):
        g = results.get(x)
        if g is None:
            if not allow_unused:
                raise RetrogradError(f"grad: input {i} (shape {x.shape}) was not used to compute "
                                     "the output; pass allow_unused=True to get None for it")
        elif not create_graph and g.requires_grad:
            g = g.detach()
        out.append(g)
    return out[0] if isinstance(inputs, Tensor) else tuple(out)
