"""Recurrent layers (retrograd/nn/rnn.py): RNN, LSTM, GRU and their cells against
PyTorch's with copied weights, finite-difference checks of first and second order,
truncated BPTT, compilation, the errors a user can cause, and `retrograd explain --rnn`."""
import re

import numpy as np
import pytest

import retrograd as rg
from retrograd.errors import ShapeError
from retrograd.ops import rnn as ops_rnn
from torch_oracle import torch

RTOL, ATOL = 1e-4, 1e-5


def copy_torch_weights(ours, theirs):
    """Load a torch RNN/LSTM/GRU (or cell) module's parameters into ours: same names,
    weight matrices transposed to retrograd's (in, out) layout."""
    state = {name: (p.detach().numpy().T if p.ndim == 2 else p.detach().numpy())
             for name, p in theirs.named_parameters()}
    ours.load_state_dict(state)
    return ours


def _torch_grads(module):
    return {n: p.grad.numpy().T if p.ndim == 2 else p.grad.numpy()
            for n, p in module.named_parameters()}


def _pair(kind, nonlinearity="tanh", **kw):
    """(ours, torch's) with the same weights, float64."""
    torch.manual_seed(0)
    if kind == "RNN":
        t = torch.nn.RNN(3, 4, nonlinearity=nonlinearity, **kw).double()
        ours = rg.nn.RNN(3, 4, nonlinearity=nonlinearity, dtype=np.float64, **kw)
    else:
        t = getattr(torch.nn, kind)(3, 4, **kw).double()
        ours = getattr(rg.nn, kind)(3, 4, dtype=np.float64, **kw)
    return copy_torch_weights(ours, t), t


LAYER_CASES = [(kind, nl, layers, bi, bf)
               for kind, nl in (("RNN", "tanh"), ("RNN", "relu"), ("LSTM", "tanh"), ("GRU", "tanh"))
               for layers in (1, 2) for bi in (False, True) for bf in (False, True)]


