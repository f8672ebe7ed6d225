"""Hostile files (issue 6, item 5): checkpoints, IDX and CSV files that are
truncated, corrupted, lie in their headers or are something else entirely.

Every loader must either return data or raise the library's own error
(``rg.CheckpointError`` for ``rg.load``, ``DataError`` for ``read_idx`` and
``read_csv``) naming the file -- never another exception, never an absurd
allocation (each fuzz test runs under an address-space cap of 256 MB above what
the process already uses), and never unpickle anything.

Hypothesis mutates valid files written by ``rg.save``, ``write_idx`` and a CSV
writer: byte flips, truncations, insertions, deletions, header fields set to
absurd values (IDX sizes, .npy shapes and dtypes, zip size fields, the JSON
description). CI runs a fixed set of examples (derandomized, under 30 s in all);
``RETROGRAD_FUZZ_EXAMPLES=N`` runs N random examples per test instead.
"""
import csv
import gzip
import io
import json
import os
import pickle
import random
import re
import struct
import tempfile
import zipfile
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import retrograd as rg
from retrograd.data import DataError, read_csv, read_idx, write_idx

_LONG = int(os.environ.get("RETROGRAD_FUZZ_EXAMPLES", "0") or 0)
_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])
settings.register_profile("retrograd-fuzz-ci", derandomize=True, **_COMMON)
settings.register_profile("retrograd-fuzz-long", max_examples=max(_LONG, 1), **_COMMON)
_PROFILE = settings.get_profile("retrograd-fuzz-long" if _LONG else "retrograd-fuzz-ci")


def fuzz(ci_examples):
    """The settings of one fuzz test: ``ci_examples`` in CI, the env var's count otherwise."""
    return settings(_PROFILE, max_examples=_LONG or ci_examples)


# ---------------------------------------------------------------- the memory cap

def _vm_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return None


@pytest.fixture
def memory_cap():
    """RLIMIT_AS = what the process uses now + 256 MB, for the duration of a test."""
    try:
        import resource
        vm = _vm_bytes()
    except (ImportError, OSError):
        vm = None
    if vm is None:
        yield None
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm + (256 << 20)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield cap
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# ---------------------------------------------------------------- valid files

_DIR = tempfile.mkdtemp(prefix="retrograd-fuzz-")


def _bytes_of(write, name):
    path = os.path.join(_DIR, name)
    write(path)
    with open(path, "rb") as f:
        return f.read()


def _checkpoint_obj():
    rg.manual_seed(0)
    return {"model": rg.nn.MLP([3, 4, 2]).state_dict(), "epoch": 3, "lr": 0.1,
            "betas": (0.9, 0.999), "inf": float("inf"), "name": "run", "none": None,
            "scalar": np.float32(2.5), "flags": [True, False],
            "state": {0: {"buf": np.arange(3.0), "step": 7}}, "big": np.int64(2) ** 40,
            "c": np.array([1 + 2j], np.complex64), "b": np.array([[True], [False]])}


