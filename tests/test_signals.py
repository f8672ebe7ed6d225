"""Crash-safe training (issue 6, item 4).

SIGINT and SIGTERM during ``fit`` stop at the next batch boundary, write a
checkpoint of that exact point and raise ``TrainingInterrupted``; ``resume``
then ends exactly where an uninterrupted run ends. ``retrograd train`` turns the
interruption into one line with the command that continues, and exit code 130
(SIGINT) or 143 (SIGTERM), 128 + the signal's number as a shell reports it. A
process SIGKILLed in the middle of ``rg.save`` leaves the previous file intact.
"""
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import retrograd as rg
from retrograd import nn, optim
from retrograd import train as train_mod
from retrograd.data import DataLoader, spirals
from retrograd.train import TrainingInterrupted, fit

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")

BATCHES = 8          # 120 samples in batches of 16


def _signalling_loader(at, sigs):
    """A DataLoader that sends ``sigs`` to this process when batch number ``at``
    (counted over all epochs, from 1) is drawn, i.e. just before its step."""
    count = [0]

    class Loader(DataLoader):
        def __iter__(self):
            for batch in super().__iter__():
                count[0] += 1
                if count[0] == at:
                    for sig in sigs:
                        os.kill(os.getpid(), sig)
                yield batch

    return Loader


def _run(out_dir, epochs=5, resume=False, compile=True, **kw):
    x, y = spirals(n=120, seed=1)
    rg.manual_seed(7)
    model = nn.MLP([2, 16, 16, 2], "tanh", dropout=0.1)     # dropout draws from the global RNG
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    kw.setdefault("log", None)
    h = fit(model, nn.CrossEntropyLoss(), opt, (x, y), (x[:20], y[:20]), epochs=epochs,
            batch_size=16, seed=3, scheduler=sched, out_dir=out_dir, resume=resume,
            progress=False, compile=compile, **kw)
    return model, h


def _assert_same_run(a, b):
    (ma, ha), (mb, hb) = a, b
    for (n, pa), (_, pb) in zip(ma.named_parameters(), mb.named_parameters()):
        np.testing.assert_array_equal(pa.data, pb.data, err_msg=n)
    keys = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")
    assert [[r[k] for k in keys] for r in ha] == [[r[k] for k in keys] for r in hb]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return {c: _run(tmp_path_factory.mktemp(f"full{c}"), compile=c) for c in (True, False)}


@pytest.mark.parametrize("sig,at,compile", [
    (signal.SIGTERM, 2 * BATCHES + 4, True),      # epoch 3 after batch 3
    (signal.SIGINT, 3 * BATCHES + 7, False),      # epoch 4 after batch 6
    (signal.SIGINT, 2 * BATCHES + 1, True),       # at the start of epoch 3
])
def test_a_signal_saves_the_exact_point_and_resume_ends_as_an_uninterrupted_run(
        tmp_path, monkeypatch, uninterrupted, sig, at, compile):
    monkeypatch.setattr(train_mod, "DataLoader", _signalling_loader(at, [sig]))
    with pytest.raises(TrainingInterrupted) as info:
        _run(tmp_path, compile=compile)
    e = info.value
    epoch, batch = (at - 1) // BATCHES + 1, (at - 1) % BATCHES
    assert isinstance(e, KeyboardInterrupt) and e.signum == sig and e.exact
    assert (e.epoch, e.batch, e.batches) == (epoch, batch, BATCHES)
    assert [r["epoch"] for r in e.history] == list(range(1, epoch))
    where = f"in epoch {epoch} after batch {batch} of {BATCHES}" if batch else \
        f"at the start of epoch {epoch}"
    assert str(e) == (f"interrupted by {signal.Signals(sig).name} {where}; "
                      f"{tmp_path / 'last.npz'} holds that point")
    ck = rg.load(tmp_path / "last.npz")
    assert ck["epoch"] == epoch - 1
    assert (ck["partial"] or {"batch": 0})["batch"] == batch
    monkeypatch.undo()
    _assert_same_run(_run(tmp_path, resume=True, compile=compile), uninterrupted[compile])


