"""Issue 12, item 5 (elementwise part): what the op-case table cannot show, since its inputs
keep off kinks -- the values and gradients, to second order, at the kinks themselves and in
the far tails, against PyTorch; and the errors a user can cause."""
import numpy as np
import pytest

import retrograd as rg

from torch_oracle import torch

# every kink of every op below, both sides of it, and far tails
X = np.array([-1e3, -40.0, -6.0, -3.0, -2.9, -1.0, -0.5, -1e-9, 0.0, 1e-9, 0.5, 0.8, 1.0, 3.0,
              6.0, 6.5, 40.0, 1e3])


def _cases():
    F = torch.nn.functional if torch else None
    return {
        "hardswish": (rg.hardswish, lambda t: F.hardswish(t)),
        "hardsigmoid": (rg.hardsigmoid, lambda t: F.hardsigmoid(t)),
        "hardtanh": (lambda x: rg.hardtanh(x, -0.5, 0.8), lambda t: F.hardtanh(t, -0.5, 0.8)),
        "hardtanh_default": (rg.hardtanh, lambda t: F.hardtanh(t)),
        "relu6": (rg.relu6, lambda t: F.relu6(t)),
        "elu": (rg.elu, lambda t: F.elu(t)),
        "elu_alpha": (lambda x: rg.elu(x, 0.3), lambda t: F.elu(t, 0.3)),
        "selu": (rg.selu, lambda t: F.selu(t)),
        "celu": (lambda x: rg.celu(x, 2.0), lambda t: F.celu(t, 2.0)),
        "softsign": (rg.softsign, lambda t: F.softsign(t)),
        "logsigmoid": (rg.logsigmoid, lambda t: F.logsigmoid(t)),
        "silu": (rg.silu, lambda t: F.silu(t)),
        "mish": (rg.mish, lambda t: F.mish(t)),
        "gelu": (rg.gelu, lambda t: F.gelu(t)),
        "gelu_tanh": (lambda x: rg.gelu(x, approximate="tanh"),
                      lambda t: F.gelu(t, approximate="tanh")),
        "copysign": (lambda x: rg.copysign(x, -1.5), lambda t: torch.copysign(t, torch.tensor(-1.5))),
        "logaddexp": (lambda x: rg.logaddexp(x, 0.5), lambda t: torch.logaddexp(t, torch.tensor(0.5))),
    }


NAMES = sorted(_cases()) if torch else []
# the tanh form's second derivative at +-6 is ~1e-8, from 1 - tanh^2 (cancelling: 1e-6
# relative, in both libraries); logaddexp's and logsigmoid's at +-40 are 4e-18, the rounding
# error of 1 - s where s rounds to 1 (in both libraries, each at one of the two ends)
RTOL = {"gelu_tanh": 1e-5, "mish": 1e-10}   # mish: 4e-12 at 40 and 1000
ATOL = {"logaddexp": 1e-16, "logsigmoid": 1e-16}


def _torch_grads(fn, x):
    t = torch.tensor(x, requires_grad=True)
    y = fn(t)
    (g,) = torch.autograd.grad(y.sum(), t, create_graph=True)
    try:
        gg = torch.autograd.grad(g.sum(), t, allow_unused=True)[0] if g.requires_grad else None
    except RuntimeError:        # hardsigmoid has no double backward in PyTorch: 0 off its kinks
        gg = None
    return y.detach().numpy(), g.detach().numpy(), None if gg is None else gg.numpy()


@pytest.mark.torch
@pytest.mark.parametrize("name", NAMES)
def test_values_and_gradients_at_the_kinks_and_tails_match_pytorch(name):
    ours, theirs = _cases()[name]
    want, want_g, want_gg = _torch_grads(theirs, X)
    if name == "hardsigmoid":
        want_g = np.where(np.abs(X) < 3, 1 / 6, 0.0)   # PyTorch's is float32's 1/6 in float64
    x = rg.tensor(X, requires_grad=True)
    y = ours(x)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-13, atol=1e-300, err_msg=name)
    (g,) = rg.autograd_grad(y.sum(), [x], create_graph=True)
    np.testing.assert_allclose(g.numpy(), want_g, rtol=RTOL.get(name, 1e-12), atol=1e-300,
                               err_msg=name)
    gg = rg.autograd_grad(g.sum(), [x], allow_unused=True)[0] if g.requires_grad else None
    gg = np.zeros_like(X) if gg is None else gg.numpy()
    want_gg = np.zeros_like(X) if want_gg is None else want_gg
    # PyTorch's own nans (copysign's at 0, of a piecewise-constant derivative; overflows in
    # the double backward of gelu's tanh form, mish and logaddexp at +-1000, where the true
    # value is ~0): ours are 0 there
    assert np.all(np.abs(gg[np.isnan(want_gg)]) < 1e-12), name
    want_gg = np.where(np.isnan(want_gg), gg, want_gg)
    np.testing.assert_allclose(gg, want_gg, rtol=RTOL.get(name, 1e-12), atol=ATOL.get(name, 1e-300),
                               err_msg=name)


