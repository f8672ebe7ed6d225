"""Issue 10, the training loop and the train / eval / graph commands: the validation
split (1), resume rules (12), --layers (13), CSV regression (14), empty sets (15),
divergence (19), history out of the checkpoint (21), small ones (27) and the crafted
checkpoints and flags that ended in a traceback (22)."""
import json
import math
import os
import signal

import numpy as np
import pytest

import retrograd as rg
from retrograd import io, nn, optim
from retrograd import train as train_mod
from retrograd.cli import main
from retrograd.data import xor
from retrograd.train import TrainingDiverged, evaluate, fit, predict, validation_split
from test_signals import _signalling_loader


from cli_helpers import cli, one_line


MOONS = ["train", "--data", "moons", "--epochs", "2", "--no-progress"]


# ---------------------------------------------------------------- 1: validation split

def test_validation_comes_from_the_training_data_and_test_is_reported_only_at_the_end(
        tmp_path, capsys):
    code, out, err = cli(capsys, *MOONS, "--out", tmp_path / "r")
    assert code == 0, err
    assert "180 train / 20 validation / 200 test" in out
    epoch_lines = [l for l in out.splitlines() if l.startswith("epoch")]
    assert epoch_lines and all("val_loss" in l and "test" not in l for l in epoch_lines)
    rows = json.loads((tmp_path / "r" / "history.json").read_text())
    assert all("val_loss" in r and not any(k.startswith("test") for k in r) for r in rows)

    (x, y), (xt, yt) = rg.data.load_dataset("moons", seed=0)
    (_, _), (xv, yv) = validation_split(x, y, seed=0)
    ck = rg.load(tmp_path / "r" / "last.npz")
    model = nn.MLP(ck["meta"]["sizes"], "tanh")
    model.load_state_dict(ck["model"])
    val = evaluate(model, nn.CrossEntropyLoss(), xv, yv)
    test = evaluate(model, nn.CrossEntropyLoss(), xt, yt)
    assert rows[-1]["val_loss"] == pytest.approx(val["loss"], rel=1e-5)
    assert val["loss"] != pytest.approx(test["loss"], rel=1e-3)
    assert f"test loss {test['loss']:.4f}" in out.splitlines()[-2]


def test_a_data_set_too_small_to_split_says_best_is_chosen_on_the_training_loss(
        tmp_path, capsys):
    code, out, err = cli(capsys, "train", "--data", "xor", "--epochs", "2", "--no-progress",
                         "--out", tmp_path / "r")
    assert code == 0, err
    assert "4 train / no validation split" in out and "training loss" in out
    rows = json.loads((tmp_path / "r" / "history.json").read_text())
    assert "val_loss" not in rows[0]


# ---------------------------------------------------------------- 15 and 22: empty sets

def test_fit_refuses_an_empty_training_or_validation_set():
    x, y = xor()
    model = nn.MLP([2, 2, 2])
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(rg.RetrogradError, match="training set is empty"):
        fit(model, nn.CrossEntropyLoss(), opt, (x[:0], y[:0]), progress=False, log=None)
    with pytest.raises(rg.RetrogradError, match="validation set is empty"):
        fit(model, nn.CrossEntropyLoss(), opt, (x, y), (x[:0], y[:0]), progress=False, log=None)


# ---------------------------------------------------------------- 12: resume rules

