#!/usr/bin/env python
"""Side-by-side training-step benchmark: hand-written NumPy vs PyTorch vs retrograd.

Cases (float32; a "step" = forward + backward + plain SGD update of all params):
  B1  784-100-10, tanh hidden, softmax cross-entropy, batch 500
  B2  64 -> 8 hidden layers x 64 ReLU -> 10, softmax cross-entropy, batch 32
  B3  784-1024-1024-10 ReLU, softmax cross-entropy, batch 256
  B4  Hessian-vector product of B1's loss w.r.t. all parameters, batch 500
  B5  LeNet-style CNN on 1x28x28: conv 5x5 1->6, ReLU, max pool 2, conv 5x5 6->16,
      ReLU, max pool 2, flatten, 256-120-84-10 ReLU, softmax cross-entropy, batch 64
  B6  1-layer LSTM, input 28, hidden 128, 32 steps, linear head on the last state
      (10 classes), softmax cross-entropy, batch 32

Every implementation starts from the same seeded data and init. Before timing,
one step of each is compared against PyTorch eager (or the first implementation
that ran) so the table compares like with like. Each (implementation, case) runs
in its own fresh process; the parent interleaves their timing blocks and reports
the median ms/step, and each process reports its own peak-RSS growth. Each case's
achieved GFLOP/s is reported against one large float32 matmul measured in the same run.

    python bench/bench.py                       # everything installed
    python bench/bench.py --quick               # smoke test (~20 s)
    python bench/bench.py --cases B1,B3 --impls numpy,torch,retrograd --json out.json

Only numpy (+ retrograd) is required; other implementations skip with a note.
To add an implementation (e.g. "retrograd compiled"), write a builder and
decorate it with @register -- see IMPLS below.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# Let a plain checkout find retrograd without `pip install -e .`; an installed one still wins.
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LR = 0.01
CHECK_RTOL = 1e-4  # relative tolerance of the one-step agreement check
NOISY = 0.3  # flag timings whose blocks spread more than this fraction of the median
TORCH_THREADS = os.cpu_count() or 1  # set in each worker from --torch-threads


# ----------------------------------------------------------------------------
# Cases and data
# ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    desc: str
    sizes: tuple  # layer widths, input first
    act: str  # hidden activation: "tanh" | "relu"
    batch: int
    kind: str  # "train" | "hvp" | "cnn"


CASES = {
    "B1": Case("B1", "784-100-10 tanh, bs 500", (784, 100, 10), "tanh", 500, "train"),
    "B2": Case("B2", "64-(8x64)-10 ReLU, bs 32", (64,) + (64,) * 8 + (10,), "relu", 32, "train"),
    "B3": Case("B3", "784-1024-1024-10 ReLU, bs 256", (784, 1024, 1024, 10), "relu", 256, "train"),
    "B4": Case("B4", "HVP of B1 loss, bs 500", (784, 100, 10), "tanh", 500, "hvp"),
    "B5": Case("B5", "LeNet CNN 1x28x28, bs 64", (256, 120, 84, 10), "relu", 64, "cnn"),
    # sizes: input, hidden, classes; the steps are LSTM_STEPS (see the LSTM section below)
    "B6": Case("B6", "LSTM 28-128 x 32 steps -> 10, bs 32", (28, 128, 10), "lstm", 32, "lstm"),
}


@dataclass
class Data:
    X: np.ndarray  # (batch, n_in) float32
    y: np.ndarray  # (batch,) int64 labels
    params: list  # [W1, b1, W2, b2, ...]; W of shape (n_in, n_out)
    vs: list  # HVP direction, one array per param


def make_data(case: Case, seed: int = 0) -> Data:
    if case.kind == "cnn":
        return make_cnn_data(case, seed)
    if case.kind == "lstm":
        return make_lstm_data(case, seed)
    # Same seed for every case, so B4 sees exactly B1's data and init.
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((case.batch, case.sizes[0]), dtype=np.float32)
    y = rng.integers(0, case.sizes[-1], case.batch, dtype=np.int64)
    gain = 1.0 if case.act == "tanh" else 2.0  # LeCun / He scaling
    params = []
    for n_in, n_out in zip(case.sizes[:-1], case.sizes[1:]):
        W = rng.standard_normal((n_in, n_out), dtype=np.float32) * np.float32(np.sqrt(gain / n_in))
        params += [W, np.zeros(n_out, np.float32)]
    vs = [rng.standard_normal(p.shape, dtype=np.float32) for p in params]
    return Data(X, y, params, vs)


# ----------------------------------------------------------------------------
# Implementation registry
# ----------------------------------------------------------------------------

@dataclass
class Runner:
    step: Callable[[], None]  # one training step (or one HVP for kind "hvp")
    # state() after a step: {"loss": float, "params": [ndarray]} or {"hvp": [ndarray]}
    state: Callable[[], dict]
    sync: Callable[[], None] = lambda: None  # wait for async work (JAX)


@dataclass
class Impl:
    build: Callable[[Case, Data], Runner]  # raise ImportError/NotImplementedError to skip
    requires: tuple  # modules imported before the memory baseline
    quick: bool  # included by default in --quick (False for slow-to-compile ones)


IMPLS: dict[str, Impl] = {}


def register(name, requires=(), quick=True):
    def deco(build):
        IMPLS[name] = Impl(build, tuple(requires), quick)
        return build
    return deco


# builders for the case kinds beyond the MLP ("train", "hvp"), e.g. "cnn" (B5) and
# "lstm" (B6): (kind, impl) -> build
KIND_BUILDERS: dict = {}


def register_kind(kind, name):
    def deco(build):
        KIND_BUILDERS[(kind, name)] = build
        return build
    return deco


def builder(impl: str, case: Case) -> Callable:
    if case.kind in ("train", "hvp"):
        return IMPLS[impl].build
    if (case.kind, impl) not in KIND_BUILDERS:
        raise NotImplementedError(f"no {case.kind} builder for {impl}")
    return KIND_BUILDERS[(case.kind, impl)]


def _n_layers(d: Data) -> int:
    return len(d.params) // 2


# --- 1. hand-written NumPy backprop (the floor) -----------------------------

def softmax_ce_in_place(z, y, rows):
    """The mean softmax cross-entropy of logits ``z`` (float32, (B, classes)) for labels
    ``y``; ``z`` becomes dLoss/dlogits in place (the hand-written NumPy steps share it)."""
    z -= z.max(axis=1, keepdims=True)
    zy = z[rows, y]
    np.exp(z, out=z)
    s = z.sum(axis=1)
    loss = float(np.mean(np.log(s) - zy))
    z /= s[:, None]
    z[rows, y] -= 1
    z *= np.float32(1 / len(z))
    return loss


@register("numpy", requires=("numpy",))
def build_numpy(case: Case, d: Data) -> Runner:
    if case.kind == "hvp":
        raise NotImplementedError("no hand-written HVP")
    Ws = [p.copy() for p in d.params[0::2]]
    bs = [p.copy() for p in d.params[1::2]]
    X, y, B, L = d.X, d.y, case.batch, _n_layers(d)
    rows = np.arange(B)
    tanh = case.act == "tanh"
    # Preallocated buffers: layer outputs, weight grads, deltas w.r.t. layer inputs.
    acts = [np.empty((B, W.shape[1]), np.float32) for W in Ws]
    gWs = [np.empty_like(W) for W in Ws]
    deltas = [np.empty((B, W.shape[0]), np.float32) for W in Ws]
    out = {}

    def step():
        h = X
        for i in range(L):
            z = acts[i]
            np.matmul(h, Ws[i], out=z)
            z += bs[i]
            if i < L - 1:
                if tanh:
                    np.tanh(z, out=z)
                else:
                    np.maximum(z, 0, out=z)
            h = z
        out["loss"] = softmax_ce_in_place(z, y, rows)
        delta = z
        for i in reversed(range(L)):
            a_in = X if i == 0 else acts[i - 1]
            np.matmul(a_in.T, delta, out=gWs[i])
            gb = delta.sum(axis=0)
            if i > 0:  # propagate with the old W before updating it
                d_in = deltas[i]
                np.matmul(delta, Ws[i].T, out=d_in)
                if tanh:  # tanh' = 1 - a^2; a_in is not needed afterwards
                    np.square(a_in, out=a_in)
                    np.subtract(1, a_in, out=a_in)
                    d_in *= a_in
                else:
                    d_in *= a_in > 0
                delta = d_in
            gWs[i] *= LR
            Ws[i] -= gWs[i]
            gb *= LR
            bs[i] -= gb

    def state():
        params = [p for pair in zip(Ws, bs) for p in pair]
        return {"loss": out["loss"], "params": [p.copy() for p in params]}

    return Runner(step, state)


# --- 2. PyTorch eager / torch.compile ----------------------------------------

def _torch_setup():
    import torch
    torch.set_num_threads(TORCH_THREADS)
    return torch


def _torch_sgd_step(torch, loss, params):
    """Backward from ``loss`` and the plain SGD update of ``params`` (every torch case)."""
    loss.backward()
    with torch.no_grad():
        for p in params:
            p.sub_(p.grad, alpha=LR)
            p.grad = None


def _torch_loss(params, X, y, act):
    import torch
    import torch.nn.functional as F
    h = X
    L = len(params) // 2
    for i in range(L):
        h = torch.addmm(params[2 * i + 1], h, params[2 * i])  # what nn.Linear does
        if i < L - 1:
            h = act(h)
    return F.cross_entropy(h, y)


def _torch_inputs(case: Case, d: Data):
    torch = _torch_setup()
    act = torch.tanh if case.act == "tanh" else torch.relu
    X, y = torch.from_numpy(d.X), torch.from_numpy(d.y)
    params = [torch.tensor(p) for p in d.params]  # copies
    vs = [torch.from_numpy(v) for v in d.vs]
    return torch, act, X, y, params, vs


@register("torch", requires=("torch",))
def build_torch(case: Case, d: Data) -> Runner:
    torch, act, X, y, params, vs = _torch_inputs(case, d)
    for p in params:
        p.requires_grad_()
    out = {}

    if case.kind == "hvp":
        def step():
            loss = _torch_loss(params, X, y, act)
            g = torch.autograd.grad(loss, params, create_graph=True)
            gv = sum((gi * vi).sum() for gi, vi in zip(g, vs))
            out["hvp"] = torch.autograd.grad(gv, params)

        return Runner(step, lambda: {"hvp": [h.numpy().copy() for h in out["hvp"]]})

    def step():
        loss = _torch_loss(params, X, y, act)
        _torch_sgd_step(torch, loss, params)
        out["loss"] = loss

    def state():
        return {"loss": out["loss"].item(), "params": [p.detach().numpy().copy() for p in params]}

    return Runner(step, state)


@register("torch.compile", requires=("torch",), quick=False)
def build_torch_compile(case: Case, d: Data) -> Runner:
    torch, act, X, y, params, vs = _torch_inputs(case, d)
    from torch.func import grad, grad_and_value, jvp

    def loss_fn(params, X, y):
        return _torch_loss(params, X, y, act)

    out = {}
    # Functional (torch.func) formulation so the whole step -- forward, backward
    # and update -- compiles into one graph; loss.backward() would graph-break.
    if case.kind == "hvp":
        def hvp(params, vs, X, y):
            return jvp(lambda p: grad(loss_fn)(p, X, y), (params,), (vs,))[1]

        hvp_c = torch.compile(hvp, fullgraph=True)

        def step():
            out["hvp"] = hvp_c(params, vs, X, y)

        return Runner(step, lambda: {"hvp": [h.numpy().copy() for h in out["hvp"]]})

    def train_step(params, X, y):
        g, loss = grad_and_value(loss_fn)(params, X, y)
        for p, gi in zip(params, g):
            p.sub_(gi, alpha=LR)
        return loss

    train_step_c = torch.compile(train_step, fullgraph=True)

    def step():
        out["loss"] = train_step_c(params, X, y)

    def state():
        return {"loss": out["loss"].item(), "params": [p.numpy().copy() for p in params]}

    return Runner(step, state)


# --- 3. retrograd eager ------------------------------------------------------

@register("retrograd", requires=("retrograd",))
def build_retrograd(case: Case, d: Data, lift=np.asarray) -> Runner:
    """``lift``: puts the data and weights in an array namespace (bench/gpu_check.py: CuPy)."""
    import retrograd as rg
    act = rg.tanh if case.act == "tanh" else rg.relu
    X, y, L = rg.tensor(lift(d.X)), lift(d.y), _n_layers(d)

    def loss_fn(*params):
        h = X
        for i in range(L):
            h = h @ params[2 * i] + params[2 * i + 1]
            if i < L - 1:
                h = act(h)
        return rg.nn.functional.cross_entropy(h, y)   # fused softmax + cross-entropy

    out = {}
    if case.kind == "hvp":
        params = tuple(rg.tensor(p.copy()) for p in d.params)
        vs = tuple(rg.tensor(v) for v in d.vs)

        def step():
            out["hvp"] = rg.hvp(loss_fn, params, vs)  # one Tensor per param

        return Runner(step, lambda: {"hvp": [np.array(h.data) for h in out["hvp"]]})

    params = [rg.tensor(lift(p.copy()), requires_grad=True) for p in d.params]

    def step():
        loss = loss_fn(*params)
        loss.backward()
        for p in params:
            p.data -= LR * p.grad.data
            p.grad = None
        out["loss"] = loss

    def state():
        return {"loss": float(out["loss"].data),
                "params": [rg.arrays.to_numpy(p.data).copy() for p in params]}

    return Runner(step, state)


# --- 3b. retrograd compiled ---------------------------------------------------

@register("retrograd.compile", requires=("retrograd",))
def build_retrograd_compiled(case: Case, d: Data, backend="numpy") -> Runner:
    """The same model through retrograd's graph path: the training step is one generated
    function (rg.graph.compile_step) followed by the optimizer's in-place update; the HVP
    is rg.compile(rg.hvp(...)). ``backend``: the NumPy generator, or Numba."""
    import retrograd as rg
    act = rg.tanh if case.act == "tanh" else rg.relu
    L = _n_layers(d)

    def forward(params, h):
        for i in range(L):
            h = h @ params[2 * i] + params[2 * i + 1]
            if i < L - 1:
                h = act(h)
        return h

    out = {}
    if case.kind == "hvp":
        X = rg.tensor(d.X)
        loss = lambda *ps: rg.nn.functional.cross_entropy(forward(ps, X), d.y)
        n = len(d.params)
        hvp = rg.compile(lambda *a: rg.hvp(loss, a[:n], a[n:]), backend=backend)
        params = [p.copy() for p in d.params]

        def step():
            out["hvp"] = hvp(*params, *d.vs)

        return Runner(step, lambda: {"hvp": [np.array(h.data) for h in out["hvp"]]})

    class Model(rg.nn.Module):
        def __init__(self):
            self.ps = [rg.nn.Parameter(p.copy()) for p in d.params]

        def forward(self, x):
            return forward(self.ps, x)

    model = Model()
    opt = rg.optim.SGD(model.parameters(), lr=LR)
    train_step = rg.graph.compile_step(model, rg.nn.CrossEntropyLoss(), opt, backend=backend)
    X = rg.tensor(d.X)

    def step():
        out["loss"], _ = train_step(X, d.y)

    def state():
        return {"loss": float(out["loss"].data), "params": [np.array(p.data) for p in model.ps]}

    return Runner(step, state)


# --- 3c. retrograd compiled by Numba -------------------------------------------

@register("retrograd.numba", requires=("retrograd", "numba"))
def build_retrograd_numba(case: Case, d: Data) -> Runner:
    """retrograd.compile's program lowered to Numba machine code (fused loops, BLAS)."""
    return build_retrograd_compiled(case, d, backend="numba")


