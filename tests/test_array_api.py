"""The namespace discipline (issue 14): every op case, first and second order, on arrays of
another array library -- array_api_strict arrays on a device of their own, which refuse to
become NumPy arrays, to mix with arrays of another device and every call outside the array
API standard -- gives NumPy's numbers (rg.check.namespace_check). This is what lets the same
op records compute on CuPy on a GPU (bench/gpu_check.py runs the same check there)."""
import numpy as np
import pytest

import retrograd as rg
from retrograd.check import namespace_check
from retrograd.ops.base import Op

from cases import CASES

xp = pytest.importorskip("array_api_strict")
pytest.importorskip("array_api_compat")

DEVICE = xp.Device("device1")     # not the CPU: np.asarray of these arrays raises


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_op_case_in_the_inputs_namespace(case):
    namespace_check(case.fn, *case.inputs(seed=11), xp=xp, device=DEVICE,
                    second_order=case.second_order)


def test_a_device_array_never_becomes_a_numpy_array():
    """The harness's premise: these arrays refuse NumPy, so an op that calls NumPy fails."""
    a = xp.asarray(np.ones(3), device=DEVICE)
    with pytest.raises((RuntimeError, TypeError)):
        np.asarray(a)


# the leaked NumPy result meets the strict input's dtype in autodiff's checks, on purpose
@pytest.mark.filterwarnings("ignore:You are comparing a array_api_strict dtype")
def test_namespace_check_sees_a_result_that_left_the_namespace():
    # an op whose forward computes on the host and hands back a NumPy array
    leak = Op("leak", lambda x: rg.arrays.to_numpy(x) * 2.0, (lambda g, out, x: g * 2.0,))
    with pytest.raises(rg.GradcheckError, match="the output is a ndarray, not an array of"):
        namespace_check(leak, np.ones(3), xp=xp, device=DEVICE, second_order=False)


def test_mixing_two_libraries_in_one_op_is_refused_by_name():
    a = rg.tensor(xp.asarray(np.ones(3), device=DEVICE))
    b = rg.tensor(np.ones(3))
    assert type((a + b)._data) is type(a._data)     # a NumPy constant joins the device
    torch = pytest.importorskip("torch")
    with pytest.raises(rg.RetrogradError, match="two libraries"):
        a + rg.tensor(torch.ones(3))


def test_tensor_keeps_a_foreign_array_and_shows_its_namespace():
    t = rg.tensor(xp.asarray(np.arange(3.0), device=DEVICE), requires_grad=True)
    assert t.shape == (3,) and t.requires_grad
    assert "namespace=array_api_strict" in repr(t)
    np.testing.assert_array_equal(t.numpy(), [0.0, 1.0, 2.0])
    assert t.tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(rg.RetrogradError, match="floating-point"):
        rg.tensor(xp.asarray(np.arange(3), device=DEVICE), requires_grad=True)


def test_torch_tensors_are_a_namespace_too():
    """array-api-compat's torch namespace: the same ops, an implicit scalar backward."""
    torch = pytest.importorskip("torch")
    x = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
    t = rg.tensor(torch.tensor(x), requires_grad=True)
    (rg.tanh(t) * t).sum().backward()
    assert isinstance(t.grad._data, torch.Tensor)
    ref = rg.tensor(x, requires_grad=True)
    (rg.tanh(ref) * ref).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), ref.grad.numpy(), rtol=1e-12)


def test_module_to_takes_a_namespace_or_its_name_and_refuses_others():
    m = rg.nn.Linear(3, 2)
    m.to("array_api_strict")
    assert type(m.weight._data).__module__.startswith("array_api_strict")
    m.to(np)
    assert type(m.weight._data) is np.ndarray
    with pytest.raises(rg.RetrogradError, match="cannot import array namespace 'no_such_xp'"):
        m.to("no_such_xp")
    with pytest.raises(TypeError, match="Linear.to: expected an array namespace module"):
        m.to(3)
