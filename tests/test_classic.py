"""retrograd.classic: the notes' algorithms written out by hand, checked against autodiff."""
import numpy as np
import pytest

import retrograd as rg
from retrograd import classic

TOL = dict(rtol=1e-12, atol=1e-12)

# every (output activation, loss) pairing that makes sense; cross-entropy needs probabilities
PAIRINGS = ([(out, loss) for out in ("sigmoid", "tanh", "relu", "identity", "softmax")
             for loss in ("sse", "mse")]
            + [("softmax", "cross_entropy"), ("sigmoid", "cross_entropy")])
MODES = ["pattern", "batch-mean", "batch-sum"]


def _act(name, z):
    if name == "softmax":
        return rg.softmax(z, axis=-1)
    return {"sigmoid": rg.sigmoid, "tanh": rg.tanh, "relu": rg.relu,
            "identity": lambda t: t}[name](z)


def autodiff_backprop(W, b, acts, x, y, loss, reduction, weight_decay):
    """The same cost built from retrograd ops; δ = ∂J/∂z read off with retain_grad()."""
    Wt = [rg.tensor(w, requires_grad=True) for w in W]
    bt = [rg.tensor(v, requires_grad=True) for v in b]
    a, zs = rg.tensor(x), []
    for w, v, f in zip(Wt, bt, acts):
        z = a @ w + v
        z.retain_grad()
        zs.append(z)
        a = _act(f, z)
    Y = rg.tensor(y)
    if loss == "sse":
        per = 0.5 * ((Y - a) ** 2).sum(axis=-1)
    elif loss == "mse":
        per = ((Y - a) ** 2).mean(axis=-1)
    elif acts[-1] == "softmax":
        per = -(Y * rg.log(a)).sum(axis=-1)
    else:
        per = -(Y * rg.log(a) + (1 - Y) * rg.log(1 - a)).sum(axis=-1)
    J = per.mean() if reduction == "mean" else per.sum()
    J = J + weight_decay * sum((w ** 2).sum() for w in Wt)
    J.backward()
    return (J.item(), [z.grad.numpy() for z in zs], [w.grad.numpy() for w in Wt],
            [v.grad.numpy() for v in bt])


def _targets(rng, out, loss, shape):
    if loss == "cross_entropy" and out == "softmax":
        return rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]).reshape(shape)   # rows sum to 1
    if loss == "cross_entropy":
        return rng.uniform(0.05, 0.95, shape)
    return rng.standard_normal(shape)


@pytest.mark.parametrize("weight_decay", [0.0, 0.03])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("out,loss", PAIRINGS)
@pytest.mark.parametrize("hidden", ["sigmoid", "tanh", "relu", "identity"])
def test_explicit_deltas_and_gradients_equal_autodiff(hidden, out, loss, mode, weight_decay):
    rng = np.random.default_rng(hash((hidden, out, loss, mode)) % 2**32)
    sizes = [3, 5, 4, 3]
    net = classic.Network(sizes, hidden, out, seed=int(rng.integers(1000)), scale=1.0)
    net.b = [rng.standard_normal(v.shape) for v in net.b]
    n = 7
    if mode == "pattern":
        x, y, reduction = rng.standard_normal(sizes[0]), _targets(rng, out, loss, (sizes[-1],)), \
            None
    else:
        x, y = rng.standard_normal((n, sizes[0])), _targets(rng, out, loss, (n, sizes[-1]))
        reduction = mode.split("-")[1]
    r = net.backprop(x, y, loss=loss, reduction=reduction, weight_decay=weight_decay)
    J, deltas, gW, gb = autodiff_backprop(net.W, net.b, net.activations, x, y, loss,
                                          r.reduction, weight_decay)
    assert np.isclose(r.loss, J, **TOL)
    for l in range(len(sizes) - 1):
        assert r.delta[l].shape == deltas[l].shape
        np.testing.assert_allclose(r.delta[l], deltas[l], **TOL, err_msg=f"δ of layer {l + 1}")
        np.testing.assert_allclose(r.grad_W[l], gW[l], **TOL, err_msg=f"∂J/∂W of layer {l + 1}")
        np.testing.assert_allclose(r.grad_b[l], gb[l], **TOL, err_msg=f"∂J/∂b of layer {l + 1}")


