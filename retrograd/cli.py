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
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import stat
import sys
import time
import warnings

import numpy as np

from .errors import RetrogradError

EXIT_USAGE = 2

OPTIMIZERS = ("sgd", "momentum", "nesterov", "rprop", "quickprop", "adam", "adamw", "rmsprop",
              "adagrad")
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.02, "nesterov": 0.02, "rprop": 0.001, "quickprop": 0.05,
              "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "adagrad": 0.05}
SCHEDULES = ("none", "step", "exp", "cosine", "plateau")


class UsageError(Exception):
    """A mistake in the command line: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):                      # one line, not usage + error
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


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


def _sizes(text):
    if text.strip() in ("", "none"):
        return []
    try:
        sizes = [int(s) for s in text.replace("-", ",").split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be sizes like 100 or 128,64 or 784-100-10, got {text!r}")
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}")
    return sizes


def _unit_interval(text):
    v = float(text)
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return v


def _positive(kind):
    def parse(text):
        v = kind(text)
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return v
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="retrograd", description="Train and use multilayer perceptrons with "
                "retrograd, a NumPy-native backpropagation library.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser("train", help="train an MLP (default: 784-100-10 tanh on bundled MNIST)",
                       epilog="Ctrl-C (SIGINT) or SIGTERM stops after the current batch, saves "
                              "that exact point in OUT/last.npz and prints the command that "
                              "continues (--resume) to the same result; exit code 130 for "
                              "SIGINT, 143 for SIGTERM.")
    t.add_argument("--data", default="mnist5k",
                   help="mnist5k (default), xor, spirals, moons, a CSV file or a folder of IDX files")
    t.add_argument("--layers", type=_sizes, default=None,
                   help="hidden layer sizes, e.g. 100 (default) or 128,64; a full spec such as "
                        "784-100-10 is accepted when its ends match the data")
    t.add_argument("--activation", default="tanh", choices=["tanh", "sigmoid", "relu", "leaky_relu"])
    t.add_argument("--loss", default="cross_entropy", choices=["cross_entropy", "mse", "sse"])
    t.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS)
    t.add_argument("--lr", type=_positive(float), default=None,
                   help="learning rate (default depends on the optimizer: sgd 0.1, adam 0.001, ...)")
    t.add_argument("--batch-size", type=_batch_size, default=32,
                   help="1 = online learning, N = minibatch, 'full' = batch learning (default 32)")
    t.add_argument("--epochs", type=_positive(int), default=20)
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--dropout", type=_unit_interval, default=0.0)
    t.add_argument("--schedule", default="none", choices=SCHEDULES, help="learning-rate schedule")
    t.add_argument("--early-stopping", type=_positive(int), default=None, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a better validation loss "
                        "(a validation split of 10%% is then held out of the training data)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None, help="run folder (default: runs/<data>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (without it, or --resume, a rerun "
                        "into a folder holding a run is refused)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--no-compile", action="store_true",
                   help="run each step eagerly (forward, backward, update op by op) instead of "
                        "as one compiled call; the results are the same up to float rounding")

    e = sub.add_parser("eval", help="metrics and confusion matrix of a checkpoint")
    e.add_argument("checkpoint")
    e.add_argument("--data", default=None, help="data set to evaluate on (default: the training one)")

    r = sub.add_parser("predict", help="write predictions for the rows of a CSV file")
    r.add_argument("checkpoint")
    r.add_argument("input", help="CSV file of feature rows (no label column)")
    r.add_argument("--output", default=None, help="where to write (default: INPUT.pred.csv)")

    g = sub.add_parser("graph", help="draw the computational graph of a small MLP's loss, with "
                       "each node's gradient norm (DOT, and SVG/PNG when Graphviz is installed)")
    g.add_argument("--layers", type=_sizes, default=[2, 2, 1],
                   help="all layer sizes, input to output (default 2-2-1, the notes' XOR net)")
    g.add_argument("--activation", default="sigmoid", choices=["sigmoid", "tanh", "relu", "leaky_relu"])
    g.add_argument("--loss", default="sse", choices=["sse", "mse", "cross_entropy"])
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", default="graph.dot",
                   help="graph.dot (default; graph.svg too when Graphviz is installed), "
                        "or a .svg/.png/.pdf path (the .dot file is written beside it)")

    pl = sub.add_parser("plot", help="training curves (PNG and SVG) from a run folder's history.json")
    pl.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by 'retrograd train' "
                    "(or its history.json)")
    pl.add_argument("--out", default=None, help="folder for the pictures (default: RUN_DIR)")

    x = sub.add_parser("explain", help="one step of backprop printed in the notes' words (default: "
                       "the 2-2-1 net), or the adjoints of an expression with --expr")
    x.add_argument("--layers", type=_sizes, default=None,
                   help="all layer sizes, input to output, e.g. 2-2-1 (default) or 2-3-2")
    x.add_argument("--activation", default=None, choices=["sigmoid", "tanh", "relu", "identity"],
                   help="f of the hidden units (default sigmoid)")
    x.add_argument("--output", default=None,
                   choices=["sigmoid", "tanh", "relu", "identity", "softmax"],
                   help="f of the output units (default: as --activation; softmax or sigmoid "
                        "for cross_entropy)")
    x.add_argument("--loss", default=None, choices=["sse", "mse", "cross_entropy"],
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

    return p


# ---------------------------------------------------------------- helpers

def _load_data(name, seed):
    from .data import load_dataset
    return load_dataset(name, seed=seed)


def _model_sizes(layers, n_in, n_out):
    if layers is None:
        layers = [100]
    if len(layers) >= 2 and layers[0] == n_in and layers[-1] == n_out:
        return layers
    return [n_in] + list(layers) + [n_out]


def _problem(y_train):
    """(n_out, is_classification) from the labels."""
    if y_train.dtype.kind in "iu":
        return int(y_train.max()) + 1, True
    return (y_train.shape[1] if y_train.ndim == 2 else 1), False


def _targets_for(loss, y, n_out):
    """Cross-entropy takes integer labels; MSE/SSE on a classifier take one-hot rows."""
    if loss == "cross_entropy" or y.dtype.kind not in "iu":
        return y
    from .data import one_hot
    return one_hot(y, n_out).astype(np.float32)


def _make_optimizer(name, params, lr, weight_decay):
    from . import optim
    lr = DEFAULT_LR[name] if lr is None else lr
    wd = dict(weight_decay=weight_decay)
    if name == "sgd":
        return optim.SGD(params, lr=lr, **wd)
    if name == "momentum":
        return optim.SGD(params, lr=lr, momentum=0.9, **wd)
    if name == "nesterov":
        return optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, **wd)
    cls = {"rprop": optim.Rprop, "quickprop": optim.Quickprop, "adam": optim.Adam,
           "adamw": optim.AdamW, "rmsprop": optim.RMSprop, "adagrad": optim.Adagrad}[name]
    return cls(params, lr=lr, **wd)


def _make_schedule(name, opt, epochs):
    from .optim import lr_scheduler as s
    return {"none": lambda: None,
            "step": lambda: s.StepLR(opt, step_size=max(1, epochs // 3), gamma=0.1),
            "exp": lambda: s.ExponentialLR(opt, gamma=0.95),
            "cosine": lambda: s.CosineAnnealingLR(opt, T_max=epochs),
            "plateau": lambda: s.ReduceLROnPlateau(opt, factor=0.5, patience=2)}[name]()


def _build_model(config):
    from . import nn
    return nn.MLP(config["sizes"], config["activation"], dropout=config.get("dropout", 0.0))


def _loss_fn(name):
    from . import nn
    return {"cross_entropy": nn.CrossEntropyLoss(), "mse": nn.MSELoss(), "sse": nn.SSELoss()}[name]


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


def _load_checkpoint(path):
    from . import io
    ck = io.load(path)
    if not isinstance(ck, dict) or "model" not in ck or "meta" not in ck:
        raise io.CheckpointError(f"{path}: not a checkpoint written by 'retrograd train' "
                                 "(no model configuration inside)")
    config = ck["meta"]
    try:
        model = _build_model(config)
        model.load_state_dict(ck["model"])
    except (KeyError, TypeError, ValueError, RetrogradError) as e:
        raise io.CheckpointError(f"{path}: the model configuration or weights inside do not fit "
                                 f"together ({type(e).__name__}: {e})") from None
    model.eval()
    return model, config


# ---------------------------------------------------------------- commands

def cmd_train(args):
    import retrograd as rg
    from .rundir import claim
    from .train import fit

    (x_train, y_train), (x_test, y_test) = _load_data(args.data, args.seed)
    n_out, classify = _problem(y_train)
    if args.loss == "cross_entropy" and not classify:
        raise UsageError(f"retrograd train: --loss cross_entropy needs integer class labels, but "
                         f"{args.data} has real-valued targets; use --loss mse")
    sizes = _model_sizes(args.layers, x_train.shape[1], n_out)
    name = args.data if not os.path.exists(args.data) else os.path.basename(os.path.normpath(args.data))
    out = args.out or os.path.join("runs", name)
    config = {"sizes": sizes, "activation": args.activation, "loss": args.loss,
              "dropout": args.dropout, "data": args.data, "classes": n_out if classify else None}

    rg.manual_seed(args.seed)
    model = _build_model(config)
    opt = _make_optimizer(args.optimizer, model.parameters(), args.lr, args.weight_decay)
    schedule = _make_schedule(args.schedule, opt, args.epochs)
    y_tr, y_te = _targets_for(args.loss, y_train, n_out), _targets_for(args.loss, y_test, n_out)
    val, train = (x_test, y_te), (x_train, y_tr)
    if args.early_stopping:          # never stop on the test set: hold out 10% of training data
        k = max(1, len(x_train) // 10)
        perm = np.random.default_rng(args.seed).permutation(len(x_train))
        val = (x_train[perm[:k]], y_tr[perm[:k]])
        train = (x_train[perm[k:]], y_tr[perm[k:]])
    bs = len(train[0]) if args.batch_size == "full" else args.batch_size

    print(f"retrograd train: {'-'.join(map(str, sizes))} {args.activation} MLP, {args.loss} loss, "
          f"{args.optimizer} (lr {opt.param_groups[0]['lr']:g}), batch {bs}, {args.epochs} epochs "
          f"on {args.data} ({len(train[0])} train / {len(x_test)} test)")
    t0 = time.perf_counter()
    try:
        with claim(out, resume=args.resume, overwrite=args.overwrite):    # one run per folder
            history = fit(model, _loss_fn(args.loss), opt, train,
                          val if args.early_stopping else (x_test, y_te),
                          epochs=args.epochs, batch_size=bs, seed=args.seed, scheduler=schedule,
                          early_stopping=args.early_stopping, out_dir=out, resume=args.resume,
                          progress=not args.no_progress, meta=config, compile=not args.no_compile,
                          log=lambda line: print(line.replace("val_", "test_")
                                                 if not args.early_stopping else line))
    except KeyboardInterrupt as e:          # fit's TrainingInterrupted: say how to go on
        e.resume_command = _resume_command(args)
        raise
    seconds = time.perf_counter() - t0
    from .train import evaluate
    ev = evaluate(model, _loss_fn(args.loss), x_test, y_te)
    acc = f", test accuracy {ev['accuracy'] * 100:.2f}%" if ev["accuracy"] is not None else ""
    print(f"done in {seconds:.1f}s ({len(history)} epochs): test loss {ev['loss']:.4f}{acc}")
    print(f"checkpoint: {os.path.join(out, 'last.npz')}  (history: {os.path.join(out, 'history.json')})")
    return 0


def _resume_command(args):
    """The command line that continues this run: the same arguments plus --resume."""
    argv = list(getattr(args, "argv", None) or [])
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
    n_out = config["sizes"][-1]
    ev = evaluate(model, _loss_fn(config["loss"]), x, _targets_for(config["loss"], y, n_out))
    print(f"{args.checkpoint} on {data} ({len(x)} test samples): loss {ev['loss']:.4f}"
          + (f", accuracy {ev['accuracy'] * 100:.2f}%" if ev["accuracy"] is not None else ""))
    if config.get("classes"):
        pred = predict(model, x).argmax(axis=1)
        _print_confusion(_confusion(pred, y.astype(np.int64), n_out))
    return 0


def cmd_predict(args):
    from .data import read_csv
    from .io import atomic_write
    from .train import predict
    model, config = _load_checkpoint(args.checkpoint)
    x, _ = read_csv(args.input, label_column=None)
    if x.shape[1] != config["sizes"][0]:
        raise UsageError(f"retrograd predict: {args.input} has {x.shape[1]} columns but the model "
                         f"takes {config['sizes'][0]} features")
    out = predict(model, x)
    path = args.output or os.path.splitext(args.input)[0] + ".pred.csv"
    _refuse_overwriting_inputs(path, {"checkpoint": args.checkpoint, "input": args.input})
    with atomic_write(path, "w") as f:
        if config.get("classes"):
            e = np.exp(out - out.max(axis=1, keepdims=True))
            probs = e / e.sum(axis=1, keepdims=True)
            f.write("prediction," + ",".join(f"p{k}" for k in range(probs.shape[1])) + "\n")
            for c, row in zip(out.argmax(axis=1), probs):
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
    rng = np.random.default_rng(args.seed)
    if n_in == 2:                                  # the four XOR patterns, as in the notes
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
        labels = np.array([0, 1, 1, 0]) % n_out if n_out > 1 else np.array([0, 1, 1, 0])
    else:
        x = rng.standard_normal((4, n_in)).astype(np.float32)
        labels = rng.integers(0, max(n_out, 2), 4) % max(n_out, 2)
    if args.loss == "cross_entropy":
        target = labels
    elif n_out == 1:
        target = labels.reshape(4, 1).astype(np.float32)
    else:
        target = np.eye(n_out, dtype=np.float32)[labels]
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
