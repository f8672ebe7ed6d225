"""Issue 12, item 1: convolution and pooling, what the op-case table (tests/cases_conv.py)
cannot show -- adjoint identities, ties and NaN in max pooling, the layers against
PyTorch's with copied weights, their init, the errors, and compiled LeNet steps."""
import numpy as np
import pytest

import retrograd as rg
from retrograd.nn import functional as F

from torch_oracle import torch

RNG = np.random.default_rng(12)


def _t(shape, dtype=np.float64):
    return rg.tensor(RNG.standard_normal(shape).astype(dtype), requires_grad=True)


# ---------------------------------------------------------------- adjoints, higher order

def test_unfold_and_fold_are_adjoint():
    x, c = RNG.standard_normal((2, 3, 7, 6)), RNG.standard_normal((2, 3 * 6, 4 * 6))
    geo = dict(kernel_size=(2, 3), dilation=(2, 1), padding=1, stride=(2, 1))
    lhs = (F.unfold(rg.tensor(x), **geo).numpy() * c).sum()
    rhs = (x * F.fold(rg.tensor(c), (7, 6), **geo).numpy()).sum()
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


def test_the_input_gradient_of_conv2d_is_a_transposed_convolution():
    x, w = _t((2, 4, 7, 8)), _t((6, 2, 3, 3))
    y = F.conv2d(x, w, stride=2, padding=1, groups=2)
    g = RNG.standard_normal(y.shape)
    (gx,) = rg.autograd_grad((y * g).sum(), [x])
    want = F.conv_transpose2d(rg.tensor(g), w.detach(), stride=2, padding=1, groups=2,
                              output_padding=(0, 1))
    np.testing.assert_allclose(gx.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)


def test_a_cnn_loss_differentiates_twice():
    w1, w2 = _t((3, 1, 3, 3)), _t((10, 27))
    x = rg.tensor(RNG.standard_normal((2, 1, 6, 6)))

    def loss(w1, w2):
        h = F.max_pool2d(rg.tanh(F.conv2d(x, w1, padding=1)), 2)
        h = F.avg_pool2d(h, 3, stride=1, padding=1).reshape(2, -1)
        return F.cross_entropy(h @ w2.T, np.array([1, 7]))

    assert rg.gradcheck(loss, w1.numpy(), w2.numpy())
    assert rg.gradgradcheck(loss, w1.numpy(), w2.numpy(), atol=1e-5)


# ---------------------------------------------------------------- max pooling: ties, NaN, indices

def test_max_pool_gives_a_tied_window_s_gradient_to_its_first_maximum():
    x = rg.tensor(np.array([[[[1.0, 1.0, 0.0, 2.0], [1.0, 0.0, 2.0, 2.0]]]]), requires_grad=True)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(idx.numpy(), [[[[0, 3]]]])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[[[1, 0, 0, 1], [0, 0, 0, 0]]]])


def test_overlapping_windows_add_their_gradients():
    x = rg.tensor(np.arange(25.0).reshape(1, 1, 5, 5), requires_grad=True)
    F.max_pool2d(x, 3, stride=1).sum().backward()
    want = np.zeros((5, 5))
    want[2:, 2:] = 1                        # each window's max is its bottom-right corner
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], want)


@pytest.mark.torch
@pytest.mark.parametrize("geo", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                 dict(kernel_size=(2, 3), stride=1, dilation=(1, 2)),
                                 dict(kernel_size=3, stride=2, ceil_mode=True)])
