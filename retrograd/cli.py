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
    v = float(text)
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return v


def _positive(kind):
    def parse(text):
        v = kind(text)
        if not (math.isfinite(v) and v > 0):        # nan <= 0 is False: test what is wanted
            raise argparse.ArgumentTypeError(f"must be positive and finite, got {text}")
        return v
    return parse


def _non_negative(text):
    v = float(text)
    if not (math.isfinite(v) and v >= 0):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return v


def _seed(text):
    v = int(text)
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
    return p


def _add_train(sub):
    t = sub.add_parser("train", help="train an MLP (default: 784-100-10 tanh on bundled MNIST)",
                       epilog="10 % of the training data is held out for validation (the "
                              "choice of best.npz, early stopping); the test split is used only "
                              "for the final line. Ctrl-C (SIGINT) or SIGTERM stops after the "
                              "current batch, saves that exact point in OUT/last.npz and prints "
                              "the command that continues (--resume) to the same result; exit "
                              "code 130 for SIGINT, 143 for SIGTERM. A diverging run (NaN or "
                              "infinite loss or weights) stops with exit code 3, keeping the "
                              "last finite checkpoint. --resume takes every flag not given from "
                              "the checkpoint and refuses one that disagrees with it, except "
                              "--lr (applied) and --epochs.")
    g_ = dict(action=_Given)          # flags --resume compares with the checkpoint
    t.add_argument("--data", default="mnist5k", **g_,
                   help="mnist5k, xor, spirals, moons, a CSV file or a folder of IDX files")
    t.add_argument("--layers", type=_sizes, default=None, **g_,
                   help="hidden widths, e.g. 100 (the default) or 128,64; or every width "
                        "input to output, e.g. 784-100-10 or, for two classes with a sigmoid "
                        "output and sse/mse/bce, 2-2-1")
    t.add_argument("--activation", default="tanh", choices=HIDDEN_ACTIVATIONS,
                   **g_, help="activation of the hidden units")
    t.add_argument("--loss", default="cross_entropy", choices=LOSSES,
                   **g_, help="bce: binary cross-entropy, for one sigmoid output")
    t.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS, **g_, help="update rule")
    t.add_argument("--lr", type=_positive(float), default=None, **g_,
                   help="learning rate (default depends on the optimizer: sgd 0.1, adam 0.001, ...)")
    t.add_argument("--batch-size", type=_batch_size, default=32, **g_,
                   help="1 = online learning, N = minibatch, 'full' = batch learning")
    t.add_argument("--epochs", type=_positive(int), default=20, help="epochs to train (on "
                   "--resume: the total, counting those already done)")
    t.add_argument("--weight-decay", type=_non_negative, default=0.0, **g_,
                   help="L2 penalty on the weights")
    t.add_argument("--dropout", type=_unit_interval, default=0.0, **g_,
                   help="drop probability of the hidden units")
    t.add_argument("--schedule", default="none", choices=SCHEDULES, **g_, help="learning-rate schedule")
    t.add_argument("--early-stopping", type=_positive(int), default=None, metavar="PATIENCE", **g_,
                   help="stop after PATIENCE epochs without a better validation loss (default: "
                        "train all epochs)")
    t.add_argument("--seed", type=_seed, default=0, **g_,
                   help="seed of the weights, the shuffling and the splits")
    return t


def _add_run_flags(t):
    """Where a run goes and how it is saved: --out, --resume, --save-every, ..."""
    t.add_argument("--out", default=None, help="run folder (default: runs/<data>)")
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
                        "(pip install 'retrograd[fast]'); auto: Numba when installed and the "
                        "run is long enough to repay its compile (50,000 steps)")
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
    x.add_argument("--seed", type=int, default=None, help="seed of the weights (default 0)")
    x.add_argument("--lr", type=_positive(float), default=None, help="learning rate η (default 0.5)")
    x.add_argument("--input", default=None, metavar="X",
                   help="the pattern, e.g. 1,0 (default: XOR's (1, 0))")
    x.add_argument("--target", default=None, metavar="D",
                   help="its target, e.g. 1 or 1,0 (default 1, or the first class)")
    x.add_argument("--expr", default=None,
                   help="explain reverse-mode autodiff of an expression instead, e.g. "
                        "\"sin(x1) + x1*x2\"")
    x.add_argument("--at", default=None, help="the point for --expr, e.g. x1=2,x2=5")


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