@pytest.fixture
def moons_run(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = cli(capsys, *MOONS, "--epochs", "1", "--out", out)
    assert code == 0, err
    return out


@pytest.mark.parametrize("flag,new,old", [
    ("--optimizer", "adam", "sgd"), ("--activation", "relu", "tanh"), ("--loss", "mse", "cross_entropy"),
    ("--data", "spirals", "moons"), ("--weight-decay", "0.1", "0"), ("--layers", "8", "100"),
    ("--batch-size", "16", "32"), ("--dropout", "0.1", "0"), ("--schedule", "step", "none"),
    ("--seed", "1", "0"), ("--early-stopping", "3", "none"), ("--optimizer", "rprop", "sgd"),
])
def test_resume_refuses_flags_that_disagree_with_the_checkpoint(moons_run, capsys, flag, new, old):
    before = (moons_run / "last.npz").read_bytes()
    code, out, err = cli(capsys, *MOONS, "--epochs", "3", "--out", moons_run, "--resume", flag, new)
    assert code == 2
    line = one_line(err)
    assert flag in line and new in line and old in line, line
    assert (moons_run / "last.npz").read_bytes() == before


def test_resume_takes_unset_flags_from_the_checkpoint_and_applies_a_new_lr(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", "moons", "--no-progress", "--out", out]
    assert cli(capsys, *args, "--epochs", "1", "--optimizer", "adam", "--layers", "8")[0] == 0
    code, text, err = cli(capsys, *args, "--epochs", "2", "--resume")
    assert code == 0, err
    assert "2-8-2" in text and "adam (lr 0.001)" in text
    code, text, err = cli(capsys, *args, "--epochs", "3", "--resume", "--lr", "0.01")
    assert code == 0, err
    assert "learning rate 0.01 replaces the checkpoint's 0.001" in text
    rows = json.loads((out / "history.json").read_text())
    assert [r["lr"] for r in rows] == [0.001, 0.001, 0.01]


def test_resume_with_the_original_lr_of_a_scheduled_run_continues_it(tmp_path, capsys):
    """The command printed after an interruption repeats --lr; a schedule has moved the
    optimizer's lr since, which is no disagreement."""
    args = ["train", "--data", "moons", "--no-progress", "--out", tmp_path, "--schedule", "step",
            "--lr", "0.5"]
    assert cli(capsys, *args, "--epochs", "3")[0] == 0
    code, out, err = cli(capsys, *args, "--epochs", "4", "--resume")
    assert code == 0, err
    assert "(lr 0.0005)" in out.splitlines()[0]
    rows = json.loads((tmp_path / "history.json").read_text())
    assert [r["lr"] for r in rows] == pytest.approx([0.5, 0.05, 0.005, 0.0005])
    code, out, err = cli(capsys, *args[:-1], "0.2", "--epochs", "5", "--resume")
    assert code == 2 and "--schedule step" in one_line(err)


def test_fit_resume_with_another_optimizer_is_a_checkpoint_error(tmp_path):
    x, y = xor()
    for name, make in (("sgd", lambda p: optim.SGD(p, lr=0.1)), ("adam", lambda p: optim.Adam(p))):
        model = nn.MLP([2, 3, 2])
        if name == "adam":
            with pytest.raises(io.CheckpointError, match="SGD.*Adam|optimizer"):
                fit(model, nn.CrossEntropyLoss(), make(model.parameters()), (x, y), epochs=2,
                    out_dir=tmp_path, resume=True, progress=False, log=None)
        else:
            fit(model, nn.CrossEntropyLoss(), make(model.parameters()), (x, y), epochs=1,
                out_dir=tmp_path, progress=False, log=None)


# ---------------------------------------------------------------- 13: --layers

def test_a_full_layer_spec_is_taken_as_written(tmp_path, capsys):
    code, out, err = cli(capsys, "train", "--data", "xor", "--layers", "2-2-1", "--activation",
                         "sigmoid", "--loss", "sse", "--epochs", "1", "--no-progress",
                         "--out", tmp_path / "a")
    assert code == 0, err
    ck = rg.load(tmp_path / "a" / "last.npz")
    assert ck["meta"]["sizes"] == [2, 2, 1] and ck["model"]["2.weight"].shape == (2, 1)
    code, out, err = cli(capsys, "train", "--data", "xor", "--layers", "3", "--epochs", "1",
                         "--no-progress", "--out", tmp_path / "b")
    assert code == 0 and "2-3-2 tanh" in out


@pytest.mark.parametrize("argv,words", [
    (["--data", "mnist5k", "--layers", "784-100-11"], ["11", "10 classes"]),
    (["--data", "xor", "--layers", "3-2-2"], ["3", "2 features"]),
    (["--data", "xor", "--layers", "-5"], ["-5"]),
    (["--data", "xor", "--layers", "0"], ["0"]),
    (["--data", "xor", "--layers", "2-0-2"], ["2-0-2"]),
    (["--data", "xor", "--layers", "2-2-1"], ["sigmoid"]),                 # tanh + cross_entropy
    (["--data", "xor", "--layers", "2-2-1", "--activation", "sigmoid"], ["cross_entropy"]),
    (["--data", "spirals", "--layers", "2-4-1", "--activation", "sigmoid", "--loss", "sse"],
     ["1 output"]),  # spirals has 2 classes: fine; see the next line
    (["--data", "xor", "--loss", "bce"], ["bce"]),
])
def test_layer_specs_that_do_not_fit_are_refused(tmp_path, capsys, argv, words):
    code, out, err = cli(capsys, "train", *argv, "--epochs", "1", "--no-progress",
                         "--out", tmp_path / "r")
    if argv[1] == "spirals":            # two classes, sigmoid, SSE: one output is allowed
        assert code == 0, err
        assert rg.load(tmp_path / "r" / "last.npz")["meta"]["sizes"] == [2, 4, 1]
        return
    assert code == 2, out
    line = one_line(err)
    assert all(w in line for w in words), line


XOR_221 = ["train", "--data", "xor", "--layers", "2-2-1", "--activation", "sigmoid", "--loss",
           "sse", "--batch-size", "full", "--no-progress"]


@pytest.mark.parametrize("flags", [
    ["--lr", "2", "--epochs", "2000"],                                  # the README's command
    ["--optimizer", "rprop", "--lr", "0.05", "--epochs", "300", "--seed", "1"],
    ["--optimizer", "quickprop", "--lr", "0.5", "--epochs", "500", "--seed", "2"],
], ids=["sgd", "rprop", "quickprop"])
def test_xor_2_2_1_sigmoid_reaches_100_percent_with_the_readme_command(tmp_path, capsys, flags):
    code, out, err = cli(capsys, *XOR_221, *flags, "--out", tmp_path / "xor")
    assert code == 0, err
    assert "test accuracy 100.00%" in out, out[-400:]
    code, out, err = cli(capsys, "eval", tmp_path / "xor" / "best.npz")
    assert code == 0, err
    assert "accuracy 100.00%" in out


def test_bce_with_one_sigmoid_output(tmp_path, capsys):
    code, out, err = cli(capsys, "train", "--data", "moons", "--layers", "2-8-1", "--activation",
                         "sigmoid", "--loss", "bce", "--epochs", "3", "--no-progress",
                         "--out", tmp_path / "r")
    assert code == 0, err
    code, out, err = cli(capsys, "eval", tmp_path / "r" / "last.npz")
    assert code == 0, err
    lines = out.splitlines()
    counts = [int(v) for l in lines[lines.index(next(l for l in lines if l.startswith("confusion"))) + 2:]
              for v in l.split()[1:]]
    assert sum(counts) == 200 and len(counts) == 4


# ---------------------------------------------------------------- 14: regression

def test_regression_from_a_csv_with_mse(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 3))
    y = x @ [0.5, -1.0, 2.0] + 0.25
    np.savetxt(tmp_path / "y_real.csv", np.column_stack([x, y]), delimiter=",", fmt="%.6f")
    code, out, err = cli(capsys, "train", "--data", tmp_path / "y_real.csv", "--loss", "mse",
                         "--layers", "16", "--optimizer", "adam", "--lr", "0.01", "--epochs", "30",
                         "--no-progress", "--out", tmp_path / "r")
    assert code == 0, err
    assert "3-16-1" in out and "accuracy" not in out
    first = float(out.split("loss ")[1].split()[0])
    last = float(out.split("test loss ")[1].split()[0].rstrip(","))
    assert last < first / 4, out
    code, out, err = cli(capsys, "eval", tmp_path / "r" / "last.npz")
    assert code == 0, err


# ---------------------------------------------------------------- 19: divergence

def _good_run(out_dir, epochs, step=None, resume=False):
    x, y = xor()
    rg.manual_seed(0)
    model = nn.MLP([2, 4, 2])
    opt = optim.SGD(model.parameters(), lr=0.1)
    return model, fit(model, nn.CrossEntropyLoss(), opt, (x, y), (x, y), epochs=epochs,
                      batch_size=2, out_dir=out_dir, resume=resume, progress=False, log=None,
                      step=step, compile=False)


@pytest.mark.parametrize("how", ["loss", "weights"])
def test_divergence_keeps_the_last_finite_checkpoint(tmp_path, how):
    _good_run(tmp_path, 2)
    files = {n: (tmp_path / n).read_bytes() for n in ("last.npz", "best.npz", "history.json")}
    calls = [0]

    def step(xb, yb):          # a real step; then the loss, or the weights, go non-finite
        model = step.model
        out = model(xb)
        loss = nn.CrossEntropyLoss()(out, yb)
        calls[0] += 1
        if how == "loss":
            return rg.tensor(np.float32(np.nan)), out
        if calls[0] == 2:       # the epoch's last batch: the loss was finite, the model is not
            model[0].weight.data[...] = np.inf
        return loss, out

    x, y = xor()
    rg.manual_seed(0)
    step.model = model = nn.MLP([2, 4, 2])
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TrainingDiverged, match="epoch 3.*last.npz holds epoch 2"):
        fit(model, nn.CrossEntropyLoss(), opt, (x, y), (x, y), epochs=4, batch_size=2,
            out_dir=tmp_path, resume=True, progress=False, log=None, step=step)
    for n, data in files.items():
        assert (tmp_path / n).read_bytes() == data, n