def test_a_second_signal_stops_at_once_and_keeps_the_last_checkpoint(
        tmp_path, monkeypatch, uninterrupted):
    monkeypatch.setattr(train_mod, "DataLoader",
                        _signalling_loader(2 * BATCHES + 4, [signal.SIGINT, signal.SIGINT]))
    with pytest.raises(TrainingInterrupted) as info:
        _run(tmp_path)
    e = info.value
    assert not e.exact and e.saved == (2, 0)
    assert str(e) == (f"interrupted by SIGINT in epoch 3 after batch 3 of {BATCHES} (stopped "
                      f"at once); {tmp_path / 'last.npz'} holds epoch 2")
    ck = rg.load(tmp_path / "last.npz")
    assert ck["epoch"] == 2 and ck["partial"] is None
    monkeypatch.undo()
    _assert_same_run(_run(tmp_path, resume=True), uninterrupted[True])


def test_handlers_are_installed_only_while_fit_runs(tmp_path, monkeypatch):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    seen = []
    _run(tmp_path / "a", epochs=1, log=lambda line: seen.append(
        (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))))
    assert all(h is not before[0] and h is not before[1] for pair in seen for h in pair)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    monkeypatch.setattr(train_mod, "DataLoader", _signalling_loader(3, [signal.SIGTERM]))
    with pytest.raises(TrainingInterrupted):
        _run(tmp_path / "b")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_without_out_dir_the_model_is_left_consistent_and_nothing_is_saved(tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod, "DataLoader", _signalling_loader(5, [signal.SIGTERM]))
    with pytest.raises(TrainingInterrupted, match=r"after batch 4 of 8 \(no out_dir: nothing "
                                                   r"saved\)") as info:
        _run(None)
    assert info.value.checkpoint is None and list(tmp_path.iterdir()) == []