def test_rg_autograd_grad_agrees_on_a_batch_with_weight_decay():
    """The same check through rg.autograd_grad with the z tensors as inputs."""
    rng = np.random.default_rng(5)
    net = classic.Network([4, 6, 3], "tanh", "softmax", seed=2)
    X, Y = rng.standard_normal((10, 4)), np.eye(3)[rng.integers(0, 3, 10)]
    r = net.backprop(X, Y, loss="cross_entropy", reduction="mean", weight_decay=0.1)
    W1, W2 = (rg.tensor(w, requires_grad=True) for w in net.W)
    z1 = rg.tensor(X) @ W1 + net.b[0]
    z2 = rg.tanh(z1) @ W2 + net.b[1]
    J = rg.nn.functional.cross_entropy(z2, Y) + 0.1 * ((W1 ** 2).sum() + (W2 ** 2).sum())
    d1, d2, g1, g2 = rg.autograd_grad(J, [z1, z2, W1, W2])
    for mine, theirs in zip([r.delta[0], r.delta[1], r.grad_W[0], r.grad_W[1]], [d1, d2, g1, g2]):
        np.testing.assert_allclose(mine, theirs.numpy(), **TOL)


def test_softmax_cross_entropy_output_delta_is_a_minus_y():
    net = classic.Network([2, 3], "softmax", seed=0)
    y = np.array([0.0, 1.0, 0.0])
    r = net.backprop(np.array([0.5, -1.0]), y, loss="cross_entropy")
    np.testing.assert_allclose(r.delta[-1], r.a[-1] - y, rtol=0, atol=0)


def test_sse_output_delta_is_seed_002_case_1_with_the_sign_of_seed_001():
    """δᴸ = (a − y) g′(z) = −(d − o) f′(net): seed 001's δ is minus seed 002's."""
    net = classic.Network([2, 2, 1], "sigmoid", seed=3)
    r = net.backprop(np.array([1.0, 0.0]), np.array([1.0]), loss="sse")
    o = r.a[-1]
    np.testing.assert_allclose(r.delta[-1], -(1.0 - o) * o * (1 - o), rtol=1e-15)


