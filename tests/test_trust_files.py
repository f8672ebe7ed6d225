"""Issue 10, files: atomic writes through links and special files, predict never
overwrites its inputs, one training run per run folder, save refuses what load would
refuse, class labels that would build absurd or silent classes, and CLI hygiene
(broken pipes, NumPy warnings, error messages naming the user's path)."""
import errno
import os
import stat
import subprocess
import sys
import threading

import numpy as np
import pytest

import retrograd as rg
from retrograd.cli import main
from retrograd.data import DataError, load_dataset, load_mnist_idx, one_hot, write_idx
from retrograd.rundir import REPLACED

POSIX = pytest.mark.skipif(os.name != "posix", reason="POSIX files and signals")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, cwd=None, **kw):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "retrograd", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300, **kw)


def one_error_line(capsys):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


def _contents(folder):
    """{name: bytes} of every file in ``folder``."""
    return {n: open(os.path.join(folder, n), "rb").read() for n in sorted(os.listdir(folder))}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint of a tiny XOR net, and a CSV of inputs for predict."""
    d = tmp_path_factory.mktemp("run")
    assert main(["train", "--data", "xor", "--layers", "3", "--epochs", "1", "--no-progress",
                 "--out", str(d / "run")]) == 0
    (d / "in.csv").write_text("0,0\n0,1\n1,0\n1,1\n")
    return d / "run" / "last.npz", d / "in.csv"


# ---------------------------------------------------------------- 16: atomic writes

@POSIX
def test_saving_through_a_symlink_updates_its_target_and_keeps_the_link(tmp_path):
    (tmp_path / "store").mkdir()
    target = tmp_path / "store" / "ck.npz"
    rg.save({"v": np.zeros(2)}, target)
    link = tmp_path / "last.npz"
    link.symlink_to(target)
    rg.save({"v": np.ones(2)}, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(rg.load(target)["v"], np.ones(2))
    dangling = tmp_path / "new.npz"
    dangling.symlink_to(tmp_path / "store" / "made.npz")
    rg.save({"v": 3}, dangling)
    assert dangling.is_symlink() and rg.load(tmp_path / "store" / "made.npz")["v"] == 3
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["ck.npz", "made.npz"]


@POSIX
def test_an_existing_files_mode_is_kept_and_a_new_file_gets_the_umasks(tmp_path):
    path = tmp_path / "ck.npz"
    rg.save({"v": 1}, path)
    os.chmod(path, 0o640)
    rg.save({"v": 2}, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640 and rg.load(path)["v"] == 2
    old = os.umask(0o027)
    try:
        rg.save({"v": 1}, tmp_path / "new.npz")
        with rg.io.atomic_write(tmp_path / "new.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.npz").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(tmp_path / "new.txt").st_mode) == 0o640


@POSIX
def test_a_fifo_is_written_through_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()))
    reader.start()
    with rg.io.atomic_write(fifo, "w") as f:
        f.write("hello\n")
    reader.join(10)
    assert got == ["hello\n"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]


@POSIX
def test_predict_into_a_device_node_writes_through_it(trained, tmp_path, capsys):
    ck, inp = trained
    if os.geteuid() == 0:            # root could replace /dev/null: use a null device of our own
        null = tmp_path / "null"
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    else:
        null = "/dev/null"
    assert main(["predict", str(ck), str(inp), "--output", str(null)]) == 0, capsys.readouterr()
    st = os.lstat(null)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)


def _stdout_path(tmp_path):
    """/dev/stdout, or as root a link of our own to the same magic link: a test run on
    code without the fix must not replace the system's /dev/stdout."""
    if os.geteuid() != 0:
        return "/dev/stdout"
    os.symlink("/proc/self/fd/1", tmp_path / "stdout")
    return str(tmp_path / "stdout")