def test_retrograd_train_stops_on_divergence_with_exit_code_3(tmp_path, capsys):
    code, out, err = cli(capsys, "train", "--data", "moons", "--loss", "mse", "--activation", "relu",
                         "--lr", "1e30", "--epochs", "3", "--no-progress", "--out", tmp_path / "r")
    assert code == 3
    assert "diverged" in one_line(err)
    assert not (tmp_path / "r" / "last.npz").exists()


def test_history_json_writes_null_for_non_finite_numbers(tmp_path):
    h = train_mod.History([{"epoch": 1, "train_loss": 1.0, "val_acc": math.nan, "lr": math.inf}])
    h.to_json(tmp_path / "h.json")
    text = (tmp_path / "h.json").read_text()
    assert json.loads(text) == [{"epoch": 1, "train_loss": 1.0, "val_acc": None, "lr": None}]
    assert "NaN" not in text and "Infinity" not in text


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-0.1"])
def test_lr_must_be_a_positive_finite_number(tmp_path, capsys, value):
    code, _, err = cli(capsys, "train", "--data", "xor", f"--lr={value}", "--out", tmp_path)
    assert code == 2 and "--lr" in one_line(err)


# ---------------------------------------------------------------- 21: history, --save-every

@pytest.mark.parametrize("at,held", [(6, (2, 1)), (7, (3, 0))])
def test_the_checkpoint_holds_no_history_and_save_every_still_resumes_exactly(
        tmp_path, monkeypatch, at, held):
    full, h_full = _good_run(tmp_path / "full", 6)
    assert "history" not in rg.load(tmp_path / "full" / "last.npz")

    # a SIGINT in epoch 3 after batch 1, or at the start of epoch 4, with save_every=4:
    # the point where it stopped is saved although save_every had not saved epoch 3
    Loader = _signalling_loader(at, [signal.SIGINT])

    monkeypatch.setattr(train_mod, "DataLoader", Loader)
    x, y = xor()
    rg.manual_seed(0)
    model = nn.MLP([2, 4, 2])
    with pytest.raises(train_mod.TrainingInterrupted):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), (x, y), (x, y),
            epochs=6, batch_size=2, out_dir=tmp_path / "cut", progress=False, log=None,
            save_every=4, compile=False)
    ck = rg.load(tmp_path / "cut" / "last.npz")
    assert (ck["epoch"], (ck["partial"] or {"batch": 0})["batch"]) == held
    monkeypatch.undo()
    resumed, h_res = _good_run(tmp_path / "cut", 6, resume=True)
    for (n, a), (_, b) in zip(full.named_parameters(), resumed.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=n)
    assert [r["train_loss"] for r in h_res] == [r["train_loss"] for r in h_full]
    saved = json.loads((tmp_path / "cut" / "history.json").read_text())
    assert [r["epoch"] for r in saved] == [1, 2, 3, 4, 5, 6]


