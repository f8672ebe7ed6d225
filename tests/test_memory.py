"""Memory (issue 6, item 6): training keeps memory flat, makes no reference cycles,
and graphs are freed after backward, even a 100,000-op chain.

Measuring with tracemalloc: CPython keeps up to 2000 freed tuples of each small
length for reuse, and tracemalloc counts those as allocated; a training loop fills
these caches over its first few thousand steps, which would read as (bounded)
growth. ``_fill_tuple_caches`` fills them before the measurement starts. What other
tests left behind (the heap's and the free lists' state) can still make a few kB of
such bounded growth in the first few hundred steps, so the tests bound the total
loosely and require the second half of the measured steps to add nothing: a leak of
even one small object per step adds tens of kB there.
"""
import gc
import math
import os
import time
import tracemalloc
import weakref

import numpy as np
import pytest

import retrograd as rg
from retrograd import nn, optim


def _fill_tuple_caches():
    junk = [t for i in range(3000) for t in ((i,), (i, 0), (i, 0, 0), (i, 0, 0, 0), (i, 0, 0, 0, 0))]
    del junk


def _b1(batch, n_batches=4):
    """Benchmark B1's network: 784-100-10 tanh, cross-entropy, SGD; random digits."""
    rg.manual_seed(0)
    model = nn.MLP([784, 100, 10], "tanh")
    opt = optim.SGD(model.parameters(), lr=0.1)
    rng = np.random.default_rng(0)
    batches = [(rg.tensor(rng.standard_normal((batch, 784)).astype(np.float32)),
                rg.tensor(rng.integers(0, 10, batch))) for _ in range(n_batches)]
    return model, opt, batches


def _step(kind, model, opt):
    loss_fn = nn.CrossEntropyLoss()
    if kind == "compiled":
        return rg.graph.compile_step(model, loss_fn, opt)

    def eager(x, y):
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    return eager


def _measure(step, batches, steps=None, seconds=None):
    """Run 100 warm-up steps, then ``steps`` more (or as many as fit in ``seconds``) with
    the collector off. Returns (steps run, growth of current memory, its growth over the
    second half of the steps, growth of the peak after the first 100 measured steps, one
    step's transient peak, objects in cycles)."""
    tracemalloc.start()
    gc.collect()
    gc.disable()
    try:
        for i in range(100):
            step(*batches[i % len(batches)])
        _fill_tuple_caches()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for i in range(100):
            step(*batches[i % len(batches)])
        early_peak = tracemalloc.get_traced_memory()[1]
        n, t0, half = 100, time.perf_counter(), None
        while (n < steps) if steps else (time.perf_counter() - t0 < seconds or n < 300):
            step(*batches[n % len(batches)])
            n += 1
            if half is None and ((n >= steps // 2) if steps
                                 else time.perf_counter() - t0 >= seconds / 2):
                half = tracemalloc.get_traced_memory()[0]
        current, peak = tracemalloc.get_traced_memory()
        gc.set_debug(gc.DEBUG_SAVEALL)        # what a collection finds is kept in gc.garbage
        found = gc.collect()
        cyclic = [type(o).__name__ for o in gc.garbage]
        del gc.garbage[:]
    finally:
        gc.set_debug(0)
        gc.enable()
        tracemalloc.stop()
    return n, current - base, current - half, peak - early_peak, early_peak - base, found, cyclic


@pytest.mark.parametrize("kind", ["eager", "compiled"])
def test_two_thousand_training_steps_keep_memory_flat_and_make_no_cycles(kind):
    model, opt, batches = _b1(batch=64)
    n, growth, late, peak_growth, transient, found, cyclic = _measure(
        _step(kind, model, opt), batches, steps=2000)
    assert n == 2000
    assert late < 1024, f"{late} bytes more over the last {n // 2} steps"
    assert growth < 32 << 10, f"{growth} bytes more after {n} steps"
    assert peak_growth < 32 << 10, f"the peak grew by {peak_growth} bytes"
    assert transient < 2 << 20, f"one step needs {transient} bytes"     # 64x784 batch, 79k weights
    assert found == 0 and not cyclic, cyclic[:20]


def test_b1_shapes_keep_memory_flat_for_as_many_steps_as_fit_in_ten_seconds():
    """Benchmark B1 itself: batch 500; eager and compiled about five seconds each."""
    for kind in ("eager", "compiled"):
        model, opt, batches = _b1(batch=500, n_batches=2)
        n, growth, late, peak_growth, transient, found, cyclic = _measure(
            _step(kind, model, opt), batches, seconds=4.5)
        assert late < 1024, f"{kind}: {late} bytes more over the second half of {n} steps"
        assert growth < 32 << 10, f"{kind}: {growth} bytes more after {n} steps"
        assert peak_growth < 32 << 10, f"{kind}: the peak grew by {peak_growth} bytes after {n} steps"
        assert transient < 8 << 20, f"{kind}: one step needs {transient} bytes"
        assert found == 0 and not cyclic, (kind, cyclic[:20])


def test_the_graph_is_freed_by_backward():
    model, opt, batches = _b1(batch=8, n_batches=1)
    x, y = batches[0]
    out = model(x)
    loss = nn.CrossEntropyLoss()(out, y)
    hidden = weakref.ref(loss._inputs[0]) if loss._inputs else None
    logits = weakref.ref(out)
    del out
    assert logits() is not None                 # the graph holds it until backward
    loss.backward()
    assert logits() is None and (hidden is None or hidden() is None)


def test_retain_graph_keeps_it_and_dropping_the_output_frees_it():
    x = rg.randn(3, requires_grad=True)
    y = rg.tanh(x * 2)
    mid = weakref.ref(y)
    z = (y * y).sum()
    del y
    z.backward(retain_graph=True)
    assert mid() is not None
    del z
    gc.collect()
    assert mid() is None


# ---------------------------------------------------------------- a 100,000-op chain

def _status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, value = line.split(":", 1)
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak_rss():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="Linux /proc needed")
def test_a_100000_op_chain_backprops_in_bounded_memory_and_is_freed():
    """Peak resident memory (Linux's VmHWM, reset before each phase) rather than
    tracemalloc, which slows a 100,000-node backward walk ten times over."""
    n = 100_000
    x = rg.tensor(np.full(4, 0.5, np.float32), requires_grad=True)
    gc.collect()
    try:
        _reset_peak_rss()
    except OSError:
        pytest.skip("cannot reset the peak RSS here")
    base = _status()["VmRSS"]
    y, mid = x, None
    for i in range(n):
        y = rg.tanh(y) if i % 2 else y * 1.0001
        if i == n // 2:
            mid = weakref.ref(y)
    built = _status()["VmRSS"] - base
    _reset_peak_rss()
    loss = y.sum()
    loss.backward()
    peak = _status()["VmHWM"] - base
    assert built < 1024 * n, f"{built / n:.0f} bytes per node"
    assert peak < 1.5 * built + (16 << 20), f"backward peaked at {peak / n:.0f} bytes per node"
    assert mid() is None                     # freed by backward while y is still alive
    v, d = 0.5, 1.0                          # the same chain by hand, in float64
    for i in range(n):
        if i % 2:
            v = math.tanh(v)
            d *= 1 - v * v
        else:
            v *= 1.0001
            d *= 1.0001
    np.testing.assert_allclose(x.grad.numpy(), np.full(4, d), rtol=1e-2)