# --- 4. JAX jit (optional) ---------------------------------------------------

@register("jax", requires=("jax",))
def build_jax(case: Case, d: Data) -> Runner:
    import jax
    import jax.numpy as jnp
    act = jnp.tanh if case.act == "tanh" else jax.nn.relu
    X, y, L = jnp.asarray(d.X), jnp.asarray(d.y), _n_layers(d)
    params = [jnp.asarray(p) for p in d.params]
    vs = [jnp.asarray(v) for v in d.vs]

    def loss_fn(params, X, y):
        h = X
        for i in range(L):
            h = h @ params[2 * i] + params[2 * i + 1]
            if i < L - 1:
                h = act(h)
        logp = jax.nn.log_softmax(h, axis=1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    st = {"params": params}
    if case.kind == "hvp":
        hvp = jax.jit(lambda p, v, X, y: jax.jvp(lambda q: jax.grad(loss_fn)(q, X, y), (p,), (v,))[1])

        def step():
            st["hvp"] = hvp(st["params"], vs, X, y)

        return Runner(step, lambda: {"hvp": [np.asarray(h) for h in st["hvp"]]},
                      sync=lambda: jax.block_until_ready(st["hvp"]))

    def train_step(params, X, y):
        loss, g = jax.value_and_grad(loss_fn)(params, X, y)
        return [p - LR * gi for p, gi in zip(params, g)], loss

    train_step_j = jax.jit(train_step, donate_argnums=0)  # update params in place

    def step():
        st["params"], st["loss"] = train_step_j(st["params"], X, y)

    def state():
        return {"loss": float(st["loss"]), "params": [np.asarray(p).copy() for p in st["params"]]}

    return Runner(step, state, sync=lambda: jax.block_until_ready(st["params"]))


# --- B5: a LeNet-style CNN (kind "cnn"), one builder per implementation -------
# params: [conv1 W (6,1,5,5), b (6,), conv2 W (16,6,5,5), b (16,), then the three Linear
# layers' W (n_in, n_out) and b], conv weights in PyTorch's layout, drawn as its init.

CNN_CONVS = ((1, 6, 5), (6, 16, 5))  # (C_in, C_out, kernel)


def make_cnn_data(case: Case, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    X = rng.random((case.batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, case.sizes[-1], case.batch, dtype=np.int64)
    params = []
    for c_in, c_out, k in CNN_CONVS:
        bound = np.float32(1 / np.sqrt(c_in * k * k))
        params += [rng.uniform(-bound, bound, (c_out, c_in, k, k)).astype(np.float32),
                   rng.uniform(-bound, bound, c_out).astype(np.float32)]
    for n_in, n_out in zip(case.sizes[:-1], case.sizes[1:]):
        W = rng.standard_normal((n_in, n_out), dtype=np.float32) * np.float32(np.sqrt(2 / n_in))
        params += [W, np.zeros(n_out, np.float32)]
    return Data(X, y, params, [])


def _np_im2col(x, k):
    """(C, H, W, N) batch-last -> columns (C·k·k, oh·ow·N), one copy per kernel offset."""
    c, h, w, n = x.shape
    oh, ow = h - k + 1, w - k + 1
    out = np.empty((c, k, k, oh, ow, n), x.dtype)
    for i in range(k):
        for j in range(k):
            out[:, i, j] = x[:, i:i + oh, j:j + ow]
    return out.reshape(c * k * k, -1)


def _np_col2im(cols, shape, k):
    c, h, w, n = shape
    oh, ow = h - k + 1, w - k + 1
    c6 = cols.reshape(c, k, k, oh, ow, n)
    out = np.zeros(shape, cols.dtype)
    for i in range(k):
        for j in range(k):
            out[:, i:i + oh, j:j + ow] += c6[:, i, j]
    return out


@register_kind("cnn", "numpy")
def build_numpy_cnn(case: Case, d: Data) -> Runner:
    """Hand-written backprop, batch-last (C, H, W, N) throughout: im2col + one matmul per
    conv, 2x2 max pooling by reshape, the gradient routed by an argmax mask."""
    ps = [p.copy() for p in d.params]
    X = np.ascontiguousarray(d.X.transpose(1, 2, 3, 0))
    y, B = d.y, case.batch
    rows = np.arange(B)
    out = {}

    def pool(a):                      # (C, H, W, N) -> (C, H/2, W/2, N) and the argmax mask
        c, h, w, n = a.shape
        v = a.reshape(c, h // 2, 2, w // 2, 2, n)
        m = v.max(axis=(2, 4))
        first = np.zeros_like(v, dtype=bool)
        left = np.ones(m.shape, bool)
        for i in range(2):            # the first maximum only, as PyTorch
            for j in range(2):
                hit = left & (v[:, :, i, :, j] == m)
                first[:, :, i, :, j] = hit
                left &= ~hit
        return m, first

    def step():
        W1, b1, W2, b2 = ps[:4]
        c1 = _np_im2col(X, 5)
        z1 = (W1.reshape(6, -1) @ c1 + b1[:, None]).reshape(6, 24, 24, B)
        np.maximum(z1, 0, out=z1)
        p1, m1 = pool(z1)
        c2 = _np_im2col(p1, 5)
        z2 = (W2.reshape(16, -1) @ c2 + b2[:, None]).reshape(16, 8, 8, B)
        np.maximum(z2, 0, out=z2)
        p2, m2 = pool(z2)
        hs = [np.ascontiguousarray(p2.transpose(3, 0, 1, 2)).reshape(B, -1)]
        for i in range(3):
            h = hs[-1] @ ps[4 + 2 * i] + ps[5 + 2 * i]
            if i < 2:
                np.maximum(h, 0, out=h)
            hs.append(h)
        z = hs[-1]
        out["loss"] = softmax_ce_in_place(z, y, rows)
        delta, grads = z, [None] * len(ps)
        for i in reversed(range(3)):
            grads[4 + 2 * i], grads[5 + 2 * i] = hs[i].T @ delta, delta.sum(axis=0)
            delta = delta @ ps[4 + 2 * i].T
            if i > 0:
                delta *= hs[i] > 0
        dp2 = delta.reshape(B, 16, 4, 4).transpose(1, 2, 3, 0)
        dz2 = (m2 * dp2[:, :, None, :, None]).reshape(z2.shape) * (z2 > 0)
        dz2 = dz2.reshape(16, -1)
        grads[2], grads[3] = (dz2 @ c2.T).reshape(W2.shape), dz2.sum(axis=1)
        dp1 = _np_col2im(W2.reshape(16, -1).T @ dz2, p1.shape, 5)
        dz1 = ((m1 * dp1[:, :, None, :, None]).reshape(z1.shape) * (z1 > 0)).reshape(6, -1)
        grads[0], grads[1] = (dz1 @ c1.T).reshape(W1.shape), dz1.sum(axis=1)
        for p, g in zip(ps, grads):
            p -= np.float32(LR) * g

    return Runner(step, lambda: {"loss": out["loss"], "params": [p.copy() for p in ps]})


def _torch_cnn_loss(F, torch, params, X, y):
    h = X
    for i in range(2):
        h = F.max_pool2d(torch.relu(F.conv2d(h, params[2 * i], params[2 * i + 1])), 2)
    h = h.flatten(1)
    for i in range(3):
        h = torch.addmm(params[5 + 2 * i], h, params[4 + 2 * i])
        if i < 2:
            h = torch.relu(h)
    return F.cross_entropy(h, y)


@register_kind("cnn", "torch")
def build_torch_cnn(case: Case, d: Data) -> Runner:
    torch = _torch_setup()
    import torch.nn.functional as F
    X, y = torch.from_numpy(d.X), torch.from_numpy(d.y)
    params = [torch.tensor(p, requires_grad=True) for p in d.params]
    out = {}

    def step():
        loss = _torch_cnn_loss(F, torch, params, X, y)
        _torch_sgd_step(torch, loss, params)
        out["loss"] = loss

    return Runner(step, lambda: {"loss": out["loss"].item(),
                                 "params": [p.detach().numpy().copy() for p in params]})


def _rg_cnn_forward(rg, params, h):
    F = rg.nn.functional
    for i in range(2):
        h = F.max_pool2d(rg.relu(F.conv2d(h, params[2 * i], params[2 * i + 1])), 2)
    h = h.reshape(h.shape[0], -1)
    for i in range(3):
        h = h @ params[4 + 2 * i] + params[5 + 2 * i]
        if i < 2:
            h = rg.relu(h)
    return h


@register_kind("cnn", "retrograd")
def build_retrograd_cnn(case: Case, d: Data) -> Runner:
    import retrograd as rg
    X = rg.tensor(d.X)
    params = [rg.tensor(p.copy(), requires_grad=True) for p in d.params]
    out = {}

    def step():
        loss = rg.nn.functional.cross_entropy(_rg_cnn_forward(rg, params, X), d.y)
        loss.backward()
        for p in params:
            p.data -= LR * p.grad.data
            p.grad = None
        out["loss"] = loss

    return Runner(step, lambda: {"loss": float(out["loss"].data),
                                 "params": [np.array(p.data) for p in params]})


@register_kind("cnn", "retrograd.compile")
def build_retrograd_cnn_compiled(case: Case, d: Data, backend="numpy") -> Runner:
    import retrograd as rg

    class LeNet(rg.nn.Module):
        def __init__(self):
            self.ps = [rg.nn.Parameter(p.copy()) for p in d.params]

        def forward(self, x):
            return _rg_cnn_forward(rg, self.ps, x)

    model = LeNet()
    train_step = rg.graph.compile_step(model, rg.nn.CrossEntropyLoss(),
                                       rg.optim.SGD(model.parameters(), lr=LR), backend=backend)
    X = rg.tensor(d.X)
    out = {}

    def step():
        out["loss"], _ = train_step(X, d.y)

    return Runner(step, lambda: {"loss": float(out["loss"].data),
                                 "params": [np.array(p.data) for p in model.ps]})


@register_kind("cnn", "retrograd.numba")
def build_retrograd_cnn_numba(case: Case, d: Data) -> Runner:
    return build_retrograd_cnn_compiled(case, d, backend="numba")


@register_kind("cnn", "jax")
def build_jax_cnn(case: Case, d: Data) -> Runner:
    import jax
    import jax.numpy as jnp
    X, y = jnp.asarray(d.X), jnp.asarray(d.y)

    def loss_fn(params, X, y):
        h = X
        for i in range(2):
            h = jax.lax.conv_general_dilated(h, params[2 * i], (1, 1), "VALID",
                                             dimension_numbers=("NCHW", "OIHW", "NCHW"))
            h = jax.nn.relu(h + params[2 * i + 1][None, :, None, None])
            h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2),
                                      "VALID")
        h = h.reshape(h.shape[0], -1)
        for i in range(3):
            h = h @ params[4 + 2 * i] + params[5 + 2 * i]
            if i < 2:
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h, axis=1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    def train_step(params, X, y):
        loss, g = jax.value_and_grad(loss_fn)(params, X, y)
        return [p - LR * gi for p, gi in zip(params, g)], loss

    train_step_j = jax.jit(train_step, donate_argnums=0)
    st = {"params": [jnp.asarray(p) for p in d.params]}

    def step():
        st["params"], st["loss"] = train_step_j(st["params"], X, y)

    return Runner(step, lambda: {"loss": float(st["loss"]),
                                 "params": [np.asarray(p).copy() for p in st["params"]]},
                  sync=lambda: jax.block_until_ready(st["params"]))


# ----------------------------------------------------------------------------
# B6: a 1-layer LSTM classifier (case kind "lstm"), one builder per implementation
# ----------------------------------------------------------------------------
# params: [W_ih (I, 4H), W_hh (H, 4H), b_ih, b_hh (4H), W_out (H, C), b_out (C)], matrices
# (in, out) as retrograd stores them (torch gets them transposed); gates i, f, g, o.

LSTM_STEPS = 32
def make_lstm_data(case: Case, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    (I, H, C), T, N = case.sizes, LSTM_STEPS, case.batch
    X = rng.standard_normal((T, N, I), dtype=np.float32)  # time-major, as nn.LSTM's default
    y = rng.integers(0, C, N, dtype=np.int64)
    k = 1 / np.sqrt(H)  # PyTorch's LSTM init
    u = lambda *shape: rng.uniform(-k, k, shape).astype(np.float32)
    W_out = rng.standard_normal((H, C), dtype=np.float32) * np.float32(np.sqrt(1 / H))
    params = [u(I, 4 * H), u(H, 4 * H), u(4 * H), u(4 * H), W_out, np.zeros(C, np.float32)]
    return Data(X, y, params, [])


def _sigmoid_np(a, out):
    np.negative(a, out=out)
    np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


@register_kind("lstm", "numpy")
def build_numpy_lstm(case: Case, d: Data) -> Runner:
    """Forward and BPTT written out by hand, into preallocated buffers."""
    W_ih, W_hh, b_ih, b_hh, W_o, b_o = [p.copy() for p in d.params]
    X, y = d.X, d.y
    T, N, I = X.shape
    H = W_hh.shape[0]
    rows, X2 = np.arange(N), X.reshape(T * N, I)
    hs, cs = np.zeros((T + 1, N, H), np.float32), np.zeros((T + 1, N, H), np.float32)
    gates, dA = np.empty((T, N, 4 * H), np.float32), np.empty((T, N, 4 * H), np.float32)
    a, tc = np.empty((N, 4 * H), np.float32), np.empty((N, H), np.float32)
    out = {}

    def step():
        XW = (X2 @ W_ih).reshape(T, N, 4 * H)
        XW += b_ih + b_hh
        with np.errstate(over="ignore"):
            for t in range(T):
                np.add(np.matmul(hs[t], W_hh, out=a), XW[t], out=a)
                s = _sigmoid_np(a, gates[t])
                np.tanh(a[:, 2 * H:3 * H], out=s[:, 2 * H:3 * H])
                i, f, g, o = s[:, :H], s[:, H:2 * H], s[:, 2 * H:3 * H], s[:, 3 * H:]
                np.multiply(f, cs[t], out=cs[t + 1])
                cs[t + 1] += i * g
                np.multiply(o, np.tanh(cs[t + 1], out=tc), out=hs[t + 1])
        z = hs[T] @ W_o + b_o
        out["loss"] = softmax_ce_in_place(z, y, rows)
        gW_o, gb_o = hs[T].T @ z, z.sum(axis=0)
        dh, dc = z @ W_o.T, np.zeros((N, H), np.float32)
        for t in range(T - 1, -1, -1):
            s = gates[t]
            i, f, g, o = s[:, :H], s[:, H:2 * H], s[:, 2 * H:3 * H], s[:, 3 * H:]
            np.tanh(cs[t + 1], out=tc)
            dc += dh * o * (1 - tc * tc)
            da = dA[t]
            np.multiply(dc * g, i * (1 - i), out=da[:, :H])
            np.multiply(dc * cs[t], f * (1 - f), out=da[:, H:2 * H])
            np.multiply(dc * i, 1 - g * g, out=da[:, 2 * H:3 * H])
            np.multiply(dh * tc, o * (1 - o), out=da[:, 3 * H:])
            dc *= f
            dh = da @ W_hh.T
        dA2 = dA.reshape(T * N, 4 * H)
        gW_ih, gW_hh = X2.T @ dA2, hs[:T].reshape(T * N, H).T @ dA2
        gb = dA2.sum(axis=0)
        for p, gp in ((W_ih, gW_ih), (W_hh, gW_hh), (b_ih, gb), (b_hh, gb), (W_o, gW_o),
                      (b_o, gb_o)):
            p -= LR * gp

    def state():
        return {"loss": out["loss"], "params": [p.copy() for p in (W_ih, W_hh, b_ih, b_hh, W_o, b_o)]}

    return Runner(step, state)


@register_kind("lstm", "torch")
def build_torch_lstm(case: Case, d: Data) -> Runner:
    torch = _torch_setup()
    import torch.nn.functional as F
    (I, H, C) = case.sizes
    lstm = torch.nn.LSTM(I, H)
    with torch.no_grad():
        for name, p in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), d.params):
            getattr(lstm, name).copy_(torch.from_numpy(p.T.copy() if p.ndim == 2 else p))
    W_o, b_o = (torch.tensor(p, requires_grad=True) for p in d.params[4:])
    params = list(lstm.parameters()) + [W_o, b_o]
    X, y = torch.from_numpy(d.X), torch.from_numpy(d.y)
    out = {}

    def step():
        _, (h, _) = lstm(X)
        loss = F.cross_entropy(torch.addmm(b_o, h[0], W_o), y)
        _torch_sgd_step(torch, loss, params)
        out["loss"] = loss

    def state():
        ps = [p.detach().numpy() for p in params]
        return {"loss": out["loss"].item(),
                "params": [p.T.copy() if p.ndim == 2 and i < 2 else p.copy() for i, p in enumerate(ps)]}

    return Runner(step, state)


def _retrograd_lstm_model(case: Case, d: Data):
    import retrograd as rg
    (I, H, C) = case.sizes

    class LSTMClassifier(rg.nn.Module):
        def __init__(self):
            self.lstm = rg.nn.LSTM(I, H)
            self.lstm.load_state_dict(dict(zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
                                                "bias_hh_l0"), d.params)))
            self.head = rg.nn.Linear(H, C)
            self.head.load_state_dict({"weight": d.params[4], "bias": d.params[5]})

        def forward(self, x):
            _, (h, _) = self.lstm(x)
            return self.head(h[0])

    return rg, LSTMClassifier()


