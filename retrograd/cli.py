"""The ``retrograd`` command: train, eval, predict.

``retrograd train`` with no arguments trains the lecture notes' network
(784-100-10, tanh, softmax + cross-entropy) by minibatch SGD on the bundled
MNIST subset. Every mistake a user can make (a bad flag, a missing file,
malformed data) ends in one line on stderr and exit code 2, never a traceback.

Ctrl-C (SIGINT) or SIGTERM during ``retrograd train`` stops at the next batch,
writes ``last.npz`` at that exact point and prints one line saying so, with the
command that continues the run (``--resume``). The exit code is 128 + the
signal's number, as a shell reports a process killed by it: 130 for SIGINT, 143
for SIGTERM.

A run whose loss, validation loss or weights become NaN or infinite stops before
saving anything of that epoch (the checkpoints on disk stay the last finite ones)
with one line on stderr and exit code 3.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import shlex
import stat
import sys
import time
import warnings

import numpy as np

from .errors import RetrogradError
from .io import is_int, is_number
from .nn.layers import HIDDEN_ACTIVATIONS

EXIT_USAGE = 2
EXIT_DIVERGED = 3            # training diverged (NaN/inf); the last finite checkpoint is kept

# One table per vocabulary: each choice list below is read from the table that defines
# its names (activations: nn.layers.HIDDEN_ACTIVATIONS; losses: nn.LOSSES, of which
# LOSSES are those the train command builds a model and targets for; explain's: explain).

# --optimizer: name -> (the retrograd.optim class, its arguments, the default lr)
_OPTIMIZERS = {"sgd": ("SGD", {}, 0.1), "momentum": ("SGD", {"momentum": 0.9}, 0.02),
               "nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}, 0.02),
               "rprop": ("Rprop", {}, 0.001), "quickprop": ("Quickprop", {}, 0.05),
               "adam": ("Adam", {}, 1e-3), "adamw": ("AdamW", {}, 1e-3),
               "rmsprop": ("RMSprop", {}, 1e-3), "adagrad": ("Adagrad", {}, 0.05)}
OPTIMIZERS = tuple(_OPTIMIZERS)
DEFAULT_LR = {name: lr for name, (_, _, lr) in _OPTIMIZERS.items()}
# --schedule: name -> (the retrograd.optim.lr_scheduler class, its arguments for a run of
# so many epochs), or None
_SCHEDULES = {"none": None,
              "step": ("StepLR", lambda epochs: {"step_size": max(1, epochs // 3), "gamma": 0.1}),
              "exp": ("ExponentialLR", lambda epochs: {"gamma": 0.95}),
              "cosine": ("CosineAnnealingLR", lambda epochs: {"T_max": epochs}),
              "plateau": ("ReduceLROnPlateau", lambda epochs: {"factor": 0.5, "patience": 2})}
SCHEDULES = tuple(_SCHEDULES)
# --loss of train: the names of nn.LOSSES whose model (logits, or one sigmoid output for
# bce) and targets (labels, one-hot rows, columns: _targets_for) the command builds
LOSSES = ("cross_entropy", "mse", "sse", "bce")
# --model: name -> the defaults of the flags a user did not give. lr: the model's own
# only with its optimizer (another optimizer starts from that optimizer's default);
# lstm's "activation" is the cell's tanh, recorded, not chosen. The cnn and lstm
# recipes reach >= 97 % and >= 90 % test accuracy on mnist5k (README: figures).
MODEL_DEFAULTS = {
    "mlp": {"optimizer": "sgd", "lr": None, "batch_size": 32, "epochs": 20,
            "activation": "tanh", "schedule": "none", "shift": 0},
    "cnn": {"optimizer": "adam", "lr": 2e-3, "batch_size": 32, "epochs": 30,
            "activation": "relu", "schedule": "cosine", "shift": 2},
    "lstm": {"optimizer": "adam", "lr": 2e-3, "batch_size": 32, "epochs": 15,
             "activation": "tanh", "schedule": "cosine", "shift": 0,
             "hidden": 128, "bidirectional": False}}
# flags only some models have: flag -> (the models that take it, what it is)
_MODEL_FLAGS = {"layers": (("mlp",), "sets the widths of an MLP"),
                "activation": (("mlp", "cnn"), "sets the hidden units' activation of an MLP or "
                               "CNN (an LSTM's gates are fixed)"),
                "hidden": (("lstm",), "sets the LSTM's state size"),
                "bidirectional": (("lstm",), "is an LSTM option")}


class UsageError(Exception):
    """A mistake in the command line: reported in one line, exit code 2."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" after each option's help, except where there is no value to
    show (None, a flag that is off): those say their default in words."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):                      # one line, not usage + error
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


class _Given(argparse.Action):
    """Stores the value and notes that the flag was on the command line: --resume
    compares only the flags a user gave with the checkpoint's (the others come from it)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.given = getattr(namespace, "given", frozenset()) | {self.dest}


class _GivenTrue(_Given):
    """A flag without a value (store_true), noted as given like the others."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, True, option_string)


def _number(kind, text):
    """``kind(text)`` (int or float), or the flag's error saying what it takes."""
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def _integer(text):
    return _number(int, text)


def _shift(text):
    v = _number(int, text)
    if not 0 <= v <= 8:                 # a digit is about 20 pixels of its 28
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 8, got {text}")
    return v


def _batch_size(text):
    if text in ("full", "batch"):
        return "full"
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'full', got {text!r}")
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'full', got {text!r}")
    return n


class _Layers(list):
    """Layer widths; ``full`` when written input-to-output with dashes (784-100-10)."""
    full = False


def _sizes(text):
    """'100' or '128,64': hidden widths; '784-100-10': every width, input to output.
    Each width is a positive integer as written ('-5' is not 5, '2--3' is not 2-3)."""
    text = text.strip()
    if text in ("", "none"):
        return _Layers()
    sep = "-" if "-" in text else ","
    parts = [s.strip() for s in text.split(sep)]
    if not all(s.isdigit() for s in parts) or any(int(s) == 0 for s in parts):
        raise argparse.ArgumentTypeError(f"must be positive integer widths like 100, 128,64 or "
                                         f"784-100-10, got {text!r}")
    sizes = _Layers(int(s) for s in parts)
    sizes.full = sep == "-"
    return sizes


def _unit_interval(text):
    v = _number(float, text)
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return v


def _positive(kind):
    def parse(text):
        v = _number(kind, text)
        if not (math.isfinite(v) and v > 0):        # nan <= 0 is False: test what is wanted
            raise argparse.ArgumentTypeError(f"must be positive and finite, got {text}")
        return v
    return parse


def _non_negative(text):
    v = _number(float, text)
    if not (math.isfinite(v) and v >= 0):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return v


