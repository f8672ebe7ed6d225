"""The Numba backend (retrograd/graph/numba_backend.py) gives the NumPy backend's numbers:
every op case, first and second order, the property-based random graphs, whole training
steps with their optimizer state and checkpoints, programs with ops it cannot lower, and
concurrent calls. Skipped without Numba."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import retrograd as rg
from retrograd.graph import numba_backend as nb

from cases import CASES

numba = pytest.importorskip("numba")
pytest.importorskip("scipy")

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, note, settings, HealthCheck  # noqa: E402

from test_properties import expression_graphs, _other_inputs  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    # one cache folder for the module's tests (a second program of the same text loads it)
    monkeypatch.setenv("RETROGRAD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "rgcache"))


def _both(fn, *args, **kwargs):
    """fn compiled by each backend and called on args: (numpy's outputs, numba's)."""
    out = []
    for backend in ("numpy", "numba"):
        res = rg.compile(fn, backend=backend, **kwargs)(*args)
        out.append([r.numpy() for r in _leaves(res)])
    return out


def _leaves(x):
    if isinstance(x, (tuple, list)):
        return [y for i in x for y in _leaves(i)]
    return [x]


def _close(a, b, dtype=np.float64, what=""):
    assert len(a) == len(b)
    rtol, atol = (1e-9, 1e-12) if dtype == np.float64 else (2e-5, 1e-6)
    for x, y in zip(a, b):
        assert x.shape == y.shape and x.dtype == y.dtype, what
        # float32 rounding is relative to the array's scale: an element that cancels down
        # to 1e-3 among values of 30 keeps the absolute error of those (an LSTM's deltas)
        scale = max(1.0, float(np.max(np.abs(y)))) if y.size and dtype != np.float64 else 1.0
        np.testing.assert_allclose(x, y, err_msg=what, rtol=rtol, atol=atol * scale)


# ---------------------------------------------------------------- choosing a backend

def test_backend_names_are_checked_and_auto_follows_the_environment(monkeypatch):
    with pytest.raises(ValueError, match="backend must be one of 'auto', 'numpy', 'numba'"):
        rg.compile(lambda x: x * 2, backend="cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        lin = rg.nn.Linear(2, 1)
        rg.graph.compile_step(lin, rg.nn.CrossEntropyLoss(), rg.optim.SGD(lin.parameters(), lr=0.1),
                              backend="jax")
    monkeypatch.setenv("RETROGRAD_BACKEND", "numba")
    assert rg.compile(lambda x: x * 2).backend == "numba"
    monkeypatch.setenv("RETROGRAD_BACKEND", "numpy")
    assert rg.compile(lambda x: x * 2).backend == "numpy"
    monkeypatch.delenv("RETROGRAD_BACKEND")
    f = rg.compile(lambda x: x * 2)
    assert f.backend == "auto"                   # installed: each program gets its backend
    f(np.ones(3))
    assert next(iter(f.cache.values()))["exe"].backend == "numpy"     # (one small node)
    monkeypatch.setenv("RETROGRAD_BACKEND", "fast")
    with pytest.raises(ValueError, match="RETROGRAD_BACKEND must be one of"):
        rg.compile(lambda x: x * 2)


def test_without_numba_asking_for_it_names_the_extra_and_auto_is_numpy(monkeypatch):
    monkeypatch.setattr(nb, "available", lambda: False)
    monkeypatch.delenv("RETROGRAD_BACKEND")
    with pytest.raises(ImportError, match=r"pip install 'retrograd\[fast\]'"):
        rg.compile(lambda x: x * 2, backend="numba")
    f = rg.compile(lambda x: x * 2)
    assert f.backend == "numpy"
    np.testing.assert_array_equal(f(np.ones(3)).numpy(), [2, 2, 2])


class _Deep(rg.nn.Module):
    """B2's shape, smaller: many narrow layers (small nodes that all lower)."""

    def __init__(self, width, depth):
        self.layers = [rg.nn.Linear(width, width) for _ in range(depth)]

    def forward(self, x):
        for layer in self.layers:
            x = rg.relu(layer(x))
        return x


def test_auto_takes_numba_for_many_small_lowerable_nodes_and_numpy_otherwise(monkeypatch):
    monkeypatch.delenv("RETROGRAD_BACKEND")
    chosen = {}
    for name, (width, depth, batch) in {"deep narrow": (16, 8, 8), "shallow": (16, 1, 8),
                                        "wide": (256, 8, 64)}.items():
        model = _Deep(width, depth)
        step = rg.graph.compile_step(model, rg.nn.CrossEntropyLoss(),
                                     rg.optim.SGD(model.parameters(), lr=0.1))
        assert step.backend == "auto"
        step(np.ones((batch, width), np.float32), np.zeros(batch, np.int64))
        chosen[name] = step.backend
        exe = next(iter(step.prepared.values()))[0]
        prog = exe.program
        assert nb.choose(prog) == exe.backend == step.backend
    assert chosen == {"deep narrow": "numba", "shallow": "numpy", "wide": "numpy"}
    # a program too large to repay its first compile (~0.1 s a node) stays NumPy
    deep = rg.compile(lambda x: rg.grad(lambda x: _Deep(16, 24)(x).sum())(x))
    deep(np.ones((8, 16), np.float32))
    exe = next(iter(deep.cache.values()))["exe"]
    assert len([n for n in exe.program.nodes if n.kind == "op"]) > nb.AUTO_MAX_NODES
    assert exe.backend == "numpy"
    assert nb.for_run("auto", nb.AUTO_STEPS - 1) == "numpy"
    assert nb.for_run("auto", nb.AUTO_STEPS) == "auto"


class _Recurrent(rg.nn.Module):
    def __init__(self, dtype):
        self.lstm = rg.nn.LSTM(3, 8, dtype=dtype)
        self.head = rg.nn.Linear(8, 2, dtype=dtype)

    def forward(self, x):
        return self.head(self.lstm(x)[0][-1])


def test_auto_takes_numba_for_an_op_with_a_numba_form_of_its_dtype(monkeypatch):
    # the LSTM's time loop has a float32 Numba form: a program using it runs on Numba
    monkeypatch.delenv("RETROGRAD_BACKEND")
    chosen = {}
    for dtype in (np.float32, np.float64):
        model = _Recurrent(dtype)
        step = rg.graph.compile_step(model, rg.nn.CrossEntropyLoss(),
                                     rg.optim.SGD(model.parameters(), lr=0.1))
        step(np.ones((5, 4, 3), dtype), np.zeros(4, np.int64))
        chosen[np.dtype(dtype).name] = step.backend
    assert chosen == {"float32": "numba", "float64": "numpy"}


