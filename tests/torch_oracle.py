"""PyTorch, the test oracle, for every test that compares with it.

torch is not a dependency of the test extra (unpinned wheels pull gigabytes of CUDA),
so ``torch`` here is None without it; the comparisons are marked ``@pytest.mark.torch``,
which tests/conftest.py skips then, and counts at the end of the run.
"""
import numpy as np

import retrograd as rg

try:
    import torch
except ImportError:
    torch = None


def leaves(xs):
    """The arrays ``xs`` as retrograd and as PyTorch leaf tensors that require grad."""
    return ([rg.tensor(x, requires_grad=True) for x in xs],
            [torch.tensor(x, requires_grad=True) for x in xs])


def assert_matches_torch(fn, torch_fn, xs, rng, *, rtol, atol=0.0, grad_rtol, grad_atol,
                         what=""):
    """``fn`` on retrograd tensors and ``torch_fn`` on PyTorch tensors of the arrays ``xs``
    agree in value (``rtol``, ``atol``), and so does the gradient of each input for a
    random cotangent drawn from ``rng`` (``grad_rtol``, ``grad_atol``)."""
    ours, theirs = leaves(xs)
    out, ref = fn(*ours), torch_fn(*theirs)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=rtol, atol=atol,
                               err_msg=what)
    ct = rng.standard_normal(out.shape)
    (out * ct).sum().backward()
    ref.backward(torch.tensor(ct))
    for i, (a, b) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=grad_rtol,
                                   atol=grad_atol, err_msg=f"{what}: gradient of input {i}")