def _zip_members(data):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def _zip(members, compression=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


CKPT = _bytes_of(lambda p: rg.save(_checkpoint_obj(), p), "ck.npz")
CKPT_MEMBERS = _zip_members(CKPT)
CKPT_DEFLATED = _zip(CKPT_MEMBERS, zipfile.ZIP_DEFLATED)
META = json.loads(np.load(io.BytesIO(CKPT_MEMBERS["__retrograd__.npy"])).tobytes())
ARRAY_KEYS = sorted(n[:-4] for n in CKPT_MEMBERS if n != "__retrograd__.npy")

IDX = [_bytes_of(lambda p, a=a: write_idx(p, a), f"f{i}.idx") for i, a in enumerate([
    np.arange(24, dtype=np.uint8).reshape(4, 3, 2), np.linspace(-1, 1, 5, dtype=np.float32),
    np.array([[1, -2], [300, -400]], np.int16), np.array([7, 8, 9], np.int32),
    np.float64(3.5).reshape(()), np.zeros((0, 5), np.int8)])]

CSV_ROWS = [["x1", "x2", "x3", "label"], ["0.5", "1", "-2e3", "0"], ["1.25", " 3", "4", "1"],
            ["-0", "7.5", "1e-3", "2"], ["6", "6", "6", "1"]]


def _csv_text(rows, delimiter=","):
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return out.getvalue()


CSV = [_csv_text(CSV_ROWS).encode(), _csv_text(CSV_ROWS[1:]).encode(),
       _csv_text([r[:3] + ["0.5"] for r in CSV_ROWS]).encode(),
       _csv_text(CSV_ROWS).replace("\n", "\r\n").encode("utf-8-sig")]


# ---------------------------------------------------------------- mutations

_pos = st.integers(0, 1 << 20)
_byte_op = st.one_of(
    st.tuples(st.just("flip"), _pos, st.integers(1, 255)),
    st.tuples(st.just("set"), _pos, st.integers(0, 255)),
    st.tuples(st.just("truncate"), _pos),
    st.tuples(st.just("insert"), _pos, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), _pos, st.integers(1, 64)),
    st.tuples(st.just("duplicate"), _pos, st.integers(1, 256)),
    st.tuples(st.just("u32"), _pos, st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 10 ** 9])),
)
byte_mutations = st.lists(_byte_op, min_size=1, max_size=4)
_seed = st.integers(0, 2 ** 32 - 1)


def mutate(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for op in ops:
        n = len(b)
        if op[0] == "truncate":
            del b[op[1] % (n + 1):]
        elif op[0] == "insert":
            p = op[1] % (n + 1)
            b[p:p] = op[2]
        elif not n:
            continue
        elif op[0] == "flip":
            b[op[1] % n] ^= op[2]
        elif op[0] == "set":
            b[op[1] % n] = op[2]
        elif op[0] == "delete":
            p = op[1] % n
            del b[p:p + op[2]]
        elif op[0] == "duplicate":
            p = op[1] % n
            b[p:p] = b[p:p + op[2]]
        elif op[0] == "u32" and n >= 4:
            p = op[1] % (n - 3)
            b[p:p + 4] = struct.pack(">I" if op[1] & 1 else "<I", op[2])
    return bytes(b)


def _random_ops(rng):
    """Byte mutations like ``byte_mutations`` drawn from a plain PRNG (cheap)."""
    ops = []
    for _ in range(rng.randint(1, 3)):
        kind, pos = rng.choice(["flip", "set", "truncate", "insert", "delete", "duplicate",
                                "u32"]), rng.randrange(1 << 20)
        ops.append({"flip": (kind, pos, rng.randint(1, 255)), "set": (kind, pos, rng.randint(0, 255)),
                    "truncate": (kind, pos),
                    "insert": (kind, pos, rng.randbytes(rng.randint(1, 16))),
                    "delete": (kind, pos, rng.randint(1, 64)),
                    "duplicate": (kind, pos, rng.randint(1, 256)),
                    "u32": (kind, pos, rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 10 ** 9]))}[kind])
    return ops


VARIANTS = 4      # byte-mutated variants of every drawn file, from a seeded PRNG


def _check_all(loader, error, data, seed, name, outcomes):
    """``data`` and VARIANTS byte-mutated copies of it (from ``seed``) through ``loader``."""
    _check(loader, error, data, name, outcomes)
    rng = random.Random(seed)
    for _ in range(VARIANTS):
        variant = mutate(data, _random_ops(rng))
        try:
            _check(loader, error, variant, name, outcomes)
        except BaseException as e:
            raise AssertionError(f"variant {variant!r} failed: {type(e).__name__}: {e}") from e


def _check(loader, error, data, name, outcomes):
    """Run ``loader`` on ``data`` written to ``name``: data or the library's error naming
    the file, nothing else; record what happened."""
    _counter[0] += 1         # a new file each time: truncating one can flush it to disk
    path = os.path.join(_DIR, f"{_counter[0]}-{name}")
    with open(path, "wb") as f:
        f.write(data)
    try:
        out = loader(path)
    except error as e:
        msg = str(e)
        assert path in msg, msg
        assert "not enough memory" not in msg, msg
        outcomes[re.sub(r"\d+", "#", msg.replace(path, "F"))[:40]] += 1
        outcomes["error"] += 1
        return None
    finally:
        os.unlink(path)
        outcomes["files"] += 1
    outcomes["ok"] += 1
    return out