def test_auto_takes_numba_for_col2im_and_pooling_of_batch_last_images(monkeypatch):
    # their forms replace kh·kw NumPy adds or passes; im2col alone (one copy) does not
    monkeypatch.delenv("RETROGRAD_BACKEND")
    F = rg.nn.functional
    x, w = np.ones((2, 1, 6, 6), np.float32), np.ones((3, 1, 3, 3), np.float32)
    programs = {"conv": lambda x, w: F.conv2d(x, w).sum(),
                "conv, input grad": rg.grad(lambda x, w: F.conv2d(x, w).sum()),
                "conv, pool": lambda x, w: F.max_pool2d(F.conv2d(x, w), 2).sum(),
                "pool of an input": lambda x, w: F.max_pool2d(x, 2).sum() + w.sum()}
    chosen = {}
    for name, fn in programs.items():
        cf = rg.compile(fn)
        cf(x, w)
        chosen[name] = next(iter(cf.cache.values()))["exe"].backend
    assert chosen == {"conv": "numpy", "conv, input grad": "numba", "conv, pool": "numba",
                      "pool of an input": "numpy"}


# ---------------------------------------------------------------- every op case

@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_op_case_value_and_gradient_equal_numpy_backend(case):
    for dtype in (np.float64,) + ((np.float32,) if CASES.index(case) % 4 == 0 else ()):
        xs = case.inputs(seed=11, dtype=dtype)
        ct = np.random.default_rng(12).standard_normal(
            case.fn(*[rg.tensor(x) for x in xs]).shape).astype(dtype)
        f = lambda *a: (case.fn(*a) * ct).sum()
        grad = rg.grad(f, argnums=tuple(range(len(xs))))
        a, b = _both(lambda *a: (case.fn(*a), grad(*a)), *xs)
        _close(b, a, dtype, f"{case.name} {np.dtype(dtype).name}")


SECOND = [c for c in CASES if c.second_order][::3]


@pytest.mark.parametrize("case", SECOND, ids=[c.name for c in SECOND])
def test_compiled_hvp_equals_numpy_backend(case):
    xs = case.inputs(seed=13)
    vs = [np.random.default_rng(14 + i).standard_normal(x.shape) for i, x in enumerate(xs)]
    ct = np.random.default_rng(15).standard_normal(case.fn(*[rg.tensor(x) for x in xs]).shape)
    f = lambda *a: (case.fn(*a) * ct).sum()
    n = len(xs)
    a, b = _both(lambda *a: rg.hvp(f, a[:n], a[n:]), *xs, *vs)
    _close(b, a, what=case.name)


# ---------------------------------------------------------------- random graphs

_SETTINGS = settings(max_examples=int(os.environ.get("RETROGRAD_PROPERTY_EXAMPLES", 25)),
                     deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                            HealthCheck.filter_too_much])


def _three_calls(f, xs):
    """First inputs, other inputs, first again: buffers reused across calls stay right."""
    first = [r.numpy().copy() for r in _leaves(f(*xs))]
    with np.errstate(all="ignore"):
        f(*_other_inputs(xs))
    return first, [r.numpy() for r in _leaves(f(*xs))]


@_SETTINGS
@given(g=expression_graphs())
def test_random_graphs_value_and_gradient_equal_numpy_backend(g):
    note(g.script())
    fn = rg.value_and_grad(g.fn, argnums=g.argnums)
    ref = _three_calls(rg.compile(fn, backend="numpy"), g.inputs)
    got = _three_calls(rg.compile(fn, backend="numba"), g.inputs)
    for r, c in zip(ref, got):
        _close(c, r, what="value_and_grad")


@_SETTINGS
@given(g=expression_graphs(max_steps=7))
def test_random_graphs_hvp_equals_numpy_backend(g):
    note(g.script())
    n = len(g.inputs)
    vs = [np.random.default_rng(0).standard_normal(x.shape) for x in g.inputs]
    fn = lambda *a: rg.hvp(g.fn, a[:n], a[n:])
    with np.errstate(all="ignore"):
        ref = rg.compile(fn, backend="numpy")(*g.inputs, *vs)
        got = rg.compile(fn, backend="numba")(*g.inputs, *vs)
    _close([h.numpy() for h in got], [h.numpy() for h in ref], what="hvp")


# ---------------------------------------------------------------- training steps

class MLP(rg.nn.Module):
    def __init__(self, dropout=0.0):
        self.l1, self.l2, self.l3 = rg.nn.Linear(12, 16), rg.nn.Linear(16, 16), rg.nn.Linear(16, 5)
        self.drop = rg.nn.Dropout(dropout)

    def forward(self, x):
        h = self.drop(rg.relu(self.l1(x)))
        return self.l3(rg.tanh(self.l2(h)))


def _train(backend, make_opt, steps=6, dropout=0.0):
    rg.manual_seed(3)
    model = MLP(dropout)
    opt = make_opt(model.parameters())
    step = rg.graph.compile_step(model, rg.nn.CrossEntropyLoss(), opt, backend=backend)
    assert step.backend == backend
    rng = np.random.default_rng(4)
    losses = []
    for _ in range(steps):
        x = rng.standard_normal((8, 12)).astype(np.float32)
        y = rng.integers(0, 5, 8)
        losses.append(float(step(x, y)[0].data))
    return model, opt, losses, step


def _flat(tree, prefix=""):
    """(key path, value) pairs of a nested state dict."""
    if isinstance(tree, dict):
        return [kv for k in sorted(tree, key=str) for kv in _flat(tree[k], f"{prefix}/{k}")]
    if isinstance(tree, (list, tuple)):
        return [kv for i, v in enumerate(tree) for kv in _flat(v, f"{prefix}/{i}")]
    return [(prefix, tree)]


def _same_state(a, b, what):
    fa, fb = _flat(a), _flat(b)
    assert [k for k, _ in fa] == [k for k, _ in fb], what
    for (k, x), (_, y) in zip(fa, fb):
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape, (what, k)
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=f"{what} {k}")
        else:
            assert x == y, (what, k)


OPTIMIZERS = {"sgd_momentum": lambda ps: rg.optim.SGD(ps, lr=0.1, momentum=0.9),
              "adam": lambda ps: rg.optim.Adam(ps, lr=0.01),
              "adamw_amsgrad": lambda ps: rg.optim.AdamW(ps, lr=0.01, amsgrad=True),
              # (not RMSprop: its g / sqrt(s) on the first steps turns the backends' 1e-7
              # differences in the gradients into 1e-4 in the state; its update itself is
              # NumPy's bit for bit: test_the_compiled_update_traced_from_the_optimizer...)
              "adagrad": lambda ps: rg.optim.Adagrad(ps, lr=0.1)}


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_compile_step_trains_to_the_same_parameters_state_and_checkpoints(opt, dropout, tmp_path):
    ref = _train("numpy", OPTIMIZERS[opt], dropout=dropout)
    got = _train("numba", OPTIMIZERS[opt], dropout=dropout)
    np.testing.assert_allclose(got[2], ref[2], rtol=1e-5)
    for p, q in zip(got[0].parameters(), ref[0].parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-6)
    _same_state(got[1].state_dict(), ref[1].state_dict(), "optimizer.state_dict()")
    for what, obj_got, obj_ref in (("model", got[0], ref[0]), ("optimizer", got[1], ref[1])):
        pa, pb = tmp_path / f"numba_{what}.npz", tmp_path / f"numpy_{what}.npz"
        rg.save(obj_got, pa)
        rg.save(obj_ref, pb)
        _same_state(rg.load(pa), rg.load(pb), f"checkpoint of the {what}")
    # the program really ran as Numba code: one segment at least, the elementwise ops fused
    exe = next(iter(got[3].prepared.values()))[0]
    assert exe.backend == "numba" and exe.segments and exe.compile_seconds is not None
    assert "for i0 in range" in exe.kernel_source
    # and its update was the loop traced from the optimizer (optim.rule), run at the end of
    # the step's own kernel on the last step
    slots = next(iter(got[3].prepared.values()))[5]
    assert "_update0(" in exe.kernel_source and all(slots.ran())


