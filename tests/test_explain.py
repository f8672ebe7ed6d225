"""retrograd explain: the notes' derivations printed, with hand-computed numbers."""
import builtins
import re
import subprocess
import sys

import numpy as np
import pytest

from retrograd.cli import main
from retrograd.explain import (FUNCTIONS, ExplainError, explain_expression, explain_network,
                               network_weights)

sig = lambda t: 1 / (1 + np.exp(-t))


def line_starting(text, prefix):
    lines = [l for l in text.splitlines() if l.strip().startswith(prefix)]
    assert lines, f"no line starts with {prefix!r} in:\n{text}"
    return lines[0]


def grad_lines(text):
    return [l for l in text.splitlines() if l.strip().startswith("∂E/∂") and "autodiff" in l]


def number(text, prefix, index=-1):
    """The last (or index-th) number after '= ' on the first line starting with ``prefix``."""
    line = line_starting(text, prefix).split("autodiff")[0]
    return float(re.findall(r"= (-?[0-9.e+-]+)(?=\s|$)", line)[index])


# ---------------------------------------------------------------- seed 001 §4.5

SEED001 = explain_expression("sin(x1) + x1*x2", {"x1": 2, "x2": 5})


def test_seed001_forward_trace_names_each_intermediate():
    """w1 = x1, w2 = x2, then the operations in evaluation order."""
    assert line_starting(SEED001, "w1 = x1").endswith("= 2")
    assert line_starting(SEED001, "w2 = x2").endswith("= 5")
    assert number(SEED001, "w3 = sin(w1)") == pytest.approx(np.sin(2), abs=1e-7)   # 0.9092974
    assert number(SEED001, "w4 = w1·w2") == 10
    assert number(SEED001, "w5 = w3 + w4") == pytest.approx(np.sin(2) + 10, abs=1e-4)
    assert "sin(2) = 0.9092974" in SEED001 and "2·5 = 10" in SEED001


def test_seed001_adjoints_in_reverse_with_the_two_path_sum():
    """w̄5 = 1, w̄4 = w̄3 = w̄5 = 1, w̄2 = w̄4·w1 = 2, w̄1 = w̄3·cos(w1) + w̄4·w2 = cos 2 + 5."""
    lines = [l.strip() for l in SEED001.splitlines() if l.strip().startswith("w̄")]
    assert [l.split(" =")[0] for l in lines] == ["w̄5", "w̄4", "w̄3", "w̄2", "w̄1"]
    assert lines[0] == "w̄5 = ∂f/∂f = 1"
    assert lines[1] == "w̄4 = w̄5·∂w5/∂w4 = w̄5 = 1"
    assert lines[3] == "w̄2 = w̄4·∂w4/∂w2 = w̄4·w1 = 1·2 = 2"
    assert lines[4].startswith("w̄1 = w̄3·∂w3/∂w1 + w̄4·∂w4/∂w1 = w̄3·cos(w1) + w̄4·w2 = "
                               "1·(-0.4161468) + 1·5 = 4.583853")
    assert "(2 paths summed)" in lines[4]


def test_seed001_ends_with_the_formulas_checked_against_autodiff():
    last = SEED001.strip().splitlines()[-2:]
    assert last[0].strip().startswith("∂f/∂x1 = w̄1 = cos(x1) + x2 = 4.583853")
    assert last[1].strip().startswith("∂f/∂x2 = w̄2 = x1 = 2")
    assert number(SEED001, "∂f/∂x1") == pytest.approx(np.cos(2.0) + 5.0, abs=1e-6)
    assert all(l.rstrip().endswith("✓") for l in last) and "✗" not in SEED001


def test_inputs_are_numbered_in_the_order_of_at():
    text = explain_expression("x1*x2 + sin(x1)", "x2=5,x1=2")
    assert "w1 = x2" in text and "w2 = x1" in text
    assert "∂f/∂x1 = w̄2 = x2 + cos(x1) = 4.583853" in text


