"""rg.distributed: data-parallel training on a real MPI (mpi4py over MPICH, started by a
real ``mpiexec`` on loopback). N ranks with global batch B must give the weights one
process gives with batch B; a dead or hung rank must stop the others with a clear error.
The mpiexec tests skip when mpi4py or mpiexec is missing (``pip install -e '.[test]'``
installs both from PyPI)."""
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import retrograd as rg
from retrograd import distributed as dist
from retrograd.data import ArrayDataset, DataLoader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
MPIEXEC = shutil.which("mpiexec", path=BIN + os.pathsep + os.environ.get("PATH", ""))


def _has_mpi4py():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


needs_mpi = pytest.mark.skipif(MPIEXEC is None or not _has_mpi4py(),
                               reason="mpi4py or mpiexec missing: pip install 'retrograd[mpi]'")
LIMIT = 240        # seconds for one mpiexec run on a busy machine: a hang fails the test


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_"))}
    env.update(PYTHONPATH=ROOT, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", **extra)
    return env


def _run(argv, n=None, cwd=None, **env):
    """(exit code, stdout, stderr) of ``argv``, under ``mpiexec -n n`` when n is given."""
    cmd = ([MPIEXEC, "-n", str(n)] if n else []) + [str(a) for a in argv]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=LIMIT, cwd=cwd, env=_env(**env))
    return p.returncode, p.stdout, p.stderr


def _train(out, n=None, *flags):
    return _run([sys.executable, "-m", "retrograd", "train", "--out", out, "--no-progress",
                 *flags], n)


def _weights(path):
    return rg.io.load(os.path.join(path, "last.npz"))["model"]


def _assert_same(a, b, tol=1e-5):
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=tol, atol=tol, err_msg=k)


# ------------------------------------------------------------ without mpiexec
def test_single_process_is_a_world_of_one_without_mpi4py():
    code = ("import sys, retrograd as rg; assert 'mpi4py' not in sys.modules; "
            "from retrograd import distributed as d; w = d.init(); "
            "assert (d.rank(), d.world_size(), d.is_main()) == (0, 1, True); "
            "assert 'mpi4py' not in sys.modules; print('ok')")
    rc, out, err = _run([sys.executable, "-c", code])
    assert rc == 0 and out.strip() == "ok", err


def test_world_of_one_averages_to_the_gradient_itself():
    p = rg.nn.Parameter(np.arange(6, dtype=np.float32).reshape(2, 3))
    p.grad = rg.tensor(np.ones((2, 3), np.float32) * 3)
    dist.allreduce_gradients([p])
    np.testing.assert_array_equal(p.grad.numpy(), np.full((2, 3), 3, np.float32))


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_shards_together_are_the_global_batches(size):
    x = np.arange(47, dtype=np.float32).reshape(47, 1)
    ds = ArrayDataset(x, np.arange(47))
    for epoch_loader in [DataLoader(ds, 8, shuffle=True, seed=4)]:
        whole = [b[1].numpy() for e in range(2) for b in epoch_loader]
    parts = []
    for r in range(size):
        loader = DataLoader(ds, 8, shuffle=True, seed=4, shard=(r, size))
        assert len(loader) == 6
        parts.append([b[1].numpy() for e in range(2) for b in loader])
    for k, batch in enumerate(whole):       # rank order, every epoch reshuffled alike
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), batch)
        assert DataLoader(ds, 8, shard=(0, size)).global_rows(k % 6) == len(batch)


