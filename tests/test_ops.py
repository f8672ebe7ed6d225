"""Every op: first and second derivatives against finite differences (float64),
float32 preserved, forward and gradient against PyTorch, and a check that no
registered op is left untested."""
import inspect

import numpy as np
import pytest

import retrograd as rg
from retrograd.ops import REGISTRY

from cases import CASES, NONDIFF, ops_in_graph
from torch_oracle import assert_matches_torch, leaves, torch

ids = [c.name for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_first_derivatives_match_finite_differences(case):
    assert rg.gradcheck(case.fn, *case.inputs(seed=1), **case.tol)


@pytest.mark.parametrize("case", [c for c in CASES if c.second_order],
                         ids=[c.name for c in CASES if c.second_order])
def test_second_derivatives_match_finite_differences(case):
    assert rg.gradgradcheck(case.fn, *case.inputs(seed=2), **case.tol)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_float32_stays_float32(case):
    xs = [rg.tensor(x, requires_grad=True) for x in case.inputs(seed=3, dtype=np.float32)]
    out = case.fn(*xs)
    assert out.dtype == np.float32, f"{case.name} forward gave {out.dtype}"
    (out * 1.5).sum().backward()
    for i, x in enumerate(xs):
        assert x.grad is not None, f"{case.name}: no gradient for input {i}"
        assert x.grad.dtype == np.float32, f"{case.name}: gradient {i} is {x.grad.dtype}"
        assert x.grad.shape == x.shape


@pytest.mark.torch
@pytest.mark.parametrize("case", [c for c in CASES if c.torch_fn], ids=[c.name for c in CASES if c.torch_fn])
def test_against_pytorch(case):
    assert_matches_torch(case.fn, case.torch_fn, case.inputs(seed=4), np.random.default_rng(5),
                         rtol=1e-10, atol=1e-12, grad_rtol=1e-9, grad_atol=1e-12, what=case.name)


@pytest.mark.torch
@pytest.mark.parametrize("case", [c for c in CASES if c.torch_fn and c.second_order],
                         ids=[c.name for c in CASES if c.torch_fn and c.second_order])
def test_second_order_against_pytorch(case):
    """d/dx of <grad f(x), v>, i.e. a Hessian-vector product, equals PyTorch's double backward."""
    xs = case.inputs(seed=6)
    rng = np.random.default_rng(7)
    ours, theirs = leaves(xs)
    out, ref = case.fn(*ours), case.torch_fn(*theirs)
    ct = rng.standard_normal(out.shape)
    g1 = rg.autograd_grad((out * ct).sum(), ours, create_graph=True)
    t1 = torch.autograd.grad((ref * torch.tensor(ct)).sum(), theirs, create_graph=True)
    vs = [rng.standard_normal(x.shape) for x in xs]
    s = sum((g * v).sum() for g, v in zip(g1, vs))
    ts = sum((g * torch.tensor(v)).sum() for g, v in zip(t1, vs))
    # an op whose derivative is piecewise constant (relu, abs) has no second-order graph
    g2 = rg.autograd_grad(s, ours, allow_unused=True) if s.requires_grad else [None] * len(xs)
    t2 = torch.autograd.grad(ts, theirs, allow_unused=True) if ts.requires_grad else [None] * len(xs)
    for i, (a, b) in enumerate(zip(g2, t2)):
        a = np.zeros(xs[i].shape) if a is None else a.numpy()
        b = np.zeros(xs[i].shape) if b is None else b.numpy(force=True)
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10, err_msg=f"{case.name}: input {i}")


@pytest.mark.parametrize("name", sorted(NONDIFF))
def test_nondifferentiable_ops_forward(name):
    ours, ref = NONDIFF[name]
    nargs = len(inspect.signature(ours).parameters) if not isinstance(ours, np.ufunc) else 1
    rng = np.random.default_rng(8)
    xs = [rng.standard_normal((3, 4)) * 3 for _ in range(nargs)]
    xs[-1][0, 0] = xs[0][0, 0]           # one tie for the comparisons
    out = ours(*[rg.tensor(x, requires_grad=True) for x in xs])
    np.testing.assert_array_equal(out.numpy(), ref(*xs))
    assert not out.requires_grad


def test_every_registered_op_is_tested():
    """Collect the ops that appear in the graphs of every case and of their gradients
    (the VJPs use ops too); together with the forward-only ops they must cover REGISTRY."""
    seen = set()
    for case in CASES:
        xs = [rg.tensor(x, requires_grad=True) for x in case.inputs()]
        out = case.fn(*xs)
        ops_in_graph(out, seen)
        gs = rg.autograd_grad(out.sum(), xs, create_graph=True, allow_unused=True)
        for g in gs:
            if g is not None:
                ops_in_graph(g, seen)
    covered = seen | set(NONDIFF)
    missing = sorted(set(REGISTRY) - covered)
    assert not missing, f"registered ops with no test case: {missing}"
