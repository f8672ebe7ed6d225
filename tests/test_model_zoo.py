"""Issue 12's "done when": LeNet, a bidirectional LSTM classifier and a transformer block,
each written from retrograd's parts, train by ``fit`` (compiled and eager alike) and can be
differentiated twice (input gradients and their second derivatives against finite
differences, in float64 on small sizes; tanh/gelu in place of ReLU so that finite
differences see no kinks)."""
import numpy as np
import pytest

import retrograd as rg
from retrograd import nn


def _float64(model):
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    return model


def lenet(classes=3):
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2),
                         nn.Conv2d(2, 3, 3), nn.Tanh(), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, classes))


class BiLSTMClassifier(nn.Module):
    def __init__(self, n_in=3, hidden=4, classes=3):
        self.lstm = nn.LSTM(n_in, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        # the seed's example: the two directions' states, concatenated
        return self.head(rg.concatenate([h[0], h[1]], axis=1))


class TransformerBlock(nn.Module):
    def __init__(self, d=4, heads=2, classes=3):
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff1, self.ff2 = nn.Linear(d, 8), nn.Linear(8, d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        a, _ = self.attn(x, x, x)
        h = self.norm1(x + a)
        h = self.norm2(h + self.ff2(rg.gelu(self.ff1(h))))
        return self.head(h.mean(axis=1))


MODELS = {"lenet": (lenet, (2, 1, 8, 8)), "bilstm": (BiLSTMClassifier, (2, 5, 3)),
          "transformer": (TransformerBlock, (2, 5, 4))}


def _loss_of_input(name):
    rg.manual_seed(0)
    make, shape = MODELS[name]
    model = _float64(make())
    y = np.array([0, 2])
    x = np.random.default_rng(1).standard_normal(shape)
    return (lambda x: nn.functional.cross_entropy(model(x), y)), x, model, y


@pytest.mark.parametrize("name", sorted(MODELS))
def test_first_and_second_derivatives_match_finite_differences(name):
    f, x, _, _ = _loss_of_input(name)
    assert rg.gradcheck(f, x)
    assert rg.gradgradcheck(f, x)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_second_derivatives_of_the_parameters_match_finite_differences_of_gradients(name):
    """H v for all the parameters at once (double backward through the whole model)
    equals the central difference (∇L(θ + εv) − ∇L(θ − εv)) / 2ε."""
    f, x, model, _ = _loss_of_input(name)
    params = list(model.parameters())
    vs = [np.random.default_rng(i).standard_normal(p.shape) for i, p in enumerate(params)]
    grads = rg.autograd_grad(f(x), params, create_graph=True)
    hv = rg.autograd_grad(sum((g * v).sum() for g, v in zip(grads, vs)), params)

    def gradient_at(t):
        saved = [p.data.copy() for p in params]
        for p, v in zip(params, vs):
            p.data = p.data + t * v
        g = rg.autograd_grad(f(x), params)
        for p, s in zip(params, saved):
            p.data = s
        return [gi.numpy() for gi in g]

    eps = 1e-5
    numeric = [(a - b) / (2 * eps) for a, b in zip(gradient_at(eps), gradient_at(-eps))]
    for i, (h, n) in enumerate(zip(hv, numeric)):
        np.testing.assert_allclose(h.numpy(), n, rtol=1e-4, atol=1e-6, err_msg=f"{name} param {i}")


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "eager"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_fit_trains_each_model(name, compiled):
    rg.manual_seed(0)
    make, shape = MODELS[name]
    model = make()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 48)
    x = rng.standard_normal((48,) + shape[1:]).astype(np.float32)
    x += (y.reshape(-1, *[1] * (len(shape) - 1)) - 1).astype(np.float32)   # learnable classes
    history = rg.train.fit(model, nn.CrossEntropyLoss(), rg.optim.Adam(model.parameters(), 0.02),
                           (x, y), epochs=8, batch_size=16, progress=False, log=lambda *a: None,
                           compile=compiled)
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"], history.column("train_loss")
