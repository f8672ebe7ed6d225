"""Issue 11, items 1-3: every fact about an op lives on its record (the compiler holds
no table of op names), an op is callable, and broadcasting is summed once, in the walk.
erf is the op added as one record plus one case in tests/cases.py."""
import ast
import inspect
import math
import pathlib
import pydoc

import numpy as np
import pytest

import retrograd as rg
from retrograd.graph import executor, program
from retrograd.ops import REGISTRY, Op

try:
    import torch
except ImportError:
    torch = None

GRAPH = pathlib.Path(rg.__file__).parent / "graph"


# ---------------------------------------------------------------- no op names in the compiler

def test_the_compiler_holds_no_table_of_op_names():
    """No string constant in retrograd/graph/*.py is an op's name: kernels, identities,
    view-or-fresh and in-place facts are all asked of the op's record."""
    names = set(REGISTRY)
    for path in sorted(GRAPH.glob("*.py")):
        tree = ast.parse(path.read_text())
        hits = sorted({n.value for n in ast.walk(tree)
                       if isinstance(n, ast.Constant) and n.value in names})
        assert not hits, f"{path.name} names ops {hits}"
    assert not hasattr(executor, "FRESH")


def test_tidied_away():
    assert not hasattr(REGISTRY["exp"], "doc")          # the docstring is __doc__ now
    assert not hasattr(executor.Plan, "summary")
    f = rg.compile(lambda x: rg.exp(x) * 2)
    f(np.ones(3))
    assert not hasattr(next(iter(f.cache.values()))["exe"], "stats")


def test_view_and_fresh_are_facts_of_the_record():
    for name in ("reshape", "transpose", "broadcast_to", "getitem", "astype", "class_labels"):
        assert not REGISTRY[name].fresh, name            # may return a view of its input
    for name in ("sum", "softmax", "relu", "sigmoid", "where", "pow_scalar", "erf", "add",
                 "matmul", "concatenate", "bernoulli_mask"):
        assert REGISTRY[name].fresh, name


def test_kernels_come_from_the_records():
    x = np.random.default_rng(0).standard_normal((5, 3))
    w = np.random.default_rng(1).standard_normal((3,))
    src = rg.compile(lambda x: (rg.relu(x).T ** 2).reshape(15)).source(x)
    assert ".T" in src and "np.maximum(" in src and "np.square(" in src and ".reshape((15,))" in src
    grad_b = rg.compile(rg.grad(lambda x, b: ((x + b) * (x + b)).sum(), argnums=1))
    assert "np.matmul(ones" in grad_b.source(x, w)     # the bias gradient: ones @ g
    np.testing.assert_allclose(grad_b(x, w).numpy(), (2 * (x + w)).sum(axis=0), rtol=1e-12)
    # the record's kernel answers None where it has no special form: forward is called
    assert REGISTRY["transpose"].kernel(type("N", (), {"params": {"axes": (1, 2, 0)}})) is None


def _prog(fn, *shapes):
    g = rg.graph.Graph()
    xs = [g.input(f"x{i}", s, np.float64) for i, s in enumerate(shapes)]
    return g.program([fn(*xs)])


def test_simplify_rules_live_on_the_records():
    prog = _prog(lambda x: -(-(x * 1.0 + 0.0)) / 1.0 - 0.0, (3, 4))
    assert prog.count() == 0                                  # all identities
    prog = _prog(lambda x: 0.0 - x * -1.0, (3,))           # -(-x): neg, neg, then nothing
    assert prog.count() == 0
    prog = _prog(lambda x: x * -1.0, (3,))
    assert [n.op.name for n in prog.op_nodes] == ["neg"]
    prog = _prog(lambda x: rg.transpose(rg.transpose(x, (1, 2, 0)), (2, 0, 1)), (2, 3, 4))
    assert prog.count() == 0
    prog = _prog(lambda x: x.reshape(4, 6).reshape(24), (2, 3, 4))
    assert prog.count("reshape") == 1
    prog = _prog(lambda x: x ** 1, (3,))
    assert prog.count() == 0