def test_save_every_and_no_save_from_the_cli(tmp_path, capsys, monkeypatch):
    writes = []
    real = io.save
    monkeypatch.setattr(io, "save", lambda obj, path: writes.append(os.path.basename(path))
                        or real(obj, path))
    code, out, err = cli(capsys, "train", "--data", "xor", "--epochs", "5", "--save-every", "2",
                         "--no-progress", "--out", tmp_path / "r")
    assert code == 0, err
    assert writes.count("last.npz") == 3                 # epochs 2, 4 and the last one
    assert rg.load(tmp_path / "r" / "last.npz")["epoch"] == 5
    code, out, err = cli(capsys, "train", "--data", "xor", "--epochs", "3", "--no-save",
                         "--no-progress", "--out", tmp_path / "n")
    assert code == 0, err
    assert not (tmp_path / "n").exists() and "nothing saved (--no-save)" in out
    code, out, err = cli(capsys, "train", "--data", "xor", "--no-save", "--resume",
                         "--out", tmp_path / "r")
    assert code == 2 and "--no-save" in one_line(err)
    code, out, err = cli(capsys, "train", "--data", "xor", "--save-every", "0", "--out", tmp_path)
    assert code == 2 and "--save-every" in one_line(err)


# ---------------------------------------------------------------- 27: small ones