def _seed(text):
    v = _number(int, text)
    if v < 0:                                      # NumPy's generators take seeds >= 0
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="retrograd", description="Train and use multilayer perceptrons with "
                "retrograd, a NumPy-native backpropagation library.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    from . import __version__
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_run_flags(_add_train(sub))
    _add_eval_predict(sub)
    _add_graph(sub)
    _add_plot(sub)
    _add_explain(sub)
    _add_export(sub)
    return p


def _add_train(sub):
    t = sub.add_parser("train", help="train a model (default: the 784-100-10 tanh MLP on bundled "
                       "MNIST; --model cnn: LeNet-5, --model lstm: an LSTM reading rows)",
                       epilog="10 % of the training data is held out for validation (the "
                              "choice of best.npz, early stopping); the test split is used only "
                              "for the final line. Ctrl-C (SIGINT) or SIGTERM stops after the "
                              "current batch, saves that exact point in OUT/last.npz and prints "
                              "the command that continues (--resume) to the same result; exit "
                              "code 130 for SIGINT, 143 for SIGTERM. A diverging run (NaN or "
                              "infinite loss or weights) stops with exit code 3, keeping the "
                              "last finite checkpoint. --resume takes every flag not given from "
                              "the checkpoint and refuses one that disagrees with it, except "
                              "--lr (applied) and --epochs. The defaults shown are the MLP's; "
                              "--model cnn: adam (lr 0.002), 30 epochs, relu, cosine schedule, "
                              "--shift 2; --model lstm: adam (lr 0.002), 15 epochs, cosine "
                              "schedule, --hidden 128.")
    g_ = dict(action=_Given)          # flags --resume compares with the checkpoint
    _add_model_flag(t)
    t.add_argument("--data", default="mnist5k", **g_,
                   help="mnist5k, xor, spirals, moons, a CSV file or a folder of IDX files")
    t.add_argument("--layers", type=_sizes, default=None, **g_,
                   help="hidden widths, e.g. 100 (the default) or 128,64; or every width "
                        "input to output, e.g. 784-100-10 or, for two classes with a sigmoid "
                        "output and sse/mse/bce, 2-2-1")
    mlp = MODEL_DEFAULTS["mlp"]      # the defaults shown; _model_defaults applies the others
    t.add_argument("--activation", default=mlp["activation"], choices=HIDDEN_ACTIVATIONS,
                   **g_, help="activation of the hidden units (cnn: relu)")
    t.add_argument("--loss", default="cross_entropy", choices=LOSSES,
                   **g_, help="bce: binary cross-entropy, for one sigmoid output")
    t.add_argument("--optimizer", default=mlp["optimizer"], choices=OPTIMIZERS, **g_,
                   help="update rule (cnn and lstm: adam)")
    t.add_argument("--lr", type=_positive(float), default=None, **g_,
                   help="learning rate (default depends on the optimizer: sgd 0.1, adam 0.001, "
                        "...; adam for cnn and lstm 0.002)")
    t.add_argument("--batch-size", type=_batch_size, default=mlp["batch_size"], **g_,
                   help="1 = online learning, N = minibatch, 'full' = batch learning")
    t.add_argument("--epochs", type=_positive(int), default=mlp["epochs"], **g_, help="epochs to train (on "
                   "--resume: the total, counting those already done; cnn: 30, lstm: 15)")
    t.add_argument("--weight-decay", type=_non_negative, default=0.0, **g_,
                   help="L2 penalty on the weights")
    t.add_argument("--dropout", type=_unit_interval, default=0.0, **g_,
                   help="drop probability of the hidden units")
    t.add_argument("--schedule", default=mlp["schedule"], choices=SCHEDULES, **g_,
                   help="learning-rate schedule (cnn and lstm: cosine)")
    _add_image_flags(t)
    t.add_argument("--early-stopping", type=_positive(int), default=None, metavar="PATIENCE", **g_,
                   help="stop after PATIENCE epochs without a better validation loss (default: "
                        "train all epochs)")
    t.add_argument("--seed", type=_seed, default=0, **g_,
                   help="seed of the weights, the shuffling and the splits")
    return t


def _add_model_flag(t):
    from .models import MODELS
    t.add_argument("--model", default="mlp", choices=MODELS, action=_Given,
                   help="mlp: a multilayer perceptron (--layers); cnn: LeNet-5 on the digits "
                        "as 1x28x28 images; lstm: an LSTM reading each digit row by row, "
                        "28 steps of 28 pixels (cnn and lstm need 784-pixel images)")


def _add_image_flags(t):
    """The flags of the image and sequence models: --shift, --hidden, --bidirectional."""
    t.add_argument("--shift", type=_shift, default=MODEL_DEFAULTS["mlp"]["shift"], metavar="PIXELS", action=_Given,
                   help="augment the training images (784 pixels, 28x28) by random shifts of "
                        "up to PIXELS in each direction, drawn anew every epoch (cnn: 2)")
    t.add_argument("--hidden", type=_positive(int), default=None, action=_Given,
                   help="lstm: the size of its hidden state (default 128)")
    t.add_argument("--bidirectional", action=_GivenTrue, default=None,
                   help="lstm: read the rows both ways, top to bottom and bottom to top")


def _add_run_flags(t):
    """Where a run goes and how it is saved: --out, --resume, --save-every, ..."""
    t.add_argument("--out", default=None, help="run folder (default: runs/<data>, "
                   "runs/<data>-cnn, runs/<data>-lstm)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (without it, or --resume, a rerun "
                        "into a folder holding a run is refused)")
    t.add_argument("--save-every", type=_positive(int), default=None, metavar="N",
                   help="write last.npz, best.npz and history.json every N epochs (default: "
                        "every epoch, but at most once a second); always after the last one "
                        "and when interrupted")
    t.add_argument("--no-save", action="store_true", help="write no files at all")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--no-compile", action="store_true",
                   help="run each step eagerly (forward, backward, update op by op) instead of "
                        "as one compiled call; the results are the same up to float rounding")
    t.add_argument("--backend", default="auto", choices=("auto", "numpy", "numba"),
                   help="how the compiled step runs: NumPy calls, or Numba machine code "
                        "(pip install 'retrograd[fast]'); auto: $RETROGRAD_BACKEND if set, else "
                        "Numba for long runs of small, overhead-bound steps, NumPy otherwise")
    t.add_argument("--verbose", action="store_true",
                   help="also print the compiled step's backend and first-call compile time")


def _add_eval_predict(sub):
    e = sub.add_parser("eval", help="metrics and confusion matrix of a checkpoint")
    e.add_argument("checkpoint")
    e.add_argument("--data", default=None, help="data set to evaluate on (default: the training one)")

    r = sub.add_parser("predict", help="write predictions for the rows of a CSV file")
    r.add_argument("checkpoint")
    r.add_argument("input", help="CSV file of feature rows (no label column)")
    r.add_argument("--output", default=None, help="where to write (default: INPUT.pred.csv)")