def test_resuming_a_numba_step_from_a_checkpoint_continues_as_numpy_does(tmp_path):
    """Save after 3 steps, load into fresh objects, 3 more steps: both backends agree."""
    ends = {}
    for backend in ("numpy", "numba"):
        model, opt, _, _ = _train(backend, OPTIMIZERS["adam"], steps=3)
        rg.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / f"{backend}.npz")
        rg.manual_seed(9)
        model2 = MLP()
        opt2 = OPTIMIZERS["adam"](model2.parameters())
        saved = rg.load(tmp_path / f"{backend}.npz")
        model2.load_state_dict(saved["model"])
        opt2.load_state_dict(saved["opt"])
        step = rg.graph.compile_step(model2, rg.nn.CrossEntropyLoss(), opt2, backend=backend)
        rng = np.random.default_rng(5)
        for _ in range(3):
            step(rng.standard_normal((8, 12)).astype(np.float32), rng.integers(0, 5, 8))
        ends[backend] = (model2, opt2)
    for p, q in zip(ends["numba"][0].parameters(), ends["numpy"][0].parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-6)
    _same_state(ends["numba"][1].state_dict(), ends["numpy"][1].state_dict(), "resumed state")


# ---------------------------------------------------------------- segments

def test_ops_without_a_lowering_run_in_numpy_segments_between_numba_ones():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 8))
    w = rng.standard_normal((4, 3, 3, 3))
    idx = rng.integers(0, 4, (2, 4, 6, 6))

    def f(x, w):
        h = rg.tanh(rg.conv2d(x * 0.5 + 1, w)) * 2      # fused, im2col, matmul, fused
        g = rg.gather(h, 1, idx)                               # gather
        return (rg.exp(g) - rg.sort(h, axis=1)[:, :, :6, :6]).sum()    # argsort

    a, b = _both(rg.value_and_grad(f, argnums=(0, 1)), x, w)
    _close(b, a)
    exe = rg.compile(rg.value_and_grad(f, argnums=(0, 1)), backend="numba")
    exe(x, w)
    src = exe.source(x, w)
    assert "# numba:" in src and "# gather" in src and "# argsort" in src


def test_programs_with_nothing_to_lower_and_scalar_arguments():
    f = rg.compile(lambda x, s: rg.sort(x * s, axis=0), backend="numba")
    x = np.array([3.0, 1.0, 2.0])
    np.testing.assert_array_equal(f(x, 2.0).numpy(), [2.0, 4.0, 6.0])
    g = rg.compile(lambda x, s: (x * s + s).sum(), backend="numba")    # a weak Python float
    assert float(g(np.float32([1, 2]), 0.5).numpy()) == 2.5
    assert g(np.float32([1, 2]), 0.5).numpy().dtype == np.float32


def test_in_place_buffers_with_transposed_reads_are_not_clobbered():
    # w + w.T and friends: a fused loop must not store into a buffer it still reads
    # transposed (the plan reuses buffers in schedule order)
    def f(a):
        w = rg.exp(a)
        return rg.tanh(w + w.T) * w, (w.T * 2 + 1).sum(axis=0)
    x = np.random.default_rng(1).standard_normal((5, 5))
    a, b = _both(f, x)
    _close(b, a)


def test_loops_over_batch_last_images_run_in_their_layout():
    """conv2d's results are batch-last views: the fused bias-add-relu and the mask multiply
    (and the bias gradient's reduction) loop with the batch innermost, over buffers laid out
    so, and give the NumPy backend's numbers."""
    rng = np.random.default_rng(3)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((4, 2, 7, 6), (3, 2, 3, 3), (3,)))

    def f(x, w, b):
        h = rg.relu(rg.nn.functional.conv2d(x, w, b))
        return (rg.nn.functional.max_pool2d(h, 2) ** 2).sum()
    grad = rg.grad(f, argnums=(1, 2))
    a, c = _both(grad, x, w, b)
    _close(c, a, np.float32)
    cf = rg.compile(grad, backend="numba")
    cf(x, w, b)
    exe = next(iter(cf.cache.values()))["exe"]
    assert any(spec[2] == (1, 2, 3, 0) for spec in exe.plan.buffers)
    # the loop over the (N, C, H, W) = (4, 3, 5, 4) batch-last buffer has the batch inside,
    # and indexes the buffer's C-contiguous (C, H, W, N) transpose, which the driver passes
    assert re.search(r"for i3 in range\(4\):\n +for i0 in range\(4\):", exe.kernel_source)
    assert re.search(r"b\d+_p\[i1, i2, i3, i0\] = ", exe.kernel_source)
    assert ".transpose((1, 2, 3, 0))" in exe.source


def test_an_input_in_another_layout_than_traced_gives_the_same_numbers():
    """A kernel indexes a batch-last input through its transpose: an input laid out
    otherwise on a later call (a C-order array of the traced shape) is still read right."""
    rng = np.random.default_rng(8)
    phys = rng.standard_normal((3, 5, 4, 6)).astype(np.float32)
    last, c_order = phys.transpose(3, 0, 1, 2), np.ascontiguousarray(phys.transpose(3, 0, 1, 2))
    bias = rng.standard_normal((3, 1, 1)).astype(np.float32)
    f = rg.compile(lambda x, b: (rg.relu(x + b) * x).sum(axis=(0, 2)), backend="numba")
    want = np.maximum(last + bias, 0) * last
    for x in (last, c_order, last):
        np.testing.assert_allclose(f(x, bias).numpy(), want.sum(axis=(0, 2)), rtol=2e-5,
                                   atol=1e-5)


