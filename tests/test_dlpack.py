"""DLPack: Tensor.__dlpack__ / __dlpack_device__ and rg.from_dlpack share memory with
NumPy, PyTorch and JAX (issue 15, item 3): a write through one is seen in the other."""
import numpy as np
import pytest

import retrograd as rg


def test_numpy_both_ways_share_memory():
    t = rg.tensor([1.0, 2.0, 3.0])
    a = np.from_dlpack(t)
    a[0] = 9.0
    assert t.tolist() == [9.0, 2.0, 3.0]
    b = np.arange(4.0)
    r = rg.from_dlpack(b)
    r.data[1] = -1.0                   # write through the tensor, see it in the array
    assert b[1] == -1.0 and r.dtype == np.float64 and not r.requires_grad
    assert t.__dlpack_device__() == (1, 0)        # kDLCPU, device 0


def test_torch_both_ways_share_memory():
    torch = pytest.importorskip("torch")
    t = rg.tensor([[1.0, 2.0], [3.0, 4.0]])
    tt = torch.from_dlpack(t)
    tt[1, 1] = 40.0
    assert t.data[1, 1] == 40.0 and tt.dtype == torch.float32
    tt2 = torch.utils.dlpack.from_dlpack(t)
    t.data[0, 0] = -5.0
    assert tt2[0, 0].item() == -5.0
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    r = rg.from_dlpack(x)
    x[0, 2] = 100.0
    assert r.data[0, 2] == 100.0 and r.shape == (2, 3)
    r.data[1, 0] = 7.0
    assert x[1, 0].item() == 7.0
    # a non-contiguous view travels with its strides, still shared
    v = rg.from_dlpack(x.t())
    np.testing.assert_array_equal(v.data, x.t().numpy())
    assert np.shares_memory(v.data, r.data)


def test_torch_tensor_ops_run_on_shared_data():
    torch = pytest.importorskip("torch")
    x = torch.randn(3, 4)
    y = (rg.from_dlpack(x) * 2).sum()
    assert abs(y.item() - (x * 2).sum().item()) < 1e-5


def test_jax_cpu_arrays_share_memory():
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    j = jnp.arange(6.0, dtype=jnp.float32).reshape(2, 3)
    r = rg.from_dlpack(j)
    np.testing.assert_array_equal(r.data, np.asarray(j))
    # zero-copy: the tensor's buffer is the JAX buffer (JAX arrays are immutable, so
    # compare addresses rather than write)
    assert r.data.ctypes.data == j.unsafe_buffer_pointer()
    t = rg.tensor(np.arange(16, dtype=np.float32))
    jt = jnp.from_dlpack(t)
    t.data[3] = 42.0                  # JAX copies only when the buffer is misaligned
    if jt.unsafe_buffer_pointer() == t.data.ctypes.data:
        assert float(jt[3]) == 42.0
    np.testing.assert_array_equal(np.asarray(jt)[:3], [0.0, 1.0, 2.0])


def test_a_tensor_that_requires_grad_is_refused_as_torch_does():
    p = rg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(rg.RetrogradError, match="requires grad.*detach"):
        np.from_dlpack(p)
    d = np.from_dlpack(p.detach())
    d[0] = 3.0
    assert p.data[0] == 3.0
    torch = pytest.importorskip("torch")
    with pytest.raises(rg.RetrogradError, match="require gradient"):
        rg.from_dlpack(torch.ones(2, requires_grad=True))


def test_from_dlpack_of_a_non_array_is_a_clear_error():
    with pytest.raises(rg.RetrogradError, match="from_dlpack: cannot share the memory of a list"):
        rg.from_dlpack([1, 2])