def test_max_pool_ties_nan_and_indices_match_pytorch(geo):
    x = np.round(RNG.standard_normal((2, 3, 7, 8)))        # many ties
    x[0, 0, 1, 1] = x[1, 2, 4, 5] = np.nan
    ours = rg.tensor(x, requires_grad=True)
    theirs = torch.tensor(x, requires_grad=True)
    y, idx = F.max_pool2d(ours, return_indices=True, **geo)
    ty, tidx = torch.nn.functional.max_pool2d(theirs, return_indices=True, **geo)
    np.testing.assert_array_equal(idx.numpy(), tidx.numpy())
    np.testing.assert_array_equal(y.numpy(), ty.detach().numpy())
    g = RNG.standard_normal(y.shape)
    (y * g).sum().backward()
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("batch_last", [True, False])
def test_max_pool_of_tiling_windows_matches_pytorch_with_ties_and_infinite_gradients(batch_last):
    """2x2 windows tiling an 8x6 image (each entry in one window: the scatter's one-write
    path), in conv2d's batch-last layout and in C order; ties keep the first maximum, and
    an infinite gradient goes to the maximum alone (0, not inf * 0, elsewhere)."""
    x = np.round(RNG.standard_normal((3, 4, 8, 6)))
    if batch_last:
        x = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    ours, theirs = rg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ty = F.max_pool2d(ours, 2), torch.nn.functional.max_pool2d(theirs, 2)
    np.testing.assert_array_equal(y.numpy(), ty.detach().numpy())
    for g in (RNG.standard_normal(y.shape), np.where(RNG.random(y.shape) < 0.1, np.inf, 1.0)):
        ours.grad, theirs.grad = None, None
        with np.errstate(invalid="ignore"):           # the loss's 0 * inf (not the gradient's)
            (y * g).sum().backward(retain_graph=True)
        ty.backward(torch.tensor(g), retain_graph=True)
        np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())


# ---------------------------------------------------------------- layers against PyTorch

def _layer_pairs():
    nn, tn = rg.nn, torch.nn
    return {
        "Conv2d": (nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2),
                   tn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2),
                   (2, 4, 9, 8)),
        "Conv2d_same_nobias": (nn.Conv2d(4, 3, 3, padding="same", bias=False),
                               tn.Conv2d(4, 3, 3, padding="same", bias=False), (2, 4, 5, 6)),
        "Conv1d": (nn.Conv1d(3, 4, 3, stride=2, padding=1), tn.Conv1d(3, 4, 3, stride=2, padding=1),
                   (2, 3, 10)),
        "ConvTranspose2d": (nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1,
                                               groups=2),
                            tn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1,
                                               groups=2), (2, 4, 4, 5)),
        "MaxPool2d": (nn.MaxPool2d(3, 2, 1), tn.MaxPool2d(3, 2, 1), (2, 3, 8, 7)),
        "AvgPool2d": (nn.AvgPool2d(2), tn.AvgPool2d(2), (2, 3, 8, 7)),
        "AdaptiveAvgPool2d": (nn.AdaptiveAvgPool2d((3, 5)), tn.AdaptiveAvgPool2d((3, 5)),
                              (2, 3, 8, 7)),
        "Flatten": (nn.Flatten(), tn.Flatten(), (2, 3, 4, 5)),
        "Flatten_1_2": (nn.Flatten(1, 2), tn.Flatten(1, 2), (2, 3, 4, 5)),
        "Upsample": (nn.Upsample(scale_factor=2, mode="bilinear"),
                     tn.Upsample(scale_factor=2, mode="bilinear"), (2, 3, 4, 5)),
    }


LAYERS = ["Conv2d", "Conv2d_same_nobias", "Conv1d", "ConvTranspose2d", "MaxPool2d",
          "AvgPool2d", "AdaptiveAvgPool2d", "Flatten", "Flatten_1_2", "Upsample"]