def test_a_node_used_twice_gets_both_terms():
    """Seed 004: x² as mul(x, x) -- the grad-table sums both uses: 2x."""
    text = explain_expression("x*x", "x=3")
    assert "w̄1 = w̄2·∂w2/∂w1 + w̄2·∂w2/∂w1 = w̄2·w1 + w̄2·w1 = 1·3 + 1·3 = 6" in text
    assert "∂f/∂x = w̄1 = x + x = 6" in text


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_every_function_derivative_agrees_with_autodiff(fn):
    text = explain_expression(f"{fn}(0.3*x + y) * y", {"x": 0.7, "y": 0.4})
    assert text.count("✓") == 2 and "✗" not in text


@pytest.mark.parametrize("expr,at,dx", [
    ("x**3", "x=2", 12.0),
    ("2**x", "x=3", 8 * np.log(2)),
    ("x**y", "x=2,y=3", 12.0),
    ("1/x - x/4", "x=2", -0.25 - 0.25),
    ("-(x - 3)**2", "x=1", 4.0),
    ("sqrt(x) * pi", "x=4", np.pi / 4),
    ("relu(x) + abs(x)", "x=-2", -1.0),
])
def test_operators_by_hand(expr, at, dx):
    text = explain_expression(expr, at)
    assert number(text, "∂f/∂x") == pytest.approx(dx, rel=1e-6)
    assert "✗" not in text