def _retrograd_lstm_state(model, out):
    return {"loss": float(out["loss"].data), "params": [np.array(p.data) for p in model.parameters()]}


@register_kind("lstm", "retrograd")
def build_retrograd_lstm(case: Case, d: Data) -> Runner:
    rg, model = _retrograd_lstm_model(case, d)
    X, params, out = rg.tensor(d.X), model.parameters(), {}

    def step():
        loss = rg.nn.functional.cross_entropy(model(X), d.y)
        loss.backward()
        for p in params:
            p.data -= LR * p.grad.data
            p.grad = None
        out["loss"] = loss

    return Runner(step, lambda: _retrograd_lstm_state(model, out))


@register_kind("lstm", "retrograd.compile")
def build_retrograd_compiled_lstm(case: Case, d: Data, backend="numpy") -> Runner:
    rg, model = _retrograd_lstm_model(case, d)
    opt = rg.optim.SGD(model.parameters(), lr=LR)
    train_step = rg.graph.compile_step(model, rg.nn.CrossEntropyLoss(), opt, backend=backend)
    X, out = rg.tensor(d.X), {}

    def step():
        out["loss"], _ = train_step(X, d.y)

    return Runner(step, lambda: _retrograd_lstm_state(model, out))


@register_kind("lstm", "retrograd.numba")
def build_numba_lstm(case: Case, d: Data) -> Runner:
    return build_retrograd_compiled_lstm(case, d, backend="numba")