def test_an_ignored_sigint_stays_ignored(tmp_path, monkeypatch):
    """A background job's SIGINT is ignored (SIG_IGN); fit must not start catching it."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        monkeypatch.setattr(train_mod, "DataLoader", _signalling_loader(3, [signal.SIGINT]))
        _, h = _run(tmp_path, epochs=2)
        assert len(h) == 2 and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, old)


def test_fit_in_a_thread_leaves_signal_handling_alone(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("h", _run(tmp_path, epochs=1)[1]))
    t.start()
    t.join()
    assert len(result["h"]) == 1 and signal.getsignal(signal.SIGINT) is before


def test_resuming_with_another_batch_size_or_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod, "DataLoader", _signalling_loader(13, [signal.SIGTERM]))
    with pytest.raises(TrainingInterrupted):
        _run(tmp_path)
    monkeypatch.undo()
    x, y = spirals(n=120, seed=1)
    model = nn.MLP([2, 16, 16, 2], "tanh", dropout=0.1)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(rg.io.CheckpointError, match="epoch now has 2 batches; resume with the "
                                                     "same data and batch size"):
        fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=3, batch_size=64,
            out_dir=tmp_path, resume=True, progress=False, log=None)
    other = nn.MLP([2, 8, 2], "tanh")
    with pytest.raises(rg.io.CheckpointError, match="last.npz: does not fit this run"):
        fit(other, nn.CrossEntropyLoss(), optim.SGD(other.parameters(), lr=0.1), (x, y),
            epochs=3, batch_size=16, out_dir=tmp_path, resume=True, progress=False, log=None)
    rg.save({"model": model.state_dict(), "epoch": 1, "meta": None}, tmp_path / "best.npz")
    with pytest.raises(rg.io.CheckpointError, match="not a training checkpoint to resume from"):
        fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=3, batch_size=16,
            out_dir=tmp_path, resume=tmp_path / "best.npz", progress=False, log=None)


# ---------------------------------------------------------------- the command line

TRAIN = ["train", "--data", "spirals", "--layers", "8", "--batch-size", "4", "--epochs", "40",
         "--no-progress", "--seed", "3"]


def _cli(*args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "retrograd.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _weights(path):          # the history is in history.json, not in the checkpoint
    import json
    rows = json.loads((path.parent / "history.json").read_text())
    return rg.load(path)["model"], [r["train_loss"] for r in rows]


@pytest.fixture(scope="module")
def cli_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_full")
    p = _cli(*TRAIN, "--out", str(out))
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    return _weights(out / "last.npz")


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_retrograd_train_stops_cleanly_on_a_signal_and_resume_finishes_the_same(
        tmp_path, cli_reference, sig, code):
    out = tmp_path / "run"
    p = _cli(*TRAIN, "--out", str(out))
    for line in p.stdout:                     # the first finished epoch
        if line.startswith("epoch"):
            break
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    name = signal.Signals(sig).name
    assert lines[0].startswith(f"retrograd: interrupted by {name} ")
    assert f"{out / 'last.npz'} holds that point -- continue with: retrograd train " in lines[0]
    assert lines[0].endswith(" --resume")
    ck = rg.load(out / "last.npz")
    assert 1 <= ck["epoch"] < 40 and ck["meta"]["sizes"] == [2, 8, 2]

    r = subprocess.run([sys.executable, "-m", "retrograd.cli", *TRAIN, "--out", str(out),
                        "--resume"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout
    model, losses = _weights(out / "last.npz")
    ref_model, ref_losses = cli_reference
    assert losses == ref_losses
    for k in ref_model:
        np.testing.assert_array_equal(model[k], ref_model[k], err_msg=k)


# ---------------------------------------------------------------- SIGKILL while saving

_SAVER = textwrap.dedent("""
    import os, sys
    import numpy as np
    import retrograd as rg

    path = sys.argv[1]
    def version(k):      # a few MB, every byte depending on k
        return {"step": k, "w": np.full(600_000, k, np.float32), "b": np.arange(k, k + 1000.0),
                "meta": {"name": "v%d" % k, "k": [k] * 3}}
    rg.save(version(0), path)
    print("ready", flush=True)
    for line in sys.stdin:                 # one round per line: fork a saver, report its pid
        pid = os.fork()
        if pid == 0:
            k = int(line)
            while True:
                rg.save(version(k % 2), path)
                k += 1
        print(pid, flush=True)
        os.waitpid(pid, 0)                 # the parent SIGKILLs it
        print("dead", flush=True)
""")


def test_sigkill_in_the_middle_of_saves_leaves_a_complete_checkpoint(tmp_path):
    """A zygote process imports retrograd once and forks a child per round that saves in
    a tight loop; the child is SIGKILLed after a random delay. Each time the file must
    load and be one of the two complete versions."""
    path = tmp_path / "ck.npz"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    z = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=env)
    rng = random.Random(1234)
    kills, mid_write = 0, 0
    try:
        assert z.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 8
        while kills < 25 or (mid_write == 0 and time.monotonic() < deadline):
            z.stdin.write(f"{kills}\n")
            z.stdin.flush()
            pid = int(z.stdout.readline())
            time.sleep(rng.uniform(0.0, 0.12))
            os.kill(pid, signal.SIGKILL)
            assert z.stdout.readline().strip() == "dead"
            kills += 1
            temps = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
            mid_write += bool(temps)          # killed while a temporary was being written
            for p in temps:
                p.unlink()
            d = rg.load(path)
            k = d["step"]
            assert k in (0, 1)
            assert d["w"].shape == (600_000,) and (d["w"] == k).all()
            np.testing.assert_array_equal(d["b"], np.arange(k, k + 1000.0))
            assert d["meta"] == {"name": f"v{k}", "k": [k] * 3}
    finally:
        z.stdin.close()
        z.kill()
        z.wait()
    assert kills >= 25 and mid_write >= 1