def test_an_op_without_rules_is_left_alone_by_simplify():
    prog = _prog(lambda x: rg.exp(x) * 2.0, (3,))
    assert sorted(n.op.name for n in prog.op_nodes) == ["exp", "mul"]


# ---------------------------------------------------------------- scalar forms

ELEMENTWISE_NON_UFUNC = ("rsqrt", "reciprocal", "pow_scalar", "where", "sigmoid", "relu", "leaky_relu", "softplus",
                         "clip", "erf", "round", "binary_cross_entropy", "gelu", "silu", "mish",
                         "logsigmoid", "softsign", "elu", "hardswish", "hardsigmoid", "hardtanh")

# inputs (domain) and params for each elementwise op's scalar-form check
# (inside each op's domain: out of it the forms give nan or inf as NumPy and Numba do,
# where CPython would raise or go complex)
DOMAIN = {"log": "pos", "sqrt": "pos", "pow": "pos", "pow_scalar": "pos",
          "binary_cross_entropy": "unit01", "logical_and": "bool", "logical_or": "bool",
          "logical_not": "bool", "where": "cond", "arcsin": "unit", "arccos": "unit",
          "arctanh": "unit", "arccosh": "gt1", "log1p": "pos", "log2": "pos", "log10": "pos",
          "rsqrt": "pos"}
PARAMS = {"pow_scalar": [dict(p=2), dict(p=3), dict(p=-1.5)],
          "leaky_relu": [dict(negative_slope=0.1)],
          "clip": [dict(lo=-0.5, hi=0.7), dict(lo=None, hi=0.3), dict(lo=-0.2, hi=None)],
          "gelu": [dict(approximate="none"), dict(approximate="tanh")],
          "elu": [dict(alpha=1.0, scale=1.0, input_scale=1.0), dict(alpha=1.5, scale=1.0,
                  input_scale=1 / 1.5), dict(alpha=1.6732632423543772, scale=1.0507009873554805,
                                             input_scale=1.0)],
          "hardtanh": [dict(lo=-1.0, hi=1.0), dict(lo=0.0, hi=6.0)]}


def _elementwise_ops():
    return sorted(name for name, op in REGISTRY.items()
                  if op.elementwise or name in ELEMENTWISE_NON_UFUNC)


def test_every_elementwise_op_has_a_scalar_form():
    missing = [n for n in _elementwise_ops() if REGISTRY[n].scalar is None]
    assert not missing, f"elementwise ops without a scalar form: {missing}"


def _inputs(name, nin, rng):
    kind = DOMAIN.get(name, "real")
    xs = [rng.standard_normal(40) * 2 for _ in range(nin)]
    xs[-1][:5] = xs[0][:5]                              # ties for the comparisons
    if kind == "pos":
        xs = [np.abs(x) + 0.1 for x in xs]
    elif kind == "unit":
        xs = [rng.uniform(-0.99, 0.99, 40) for _ in range(nin)]
    elif kind == "gt1":
        xs = [np.abs(x) + 1.0 for x in xs]
    elif kind == "unit01":
        xs = [rng.uniform(0.01, 0.99, 40) for _ in range(nin)]
    elif kind == "bool":
        xs = [(x > 0).astype(np.float64) for x in xs]
    elif kind == "cond":
        xs[0] = xs[0] > 0
    return xs


@pytest.mark.parametrize("name", _elementwise_ops())
def test_each_scalar_form_agrees_with_the_forward(name):
    op = REGISTRY[name]
    nin = len(op.__signature__.parameters)
    rng = np.random.default_rng(sum(map(ord, name)))
    for params in PARAMS.get(name, [{}]):
        xs = _inputs(name, nin, rng)
        want = np.asarray(op.forward(*xs, **params))
        names = [f"a{i}" for i in range(nin)]
        code = compile(op.scalar(*names, **params), f"<scalar {name}>", "eval")
        got = np.array([eval(code, {"math": math}, dict(zip(names, vals)))   # noqa: S307
                        for vals in zip(*[x.tolist() for x in xs])])
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                                   rtol=1e-13, atol=1e-15, err_msg=f"{name} {params}")