_counter = [0]


def _plain(x):
    """The loaded structure holds only what save can write."""
    if isinstance(x, dict):
        return all(isinstance(k, (str, int)) and _plain(v) for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return all(_plain(v) for v in x)
    if isinstance(x, (np.ndarray, np.generic)):
        return x.dtype.kind in "biufc"
    return x is None or isinstance(x, (bool, int, float, str))


# ---------------------------------------------------------------- rg.load

def _npy(descr, fortran, shape, body, version=1):
    text = "{'descr': %s, 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape)
    pre = 8 + (2 if version == 1 else 4)
    text += " " * ((-(pre + len(text) + 1)) % 64) + "\n"
    size = struct.pack("<H" if version == 1 else "<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + size + text.encode("latin-1") + body


_dims = st.one_of(st.integers(0, 6), st.integers(-2, 1 << 64),
                  st.sampled_from([1 << 31, (1 << 32) - 1, 10 ** 12, 1 << 62]))
_shape_text = st.one_of(
    st.lists(_dims, max_size=4).map(lambda s: "(" + "".join(f"{d}, " for d in s) + ")"),
    st.integers(60, 70).map(lambda n: "(" + "1, " * n + ")"),
    st.sampled_from(["()", "(3,)", "[3]", "(1.5,)", "('a',)", "None", "(", "((1,),)"]))
_descr_text = st.sampled_from([
    "'<f4'", "'<f8'", "'|u1'", "'>i8'", "'|b1'", "'<c8'", "'<f2'", "'|O'", "'<U3'", "'|V8'",
    "'|S4'", "'<M8[s]'", "[('a', '<f4')]", "[('a', '|O')]", "('<f4', (2,))", "'f4'", "'xyz'",
    "1", "None", "'<i4'"])
_npy_member = st.builds(
    _npy, _descr_text, st.sampled_from(["False", "True", "0", "'no'"]), _shape_text,
    st.one_of(st.binary(max_size=64), st.integers(0, 200).map(lambda n: bytes(n))),
    st.sampled_from([1, 1, 2]))

_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 1 << 70), st.floats(allow_nan=True),
    st.text(max_size=4),
    st.builds(lambda k, s: {"$array": k, "$scalar": s},
              st.one_of(st.sampled_from(ARRAY_KEYS + ["a999", ""]), st.integers(), st.none(),
                        st.lists(st.integers(), max_size=1)),
              st.one_of(st.booleans(), st.integers(0, 2))),
    st.builds(lambda t: {"$float": t},
              st.one_of(st.sampled_from(["nan", "inf", "-inf", "1.5", "x", ""]), st.integers(),
                        st.none(), st.lists(st.none(), max_size=1))),
    st.just({"$bogus": 1}), st.just({}))
_json_node = st.recursive(_json_leaf, lambda c: st.one_of(
    st.lists(c, max_size=3),
    st.builds(lambda items: {"$dict": items}, st.one_of(
        st.lists(st.one_of(st.tuples(st.one_of(st.text(max_size=3), st.integers(), st.booleans(),
                                               st.none(), st.lists(st.integers(), max_size=1)),
                                     c).map(list),
                           st.lists(c, max_size=3), c), max_size=3), c)),
    st.builds(lambda x: {"$tuple": x}, st.one_of(st.lists(c, max_size=3), c))), max_leaves=12)