@pytest.mark.torch
@pytest.mark.parametrize("name", LAYERS)
def test_layers_with_copied_weights_equal_pytorch_s(name):
    ours, theirs, shape = _layer_pairs()[name]
    theirs = theirs.double()
    sd = theirs.state_dict()
    assert [n for n, _ in ours.named_parameters()] == list(sd)
    for n, p in ours.named_parameters():
        assert p.shape == tuple(sd[n].shape), n
        p.data = sd[n].numpy().copy()
    x = RNG.standard_normal(shape)
    a, b = rg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ty = ours(a), theirs(b)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = RNG.standard_normal(y.shape)
    (y * g).sum().backward()
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-10, atol=1e-12)
    for n, p in ours.named_parameters():
        tp = dict(theirs.named_parameters())[n]
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layer, fan_in", [(lambda: rg.nn.Conv2d(6, 16, 5), 6 * 25),
                                           (lambda: rg.nn.Conv2d(4, 8, (3, 2), groups=2), 2 * 6),
                                           (lambda: rg.nn.Conv1d(3, 5, 4), 12),
                                           (lambda: rg.nn.ConvTranspose2d(4, 6, 3, groups=2), 27)])
def test_init_is_pytorch_s_kaiming_uniform(layer, fan_in):
    rg.manual_seed(0)
    m = layer()
    bound = 1 / np.sqrt(fan_in)
    for p in (m.weight, m.bias):
        assert p.dtype == np.float32
        assert np.abs(p.numpy()).max() <= bound
        assert np.abs(p.numpy()).max() > 0.8 * bound      # spread over the whole range
    assert m.bias.shape == (m.out_channels,)


@pytest.mark.torch
def test_parameter_shapes_are_pytorch_s():
    for ours, theirs in [(rg.nn.Conv2d(4, 6, (3, 2), groups=2),
                          torch.nn.Conv2d(4, 6, (3, 2), groups=2)),
                         (rg.nn.ConvTranspose2d(4, 6, 3, groups=2),
                          torch.nn.ConvTranspose2d(4, 6, 3, groups=2)),
                         (rg.nn.Conv1d(3, 5, 4), torch.nn.Conv1d(3, 5, 4))]:
        assert {n: p.shape for n, p in ours.named_parameters()} == \
            {n: tuple(p.shape) for n, p in theirs.named_parameters()}


# ---------------------------------------------------------------- errors

def test_layers_name_themselves_and_the_shapes_they_refuse():
    conv = rg.nn.Conv2d(3, 6, 5)
    with pytest.raises(rg.ShapeError, match=r"Conv2d\(3, 6\): input must be 4-d \(N, C, H, W\), "
                                            r"got shape \(3, 28, 28\)"):
        conv(rg.zeros(3, 28, 28))
    with pytest.raises(rg.ShapeError, match=r"Conv2d\(3, 6\): input has 1 channels .* expected 3"):
        conv(rg.zeros(2, 1, 28, 28))
    with pytest.raises(rg.ShapeError, match=r"MaxPool2d: input must be 4-d"):
        rg.nn.MaxPool2d(2)(rg.zeros(4, 4))
    with pytest.raises(rg.ShapeError, match=r"Conv1d\(2, 2\): input must be 3-d"):
        rg.nn.Conv1d(2, 2, 3)(rg.zeros(1, 2, 3, 3))