@pytest.mark.parametrize("f", [rg.gelu, rg.silu, rg.mish, rg.logsigmoid, rg.softsign, rg.elu,
                               rg.selu, rg.celu, rg.hardswish, rg.hardsigmoid, rg.hardtanh,
                               rg.relu6, rg.tan, rg.sinh, rg.arctan, rg.expm1, rg.exp2,
                               rg.reciprocal])
def test_float32_in_float32_out_forward_and_gradient(f):
    x = rg.tensor(np.linspace(-4, 4, 9, dtype=np.float32) + 0.25, requires_grad=True)
    y = f(x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_logsigmoid_and_logaddexp_stay_finite_in_the_tails():
    x = rg.tensor(np.array([-1e4, -800.0, 800.0, 1e4]), requires_grad=True)
    y = rg.logsigmoid(x)
    np.testing.assert_allclose(y.numpy(), [-1e4, -800.0, 0.0, 0.0])
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 1.0, 0.0, 0.0])
    a = rg.tensor(np.array([1000.0, -1000.0]), requires_grad=True)
    rg.logaddexp(a, 999.0).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [1 / (1 + np.exp(-1)), 0.0])


def test_pytorch_and_numpy_names_are_one_op():
    assert rg.asin is rg.arcsin and rg.acos is rg.arccos and rg.atan is rg.arctan
    assert rg.asinh is rg.arcsinh and rg.acosh is rg.arccosh and rg.atanh is rg.arctanh
    assert rg.atan2 is rg.arctan2 and rg.ops.arctan2 is rg.arctan2
    for name in ("gelu", "silu", "elu", "selu", "celu", "softsign", "mish", "hardswish",
                 "hardsigmoid", "hardtanh", "relu6", "logsigmoid", "log1p", "rsqrt", "hypot",
                 "copysign", "logaddexp", "ceil", "trunc", "isnan", "isinf"):
        assert getattr(rg, name) is getattr(rg.ops, name), name


def test_the_errors_name_the_op_and_the_value():
    x = rg.tensor([1.0])
    with pytest.raises(rg.RetrogradError, match="gelu: approximate must be 'none' or 'tanh', got 'erf'"):
        rg.gelu(x, approximate="erf")
    with pytest.raises(rg.RetrogradError, match="celu: alpha must not be 0"):
        rg.celu(x, 0.0)
    with pytest.raises(rg.RetrogradError, match=r"hardtanh: min_val \(2\) must be <= max_val \(1\)"):
        rg.hardtanh(x, 2, 1)


def test_non_differentiable_ones_carry_no_gradient():
    x = rg.tensor(np.array([-1.5, -0.5, 0.5, 1.5, np.inf, np.nan]), requires_grad=True)
    for f, ref in ((rg.ceil, np.ceil), (rg.trunc, np.trunc), (rg.isnan, np.isnan),
                   (rg.isinf, np.isinf)):
        with np.errstate(invalid="ignore"):
            y = f(x)
        assert not y.requires_grad
        np.testing.assert_array_equal(y.numpy(), ref(x.numpy()))


def test_the_new_ops_compile_to_first_and_second_order():
    X2 = np.linspace(-2.5, 2.5, 11) + 0.013
    def f(x):
        return (rg.gelu(x) + rg.hardswish(x * 2) + rg.logsigmoid(x) * rg.arctan(x)
                + rg.elu(x, 0.5) + rg.hypot(x, 1.5) + rg.reciprocal(x * x + 1)).sum()
    g2 = rg.grad(lambda x: rg.grad(f)(x).sum())
    np.testing.assert_allclose(rg.compile(rg.grad(f))(X2).numpy(), rg.grad(f)(X2).numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(rg.compile(g2)(X2).numpy(), g2(X2).numpy(), rtol=1e-12)


def test_integer_inputs_give_floats_as_pytorch():
    np.testing.assert_allclose(rg.reciprocal(rg.tensor(np.array([2, 4]))).numpy(), [0.5, 0.25])
    np.testing.assert_allclose(rg.rsqrt(rg.tensor(np.array([4]))).numpy(), [0.5])


def test_the_unary_math_are_tensor_methods_as_in_pytorch():
    x = rg.tensor(np.array([0.3, 0.6]), requires_grad=True)
    for name in ("tan", "sinh", "cosh", "asin", "arcsin", "acos", "atan", "asinh", "atanh",
                 "log1p", "expm1", "log2", "log10", "exp2", "reciprocal", "rsqrt", "ceil",
                 "trunc", "isnan", "isinf"):
        np.testing.assert_array_equal(getattr(x, name)().numpy(), getattr(rg, name)(x).numpy())
    assert (x + 1).acosh()._op is rg.arccosh and x.tan()._op is rg.tan
    assert rg.Tensor.tan.__doc__ == rg.tan.__doc__