_meta_json = st.one_of(
    st.builds(lambda f, v, root: json.dumps({"format": f, "version": v, "root": root}),
              st.sampled_from(["retrograd-checkpoint"] * 4 + ["other", None]),
              st.sampled_from([1, 1, 1, 2, 0, -1, True, "1", 1.0, None]), _json_node),
    st.integers(1, 3000).map(lambda n: '{"format": "retrograd-checkpoint", "version": 1, '
                                       '"root": ' + "[" * n + "]" * n + "}"),
    st.integers(1, 400).map(lambda n: '{"format": "retrograd-checkpoint", "version": 1, '
                                      '"root": ' + '{"$tuple": ' * n + "1" + "}" * n + "}"),
    st.sampled_from(["", "[]", "null", "{", "\"x\"", '{"format": "retrograd-checkpoint"}',
                     '{"format": "retrograd-checkpoint", "version": 1, "root": 1' + "0" * 5000
                     + "}"]),
    st.text(max_size=40).map(lambda t: json.dumps(META)[:len(t) * 7] + t))


def _meta_member(text):
    raw = text.encode("utf-8", "surrogatepass")
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(raw, np.uint8))
    return buf.getvalue()


@st.composite
def hostile_checkpoints(draw):
    members = dict(CKPT_MEMBERS)
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["meta", "array", "drop", "add", "rename", "meta_array"]))
        names = sorted(members)
        if kind == "meta":
            members["__retrograd__.npy"] = _meta_member(draw(_meta_json))
        elif kind == "meta_array":
            members["__retrograd__.npy"] = draw(_npy_member)
        elif kind == "array" and names:
            members[draw(st.sampled_from(names))] = draw(_npy_member)
        elif kind == "drop" and names:
            del members[draw(st.sampled_from(names))]
        elif kind == "add":
            members[draw(st.sampled_from(["a99.npy", "x.pkl", "evil", "dir/a0.npy"]))] = \
                draw(st.one_of(_npy_member, st.binary(max_size=32)))
        elif kind == "rename" and names:
            old = draw(st.sampled_from(names))
            members[draw(st.sampled_from(["a0", "a1.npz", "__retrograd__"]))] = members.pop(old)
    data = _zip(members, draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])))
    if draw(st.booleans()):      # lie in the zip's own size fields
        for _ in range(draw(st.integers(1, 3))):
            sigs = [m.start() for m in re.finditer(rb"PK\x03\x04|PK\x01\x02", data)]
            at = draw(st.sampled_from(sigs))
            local = data[at + 2:at + 4] == b"\x03\x04"
            field = draw(st.sampled_from([18, 22] if local else [20, 24, 42]))
            value = draw(st.sampled_from([0, 1, 100, 1 << 20, 0xFFFFFFFE, 0xFFFFFFFF]))
            data = data[:at + field] + struct.pack("<I", value) + data[at + field + 4:]
    if draw(st.booleans()):
        data = mutate(data, draw(byte_mutations))
    return data


def _load(path):
    out = rg.load(path)
    assert _plain(out), out
    return out


def test_fuzz_rg_load_with_byte_mutations(memory_cap):
    outcomes = Counter()

    @fuzz(300)
    @given(base=st.sampled_from([CKPT, CKPT_DEFLATED]), ops=byte_mutations, seed=_seed)
    def run(base, ops, seed):
        _check_all(_load, rg.CheckpointError, mutate(base, ops), seed, "m.npz", outcomes)

    run()
    assert outcomes["ok"] and outcomes["error"], outcomes
    assert outcomes["files"] >= 1500 or _LONG, outcomes


def test_fuzz_rg_load_with_hostile_headers_and_structures(memory_cap):
    outcomes = Counter()

    @fuzz(400)
    @given(data=hostile_checkpoints(), seed=_seed)
    def run(data, seed):
        _check_all(_load, rg.CheckpointError, data, seed, "h.npz", outcomes)

    run()
    assert outcomes["ok"] and outcomes["error"] and len(outcomes) > 15, outcomes
    assert outcomes["files"] >= 2000 or _LONG, outcomes


# ---------------------------------------------------------------- read_idx

