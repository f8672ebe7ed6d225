"""gradcheck: compare backprop's gradients with central finite differences.

Everything runs in float64: with eps = 1e-6 the truncation error of a central
difference is O(eps²) and the rounding error O(1e-16 / eps) ≈ 1e-10, far below
the tolerances, so a mismatch means a wrong VJP rather than noise.
"""
from __future__ import annotations

import numpy as np

from . import arrays as arrays_mod
from . import autodiff
from .errors import GradcheckError
from .tensor import Tensor, enable_grad

__all__ = ["gradcheck", "gradgradcheck", "GradcheckReport", "central_differences",
           "namespace_check"]


def _outputs(res):
    outs = list(res) if isinstance(res, (tuple, list)) else [res]
    return [o if isinstance(o, Tensor) else Tensor(np.asarray(o, dtype=np.float64)) for o in outs]


def _prepare(inputs):
    """float inputs -> fresh float64 leaves requiring grad; others pass through."""
    xs, checked = [], []
    for i, x in enumerate(inputs):
        arr = np.asarray(x.data if isinstance(x, Tensor) else x)
        if arr.dtype.kind == "f" or isinstance(x, float):
            # C order: central_differences perturbs entries through a reshape(-1) view
            # (of an F-ordered copy, reshape(-1) is a copy and the perturbation is lost)
            xs.append(Tensor(arr.astype(np.float64, order="C"), requires_grad=True))
            checked.append(i)
        else:
            xs.append(x)
    return xs, checked


def _analytic(f, xs, checked):
    """J[o][i]: (out_o.size, x_i.size) by one backward per output element."""
    with enable_grad():
        outs = _outputs(f(*xs))
    targets = [xs[i] for i in checked]
    jac = [[np.zeros((o.size, t.size)) for t in targets] for o in outs]
    for oi, o in enumerate(outs):
        if not o.requires_grad:
            continue
        for k in range(o.size):
            seed = np.zeros(o.size, dtype=o.dtype)
            seed[k] = 1
            gs = autodiff.grad(o, targets, grad_outputs=Tensor(seed.reshape(o.shape)),
                               retain_graph=True, allow_unused=True)
            for ti, g in enumerate(gs):
                if g is not None:
                    jac[oi][ti][k] = g.data.ravel()
    return outs, jac


def central_differences(evaluate, arr, eps=1e-6):
    """Numeric Jacobian of ``evaluate()`` (a float or an array) w.r.t. the entries of the
    contiguous array ``arr``, which is perturbed in place and restored:
    column j is (evaluate() at arr + ε·e_j − at arr − ε·e_j) / 2ε."""
    flat = arr.reshape(-1)                  # a view of arr
    cols = []
    for j in range(flat.size):
        orig = flat[j]
        flat[j] = orig + eps
        plus = np.array(evaluate(), dtype=np.float64)     # a copy: it may be a view of arr
        flat[j] = orig - eps
        minus = np.array(evaluate(), dtype=np.float64)
        flat[j] = orig
        cols.append(((plus - minus) / (2 * eps)).ravel())
    return np.stack(cols, axis=-1) if cols else np.zeros((0, 0))


def _numeric(f, xs, checked, eps):
    def evaluate():
        # grad stays on: f may itself take gradients (gradgradcheck's VJP does)
        with enable_grad():
            return np.concatenate([np.ravel(o.data) for o in _outputs(f(*xs))])
    sizes = [o.size for o in _outputs(f(*xs))]
    splits = np.cumsum(sizes)[:-1]
    jac = [[None] * len(checked) for _ in sizes]
    for ti, i in enumerate(checked):
        full = central_differences(evaluate, xs[i].data, eps).reshape(sum(sizes), xs[i].size)
        for oi, block in enumerate(np.split(full, splits)):
            jac[oi][ti] = block
    return jac


class GradcheckReport(list):
    """Rows of {input, shape, max_abs_err, max_rel_err, passed}; prints as a table."""

    @property
    def passed(self) -> bool:
        return all(r["passed"] for r in self)

    def __str__(self):
        lines = [f"{'input':>5}  {'shape':<14} {'max abs err':>12} {'max rel err':>12}  ok"]
        for r in self:
            lines.append(f"{r['input']:>5}  {str(r['shape']):<14} {r['max_abs_err']:>12.3e} "
                         f"{r['max_rel_err']:>12.3e}  {'✓' if r['passed'] else '✗'}")
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def gradcheck(f, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, report=False):
    """Check ``f``'s gradients w.r.t. every floating-point input against central
    differences, in float64. ``f`` may return a tensor or a tuple of tensors.

    Returns True, or raises GradcheckError naming the input, the worst entry's
    index and the analytic and numeric values. ``report=True`` returns a
    GradcheckReport (a table of errors per input) instead of raising.
    """
    xs, checked = _prepare(inputs)
    outs, analytic = _analytic(f, xs, checked)
    numeric = _numeric(f, xs, checked, eps)
    rows, failure = GradcheckReport(), None
    for ti, i in enumerate(checked):
        max_abs = max_rel = 0.0
        ok = True
        for oi, o in enumerate(outs):
            a, n = analytic[oi][ti], numeric[oi][ti]
            err = np.abs(a - n)
            if err.size == 0:
                continue
            max_abs = max(max_abs, float(err.max()))
            max_rel = max(max_rel, float((err / np.maximum(np.abs(n), 1e-12)).max()))
            excess = err - (atol + rtol * np.abs(n))
            worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
            if excess[worst] > 0:
                ok = False
                if failure is None:
                    out_idx = np.unravel_index(worst[0], o.shape) if o.ndim else ()
                    in_idx = np.unravel_index(worst[1], xs[i].shape) if xs[i].ndim else ()
                    failure = (
                        f"gradcheck failed for input {i} (shape {xs[i].shape}), output {oi} "
                        f"(shape {o.shape}): worst entry at input index {tuple(map(int, in_idx))}, "
                        f"output index {tuple(map(int, out_idx))}: analytic {a[worst]:.8g}, "
                        f"numeric {n[worst]:.8g} (abs error {err[worst]:.3g} > atol {atol:g} + "
                        f"rtol {rtol:g}·|numeric|)")
        rows.append({"input": i, "shape": xs[i].shape, "max_abs_err": max_abs,
                     "max_rel_err": max_rel, "passed": ok})
    if report:
        return rows
    if failure:
        raise GradcheckError(failure + "\n" + str(rows))
    return True