def test_version_help_defaults_early_stop_line_and_predict_on_one_row(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"retrograd {rg.__version__}"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: sgd)" in text and "(default: 20)" in text and "(default: tanh)" in text
    with pytest.raises(SystemExit):
        main(["graph", "--help"])
    assert "(default: sigmoid)" in " ".join(capsys.readouterr().out.split())

    x, y = xor()
    rg.manual_seed(0)
    model = nn.MLP([2, 2, 2])
    lines = []
    fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.0), (x, y), epochs=50,
        batch_size="full", early_stopping=3, progress=False, log=lines.append)
    assert lines[-1].startswith("stopped early at epoch 4")
    assert predict(model, x[0]).shape == (1, 2)
    assert predict(model, rg.tensor(x[0])).shape == (1, 2)
    assert predict(model, x).shape == (4, 2)


# ---------------------------------------------------------------- 22: crafted checkpoints

@pytest.fixture(scope="module")
def xor_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("xor")
    assert main(["train", "--data", "xor", "--epochs", "1", "--no-progress", "--out", str(out)]) == 0
    return out


def _set(d, path, value):
    *head, last = path
    for k in head:
        d = d[k]
    if value is KeyError:
        del d[last]
    else:
        d[last] = value


CRAFTED = [
    (("meta", "loss"), KeyError), (("meta", "loss"), 5), (("meta", "loss"), "hinge"),
    (("meta", "data"), KeyError), (("meta", "data"), 7), (("meta", "sizes"), KeyError),
    (("meta", "sizes"), "2-2"), (("meta", "sizes"), [2]), (("meta", "sizes"), [2, -3, 2]),
    (("meta", "sizes"), [2, 10 ** 12, 2]), (("meta", "sizes"), [2, 1.5, 2]),
    (("meta", "sizes"), [2, True, 2]), (("meta", "activation"), None), (("meta",), "x"),
    (("meta", "dropout"), "x"), (("meta", "classes"), "x"),
]
RESUME_ONLY = [
    (("epoch",), KeyError), (("epoch",), "3"), (("epoch",), -1), (("epoch",), 2.5),
    (("best",), "low"), (("best",), None), (("bad_epochs",), "x"), (("partial",), "x"),
    (("partial",), {"batch": "x"}), (("partial",), {"batch": 1}),
    (("optimizer", "param_groups", 0, "lr"), "fast"), (("optimizer", "param_groups", 0, "lr"), None),
    (("optimizer", "param_groups", 0), {"params": [0, 1, 2, 3]}),
    (("optimizer", "param_groups"), "x"), (("optimizer",), KeyError), (("meta", "optimizer"), 3),
    (("meta", "lr"), "x"),
]