@st.composite
def hostile_idx(draw):
    data = bytearray(draw(st.sampled_from(IDX)))
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from(["code", "ndim", "dim", "body"]))
        if field == "code" and len(data) > 2:
            data[2] = draw(st.sampled_from([8, 9, 11, 12, 13, 14, 0, 10, 255]))
        elif field == "ndim" and len(data) > 3:
            data[3] = draw(st.sampled_from([0, 1, 2, 3, 4, 64, 65, 255]))
        elif field == "dim" and len(data) >= 8:
            i = draw(st.integers(0, (len(data) - 4) // 4 - 1))
            v = draw(st.one_of(st.integers(0, 10), st.sampled_from(
                [1 << 16, 1 << 31, (1 << 32) - 1, 10 ** 9])))
            data[4 + 4 * i:8 + 4 * i] = struct.pack(">I", v)
        elif field == "body":
            k = draw(st.integers(-8, 8))
            data = data[:k] if k < 0 else data + bytes(k)
    data = bytes(data)
    if draw(st.booleans()):
        data = mutate(data, draw(byte_mutations))
    gz = draw(st.sampled_from([None, "before", "after"]))
    if gz == "before":
        data = gzip.compress(data, mtime=0)
    elif gz == "after":
        data = mutate(gzip.compress(data, mtime=0), draw(byte_mutations))
    return data


def _read_idx(path):
    out = read_idx(path)
    assert isinstance(out, np.ndarray) and out.dtype.isnative
    return out


def test_fuzz_read_idx(memory_cap):
    outcomes = Counter()

    @fuzz(500)
    @given(data=hostile_idx(), seed=_seed)
    def run(data, seed):
        _check_all(_read_idx, DataError, data, seed, "f.idx", outcomes)

    run()
    assert outcomes["ok"] and outcomes["error"] and len(outcomes) > 10, outcomes
    assert outcomes["files"] >= 2500 or _LONG, outcomes


# ---------------------------------------------------------------- read_csv

_cell = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-inf", "", " ", "abc", "1e400", "-1e39", "3.5e38",
                     "1_000", "0x10", " 3 ", "1e-400", "9" * 400, "\u0661\u0662", "\x00",
                     "1,5", '"', "\n", "\r", "5\n6", "1e", "--1", "+2", ".5", "4.", "\ufeff1",
                     "9" * 200000]),
    st.text(max_size=6), st.integers(-10 ** 20, 10 ** 20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr))


@st.composite
def hostile_csv(draw):
    rows = [list(r) for r in draw(st.sampled_from([CSV_ROWS, CSV_ROWS[1:]]))]
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["cell", "cell", "drop_cell", "add_cell", "blank", "row",
                                     "drop_row"]))
        i = draw(st.integers(0, max(len(rows) - 1, 0)))
        if not rows:
            break
        if kind == "cell" and rows[i]:
            rows[i][draw(st.integers(0, len(rows[i]) - 1))] = draw(_cell)
        elif kind == "drop_cell" and rows[i]:
            rows[i].pop()
        elif kind == "add_cell":
            rows[i].append(draw(_cell))
        elif kind == "blank":
            rows.insert(i, [])
        elif kind == "row":
            rows.insert(i, draw(st.lists(_cell, max_size=5)))
        elif kind == "drop_row":
            rows.pop(i)
    delimiter = draw(st.sampled_from([",", ",", ";", "\t"]))
    data = _csv_text(rows, delimiter).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = mutate(data, draw(byte_mutations))
    if draw(st.integers(0, 5)) == 0:
        data = gzip.compress(data, mtime=0)
    return data


def _read_csv(path):
    x, y = read_csv(path)
    assert x.dtype == np.float32 and x.ndim == 2 and np.isfinite(x).all()
    assert len(y) == len(x) and y.dtype in (np.int64, np.float32) and np.isfinite(y).all()
    return x, y


def test_fuzz_read_csv(memory_cap):
    outcomes = Counter()

    @fuzz(500)
    @given(data=st.one_of(hostile_csv(),
                          st.tuples(st.sampled_from(CSV), byte_mutations).map(
                              lambda t: mutate(*t))), seed=_seed)
    def run(data, seed):
        _check_all(_read_csv, DataError, data, seed, "f.csv", outcomes)

    run()
    assert outcomes["ok"] and outcomes["error"] and len(outcomes) > 10, outcomes
    assert outcomes["files"] >= 2500 or _LONG, outcomes