def test_functional_errors_name_the_op_and_shapes():
    x = rg.zeros(1, 4, 5, 5)
    with pytest.raises(rg.ShapeError, match=r"conv2d: input of shape \(1, 4, 5, 5\) and weight "
                                            r"of shape \(6, 3, 3, 3\) with groups=1"):
        F.conv2d(x, rg.zeros(6, 3, 3, 3))
    with pytest.raises(rg.ShapeError, match=r"conv2d: kernel \(7, 7\) .* larger than input"):
        F.conv2d(x, rg.zeros(2, 4, 7, 7))
    with pytest.raises(rg.RetrogradError, match="padding='same' is not supported for strided"):
        F.conv2d(x, rg.zeros(2, 4, 3, 3), stride=2, padding="same")
    with pytest.raises(rg.ShapeError, match=r"conv2d: bias must have shape \(2,\)"):
        F.conv2d(x, rg.zeros(2, 4, 3, 3), rg.zeros(3))
    with pytest.raises(rg.RetrogradError, match="output_padding .* must be smaller"):
        F.conv_transpose2d(x, rg.zeros(4, 2, 3, 3), stride=2, output_padding=2)
    with pytest.raises(rg.RetrogradError, match="max_pool2d: padding .* at most half"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(rg.ShapeError, match=r"fold: input of shape \(1, 8, 5\) does not fit"):
        F.fold(rg.zeros(1, 8, 5), (4, 4), 2)
    with pytest.raises(rg.RetrogradError, match="interpolate: give exactly one of size"):
        F.interpolate(x)
    with pytest.raises(rg.RetrogradError, match="kernel_size must be an int or a pair"):
        F.max_pool2d(x, (2, 2, 2))


def test_float32_stays_float32_through_a_cnn():
    rg.manual_seed(0)
    net = rg.nn.Sequential(rg.nn.Conv2d(1, 2, 3), rg.nn.MaxPool2d(2), rg.nn.AvgPool2d(1),
                           rg.nn.AdaptiveAvgPool2d(3), rg.nn.Upsample(size=4, mode="bilinear"),
                           rg.nn.ConvTranspose2d(2, 1, 2), rg.nn.Flatten())
    x = rg.tensor(np.ones((2, 1, 9, 9), np.float32))
    y = net(x)
    assert y.dtype == np.float32 and y.shape == (2, 25)
    y.sum().backward()
    assert all(p.grad.dtype == np.float32 for p in net.parameters())


# ---------------------------------------------------------------- compiled LeNet

def _lenet():
    nn = rg.nn
    return nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 2 * 2, 16),
                         nn.ReLU(), nn.Linear(16, 10))


def _digits(n=8):
    return (RNG.random((n, 1, 16, 16)).astype(np.float32), RNG.integers(0, 10, n))


def test_compiled_lenet_loss_and_gradients_equal_eager():
    rg.manual_seed(1)
    net = _lenet()
    x, y = _digits()
    params = list(net.parameters())

    def loss_and_grads(x):
        loss = F.cross_entropy(net(x), y)
        # (create_graph: inside a trace the gradient must be a graph the compiler can keep)
        return (loss, *rg.autograd_grad(loss, params, create_graph=True))

    eager = loss_and_grads(rg.tensor(x))
    compiled = rg.compile(loss_and_grads)
    for _ in range(2):                                   # the traced call, then the replay
        got = compiled(x)
        for a, b in zip(got, eager):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-5, atol=1e-6)


def test_compile_step_of_lenet_trains_as_the_eager_step():
    x, y = _digits()
    rg.manual_seed(2)
    eager_net = _lenet()
    rg.manual_seed(2)
    net = _lenet()
    loss_fn = rg.nn.CrossEntropyLoss()
    eager_opt = rg.optim.SGD(eager_net.parameters(), lr=0.1, momentum=0.9)
    step = rg.graph.compile_step(net, loss_fn, rg.optim.SGD(net.parameters(), lr=0.1, momentum=0.9))
    for _ in range(3):
        eager_opt.zero_grad()
        loss = loss_fn(eager_net(rg.tensor(x)), y)
        loss.backward()
        eager_opt.step()
        got, _ = step(x, y)
        np.testing.assert_allclose(got.numpy(), loss.numpy(), rtol=1e-5)
        for p, q in zip(net.parameters(), eager_net.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-5, atol=1e-6)


def test_a_compiled_cnn_differentiates_twice():
    w = RNG.standard_normal((2, 1, 3, 3))
    x = rg.tensor(RNG.standard_normal((2, 1, 6, 6)))

    def f(w):
        return (F.max_pool2d(rg.tanh(F.conv2d(x, w, padding=1)), 2) ** 2).sum()

    hv = rg.grad(lambda w: (rg.grad(f)(w) * w).sum())
    np.testing.assert_allclose(rg.compile(hv)(w).numpy(), hv(w).numpy(), rtol=1e-10)