@pytest.mark.parametrize("how", ["sum", "max", "min"])
def test_reductions_along_the_innermost_loop_equal_numpy_with_nans(how):
    """A reduction whose innermost loop runs along a reduced axis keeps partial results in
    lanes (each running sum waits out an add's latency otherwise): every length (lanes
    from 2 * _LANES on), a NaN anywhere in a row, inf, and the full reduction give NumPy's
    values."""
    lengths = (15, 16, 17, 64, 1001)
    xs = []
    for n in lengths:
        x = np.random.default_rng(n).standard_normal((3, 4, n))
        x[1, 2, n - 1] = x[2, 0, n // 2] = np.nan
        x[0, 1, 3] = np.inf
        xs.append(x)
    op = getattr(rg, how)
    f = rg.compile(lambda *xs: [(op(x, axis=2), op(x, axis=(0, 2)), op(x)) for x in xs],
                   backend="numba")
    got = _leaves(f(*xs))
    exe = next(iter(f.cache.values()))["exe"]
    assert exe.backend == "numba"
    assert len(set(re.findall(r"q(\d+)_7\b", exe.kernel_source))) == 3 * sum(
        n >= 2 * nb._LANES for n in lengths)
    want = [getattr(np, how)(x, axis=a) for x in xs for a in (2, (0, 2), None)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-12)


@pytest.mark.parametrize("geo", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                 dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1),
                                      ceil_mode=True)])
def test_max_pooling_of_batch_last_images_runs_as_loops(geo):
    """Max pooling of conv2d's batch-last results, its window argmax and its gradient's
    scatter run as the ops' Numba forms, with NumPy's numbers: ties to the first maximum,
    a NaN wins its window, padding and ceil_mode's overhang never taken; second order too."""
    rng = np.random.default_rng(4)
    x, w = (rng.standard_normal(s).astype(np.float32) for s in ((3, 2, 9, 10), (4, 2, 3, 3)))
    x[0, 0, 2, 2:5] = np.nan                                  # NaN windows in conv's result
    w[1] = 0                                                  # channel 1: all-tie windows

    def f(x, w):
        h = rg.relu(rg.nn.functional.conv2d(x, w, padding=1))
        return (rg.nn.functional.max_pool2d(h, **geo) ** 2).sum()
    grad = rg.grad(f, argnums=1)
    hvp = rg.grad(lambda x, w: (grad(x, w) * grad(x, w)).sum(), argnums=1)
    for fn in (grad, hvp):
        a, c = _both(fn, x, w)
        for p, q in zip(a, c):
            np.testing.assert_array_equal(np.isnan(p), np.isnan(q))
        _close([np.nan_to_num(p) for p in c], [np.nan_to_num(p) for p in a], np.float32)
    cf = rg.compile(grad, backend="numba")
    cf(x, w)
    exe = next(iter(cf.cache.values()))["exe"]
    forms = {n.op.name for s in exe.segments for n in s.nodes if nb._kind(n) == "form"}
    assert forms == {"max_pool2d", "max_pool2d_argmax", "pool_scatter", "im2col"}  # (no col2im:
    # the gradient is w's only)


@pytest.mark.parametrize("geo, dtype", [(dict(), np.float64), (dict(padding=2, stride=2), np.float32),
                                        (dict(padding=(1, 0), dilation=(2, 1)), np.float32),
                                        (dict(groups=2, stride=(1, 2)), np.float64)])