# ------------------------------------------------------------ mpiexec: the same numbers
@needs_mpi
def test_two_ranks_train_the_weights_of_one_process(tmp_path):
    # SGD: Adam's update is about lr whatever a gradient's size, so for inputs that are
    # almost always 0 (MNIST's border pixels) it turns the rounding of a near-cancelling
    # sum into differences of ~1e-4 -- as any change of summation order (BLAS threads) does
    flags = ["--data", "mnist5k", "--layers", "32", "--epochs", "3", "--batch-size", "100",
             "--optimizer", "momentum"]
    rc1, out1, err1 = _train(tmp_path / "one", None, *flags)
    rc2, out2, err2 = _train(tmp_path / "two", 2, *flags)
    assert rc1 == 0, err1
    assert rc2 == 0, err2
    _assert_same(_weights(tmp_path / "one"), _weights(tmp_path / "two"))
    # rank 0 speaks for all: each epoch's line once, with the global loss
    assert out2.count("epoch 3/3") == 1
    line = lambda out: [ln.split("  ")[1] for ln in out.splitlines() if ln.startswith("epoch 3/3")]
    assert line(out1) == line(out2)


SCRIPT = textwrap.dedent("""
    import sys, numpy as np, retrograd as rg
    from retrograd import distributed as dist
    from retrograd.train import fit
    dist.init()
    kind, compile, out = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
    rg.manual_seed(0)
    if kind == "cnn":
        from retrograd.models import build_model
        from retrograd.data import load_dataset as load
        (x, y), _ = load("mnist5k")
        x, y = x[:192], y[:192]
        model = build_model({"model": "cnn", "classes": 10, "activation": "relu"})
        opt, bs, epochs = rg.optim.Adam(model.parameters(), lr=2e-3), 32, 1
    else:   # 202 rows in batches of 20: the last has 2, so one of 3 ranks gets none
        rng = np.random.default_rng(0)
        x = rng.normal(size=(202, 8)).astype(np.float32)
        y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
        model = rg.nn.Sequential(rg.nn.Linear(8, 16), rg.nn.Tanh(), rg.nn.Linear(16, 2))
        opt, bs, epochs = rg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), 20, 3
    fit(model, rg.nn.CrossEntropyLoss(), opt, (x, y), epochs=epochs, batch_size=bs,
        progress=False, compile=compile, log=None)
    if dist.is_main():
        np.savez(out, **model.state_dict())
""")


def _script_weights(tmp_path, n, *args):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"w{n}{''.join(args)}.npz"
    rc, _, err = _run([sys.executable, script, *args, out], n)
    assert rc == 0, err
    return dict(np.load(out))


@needs_mpi
@pytest.mark.parametrize("compile", ["1", "0"])
def test_three_ranks_with_an_uneven_last_batch(tmp_path, compile):
    """The compiled step (one allreduce of the flat gradient array) and the eager one
    (one concatenated buffer); the last global batch of 2 rows leaves rank 0 none."""
    _assert_same(_script_weights(tmp_path, None, "mlp", compile),
                 _script_weights(tmp_path, 3, "mlp", compile))


@needs_mpi
def test_cnn_one_epoch_on_two_ranks(tmp_path):
    _assert_same(_script_weights(tmp_path, None, "cnn", "1"),
                 _script_weights(tmp_path, 2, "cnn", "1"), tol=1e-4)


@needs_mpi
def test_resume_with_another_number_of_ranks(tmp_path):
    flags = ["--data", "spirals", "--batch-size", "32"]
    assert _train(tmp_path / "straight", None, *flags, "--epochs", "6")[0] == 0
    rc, _, err = _train(tmp_path / "run", 2, *flags, "--epochs", "3")
    assert rc == 0, err
    rc, out, err = _train(tmp_path / "run", 4, *flags, "--epochs", "6", "--resume")
    assert rc == 0, err
    assert "resumed from" in out
    _assert_same(_weights(tmp_path / "straight"), _weights(tmp_path / "run"))
    rc, _, err = _train(tmp_path / "run", None, *flags, "--epochs", "8", "--resume")
    assert rc == 0, err