@pytest.mark.torch
@pytest.mark.parametrize("kind,nl,layers,bi,bf", LAYER_CASES)
def test_layers_match_torch_with_gradients_of_inputs_weights_and_initial_states(
        kind, nl, layers, bi, bf):
    ours, theirs = _pair(kind, nl, num_layers=layers, bidirectional=bi, batch_first=bf)
    rng = np.random.default_rng(1)
    L, N, D = 5, 2, 2 if bi else 1
    x = rng.standard_normal((N, L, 3) if bf else (L, N, 3))
    states = [rng.standard_normal((layers * D, N, 4)) for _ in range(2 if kind == "LSTM" else 1)]
    xr, xt = rg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    sr = [rg.tensor(s, requires_grad=True) for s in states]
    st = [torch.tensor(s, requires_grad=True) for s in states]
    hx_r, hx_t = (tuple(sr), tuple(st)) if kind == "LSTM" else (sr[0], st[0])
    out_r, fin_r = ours(xr, hx_r)
    out_t, fin_t = theirs(xt, hx_t)
    fin_r = fin_r if kind == "LSTM" else (fin_r,)
    fin_t = fin_t if kind == "LSTM" else (fin_t,)
    np.testing.assert_allclose(out_r.numpy(), out_t.detach().numpy(), rtol=RTOL, atol=ATOL)
    for a, b in zip(fin_r, fin_t):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=RTOL, atol=ATOL)
    # a loss reading the output and every final state
    cts = [rng.standard_normal(out_r.shape)] + [rng.standard_normal(f.shape) for f in fin_r]
    loss_r = sum((v * rg.tensor(c)).sum() for v, c in zip([out_r, *fin_r], cts))
    loss_t = sum((v * torch.tensor(c)).sum() for v, c in zip([out_t, *fin_t], cts))
    loss_r.backward()
    loss_t.backward()
    np.testing.assert_allclose(xr.grad.numpy(), xt.grad.numpy(), rtol=RTOL, atol=ATOL)
    for a, b in zip(sr, st):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=RTOL, atol=ATOL)
    grads = _torch_grads(theirs)
    assert [n for n, _ in ours.named_parameters()] == list(grads)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), grads[name], rtol=RTOL, atol=ATOL,
                                   err_msg=name)


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_unbatched_input_and_default_state_and_no_bias_match_torch(kind):
    ours, theirs = _pair(kind, bias=False)
    x = np.random.default_rng(2).standard_normal((6, 3))
    out_r, fin_r = ours(rg.tensor(x))
    out_t, fin_t = theirs(torch.tensor(x))
    assert out_r.shape == (6, 4)
    np.testing.assert_allclose(out_r.numpy(), out_t.detach().numpy(), rtol=RTOL, atol=ATOL)
    h_r, h_t = (fin_r[0], fin_t[0]) if kind == "LSTM" else (fin_r, fin_t)
    assert h_r.shape == (1, 4)
    np.testing.assert_allclose(h_r.numpy(), h_t.detach().numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.torch
@pytest.mark.parametrize("kind,nl", [("RNNCell", "tanh"), ("RNNCell", "relu"), ("LSTMCell", None),
                                     ("GRUCell", None)])
def test_cells_match_torch(kind, nl):
    torch.manual_seed(0)
    kw = {"nonlinearity": nl} if nl else {}
    theirs = getattr(torch.nn, kind)(3, 4, **kw).double()
    ours = copy_torch_weights(getattr(rg.nn, kind)(3, 4, dtype=np.float64, **kw), theirs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3))
    n_states = 2 if kind == "LSTMCell" else 1
    hs = [rng.standard_normal((2, 4)) for _ in range(n_states)]
    xr, xt = rg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    hr = [rg.tensor(h, requires_grad=True) for h in hs]
    ht = [torch.tensor(h, requires_grad=True) for h in hs]
    out_r = ours(xr, tuple(hr) if n_states == 2 else hr[0])
    out_t = theirs(xt, tuple(ht) if n_states == 2 else ht[0])
    out_r = out_r if n_states == 2 else (out_r,)
    out_t = out_t if n_states == 2 else (out_t,)
    cts = [rng.standard_normal((2, 4)) for _ in out_r]
    sum((o * rg.tensor(c)).sum() for o, c in zip(out_r, cts)).backward()
    sum((o * torch.tensor(c)).sum() for o, c in zip(out_t, cts)).backward()
    for a, b in zip(out_r, out_t):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=RTOL, atol=ATOL)
    for a, b in zip([xr, *hr], [xt, *ht]):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=RTOL, atol=ATOL)
    grads = _torch_grads(theirs)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), grads[name], rtol=RTOL, atol=ATOL)
    # unbatched
    single = ours(rg.tensor(x[0]), tuple(rg.tensor(h[0]) for h in hs) if n_states == 2
                  else rg.tensor(hs[0][0]))
    single = single if n_states == 2 else (single,)
    for a, b in zip(single, out_t):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy()[0], rtol=RTOL, atol=ATOL)


def test_parameter_names_shapes_and_init_follow_pytorch_with_in_out_matrices():
    m = rg.nn.LSTM(3, 5, num_layers=2, bidirectional=True)
    shapes = {n: p.shape for n, p in m.named_parameters()}
    assert list(shapes)[:8] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                "weight_ih_l0_reverse", "weight_hh_l0_reverse",
                                "bias_ih_l0_reverse", "bias_hh_l0_reverse"]
    assert shapes["weight_ih_l0"] == (3, 20) and shapes["weight_hh_l0"] == (5, 20)
    assert shapes["weight_ih_l1"] == (10, 20) and shapes["bias_hh_l1_reverse"] == (20,)
    assert len(shapes) == 16
    k = 1 / np.sqrt(5)
    assert all(np.abs(p.numpy()).max() <= k for p in m.parameters())
    assert rg.nn.GRU(3, 5).weight_ih_l0.shape == (3, 15)
    assert rg.nn.RNN(3, 5, bias=False).num_parameters() == 3 * 5 + 5 * 5
    assert rg.nn.LSTMCell(3, 5).weight_hh.shape == (5, 20)


# ---------------------------------------------------------------- finite differences