@pytest.mark.parametrize("expr", [
    "__import__('os')", "__import__('os').system('true')", "x1.real", "x1.__class__",
    "lambda: 1", "(lambda: x1)()", "open('f')", "eval('1')", "exec('1')", "globals()",
    "[x1 for x1 in (1, 2)]", "'a' * x1", "x1 if x1 else 2", "x1[0]", "x1 @ x1", "x1 // 2",
    "not x1", "x1 < 2", "sin(*x1)", "sin(x1, x1)", "sin(x=x1)", "sin", "x1 := 2", "{x1}",
    "f'{x1}'", "True + x1", "1j * x1", "sin(x1",
])
def test_hostile_or_unsupported_expressions_are_refused(expr, monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("eval/exec must never be called")
    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    with pytest.raises(ExplainError):
        explain_expression(expr, {"x1": 1.0})


def test_expression_errors_name_the_problem():
    with pytest.raises(ExplainError, match="unknown name 'y'"):
        explain_expression("x + y", "x=1")
    with pytest.raises(ExplainError, match="unknown function 'foo'"):
        explain_expression("foo(x)", "x=1")
    with pytest.raises(ExplainError, match="not a finite number"):
        explain_expression("log(x)", "x=-1")
    with pytest.raises(ExplainError, match="does not use"):
        explain_expression("x", "x=1,z=2")
    with pytest.raises(ExplainError, match="not a number"):
        explain_expression("x", "x=abc")


# ---------------------------------------------------------------- seed 002, the 2-2-1 net

W1 = np.array([[0.27, -0.46], [-0.92, -0.97]])     # W1[u, t]: from input u to hidden t
B1 = np.array([0.63, 0.83])
W2 = np.array([[0.21], [0.46]])
B2 = np.array([0.09])
DEFAULT = explain_network()


def test_the_default_weights_are_seed_0_rounded():
    W, b = network_weights([2, 2, 1], seed=0)
    np.testing.assert_array_equal(W[0], W1)
    np.testing.assert_array_equal(b[0], B1)
    np.testing.assert_array_equal(W[1], W2)
    np.testing.assert_array_equal(b[1], B2)
    assert "w(j1←i1) = 0.27   w(j1←i2) = -0.92   b(j1) = 0.63" in DEFAULT
    assert "w(k1←j1) = 0.21   w(k1←j2) = 0.46   b(k1) = 0.09" in DEFAULT


def test_default_network_numbers_by_hand():
    """XOR's pattern (1, 0) → 1, E = ½(d − o)², η = 0.5, every number by hand."""
    x, d, eta = np.array([1.0, 0.0]), 1.0, 0.5
    net_j = np.array([0.27 * 1 + -0.92 * 0 + 0.63, -0.46 * 1 + -0.97 * 0 + 0.83])   # 0.9, 0.37
    o_j = sig(net_j)
    net_k = 0.21 * o_j[0] + 0.46 * o_j[1] + 0.09
    o_k = sig(net_k)
    delta_k = (d - o_k) * o_k * (1 - o_k)                      # output unit (Case 1)
    delta_j = delta_k * W2[:, 0] * o_j * (1 - o_j)             # hidden units (Case 2)

    assert "pattern x = (1, 0),   target d = (1)" in DEFAULT
    assert number(DEFAULT, "net_j1", index=0) == pytest.approx(0.9)
    assert number(DEFAULT, "net_j2", index=0) == pytest.approx(0.37)
    assert number(DEFAULT, "net_k1", index=0) == pytest.approx(net_k, abs=1e-7)
    assert number(DEFAULT, "net_j1") == pytest.approx(o_j[0], abs=1e-7)      # o_j1 = 0.7109495
    assert number(DEFAULT, "net_k1") == pytest.approx(o_k, abs=1e-7)
    assert number(DEFAULT, "E =") == pytest.approx(0.5 * (d - o_k) ** 2, rel=1e-6)
    assert number(DEFAULT, "δ_k1") == pytest.approx(delta_k, rel=1e-6)       # 0.08784872
    assert number(DEFAULT, "δ_j1") == pytest.approx(delta_j[0], rel=1e-6)
    assert number(DEFAULT, "δ_j2") == pytest.approx(delta_j[1], rel=1e-6)
    # ∂E/∂w = −δ·o for every weight and bias
    assert number(DEFAULT, "∂E/∂w(k1←j1)") == pytest.approx(-delta_k * o_j[0], rel=1e-6)
    assert number(DEFAULT, "∂E/∂w(k1←j2)") == pytest.approx(-delta_k * o_j[1], rel=1e-6)
    assert number(DEFAULT, "∂E/∂b(k1)") == pytest.approx(-delta_k, rel=1e-6)
    assert number(DEFAULT, "∂E/∂w(j1←i1)") == pytest.approx(-delta_j[0] * x[0], rel=1e-6)
    assert number(DEFAULT, "∂E/∂w(j2←i2)") == 0                              # o_i2 = 0
    assert number(DEFAULT, "∂E/∂b(j2)") == pytest.approx(-delta_j[1], rel=1e-6)
    # w_new = w + η δ o
    assert number(DEFAULT, "w(k1←j1) = 0.21 +") == pytest.approx(0.21 + eta * delta_k * o_j[0],
                                                                  rel=1e-6)
    assert number(DEFAULT, "b(j1) = 0.63 +") == pytest.approx(0.63 + eta * delta_j[0], rel=1e-6)
    assert "δ_k1 = (1 − 0.6251277)·0.2343431 = 0.08784872" in DEFAULT


def test_default_network_sections_in_the_notes_order_and_all_checks_pass():
    heads = [l.split(".")[1].split(":")[0].strip() for l in DEFAULT.splitlines()
             if re.match(r"\d\. ", l)]
    assert heads == ["forward pass", "output deltas", "hidden deltas, back-propagated from the "
                     "layer above", "gradients ∂E/∂w(t←u) = −δ_t·o_u  (for a bias o_u = 1), each "
                     "checked against autodiff and finite differences", "update"]
    grads = grad_lines(DEFAULT)
    assert len(grads) == 9 and all(l.count("✓") == 2 for l in grads)
    assert "✗" not in DEFAULT
    assert ("checks: 9 of 9 gradients agree with autodiff ✓, 9 of 9 with finite differences ✓"
            in DEFAULT)
    assert "the step went downhill" in DEFAULT


def test_update_is_w_minus_eta_times_the_gradient():
    text = explain_network(lr=0.1)
    g = number(text, "∂E/∂w(k1←j2)")
    assert number(text, "w(k1←j2) = 0.46 +") == pytest.approx(0.46 - 0.1 * g, rel=1e-6)
    assert "η = 0.1" in text


@pytest.mark.parametrize("layers,n_grads", [((2, 3, 2), 17), ((2, 2), 6), ((3, 2, 2, 1), 17)])
def test_layers(layers, n_grads):
    text = explain_network(layers=layers)
    grads = grad_lines(text)
    assert len(grads) == n_grads and "✗" not in text
    assert f"checks: {n_grads} of {n_grads}" in text


def test_layer_names_follow_the_notes():
    assert "units: input i1 i2 → hidden j1 j2 j3 (sigmoid) → output k1 k2 (sigmoid)" in \
        explain_network(layers=(2, 3, 2))
    assert "input i1 i2 i3 → hidden h1 h2 (tanh) → hidden j1 j2 (tanh) → output k1 (tanh)" in \
        explain_network(layers=(3, 2, 2, 1), activation="tanh")


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "identity"])
@pytest.mark.parametrize("loss", ["sse", "mse", "cross_entropy"])
@pytest.mark.parametrize("layers", [(2, 2, 1), (2, 3, 2)])
def test_every_activation_and_loss_checks_out(activation, loss, layers):
    text = explain_network(layers=layers, activation=activation, loss=loss, seed=4)
    assert "note:" not in text            # no relu kink at this seed
    assert "✗" not in text