@pytest.mark.parametrize("where,value", CRAFTED + RESUME_ONLY,
                         ids=lambda v: repr(v)[:30])
def test_crafted_checkpoint_metadata_gets_one_line_and_exit_2(xor_run, tmp_path, capsys, where,
                                                             value):
    ck = rg.load(xor_run / "last.npz")
    _set(ck, where, value)
    run = tmp_path / "run"
    run.mkdir()
    rg.save(ck, run / "last.npz")
    (run / "history.json").write_text((xor_run / "history.json").read_text())
    if (where, value) in CRAFTED:
        code, out, err = cli(capsys, "eval", run / "last.npz")
        assert code == 2, out
        one_line(err)
    code, out, err = cli(capsys, "train", "--data", "xor", "--epochs", "3", "--no-progress",
                         "--out", run, "--resume")
    assert code == 2, out
    one_line(err)


def test_a_malformed_history_json_on_resume_is_one_line(xor_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.npz").write_bytes((xor_run / "last.npz").read_bytes())
    (run / "history.json").write_text('{"epoch": 1}')
    code, out, err = cli(capsys, "train", "--data", "xor", "--epochs", "3", "--no-progress",
                         "--out", run, "--resume")
    assert code == 2 and "history.json" in one_line(err)
    # a checkpoint of an older version kept its history inside: checked the same way
    (run / "history.json").unlink()
    ck = rg.load(xor_run / "last.npz")
    ck["history"] = "x"
    rg.save(ck, run / "last.npz")
    code, out, err = cli(capsys, "train", "--data", "xor", "--epochs", "3", "--no-progress",
                         "--out", run, "--resume")
    assert code == 2 and "history" in one_line(err)


@pytest.mark.parametrize("argv,word", [
    (["train", "--data", "xor", "--layers", "100000,100000"], "too big"),
    (["train", "--data", "xor", "--layers", "99999999999999999999"], "too big"),
    (["train", "--data", "xor", "--weight-decay", "-1"], "--weight-decay"),
    (["train", "--data", "xor", "--weight-decay", "nan"], "--weight-decay"),
    (["train", "--data", "xor", "--seed", "-1"], "--seed"),
    (["graph", "--seed", "-1"], "--seed"),
    (["graph", "--layers", "100000,100000"], "too big"),
    (["graph", "--layers", "2-99999999999999999999-1"], "too big"),
    (["graph", "--layers", "-5"], "-5"),
])
def test_flags_that_used_to_end_in_a_traceback(tmp_path, capsys, argv, word):
    code, out, err = cli(capsys, *argv, "--out", tmp_path / ("g.dot" if argv[0] == "graph" else "r"))
    assert code == 2
    assert word in one_line(err)