def _as_function(module, names):
    """f(x, state..., params...) running ``module`` with the given parameter tensors."""
    def f(x, *rest):
        n_states = len(rest) - len(names)
        for n, v in zip(names, rest[n_states:]):
            setattr(module, n, v)
        states = rest[:n_states]
        hx = tuple(states) if len(states) == 2 else states[0]
        out, fin = module(x, hx)
        fin = fin if isinstance(fin, tuple) else (fin,)
        return (out, *fin)
    return f


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_gradcheck_and_gradgradcheck_of_a_tiny_layer_in_float64(kind):
    rg.manual_seed(0)
    m = getattr(rg.nn, kind)(2, 2, bidirectional=True, dtype=np.float64)
    names = [n for n, _ in m.named_parameters()]
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 2))
    states = [rng.standard_normal((2, 2, 2)) * 0.5 for _ in range(2 if kind == "LSTM" else 1)]
    params = [p.numpy().copy() for p in m.parameters()]
    f = _as_function(m, names)
    assert rg.gradcheck(f, x, *states, *params)
    assert rg.gradgradcheck(f, x, *states, *params)


def test_relu_rnn_gradcheck():
    rg.manual_seed(1)
    m = rg.nn.RNN(2, 3, num_layers=2, nonlinearity="relu", dtype=np.float64)
    names = [n for n, _ in m.named_parameters()]
    x = np.random.default_rng(5).standard_normal((4, 2, 2))
    h0 = np.random.default_rng(6).standard_normal((2, 2, 3))
    assert rg.gradcheck(_as_function(m, names), x, h0, *[p.numpy().copy() for p in m.parameters()])


# ---------------------------------------------------------------- truncated BPTT

def test_truncated_bptt_stops_the_gradient_at_the_detached_state():
    rg.manual_seed(2)
    m = rg.nn.LSTM(2, 3, dtype=np.float64)
    x = rg.tensor(np.random.default_rng(7).standard_normal((6, 1, 2)), requires_grad=True)
    _, (h, c) = m(x[:3])
    out, _ = m(x[3:], (h.detach(), c.detach()))
    out.sum().backward()
    g = x.grad.numpy()
    assert np.all(g[:3] == 0) and np.all(np.abs(g[3:]) > 0)
    # without the detach the first chunk gets a gradient, and the total equals one pass
    x2 = rg.tensor(x.numpy(), requires_grad=True)
    _, state = m(x2[:3])
    out2, _ = m(x2[3:], state)
    out2.sum().backward()
    x3 = rg.tensor(x.numpy(), requires_grad=True)
    full, _ = m(x3)
    full[3:].sum().backward()
    assert np.abs(x2.grad.numpy()[:3]).max() > 0
    np.testing.assert_allclose(x2.grad.numpy(), x3.grad.numpy(), rtol=1e-12, atol=1e-14)
    # x_t for t >= 3 reaches only later steps: cutting the carried state changes nothing there
    np.testing.assert_allclose(g[3:], x3.grad.numpy()[3:], rtol=1e-12)
    # the truncated gradient of the second chunk equals a fresh pass from (h, c) as constants
    x4 = rg.tensor(x.numpy()[3:], requires_grad=True)
    out4, _ = m(x4, (rg.tensor(h.numpy()), rg.tensor(c.numpy())))
    out4.sum().backward()
    np.testing.assert_allclose(g[3:], x4.grad.numpy(), rtol=1e-12)


# ---------------------------------------------------------------- compiled

class _Classifier(rg.nn.Module):
    def __init__(self):
        self.lstm = rg.nn.LSTM(4, 6, batch_first=True, bidirectional=True)
        self.head = rg.nn.Linear(12, 3)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.head(out[:, -1])


