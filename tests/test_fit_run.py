"""Issue 11 item 6: train.fit as a small run object, and one table per vocabulary in
the CLI (choices read from the table that defines the names, retrograd's own softmax)."""
import ast
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

import retrograd as rg
from retrograd import cli, explain, nn, optim, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCREEN = 50          # lines of code (no docstring): what reads in one screen


def _functions(module):
    tree = ast.parse(inspect.getsource(module))
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _code_lines(fn):
    """Lines of a function without its docstring."""
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


# ---------------------------------------------------------------- the run object

def test_train_has_no_closures_nor_nonlocal():
    tree = ast.parse(inspect.getsource(train))
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Nonlocal)]
    fit = next(f for f in _functions(train) if f.name == "fit")
    nested = [n.name for n in ast.walk(fit) if n is not fit
              and isinstance(n, (ast.FunctionDef, ast.Lambda, ast.AsyncFunctionDef))]
    assert nested == []


@pytest.mark.parametrize("module", [train, cli], ids=["train", "cli"])
def test_every_function_reads_in_one_screen(module):
    long = {f.name: _code_lines(f) for f in _functions(module) if _code_lines(f) > SCREEN}
    assert long == {}


def test_fit_is_a_short_outline():
    fit = next(f for f in _functions(train) if f.name == "fit")
    assert _code_lines(fit) <= 35


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)


def _fit(out, epochs, lines, **kw):
    rg.manual_seed(0)
    model = nn.MLP([4, 8, 3], "tanh", dropout=0.1)
    opt = optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    x, y = _data()
    (xt, yt), val = train.validation_split(x, y, seed=0)
    h = train.fit(model, nn.CrossEntropyLoss(), opt, (xt, yt), val, epochs=epochs,
                  batch_size=16, out_dir=out, progress=False, log=lines.append, **kw)
    return h, model


def test_resume_log_lines_and_files_as_an_uninterrupted_run(tmp_path):
    """An end-to-end check of the outline: save_every, resume, the log lines and files."""
    whole, stopped = [], []
    h_all, m_all = _fit(str(tmp_path / "a"), 5, whole, save_every=2)
    _fit(str(tmp_path / "b"), 3, stopped, save_every=2)
    resumed = []
    h_res, m_res = _fit(str(tmp_path / "b"), 5, resumed, save_every=2, resume=True)
    assert resumed[0] == f"resumed from {tmp_path / 'b' / 'last.npz'} after epoch 3"
    def strip(lines):                      # not the seconds, nor the total of epochs
        return [line.rsplit("  ", 1)[0].replace("/3", "/5") for line in lines]
    assert len(whole) == 5 and strip(stopped + resumed[1:]) == strip(whole)
    assert [r["epoch"] for r in h_res] == [1, 2, 3, 4, 5]
    for a, b in zip(m_all.parameters(), m_res.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert sorted(os.listdir(tmp_path / "a")) == ["best.npz", "history.json", "last.npz"]
    assert rg.load(str(tmp_path / "a" / "last.npz"))["epoch"] == 5


def test_early_stopping_line_and_last_save(tmp_path):
    lines = []
    h, _ = _fit(str(tmp_path), 200, lines, early_stopping=1, save_every=50)
    assert lines[-1].startswith(f"stopped early at epoch {len(h)}: no better validation loss "
                                "for 1 epochs (best ")
    assert rg.load(str(tmp_path / "last.npz"))["epoch"] == len(h) < 200


# ---------------------------------------------------------------- one table per vocabulary

def _choices(command, flag):
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command").choices[command]
    return tuple(next(a for a in sub._actions if flag in a.option_strings).choices)


def test_train_choices_come_from_the_tables_that_define_them():
    assert set(_choices("train", "--activation")) <= set(nn.ACTIVATIONS)
    assert _choices("train", "--activation") == nn.layers.HIDDEN_ACTIVATIONS
    assert set(_choices("train", "--loss")) <= set(nn.LOSSES)
    assert _choices("train", "--optimizer") == tuple(cli.OPTIMIZERS)
    assert _choices("train", "--schedule") == tuple(cli.SCHEDULES)
    assert _choices("graph", "--activation") == nn.layers.HIDDEN_ACTIVATIONS
    assert set(_choices("graph", "--loss")) <= set(_choices("train", "--loss"))


def test_explain_choices_are_explains_own():
    assert _choices("explain", "--activation") == tuple(explain.HIDDEN_ACTIVATIONS)
    assert _choices("explain", "--output") == tuple(explain.OUTPUT_ACTIVATIONS)
    assert _choices("explain", "--loss") == tuple(explain.NET_LOSSES)


def test_cli_lists_no_loss_classes_nor_softmax():
    src = inspect.getsource(cli)
    assert "np.exp(" not in src                     # softmax is rg.softmax
    for cls in ("CrossEntropyLoss", "MSELoss", "SSELoss", "BCELoss"):
        assert cls not in src                       # nn.LOSSES names them


def test_each_optimizer_builds_with_its_default_lr():
    model = nn.MLP([2, 3, 2])
    for name in cli.OPTIMIZERS:
        opt = cli._make_optimizer(name, model.parameters(), None, 0.0)
        assert opt.param_groups[0]["lr"] == cli.DEFAULT_LR[name]
    sgd = cli._make_optimizer("nesterov", model.parameters(), 0.5, 0.1)
    assert isinstance(sgd, optim.SGD) and sgd.param_groups[0]["nesterov"]


def test_class_probabilities_are_rg_softmax():
    out = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32) * 30
    np.testing.assert_array_equal(cli._class_probabilities(out),
                                  rg.softmax(rg.tensor(out), axis=1).numpy())


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "retrograd", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_predict_of_one_sigmoid_output_names_the_likelier_class(tmp_path):
    """The prediction column of a 2-2-1 net was always 0 (argmax over one column)."""
    r = _cli("train", "--data", "xor", "--layers", "2-2-1", "--activation", "sigmoid",
             "--loss", "sse", "--lr", "2", "--epochs", "300", "--no-progress", "--out", "run",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (tmp_path / "in.csv").write_text("0,0\n0,1\n1,0\n1,1\n")
    r = _cli("predict", "run/best.npz", "in.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = (tmp_path / "in.pred.csv").read_text().splitlines()
    assert rows[0] == "prediction,p0,p1"
    for line in rows[1:]:
        c, p0, p1 = line.split(",")
        assert int(c) == int(float(p1) > float(p0))
    assert [int(line.split(",")[0]) for line in rows[1:]] == [0, 1, 1, 0]
