"""The models ``retrograd train --model`` builds, each from its checkpoint configuration.

Every model takes the data as the CLI loads it, one row of features per sample (a
digit is 784 pixels in [0, 1]), so eval, predict and the fit loop see the same rows
for each of them; the image and sequence models reshape the rows themselves:

- ``mlp``: ``config["sizes"]`` input to output, ``nn.MLP`` (the notes' 784-100-10 net).
- ``cnn``: LeNet-5 on 1x28x28 images: conv 5x5 (6 maps, padded) - pool - conv 5x5
  (16 maps) - pool - 400-120-84-classes.
- ``lstm``: each digit read row by row, 28 steps of 28 pixels, by an LSTM (one or both
  directions); its last hidden state (both directions' concatenated) feeds a Linear.

``build_model(config)`` makes the module; ``parameter_count``, ``n_features`` and
``n_outputs`` answer for a configuration before anything is allocated (a checkpoint
may come from a hostile file).
"""
from __future__ import annotations

from . import nn, ops

MODELS = ("mlp", "cnn", "lstm")
IMAGE = (1, 28, 28)                  # what cnn and lstm read: one 28x28 grey image a row
PIXELS = IMAGE[0] * IMAGE[1] * IMAGE[2]
LENET_CHANNELS = (6, 16)
LENET_HIDDEN = (120, 84)


class Unflatten(nn.Module):
    """Rows of features -> (n, *shape), as torch.nn.Unflatten(1, shape)."""

    def __init__(self, shape):
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x):
        return ops.reshape(x, (x.shape[0],) + self.shape)

    def extra_repr(self):
        return f"{self.shape}"


def lenet(classes=10, activation="relu", dropout=0.0):
    """LeNet-5 (LeCun et al. 1998) with max pooling and ReLU, as it is usually taught."""
    c1, c2 = LENET_CHANNELS
    h1, h2 = LENET_HIDDEN
    act = lambda: nn.activation(activation)
    drop = [nn.Dropout(dropout)] if dropout else []
    return nn.Sequential(
        Unflatten(IMAGE),
        nn.Conv2d(1, c1, 5, padding=2), act(), nn.MaxPool2d(2),       # 6 x 28 x 28 -> 14 x 14
        nn.Conv2d(c1, c2, 5), act(), nn.MaxPool2d(2),                  # 16 x 10 x 10 -> 5 x 5
        nn.Flatten(),
        nn.Linear(c2 * 25, h1, init=_init(activation)), act(), *drop,
        nn.Linear(h1, h2, init=_init(activation)), act(), *drop,
        nn.Linear(h2, classes))


class RowLSTM(nn.Module):
    """An image read row by row (28 steps of 28 pixels) by an LSTM; the last hidden
    state, of both directions when bidirectional, is classified by one Linear layer."""

    def __init__(self, hidden=128, bidirectional=False, classes=10, dropout=0.0):
        self.rows, self.width = IMAGE[1], IMAGE[2]
        self.bidirectional = bool(bidirectional)
        self.lstm = nn.LSTM(self.width, hidden, batch_first=True, bidirectional=self.bidirectional)
        self.dropout = nn.Dropout(dropout) if dropout else None
        self.fc = nn.Linear(hidden * (2 if self.bidirectional else 1), classes)

    def forward(self, x):
        x = ops.reshape(x, (x.shape[0], self.rows, self.width))
        _, (h, _) = self.lstm(x)                  # h: (directions, n, hidden)
        # h[-1] of the forward direction has read every row, top to bottom; the reverse
        # direction's h has read them bottom to top
        z = ops.concatenate([h[-2], h[-1]], axis=1) if self.bidirectional else h[-1]
        if self.dropout is not None:
            z = self.dropout(z)
        return self.fc(z)


def _init(activation):
    return "he" if activation in ("relu", "leaky_relu") else "glorot"


def _lstm_params(hidden, bidirectional, classes, width=IMAGE[2]):
    directions = 2 if bidirectional else 1
    per_direction = 4 * hidden * (width + hidden + 2)
    return directions * per_direction + (directions * hidden + 1) * classes


def parameter_count(config) -> int:
    """The number of weights ``build_model(config)`` makes, computed without building it."""
    kind = config.get("model", "mlp")
    if kind == "mlp":
        sizes = config["sizes"]
        return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    classes = config["classes"]
    if kind == "cnn":
        (c1, c2), (h1, h2) = LENET_CHANNELS, LENET_HIDDEN
        return ((25 + 1) * c1 + (25 * c1 + 1) * c2 + (25 * c2 + 1) * h1 + (h1 + 1) * h2
                + (h2 + 1) * classes)
    return _lstm_params(config["hidden"], config["bidirectional"], classes)


def n_features(config) -> int:
    """Features a sample has (columns of the data) for this model."""
    return config["sizes"][0] if config.get("model", "mlp") == "mlp" else PIXELS


def n_outputs(config) -> int:
    return config["sizes"][-1] if config.get("model", "mlp") == "mlp" else config["classes"]


def describe(config) -> str:
    """A few words for the command's plan line."""
    kind = config.get("model", "mlp")
    if kind == "mlp":
        return f"{'-'.join(map(str, config['sizes']))} {config['activation']} MLP"
    if kind == "cnn":
        (c1, c2), (h1, h2) = LENET_CHANNELS, LENET_HIDDEN
        return (f"LeNet-5 CNN (1x28x28: conv5x5 {c1} - pool - conv5x5 {c2} - pool - "
                f"{c2 * 25}-{h1}-{h2}-{config['classes']}, {config['activation']})")
    bi = "bidirectional " if config["bidirectional"] else ""
    return f"{bi}LSTM (hidden {config['hidden']}, 28 rows of 28 pixels) - {config['classes']}"


def build_model(config) -> nn.Module:
    """The module of a configuration (a checkpoint's "meta"), its weights freshly drawn."""
    kind = config.get("model", "mlp")
    dropout = config.get("dropout", 0.0)
    if kind == "mlp":
        return nn.MLP(config["sizes"], config["activation"], dropout=dropout,
                      output_activation=config.get("output"))
    if kind == "cnn":
        return lenet(config["classes"], config["activation"], dropout)
    if kind == "lstm":
        return RowLSTM(config["hidden"], config["bidirectional"], config["classes"], dropout)
    raise ValueError(f"unknown model {kind!r}; expected one of {', '.join(MODELS)}")