def _check_size(sizes, command):
    """Refuse a model that cannot be allocated (before NumPy tries): its weights,
    gradients and about two optimizer slots, in float32, against the machine's memory."""
    params = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    need = 16 * params
    from .data.transforms import physical_memory
    memory = physical_memory(unknown=1 << 36)        # (64 GiB where the OS does not say)
    if need > memory:
        spec = _spec(sizes) if len(sizes) <= 6 else _spec(sizes[:3]) + "-...-" + str(sizes[-1])
        raise UsageError(f"retrograd {command}: a {spec[:120]} MLP has {params:,} parameters, "
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
    n_out = config["sizes"][-1]
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
    from . import nn
    return nn.MLP(config["sizes"], config["activation"], dropout=config.get("dropout", 0.0),
                  output_activation=config.get("output"))


def _loss_fn(name):
    from . import nn
    return nn.LOSSES[name]()

# what a checkpoint's model configuration must hold, and (for --resume) how it was trained
_CONFIG = {
    "sizes": lambda v: isinstance(v, list) and len(v) >= 2 and all(is_int(s) and s >= 1 for s in v),
    "activation": lambda v: v in HIDDEN_ACTIVATIONS, "loss": lambda v: v in LOSSES,
    "data": lambda v: isinstance(v, str),
    "dropout": lambda v: is_number(v) and 0 <= v < 1, "output": lambda v: v in (None, "sigmoid"),
    "classes": lambda v: v is None or (is_int(v) and v >= 1)}
_TRAINING = {
    "optimizer": lambda v: v in OPTIMIZERS, "lr": lambda v: is_number(v) and math.isfinite(v) and v > 0,
    "weight_decay": lambda v: is_number(v) and math.isfinite(v) and v >= 0,
    "batch_size": lambda v: v == "full" or (is_int(v) and v >= 1),
    "schedule": lambda v: v in SCHEDULES, "seed": lambda v: is_int(v) and v >= 0,
    "early_stopping": lambda v: v is None or (is_int(v) and v >= 1)}
_REQUIRED = ("sizes", "activation", "loss", "data")


def _check_config(config, path, command, training=False):
    """A checkpoint's configuration, checked before it builds anything (it may come
    from a hostile file: a huge 'sizes' must not allocate)."""
    from .io import CheckpointError
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: its model configuration is {type(config).__name__}, "
                              "not a dict; not a checkpoint written by 'retrograd train'")
    rules = {**_CONFIG, **(_TRAINING if training else {})}
    for key, ok in rules.items():
        if key not in config:
            if key in _REQUIRED:
                raise CheckpointError(f"{path}: its model configuration has no {key!r}; not "
                                      "a checkpoint written by 'retrograd train'")
            continue
        if not ok(config[key]):
            raise CheckpointError(f"{path}: its model configuration has an invalid {key!r}: "
                                  f"{config[key]!r:.80}")
    _check_size(config["sizes"], command)


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
_RESUMED = ("data", "activation", "loss", "dropout", "optimizer", "weight_decay", "batch_size",
            "schedule", "seed", "early_stopping")


def _show(v):
    return "none" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def _resumed_config(args, out):
    """--resume: the checkpoint's configuration, with the flags given checked against it.
    A flag that disagrees is refused (training would silently use the checkpoint's value);
    --lr is the exception: it is applied (returned as the new lr). Returns (config, the
    new lr or None, the lr training goes on with)."""
    path = os.path.join(out, "last.npz")
    ck = _training_checkpoint(path)
    config = _with_given_flags(args, {**ck["meta"]}, path)
    return _resumed_lr(args, ck, config)


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
    for key in _RESUMED:
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