def test_compile_and_compile_step_of_an_lstm_classifier_equal_eager():
    rg.manual_seed(3)
    model = _Classifier()
    rng = np.random.default_rng(8)
    x = rg.tensor(rng.standard_normal((5, 7, 4)).astype(np.float32))
    y = rng.integers(0, 3, 5)
    loss_fn = rg.nn.CrossEntropyLoss()
    params = model.parameters()
    loss = loss_fn(model(x), y)
    loss.backward()
    eager = [p.grad.numpy().copy() for p in params]
    model.zero_grad()

    def loss_and_grads(xb):
        loss = loss_fn(model(xb), y)
        return loss, rg.autograd_grad(loss, params, create_graph=True)

    cl, cg = rg.compile(loss_and_grads)(x)
    np.testing.assert_allclose(cl.numpy(), loss.numpy(), rtol=1e-5)
    for a, b in zip(cg, eager):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-4, atol=1e-6)
    before = [p.numpy().copy() for p in params]
    step = rg.graph.compile_step(model, loss_fn, rg.optim.SGD(params, lr=0.1))
    sl, _ = step(x, y)
    np.testing.assert_allclose(sl.numpy(), loss.numpy(), rtol=1e-5)
    for p, b, g in zip(params, before, eager):
        np.testing.assert_allclose(p.numpy(), b - 0.1 * g, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- errors

def test_errors_name_the_layer_and_the_shapes():
    m = rg.nn.LSTM(4, 3, num_layers=2)
    with pytest.raises(ShapeError, match=r"LSTM layer 0: input has shape \(5, 2, 7\).*input_size=4"):
        m(rg.zeros((5, 2, 7)))
    with pytest.raises(ShapeError, match=r"LSTM: h0 has shape \(1, 2, 3\), expected .* = \(2, 2, 3\)"):
        m(rg.zeros((5, 2, 4)), (rg.zeros((1, 2, 3)), rg.zeros((2, 2, 3))))
    with pytest.raises(ShapeError, match=r"LSTM: c0 has shape \(2, 2, 4\)"):
        m(rg.zeros((5, 2, 4)), (rg.zeros((2, 2, 3)), rg.zeros((2, 2, 4))))
    with pytest.raises(rg.RetrogradError, match="pair"):
        m(rg.zeros((5, 2, 4)), rg.zeros((2, 2, 3)))
    with pytest.raises(ShapeError, match=r"GRU: input must be 2-d \(unbatched\) or 3-d"):
        rg.nn.GRU(4, 3)(rg.zeros((1, 5, 2, 4)))
    with pytest.raises(ShapeError, match=r"RNN: h0 has shape \(2, 3\)"):
        rg.nn.RNN(4, 3)(rg.zeros((5, 2, 4)), rg.zeros((2, 3)))
    with pytest.raises(ShapeError, match=r"GRUCell: input has shape \(2, 5\)"):
        rg.nn.GRUCell(4, 3)(rg.zeros((2, 5)))
    with pytest.raises(ShapeError, match=r"LSTMCell: c has shape \(2, 4\), expected \(2, 3\)"):
        rg.nn.LSTMCell(4, 3)(rg.zeros((2, 4)), (rg.zeros((2, 3)), rg.zeros((2, 4))))
    with pytest.raises(ValueError, match="nonlinearity"):
        rg.nn.RNN(4, 3, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="dropout"):
        rg.nn.LSTM(4, 3, dropout=1.5)


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
def test_dropout_between_layers_only_in_training(kind):
    rg.manual_seed(4)
    m = getattr(rg.nn, kind)(3, 4, num_layers=2, dropout=0.5)
    x = rg.tensor(np.random.default_rng(9).standard_normal((4, 2, 3)).astype(np.float32))
    m.eval()
    a, _ = m(x)
    b, _ = m(x)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    m.train()
    c, _ = m(x)
    assert not np.allclose(a.numpy(), c.numpy())


# ---------------------------------------------------------------- retrograd explain --rnn

def _numbers_in(line):
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", line)]


def test_explain_rnn_prints_the_unrolled_states_the_deltas_and_the_summed_gradients():
    from retrograd.explain import explain_rnn, rnn_numbers
    text = explain_rnn()
    nums = rnn_numbers(0)
    # the states, recomputed here from the printed weights and inputs
    h = np.zeros(2)
    for t in range(3):
        h = np.tanh(nums.Wx @ nums.x[t] + nums.Wh @ h + nums.b)
        line = next(l for l in text.splitlines() if l.strip().startswith(f"h_{t + 1} = tanh"))
        np.testing.assert_allclose(_numbers_in(line.split("=")[2])[:2], h, rtol=1e-6)
        assert line.endswith("✓")
    # the deltas in reverse time order, each = (∂J/∂h_t + W_hᵀ δ_(t+1)) ⊙ (1 − h_t²)
    order = [l.strip()[:7] for l in text.splitlines() if l.strip().startswith("t = ") and "∂J/∂h" in l]
    assert order == ["t = 3: ", "t = 2: ", "t = 1: "]
    # ∂J/∂W_h: three printed terms and their sum, the sum checked twice
    section = text.split("∂J/∂W_h = Σ_t δ_t h_(t−1)ᵀ")[1].split("∂J/∂W_x")[0]
    terms = [l for l in section.splitlines() if l.strip().startswith("t = ")]
    assert len(terms) == 3 and terms[0].strip().endswith("= [0 0; 0 0]")    # h_0 = 0
    total = sum(nums.terms["W_h"])
    sum_line = next(l for l in section.splitlines() if l.strip().startswith("sum:"))
    np.testing.assert_allclose(_numbers_in(sum_line.split("autodiff")[0])[:4], total.ravel(),
                               rtol=1e-6)
    assert sum_line.count("✓") == 2 and "finite differences" in sum_line
    assert "✗" not in text
    assert "checks: 25 of 25 numbers agree with autodiff ✓, 10 of 10 weight gradients with " \
           "finite differences ✓" in text


def test_explain_rnn_numbers_agree_with_autodiff_and_finite_differences_for_other_seeds():
    from retrograd.explain import rnn_numbers
    for seed in (1, 7):
        nums = rnn_numbers(seed)
        for key, (hand, ad, fd) in nums.checks.items():
            np.testing.assert_allclose(hand, ad, rtol=1e-9, atol=1e-12, err_msg=key)
            if fd is not None:
                np.testing.assert_allclose(hand, fd, rtol=1e-5, atol=1e-8, err_msg=key)


def test_cli_explain_rnn(capsys):
    from retrograd.cli import main
    assert main(["explain", "--rnn"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("retrograd explain --rnn: backpropagation through time")
    assert main(["explain", "--rnn", "--seed", "2"]) == 0
    assert "with seed 2" in capsys.readouterr().out


@pytest.mark.parametrize("argv,flag", [(["--layers", "2-3-1"], "--layers"),
                                       (["--expr", "x*y", "--at", "x=1,y=2"], "--expr"),
                                       (["--at", "x=1"], "--at"), (["--lr", "0.1"], "--lr"),
                                       (["--input", "1,0"], "--input")])
def test_cli_explain_rnn_refuses_other_flags_in_one_line(argv, flag, capsys):
    from retrograd.cli import main
    assert main(["explain", "--rnn", *argv]) == 2
    err = capsys.readouterr().err
    assert f"{flag} cannot be combined with --rnn" in err and err.count("\n") == 1


def test_lstm_scan_names_the_shapes_it_expects():
    with pytest.raises(ShapeError, match=r"lstm_scan: expected xw \(L, N, 4H\).*\(3, 2, 8\), "
                                         r"\(2, 3\)"):
        rg.lstm_scan(rg.zeros((3, 2, 8)), rg.zeros((2, 3)), rg.zeros((2, 3)), rg.zeros((3, 8)))
    y = rg.lstm_scan(rg.zeros((3, 2, 8)), rg.zeros((2, 2)), rg.zeros((2, 2)), rg.zeros((2, 8)))
    assert y.shape == (3, 2, 12)
    gates = y.numpy()[..., 4:].reshape(3, 2, 4, 2)            # i, f, g, o of hidden 2
    np.testing.assert_allclose(gates[:, :, [0, 1, 3]], 0.5)   # σ(0)
    np.testing.assert_allclose(gates[:, :, 2], 0.0)           # tanh(0)


# ---------------------------------------------------------------- the Numba forms (ops/rnn.py)

def _scan_and_bptt_inputs(rng, dtype, L=5, N=3, H=4):
    xw = rng.standard_normal((L, N, 4 * H)) * 3       # saturating gates too
    xw[0, 0, :4] = [30, -30, 1e-5, -1e-5]
    state = [rng.standard_normal((N, H)) for _ in range(2)]
    w = rng.standard_normal((H, 4 * H)) * 0.5
    cast = lambda vs: [np.asarray(v, dtype) for v in vs]
    scan = cast([xw, *state, w])
    # the BPTT ops' x, states (the scan's own, c large enough to saturate tanh too), c0, w
    states = ops_rnn._lstm_scan(*scan, False)
    states[1, 0, H:2 * H] = [9, -9, 1e-5, -1e-5]
    bptt = [np.asarray(rng.standard_normal((L, N, 6 * H)), dtype), states, scan[2], scan[3]]
    return scan, bptt


@pytest.mark.parametrize("reverse", [False, True])
def test_the_numba_forms_agree_with_the_numpy_forms(reverse):
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    from retrograd.native.numba_helpers import loop_form
    rng = np.random.default_rng(11)
    scan, bptt = _scan_and_bptt_inputs(rng, np.float32)
    want = ops_rnn._lstm_scan(*scan, reverse)
    got = loop_form("retrograd.ops.rnn", "_lstm_scan_numba")(*scan, reverse=reverse,
                                                             out=np.empty_like(want))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)         # float32 rounding
    for op, params in ((ops_rnn._bptt, {"gated": False}), (ops_rnn._bptt, {"gated": True}),
                       (ops_rnn._bptt_adjoint, {})):
        want = op.forward(*bptt, reverse, **params)
        got = loop_form("retrograd.ops.rnn", op.lowering.__name__)(
            *bptt, reverse=reverse, **params, out=np.empty_like(want))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"{op.name} {params}")


def _scan_losses(ct, reverse):
    """(loss, grad_norm) of lstm_scan's inputs: <scan, ct> and the squared norm of its
    gradient (whose gradient is a second derivative)."""
    def loss(xw, h0, c0, w):
        return (rg.lstm_scan(xw, h0, c0, w, reverse=reverse) * ct).sum()

    def grad_norm(xw, h0, c0, w):
        gs = rg.grad(loss, argnums=(0, 1, 2, 3))(xw, h0, c0, w)
        return sum((g * g).sum() for g in gs)
    return loss, grad_norm


@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_scan_under_the_numba_backend_to_second_order(reverse, tmp_path, monkeypatch):
    """Forward, gradient and second derivative of a float32 lstm_scan: the Numba backend
    (the scan and both BPTT ops as Numba forms) gives the NumPy backend's numbers."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    monkeypatch.setenv("RETROGRAD_CACHE_DIR", str(tmp_path))
    rng = np.random.default_rng(5)
    scan, _ = _scan_and_bptt_inputs(rng, np.float32)
    ct = rg.tensor(rng.standard_normal((5, 3, 24)).astype(np.float32))
    loss, grad_norm = _scan_losses(ct, reverse)
    fns = [loss, rg.grad(loss, argnums=(0, 1, 2, 3))]
    if reverse:         # (each order is a Numba compile of seconds: the second, one way)
        fns.append(rg.grad(grad_norm, argnums=(0, 3)))
    for fn in fns:
        outs = []
        for backend in ("numpy", "numba"):
            f = rg.compile(fn, backend=backend)
            res = f(*scan)
            outs.append([r.numpy() for r in (res if isinstance(res, tuple) else (res,))])
            if backend == "numba":
                src = next(iter(f.cache.values()))["exe"].source
                assert "numba: " in src and "lstm_scan" in src.split("numba: ", 1)[1]
        for a, b in zip(*outs):
            np.testing.assert_allclose(b, a, rtol=2e-4, atol=2e-4)


def _eager_orders(scan, ct, reverse):
    """An eager float32 lstm_scan's value, gradient and a second derivative, as arrays."""
    args = [rg.tensor(a) for a in scan]
    loss, grad_norm = _scan_losses(ct, reverse)
    outs = [loss(*args), *rg.grad(loss, argnums=(0, 1, 2, 3))(*args),
            *rg.grad(grad_norm, argnums=(0, 3))(*args)]
    return [o.numpy() for o in outs]


@pytest.mark.parametrize("reverse", [False, True])
def test_eager_float32_lstm_runs_the_numba_forms_with_the_numpy_forms_numbers(reverse,
                                                                           monkeypatch):
    """Where Numba is installed, eager lstm_scan and its BPTT ops run their Numba forms
    (ops/numba_forms.py), to the NumPy forms' numbers at every order; RETROGRAD_BACKEND=numpy
    runs the NumPy forms."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    from retrograd.native.numba_helpers import loop_form
    from retrograd.ops import numba_forms
    monkeypatch.setenv("RETROGRAD_BACKEND", "auto")         # (the suite's default: numpy)
    rng = np.random.default_rng(7)
    scan, _ = _scan_and_bptt_inputs(rng, np.float32)
    ct = rg.tensor(rng.standard_normal((5, 3, 24)).astype(np.float32))
    form = loop_form("retrograd.ops.rnn", "_lstm_scan_numba")
    want = form(*scan, reverse=reverse, out=np.empty((5, 3, 24), np.float32))
    assert np.array_equal(rg.lstm_scan(*scan, reverse=reverse).numpy(), want)   # the form ran
    got = _eager_orders(scan, ct, reverse)
    for f in (ops_rnn._lstm_scan_numba, ops_rnn._lstm_bptt_numba,
              ops_rnn._lstm_bptt_adjoint_numba):
        assert numba_forms._compiled[f] is not None, f.__name__
    monkeypatch.setenv("RETROGRAD_BACKEND", "numpy")
    assert np.array_equal(rg.lstm_scan(*scan, reverse=reverse).numpy(),
                          ops_rnn._lstm_scan(*scan, reverse))
    for a, b in zip(got, _eager_orders(scan, ct, reverse)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4)


def test_float64_and_the_numpy_backend_run_the_numpy_forms_and_auto_the_numba_ones(
        monkeypatch):
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    from retrograd.graph import numba_backend as nb
    from retrograd.native.numba_helpers import loop_form
    from retrograd.ops import numba_forms
    monkeypatch.setenv("RETROGRAD_BACKEND", "auto")
    calls = []
    form = loop_form("retrograd.ops.rnn", "_lstm_scan_numba")

    def counted(*args, **kwargs):
        calls.append(1)
        return form(*args, **kwargs)
    monkeypatch.setitem(numba_forms._compiled, ops_rnn._lstm_scan_numba, counted)
    rng = np.random.default_rng(8)
    scan, _ = _scan_and_bptt_inputs(rng, np.float32)
    numpy_form = ops_rnn._lstm_scan(*scan, False)
    assert np.array_equal(rg.compile(rg.lstm_scan, backend="numpy")(*scan).numpy(), numpy_form)
    assert not calls
    monkeypatch.setattr(nb, "choose", lambda prog: "numpy")      # 'auto' choosing NumPy
    got = rg.compile(rg.lstm_scan)(*scan).numpy()
    assert len(calls) == 1
    np.testing.assert_allclose(got, numpy_form, rtol=2e-6, atol=1e-6)
    wide = [a.astype(np.float64) for a in scan]
    assert np.array_equal(rg.lstm_scan(*wide).numpy(), ops_rnn._lstm_scan(*wide, False))
    assert len(calls) == 1                                      # (float64: no form)


def test_a_numba_form_that_cannot_compile_warns_once_and_runs_the_numpy_form(monkeypatch):
    numba = pytest.importorskip("numba")
    pytest.importorskip("scipy")
    from retrograd.native import numba_helpers
    from retrograd.ops import numba_forms

    @numba.njit
    def broken(xw, h0, c0, w_hh, reverse, out):         # a form bug: a type Numba does not know
        return object()

    monkeypatch.setenv("RETROGRAD_BACKEND", "auto")
    monkeypatch.setattr(numba_forms, "_compiled", {})
    monkeypatch.setattr(numba_helpers, "loop_form", lambda module, name: broken)
    scan, _ = _scan_and_bptt_inputs(np.random.default_rng(9), np.float32)
    message = r"lstm_scan: Numba could not compile its loop form \(TypingError: [^\x1b]*\); it"
    with pytest.warns(RuntimeWarning, match=message):
        got = rg.lstm_scan(*scan).numpy()
    assert np.array_equal(got, ops_rnn._lstm_scan(*scan, False))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rg.lstm_scan(*scan)                                     # once: no second warning
