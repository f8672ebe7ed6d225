"""Checkpoints: round trips without pickle, atomic writes, clear errors for bad files."""
import os

import numpy as np
import pytest

import retrograd as rg


def test_round_trip_of_nested_structures(tmp_path):
    m = rg.nn.MLP([3, 4, 2])
    obj = {"model": m, "epoch": 3, "lr": 0.1, "betas": (0.9, 0.999), "none": None,
           "flags": [True, False], "inf": float("inf"), "big": 2 ** 100, "name": "run",
           "scalar": np.float32(2.5), "state": {0: {"buf": np.arange(3.0)}}}
    path = rg.save(obj, tmp_path / "ck.npz")
    d = rg.load(path)
    assert d["epoch"] == 3 and d["lr"] == 0.1 and d["betas"] == (0.9, 0.999) and d["none"] is None
    assert d["flags"] == [True, False] and d["inf"] == float("inf") and d["big"] == 2 ** 100
    assert d["scalar"].dtype == np.float32 and d["state"][0]["buf"].tolist() == [0, 1, 2]
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(d["model"][k], v)
        assert d["model"][k].dtype == np.float32


def test_unstorable_objects_are_refused(tmp_path):
    with pytest.raises(rg.RetrogradError, match="cannot be stored without pickle"):
        rg.save({"f": lambda: 0}, tmp_path / "x.npz")
    with pytest.raises(rg.RetrogradError, match="dtype object"):
        rg.save({"a": np.array([object()])}, tmp_path / "x.npz")
    assert not os.path.exists(tmp_path / "x.npz")


def test_loading_never_unpickles(tmp_path):
    import pickle
    np.savez(tmp_path / "evil.npz", __retrograd__=np.array([{"x": 1}], dtype=object))
    with pytest.raises(rg.CheckpointError):
        rg.load(tmp_path / "evil.npz")
    (tmp_path / "p.npz").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(rg.CheckpointError, match="not an .npz"):
        rg.load(tmp_path / "p.npz")


def test_truncated_foreign_missing_and_newer_files_get_clear_errors(tmp_path):
    good = rg.save({"w": np.ones((50, 50))}, tmp_path / "good.npz")
    raw = open(good, "rb").read()
    for n in (10, len(raw) // 2, len(raw) - 10):
        (tmp_path / "t.npz").write_bytes(raw[:n])
        with pytest.raises(rg.CheckpointError, match="t.npz: truncated or corrupt"):
            rg.load(tmp_path / "t.npz")
    np.savez(tmp_path / "plain.npz", a=np.ones(2))
    with pytest.raises(rg.CheckpointError, match="not a retrograd checkpoint"):
        rg.load(tmp_path / "plain.npz")
    with pytest.raises(rg.CheckpointError, match="no such checkpoint"):
        rg.load(tmp_path / "missing.npz")
    import json
    meta = json.dumps({"format": "retrograd-checkpoint", "version": 99, "root": None}).encode()
    np.savez(tmp_path / "new.npz", __retrograd__=np.frombuffer(meta, np.uint8))
    with pytest.raises(rg.CheckpointError, match="version 99 is newer"):
        rg.load(tmp_path / "new.npz")


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "ck.npz"
    rg.save({"v": np.ones(3)}, path)
    with pytest.raises(RuntimeError):
        with rg.io.atomic_write(path) as f:
            f.write(b"partial")
            raise RuntimeError("crash in the middle of a save")
    np.testing.assert_array_equal(rg.load(path)["v"], np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]      # no temporary left behind


@pytest.mark.skipif(os.name != "posix", reason="dead-writer detection probes PIDs (POSIX)")
def test_a_killed_saves_temp_file_is_cleaned_up_by_the_next_save(tmp_path):
    """Temp files whose writer is gone and that sat unwritten for a minute go; a live
    writer's temp file (here: a parent process's) and unrelated files stay."""
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".tmp-ck.npz-{dead}-abc123"
    live = tmp_path / f".tmp-ck.npz-{os.getppid()}-def456"
    young = tmp_path / f".tmp-ck.npz-{dead}-young1"
    other = tmp_path / f".tmp-other.npz-{dead}-xyz"
    for f in (stale, live, young, other):
        f.write_bytes(b"partial")
    old = os.stat(stale).st_mtime - 3600
    for f in (stale, live, other):
        os.utime(f, (old, old))
    rg.save({"a": np.arange(3)}, tmp_path / "ck.npz")
    assert not stale.exists()
    assert live.exists() and young.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".tmp-")) == ["ck.npz"]
