"""The shape of the package: who imports whom, what `import retrograd` loads, and where
graph values are told apart from eager ones (issue 11, item 4)."""
import ast
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import retrograd as rg

PKG = pathlib.Path(rg.__file__).parent


def _modules():
    """{dotted module name: (path, is_package)} for every .py file under retrograd/."""
    mods = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


def _imports():
    """(module-level edges, function-level edges): {module: {retrograd modules it imports}}.

    What is counted: every `import retrograd...` and `from ... import ...` statement that
    names a retrograd module, relative imports resolved; `from pkg import name` counts as
    an import of the submodule pkg.name when there is one, else of pkg. Module level is
    any import that runs when the module is loaded (top level, in a class body, under
    `if`/`try`); function level is an import inside a def or lambda, run only when it is
    called. The package a module belongs to, which Python initialises first, is not an
    edge by itself: a package importing its own submodules is the normal layering.
    """
    mods = _modules()
    top, deferred = {m: set() for m in mods}, {m: set() for m in mods}

    def target(name):
        while name not in mods:
            name = name.rpartition(".")[0]
        return name

    for mod, (path, is_pkg) in mods.items():
        pkg = mod if is_pkg else mod.rpartition(".")[0]

        def visit(node, in_function):
            for child in ast.iter_child_nodes(node):
                inner = in_function or isinstance(
                    child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                names = []
                if isinstance(child, ast.Import):
                    names = [a.name for a in child.names]
                elif isinstance(child, ast.ImportFrom):
                    if child.level:
                        base = pkg.split(".")[:len(pkg.split(".")) - child.level + 1]
                        where = ".".join(base + ([child.module] if child.module else []))
                    else:
                        where = child.module or ""
                    names = [f"{where}.{a.name}" if f"{where}.{a.name}" in mods else where
                             for a in child.names]
                for name in names:
                    if name == "retrograd" or name.startswith("retrograd."):
                        (deferred if inner else top)[mod].add(target(name))
                visit(child, inner)

        visit(ast.parse(path.read_text(encoding="utf-8")), False)
    for mod in mods:
        top[mod].discard(mod)
        deferred[mod].discard(mod)
    return top, deferred


def _cycles(edges):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def test_the_import_parser_sees_the_known_edges():
    top, deferred = _imports()
    assert "retrograd.tensor" in top["retrograd.ops.base"]
    assert "retrograd.ops.base" in top["retrograd.graph.ir"]
    assert "retrograd.autodiff" in deferred["retrograd.tensor"]      # Tensor.backward
    assert "retrograd.autodiff" not in top["retrograd.tensor"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_module_level_imports_form_no_cycle():
    top, _ = _imports()
    assert _cycles(top) == []


# Imports deferred into a function (run when it is called) may reach back up the layers
# only where documented here; today one: a Tensor's backward() runs the walk (tensor ->
# autodiff, which imports ops.base, which imports tensor). Graph code is reached from
# below only through values (a Var records itself), so ops/, autodiff and tensor import
# nothing of graph/, not even inside functions.
ALLOWED_DEFERRED = {
    ("retrograd.tensor", "retrograd.autodiff"),
}


def test_function_level_imports_close_only_the_documented_cycles():
    top, deferred = _imports()
    both = {m: top[m] | deferred[m] for m in top}
    without_allowed = {m: {t for t in ts if (m, t) not in ALLOWED_DEFERRED}
                       for m, ts in both.items()}
    assert _cycles(without_allowed) == []
    assert all(t in deferred[m] for m, t in ALLOWED_DEFERRED)      # the list is current
    for mod, targets in both.items():
        if mod.split(".")[1:2] in (["ops"], ["autodiff"], ["tensor"]):
            assert not any(t.startswith("retrograd.graph") for t in targets), mod


def test_import_retrograd_does_not_load_the_teaching_and_plotting_layers():
    code = ("import retrograd, sys; "
            "print(sorted(m for m in sys.modules if m.startswith('retrograd')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PKG.parent).stdout
    loaded = set(ast.literal_eval(out.strip()))
    assert "retrograd.ops" in loaded and "retrograd.graph" in loaded
    for lazy in ("explain", "classic", "viz", "train"):
        assert not any(m == f"retrograd.{lazy}" or m.startswith(f"retrograd.{lazy}.")
                       for m in loaded), lazy


def test_lazy_submodules_still_work_as_attributes_and_imports():
    code = ("import retrograd as rg\n"
            "from retrograd import train\n"
            "assert train is rg.train and rg.train.fit\n"
            "assert rg.explain.explain_network and rg.classic.__name__ == 'retrograd.classic'\n"
            "assert rg.viz.__name__ == 'retrograd.viz'\n"
            "assert 'viz' in dir(rg)\n"
            "try:\n    rg.no_such_thing\nexcept AttributeError as e:\n"
            "    assert 'no_such_thing' in str(e)\nelse:\n    raise SystemExit('no error')\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PKG.parent)


def _lines_with(text, skip=("graph",)):
    return [f"{p.relative_to(PKG.parent)}:{i}"
            for p in sorted(PKG.rglob("*.py")) if not set(skip) & set(p.relative_to(PKG).parts)
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if text in line]


def test_no_mode_checks_outside_graph():
    """Graph values are told apart by what they are (a Var records ops itself), not by a
    `_symbolic` flag read around the code: outside graph/ nothing reads such a flag."""
    assert _lines_with("_symbolic") == []
    # The places outside graph/ that ask a value whether it records ops itself
    # (``_record``, set by graph.Var): apply, which hands it the op, and the in-place
    # operators `t += v` and `t[i] = v` with a graph value on the right, which has no
    # array to write into t (the result is a new value, or refused); and the backward
    # walk, which frees an eager node's saved inputs but not a graph value's (the traced
    # graph is still to be compiled). (Code that needs an array -- share_version, the
    # anomaly check, an index -- asks for an ndarray instead.)
    asks = [hit.split(":")[0] for hit in _lines_with("._record is not None")
            + _lines_with("._record is None")]
    assert asks == ["retrograd/ops/base.py", "retrograd/ops/inplace.py",
                    "retrograd/ops/inplace.py", "retrograd/autodiff.py"]


def test_no_hook_globals_for_tracing():
    from retrograd.ops import base
    assert not hasattr(base, "trace_hook") and not hasattr(base, "tracer")


def test_trace_error_is_one_class():
    from retrograd import errors, graph
    assert graph.TraceError is errors.TraceError
    assert issubclass(errors.TraceError, rg.RetrogradError)


def test_a_var_records_itself_through_apply():
    g = rg.graph.Graph()
    x = g.input("x", (2, 3))
    y = rg.exp(x) * 2
    assert isinstance(y, rg.graph.Var) and y._op.name == "mul" and y._inputs[0]._op.name == "exp"
    with pytest.raises(rg.graph.TraceError, match=r"\.data of a traced value"):
        y.data


def test_captures_are_a_stack_per_thread():
    import threading

    from retrograd.graph.ir import Tracer
    from retrograd.ops import base
    w = rg.tensor(np.ones(3), requires_grad=True)
    outer, inner = Tracer(rg.graph.Graph()), Tracer(rg.graph.Graph())
    seen = {}
    with outer:
        with inner:
            assert base.capturing() is inner
            th = threading.Thread(target=lambda: seen.update(other=base.capturing(),
                                                             y=rg.exp(w)))
            th.start()
            th.join()
            assert isinstance(rg.exp(w), rg.graph.Var)
        assert base.capturing() is outer
    assert base.capturing() is None
    assert seen["other"] is None and not isinstance(seen["y"], rg.graph.Var)


@pytest.mark.parametrize("axis", [None, 0, 1, (0, 1)])
def test_prod_gradient_is_one_form_exact_at_zeros_eager_and_compiled(axis):
    torch = pytest.importorskip("torch")
    x = np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 5.0], [1.5, -2.0, 4.0]])

    def f(t):
        return (rg.prod(t, axis=axis) ** 2).sum()

    t = rg.tensor(x, requires_grad=True)
    (g,) = rg.autograd_grad(f(t), [t], create_graph=True)
    (h,) = rg.autograd_grad(g.sum(), [t])
    compiled = rg.compile(rg.grad(f))(x)

    tt = torch.tensor(x, requires_grad=True)
    p = tt.prod() if axis is None else tt
    if axis is not None:
        for a in sorted((axis,) if isinstance(axis, int) else axis, reverse=True):
            p = p.prod(dim=a)
    (tg,) = torch.autograd.grad((p ** 2).sum(), tt, create_graph=True)
    (th,) = torch.autograd.grad(tg.sum(), tt)
    np.testing.assert_allclose(g.data, tg.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(compiled.data), tg.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(h.data, th.numpy(), rtol=1e-12)


def test_one_axis_normaliser_for_reductions_and_movement():
    from retrograd.ops.shape import norm_axes
    assert norm_axes((-1, 0), 3, "sum", sort=True) == (0, 2)
    assert norm_axes(-1, 3, "transpose") == (2,)
    assert norm_axes(None, 3, "sum") is None
    assert norm_axes(0, 0, "sum") == (0,)                      # a 0-d reduction, as NumPy
    with pytest.raises(rg.AxisError, match="sum: axis 3 is out of range for a 2-d tensor"):
        norm_axes(3, 2, "sum")
    with pytest.raises(IndexError):
        rg.transpose(rg.ones(2, 3), (0, 2))
    with pytest.raises(rg.AxisError):
        rg.concatenate([rg.ones(2)], axis=1)
    with pytest.raises(rg.ShapeError, match="repeated axis"):
        rg.expand_dims(rg.ones(2), (0, 0))