def test_every_loader_refuses_the_other_formats_by_name(tmp_path):
    """A file that is not what its extension says: the message says what it looks like."""
    files = {"ck.npz": CKPT, "a.idx": IDX[0], "t.csv": CSV[0], "g.gz": gzip.compress(CSV[0]),
             "p.pkl": pickle.dumps({"a": 1})}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    looks = {"a.idx": "an IDX file", "t.csv": "a text file", "g.gz": "a gzip file",
             "p.pkl": "a pickle, which retrograd never loads"}
    for name, what in looks.items():
        with pytest.raises(rg.CheckpointError, match=f"{name}: not an .npz checkpoint .*this "
                                                      f"one is {what}"):
            rg.load(tmp_path / name)
    with pytest.raises(DataError, match="ck.npz: byte 0: wrong magic number 50 4b 03 04.*zip"):
        read_idx(tmp_path / "ck.npz")
    with pytest.raises(DataError, match="t.csv: byte 0: wrong magic number.*looks like text"):
        read_idx(tmp_path / "t.csv")
    with pytest.raises(DataError, match="ck.npz: not a CSV file: it is a zip archive"):
        read_csv(tmp_path / "ck.npz")
    with pytest.raises(DataError, match="a.idx: not a CSV file: it is an IDX file"):
        read_csv(tmp_path / "a.idx")
    with pytest.raises(DataError, match="p.pkl: not a CSV file: it is a binary file"):
        read_csv(tmp_path / "p.pkl")


# ---------------------------------------------------------------- no code runs on load