@register_kind("lstm", "jax")
@register_kind("lstm", "torch.compile")
def build_unsupported_lstm(case: Case, d: Data) -> Runner:
    raise NotImplementedError("no LSTM implementation for this case")


# ----------------------------------------------------------------------------
# Measurement: one fresh worker process per (impl, case)
# ----------------------------------------------------------------------------
# Separate processes so that libraries never share one: their thread pools
# (OpenBLAS, torch's OpenMP, XLA) would compete for the cores, and a fresh
# process per cell gives a clean peak-RSS figure. The parent imports only numpy
# and sends commands over a pipe, so timing blocks can still be interleaved.

@dataclass
class Settings:
    warmup: int = 3
    time_per_impl: float = 2.0  # seconds of timed steps per (impl, case)
    repeats: int = 7  # the median of several short blocks shrugs off bursts of outside load
    gap: float = 0.1  # idle seconds between blocks, so spinning BLAS/OpenMP threads of the previous worker go quiet
    seed: int = 0
    torch_threads: int = os.cpu_count() or 1
    timeout: float = 600.0  # per worker reply (torch.compile can take a while)


QUICK = dict(warmup=1, time_per_impl=0.1, repeats=3, gap=0.02)


@dataclass
class Result:
    status: str = "ok"  # "ok" | "skipped" | "error"
    note: str = ""
    ms: float | None = None  # median ms/step
    ms_blocks: list = field(default_factory=list)
    steps_per_block: int = 0
    check: dict = field(default_factory=dict)
    peak_mb: float | None = None
    first_s: float | None = None  # the first step: build + trace + compile (JIT impls)


