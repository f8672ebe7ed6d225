"""The namespace discipline (issue 14): every op case, first and second order, and a
training step, on arrays of another array library -- array_api_strict arrays on a
device of their own, which refuse to become NumPy arrays, to mix with arrays of another
device and every call outside the array API standard -- give NumPy's numbers. This is
what lets the same op records compute on CuPy on a GPU (bench/gpu_check.py)."""
import numpy as np
import pytest

import retrograd as rg

from cases import CASES

xp = pytest.importorskip("array_api_strict")
pytest.importorskip("array_api_compat")

DEVICE = xp.Device("device1")     # not the CPU: np.asarray of these arrays raises
ids = [c.name for c in CASES]


def on_device(a):
    return xp.asarray(a, device=DEVICE)


def host(t):
    """A tensor's data, checked to be a strict array on the device, as NumPy."""
    a = t._data
    assert type(a) is type(on_device(np.zeros(1))), f"not an array_api_strict array: {type(a)}"
    assert a.device == DEVICE, f"left the device: {a.device}"
    return np.asarray(xp.asarray(a, device=xp.Device()))


def both(case, seed):
    """The case's inputs as NumPy leaves and as strict leaves on the device."""
    xs = case.inputs(seed=seed)
    return ([rg.tensor(x, requires_grad=True) for x in xs],
            [rg.tensor(on_device(x), requires_grad=True) for x in xs])


def close(a, b, what):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=what)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_forward_and_gradient_in_the_inputs_namespace(case):
    ref, ours = both(case, seed=11)
    out_ref, out = case.fn(*ref), case.fn(*ours)
    close(host(out), out_ref.numpy(), f"{case.name}: forward")
    ct = np.random.default_rng(12).standard_normal(out_ref.shape)
    g_ref = rg.autograd_grad((out_ref * ct).sum(), ref, allow_unused=True)
    g = rg.autograd_grad((out * on_device(ct)).sum(), ours, allow_unused=True)
    for i, (a, b) in enumerate(zip(g, g_ref)):
        assert (a is None) == (b is None), f"{case.name}: input {i}"
        if a is not None:
            close(host(a), b.numpy(), f"{case.name}: gradient of input {i}")


@pytest.mark.parametrize("case", [c for c in CASES if c.second_order],
                         ids=[c.name for c in CASES if c.second_order])
def test_second_order_in_the_inputs_namespace(case):
    """A Hessian-vector product: the gradient graph itself computes on the device."""
    ref, ours = both(case, seed=13)
    rng = np.random.default_rng(14)
    out_ref = case.fn(*ref)
    ct = rng.standard_normal(out_ref.shape)
    vs = [rng.standard_normal(x.shape) for x in ref]

    def hvp(xs, lift):
        out = case.fn(*xs)
        g1 = rg.autograd_grad((out * lift(ct)).sum(), xs, create_graph=True, allow_unused=True)
        s = sum((g * lift(v)).sum() for g, v in zip(g1, vs) if g is not None)
        if not isinstance(s, rg.Tensor) or not s.requires_grad:
            return [None] * len(xs)
        return rg.autograd_grad(s, xs, allow_unused=True)

    for i, (a, b) in enumerate(zip(hvp(ours, on_device), hvp(ref, np.asarray))):
        assert (a is None) == (b is None), f"{case.name}: input {i}"
        if a is not None:
            close(host(a), b.numpy(), f"{case.name}: second order, input {i}")