# ------------------------------------------------------------ mpiexec: refusals and faults
@needs_mpi
def test_batch_not_divisible_by_the_ranks_is_one_line(tmp_path):
    rc, _, err = _train(tmp_path / "r", 3, "--data", "spirals", "--batch-size", "32")
    assert rc == 2
    assert err.strip().splitlines() == [
        "retrograd train: --batch-size 32 is the global batch and must be divisible by the "
        "3 ranks (e.g. 30)"]
    assert not os.path.exists(tmp_path / "r")


@needs_mpi
def test_ranks_with_different_models_refuse_to_start(tmp_path):
    base = [sys.executable, "-m", "retrograd", "train", "--data", "spirals", "--epochs", "1",
            "--out", tmp_path / "r", "--no-progress", "--layers"]
    cmd = [MPIEXEC, "-n", "1", *base, "50", ":", "-n", "1", *base, "60"]
    p = subprocess.run([str(a) for a in cmd], capture_output=True, text=True, timeout=LIMIT,
                       env=_env())
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "retrograd: error: the ranks disagree on the model and data: rank 0 has model "
        "[0.weight (2, 50), 0.bias (50,), 2.weight (50, 2), 2.bias (2,)], 180 rows of (2,) "
        "float32 and () int64, batch 32, seed 0, rank 1 has model [0.weight (2, 60), "
        "0.bias (60,), 2.weight (60, 2), 2.bias (2,)], 180 rows of (2,) float32 and () int64, "
        "batch 32, seed 0; every rank must run the same model on the same data"]


@needs_mpi
def test_a_hung_rank_stops_the_others_within_the_timeout(tmp_path):
    rc, out, err = _run([sys.executable, "-m", "retrograd", "train", "--data", "spirals",
                         "--epochs", "4", "--out", tmp_path / "r", "--no-progress"], 2,
                        RETROGRAD_MPI_TIMEOUT="5", RETROGRAD_MPI_TEST_FAULT="1:10:sleep")
    assert rc != 0
    assert ("retrograd: error: rank 0: allreduce of gradients (step 10) did not complete "
            "within 5 s (RETROGRAD_MPI_TIMEOUT): another rank died or hangs") in err
    assert "epoch 1/4" in out and "epoch 2/4" not in out


@needs_mpi
def test_a_killed_rank_ends_the_run(tmp_path):
    rc, out, err = _run([sys.executable, "-m", "retrograd", "train", "--data", "spirals",
                         "--epochs", "4", "--out", tmp_path / "r", "--no-progress"], 2,
                        RETROGRAD_MPI_TIMEOUT="5", RETROGRAD_MPI_TEST_FAULT="1:10:kill")
    assert rc != 0
    assert "epoch 2/4" not in out
    assert "BAD TERMINATION" in out + err          # mpiexec (hydra) names the lost process


@needs_mpi
def test_ctrl_c_stops_every_rank_at_one_point_and_resume_is_exact(tmp_path):
    """SIGINT to mpiexec (which forwards it to every rank): the ranks agree on one batch
    boundary, rank 0 saves that point, and a resumed run ends where an uninterrupted one
    does."""
    import signal
    flags = ["--data", "mnist5k", "--layers", "16", "--batch-size", "100", "--epochs", "40"]
    assert _train(tmp_path / "straight", None, *flags)[0] == 0
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "retrograd", "train", "--out",
           tmp_path / "run", "--no-progress", *flags]
    p = subprocess.Popen([str(a) for a in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=_env(PYTHONUNBUFFERED="1"))
    for line in p.stdout:
        if line.startswith("epoch  2/40"):
            p.send_signal(signal.SIGINT)
            break
    out, err = p.communicate(timeout=LIMIT)
    assert p.returncode == 130, err
    assert "holds that point -- continue with: mpiexec -n 2 retrograd train" in err
    assert "epoch 40/40" not in out
    rc, out, err = _train(tmp_path / "run", 2, *flags, "--resume")
    assert rc == 0, err
    _assert_same(_weights(tmp_path / "straight"), _weights(tmp_path / "run"))