def time_block(r: Runner, n: int, max_s: float) -> float:
    """Mean seconds/step over n steps, or over fewer once max_s has passed, so
    that heavy outside load cannot stretch a run to many minutes."""
    gc.collect()  # gc stays enabled while timing: an autodiff lib's gc cost is real cost
    t0 = time.perf_counter()
    for i in range(n):
        r.step()
        if time.perf_counter() - t0 > max_s:
            n = i + 1
            break
    r.sync()
    return (time.perf_counter() - t0) / n


def steps_for(r: Runner, seconds: float) -> int:
    """Number of steps that takes about `seconds`, from the median of a few timed steps
    (the median, so that a burst of outside load does not leave us with tiny blocks)."""
    t_end, times = time.perf_counter() + min(0.2, seconds), []
    while len(times) < 3 or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        r.step()
        r.sync()
        times.append(time.perf_counter() - t0)
    return max(1, round(seconds / statistics.median(times)))


class PeakRSS:
    """Peak resident memory growth since construction, in MB."""

    def __init__(self):
        self.exact = self._reset_peak() and self._status_kb("VmHWM") is not None
        self.base = self._status_kb("VmRSS") if self.exact else self._maxrss_kb()

    def mb(self) -> float:
        peak = self._status_kb("VmHWM") if self.exact else self._maxrss_kb()
        return (peak - self.base) / 1024

    @staticmethod
    def _reset_peak() -> bool:
        try:  # Linux: writing 5 resets the process's peak-RSS high-water mark
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    @staticmethod
    def _status_kb(key: str):
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None

    @staticmethod
    def _maxrss_kb() -> int:  # fallback: growth of the lifetime peak (an underestimate)
        import resource
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r // 1024 if sys.platform == "darwin" else r  # bytes on macOS