def _add_export(sub):
    x = sub.add_parser("export", help="write a checkpoint's model as an ONNX file (any batch "
                       "size; needs pip install 'retrograd[onnx]')")
    x.add_argument("checkpoint")
    x.add_argument("output", help="the .onnx file to write")
    x.add_argument("--opset", type=_integer, default=17, help="ONNX opset version, 13 to 17")


def _add_graph(sub):
    g = sub.add_parser("graph", help="draw the computational graph of a small MLP's loss, with "
                       "each node's gradient norm (DOT, and SVG/PNG when Graphviz is installed)")
    g.add_argument("--layers", type=_sizes, default="2-2-1",
                   help="all layer sizes, input to output (2-2-1: the notes' XOR net)")
    g.add_argument("--activation", default="sigmoid", choices=HIDDEN_ACTIVATIONS,
                   help="activation of every unit (the output too, except with cross_entropy)")
    # not bce: it needs one sigmoid output, which --activation need not give
    g.add_argument("--loss", default="sse", choices=[n for n in LOSSES if n != "bce"],
                   help="the loss drawn")
    g.add_argument("--seed", type=_seed, default=0, help="seed of the weights")
    g.add_argument("--out", default="graph.dot",
                   help="a .dot path (graph.svg too when Graphviz is installed), "
                        "or a .svg/.png/.pdf path (the .dot file is written beside it)")


def _add_plot(sub):
    pl = sub.add_parser("plot", help="training curves (PNG and SVG) from a run folder's history.json")
    pl.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by 'retrograd train' "
                    "(or its history.json)")
    pl.add_argument("--out", default=None, help="folder for the pictures (default: RUN_DIR)")


def _add_explain(sub):
    from .explain import HIDDEN_ACTIVATIONS as HIDDEN, NET_LOSSES, OUTPUT_ACTIVATIONS
    x = sub.add_parser("explain", help="one step of backprop printed in the notes' words (default: "
                       "the 2-2-1 net), or the adjoints of an expression with --expr")
    x.add_argument("--layers", type=_sizes, default=None,
                   help="all layer sizes, input to output, e.g. 2-2-1 (default) or 2-3-2")
    x.add_argument("--activation", default=None, choices=HIDDEN,
                   help="f of the hidden units (default sigmoid)")
    x.add_argument("--output", default=None, choices=OUTPUT_ACTIVATIONS,
                   help="f of the output units (default: as --activation; softmax or sigmoid "
                        "for cross_entropy)")
    x.add_argument("--loss", default=None, choices=NET_LOSSES,
                   help="sse (default: E = ½ Σ (d − o)²), mse or cross_entropy")
    x.add_argument("--seed", type=_seed, default=None, help="seed of the weights (default 0)")
    x.add_argument("--lr", type=_positive(float), default=None, help="learning rate η (default 0.5)")
    x.add_argument("--input", default=None, metavar="X",
                   help="the pattern, e.g. 1,0 (default: XOR's (1, 0))")
    x.add_argument("--target", default=None, metavar="D",
                   help="its target, e.g. 1 or 1,0 (default 1, or the first class)")
    x.add_argument("--expr", default=None,
                   help="explain reverse-mode autodiff of an expression instead, e.g. "
                        "\"sin(x1) + x1*x2\"")
    x.add_argument("--at", default=None, help="the point for --expr, e.g. x1=2,x2=5")
    x.add_argument("--rnn", action="store_true",
                   help="explain backpropagation through time for a 3-step RNN instead "
                        "(--seed draws its weights)")
    x.add_argument("--html", default=None, metavar="FILE",
                   help="write an interactive page instead (one self-contained HTML file): the "
                        "net or the --expr graph, stepped through forward and backward")
    x.add_argument("--steps", type=_positive(int), default=None,
                   help="--html: training steps on the timeline (default 20); with --html, "
                        "--input and --target may give several patterns separated by ';', "
                        "e.g. \"0,0;0,1;1,0;1,1\" and \"0;1;1;0\"")
    x.add_argument("--batch", action="store_true",
                   help="--html: each step sums the gradients of every pattern (default: one "
                        "pattern per step, in turn)")


# ---------------------------------------------------------------- helpers

def _load_data(name, seed):
    from .data import load_dataset
    return load_dataset(name, seed=seed)


def _spec(sizes):
    return "-".join(map(str, sizes))


def _model_sizes(layers, n_in, n_out, classify, data):
    """Every width from --layers: hidden widths get the data's ends added; a full spec
    (784-100-10) is taken as written and must start with the data's features and end
    with its outputs (or 1 for two classes, checked by _output_unit)."""
    if layers is None:
        layers = [100]
    if not getattr(layers, "full", False):
        return [n_in] + list(layers) + [n_out]
    spec = _spec(layers)
    if len(layers) < 2:
        raise UsageError(f"retrograd train: --layers {spec} needs an input and an output width")
    if layers[0] != n_in:
        raise UsageError(f"retrograd train: --layers {spec} starts with {layers[0]} but {data} "
                         f"has {n_in} features")
    if layers[-1] != n_out and not (classify and layers[-1] == 1 and n_out == 2):
        what = "classes" if classify else "target columns"
        raise UsageError(f"retrograd train: --layers {spec} ends with {layers[-1]} but {data} "
                         f"has {n_out} {what}")
    return list(layers)


def _output_unit(sizes, classes, activation, loss):
    """The output layer's activation: "sigmoid" for one output unit on two classes (the
    notes' 2-2-1 net, trained with sse/mse/bce on 0/1 targets), else None (logits or a
    linear regression output)."""
    single = classes == 2 and sizes[-1] == 1
    if single and (activation != "sigmoid" or loss == "cross_entropy"):
        raise UsageError(f"retrograd train: --layers {_spec(sizes)}: one output for two classes "
                         f"needs --activation sigmoid and --loss sse, mse or bce (the notes' "
                         f"2-2-1 net); got {activation} and {loss}")
    if loss == "bce" and not single:
        raise UsageError("retrograd train: --loss bce needs one sigmoid output for two classes, "
                         "e.g. --layers 2-2-1 --activation sigmoid")
    return "sigmoid" if single else None


def _check_size(sizes, command, config=None):
    """Refuse a model that cannot be allocated (before NumPy tries): its weights,
    gradients and about two optimizer slots, in float32, against the machine's memory.
    ``config``: a cnn's or lstm's configuration instead of an MLP's sizes."""
    from .models import describe, parameter_count
    params = parameter_count(config if config is not None else {"sizes": sizes})
    need = 16 * params
    from .data.transforms import physical_memory
    memory = physical_memory(unknown=1 << 36)        # (64 GiB where the OS does not say)
    if need > memory:
        if config is not None:
            spec = describe(config)
        else:
            spec = _spec(sizes) if len(sizes) <= 6 else _spec(sizes[:3]) + "-...-" + str(sizes[-1])
            spec += " MLP"
        raise UsageError(f"retrograd {command}: a {spec[:120]} has {params:,} parameters, "
                         f"about {need / 2 ** 30:,.0f} GiB to train; too big for this machine's "
                         f"{memory / 2 ** 30:.0f} GiB")