class _Bomb:
    """Unpickling this creates a folder: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _npz_with(tmp_path, name, members):
    path = tmp_path / name
    path.write_bytes(_zip(members))
    return path


def test_a_pickle_bomb_inside_an_npz_is_refused_without_running_it(tmp_path):
    marker = str(tmp_path / "code-ran")
    buf = io.BytesIO()
    np.save(buf, np.array([_Bomb(marker), 1], dtype=object), allow_pickle=True)
    bomb = buf.getvalue()
    # as the description, as an array the description lists, and as an extra entry
    cases = {"meta.npz": {"__retrograd__.npy": bomb},
             "array.npz": {**CKPT_MEMBERS, "a0.npy": bomb},
             "extra.npz": {**CKPT_MEMBERS, "zz.npy": bomb}}
    for name, members in cases.items():
        path = _npz_with(tmp_path, name, members)
        with pytest.raises(rg.CheckpointError, match=f"{name}: entry '.*' holds an array of "
                                                      "dtype object, which could only be read "
                                                      "by unpickling"):
            rg.load(path)
        assert not os.path.exists(marker)
    # the bomb is live: numpy with allow_pickle=True would have run it
    with np.load(tmp_path / "extra.npz", allow_pickle=True) as z:
        z["zz"]
    assert os.path.isdir(marker)


def test_a_whole_file_pickle_is_refused(tmp_path):
    marker = str(tmp_path / "code-ran")
    (tmp_path / "ck.npz").write_bytes(pickle.dumps(_Bomb(marker)))
    with pytest.raises(rg.CheckpointError, match="a pickle, which retrograd never loads"):
        rg.load(tmp_path / "ck.npz")
    assert not os.path.exists(marker)


# ---------------------------------------------------------------- absurd sizes, one by one

def test_a_header_claiming_a_huge_array_is_refused_before_allocating(tmp_path, memory_cap):
    huge = _npy("'<f8'", "False", "(1000000000000,)", bytes(64))
    path = _npz_with(tmp_path, "h.npz", {**CKPT_MEMBERS, "a0.npy": huge})
    with pytest.raises(rg.CheckpointError, match=r"h.npz: entry 'a0.npy': its header says shape "
                                                  r"\(1000000000000,\) of float64 "
                                                  r"\(8000000000000 bytes\) but it holds 64 bytes"):
        rg.load(path)
    absurd = _npy("'<f8'", "False", "(0, 4294967296, 4294967296)", b"")
    path = _npz_with(tmp_path, "z.npz", {**CKPT_MEMBERS, "a0.npy": absurd})
    with pytest.raises(rg.CheckpointError, match="absurd array shape"):
        rg.load(path)


def test_a_zip_entry_claiming_more_than_deflate_can_produce_is_refused(tmp_path, memory_cap):
    data = bytearray(CKPT_DEFLATED)
    for m in re.finditer(rb"PK\x01\x02", bytes(data)):      # central directory: claim 4 GB
        struct.pack_into("<I", data, m.start() + 24, 0xFFFFFFF0)
    (tmp_path / "bomb.npz").write_bytes(bytes(data))
    with pytest.raises(rg.CheckpointError, match=r"bomb.npz: entry '.*' claims 4294967280 bytes "
                                                  r"from \d+ compressed bytes"):
        rg.load(tmp_path / "bomb.npz")


def test_deeply_nested_or_malformed_structures_are_refused(tmp_path):
    def with_meta(text):
        path = _npz_with(tmp_path, "s.npz", {"__retrograd__.npy": _meta_member(text)})
        return path

    deep = '{"format": "retrograd-checkpoint", "version": 1, "root": ' + "[" * 5000 + \
        "]" * 5000 + "}"
    with pytest.raises(rg.CheckpointError, match="s.npz: .*nested"):
        rg.load(with_meta(deep))
    bad = {'{"$dict": [[1, 2, 3]]}': "malformed dict entry",
           '{"$dict": [[[1], 2]]}': "malformed dict entry",
           '{"$array": {"x": 1}}': "array {'x': 1} is listed but missing",
           '{"$float": "1e5"}': "malformed float entry '1e5'",
           '{"$tuple": 5}': "malformed tuple entry",
           '{"$what": 5}': r"unknown entry in the structure: \['\$what'\]"}
    for root, message in bad.items():
        text = '{"format": "retrograd-checkpoint", "version": 1, "root": %s}' % root
        with pytest.raises(rg.CheckpointError, match=f"s.npz: {message}"):
            rg.load(with_meta(text))
    with pytest.raises(rg.CheckpointError, match="invalid checkpoint format version -1"):
        rg.load(with_meta('{"format": "retrograd-checkpoint", "version": -1}'))


def test_csv_errors_name_the_line_and_byte(tmp_path):
    cases = {b"1,2\n3,4\n5,\xff\n": r"line 3 \(byte 10\): not UTF-8 text",
             b"1,2\n3,4e39\n": "line 2, column 2: '4e39' is too large for float32",
             b"1,2\n3,4\n" + b"5," + b"9" * 200000 + b"\n": "line 3: cannot read as CSV: field "
                                                            "larger than field limit",
             b"1,2\n" + b"0," * (1 << 22) + b"\n": "line 2: longer than 8388608 bytes",
             b"a,b\n1,2\n3\n": "line 3: expected 2 columns like line 1, got 1",
             b"1,2\n3,NaN\n": "line 2, column 2: 'NaN' is not a finite number"}
    for data, message in cases.items():
        (tmp_path / "d.csv").write_bytes(data)
        with pytest.raises(DataError, match=f"d.csv: {message}"):
            read_csv(tmp_path / "d.csv")


def test_idx_with_too_many_or_absurd_dimensions(tmp_path):
    (tmp_path / "a.idx").write_bytes(bytes([0, 0, 8, 65]) + struct.pack(">I", 1) * 65 + b"x")
    with pytest.raises(DataError, match="a.idx: byte 3: 65 dimensions; an array has at most 64"):
        read_idx(tmp_path / "a.idx")
    (tmp_path / "b.idx").write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">III", 0, 2**32 - 1,
                                                                        2**32 - 1))
    with pytest.raises(DataError, match=r"b.idx: byte 4: absurd shape \(0, 4294967295, "
                                        r"4294967295\)"):
        read_idx(tmp_path / "b.idx")