def _package_info(impl: str) -> dict:
    info = {}
    for mod in IMPLS[impl].requires:
        # str(): unpickling torch's TorchVersion would import torch into the parent
        info[mod] = str(getattr(sys.modules[mod], "__version__", "?"))
        if mod == "torch":
            torch = sys.modules["torch"]
            info["torch_threads"] = torch.get_num_threads()
            info["torch_interop_threads"] = torch.get_num_interop_threads()
    return info


def _error_text(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0][:200] if msg else ''}"


def worker(conn, impl: str, case_name: str, s: Settings) -> None:
    """Child process: build one implementation for one case, then obey the parent."""
    global TORCH_THREADS
    TORCH_THREADS = s.torch_threads
    try:
        case = CASES[case_name]
        d = make_data(case, s.seed)
        for mod in IMPLS[impl].requires:
            importlib.import_module(mod)
        if "torch" in IMPLS[impl].requires:
            _torch_setup()
        info = _package_info(impl)
        gc.collect()
        mem = PeakRSS()  # baseline: after imports and data
        t0 = time.perf_counter()
        r = builder(impl, case)(case, d)
        r.step()
        r.sync()
        first = time.perf_counter() - t0
        conn.send(("ok", {"info": info, "state": r.state(), "first_s": first}))
        while True:
            cmd, arg = conn.recv()
            if cmd == "calibrate":
                for _ in range(s.warmup):
                    r.step()
                r.sync()
                conn.send(("ok", steps_for(r, arg)))
            elif cmd == "block":
                conn.send(("ok", time_block(r, arg, 4 * s.time_per_impl / s.repeats)))
            else:  # "finish"
                conn.send(("ok", mem.mb()))
                return
    except (ImportError, NotImplementedError) as e:
        conn.send(("skipped", _error_text(e)))
    except Exception as e:  # a broken impl must not stop the others
        conn.send(("error", _error_text(e)))