def test_batch_gradient_equals_the_per_pattern_accumulation_of_seed_001():
    rng = np.random.default_rng(1)
    net = classic.Network([3, 4, 2], "sigmoid", seed=4)
    X, Y = rng.standard_normal((6, 3)), rng.uniform(size=(6, 2))
    for reduction in ("mean", "sum"):
        r = net.backprop(X, Y, loss="sse", reduction=reduction, weight_decay=0.05)
        gW, gb, J = classic.backprop_per_pattern(net.W, net.b, net.activations, X, Y, loss="sse",
                                                 reduction=reduction, weight_decay=0.05)
        assert np.isclose(J, r.loss, rtol=1e-13)
        for l in range(2):
            np.testing.assert_allclose(gW[l], r.grad_W[l], rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(gb[l], r.grad_b[l], rtol=1e-12, atol=1e-15)


def test_weight_decay_adds_lambda_sum_of_squares_to_J_and_2_lambda_W_to_the_gradient():
    rng = np.random.default_rng(2)
    net = classic.Network([2, 3, 1], "tanh", "identity", seed=1)
    x, y = rng.standard_normal((4, 2)), rng.standard_normal((4, 1))
    plain = net.backprop(x, y, loss="mse")
    decayed = net.backprop(x, y, loss="mse", weight_decay=0.2)
    assert np.isclose(decayed.loss - plain.loss, 0.2 * sum((w ** 2).sum() for w in net.W))
    for l in range(2):
        np.testing.assert_allclose(decayed.grad_W[l] - plain.grad_W[l], 0.4 * net.W[l], rtol=1e-12)
        np.testing.assert_array_equal(decayed.grad_b[l], plain.grad_b[l])   # biases are not decayed


def test_default_reductions_follow_retrograd_nn():
    assert classic.default_reduction("sse") == "sum"
    assert classic.default_reduction("mse") == "mean"
    assert classic.default_reduction("cross_entropy") == "mean"
    rng = np.random.default_rng(0)
    net = classic.Network([2, 2], "identity", seed=0)
    X, Y = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    out = rg.tensor(net(X))
    assert np.isclose(net.loss(X, Y, "sse"), rg.nn.SSELoss()(out, Y).item())
    assert np.isclose(net.loss(X, Y, "mse"), rg.nn.MSELoss()(out, Y).item())


@pytest.mark.parametrize("kwargs,message", [
    (dict(output="tanh", loss="cross_entropy"), "cross_entropy needs probabilities"),
    (dict(output="identity", loss="cross_entropy"), "cross_entropy needs probabilities"),
    (dict(output="sigmoid", loss="hinge"), "unknown loss"),
    (dict(output="swish", loss="sse"), "unknown activation"),
])
def test_bad_pairings_are_refused(kwargs, message):
    net = classic.Network([2, 2], kwargs["output"] if kwargs["output"] != "swish" else "tanh",
                          seed=0)
    net.activations[-1] = kwargs["output"]
    with pytest.raises(ValueError, match=message):
        net.backprop(np.ones(2), np.array([0.0, 1.0]), loss=kwargs["loss"])


def test_softmax_is_only_an_output_activation():
    net = classic.Network([2, 3, 2], "softmax", "softmax", seed=0)
    with pytest.raises(ValueError, match="only allowed as the output"):
        net.backprop(np.ones(2), np.array([0.0, 1.0]), loss="cross_entropy")


# ---------------------------------------------------------------- seed 002

def test_generalized_delta_rule_matches_bp_equations_and_autodiff():
    """δ_k = (d_k − o_k) f′(net_k), δ_j = (Σ_k δ_k w_kj) f′(net_j), Δw = δ o: seed 002's δ is
    −∂E/∂net, so it equals minus backprop's δ, and Δ_p w = −∂E/∂w (w in [to, from] layout)."""
    rng = np.random.default_rng(7)
    net2 = classic.TwoLayerNet.random(3, 4, 2, seed=1)
    x, d = rng.standard_normal(3), rng.uniform(size=2)
    s = classic.generalized_delta_rule(x, d, net2.w_ji, net2.b_j, net2.w_kj, net2.b_k, eta=0.3)
    r = classic.backprop([net2.w_ji.T, net2.w_kj.T], [net2.b_j, net2.b_k], ["sigmoid"] * 2, x, d,
                         loss="sse")
    np.testing.assert_allclose(s.delta_k, -r.delta[1], rtol=1e-14)
    np.testing.assert_allclose(s.delta_j, -r.delta[0], rtol=1e-14)
    J, deltas, gW, gb = autodiff_backprop([net2.w_ji.T, net2.w_kj.T], [net2.b_j, net2.b_k],
                                          ["sigmoid"] * 2, x, d, "sse", "sum", 0.0)
    assert np.isclose(s.E, J, rtol=1e-14)
    np.testing.assert_allclose(s.dw_kj, -gW[1].T, **TOL)
    np.testing.assert_allclose(s.dw_ji, -gW[0].T, **TOL)
    np.testing.assert_allclose(s.db_k, -gb[1], **TOL)
    np.testing.assert_allclose(s.w_kj, net2.w_kj + 0.3 * s.delta_k[:, None] * s.o_j[None, :],
                               rtol=1e-15)


def test_generalized_delta_rule_by_hand_on_a_2_2_1_net():
    """Every number of one pattern on a 2-2-1 sigmoid net, by hand."""
    sig = lambda t: 1 / (1 + np.exp(-t))
    w_ji, b_j = np.array([[0.5, -0.4], [0.9, 1.0]]), np.array([0.1, -0.3])
    w_kj, b_k = np.array([[-1.2, 1.1]]), np.array([0.2])
    s = classic.generalized_delta_rule([1.0, 0.0], [1.0], w_ji, b_j, w_kj, b_k, eta=0.5)
    o1, o2 = sig(0.5 + 0.1), sig(0.9 - 0.3)                  # net_j = w_j1·1 + w_j2·0 + b_j
    ok = sig(-1.2 * o1 + 1.1 * o2 + 0.2)
    dk = (1 - ok) * ok * (1 - ok)
    d1, d2 = dk * -1.2 * o1 * (1 - o1), dk * 1.1 * o2 * (1 - o2)
    assert np.allclose(s.o_j, [o1, o2]) and np.isclose(s.o_k[0], ok)
    assert np.isclose(s.delta_k[0], dk) and np.allclose(s.delta_j, [d1, d2])
    np.testing.assert_allclose(s.w_ji, w_ji + 0.5 * np.array([[d1, 0.0], [d2, 0.0]]))
    np.testing.assert_allclose(s.b_k, b_k + 0.5 * dk)


def test_online_backprop_learns_xor():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    res = classic.train_generalized(classic.TwoLayerNet.random(2, 3, 1, seed=1), X, [0, 1, 1, 0],
                                    eta=2.0, epochs=5000, tol=0.02)
    assert res.converged and res.E_tot[-1] < res.E_tot[0]
    np.testing.assert_array_equal(res.net(X).ravel() > 0.5, [False, True, True, False])


@pytest.mark.parametrize("batch_size", [None, 1, 2])
def test_train_helper_batch_online_and_minibatch(batch_size):
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    net = classic.Network([2, 3, 1], "sigmoid", seed=1, scale=1.0)
    res = classic.train(net, X, [0, 1, 1, 0], loss="sse", lr=2.0 if batch_size is None else 1.0,
                        epochs=8000, batch_size=batch_size, tol=0.02)
    assert res.converged, res.losses[-1]
    np.testing.assert_array_equal(net(X).ravel() > 0.5, [False, True, True, False])
    assert len(res.losses) == res.epochs + 1


def test_train_one_batch_step_is_gradient_descent():
    X, Y = np.random.default_rng(0).standard_normal((5, 2)), np.ones((5, 1))
    net = classic.Network([2, 2, 1], "tanh", seed=0)
    r = net.backprop(X, Y, loss="mse")
    expected = [w - 0.1 * g for w, g in zip(net.W, r.grad_W)]
    classic.train(net, X, Y, loss="mse", lr=0.1, epochs=1)
    for w, e in zip(net.W, expected):
        np.testing.assert_allclose(w, e, rtol=1e-15)


# ---------------------------------------------------------------- single-layer rules

X_BOOL = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
RULES = [classic.Perceptron, classic.LMS, classic.SigmoidUnit]


@pytest.mark.parametrize("Rule", RULES)
@pytest.mark.parametrize("name,y", [("AND", [0, 0, 0, 1]), ("OR", [0, 1, 1, 1])])
def test_single_layer_rules_learn_and_and_or(Rule, name, y):
    res = Rule(epochs=1000).fit(X_BOOL, y)
    assert res.converged, f"{Rule.__name__} did not learn {name}"
    assert res.errors[-1] == 0
    np.testing.assert_array_equal(Rule(epochs=res.epochs).fit(X_BOOL, y).w, res.w)   # deterministic


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("Rule", RULES)
def test_single_layer_rules_fail_on_xor(Rule, shuffle):
    """XOR is not linearly separable: one unit never gets all four right (seed 000)."""
    res = Rule(epochs=2000, shuffle=shuffle, seed=3).fit(X_BOOL, [0, 1, 1, 0])
    assert not res.converged
    assert res.epochs == 2000 and min(res.errors) >= 1


def test_perceptron_rule_by_hand():
    """First epoch of Rosenblatt's rule on AND from w = 0, b = 0, η = 1."""
    p = classic.Perceptron(lr=1.0, epochs=1)
    res = p.fit(X_BOOL, [0, 0, 0, 1])
    # (0,0): o = [0 > 0] = 0, right;  (0,1): right;  (1,0): right;
    # (1,1): o = 0 but d = 1 -> w += (1, 1), b += 1
    np.testing.assert_array_equal(res.w.ravel(), [1.0, 1.0])
    np.testing.assert_array_equal(res.b, [1.0])


def test_lms_settles_near_the_least_squares_weights():
    """LMS is SGD on ½(d − o)² of a linear unit: with a small step it ends near the
    least-squares weights -- for XOR w = 0, b = ½, a line that separates nothing."""
    y = np.array([0, 1, 1, 0.0])
    res = classic.LMS(lr=0.01, epochs=3000).fit(X_BOOL, y)
    w_ls = np.linalg.lstsq(np.c_[X_BOOL, np.ones(4)], y, rcond=None)[0]
    np.testing.assert_allclose(w_ls, [0.0, 0.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(np.r_[res.w.ravel(), res.b], w_ls, atol=0.02)


def test_sigmoid_unit_rule_is_seed_000_update():
    """W_j ← W_j + α·Err·g′(in)·x_j for one pattern, by hand."""
    u = classic.SigmoidUnit(lr=0.5, epochs=1)
    u._init(2, 1)
    u.w[:] = [[0.3], [-0.2]]
    u.b[:] = 0.1
    x, d = np.array([1.0, 1.0]), np.array([1.0])
    g = 1 / (1 + np.exp(-(0.3 - 0.2 + 0.1)))
    u.update(x, d)
    np.testing.assert_allclose(u.w.ravel(), [0.3 + 0.5 * (1 - g) * g * (1 - g),
                                             -0.2 + 0.5 * (1 - g) * g * (1 - g)])


# ---------------------------------------------------------------- the activation table

def test_one_sigmoid_accurate_in_both_tails():
    """classic's sigmoid is the op's form: the same numbers as rg.sigmoid, no overflow, and
    the far tail kept (the tanh form rounded sigmoid(−40) to 0 in float64, −30 in float32)."""
    from retrograd.classic.functions import sigmoid
    z = np.array([-1000.0, -745.0, -40.0, -30.0, -1.0, 0.0, 0.5, 30.0, 40.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):     # underflow to 0 is fine
        s = sigmoid(z)
    np.testing.assert_array_equal(s, rg.sigmoid(rg.tensor(z)).numpy())
    assert s[2] == pytest.approx(np.exp(-40.0), rel=1e-15, abs=0)
    assert s[0] == 0.0 and s[-1] == 1.0
    s32 = sigmoid(z.astype(np.float32))
    assert s32.dtype == np.float32 and s32[3] == pytest.approx(np.exp(-30.0), rel=1e-6, abs=0)
    np.testing.assert_array_equal(classic.functions.activation("sigmoid", z), s)


def test_sigmoid_unit_uses_the_shared_sigmoid():
    unit = classic.SigmoidUnit()
    unit.w, unit.b = np.array([[40.0]]), np.array([0.0])
    o = unit.output(np.array([[-1.0]]))[0, 0]
    assert o == pytest.approx(np.exp(-40.0), rel=1e-15, abs=0)


@pytest.mark.parametrize("name", [a for a in classic.ACTIVATIONS if a != "softmax"])
def test_each_activation_record_has_a_derivative_that_checks_out(name):
    """g′(z, g(z)) against central differences of g, away from relu's kink."""
    act = classic.functions.get(name)
    z = np.array([-2.1, -0.3, 0.4, 1.7])
    eps = 1e-6
    numeric = (act.g(z + eps) - act.g(z - eps)) / (2 * eps)
    np.testing.assert_allclose(act.g_prime(z, act.g(z)), numeric, rtol=1e-7, atol=1e-9)
    assert act.elementwise and act.g_prime_text


def test_softmax_is_the_one_activation_without_an_elementwise_derivative():
    assert [a for a in classic.ACTIVATIONS if not classic.functions.get(a).elementwise] == \
        ["softmax"]
    with pytest.raises(ValueError, match="softmax has no elementwise derivative"):
        classic.functions.derivative("softmax", np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="unknown activation 'swish'; choose one of sigmoid, "
                                         "tanh, relu, identity, softmax"):
        classic.functions.activation("swish", np.zeros(2))