def _problem(y_train):
    """(n_out, is_classification) from the labels."""
    if y_train.dtype.kind in "iu":
        return int(y_train.max()) + 1, True
    return (y_train.shape[1] if y_train.ndim == 2 else 1), False


def _targets_for(config, y):
    """Cross-entropy takes integer labels; MSE/SSE on a classifier take one-hot rows (or
    a 0/1 column for one output); regression targets are columns, like the output."""
    from .data import one_hot
    from .models import n_outputs
    n_out = n_outputs(config)
    if y.dtype.kind not in "iu":
        return y.reshape(len(y), -1)
    if config["loss"] == "cross_entropy":
        return y
    if n_out == 1:
        return y.reshape(-1, 1).astype(np.float32)
    return one_hot(y, n_out).astype(np.float32)


def _make_optimizer(name, params, lr, weight_decay):
    from . import optim
    cls, kwargs, default_lr = _OPTIMIZERS[name]
    return getattr(optim, cls)(params, lr=default_lr if lr is None else lr, **kwargs,
                               weight_decay=weight_decay)


def _make_schedule(name, opt, epochs):
    from .optim import lr_scheduler
    if _SCHEDULES[name] is None:
        return None
    cls, kwargs = _SCHEDULES[name]
    return getattr(lr_scheduler, cls)(opt, **kwargs(epochs))


def _build_model(config):
    from .models import build_model
    return build_model(config)


def _loss_fn(name):
    from . import nn
    return nn.LOSSES[name]()

# what a checkpoint's model configuration must hold, and (for --resume) how it was trained
_CONFIG = {
    "model": lambda v: v in MODEL_DEFAULTS,
    "sizes": lambda v: isinstance(v, list) and len(v) >= 2 and all(is_int(s) and s >= 1 for s in v),
    "activation": lambda v: v in HIDDEN_ACTIVATIONS, "loss": lambda v: v in LOSSES,
    "data": lambda v: isinstance(v, str),
    "dropout": lambda v: is_number(v) and 0 <= v < 1, "output": lambda v: v in (None, "sigmoid"),
    "classes": lambda v: v is None or (is_int(v) and v >= 1),
    "hidden": lambda v: is_int(v) and v >= 1, "bidirectional": lambda v: isinstance(v, bool)}
_TRAINING = {
    "optimizer": lambda v: v in OPTIMIZERS, "lr": lambda v: is_number(v) and math.isfinite(v) and v > 0,
    "weight_decay": lambda v: is_number(v) and math.isfinite(v) and v >= 0,
    "batch_size": lambda v: v == "full" or (is_int(v) and v >= 1),
    "schedule": lambda v: v in SCHEDULES, "seed": lambda v: is_int(v) and v >= 0,
    "early_stopping": lambda v: v is None or (is_int(v) and v >= 1),
    "shift": lambda v: is_int(v) and 0 <= v <= 8}
# the keys each model needs (a checkpoint without "model" is an MLP's)
_REQUIRED = {"mlp": ("sizes", "activation", "loss", "data"),
             "cnn": ("classes", "activation", "loss", "data"),
             "lstm": ("classes", "hidden", "bidirectional", "loss", "data")}


def _check_config(config, path, command, training=False):
    """A checkpoint's configuration, checked before it builds anything (it may come
    from a hostile file: a huge 'sizes' must not allocate)."""
    from .io import CheckpointError
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: its model configuration is {type(config).__name__}, "
                              "not a dict; not a checkpoint written by 'retrograd train'")
    rules = {**_CONFIG, **(_TRAINING if training else {})}
    kind = config.get("model", "mlp")
    required = _REQUIRED.get(kind, ())
    for key, ok in rules.items():
        if key not in config:
            if key in required:
                raise CheckpointError(f"{path}: its model configuration has no {key!r}; not "
                                      "a checkpoint written by 'retrograd train'")
            continue
        if not ok(config[key]):
            raise CheckpointError(f"{path}: its model configuration has an invalid {key!r}: "
                                  f"{config[key]!r:.80}")
    if kind == "mlp":
        _check_size(config["sizes"], command)
    else:
        if config["classes"] is None:
            raise CheckpointError(f"{path}: its model configuration has no classes for its "
                                  f"{kind}; not a checkpoint written by 'retrograd train'")
        _check_size(None, command, config)


def _confusion(pred, truth, n):
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (truth, pred), 1)
    return m


def _print_confusion(m):
    n = len(m)
    w = max(5, len(str(m.max())) + 1)
    print("confusion matrix (rows: true class, columns: predicted)")
    print(" " * 6 + "".join(f"{j:>{w}}" for j in range(n)))
    for i in range(n):
        print(f"{i:>5} " + "".join(f"{v:>{w}}" for v in m[i]))


def _load_checkpoint(path, command="eval"):
    from . import io
    ck = io.load(path)
    if not isinstance(ck, dict) or "model" not in ck or "meta" not in ck:
        raise io.CheckpointError(f"{path}: not a checkpoint written by 'retrograd train' "
                                 "(no model configuration inside)")
    config = ck["meta"]
    _check_config(config, path, command)
    try:
        model = _build_model(config)
        model.load_state_dict(ck["model"])
    except (KeyError, TypeError, ValueError, RetrogradError) as e:
        raise io.CheckpointError(f"{path}: the model configuration or weights inside do not fit "
                                 f"together ({type(e).__name__}: {e})") from None
    model.eval()
    return model, config


# ---------------------------------------------------------------- commands

# the flags --resume compares with the checkpoint (argparse dest = configuration key);
# --layers and --lr have rules of their own
_RESUMED = ("model", "data", "activation", "loss", "dropout", "optimizer", "weight_decay",
            "batch_size", "schedule", "seed", "early_stopping", "shift")
_RESUMED_BY_MODEL = {"lstm": ("hidden", "bidirectional")}


def _show(v):
    return "none" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def _resumed_config(args, out):
    """--resume: the checkpoint's configuration, with the flags given checked against it.
    A flag that disagrees is refused (training would silently use the checkpoint's value);
    --lr is the exception: it is applied (returned as the new lr). Returns (config, the
    new lr or None, the lr training goes on with)."""
    path = os.path.join(out, "last.npz")
    ck = _training_checkpoint(path)
    config = {"model": "mlp", **ck["meta"]}         # a checkpoint of an older version: an MLP
    _model_defaults(args, config["model"])
    config = _with_given_flags(args, config, path)
    return _resumed_lr(args, ck, config, out)