def test_convolutions_unfold_and_fold_as_loops(geo, dtype):
    """im2col and col2im run as their Numba forms on C-order and batch-last images (a
    second convolution reads the first's result), padding, stride, dilation and groups
    included, with NumPy's numbers to first and second order."""
    rng = np.random.default_rng(6)
    x, w1, w2 = (rng.standard_normal(s).astype(dtype) for s in
                 ((3, 4, 9, 8), (4, 4 // geo.get("groups", 1), 3, 3), (2, 4, 2, 2)))

    def f(x, w1, w2):
        h = rg.tanh(rg.nn.functional.conv2d(x, w1, **geo))
        return (rg.nn.functional.conv2d(h, w2) ** 2).sum()
    grad = rg.grad(f, argnums=(0, 1, 2))
    hvp = rg.grad(lambda x, w1, w2: sum((g * g).sum() for g in grad(x, w1, w2)), argnums=1)
    for fn in (grad, hvp):
        a, c = _both(fn, x, w1, w2)
        _close(c, a, dtype)
    cf = rg.compile(grad, backend="numba")
    cf(x, w1, w2)
    exe = next(iter(cf.cache.values()))["exe"]
    forms = {n.op.name for s in exe.segments for n in s.nodes if nb._kind(n) == "form"}
    assert forms == {"im2col", "col2im"}


def test_max_pooling_of_c_order_images_stays_numpy():
    # the loops' (C, H, W, N) copies of a C-order image cost more than NumPy's passes
    cf = rg.compile(lambda x: rg.nn.functional.max_pool2d(x, 2), backend="numba")
    x = np.random.default_rng(5).standard_normal((2, 3, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(cf(x).numpy(), rg.nn.functional.max_pool2d(rg.tensor(x), 2).numpy())
    exe = next(iter(cf.cache.values()))["exe"]
    assert not any(nb._kind(n) == "form" for s in exe.segments for n in s.nodes)


# ---------------------------------------------------------------- threads and processes

def test_concurrent_calls_from_threads_use_buffers_of_their_own():
    f = rg.compile(lambda x: rg.tanh(x @ x.T + 1).sum(axis=1), backend="numba")
    xs = [np.random.default_rng(i).standard_normal((30, 20)) for i in range(4)]
    expected = [rg.compile(lambda x: rg.tanh(x @ x.T + 1).sum(axis=1), backend="numpy")(x).numpy()
                for x in xs]
    f(xs[0])
    errors = []

    def work(i):
        for _ in range(50):
            got = f(xs[i]).numpy()
            if not np.allclose(got, expected[i], rtol=1e-12):
                errors.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


_SCRIPT = """
import numpy as np, retrograd as rg
f = rg.compile(lambda x: rg.tanh(x * 3 + 1).sum(axis=0), backend="numba")
print(float(f(np.ones((4, 3))).numpy()[0]))
k = f.cache[next(iter(f.cache))]["exe"].segments
import sys
mod = sys.modules[[m for m in sys.modules if m.startswith("retrograd_numba_")][0]]
print(sum(getattr(mod, s.name).stats.cache_hits.__len__() for s in k))
"""


def _child_env(**extra):
    """This environment for a Python subprocess that imports this checkout's retrograd."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(rg.__file__))] + sys.path), **extra)


def test_a_second_process_loads_the_compiled_code_from_the_disk_cache(tmp_path):
    env = _child_env(RETROGRAD_CACHE_DIR=str(tmp_path))
    # two processes at once write the same file: each sees all of it
    procs = [subprocess.Popen([sys.executable, "-c", _SCRIPT], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    value = float(np.tanh(4.0) * 4)
    assert all(abs(float(o[0].split()[0]) - value) < 1e-12 for o in outs)
    files = os.listdir(tmp_path / "numba")
    assert len([f for f in files if f.endswith(".py")]) == 1
    assert not [f for f in files if f.startswith(".tmp-")]
    third = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True,
                           text=True, timeout=300)
    assert third.returncode == 0, third.stderr
    assert int(third.stdout.split()[1]) >= 1          # machine code loaded, not compiled


def test_an_unwritable_cache_folder_warns_once_and_leaves_no_folder_behind(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = _child_env(RETROGRAD_CACHE_DIR=str(blocker), TMPDIR=str(tmp_path))
    script = _SCRIPT + "g = rg.compile(lambda x: (x * 3).sum(), backend='numba')\n" \
                       "print(float(g(np.ones(3))))\n"
    out = subprocess.run([sys.executable, "-W", "always::UserWarning", "-c", script], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.split()[0]) == pytest.approx(float(np.tanh(4.0) * 4))
    assert float(out.stdout.split()[2]) == 9.0              # a second program, same folder
    assert out.stderr.count("cannot be written") == 1, out.stderr
    assert str(blocker) in out.stderr and "RETROGRAD_CACHE_DIR" in out.stderr
    assert sorted(os.listdir(tmp_path)) == ["a-file"]      # its own folder removed at exit


def test_a_kernel_names_the_code_of_the_op_forms_it_calls(monkeypatch, tmp_path):
    """Numba's cache of a kernel does not follow the functions it calls: the kernel's text
    (which names its cache file) carries a digest of each op form's code and helpers, so
    a changed form compiles anew instead of running the machine code cached with the old."""
    from retrograd.ops import rnn as ops_rnn
    monkeypatch.setenv("RETROGRAD_CACHE_DIR", str(tmp_path))
    form = ops_rnn._lstm_scan_numba
    before = nb._code_digest(form)
    f = rg.compile(lambda xw, h, c, w: rg.lstm_scan(xw, h, c, w).sum(), backend="numba")
    f(*[np.ones(s, np.float32) for s in ((2, 1, 4), (1, 1), (1, 1), (1, 4))])
    assert f"# code {before}" in f.cache[next(iter(f.cache))]["exe"].kernel_source
    monkeypatch.setattr(form, "helpers", form.helpers[:1])       # another helper: another digest
    assert nb._code_digest(form) != before
    assert nb._code_digest(ops_rnn._lstm_bptt_numba) != before


def test_a_segment_numba_cannot_compile_falls_back_to_numpy_with_a_warning(monkeypatch):
    real = nb._scalar_expr

    def broken(n, args):            # a lowering bug: a function Numba does not know
        e = real(n, args)
        return e.replace("math.exp(", "math.no_such_function(") if e else e
    monkeypatch.setattr(nb, "_scalar_expr", broken)
    f = rg.compile(lambda x: rg.exp(x) * 2, backend="numba")
    x = np.array([0.0, 1.0])
    with pytest.warns(RuntimeWarning, match="Numba could not compile"):
        np.testing.assert_allclose(f(x).numpy(), 2 * np.exp(x))
    np.testing.assert_allclose(f(x).numpy(), 2 * np.exp(x))
    assert f.cache[next(iter(f.cache))]["exe"].backend == "numpy"


def test_float16_values_stay_numpy_calls_without_a_compile_failure():
    import warnings
    fn = lambda x: rg.tanh(x * 2 + 1).sum()          # noqa: E731 (a float32 sum of float16)
    x = np.linspace(-1, 1, 12, dtype=np.float16).reshape(3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # no "Numba could not compile"
        got = rg.compile(fn, backend="numba")(x)
    assert got.dtype == np.float16
    assert got.numpy() == rg.compile(fn, backend="numpy")(x).numpy()


def test_arrays_of_another_shape_than_traced_are_refused_not_read_past_their_end():
    f = rg.compile(lambda a, b: rg.exp(a) + rg.tanh(b), passes=(), backend="numba")
    f(np.zeros(3), np.zeros(3))
    exe = f.cache[next(iter(f.cache))]["exe"]
    with pytest.raises(rg.ShapeError, match=r"operands could not be broadcast.*traced \(3,\).*"
                       r"operand shapes: .*\(4,\).*\n  in compiled code: "):
        exe(np.zeros(3), np.zeros(4))


def test_a_users_error_on_the_first_call_is_raised_not_taken_for_a_compile_failure():
    f = rg.compile(lambda z, y: rg.nn.functional.cross_entropy(rg.tanh(z) * 2, y), backend="numba")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no fallback warning
        with pytest.raises(rg.RetrogradError, match="label 7 is out of range for 3 classes"):
            f(np.zeros((2, 3)), np.array([0, 7]))
    assert f.cache[next(iter(f.cache))]["exe"].backend == "numba"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_products_equal_numpy_on_every_layout_and_empty_sides(dtype):
    # numba_blas.gemm: NumPy's cblas where its OpenBLAS has one, else np.dot's callback;
    # both run here (the callback called through its C address)
    from retrograd.native import numba_blas, numba_helpers as h
    rng = np.random.default_rng(8)
    for m, k, n in [(5, 3, 4), (1, 7, 1), (32, 128, 96), (0, 3, 4), (3, 0, 4), (3, 4, 0)]:
        a, b = (rng.standard_normal(s).astype(dtype) for s in ((m, k), (k, n)))
        wide = rng.standard_normal((m, 2 * k)).astype(dtype)
        for x in (a, np.asfortranarray(a), wide[:, ::2], wide[:, :k]):
            for y in (b, np.asfortranarray(b)):
                expected = x @ y
                np.testing.assert_allclose(h.dot_new(x, y), expected, rtol=1e-5, atol=1e-5)
                out = np.full((m, n + 2), np.nan, dtype)
                h.dot(x, y, out[:, :n])                        # into a strided view
                np.testing.assert_allclose(out[:, :n], expected, rtol=1e-5, atol=1e-5)
                assert np.isnan(out[:, n:]).all()
    import numba
    callback = numba_blas._np_dot_gemm(numba.from_dtype(np.dtype(dtype))).ctypes
    a, b = rng.standard_normal((6, 4)).astype(dtype), rng.standard_normal((6, 3)).astype(dtype)
    c = np.zeros((4, 5), dtype)                         # c[:, :3] = a.T @ b, ldc 5
    callback(101, 112, 111, 4, 3, 6, 1.0, a.ctypes.data, 4, b.ctypes.data, 3, 0.0,
             c.ctypes.data, 5)
    np.testing.assert_allclose(c[:, :3], a.T @ b, rtol=1e-5)
    assert not c[:, 3:].any()


def test_small_float32_products_run_in_register_tiles_and_equal_numpy():
    # numba_tiles: tiles of 1-4 rows by 8 or 16 columns; every row remainder, both column
    # widths, every layout of a (strided, reversed, broadcast) and of b (read in place, or
    # through a copy where its rows are not contiguous)
    from retrograd.native import numba_helpers as h, numba_tiles as t
    rng = np.random.default_rng(11)
    for m, k, n in [(1, 1, 8), (3, 7, 16), (5, 64, 24), (6, 2, 40), (32, 64, 64), (33, 9, 8)]:
        a, b = (rng.standard_normal(s).astype(np.float32) for s in ((m, k), (k, n)))
        wide = rng.standard_normal((m, 3 * k)).astype(np.float32)
        row = rng.standard_normal(k).astype(np.float32)          # (a row repeated: stride 0)
        for x in (a, np.asfortranarray(a), wide[:, ::3], a[::-1, ::-1],
                  np.lib.stride_tricks.as_strided(row, (m, k), (0, 4))):
            assert t.tileable(m, n, k, 4, *x.strides)
            for y in (b, np.asfortranarray(b), b[::-1], b[:, ::-1]):
                expected = x.astype(np.float64) @ y.astype(np.float64)
                out = np.full((m, n + 3), np.nan, np.float32)
                h.dot(x, y, out[:, :n])
                np.testing.assert_allclose(out[:, :n], expected, rtol=1e-5, atol=1e-5)
                assert np.isnan(out[:, n:]).all()
    a, b = np.ones((4, 5), np.float32), np.ones((5, 16), np.float32)
    a[1, 2], a[2, 0], b[3, 5] = np.nan, np.inf, 0          # NaN and inf * 0 as NumPy's
    with np.errstate(invalid="ignore"):
        expected = a @ b
    np.testing.assert_array_equal(h.dot_new(a, b), expected)
    # BLAS's: a partial vector of columns, a large product, float64, a's odd byte strides
    assert not t.tileable(32, 10, 64, 4, 256, 4)
    assert not t.tileable(64, 72, 64, 4, 256, 4)
    assert not t.tileable(32, 64, 64, 8, 512, 8)
    assert not t.tileable(32, 64, 64, 4, 258, 4)


def test_cached_native_code_is_stamped_with_every_native_module():
    # numba_cache: a cached function of the package holds the helpers it calls, so its
    # stamp names their digest too; functions of other packages keep Numba's own stamp
    from numba.core import caching
    from retrograd.native import numba_cache, numba_helpers as h
    impl = numba_cache._IMPL
    assert impl._locator_classes[0] is numba_cache.RetrogradLocator
    loc = numba_cache.RetrogradLocator.from_function(h.dot.py_func, h.__file__)
    assert loc.get_source_stamp()[1] == numba_cache.native_digest()
    assert loc.get_cache_path() == os.path.join(os.path.dirname(h.__file__), "__pycache__")
    assert numba_cache.RetrogradLocator.from_function(np.dot, caching.__file__) is None
    assert numba_cache.native_digest() in nb._header()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_rows_helpers_equal_numpy_to_rounding_on_extreme_rows(dtype):
    # the float32 helpers take exp from a polynomial of their own (numba_helpers._exp_float32)
    from retrograd.native import numba_helpers as h
    rng = np.random.default_rng(3)
    z = (rng.standard_normal((300, 10)) * rng.choice([0.01, 1, 30, 300], (300, 1))).astype(dtype)
    z[0, 3], z[1, :] = np.nan, -np.inf
    z[2, 4], z[3, 1], z[4, :5] = np.inf, -np.inf, -1e4
    labels = rng.integers(0, 10, 300)
    with np.errstate(all="ignore"):
        soft = rg.softmax(rg.tensor(z), axis=1).numpy()
        m = z.max(1, keepdims=True)
        lse = (np.log(np.exp(z - m).sum(1, dtype=np.float64)) + m[:, 0]).astype(dtype)
    out = np.empty_like(z)
    h.softmax_rows(z, out)
    np.testing.assert_allclose(out, soft, rtol=4 * np.finfo(dtype).eps, atol=1e-30)
    assert np.isnan(out[0]).all() and np.isnan(out[1]).all() == np.isnan(soft[1]).all()
    loss = np.empty(300, dtype)
    h.softmax_cross_entropy(z, labels, loss)
    ok = np.isfinite(lse)
    scale = np.abs(np.where(np.isfinite(z), z, 0)).max(1) + 1      # (log-sum-exp - z cancels)
    err = np.abs(loss - (lse - z[np.arange(300), labels])) / scale
    assert err[ok].max() < 8 * np.finfo(dtype).eps
    assert np.isnan(loss[0]) and np.isnan(loss[2])
    g = np.empty_like(z)
    h.softmax_minus_onehot(z, labels, g)
    onehot = np.eye(10, dtype=dtype)[labels]
    np.testing.assert_allclose(g[5:], (soft - onehot)[5:], rtol=4 * np.finfo(dtype).eps,
                               atol=4 * np.finfo(dtype).eps)


def test_scipy_blas_is_pinned_only_for_products_it_would_run_on_two_threads(monkeypatch):
    from retrograd import blas
    monkeypatch.setattr(blas, "_Pinned", lambda libs, n: ("pinned", n))
    monkeypatch.setattr(blas, "requested_threads", lambda _: "auto")
    import threadpoolctl
    nb.load_blas()
    libs = [lc for lc in threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers
            if "scipy.libs" in lc.filepath.replace(os.sep, "/")]
    if not libs:
        pytest.skip("no SciPy OpenBLAS loaded")
    monkeypatch.setattr(type(libs[0]), "num_threads", 2, raising=False)
    assert blas.scipy_single(blas.OPENBLAS_ONE_THREAD - 1) is None
    assert blas.scipy_single(blas.OPENBLAS_ONE_THREAD) == ("pinned", 1)
    small = rg.compile(lambda a, b: rg.tanh(a @ b), backend="numba")
    small(np.ones((8, 8)), np.ones((8, 8)))
    assert small.cache[next(iter(small.cache))]["exe"]._blas is None


def test_labels_are_checked_inside_the_kernel_with_the_numpy_backends_errors():
    errors = {}
    for backend in ("numpy", "numba"):
        model = rg.nn.Sequential(rg.nn.Linear(4, 3))
        step = rg.graph.compile_step(model, rg.nn.CrossEntropyLoss(),
                                     rg.optim.SGD(model.parameters(), lr=0.1), backend=backend)
        x = np.ones((5, 4), np.float32)
        step(x, np.array([0, 1, 2, 2, 0]))
        for y in ([0, 1, 7, 2, 0], [0, -100, 1, 2, 0], [0, 1, -3, 2, 0]):
            with pytest.raises(rg.RetrogradError) as e:
                step(x, np.array(y))
            errors.setdefault(backend, []).append((type(e.value), str(e.value)))
        step(x, np.array([0, 1, 2, 2, 0], np.uint8))      # another dtype: a new program
        assert step.backend == backend
    assert errors["numba"] == errors["numpy"]
    assert [t for t, _ in errors["numba"]] == [rg.RetrogradError, rg.ops.loss.IgnoredLabel,
                                             rg.RetrogradError]
    exe = next(iter(step.prepared.values()))[0]
    assert "class_labels" not in exe.source.split("numba:")[0]    # not a NumPy call
    assert "e >= 3" in exe.kernel_source


def test_retrograd_train_takes_a_backend_and_verbose_names_it(tmp_path, capsys, monkeypatch):
    from retrograd.cli import main
    monkeypatch.delenv("RETROGRAD_BACKEND")
    finals = {}
    for backend in ("numpy", "numba", "auto"):
        code = main(["train", "--data", "spirals", "--layers", "16,16", "--epochs", "2",
                     "--out", str(tmp_path / backend), "--no-progress", "--backend", backend,
                     "--verbose"])
        assert code == 0
        out = capsys.readouterr().out
        # auto: a 2-epoch run is far below the steps that repay a Numba compile
        shown = "numpy" if backend == "auto" else backend
        assert f"compiled step: {shown} backend, first call" in out
        finals[backend] = rg.load(tmp_path / backend / "last.npz")
    for part in ("model", "optimizer"):
        _same_state(finals["numba"][part], finals["numpy"][part], f"CLI checkpoint: {part}")


@pytest.mark.parametrize("backend, env, says", [
    ("numba", {}, "needs Numba and SciPy: pip install 'retrograd[fast]'"),
    ("auto", {"RETROGRAD_BACKEND": "bogus"},
     "RETROGRAD_BACKEND must be one of 'auto', 'numpy', 'numba', got 'bogus'"),
    ("numpy", {"RETROGRAD_BLAS_THREADS": "two"}, "RETROGRAD_BLAS_THREADS must be auto, none"),
    ("numpy", {"RETROGRAD_CACHE_DAYS": "a month"}, "RETROGRAD_CACHE_DAYS must be a number")])
def test_retrograd_train_refuses_a_setting_it_cannot_run_with_before_anything_else(
        tmp_path, capsys, monkeypatch, backend, env, says):
    from retrograd.cli import main
    if backend == "numba":
        monkeypatch.setattr(nb, "available", lambda: False)     # as without Numba installed
    monkeypatch.delenv("RETROGRAD_BACKEND", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code = main(["train", "--data", "xor", "--epochs", "1", "--out", str(tmp_path / "r"),
                 "--backend", backend])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""                 # no plan printed for a run that cannot start
    assert err.count("\n") == 1 and says in err, err
    assert not (tmp_path / "r").exists()


def test_verbose_names_the_backend_a_step_ran_on_after_a_fallback(tmp_path, capsys,
                                                                 monkeypatch):
    from retrograd.cli import main
    real = nb._scalar_expr

    def broken(n, args):            # a lowering bug: every fused loop fails to compile
        e = real(n, args)
        return f"({e} + math.no_such_function(0.0))" if e else e
    monkeypatch.setattr(nb, "_scalar_expr", broken)
    code = main(["train", "--data", "spirals", "--layers", "16,16", "--epochs", "1",
                 "--out", str(tmp_path / "r"), "--no-progress", "--backend", "numba",
                 "--verbose"])
    assert code == 0
    assert "compiled step: numpy backend, first call" in capsys.readouterr().out


# ---------------------------------------------------------------- the optimizer's update

UPDATES = {
    "sgd": lambda ps: rg.optim.SGD(ps, lr=0.1),
    "sgd_nesterov_wd": lambda ps: rg.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True,
                                                weight_decay=0.01),
    "sgd_dampening_maximize": lambda ps: rg.optim.SGD(ps, lr=0.1, momentum=0.5, dampening=0.3,
                                                       maximize=True),
    "adam": lambda ps: rg.optim.Adam(ps, lr=0.01),
    "adam_amsgrad_wd": lambda ps: rg.optim.Adam(ps, lr=0.01, amsgrad=True, weight_decay=0.1),
    "adamw": lambda ps: rg.optim.AdamW(ps, lr=0.01),
    "rmsprop": lambda ps: rg.optim.RMSprop(ps, lr=0.01),
    "rmsprop_centered_momentum": lambda ps: rg.optim.RMSprop(ps, lr=0.01, centered=True,
                                                              momentum=0.5),
    "adagrad": lambda ps: rg.optim.Adagrad(ps, lr=0.1, lr_decay=0.01),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(UPDATES))
def test_the_compiled_update_traced_from_the_optimizer_gives_numpys_numbers_bit_for_bit(name, dtype):
    """optim.rule traces each elementwise optimizer's own _update into one njit loop
    (graph.numba_backend.update_kernel): parameters and state equal the NumPy update's
    exactly, step after step, with a learning rate changed on the way."""
    from retrograd.optim.fused import FusedUpdate
    rng = np.random.default_rng(1)
    shapes = [(3, 4), (4,), (5, 2)]
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    runs = {}
    for lowering in (None, nb.update_kernel):
        params = [rg.nn.Parameter(a.copy()) for a in init]
        opt = UPDATES[name](params)
        fused = FusedUpdate(opt, params, lowering)
        grads = np.random.default_rng(2)
        for step in range(5):
            if step == 3:
                opt.param_groups[0]["lr"] *= 0.5
            fused.sync()
            for g in fused.grad_arrays:
                g[...] = grads.standard_normal(g.shape)
            fused.update()
        runs[lowering] = (params, opt, fused)
    (pa, oa, _), (pb, ob, fb) = runs[None], runs[nb.update_kernel]
    for p, q in zip(pa, pb):
        np.testing.assert_array_equal(p.data, q.data)
    sa, sb = _flat(oa.state_dict()), _flat(ob.state_dict())
    assert [k for k, _ in sa] == [k for k, _ in sb]
    for (k, x), (_, y) in zip(sa, sb):
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y, err_msg=k)
        else:
            assert x == y, k
    # it really ran compiled (SGD with momentum: from step two, once the buffer exists)
    assert any(r is not None for b in fb.buckets for r in b.rules.values())


def _kernel_and_apart(make_opt, steps, between=lambda k, opt: None, **kw):
    """The same training run with the update at the end of the step's kernel (the default)
    and with it a call of its own after the kernel (on_gradients given: never fused)."""
    runs = {}
    for how in ("kernel", "apart"):
        rg.manual_seed(3)
        model = MLP(**kw)
        opt = make_opt(model.parameters())
        hook = None if how == "kernel" else (lambda grads: None)
        step = rg.graph.compile_step(model, rg.nn.CrossEntropyLoss(), opt, backend="numba",
                                     on_gradients=hook)
        rng = np.random.default_rng(4)
        losses, ran = [], []
        for k in range(steps):
            between(k, opt)
            x = rng.standard_normal((8, 12)).astype(np.float32)
            losses.append(float(step(x, rng.integers(0, 5, 8))[0].data))
            slots = next(iter(step.prepared.values()))[5]
            ran.append(slots is not None and all(slots.ran()))
        runs[how] = (model, opt, losses, ran)
    return runs


def _bitwise_same(runs):
    (ma, oa, la, _), (mb, ob, lb, _) = runs["kernel"], runs["apart"]
    assert la == lb
    for p, q in zip(ma.parameters(), mb.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    sa, sb = _flat(oa.state_dict()), _flat(ob.state_dict())
    assert [k for k, _ in sa] == [k for k, _ in sb]
    for (k, x), (_, y) in zip(sa, sb):
        assert np.array_equal(x, y), k


@pytest.mark.parametrize("name", ["sgd_nesterov_wd", "adam_amsgrad_wd", "adagrad",
                                  "rmsprop_centered_momentum"])
def test_the_update_inside_the_steps_kernel_gives_the_numbers_of_the_update_after_it(name):
    """compile_step on Numba runs the optimizer's update at the end of the step's last
    kernel (one call a step): parameters, state and losses equal those of the update run
    as its own call, bit for bit, through a learning-rate change and a reloaded state."""
    def between(k, opt):
        if k == 3:
            opt.param_groups[0]["lr"] *= 0.5
        if k == 5:          # a state replaced behind the flat arrays' back: gathered afresh
            opt.load_state_dict(opt.state_dict())
    runs = _kernel_and_apart(UPDATES[name], 8, between)
    _bitwise_same(runs)
    ran = runs["kernel"][3]
    # momentum buffers made on step one: that step's update is NumPy's, then the kernel's
    assert ran[1:] == [True] * 7 and runs["apart"][3] == [False] * 8


def test_a_hyperparameter_that_changes_the_rule_moves_the_update_out_of_the_kernel():
    # momentum 0.9 -> 0: the traced branch no longer holds (its guard), the step's kernel
    # skips its update and the rule traced afresh runs after it; the numbers stay NumPy's
    def between(k, opt):
        if k == 3:
            opt.param_groups[0]["momentum"] = 0.0
    runs = _kernel_and_apart(lambda ps: rg.optim.SGD(ps, lr=0.1, momentum=0.9), 6, between)
    _bitwise_same(runs)
    assert runs["kernel"][3] == [False, True, True, False, False, False]


def test_a_failing_step_with_the_update_in_its_kernel_changes_nothing():
    rg.manual_seed(3)
    model = MLP()
    opt = rg.optim.Adam(model.parameters(), lr=0.01)
    step = rg.graph.compile_step(model, rg.nn.CrossEntropyLoss(), opt, backend="numba")
    x = np.ones((8, 12), np.float32)
    step(x, np.zeros(8, np.int64))
    before = [p.data.copy() for p in model.parameters()]
    state = _flat(opt.state_dict())
    with pytest.raises(rg.RetrogradError, match="label 9 is out of range for 5 classes"):
        step(x, np.full(8, 9))
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.data, b)
    assert [(k, v.tolist() if isinstance(v, np.ndarray) else v)
            for k, v in _flat(opt.state_dict())] == [
        (k, v.tolist() if isinstance(v, np.ndarray) else v) for k, v in state]
    step(x, np.zeros(8, np.int64))
    assert opt.state[next(iter(model.parameters()))]["step"] == 2
    assert all(next(iter(step.prepared.values()))[5].ran())


def test_a_step_whose_kernel_fails_to_compile_still_updates_as_numpy(monkeypatch):
    # the fallback driver takes the fused update's arguments and ignores them: the update
    # then runs after it, as for a NumPy step
    real = nb._scalar_expr
    monkeypatch.setattr(nb, "_scalar_expr", lambda n, args: (real(n, args) or "").replace(
        "math.tanh(", "math.no_such_function(") or None)
    ref = _train("numpy", OPTIMIZERS["adam"])
    with pytest.warns(RuntimeWarning, match="Numba could not compile"):
        got = _train("numba", OPTIMIZERS["adam"])
    np.testing.assert_allclose(got[2], ref[2], rtol=1e-6)
    for p, q in zip(got[0].parameters(), ref[0].parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-6, atol=1e-7)
    exe, *_, slots = next(iter(got[3].prepared.values()))
    assert exe.backend == "numpy" and slots is not None and not any(slots.ran())


def test_the_disk_cache_drops_programs_unused_for_a_month_and_keeps_the_rest(monkeypatch,
                                                                             tmp_path):
    monkeypatch.setenv("RETROGRAD_CACHE_DIR", str(tmp_path))
    folder = tmp_path / "numba"
    folder.mkdir()
    (folder / "__pycache__").mkdir()
    old, fresh = nb._PREFIX + "a" * 32, nb._PREFIX + "b" * 32
    month = time.time() - 31 * 86400
    for name in (old, fresh):
        (folder / f"{name}.py").write_text("x = 1\n")
        (folder / "__pycache__" / f"{name}.k0-3.py311.nbi").write_text("")
        (folder / f"{name}.used").write_text("")
    os.utime(folder / f"{old}.used", (month, month))
    (folder / "notes.txt").write_text("not ours")
    f = rg.compile(lambda x: x * 3 + 1, backend="numba")       # caches a program: prunes
    np.testing.assert_allclose(f(np.ones(2)).numpy(), [4, 4])
    names = os.listdir(folder)
    assert f"{old}.py" not in names and f"{old}.used" not in names
    assert not [n for n in os.listdir(folder / "__pycache__") if n.startswith(old)]
    assert f"{fresh}.py" in names and "notes.txt" in names
    new = [n for n in names if n.endswith(".py") and n not in (f"{fresh}.py",)]
    assert len(new) == 1 and new[0][:-3] + ".used" in names     # its use is recorded
    # once a day: an entry that went stale since the last pruning stays until tomorrow
    os.utime(folder / f"{fresh}.used", (month, month))
    nb._prune_daily(str(folder))
    assert f"{fresh}.py" in os.listdir(folder)
    assert nb.prune_cache(str(folder)) == [fresh]
    assert nb.prune_cache(str(folder), days=0) == []


def test_a_cache_age_that_is_not_a_number_is_refused_by_name(monkeypatch, tmp_path):
    monkeypatch.setenv("RETROGRAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("RETROGRAD_CACHE_DAYS", "a month")
    with pytest.raises(rg.RetrogradError, match="RETROGRAD_CACHE_DAYS must be a number of days, "
                                                "got 'a month'"):
        rg.compile(lambda x: x * 5 - 2, backend="numba")(np.ones(2))


def test_the_cli_without_numba_says_how_to_install_it_in_one_line(monkeypatch, capsys, tmp_path):
    from retrograd.cli import main
    monkeypatch.setattr(nb, "available", lambda: False)
    assert main(["train", "--backend", "numba", "--data", "xor", "--epochs", "1",
                 "--no-progress", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["retrograd: error: train: backend='numba' needs Numba and SciPy: "
                   "pip install 'retrograd[fast]'"]