class Worker:
    def __init__(self, ctx, impl: str, case: Case, s: Settings):
        self.impl, self.timeout = impl, s.timeout
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, args=(child, impl, case.name, s), daemon=True)
        self.proc.start()
        child.close()

    def recv(self):
        """(status, payload); a dead or hung worker reads as an error."""
        try:
            if self.conn.poll(self.timeout):
                return self.conn.recv()
            return "error", f"no reply within {self.timeout:g} s"
        except (EOFError, OSError):
            return "error", f"worker died (exit code {self.proc.exitcode})"

    def ask(self, cmd, arg=None):
        try:
            self.conn.send((cmd, arg))
        except OSError:
            raise RuntimeError(f"worker died (exit code {self.proc.exitcode})") from None
        status, payload = self.recv()
        if status != "ok":
            raise RuntimeError(payload)
        return payload

    def close(self):
        self.proc.join(timeout=1)  # finished workers exit at once
        if self.proc.is_alive():
            self.proc.terminate()


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def compare(state, ref, init) -> dict:
    """Norm-wise relative errors of one step against the reference impl."""
    if "hvp" in ref:
        return {"hvp": max(_rel(a, b) for a, b in zip(state["hvp"], ref["hvp"]))}
    # Compare the updates (new - init), not the weights: the weights barely move
    # in one step, so comparing them would hide gradient errors.
    upd = max(_rel(p - p0, q - p0) for p, q, p0 in zip(state["params"], ref["params"], init))
    return {"loss": _rel(state["loss"], ref["loss"]), "update": upd}


def check(case: Case, states: dict, results: dict, seed: int) -> None:
    """One step from identical init must agree with torch (or the first impl that ran)."""
    if not states:
        return
    init = make_data(case, seed).params
    ref = "torch" if "torch" in states else next(iter(states))
    for name, st in states.items():
        if name == ref:
            continue
        try:
            errs = compare(st, states[ref], init)
        except Exception as e:  # e.g. a gradient of the wrong shape
            print(f"  WARNING: {case.name} {name} could not be compared with {ref}: {_error_text(e)}")
            continue
        results[name].check = {"ref": ref, **errs}
        msg = ", ".join(f"{k} {v:.1e}" for k, v in errs.items())
        if all(v <= CHECK_RTOL for v in errs.values()):  # False for NaN too
            print(f"  check {case.name} {name} vs {ref}: rel err {msg}  ok")
        else:
            print(f"  WARNING: {case.name} {name} disagrees with {ref}: rel err {msg} (tol {CHECK_RTOL:g})")


def run_case(case: Case, impls: list, s: Settings, packages: dict) -> dict:
    results = {name: Result() for name in impls}
    ctx = mp.get_context("spawn")
    workers = {name: Worker(ctx, name, case, s) for name in impls}  # start (import) concurrently
    states = {}
    try:
        for name, w in workers.items():
            status, payload = w.recv()
            if status == "ok":
                states[name] = payload["state"]
                results[name].first_s = payload["first_s"]
                packages.update(payload["info"])
            else:
                results[name].status, results[name].note = status, payload
                print(f"  {case.name} {name}: {status} ({payload})")
        live = [w for name, w in workers.items() if name in states]
        check(case, states, results, s.seed)

        # Warm up and calibrate one at a time, then interleave timing blocks
        # (rotating the order each repeat) so drift affects all impls alike.
        block_s = s.time_per_impl / s.repeats
        for w in list(live):
            try:
                results[w.impl].steps_per_block = w.ask("calibrate", block_s)
            except RuntimeError as e:
                results[w.impl].status, results[w.impl].note = "error", str(e)
                live.remove(w)
        for rep in range(s.repeats):
            k = rep % len(live) if live else 0
            for w in live[k:] + live[:k]:
                time.sleep(s.gap)
                res = results[w.impl]
                if res.status == "ok":
                    try:
                        res.ms_blocks.append(1e3 * w.ask("block", res.steps_per_block))
                    except RuntimeError as e:
                        res.status, res.note = "error", str(e)
        for w in live:
            res = results[w.impl]
            if res.status == "ok":
                res.ms = statistics.median(res.ms_blocks)
                try:
                    res.peak_mb = w.ask("finish")
                except RuntimeError as e:
                    res.note = f"memory: {e}"
    finally:
        for w in workers.values():
            w.close()
    return results


# ----------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------