def test_scalar_form_is_none_where_the_op_has_none():
    assert REGISTRY["clip"].scalar("x", lo=np.zeros(3), hi=None) is None   # array bounds


# ---------------------------------------------------------------- callable ops

PUBLIC_OPS = ["add", "sub", "mul", "div", "neg", "exp", "log", "sqrt", "abs", "sin", "cos", "tanh",
              "erf", "sigmoid", "relu", "softplus", "maximum", "minimum", "where", "sign",
              "floor", "round", "isfinite", "equal", "not_equal", "less", "less_equal",
              "greater", "greater_equal", "logical_and", "logical_or", "logical_not",
              "silu", "mish", "logsigmoid", "softsign", "hardswish", "hardsigmoid", "tan", "sinh",
              "cosh", "arcsin", "arccos", "arctan", "arcsinh", "arccosh", "arctanh", "log1p",
              "expm1", "log2", "log10", "exp2", "reciprocal", "rsqrt", "arctan2", "logaddexp",
              "hypot", "copysign", "ceil", "trunc", "isnan", "isinf"]


@pytest.mark.parametrize("name", PUBLIC_OPS)
def test_a_public_op_is_its_record_with_a_docstring_and_signature(name):
    f = getattr(rg, name)
    assert isinstance(f, Op) and f is getattr(rg.ops, name) and REGISTRY[f.name] is f
    assert f.__doc__ and len(f.__doc__) > 3
    assert f.__doc__.splitlines()[0] in pydoc.plain(pydoc.render_doc(f))
    params = inspect.signature(f).parameters.values()
    assert 1 <= len(params) <= 3
    assert all(p.kind is inspect.Parameter.POSITIONAL_ONLY for p in params)


def test_calling_an_op_applies_it_eagerly_and_as_a_method():
    x = rg.tensor(np.array([0.3, -1.2]), requires_grad=True)
    y = rg.exp(x) + x.exp() + rg.ops.apply(REGISTRY["exp"], x)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * np.exp(x.numpy()))
    assert y._op is REGISTRY["add"]
    assert "where(cond, a, b, /)" in pydoc.plain(pydoc.render_doc(rg.where))
    assert rg.Tensor.exp.__doc__ == rg.exp.__doc__


def test_an_op_kept_as_a_class_attribute_binds_like_a_function():
    class Holder:
        f = rg.exp
    t = rg.tensor([1.0])
    assert Holder.f is rg.exp
    with pytest.raises(TypeError):
        Holder().f(t)          # bound to the Holder, as a function would be: exp(holder, t)


def test_an_op_copies_and_pickles_as_itself_like_a_function():
    import copy
    import pickle
    for f in (rg.exp, rg.where, REGISTRY["sum_to"]):
        assert copy.copy(f) is f and copy.deepcopy([f])[0] is f
        assert pickle.loads(pickle.dumps(f)) is f


# ---------------------------------------------------------------- broadcasting in the walk

def _bmul():
    # a test op, not registered: its rules return the broadcast-shaped cotangent
    return Op("bcast_mul_test", np.multiply, (lambda g, out, a, b: g * b,
                                              lambda g, out, a, b: g * a), reads=((1,), (0,)))


def test_the_walk_sums_a_broadcast_cotangent_back_to_the_input_shape():
    op = _bmul()
    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((4, 3)), rng.standard_normal((1, 3))
    a, b = rg.tensor(A, requires_grad=True), rg.tensor(B, requires_grad=True)
    op(a, b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), np.broadcast_to(B, (4, 3)))
    np.testing.assert_allclose(b.grad.numpy(), A.sum(axis=0, keepdims=True))
    # second order: the walk's sum is the sum_to op, recorded under create_graph
    a2, b2 = rg.tensor(A, requires_grad=True), rg.tensor(B, requires_grad=True)
    (gb,) = rg.autograd_grad((op(a2, b2) * a2).sum(), [b2], create_graph=True)
    np.testing.assert_allclose(gb.numpy(), (A * A).sum(axis=0, keepdims=True))
    (gaa,) = rg.autograd_grad(gb.sum(), [a2])
    np.testing.assert_allclose(gaa.numpy(), 2 * A)