def _training_checkpoint(path):
    """The last.npz of a run of 'retrograd train', its configuration checked."""
    from . import io
    ck = io.load(path)
    if not isinstance(ck, dict) or "meta" not in ck:
        raise io.CheckpointError(f"{path}: not a checkpoint written by 'retrograd train' (no "
                                 "model configuration inside)")
    _check_config(ck["meta"], path, "train", training=True)
    return ck


def _with_given_flags(args, config, path):
    """``config`` with the defaults of what an older checkpoint did not record; a flag
    given that disagrees with the checkpoint is a UsageError."""
    given = getattr(args, "given", frozenset())
    for key in _RESUMED + _RESUMED_BY_MODEL.get(config["model"], ()):
        if key not in given:
            if key not in config:           # a checkpoint of an older version: the default
                config[key] = getattr(args, key)
            continue
        new, old = getattr(args, key), config.get(key, "not recorded")
        if new != old:
            flag = "--" + key.replace("_", "-")
            raise UsageError(f"retrograd train --resume: {flag} {_show(new)} disagrees with "
                             f"{path}, trained with {_show(old)}; drop {flag} to continue that "
                             "run, or train into a new --out")
    return config


def _resumed_lr(args, ck, config, out):
    """(config, the new lr or None, the lr training goes on with) for a given --lr."""
    # a given --lr is compared with the lr the run was started (or last resumed) with, not
    # the optimizer's current one: a schedule moves that, and the command printed after an
    # interruption repeats the original --lr
    opt_state = ck.get("optimizer")
    groups = opt_state.get("param_groups") if isinstance(opt_state, dict) else None
    current = groups[0].get("lr") if isinstance(groups, list) and groups and \
        isinstance(groups[0], dict) else None
    config.setdefault("lr", current if _TRAINING["lr"](current) else None)
    if current == 0 and config["schedule"] == "cosine":
        # (the default schedule of cnn and lstm) annealed to 0 at its last epoch: more
        # epochs of it would change nothing
        raise UsageError(f"retrograd train --resume: the cosine schedule of the run in {out} "
                         f"ran to its end (learning rate 0); more epochs would not change it: "
                         "train into a new --out with more --epochs")
    lr = None
    if "lr" in getattr(args, "given", frozenset()) and args.lr != config["lr"]:
        if config["schedule"] != "none":
            raise UsageError(f"retrograd train --resume: --lr {args.lr:g} cannot replace the "
                             f"learning rate {_show(config['lr'])} of a run with --schedule "
                             f"{config['schedule']} (its state was built on the old one); train "
                             "into a new --out")
        lr = config["lr"] = args.lr
    if lr is None and not _TRAINING["lr"](current):
        current = config["lr"]               # fit refuses that checkpoint with one line
    return config, lr, lr if lr is not None else current


def _model_defaults(args, model):
    """Fill in the flags the user did not give with ``model``'s defaults, after refusing
    the flags that ``model`` does not have."""
    given = getattr(args, "given", frozenset())
    for key, (models, what) in _MODEL_FLAGS.items():
        if key in given and model not in models:
            flag = "--" + key.replace("_", "-")
            raise UsageError(f"retrograd train: {flag} {what}; --model {model} does not "
                             f"take it (drop {flag}, or see 'retrograd train --help')")
    defaults = MODEL_DEFAULTS[model]
    for key, value in defaults.items():
        if key != "lr" and key not in given:
            setattr(args, key, value)
    if args.lr is None:
        args.lr = defaults["lr"] if args.optimizer == defaults["optimizer"] and \
            defaults["lr"] is not None else DEFAULT_LR[args.optimizer]


def _new_config(args):
    _model_defaults(args, args.model)
    config = {"model": args.model, "data": args.data, "activation": args.activation,
              "loss": args.loss, "dropout": args.dropout, "optimizer": args.optimizer,
              "lr": args.lr, "weight_decay": args.weight_decay, "batch_size": args.batch_size,
              "schedule": args.schedule, "seed": args.seed, "early_stopping": args.early_stopping,
              "shift": args.shift}
    if args.model == "lstm":
        config.update(hidden=args.hidden, bidirectional=args.bidirectional)
    return config


def cmd_train(args):
    if args.no_save and args.resume:
        raise UsageError("retrograd train: --resume continues a saved run; it cannot be "
                         "combined with --no-save")
    _check_settings(args)
    name = args.data if not os.path.exists(args.data) else os.path.basename(os.path.normpath(args.data))
    if args.model != "mlp":          # beside the MLP's run of the same data, not over it
        name += f"-{args.model}"
    out = args.out or os.path.join("runs", name)
    world = _mpi_world()
    if world is not None:
        return _train_ranks(args, out, world)
    from .rundir import claim
    # one run per folder, claimed before anything is read or printed (nothing is written
    # with --no-save, so nothing to claim)
    with (contextlib.nullcontext() if args.no_save else
          claim(out, resume=args.resume, overwrite=args.overwrite)):
        return _train(args, out)


def _check_settings(args):
    """Refuse what the run would fail on later -- a backend that cannot run, an environment
    setting of no meaning -- before anything is claimed, printed or read."""
    from . import blas
    if not args.no_compile:
        from .graph import numba_backend
        numba_backend.resolve(args.backend, "train")
        if numba_backend.available():
            numba_backend.cache_days()      # (read by the first compile)
    blas.requested_threads("auto")          # (read when training starts)


def _mpi_world():
    """The MPI world when mpiexec started this command as one of several ranks, else None
    (retrograd.distributed imports mpi4py only then)."""
    from . import distributed
    if not distributed.under_mpi():
        return None
    world = distributed.init()
    return world if world.size > 1 else None


def _train_ranks(args, out, world):
    """retrograd train as one rank of a data-parallel run: rank 0 claims the run folder,
    prints and writes; an error on one rank ends them all (MPI_Abort) with its line."""
    from . import distributed
    from .rundir import claim
    if world.rank:
        sys.stdout = open(os.devnull, "w")          # rank 0 speaks for all
    with contextlib.ExitStack() as stack:
        failed = None
        if world.rank == 0 and not args.no_save:
            try:
                stack.enter_context(claim(out, resume=args.resume, overwrite=args.overwrite))
            except RetrogradError as e:
                failed = e
        if not distributed.agree(failed is None):    # the others wait for the claim
            if failed is not None:
                raise failed
            return EXIT_USAGE
        try:
            code = _train(args, out, world)
        except (UsageError, distributed.DistributedError):   # every rank finds it alike
            if world.rank:
                return EXIT_USAGE
            raise
        except KeyboardInterrupt as e:
            from .train import TrainingInterrupted
            if not isinstance(e, TrainingInterrupted) or getattr(e, "at_once", False):
                # a second signal: this rank stopped at once, so must the others
                e.resume_command = _resume_command(args)
                distributed.fail(None, _interrupted(e) if world.rank == 0 else 130)
            if world.rank:                 # every rank stopped at the same batch
                return 128 + int(e.signum)
            raise
        except Exception as e:         # one rank's failure must not leave the others waiting
            distributed.fail(f"rank {world.rank}: {e}", EXIT_USAGE)
        if code:                       # said already (divergence); stop the others too
            distributed.fail(None, code)
        return code


