"""Issue 10, items 24 and 26: BLAS threads during training, and the loud summary of
the PyTorch comparisons skipped for lack of torch. (Item 25 is tests/test_readme.py.)"""
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import retrograd as rg
from retrograd.errors import RetrogradError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- item 24: BLAS threads under rg.train.fit

def _blas_threads():
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def _fit_recording_threads(sizes, batch, rows=64, **kw):
    """Run a short fit whose step records the BLAS thread counts it runs under."""
    rg.manual_seed(0)
    model = rg.nn.MLP(sizes, "tanh")
    opt = rg.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = rg.nn.CrossEntropyLoss()
    x = np.random.default_rng(0).standard_normal((rows, sizes[0])).astype(np.float32)
    y = np.arange(rows) % sizes[-1]
    seen = []

    def step(xb, yb):
        seen.append(_blas_threads())
        out = model(xb)
        loss = loss_fn(out, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss, out

    rg.train.fit(model, loss_fn, opt, (x, y), epochs=1, batch_size=batch, progress=False,
                 log=None, step=step, **kw)
    return seen


@pytest.fixture
def two_blas_threads(monkeypatch):
    """BLAS set to 2 threads (on any machine), no thread variables in the environment."""
    if not _blas_threads():
        pytest.skip("threadpoolctl finds no BLAS library")
    for var in ("RETROGRAD_BLAS_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    with threadpool_limits(2, user_api="blas"):
        yield


def test_fit_runs_small_products_on_one_blas_thread_and_restores_the_setting(two_blas_threads):
    seen = _fit_recording_threads([784, 100, 10], batch=32)
    assert seen and all(set(t) == {1} for t in seen)
    assert set(_blas_threads()) == {2}


def test_fit_keeps_the_blas_threads_for_large_products(two_blas_threads):
    # a 1024x1024 weight at batch 256: 2.7e8 multiply-adds per product
    seen = _fit_recording_threads([1024, 1024, 10], batch=256, rows=256)
    assert seen and all(set(t) == {2} for t in seen)


def test_fit_blas_threads_argument_wins(two_blas_threads, monkeypatch):
    monkeypatch.setenv("RETROGRAD_BLAS_THREADS", "1")
    seen = _fit_recording_threads([784, 100, 10], batch=32, blas_threads=2)
    assert all(set(t) == {2} for t in seen)
    seen = _fit_recording_threads([1024, 1024, 10], batch=256, rows=256, blas_threads=1)
    assert all(set(t) == {1} for t in seen)


@pytest.mark.parametrize("value, expect", [("2", 2), ("none", 2), ("auto", 1), (" 1 ", 1)])
def test_the_environment_variable_overrides_the_default(two_blas_threads, monkeypatch, value, expect):
    monkeypatch.setenv("RETROGRAD_BLAS_THREADS", value)
    seen = _fit_recording_threads([784, 100, 10], batch=32)
    assert all(set(t) == {expect} for t in seen)


@pytest.mark.parametrize("var", ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"])
def test_a_thread_count_the_user_set_for_blas_is_left_alone(two_blas_threads, monkeypatch, var):
    monkeypatch.setenv(var, "2")
    seen = _fit_recording_threads([784, 100, 10], batch=32)
    assert all(set(t) == {2} for t in seen)


@pytest.mark.parametrize("value", ["0", "-1", "many", "1.5"])
def test_a_bad_blas_threads_setting_is_one_clear_error(two_blas_threads, monkeypatch, value):
    monkeypatch.setenv("RETROGRAD_BLAS_THREADS", value)
    with pytest.raises(RetrogradError, match="RETROGRAD_BLAS_THREADS"):
        _fit_recording_threads([784, 100, 10], batch=32)
    monkeypatch.delenv("RETROGRAD_BLAS_THREADS")
    with pytest.raises(RetrogradError, match="blas_threads"):
        _fit_recording_threads([784, 100, 10], batch=32, blas_threads=0)


def test_a_bad_blas_threads_setting_is_one_line_and_exit_2_in_the_cli(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, RETROGRAD_BLAS_THREADS="lots")
    r = subprocess.run([sys.executable, "-m", "retrograd", "train", "--data", "xor", "--epochs", "1",
                        "--no-progress", "--out", str(tmp_path / "r")],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "RETROGRAD_BLAS_THREADS" in r.stderr


def test_the_thread_policy():
    from retrograd.blas import threads_for
    assert threads_for(32 * 784 * 100, 2) == 1          # the default net: 2.5e6 per product
    assert threads_for(500 * 784 * 100, 16) == 1
    assert threads_for(256 * 1024 * 1024, 2) == 2
    assert threads_for(256 * 1024 * 1024, 16) == 4
    assert threads_for(10 ** 12, 16) == 16
    assert threads_for(0, 4) == 1


# ---- item 26: the run says loudly how many PyTorch comparisons it skipped

TORCH_CPU = "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
SUBSET = ["tests/test_optim.py", "tests/test_nn.py", "-k", "torch or pytorch or draw_as_dot",
          "tests/test_graph.py"]


def _pytest(tmp_path, args, hide=()):
    """Run pytest on ``args`` in a subprocess whose ``import`` of each module in ``hide``
    fails, as where it is not installed (a -p plugin puts None in sys.modules first)."""
    (tmp_path / "hide_modules.py").write_text(textwrap.dedent(f"""\
        import sys
        for name in {tuple(hide)!r}:
            sys.modules[name] = None     # 'import name' now raises ImportError
        """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, str(tmp_path)]))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "hide_modules", "-p",
                           "no:cacheprovider", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def _count(out, word):
    m = re.search(rf"(\d+) {word}", out.splitlines()[-1])
    return int(m.group(1)) if m else 0


def test_skipped_pytorch_comparisons_are_counted_at_the_end_with_the_command(tmp_path):
    r = _pytest(tmp_path, SUBSET, hide=("torch", "pydot"))
    out = r.stdout
    assert r.returncode == 0, out[-3000:]
    skipped = _count(out, "skipped")
    m = re.search(r"(\d+) PyTorch comparisons? (?:was|were) skipped", out)
    assert m, out[-3000:]
    # every skip of the subset but the pydot one is a PyTorch comparison
    assert int(m.group(1)) == skipped - 1 > 20
    assert TORCH_CPU in out
    # it stands out at the end: after the last test's progress, before the final counts
    assert out.index(m.group(0)) > out.rindex("[100%]")


@pytest.mark.torch        # (its first half needs torch there)
def test_nothing_is_said_when_torch_is_there_or_nothing_needed_it(tmp_path):
    r = _pytest(tmp_path, ["tests/test_optim.py", "-k", "matches_torch and sgd"])
    assert r.returncode == 0 and _count(r.stdout, "passed") > 0, r.stdout[-3000:]
    assert "PyTorch comparison" not in r.stdout and TORCH_CPU not in r.stdout
    r = _pytest(tmp_path, ["tests/test_graph.py", "-k", "draw_as_dot"], hide=("torch", "pydot"))
    assert _count(r.stdout, "skipped") == 1
    assert "PyTorch comparison" not in r.stdout and TORCH_CPU not in r.stdout