def test_output_delta_formulas_per_loss():
    assert "δ_k = d_k − o_k" in explain_network(layers=(2, 2, 2), loss="cross_entropy")
    assert "(softmax)" in explain_network(layers=(2, 2, 2), loss="cross_entropy")
    assert "δ_k = (2/1)·(d_k − o_k)·f′(net_k)" in explain_network(loss="mse")
    assert "δ_k = o_k·(e_k − Σ_m e_m·o_m)" in explain_network(layers=(2, 2), output="softmax")


def test_seed_input_and_target():
    text = explain_network(seed=3, x=[0, 1], target=[0])
    assert "seed 3" in text and "pattern x = (0, 1),   target d = (0)" in text
    W, b = network_weights([2, 2, 1], 3)
    assert f"b(k1) = {b[1][0]:.7g}" in text


def test_relu_kink_is_explained_not_hidden():
    text = explain_network(layers=(2, 3, 1), activation="relu", output="identity", loss="mse")
    assert "net_j2 = 0 is relu's kink" in text            # -0.46 + 0.46 = 0 with seed 0
    assert "finite differences 0.0803882 ✗" in text        # shown with both numbers


@pytest.mark.parametrize("kwargs,message", [
    (dict(layers=(2,)), "an input and an output"),
    (dict(layers=(2, 11, 1)), "at most 10 units"),
    (dict(seed=-1), "non-negative integer"),
    (dict(lr=float("inf")), "must be positive"),
    (dict(x=[1, float("nan")]), "finite"),
    (dict(activation="swish"), "unknown activation"),
    (dict(loss="hinge"), "unknown loss"),
    (dict(output="softmax"), "softmax over one output"),
    (dict(loss="cross_entropy", output="tanh"), "softmax or sigmoid"),
    (dict(x=[1, 0, 1]), "--input needs 2 values"),
    (dict(target=[1, 0]), "--target needs 1 value"),
    (dict(layers=(2, 2), loss="cross_entropy", target=[1, 1]), "sum to 1"),
])
def test_network_errors(kwargs, message):
    with pytest.raises(ExplainError, match=message):
        explain_network(**kwargs)


# ---------------------------------------------------------------- the command line

def test_cli_expression(capsys):
    assert main(["explain", "--expr", "sin(x1) + x1*x2", "--at", "x1=2,x2=5"]) == 0
    out = capsys.readouterr().out
    assert out == SEED001
    assert "∂f/∂x1 = w̄1 = cos(x1) + x2 = 4.583853" in out


def test_cli_default_and_flags(capsys):
    assert main(["explain"]) == 0
    assert capsys.readouterr().out == DEFAULT
    assert main(["explain", "--layers", "2-3-2", "--activation", "tanh", "--loss", "cross_entropy",
                 "--seed", "1", "--lr", "0.25", "--input", "0,1", "--target", "0,1"]) == 0
    out = capsys.readouterr().out
    assert out == explain_network((2, 3, 2), "tanh", None, "cross_entropy", 1, 0.25, [0, 1], [0, 1])
    assert "2-3-2 network" in out and "η = 0.25" in out and "(softmax)" in out