@POSIX
def test_predict_to_dev_stdout_writes_the_table_to_stdout(trained, tmp_path):
    ck, inp = trained
    stdout = _stdout_path(tmp_path)
    r = cli("predict", str(ck), str(inp), "--output", stdout, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("prediction,p0") and len(lines) == 5, r.stdout   # status on stderr
    assert "wrote 4 predictions" in r.stderr
    with open(tmp_path / "redirected.csv", "w") as out:      # /dev/stdout redirected to a file
        r = subprocess.run([sys.executable, "-m", "retrograd", "predict", str(ck), str(inp),
                            "--output", stdout], stdout=out, stderr=subprocess.PIPE, text=True,
                           cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "redirected.csv").read_text().splitlines()[0].startswith("prediction,")
    assert os.path.islink(stdout)


# ---------------------------------------------------------------- 17: predict's own inputs

@POSIX
def test_predict_refuses_to_write_over_its_inputs(trained, tmp_path, capsys):
    ck, inp = trained
    (tmp_path / "ck.npz").write_bytes(ck.read_bytes())
    (tmp_path / "in.csv").write_bytes(inp.read_bytes())
    (tmp_path / "link.csv").symlink_to(tmp_path / "in.csv")
    os.link(tmp_path / "ck.npz", tmp_path / "hard.npz")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for out in ("ck.npz", "in.csv", "link.csv", "hard.npz"):
        code = main(["predict", str(tmp_path / "ck.npz"), str(tmp_path / "link.csv"),
                     "--output", str(tmp_path / out)])
        assert code == 2
        assert "is the" in one_error_line(capsys)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# ---------------------------------------------------------------- 18: one run per folder

TRAIN = ["train", "--data", "xor", "--layers", "3", "--epochs", "1", "--no-progress"]


@POSIX
def test_a_run_folder_in_use_is_refused_naming_its_owner(tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from retrograd.rundir import claim\n"
         f"with claim({str(out)!r}):\n print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert main(TRAIN + ["--out", str(out)]) == 2
        err = one_error_line(capsys)
        assert f"pid {holder.pid}" in err and str(out) in err
        assert not (out / "last.npz").exists()
    finally:
        holder.communicate("", timeout=30)
    assert main(TRAIN + ["--out", str(out)]) == 0            # the owner is gone: free again
    assert sorted(p.name for p in out.iterdir()) == ["best.npz", "history.json", "last.npz"]


@POSIX
def test_a_stale_lock_of_a_dead_run_is_taken_over(tmp_path):
    from retrograd.rundir import LOCK
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK).write_text(f"{dead}\n")
    assert main(TRAIN + ["--out", str(out)]) == 0
    assert not (out / LOCK).exists()


def test_a_rerun_into_a_finished_run_needs_resume_or_overwrite(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(TRAIN + ["--out", out]) == 0
    before = _contents(out)
    capsys.readouterr()
    assert main(TRAIN + ["--out", out]) == 2
    err = one_error_line(capsys)
    assert "--resume" in err and "--overwrite" in err and out in err
    assert _contents(out) == before
    assert main(TRAIN + ["--out", out, "--resume", "--overwrite"]) == 2
    assert main(TRAIN + ["--out", out, "--overwrite", "--seed", "3"]) == 0
    assert open(os.path.join(out, "last.npz"), "rb").read() != before["last.npz"]


@pytest.mark.parametrize("flag, value, says", [
    ("--epochs", "abc", "an integer, got 'abc'"), ("--epochs", "2.5", "an integer"),
    ("--lr", "fast", "a number, got 'fast'"), ("--seed", "1e3", "an integer"),
    ("--shift", "x", "an integer"), ("--weight-decay", "x", "a number"),
    ("--dropout", "half", "a number"), ("--save-every", "x", "an integer")])
def test_a_flag_that_is_not_a_number_says_what_it_takes(capsys, flag, value, says):
    assert main(TRAIN + [flag, value]) == 2
    err = one_error_line(capsys)
    assert f"argument {flag}: must be {says}" in err and "invalid" not in err, err


def test_an_overwrite_run_that_fails_before_saving_gives_the_old_run_back(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(TRAIN + ["--out", out]) == 0
    before = _contents(out)
    capsys.readouterr()
    # the run starts (the folder claimed, the old files set aside), then cannot read its data
    assert main(TRAIN[:2] + [str(tmp_path / "missing.csv")] + TRAIN[3:]
                + ["--out", out, "--overwrite"]) == 2
    assert "missing.csv" in one_error_line(capsys)
    assert _contents(out) == before and not os.path.exists(os.path.join(out, REPLACED))
    assert main(TRAIN + ["--out", out, "--overwrite", "--seed", "3"]) == 0   # replaced now
    assert _contents(out)["last.npz"] != before["last.npz"]
    assert not os.path.exists(os.path.join(out, REPLACED))


def test_the_next_claim_settles_what_a_killed_overwrite_run_set_aside(tmp_path):
    from retrograd.rundir import RunFolderError, claim
    out = tmp_path / "run"
    assert main(TRAIN + ["--out", str(out)]) == 0
    before = _contents(out)
    (out / REPLACED).mkdir()                    # as kill -9 leaves an --overwrite run that
    for name in before:                         # had written nothing yet
        os.replace(out / name, out / REPLACED / name)
    with pytest.raises(RunFolderError, match="already holds a run"):
        with claim(out):
            pass
    assert _contents(out) == before and not (out / REPLACED).exists()
    (out / REPLACED).mkdir()                    # one killed after its first checkpoint:
    (out / REPLACED / "last.npz").write_bytes(b"the replaced run")   # the new run stays
    with claim(out, resume=True):
        pass
    assert _contents(out) == before and not (out / REPLACED).exists()


# ---------------------------------------------------------------- 20, 22: save refuses

def test_save_refuses_what_load_would_refuse_before_touching_the_target(tmp_path):
    path = tmp_path / "ck.npz"
    rg.save({"good": 1}, path)
    good = path.read_bytes()
    for depth in range(190, 210):             # either it saves and loads, or neither
        nested = 0
        for _ in range(depth):
            nested = [nested]
        try:
            rg.save(nested, tmp_path / "deep.npz")
        except rg.RetrogradError as e:
            assert "nested" in str(e)
            continue
        assert rg.load(tmp_path / "deep.npz") == nested
    cyclic = []
    cyclic.append(cyclic)
    for bad in ({"x": [[[[[[1]]]]]] * 1, "deep": nested}, cyclic, 10 ** 5000, {"n": -10 ** 4400}):
        with pytest.raises(rg.RetrogradError):
            rg.save(bad, path)
        assert path.read_bytes() == good
    assert rg.load(rg.save(10 ** 4000, tmp_path / "big.npz")) == 10 ** 4000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npz", "ck.npz", "deep.npz"]


# ---------------------------------------------------------------- 15, 22: labels

def _csv(path, labels):
    path.write_text("".join(f"{i % 3},{(i * 7) % 5},{y}\n" for i, y in enumerate(labels)))
    return str(path)


@pytest.mark.parametrize("label", [10 ** 9, 2 ** 31 - 1])
def test_a_huge_class_label_in_a_csv_is_a_clear_error(tmp_path, capsys, label):
    path = _csv(tmp_path / "d.csv", [0, 1, 0, 1, label, 1, 0, 1])
    with pytest.raises(DataError, match=f"d.csv.*label {label}"):
        load_dataset(path)
    assert main(TRAIN[:1] + ["--data", path, "--epochs", "1", "--no-progress",
                             "--out", str(tmp_path / "r")]) == 2
    assert str(label) in one_error_line(capsys)


def test_labels_one_to_k_do_not_silently_build_k_plus_1_classes(tmp_path, capsys):
    path = _csv(tmp_path / "d.csv", [1, 2, 3] * 4)
    with pytest.raises(DataError, match="from 1 to 3"):
        load_dataset(path)
    assert main(["train", "--data", path, "--no-progress", "--out", str(tmp_path / "r")]) == 2
    assert "subtract 1" in one_error_line(capsys)
    (x, y), _ = load_dataset(_csv(tmp_path / "z.csv", [0, 1, 2] * 4))      # 0..k-1 is fine
    assert set(y.tolist()) <= {0, 1, 2}


def test_one_hot_of_a_huge_label_refuses_instead_of_allocating():
    with pytest.raises(DataError, match="2147483647"):
        one_hot(np.array([0] * 1000 + [2 ** 31 - 1]))
    np.testing.assert_array_equal(one_hot(np.array([1, 0])), [[0, 1], [1, 0]])


def _mnist_folder(folder, n_train=5, n_test=3, labels=None, dtype=np.uint8):
    folder.mkdir(exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{split}-images-idx3-ubyte", np.zeros((n, 2, 2), np.uint8))
        y = np.arange(n) % 2 if labels is None or split == "t10k" else labels
        write_idx(folder / f"{split}-labels-idx1-ubyte", np.asarray(y, dtype))
    return folder


def test_idx_with_a_huge_label_or_no_images_is_a_clear_error(tmp_path, capsys):
    big = _mnist_folder(tmp_path / "big", labels=[0, 1, 2 ** 31 - 1, 1, 0], dtype=np.int32)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.*label 2147483647"):
        load_mnist_idx(big)
    empty = _mnist_folder(tmp_path / "empty", n_train=0)
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*0 images"):
        load_mnist_idx(empty)
    for folder in (big, empty):
        assert main(["train", "--data", str(folder), "--no-progress",
                     "--out", str(tmp_path / "r")]) == 2
        one_error_line(capsys)


# ---------------------------------------------------------------- 22: plot, pipes, warnings

@pytest.mark.parametrize("text", [
    '[{"epoch": 1, "train_loss": "abc"}]', '[{"epoch": "one", "train_loss": 1.0}]',
    '[{"epoch": 1, "train_loss": [1, 2]}]', '[{"epoch": 1, "train_loss": true}]',
    "[" * 100000, '{"epoch": 1}', "[1, 2]", "[]", '[{"epoch": 1, "lr": {"a": 1}}]'],
    ids=lambda text: text[:40])
def test_plot_of_a_malformed_history_is_one_line(tmp_path, capsys, text):
    pytest.importorskip("matplotlib")
    (tmp_path / "history.json").write_text(text)
    assert main(["plot", str(tmp_path)]) == 2
    assert "history.json" in one_error_line(capsys)


@POSIX
@pytest.mark.parametrize("args", [["explain"], ["train", "--data", "xor", "--epochs", "50",
                                                "--no-progress", "--out", "run"]])
def test_output_piped_into_a_closed_pipe_ends_quietly(tmp_path, args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.Popen([sys.executable, "-m", "retrograd", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=tmp_path, env=env)
    p.stdout.close()                          # `| head -0`: the reader is gone at once
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 128 + 13 and err == ""   # as if killed by SIGPIPE, silently


@POSIX
def test_numpy_runtime_warnings_do_not_reach_the_terminal(trained, tmp_path):
    ck, inp = trained
    state = rg.load(ck)
    state["model"] = {k: np.full_like(v, 1e38) for k, v in state["model"].items()}
    rg.save(state, tmp_path / "huge.npz")
    r = cli("predict", str(tmp_path / "huge.npz"), str(inp), "--output", "p.csv", cwd=tmp_path)
    assert "Warning" not in r.stderr and r.returncode == 0, r.stderr
    r = cli("train", "--data", "xor", "--lr", "1e30", "--epochs", "3", "--no-progress",
            "--out", "r", cwd=tmp_path)
    assert "Warning" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) <= 1, r.stderr


# ---------------------------------------------------------------- 22: errors name the user's path

@POSIX
def test_a_full_disk_or_denied_folder_names_the_users_path(tmp_path, capsys, monkeypatch):
    full = "/dev/full"
    if os.geteuid() == 0:            # as root, a full device of our own (see _stdout_path)
        full = str(tmp_path / "full")
        os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    with pytest.raises(OSError, match=full) as e:
        rg.save({"w": np.zeros(1000)}, full)
    assert e.value.errno == errno.ENOSPC and stat.S_ISCHR(os.stat(full).st_mode)
    path = tmp_path / "ck.npz"
    with pytest.raises(OSError) as e:         # a write in the middle failing, as ENOSPC does
        with rg.io.atomic_write(path) as f:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(path)
    locked = tmp_path / "ro"
    locked.mkdir()
    os.chmod(locked, 0o555)
    if os.geteuid() == 0:           # root ignores the folder's mode: refuse as the OS would
        def mkstemp(prefix="", dir=None, **kw):
            name = os.path.join(dir, prefix + "x1y2z3")
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), name)
        monkeypatch.setattr(rg.io.tempfile, "mkstemp", mkstemp)
    with pytest.raises(PermissionError) as e:
        rg.save({"v": 1}, locked / "ck.npz")
    assert e.value.filename == str(locked / "ck.npz") and ".tmp-" not in str(e.value)
    monkeypatch.undo()
    os.chmod(locked, 0o755)
    assert main(["predict", "nowhere.npz", "x.csv"]) == 2 and one_error_line(capsys)


def test_the_resume_command_after_an_overwrite_run_does_not_overwrite_again():
    # a run started with --overwrite and interrupted is continued with --resume; repeating
    # --overwrite there would be refused (and would delete the run it means to continue)
    import argparse
    from retrograd.cli import _resume_command
    args = argparse.Namespace(argv=["train", "--data", "xor", "--overwrite", "--out", "r"])
    assert _resume_command(args) == "retrograd train --data xor --out r --resume"