def _resumed_lr(args, ck, config):
    """(config, the new lr or None, the lr training goes on with) for a given --lr."""
    # a given --lr is compared with the lr the run was started (or last resumed) with, not
    # the optimizer's current one: a schedule moves that, and the command printed after an
    # interruption repeats the original --lr
    opt_state = ck.get("optimizer")
    groups = opt_state.get("param_groups") if isinstance(opt_state, dict) else None
    current = groups[0].get("lr") if isinstance(groups, list) and groups and \
        isinstance(groups[0], dict) else None
    config.setdefault("lr", current if _TRAINING["lr"](current) else None)
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


def _new_config(args):
    return {"data": args.data, "activation": args.activation, "loss": args.loss,
            "dropout": args.dropout, "optimizer": args.optimizer,
            "lr": DEFAULT_LR[args.optimizer] if args.lr is None else args.lr,
            "weight_decay": args.weight_decay, "batch_size": args.batch_size,
            "schedule": args.schedule, "seed": args.seed, "early_stopping": args.early_stopping}


def cmd_train(args):
    if args.no_save and args.resume:
        raise UsageError("retrograd train: --resume continues a saved run; it cannot be "
                         "combined with --no-save")
    name = args.data if not os.path.exists(args.data) else os.path.basename(os.path.normpath(args.data))
    out = args.out or os.path.join("runs", name)
    from .rundir import claim
    # one run per folder, claimed before anything is read or printed (nothing is written
    # with --no-save, so nothing to claim)
    with (contextlib.nullcontext() if args.no_save else
          claim(out, resume=args.resume, overwrite=args.overwrite)):
        return _train(args, out)


def _train(args, out):
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
    print(f"retrograd train: {_spec(config['sizes'])} {config['activation']} MLP, "
          f"{config['loss']} loss, {config['optimizer']} (lr {lr:g}), batch {bs}, {epochs} "
          f"epochs on {config['data']} ({len(train[0])} train / {split} / {n_test} test)")


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
               save_interval=1.0 if args.save_every is None else 0.0, resume_lr=new_lr)


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
    return shlex.join(["retrograd"] + argv)


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
    model, config = _load_checkpoint(args.checkpoint)
    data = args.data or config["data"]
    _, (x, y) = _load_data(data, 0)
    if x.shape[1] != config["sizes"][0]:
        raise UsageError(f"retrograd eval: {data} has {x.shape[1]} features but the model in "
                         f"{args.checkpoint} takes {config['sizes'][0]}")
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
    model, config = _load_checkpoint(args.checkpoint, "predict")
    x, _ = read_csv(args.input, label_column=None)
    if x.shape[1] != config["sizes"][0]:
        raise UsageError(f"retrograd predict: {args.input} has {x.shape[1]} columns but the model "
                         f"takes {config['sizes'][0]} features")
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


def _refuse_overwriting_inputs(path, inputs):
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
                raise UsageError(f"retrograd predict: --output {path} is the {what} {name} "
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
    net = {"layers": args.layers, "activation": args.activation, "output": args.output,
           "loss": args.loss, "seed": args.seed, "lr": args.lr,
           "x": None if args.input is None else parse_numbers(args.input, "--input"),
           "target": None if args.target is None else parse_numbers(args.target, "--target")}
    given = {k: v for k, v in net.items() if v is not None}
    if args.expr is not None:
        if given:
            flag = {"x": "input"}.get(next(iter(given)), next(iter(given)))
            raise UsageError(f"retrograd explain: --{flag} describes a network; it cannot be "
                             "combined with --expr")
        if args.at is None:
            raise UsageError("retrograd explain: --expr needs the point, e.g. --at x1=2,x2=5")
        text = explain_expression(args.expr, args.at)
    else:
        if args.at is not None:
            raise UsageError("retrograd explain: --at gives the point of an --expr expression")
        text = explain_network(**given)
    sys.stdout.write(text)
    return 0



COMMANDS = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "graph": cmd_graph,
            "plot": cmd_plot, "explain": cmd_explain}


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