def test_a_cotangent_that_does_not_broadcast_is_still_refused():
    bad = Op("bad_vjp_test", np.multiply, (lambda g, out, a, b: rg.ones((5,)), None))
    a = rg.tensor(np.ones((4, 3)), requires_grad=True)
    with pytest.raises(rg.RetrogradError, match=r"'bad_vjp_test' op's VJP returned a gradient "
                                                r"of shape \(5,\) for a tensor of shape \(4, 3\)"):
        bad(a, 2.0).sum().backward()


def test_a_hook_must_keep_the_shape_the_walk_does_not_sum_it():
    a = rg.tensor(np.ones(3), requires_grad=True)
    h = a * 2
    h.register_hook(lambda g: rg.ones((2, 3)))
    with pytest.raises(rg.RetrogradError, match="a hook returned a gradient of shape"):
        h.sum().backward()


def test_no_sum_to_where_shapes_already_match():
    f = lambda a, b: (a * b + a / b - rg.maximum(a, b)).sum()
    X = np.random.default_rng(4).standard_normal((4, 3)) + 3
    same = rg.compile(rg.grad(f, argnums=(0, 1))).program(X, X)
    assert same.count("sum_to") == 0
    bcast = rg.compile(rg.grad(f, argnums=(0, 1))).program(X, X[0])
    assert bcast.count("sum_to") >= 1
    gs = rg.compile(rg.grad(f, argnums=(0, 1)))(X, X[0])
    want = rg.grad(f, argnums=(0, 1))(X, X[0])
    for g, w in zip(gs, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-12)
    assert gs[1].shape == (3,)


# ---------------------------------------------------------------- erf: one record, every path

def _erf_torch(x):
    t = torch.tensor(x, requires_grad=True)
    y = torch.erf(t)
    (g,) = torch.autograd.grad(y.sum(), t, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), t)
    return y.detach().numpy(), g.detach().numpy(), gg.numpy()


X = np.array([-3.5, -1.2, -0.3, -1e-9, 0.0, 2e-8, 0.4, 0.9, 1.7, 2.6, 6.5])


@pytest.mark.torch
def test_erf_eagerly_to_second_order_matches_torch():
    want, want_g, want_gg = _erf_torch(X)
    x = rg.tensor(X, requires_grad=True)
    y = rg.erf(x)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-15, atol=0)
    (g,) = rg.autograd_grad(y.sum(), [x], create_graph=True)
    np.testing.assert_allclose(g.numpy(), want_g, rtol=1e-14)
    (gg,) = rg.autograd_grad(g.sum(), [x])
    np.testing.assert_allclose(gg.numpy(), want_gg, rtol=1e-14, atol=1e-300)
    assert rg.erf(rg.tensor(X.astype(np.float32))).dtype == np.float32
    assert x.erf().shape == X.shape


@pytest.mark.torch
def test_erf_in_graph_and_under_compile_matches_torch():
    want, want_g, want_gg = _erf_torch(X)
    g = rg.graph.Graph()
    xv = g.param("x", X.shape, value=X)
    cost = rg.erf(xv).sum()
    g.backward(cost)
    np.testing.assert_allclose(xv.grad, want_g, rtol=1e-14)
    np.testing.assert_allclose(g.forward(outputs=rg.erf(xv)), want, rtol=1e-15)
    comp = rg.compile(rg.erf)
    np.testing.assert_allclose(comp(X).numpy(), want, rtol=1e-15)
    second = rg.compile(rg.grad(lambda x: rg.grad(lambda z: rg.erf(z).sum())(x).sum()))
    np.testing.assert_allclose(second(X).numpy(), want_gg, rtol=1e-14, atol=1e-300)