def _train(args, out, world=None):
    """retrograd train in its claimed run folder ``out``."""
    from .train import TrainingDiverged, validation_split
    if args.resume:
        config, new_lr, lr_now = _resumed_config(args, out)
    else:
        config, new_lr, lr_now = _new_config(args), None, None
    (x_train, y_train), (x_test, y_test) = _load_data(config["data"], config["seed"])
    _complete_config(args, config, out, x_train, y_train)
    model, opt, schedule = _training_objects(config, args.epochs)
    y_tr, y_te = _targets_for(config, y_train), _targets_for(config, y_test)
    # never select or stop on the test set: hold out 10% of the training data
    train, val = validation_split(x_train, y_tr, seed=config["seed"])
    bs = len(train[0]) if config["batch_size"] == "full" else config["batch_size"]
    if world is not None and bs % world.size:
        raise UsageError(f"retrograd train: --batch-size {bs} is the global batch and must be "
                         f"divisible by the {world.size} ranks (e.g. "
                         f"{max(world.size, bs // world.size * world.size)})")
    _print_plan(config, lr_now or opt.param_groups[0]["lr"], bs, args.epochs, train, val,
                len(x_test))
    t0 = time.perf_counter()
    try:
        history = _fit(args, out, config, (model, opt, schedule), train, val, bs, new_lr)
    except KeyboardInterrupt as e:          # fit's TrainingInterrupted: say how to go on
        e.resume_command = _resume_command(args)
        raise
    except TrainingDiverged as e:
        print(f"retrograd train: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    _print_result(args, out, config, model, history, time.perf_counter() - t0, x_test, y_te)
    return 0


def _complete_config(args, config, out, x_train, y_train):
    """Add the model's widths, classes and output unit, from the data and --layers (on
    --resume, the checkpoint's, which a given --layers must match)."""
    data = config["data"]
    n_out, classify = _problem(y_train)
    if config["loss"] == "cross_entropy" and not classify:
        raise UsageError(f"retrograd train: --loss cross_entropy needs integer class labels, but "
                         f"{data} has real-valued targets; use --loss mse")
    if config["model"] != "mlp" or config["shift"]:
        _check_images(config, data, x_train, classify)
    if config["model"] != "mlp":
        if config["loss"] == "bce":
            raise UsageError(f"retrograd train: --loss bce needs one sigmoid output; --model "
                             f"{config['model']} has one output per class: use cross_entropy")
        config.update(classes=n_out, output=None)
        _check_size(None, "train", config)
        return
    sizes = _model_sizes(args.layers, x_train.shape[1], n_out, classify, data)
    if args.resume:
        if "layers" in getattr(args, "given", ()) and sizes != config["sizes"]:
            raise UsageError(f"retrograd train --resume: --layers {_spec(args.layers)} "
                             f"({_spec(sizes)}) disagrees with {os.path.join(out, 'last.npz')}, "
                             f"trained with {_spec(config['sizes'])}; drop --layers to continue "
                             "that run, or train into a new --out")
        sizes = config["sizes"]
    _check_size(sizes, "train")
    config.update(sizes=sizes, classes=n_out if classify else None,
                  output=_output_unit(sizes, n_out if classify else None, config["activation"],
                                      config["loss"]))


def _check_images(config, data, x_train, classify):
    """cnn, lstm and --shift read each row as a 28x28 image of 784 pixels."""
    from .models import PIXELS
    what = f"--model {config['model']}" if config["model"] != "mlp" else "--shift"
    if x_train.shape[1] != PIXELS:
        raise UsageError(f"retrograd train: {what} reads 28x28 images, {PIXELS} pixels a row, "
                         f"but {data} has {x_train.shape[1]} features a row")
    if config["model"] != "mlp" and not classify:
        raise UsageError(f"retrograd train: --model {config['model']} classifies, but {data} "
                         "has real-valued targets, not class labels")


def _training_objects(config, epochs):
    """(model, optimizer, schedule) of a configuration, the weights drawn from its seed."""
    import retrograd as rg
    rg.manual_seed(config["seed"])
    model = _build_model(config)
    opt = _make_optimizer(config["optimizer"], model.parameters(), config.get("lr"),
                          config["weight_decay"])
    return model, opt, _make_schedule(config["schedule"], opt, epochs)


def _print_plan(config, lr, bs, epochs, train, val, n_test):
    split = (f"{len(val[0])} validation" if val is not None else
             "no validation split (too few rows): best.npz is chosen on the training loss")
    from .models import describe
    shift = f", random shifts up to {config['shift']} px" if config.get("shift") else ""
    print(f"retrograd train: {describe(config)}, {config['loss']} loss{shift}, "
          f"{config['optimizer']} (lr {lr:g}), batch {bs}, {epochs} epochs on {config['data']} ({len(train[0])} train / {split} / {n_test} test)")


def _fit(args, out, config, objects, train, val, bs, new_lr):
    """train.fit with the command's options."""
    from .train import fit
    model, opt, schedule = objects
    return fit(model, _loss_fn(config["loss"]), opt, train, val,
               epochs=args.epochs, batch_size=bs, seed=config["seed"],
               scheduler=schedule, early_stopping=config["early_stopping"],
               out_dir=None if args.no_save else out, resume=args.resume,
               progress=not args.no_progress, meta=config, compile=not args.no_compile,
               backend=args.backend, verbose=args.verbose,
               save_every=args.save_every or 1,
               save_interval=1.0 if args.save_every is None else 0.0, resume_lr=new_lr,
               augment=_augmentation(config))


def _augmentation(config):
    """fit's augment for --shift: each training batch's images moved at random."""
    k = config.get("shift", 0)
    if not k:
        return None
    from .data import random_shift
    from .models import IMAGE
    return lambda x, rng: random_shift(x, k, rng, IMAGE)


def _print_result(args, out, config, model, history, seconds, x_test, y_test):
    from .train import evaluate
    ev = evaluate(model, _loss_fn(config["loss"]), x_test, y_test)
    acc = f", test accuracy {ev['accuracy'] * 100:.2f}%" if ev["accuracy"] is not None else ""
    print(f"done in {seconds:.1f}s ({len(history)} epochs): test loss {ev['loss']:.4f}{acc}")
    if args.no_save:
        print("nothing saved (--no-save)")
    else:
        print(f"checkpoint: {os.path.join(out, 'last.npz')}  (best: "
              f"{os.path.join(out, 'best.npz')}; history: {os.path.join(out, 'history.json')})")


def _resume_command(args):
    """The command line that continues this run: the same arguments plus --resume."""
    # --overwrite started this run afresh; continuing it must not delete it again
    argv = [a for a in getattr(args, "argv", None) or [] if a != "--overwrite"]
    if "--resume" not in argv:
        argv.append("--resume")
    world = sys.modules.get(__package__ + ".distributed")
    world = world and world.active()        # a data-parallel run goes on as one
    return shlex.join((["mpiexec", "-n", str(world.size)] if world else []) + ["retrograd"] + argv)


def _interrupted(e) -> int:
    """One line for an interrupted command; exit code 128 + the signal (130, 143)."""
    from .train import TrainingInterrupted
    command = getattr(e, "resume_command", None)
    if isinstance(e, TrainingInterrupted):
        line = f"retrograd: {e.describe()}"
        if e.checkpoint is not None and (e.exact or e.saved is not None):
            line += f" -- continue with: {command}" if command else " -- add --resume to continue"
        code = 128 + int(e.signum)
    else:
        line = "retrograd: interrupted" + (
            f"; checkpoints already written are kept -- continue with: {command}" if command else "")
        code = 130
    print(("\n" if sys.stderr.isatty() else "") + line, file=sys.stderr)
    return code


def cmd_eval(args):
    from .train import evaluate, predict
    from .models import n_features
    model, config = _load_checkpoint(args.checkpoint)
    data = args.data or config["data"]
    _, (x, y) = _load_data(data, 0)
    if x.shape[1] != n_features(config):
        raise UsageError(f"retrograd eval: {data} has {x.shape[1]} features but the model in "
                         f"{args.checkpoint} takes {n_features(config)}")
    classes = config.get("classes")
    if classes and (y.dtype.kind not in "iu" or len(y) and (y.min() < 0 or y.max() >= classes)):
        raise UsageError(f"retrograd eval: {data} has labels outside the {classes} classes of "
                         f"the model in {args.checkpoint}")
    ev = evaluate(model, _loss_fn(config["loss"]), x, _targets_for(config, y))
    print(f"{args.checkpoint} on {data} ({len(x)} test samples): loss {ev['loss']:.4f}"
          + (f", accuracy {ev['accuracy'] * 100:.2f}%" if ev["accuracy"] is not None else ""))
    if classes:
        pred = _class_probabilities(predict(model, x)).argmax(axis=1)
        _print_confusion(_confusion(pred, y.astype(np.int64), classes))
    return 0


def _class_probabilities(out):
    """Rows of class probabilities from a classifier's outputs: softmax of logits, or
    (1 - p, p) from one sigmoid output."""
    if out.shape[1] == 1:
        return np.column_stack([1 - out[:, 0], out[:, 0]])
    import retrograd as rg
    return rg.softmax(rg.tensor(out), axis=1).numpy()


def cmd_predict(args):
    from .data import read_csv
    from .io import atomic_write
    from .train import predict
    from .models import n_features
    model, config = _load_checkpoint(args.checkpoint, "predict")
    x, _ = read_csv(args.input, label_column=None)
    if x.shape[1] != n_features(config):
        raise UsageError(f"retrograd predict: {args.input} has {x.shape[1]} columns but the model "
                         f"takes {n_features(config)} features")
    out = predict(model, x)
    path = args.output or os.path.splitext(args.input)[0] + ".pred.csv"
    _refuse_overwriting_inputs(path, {"checkpoint": args.checkpoint, "input": args.input})
    with atomic_write(path, "w") as f:
        if config.get("classes"):
            probs = _class_probabilities(out)
            f.write("prediction," + ",".join(f"p{k}" for k in range(probs.shape[1])) + "\n")
            # the likelier class, also of one sigmoid output (argmax over its one column was 0)
            for c, row in zip(probs.argmax(axis=1), probs):
                f.write(f"{c}," + ",".join(f"{v:.6g}" for v in row) + "\n")
        else:
            f.write(",".join(f"y{k}" for k in range(out.shape[1])) + "\n")
            for row in out:
                f.write(",".join(f"{v:.6g}" for v in row) + "\n")
    # the table may itself be going to stdout (--output /dev/stdout): the status line not
    print(f"wrote {len(out)} predictions to {path}", file=sys.stderr if _is_stdout(path) else None)
    return 0


def cmd_export(args):
    """The checkpoint's model as ONNX: input 'input' (batch, features), output 'output',
    the model's own outputs (logits for a classifier without a softmax layer; the p
    columns of ``retrograd predict`` are their softmax)."""
    from .models import describe, n_features
    if importlib.util.find_spec("onnx") is None:
        raise UsageError("retrograd export: needs the onnx package: pip install 'retrograd[onnx]'")
    model, config = _load_checkpoint(args.checkpoint, "export")
    _refuse_overwriting_inputs(args.output, {"checkpoint": args.checkpoint}, "export")
    from . import onnx
    dtype = next(iter(model.parameters())).dtype
    example = np.zeros((2, n_features(config)), dtype)
    onnx.export(model, example, args.output, opset=args.opset)
    print(f"wrote {args.output} ({describe(config)}; input 'input' (batch, "
          f"{n_features(config)}), output 'output')")
    return 0


def _refuse_overwriting_inputs(path, inputs, command="predict"):
    """A regular file at ``path`` that is one of ``inputs`` (by inode: through symlinks
    and hard links too) would be destroyed by writing it."""
    try:
        st = os.stat(path)
    except OSError:
        return                             # nothing there yet: it cannot be an input
    if not stat.S_ISREG(st.st_mode):       # /dev/stdout may be the same tty as stdin
        return
    for what, name in inputs.items():
        with contextlib.suppress(OSError):
            if os.path.samestat(st, os.stat(name)):
                flag = "--output " if command == "predict" else ""
                raise UsageError(f"retrograd {command}: {flag}{path} is the {what} {name} "
                                 "itself; writing it would destroy it, choose another file")


def _is_stdout(path):
    with contextlib.suppress(OSError, ValueError):
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    return False


def cmd_graph(args):
    import retrograd as rg
    from . import nn
    from .viz import GraphvizNotFound, draw_graph, graphviz_available, trace_gradients
    sizes = args.layers
    if len(sizes) < 2:
        raise UsageError("retrograd graph: --layers needs an input and an output size, e.g. 2-2-1")
    _check_size(sizes, "graph")
    ext = os.path.splitext(args.out)[1].lower().lstrip(".")
    if ext not in ("dot", "gv", "svg", "png", "pdf"):
        raise UsageError(f"retrograd graph: --out must end in .dot, .svg, .png or .pdf, got {args.out!r}")
    n_in, n_out = sizes[0], sizes[-1]
    if args.loss == "cross_entropy" and n_out < 2:
        raise UsageError("retrograd graph: --loss cross_entropy needs at least 2 outputs (e.g. 2-3-2)")

    rg.manual_seed(args.seed)
    model = nn.MLP(sizes, args.activation,
                   output_activation=None if args.loss == "cross_entropy" else args.activation)
    for i, layer in enumerate(l for l in model if isinstance(l, nn.Linear)):
        layer.weight.name, layer.bias.name = f"W{i + 1}", f"b{i + 1}"
    x, target = _graph_batch(n_in, n_out, args.loss, args.seed)
    loss = _loss_fn(args.loss)(model(rg.tensor(x, name="x")), rg.tensor(target, name="target"))
    trace = trace_gradients(loss)

    title = (f"{'-'.join(map(str, sizes))} {args.activation} MLP, {args.loss} loss "
             f"{loss.item():.4g}; in red: the gradient norm ‖∂L/∂node‖ of each node")
    formats = (ext,) if ext not in ("dot", "gv") else (("svg",) if graphviz_available() else ())
    try:
        written = draw_graph(loss, args.out, grads=trace, formats=formats, title=title)
    except GraphvizNotFound as e:              # asked for SVG/PNG: the DOT file is still there
        print(e.dot_path)
        print(f"retrograd graph: note: {e}", file=sys.stderr)
        return 0
    for path in written:
        print(path)
    if not formats and not graphviz_available():
        print(f"retrograd graph: note: {GraphvizNotFound(written[0], ('svg',))}", file=sys.stderr)
    return 0


def _graph_batch(n_in, n_out, loss, seed):
    """Four patterns and their targets for the loss: XOR's for two inputs, as in the
    notes, else random ones."""
    rng = np.random.default_rng(seed)
    if n_in == 2:
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
        labels = np.array([0, 1, 1, 0]) % n_out if n_out > 1 else np.array([0, 1, 1, 0])
    else:
        x = rng.standard_normal((4, n_in)).astype(np.float32)
        labels = rng.integers(0, max(n_out, 2), 4) % max(n_out, 2)
    if loss == "cross_entropy":
        return x, labels
    if n_out == 1:
        return x, labels.reshape(4, 1).astype(np.float32)
    return x, np.eye(n_out, dtype=np.float32)[labels]


def cmd_plot(args):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("retrograd plot: matplotlib is needed for plots: "
                         "pip install 'retrograd[viz]'") from None
    from .viz import load_history, plot_history
    rows = load_history(args.run_dir)      # a run folder or its history.json; clear errors
    run_dir = args.run_dir if os.path.isdir(args.run_dir) else os.path.dirname(args.run_dir) or "."
    out = args.out or run_dir
    name = os.path.basename(os.path.abspath(run_dir))
    title = f"{name}: {len(rows)} epoch{'s' if len(rows) != 1 else ''}"
    for ext in ("png", "svg"):
        print(plot_history(rows, os.path.join(out, f"curves.{ext}"), title=title))
    return 0


def cmd_explain(args):
    from .explain import explain_expression, explain_network, parse_numbers
    if args.html is not None:
        return _explain_html(args)
    for flag in ("steps", "batch"):
        if getattr(args, flag) not in (None, False):
            raise UsageError(f"retrograd explain: --{flag} is for the page of --html")
    net = {"layers": args.layers, "activation": args.activation, "output": args.output,
           "loss": args.loss, "seed": args.seed, "lr": args.lr,
           "x": None if args.input is None else parse_numbers(args.input, "--input"),
           "target": None if args.target is None else parse_numbers(args.target, "--target")}
    given = {k: v for k, v in net.items() if v is not None}
    if args.rnn:
        return _explain_rnn(args, given)
    if _expression_mode(args, given):
        text = explain_expression(args.expr, args.at)
    else:
        text = explain_network(**given)
    sys.stdout.write(text)
    return 0


# the flag of each network setting explain takes (the others are named as their flags)
_NETWORK_FLAGS = {"model": "layers", "x": "input", "y": "target", "mode": "batch"}


def _expression_mode(args, given):
    """Whether explain is about an --expr expression (True) or a network: --expr takes no
    network setting (``given``) and needs --at; --at belongs to --expr."""
    if args.expr is not None:
        if given:
            key = next(iter(given))
            raise UsageError(f"retrograd explain: --{_NETWORK_FLAGS.get(key, key)} describes a "
                             "network; it cannot be combined with --expr")
        if args.at is None:
            raise UsageError("retrograd explain: --expr needs the point, e.g. --at x1=2,x2=5")
        return True
    if args.at is not None:
        raise UsageError("retrograd explain: --at gives the point of an --expr expression")
    return False


def _explain_html(args):
    """``retrograd explain --html FILE``: the page of ``rg.viz.playground`` (or of
    ``expression_playground`` with --expr), from the same flags as the printout."""
    from .explain import parse_numbers
    from .viz.playground import expression_playground, playground
    if args.rnn:
        raise UsageError("retrograd explain: --html draws a feed-forward net or an --expr graph, "
                         "not --rnn")
    rows = lambda text, what: (None if text is None else
                               [parse_numbers(r, what) for r in text.split(";") if r.strip()])
    net = {"model": args.layers, "activation": args.activation, "output": args.output,
           "loss": args.loss, "seed": args.seed, "lr": args.lr,
           "x": rows(args.input, "--input"), "y": rows(args.target, "--target"),
           "steps": args.steps, "mode": "batch" if args.batch else None}
    given = {k: v for k, v in net.items() if v is not None}
    if _expression_mode(args, given):
        page = expression_playground(args.expr, args.at)
    else:
        page = playground(**given)
    page.save(args.html)
    print(f"wrote {args.html}")
    return 0


def _explain_rnn(args, given):
    """``retrograd explain --rnn [--seed N]``: every other flag describes something else."""
    from .explain import explain_rnn
    other = [f for f in given if f != "seed"] + [f for f in ("expr", "at")
                                                 if getattr(args, f) is not None]
    if other:
        flag = {"x": "input"}.get(other[0], other[0])
        raise UsageError(f"retrograd explain: --{flag} cannot be combined with --rnn (which "
                         "explains a fixed 3-step RNN; only --seed applies)")
    sys.stdout.write(explain_rnn(**({"seed": args.seed} if args.seed is not None else {})))
    return 0



COMMANDS = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "graph": cmd_graph,
            "plot": cmd_plot, "explain": cmd_explain, "export": cmd_export}


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        # Overflow and NaN are reported by the commands themselves (a non-finite loss
        # stops training with one line); NumPy's warnings would only add noise.
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return COMMANDS[args.command](args)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return _broken_pipe()
    except (RetrogradError, OSError) as e:
        print(f"retrograd: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        return _interrupted(e)


def _broken_pipe() -> int:
    """The reader of our output went away (``retrograd ... | head``): stop quietly with
    the status of a process killed by SIGPIPE, as cat or grep do. stdout is pointed at
    /dev/null so that Python's final flush of it does not complain either."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 128 + 13                        # 141, as the shell reports SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