@pytest.mark.parametrize("argv,message", [
    (["--expr", "__import__('os')", "--at", "x=1"], "unknown function '__import__'"),
    (["--expr", "x.real", "--at", "x=1"], "attribute access"),
    (["--expr", "lambda: x", "--at", "x=1"], "lambda"),
    (["--expr", "sin(x", "--at", "x=1"], "not a valid expression"),
    (["--expr", "x + q", "--at", "x=1"], "unknown name 'q'"),
    (["--expr", "x"], "--at"),
    (["--at", "x=1"], "--at"),
    (["--expr", "x", "--at", "x=1", "--layers", "2-2-1"], "cannot be combined"),
    (["--layers", "2-2-1", "--input", "1,0,1"], "--input needs 2 values"),
    (["--input", "a"], "--input"),
    (["--loss", "hinge"], "invalid choice"),
    (["--lr", "-1"], "must be positive"),
])
def test_cli_mistakes_get_one_line_and_exit_code_2(argv, message, capsys):
    assert main(["explain", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_as_a_subprocess():
    r = subprocess.run([sys.executable, "-m", "retrograd.cli", "explain", "--expr", "x1*x1",
                        "--at", "x1=3"], capture_output=True, text=True, encoding="utf-8")
    assert r.returncode == 0 and "∂f/∂x1 = w̄1 = x1 + x1 = 6" in r.stdout
    r = subprocess.run([sys.executable, "-m", "retrograd.cli", "explain", "--expr",
                        "__import__('os').system('echo hacked')", "--at", "x=1"],
                       capture_output=True, text=True, encoding="utf-8")
    assert r.returncode == 2 and "hacked" not in r.stdout + r.stderr
    assert r.stderr.count("\n") == 1


# ---------------------------------------------------------------- the parts of explain_network

from retrograd import classic                                              # noqa: E402
from retrograd.explain import NetworkSpec, network_numbers                 # noqa: E402


def test_spec_fills_in_the_defaults():
    spec = NetworkSpec.from_arguments()
    assert (spec.sizes, spec.activations, spec.loss, spec.seed, spec.lr) == \
        ((2, 2, 1), ("sigmoid", "sigmoid"), "sse", 0, 0.5)
    assert spec.L == 2 and spec.output == "sigmoid"
    np.testing.assert_array_equal(spec.x, [1.0, 0.0])
    np.testing.assert_array_equal(spec.d, [1.0])
    ce = NetworkSpec.from_arguments(layers=(3, 2, 2, 2), activation="tanh", loss="cross_entropy")
    assert ce.activations == ("tanh", "tanh", "softmax")
    np.testing.assert_array_equal(ce.x, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(ce.d, [1.0, 0.0])
    assert NetworkSpec.from_arguments(loss="cross_entropy").output == "sigmoid"


def test_spec_refuses_before_anything_is_computed(monkeypatch):
    monkeypatch.setattr(classic, "backprop", lambda *a, **k: pytest.fail("computed"))
    with pytest.raises(ExplainError, match="at most 8 hidden layers"):
        NetworkSpec.from_arguments(layers=(1,) * 11)
    with pytest.raises(ExplainError, match="--target needs 1 value"):
        explain_network(layers=(1,) * 11, target=[1, 0])     # the first problem is reported


def test_numbers_are_classic_backprop_in_seed_002_sign():
    spec = NetworkSpec.from_arguments(layers=(2, 3, 2), activation="tanh", loss="mse", lr=0.1)
    nums = network_numbers(spec)
    W, b = network_weights([2, 3, 2], 0)
    r = classic.backprop(W, b, ["tanh", "tanh"], spec.x, spec.d, loss="mse")
    for l in range(2):
        np.testing.assert_array_equal(nums.delta[l], -r.delta[l])
        np.testing.assert_array_equal(nums.grad_W.by_hand[l], r.grad_W[l])
        np.testing.assert_allclose(nums.new_W[l], W[l] - 0.1 * r.grad_W[l], rtol=1e-14)
        np.testing.assert_allclose(nums.new_b[l], b[l] - 0.1 * r.grad_b[l], rtol=1e-14)
        np.testing.assert_array_equal(nums.f_prime[l], 1 - r.a[l + 1] ** 2)
        assert nums.grad_W.autodiff_ok[l].all() and nums.grad_b.finite_differences_ok[l].all()
    assert nums.E == pytest.approx(r.loss, rel=1e-15) and nums.E_after < nums.E
    assert nums.softmax_e is None and nums.relu_kinks == []


def test_numbers_of_a_softmax_output_and_a_relu_kink():
    soft = network_numbers(NetworkSpec.from_arguments(layers=(2, 2), output="softmax"))
    assert soft.f_prime == [None]
    np.testing.assert_array_equal(soft.softmax_e, np.array([1.0, 0.0]) - soft.o[1])
    kink = network_numbers(NetworkSpec.from_arguments(layers=(2, 3, 1), activation="relu",
                                                      output="identity", loss="mse"))
    assert kink.relu_kinks == [(1, 1)]                  # net_j2 = 0
    assert not kink.grad_W.finite_differences_ok[0].all() and kink.grad_W.autodiff_ok[0].all()


def test_a_net_without_hidden_layers_has_four_sections():
    heads = [l.split(".")[1].split(":")[0].strip() for l in explain_network(layers=(2, 2))
             .splitlines() if re.match(r"\d\. ", l)]
    assert heads[0] == "forward pass" and heads[1] == "output deltas" and heads[3] == "update"
    assert "4. update" in explain_network(layers=(2, 2))


# ---------------------------------------------------------------- the table of operations

import retrograd as rg                                                     # noqa: E402
from retrograd.explain import _OPERATIONS, _var, parse_expression          # noqa: E402


@pytest.mark.parametrize("name", list(_OPERATIONS))
def test_each_operation_record_is_consistent(name):
    """value, traced (retrograd's op) and the local partials agree, at a point where every
    operation is smooth."""
    op = _OPERATIONS[name]
    point = [0.7, 1.3][:2 if op.symbol and op.name != "neg" else 1]
    value = float(op.value(*map(np.float64, point)))
    traced = op.traced(*[rg.tensor(np.float64(v)) for v in point])
    assert float(traced.item()) == pytest.approx(value, rel=1e-14)
    parts = op.partials(*[_var(f"a{i}") for i in range(len(point))], *point)
    assert len(parts) == len(point)
    for i, (formula, partial) in enumerate(parts):
        shifted = lambda h: float(op.value(*[np.float64(v + h * (j == i))
                                             for j, v in enumerate(point)]))
        assert partial == pytest.approx((shifted(1e-6) - shifted(-1e-6)) / 2e-6, rel=1e-7)
        assert formula.text
    shown = op.show([f"a{i}" for i in range(len(point))])
    assert shown == (f"{name}(a0)" if name in FUNCTIONS else
                     {"add": "a0 + a1", "sub": "a0 − a1", "mul": "a0·a1", "div": "a0/a1",
                      "pow": "a0^a1", "neg": "−a0"}[name])


def test_functions_are_the_tables_functions_in_order():
    assert FUNCTIONS == ("sin", "cos", "tan", "exp", "log", "sqrt", "tanh", "sigmoid", "relu",
                         "abs")
    with pytest.raises(ExplainError, match="the functions are sin cos tan exp log sqrt tanh "
                                           "sigmoid relu abs"):
        explain_expression("erf(x)", "x=1")


def test_sigmoid_far_tail_is_not_rounded_to_zero():
    """explain uses classic's sigmoid, the op's accurate form (the tanh form printed
    sigmoid(−40) = 0 and ∂f/∂x = 0, against autodiff's −1.7e-16)."""
    text = explain_expression("sigmoid(-40*x)", "x=1")
    assert "sigmoid((-40)) = 4.248354e-18" in text
    assert "= -1.699342e-16   autodiff -1.699342e-16 ✓" in text


@pytest.mark.parametrize("expr,ok", [("-" * 499 + "x", False), ("+" * 499 + "x", True)],
                         ids=["minus", "plus"])
def test_the_deepest_expressions_allowed_parse_without_recursion_errors(expr, ok):
    if ok:
        nodes, f = parse_expression(expr, {"x": 1.0})
        assert f is nodes[0]
    else:
        with pytest.raises(ExplainError, match="more than 60 operations"):
            parse_expression(expr, {"x": 1.0})