def case_flops(case: Case) -> int:
    """Floating-point operations of one step's matrix products and convolutions (2 per
    multiply-add; elementwise work, a few percent here, is not counted). A training step
    runs each product forward, for its weight's gradient and, but for the first layer
    (whose input needs none), for its input's gradient; the HVP (forward-over-reverse)
    adds a tangent product per varying operand of each of those."""
    macs = []              # (multiply-adds per sample, is it the first layer)
    if case.kind == "lstm":
        (i, h, c), t = case.sizes, LSTM_STEPS
        # per step: the input projection (its input needs no gradient) and the recurrent
        # product h W_hh (forward, W_hh's gradient, h's); the head once, on the last state
        macs = [(t * i * 4 * h, True), (t * h * 4 * h, False), (h * c, False)]
        return 2 * case.batch * sum(m * (2 if first else 3) for m, first in macs)
    if case.kind == "cnn":
        side = 28
        for c_in, c_out, k in CNN_CONVS:
            side -= k - 1
            macs.append((c_out * side * side * c_in * k * k, not macs))
            side //= 2                                    # 2x2 max pooling
    for a, b in zip(case.sizes[:-1], case.sizes[1:]):
        macs.append((a * b, not macs))
    per = (4, 9) if case.kind == "hvp" else (2, 3)     # products per layer: first, others
    return 2 * case.batch * sum(m * per[0 if first else 1] for m, first in macs)


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of the best of ``repeats`` float32 (n, n) @ (n, n) products through NumPy's
    BLAS with its default threads: the machine's practical ceiling for these cases."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, a, out=out)  # warm up: BLAS threads started, pages touched
    best = min(_timed(lambda: np.matmul(a, a, out=out)) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def _gflops_table(all_results: dict, impls: list, peak: float | None) -> None:
    """Achieved GFLOP/s per case and implementation, and its share of the matmul peak."""
    header = ["case", "GFLOP/step"] + [f"{n} GFLOP/s" for n in impls]
    rows = []
    for cname, res in all_results.items():
        f = case_flops(CASES[cname])
        row = [cname, f"{f / 1e9:.3f}"]
        for n in impls:
            ms = res[n].ms
            g = f / ms / 1e6 if ms else None
            row.append("—" if g is None else f"{g:.1f}" + (f" ({g / peak:.0%})" if peak else ""))
        rows.append(row)
    where = f" (in brackets: of the {peak:.1f} GFLOP/s float32 matmul peak)" if peak else ""
    print(f"\nAchieved GFLOP/s: matrix-product FLOPs per step / median time{where}\n")
    print(_table(header, rows))


def machine_info() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        pass
    try:  # the model name says more than platform.processor() on Linux
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if hasattr(os, "getloadavg"):  # other load on the machine makes timings noisy
        info["loadavg_1min_at_start"] = round(os.getloadavg()[0], 2)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if var in os.environ:
            info[var] = os.environ[var]
    return info


def _table(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def report(all_results: dict, impls: list, peak: float | None = None) -> None:
    base = "torch" if "torch" in impls else None
    header = ["case"] + [f"{n} ms" for n in impls]
    if base:
        header += [f"{n}/torch" for n in impls if n != base]
    rows = []
    for cname, res in all_results.items():
        row = [f"{cname} ({CASES[cname].desc})"]
        row += [f"{res[n].ms:.3f}" if res[n].ms is not None else "—" for n in impls]
        if base:
            b = res[base].ms
            row += [f"{res[n].ms / b:.2f}x" if res[n].ms is not None and b else "—"
                    for n in impls if n != base]
        rows.append(row)
    print("\nTime per step (median of interleaved blocks, ms; lower is better)\n")
    print(_table(header, rows))
    _gflops_table(all_results, impls, peak)

    rows = [[cname] + [f"{res[n].first_s:.2f}" if res[n].first_s is not None else "—" for n in impls]
            for cname, res in all_results.items()]
    print("\nFirst step (s): building the model, tracing and compiling (a JIT's compile time; "
          "retrograd.numba: from an empty or a warm disk cache, whichever this run had)\n")
    print(_table(["case"] + impls, rows))

    rows = [[cname] + [f"{res[n].peak_mb:.1f}" if res[n].peak_mb is not None else "—" for n in impls]
            for cname, res in all_results.items()]
    print("\nPeak RSS growth (MB): fresh process per cell, from after imports + data"
          " to the end of its timing run\n")
    print(_table(["case"] + impls, rows))

    noisy = []
    for c, res in all_results.items():
        for n, r in res.items():
            if r.ms and (max(r.ms_blocks) - min(r.ms_blocks)) / r.ms > NOISY:
                noisy.append(f"{c} {n} ({min(r.ms_blocks):.3g}-{max(r.ms_blocks):.3g})")
    if noisy:
        print(f"\nNoisy (block times spread > {NOISY:.0%} of the median; other load on the machine?): "
              + ", ".join(noisy))

    notes = [f"- {c} {n}: {r.status}: {r.note}" if r.status != "ok" else f"- {c} {n}: {r.note}"
             for c, res in all_results.items() for n, r in res.items() if r.status != "ok" or r.note]
    if notes:
        print("\nNotes (— = not run)\n" + "\n".join(notes))


# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=",".join(CASES), help="comma list, default all")
    p.add_argument("--impls", default=None,
                   help=f"comma list of {', '.join(IMPLS)}; default all "
                        "(--quick leaves out torch.compile unless named)")
    p.add_argument("--quick", action="store_true", help="few steps, for smoke tests")
    p.add_argument("--json", metavar="PATH", help="write results as JSON")
    p.add_argument("--time", type=float, help="seconds of timed steps per impl per case (default 2)")
    p.add_argument("--repeats", type=int, help="timing blocks per impl per case (default 7)")
    p.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1,
                   help="torch.set_num_threads (default: all logical CPUs, as OpenBLAS uses)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    for c in a.cases.split(","):
        if c not in CASES:
            p.error(f"unknown case {c!r}; choose from {', '.join(CASES)}")
    for n in (a.impls.split(",") if a.impls else []):
        if n not in IMPLS:
            p.error(f"unknown impl {n!r}; choose from {', '.join(IMPLS)}")
    return a


def main(argv=None):
    a = parse_args(argv)
    s = Settings(seed=a.seed, torch_threads=a.torch_threads, **(QUICK if a.quick else {}))
    if a.time is not None:
        s.time_per_impl = a.time
    if a.repeats is not None:
        s.repeats = a.repeats
    cases = a.cases.split(",")
    impls = a.impls.split(",") if a.impls else [n for n, i in IMPLS.items() if i.quick or not a.quick]

    machine = machine_info()
    print("# retrograd benchmark\n")
    for k, v in machine.items():
        print(f"- {k}: {v}")
    print(f"- settings: float32, lr {LR}, warmup {s.warmup}, ~{s.time_per_impl:g} s/impl/case "
          f"in {s.repeats} interleaved blocks, torch threads {s.torch_threads}, seed {s.seed}\n")

    n_peak = 1024 if a.quick else 2048
    peak = matmul_peak(n_peak)            # measured again at the end: the better one counts
    print(f"- float32 matmul peak at start: {peak:.1f} GFLOP/s (best of 5 {n_peak}^3 products, "
          "NumPy's BLAS, default threads)\n")
    t0 = time.perf_counter()
    packages, all_results = {}, {}
    for c in cases:
        print(f"{c}: {CASES[c].desc}")
        all_results[c] = run_case(CASES[c], impls, s, packages)

    end_peak = matmul_peak(n_peak)
    print(f"\n- float32 matmul peak at end: {end_peak:.1f} GFLOP/s")
    peak = max(peak, end_peak)
    print("\n".join(f"- {k}: {v}" for k, v in packages.items()))
    report(all_results, impls, peak)
    load = f", load average now {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    print(f"\ntotal {time.perf_counter() - t0:.1f} s{load}")

    if a.json:
        out = {"machine": {**machine, **packages, "matmul_peak_gflops": peak},
               "flops_per_step": {c: case_flops(CASES[c]) for c in cases},
               "settings": vars(s), "lr": LR,
               "results": {c: {n: vars(r) for n, r in res.items()} for c, res in all_results.items()}}
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