def gradgradcheck(f, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, report=False, seed=0):
    """Check second derivatives: gradcheck the VJP ``(x, v) -> vᵀ ∂f/∂x`` (built with
    create_graph=True) w.r.t. both x and the cotangent v, with a random v."""
    xs, checked = _prepare(inputs)
    with enable_grad():
        outs = _outputs(f(*xs))
    rng = np.random.default_rng(seed)
    vs = [rng.standard_normal(o.shape) for o in outs]
    n_in = len(xs)

    def vjp_of_f(*args):
        ins, cts = list(args[:n_in]), args[n_in:]
        res = _outputs(f(*ins))
        targets = [ins[i] for i in checked]
        total = None
        for o, v in zip(res, cts):
            if o.requires_grad:
                term = (o * v).sum()
                total = term if total is None else total + term
        if total is None:
            return tuple(Tensor(np.zeros_like(t.data)) for t in targets)
        gs = autodiff.grad(total, targets, create_graph=True, allow_unused=True)
        return tuple(Tensor(np.zeros_like(t.data)) if g is None else g
                     for g, t in zip(gs, targets))

    return gradcheck(vjp_of_f, *inputs, *vs, eps=eps, atol=atol, rtol=rtol, report=report)


def namespace_check(f, *inputs, xp, device=None, second_order=True, rtol=1e-10, atol=1e-12,
                    seed=0):
    """Check that ``f`` computes on arrays of namespace ``xp`` (e.g. ``cupy``, or
    ``array_api_strict`` with ``device=array_api_strict.Device("device1")``) what it computes
    on NumPy: the output, the gradient of a random projection of it (a VJP) and, with
    ``second_order``, a Hessian-vector product of that projection -- each result still in
    ``xp`` on ``device``. ``inputs``: float NumPy arrays (float64 for these tolerances).
    Returns the largest relative difference seen; raises GradcheckError naming the first
    value that differs or that left the namespace."""
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(x) for x in inputs]
    ref = _namespace_results(f, arrays, np.asarray, second_order, rng)
    moved = lambda a: arrays_mod.to_namespace(a, xp, device)         # noqa: E731
    rng = np.random.default_rng(seed)
    ours = _namespace_results(f, arrays, moved, second_order, rng)
    worst = 0.0
    for what, a, b in _paired(ref, ours):
        if a is None or b is None:
            if (a is None) != (b is None):
                raise GradcheckError(f"namespace_check: {what} is None on one side only")
            continue
        if arrays_mod.is_numpy(b) or arrays_mod.namespace(b) is not arrays_mod.namespace(moved(a)):
            raise GradcheckError(f"namespace_check: {what} is a {type(b).__name__}, not an "
                                 f"array of {getattr(xp, '__name__', xp)}")
        if device is not None and arrays_mod.device(b) != device:
            raise GradcheckError(f"namespace_check: {what} is on {arrays_mod.device(b)}, "
                                 f"not on {device}")
        b = arrays_mod.to_numpy(b)
        if a.shape != b.shape or not np.allclose(b, a, rtol=rtol, atol=atol, equal_nan=True):
            diff = np.max(np.abs(b - a)) if a.shape == b.shape else "shape"
            raise GradcheckError(f"namespace_check: {what} differs from NumPy's (shapes "
                                 f"{a.shape} and {b.shape}, max abs difference {diff})")
        scale = np.maximum(np.abs(a), atol / rtol)
        worst = max(worst, float(np.max(np.abs(b - a) / scale, initial=0.0)))
    return worst


def _namespace_results(f, arrays, lift, second_order, rng):
    """[("what", array or None)]: f's output, a VJP and an HVP, the leaves lifted by ``lift``;
    the random directions are drawn from ``rng`` as NumPy arrays (the same on both sides)."""
    xs = [Tensor(lift(a), requires_grad=True) for a in arrays]
    with enable_grad():
        out = f(*xs)
        ct = rng.standard_normal(out.shape)
        proj = (out * lift(ct)).sum()
        gs = (autodiff.grad(proj, xs, create_graph=second_order, allow_unused=True)
              if proj.requires_grad else [None] * len(xs))
        results = [("the output", out._data)]
        results += [(f"the gradient of input {i}", None if g is None else g._data)
                    for i, g in enumerate(gs)]
        if second_order:
            vs = [rng.standard_normal(a.shape) for a in arrays]
            terms = [(g * lift(v)).sum() for g, v in zip(gs, vs) if g is not None]
            s = terms[0] if terms else None
            for t in terms[1:]:
                s = s + t
            hs = (autodiff.grad(s, xs, allow_unused=True) if s is not None and s.requires_grad
                  else [None] * len(xs))
            results += [(f"the Hessian-vector product of input {i}",
                         None if h is None else h._data) for i, h in enumerate(hs)]
    return results


def _paired(ref, ours):
    for (what, a), (_, b) in zip(ref, ours):
        yield what, (None if a is None else np.asarray(a)), b
