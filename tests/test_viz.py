"""Pictures: the computational graph with gradient norms (DOT), training curves, the
error surface with a gradient-descent path, per-layer gradient flow, and the `graph` and
`plot` commands. Graphviz's `dot` is not needed: a fake one stands in where rendering
is tested. Tests needing matplotlib or pydot skip cleanly without them."""
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import retrograd as rg
import retrograd.viz as viz
from retrograd import nn, optim
from retrograd.cli import main

# pydot's parser uses pyparsing names that newer pyparsing deprecates
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pydot.*")

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.fixture
def mpl():
    return pytest.importorskip("matplotlib")


@pytest.fixture
def pydot():
    return pytest.importorskip("pydot")


@pytest.fixture
def no_graphviz(monkeypatch, tmp_path):
    """A PATH on which there is no `dot` program."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.fixture
def fake_graphviz(monkeypatch, tmp_path):
    """A stand-in `dot` that reads DOT on stdin and answers with a small SVG."""
    if os.name == "nt":
        pytest.skip("the fake dot program is a shell script")
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    exe = bin_dir / "dot"
    exe.write_text('#!/bin/sh\ncat > /dev/null\n'
                   'echo \'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                   '<text>graph</text></svg>\'\n')
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ.get("PATH", ""))


def assert_png(path):
    import matplotlib.image
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG file"
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].var() > 1e-4, f"{path} is blank"


def assert_svg(path):
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")


def parse_dot(pydot, text):
    graphs = pydot.graph_from_dot_data(text)
    assert graphs, "pydot could not parse the DOT text"
    g = graphs[0]
    labels = {n.get_name(): (n.get_label() or "") for n in g.get_nodes()
              if n.get_name() not in ("node", "edge", "graph")}
    edges = [(e.get_source(), e.get_destination()) for e in g.get_edges()]
    return labels, edges


# ----------------------------------------------------------------------------- graph

def _seed001():
    """Seed 001 §4.5: f = sin(x1) + x1·x2 at x1 = 2, x2 = 5."""
    x1 = rg.tensor(2.0, requires_grad=True, name="x1")
    x2 = rg.tensor(5.0, requires_grad=True, name="x2")
    return x1, x2, rg.sin(x1) + x1 * x2


def _norm_in(label):
    """The number after '‖∂L/∂·‖ = ' in a node label, or None."""
    key = "‖∂L/∂·‖ = "
    if key not in label:
        return None
    return float(label.split(key)[1].split("<")[0])


def test_dot_of_the_seed_expression_has_ops_leaves_edges_and_the_adjoints(pydot):
    x1, x2, f = _seed001()
    trace = viz.trace_gradients(f)
    labels, edges = parse_dot(pydot, viz.to_dot(f, grads=trace))
    by_title = {lab.split("<b>")[1].split("</b>")[0]: (name, lab) for name, lab in labels.items()}
    assert set(by_title) == {"x1", "x2", "sin", "mul", "add"}
    name = {t: n for t, (n, _) in by_title.items()}
    assert sorted(edges) == sorted([(name["x1"], name["sin"]), (name["x1"], name["mul"]),
                                    (name["x2"], name["mul"]), (name["sin"], name["add"]),
                                    (name["mul"], name["add"])])
    assert "input scalar float32" in by_title["x1"][1]
    # the adjoints by hand: x̄1 = cos(x1) + x2, x̄2 = x1, and 1 for sin, mul and the output
    expected = {"x1": abs(np.cos(2.0) + 5.0), "x2": 2.0, "sin": 1.0, "mul": 1.0, "add": 1.0}
    for t, value in expected.items():
        assert _norm_in(by_title[t][1]) == pytest.approx(value, rel=1e-3), t
    assert trace[x1] == pytest.approx(np.cos(2.0) + 5.0, rel=1e-6)
    assert x1.grad.item() == pytest.approx(np.cos(2.0) + 5.0, rel=1e-6)    # a real backward ran


def test_dot_of_a_layer_shows_shapes_and_gradient_norms_matching_autodiff(pydot):
    rng = np.random.default_rng(0)
    x = rg.tensor(rng.standard_normal((4, 3)), name="x")                      # float64 input
    W = nn.Parameter(rng.standard_normal((3, 2)), name="W")
    z = x @ W
    h = rg.tanh(z)
    loss = (h * h).sum() * 0.5
    trace = viz.trace_gradients(loss)
    labels, edges = parse_dot(pydot, viz.to_dot(loss, grads=trace))
    text = "\n".join(labels.values())
    assert "<b>matmul</b>" in text and "<b>tanh</b>" in text and "<b>sum</b>" in text
    assert "(4, 2) float64" in text and "param (3, 2) float64" in text and "x" in text
    assert '"0.5"' in text or "0.5" in text                                    # the scalar const
    # the norms are those of the adjoints: by hand, and from autodiff on a fresh graph
    h_np = np.tanh(x.numpy() @ W.numpy())
    dz = h_np * (1 - h_np ** 2)
    want = {"W": np.linalg.norm(x.numpy().T @ dz), "tanh": np.linalg.norm(h_np),
            "matmul": np.linalg.norm(dz)}
    z2 = x @ W
    gz, gW = rg.autograd_grad((rg.tanh(z2) ** 2).sum() * 0.5, [z2, W])
    assert np.linalg.norm(gz.numpy()) == pytest.approx(want["matmul"], rel=1e-12)
    assert np.linalg.norm(gW.numpy()) == pytest.approx(want["W"], rel=1e-12)
    for name, lab in labels.items():
        title = lab.split("<b>")[1].split("</b>")[0] if "<b>" in lab else None
        if title in want:
            assert _norm_in(lab) == pytest.approx(want[title], rel=1e-3), title   # 4 digits shown
    assert trace[W] == pytest.approx(np.linalg.norm(W.grad.numpy()), rel=1e-12)
    assert trace[z] == pytest.approx(want["matmul"], rel=1e-10)
    assert len(edges) >= 6


def test_without_a_trace_leaves_show_their_grad_and_a_freed_graph_is_noted(pydot):
    x1, x2, f = _seed001()
    assert "‖∂L/∂·‖" not in viz.to_dot(f)                # no gradient yet
    f.backward(retain_graph=True)
    labels, _ = parse_dot(pydot, viz.to_dot(f))
    norms = {lab.split("<b>")[1].split("</b>")[0]: _norm_in(lab) for lab in labels.values()}
    assert norms["x1"] == pytest.approx(np.cos(2.0) + 5.0, rel=1e-3) and norms["x2"] == 2.0
    assert norms["mul"] is None                          # ops' adjoints were not captured
    assert "‖∂L/∂·‖" not in viz.to_dot(f, show_grad=False)
    _, _, g = _seed001()
    g.backward()                                         # frees the graph
    labels, _ = parse_dot(pydot, viz.to_dot(g))
    assert "freed" in "\n".join(labels.values())          # the note says how to keep it


def test_trace_gradients_removes_its_hooks_and_keeps_the_graph():
    x1, x2, f = _seed001()
    viz.trace_gradients(f)
    assert not x1._hooks and not f._hooks
    viz.trace_gradients(f)                               # retain_graph: a second pass works
    assert x1.grad.item() == pytest.approx(2 * (np.cos(2.0) + 5.0), rel=1e-6)
    with pytest.raises(rg.RetrogradError):
        viz.trace_gradients(rg.tensor(1.0))


def test_draw_graph_without_graphviz_writes_dot_and_says_graphviz_is_needed(tmp_path, no_graphviz):
    _, _, f = _seed001()
    assert viz.draw_graph(f, tmp_path / "g.dot") == [str(tmp_path / "g.dot")]
    with pytest.raises(viz.GraphvizNotFound, match="Graphviz") as e:
        viz.draw_graph(f, tmp_path / "h.svg")
    assert e.value.dot_path == str(tmp_path / "h.dot") and os.path.exists(e.value.dot_path)
    assert not os.path.exists(tmp_path / "h.svg")
    g = viz.graph(f)
    assert g._repr_svg_() is None                        # Jupyter falls back to the text
    assert "digraph" in g._repr_markdown_() and str(g) == viz.to_dot(f)


def test_draw_graph_and_jupyter_repr_with_graphviz(tmp_path, fake_graphviz):
    _, _, f = _seed001()
    written = viz.draw_graph(f, tmp_path / "g.svg")
    assert written == [str(tmp_path / "g.dot"), str(tmp_path / "g.svg")]
    assert_svg(tmp_path / "g.svg")
    g = viz.graph(f, grads=viz.trace_gradients(f))
    assert g._repr_svg_().lstrip().startswith("<svg")
    assert g._repr_markdown_() is None                   # the picture, not the text too


def test_graph_command_without_graphviz_writes_dot_and_prints_the_note(tmp_path, no_graphviz,
                                                                       capsys, pydot):
    out = tmp_path / "graph.dot"
    assert main(["graph", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert str(out) in captured.out
    assert "Graphviz" in captured.err and "graph.dot" in captured.err
    labels, _ = parse_dot(pydot, out.read_text(encoding="utf-8"))
    text = "\n".join(labels.values())
    for fragment in ("<b>W1</b>", "<b>b2</b>", "<b>sigmoid</b>", "<b>matmul</b>", "(4, 2) float32",
                     "‖∂L/∂·‖ = "):
        assert fragment in text
    # asking for PNG still succeeds with the DOT file
    assert main(["graph", "--out", str(tmp_path / "g.png"), "--layers", "3-4-2",
                 "--loss", "cross_entropy", "--activation", "relu"]) == 0
    assert (tmp_path / "g.dot").exists() and "Graphviz" in capsys.readouterr().err
    assert main(["graph", "--out", str(tmp_path / "g.txt")]) == 2
    assert main(["graph", "--layers", "3"]) == 2


def test_graph_command_with_graphviz_writes_svg(tmp_path, fake_graphviz, capsys):
    assert main(["graph", "--out", str(tmp_path / "graph.dot")]) == 0
    assert (tmp_path / "graph.svg").exists() and str(tmp_path / "graph.svg") in capsys.readouterr().out


# ----------------------------------------------------------------------------- curves

def _xor_run(tmp_path, epochs=8):
    from retrograd.data import xor
    from retrograd.train import fit
    x, y = xor()
    rg.manual_seed(0)
    model = nn.MLP([2, 4, 2], "tanh")
    opt = optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    sched = optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    run = tmp_path / "run"
    fit(model, nn.CrossEntropyLoss(), opt, (x, y), (x, y), epochs=epochs, batch_size=4,
        scheduler=sched, out_dir=run, progress=False, log=None)
    return run


def test_plot_history_from_a_fit_run(tmp_path, mpl):
    run = _xor_run(tmp_path)
    rows = json.loads((run / "history.json").read_text())
    assert viz.plot_history(run, tmp_path / "c.png") == str(tmp_path / "c.png")
    assert_png(tmp_path / "c.png")
    viz.plot_history(rows, tmp_path / "c.svg", title="xor")
    assert_svg(tmp_path / "c.svg")
    no_acc = [{"epoch": r["epoch"], "train_loss": r["train_loss"], "lr": 0.1} for r in rows]
    assert_png(viz.plot_history(no_acc, tmp_path / "loss_only.png"))
    with pytest.raises(rg.RetrogradError, match="empty"):
        viz.plot_history([], tmp_path / "x.png")
    with pytest.raises(rg.RetrogradError, match="history.json"):
        viz.plot_history(tmp_path / "nowhere", tmp_path / "x.png")


def test_a_plot_is_written_atomically_and_a_failed_save_keeps_the_old_file(tmp_path, mpl):
    run = _xor_run(tmp_path)
    viz.plot_history(run, tmp_path / "c.png")
    before = (tmp_path / "c.png").read_bytes()
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "c.png")
    viz.plot_history(run, link, title="again")          # through the link: its target updated
    assert link.is_symlink() and (tmp_path / "c.png").read_bytes() != before
    (tmp_path / "keep.xyz").write_text("kept")
    with pytest.raises(ValueError, match="xyz"):
        viz.plot_history(run, tmp_path / "keep.xyz")
    assert (tmp_path / "keep.xyz").read_text() == "kept"
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_plot_command_on_a_run_folder(tmp_path, mpl, capsys):
    run = _xor_run(tmp_path, epochs=4)
    assert main(["plot", str(run), "--out", str(tmp_path / "pics")]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "pics" / "curves.png"), str(tmp_path / "pics" / "curves.svg")]
    assert_png(printed[0])
    assert_svg(printed[1])
    assert main(["plot", str(run)]) == 0 and (run / "curves.png").exists()
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "missing: no such file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["plot", str(tmp_path / "empty")]) == 2
    assert "history.json" in capsys.readouterr().err


def test_without_matplotlib_plots_say_how_to_install_it(tmp_path, monkeypatch, capsys):
    rows = [{"epoch": 1, "train_loss": 1.0}]
    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(viz.MissingDependency, match=r"pip install 'retrograd\[viz\]'"):
        viz.plot_history(rows, tmp_path / "c.png")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "history.json").write_text(json.dumps(rows))
    assert main(["plot", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'retrograd[viz]'" in err and len(err.strip().splitlines()) == 1


def test_importing_viz_does_not_import_matplotlib():
    r = subprocess.run([sys.executable, "-c", "import sys, retrograd.viz; "
                        "print('matplotlib' in sys.modules)"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


# ----------------------------------------------------------------------------- landscape

def _xor_221(seed=0):
    X = rg.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    Y = rg.tensor([[0.0], [1.0], [1.0], [0.0]])
    rg.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 1), nn.Sigmoid())
    loss_fn = nn.SSELoss()
    return model, (lambda: loss_fn(model(X), Y))


def test_landscape_centre_is_the_loss_at_the_weights_and_weights_are_restored():
    model, E = _xor_221()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    A, B, Z = viz.loss_landscape(E, model, ("0.weight", (0, 0)), ("2.weight", (1, 0)),
                                 span=2.0, steps=11)
    assert A.shape == B.shape == Z.shape == (11, 11)
    assert Z[5, 5] == E().item()                         # exactly: the centre is the weights
    assert A[5, 5] == model[0].weight.data[0, 0] and B[5, 5] == model[2].weight.data[1, 0]
    assert A[0, 0] == pytest.approx(A[5, 5] - 2.0, abs=1e-6)
    assert B[-1, 0] == pytest.approx(B[5, 5] + 2.0, abs=1e-6)   # rows run along b
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    # the same weight by position in a parameter list, or as the tensor itself
    params = model.parameters()
    A2, B2, Z2 = viz.loss_landscape(E, params, (0, (0, 0)), (params[2], (1, 0)), 2.0, 11)
    np.testing.assert_array_equal(Z2, Z)
    # one grid point by hand
    model[0].weight.data[0, 0] = A[2, 7]
    model[2].weight.data[1, 0] = B[2, 7]
    assert Z[2, 7] == pytest.approx(E().item(), rel=1e-6)


def test_landscape_rejects_bad_weights():
    model, E = _xor_221()
    with pytest.raises(rg.RetrogradError, match="names are"):
        viz.loss_landscape(E, model, ("nope", (0, 0)), ("2.weight", (0, 0)))
    with pytest.raises(rg.RetrogradError, match="one scalar"):
        viz.loss_landscape(E, model, ("0.weight", (0,)), ("2.weight", (0, 0)))
    with pytest.raises(rg.RetrogradError, match="out of range"):
        viz.loss_landscape(E, model, ("0.weight", (5, 0)), ("2.weight", (0, 0)))
    with pytest.raises(rg.RetrogradError, match="same entry"):
        viz.loss_landscape(E, model, ("0.weight", (0, 0)), ("0.weight", (0, 0)))


def test_descent_path_goes_downhill_on_the_two_weights_only(tmp_path, mpl):
    model, E = _xor_221()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    wa, wb = ("2.weight", (0, 0)), ("2.weight", (1, 0))
    path = viz.descent_path(E, model, wa, wb, lr=0.5, steps=40, start=(-2.0, 2.5))
    assert path.shape == (41, 3)
    assert tuple(path[0, :2]) == (-2.0, 2.5)
    assert np.all(np.diff(path[:, 2]) <= 1e-7) and path[-1, 2] < path[0, 2] - 1e-3
    for k, v in model.state_dict().items():            # restored, no grads left behind
        np.testing.assert_array_equal(v, before[k])
    assert all(p.grad is None for p in model.parameters())
    # a step by hand: w ← w − lr ∂E/∂w at the start
    W2 = model[2].weight
    saved = W2.data.copy()
    W2.data[0, 0], W2.data[1, 0] = -2.0, 2.5
    g = rg.autograd_grad(E(), [W2])[0].numpy()
    W2.data[...] = saved
    assert path[1, 0] == pytest.approx(-2.0 - 0.5 * g[0, 0], rel=1e-5)
    assert path[1, 1] == pytest.approx(2.5 - 0.5 * g[1, 0], rel=1e-5)
    A, B, Z = viz.loss_landscape(E, model, wa, wb, span=4.0, steps=21)
    out = viz.plot_landscape(A, B, Z, tmp_path / "land.png", path_points=path)
    assert_png(out)
    assert_svg(viz.plot_landscape(A, B, Z, tmp_path / "land.svg", path_points=path[:, :2],
                                  surface=False))


def test_the_loss_landscape_example_runs(tmp_path, mpl):
    out = tmp_path / "landscape.png"
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, "loss_landscape.py"), str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout
    assert_png(out)


# ----------------------------------------------------------------------------- gradient flow

def _deep_mlp_grads(activation, steps=1):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 10)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    rg.manual_seed(0)
    model = nn.MLP([10, 32, 32, 32, 32, 32, 2], activation)
    opt = optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    mon = viz.GradientMonitor(model)
    for _ in range(steps):
        loss = loss_fn(model(rg.tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, mon


def test_sigmoid_gradients_vanish_towards_the_input_and_relu_ones_much_less():
    _, sig = _deep_mlp_grads("sigmoid")
    _, relu = _deep_mlp_grads("relu")
    for mon in (sig, relu):
        assert mon.grads.shape == (1, 6) and mon.deltas.shape == (1, 6)
    sig_ratio = sig.grads[0, 0] / sig.grads[0, -1]
    relu_ratio = relu.grads[0, 0] / relu.grads[0, -1]
    assert sig_ratio < 1e-3                              # first layer ≪ last layer
    assert relu_ratio > 100 * sig_ratio                  # far less so with ReLU
    # the deltas shrink layer by layer by at least g′ ≤ ¼ times a weight factor
    assert np.all(np.diff(np.log(sig.deltas[0])) > 0)
    assert relu.deltas[0, 0] / relu.deltas[0, -1] > 100 * sig.deltas[0, 0] / sig.deltas[0, -1]


def test_gradient_monitor_matches_the_gradients_and_removes_its_hooks(tmp_path, mpl):
    model, mon = _deep_mlp_grads("tanh", steps=3)
    assert mon.grads.shape == (3, 6) and len(mon.records) == 3
    layers = [m for m in model if isinstance(m, nn.Linear)]
    last = np.array([np.abs(m.weight.grad.numpy()).mean() for m in layers])
    np.testing.assert_allclose(mon.grads[-1], last, rtol=1e-6)
    out = viz.plot_gradient_flow(mon, tmp_path / "flow.png")
    assert_png(out)
    mon.remove()
    assert all("forward" not in vars(m) for m in layers) and not any(m.weight._hooks for m in layers)
    x = rg.tensor(np.ones((2, 10), np.float32))
    model(x).sum().backward()
    assert len(mon.records) == 3                         # no longer recording
    _, sig = _deep_mlp_grads("sigmoid", steps=4)
    _, relu = _deep_mlp_grads("relu", steps=4)
    assert_png(viz.plot_gradient_flow({"sigmoid": sig, "relu": relu}, tmp_path / "cmp.png",
                                      title="sigmoid vs ReLU"))
    assert_svg(viz.plot_gradient_flow(sig.records, tmp_path / "flow.svg"))
