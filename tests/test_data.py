import gzip
import json
import time

import numpy as np
import pytest

import retrograd as rg
from retrograd.data import (DATASETS, ArrayDataset, DataError, DataLoader, Dataset, load_dataset,
                            load_mnist5k, load_mnist_idx, minmax_scale, moons, one_hot, read_csv,
                            read_idx, spirals, standardize, write_idx, xor)
from retrograd.errors import RetrogradError


def _ds(n=100):
    X = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    return ArrayDataset(X, np.arange(n))


def _order(loader):
    return np.concatenate([y.numpy() for _, y in loader])


# --------------------------------------------------------------------------- datasets

def test_array_dataset():
    X, y = np.zeros((5, 2), np.float32), np.arange(5)
    ds = ArrayDataset(X, rg.tensor(y))
    assert len(ds) == 5 and ds.arrays[0] is X
    x3, y3 = ds[3]
    assert x3.shape == (2,) and y3 == 3


def test_array_dataset_length_mismatch():
    with pytest.raises(DataError, match=r"same first dimension.*\(5, 2\).*\(4,\)"):
        ArrayDataset(np.zeros((5, 2)), np.zeros(4))
    assert issubclass(DataError, RetrogradError) and issubclass(DataError, ValueError)


# --------------------------------------------------------------------------- loader

@pytest.mark.parametrize("bs, drop_last, sizes", [
    (1, False, [1] * 100),
    (32, False, [32, 32, 32, 4]),
    (32, True, [32, 32, 32]),
    (None, False, [100]),
    ("full", True, [100]),
    (100, True, [100]),
    (150, True, []),
])
def test_loader_batches(bs, drop_last, sizes):
    loader = DataLoader(_ds(), batch_size=bs, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(batches) == len(sizes)
    assert [len(x) for x, _ in batches] == sizes
    for x, y in batches:
        assert isinstance(x, rg.Tensor) and isinstance(y, rg.Tensor)
        assert x.dtype == np.float32 and y.dtype == np.int64 and not x.requires_grad
    if sizes and not drop_last:
        assert np.array_equal(_order(loader), np.arange(100))


def test_loader_bad_batch_size():
    for bs in (0, -1, 2.5, True, "all"):
        with pytest.raises(DataError, match="batch_size"):
            DataLoader(_ds(), batch_size=bs)


def test_loader_shuffle_seeded():
    a = DataLoader(_ds(), batch_size=32, shuffle=True, seed=7)
    b = DataLoader(_ds(), batch_size=32, shuffle=True, seed=7)
    e1, e2 = _order(a), _order(a)
    assert np.array_equal(e1, _order(b)) and np.array_equal(e2, _order(b))
    assert not np.array_equal(e1, e2)                       # a new permutation each epoch
    assert np.array_equal(np.sort(e1), np.arange(100))
    assert not np.array_equal(e1, _order(DataLoader(_ds(), batch_size=32, shuffle=True, seed=8)))
    x, y = next(iter(DataLoader(_ds(), batch_size=10, shuffle=True, seed=7)))
    assert np.array_equal(x.numpy()[:, 0], 3 * y.numpy())   # rows stay aligned


def test_loader_seed_from_manual_seed():
    rg.manual_seed(123)
    a = _order(DataLoader(_ds(), batch_size=8, shuffle=True))
    rg.manual_seed(123)
    b = _order(DataLoader(_ds(), batch_size=8, shuffle=True))
    assert np.array_equal(a, b)


def test_loader_generator_state_resume():
    loader = DataLoader(_ds(), batch_size=16, shuffle=True, seed=1)
    _order(loader)
    state = json.loads(json.dumps(loader.generator_state()))   # JSON round trip
    expected = [_order(loader), _order(loader)]
    resumed = DataLoader(_ds(), batch_size=16, shuffle=True, seed=999)
    resumed.set_generator_state(state)
    assert all(np.array_equal(e, _order(resumed)) for e in expected)
    with pytest.raises(DataError):
        resumed.set_generator_state({"bit_generator": "Nope"})


class _Squares(Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return np.array([i, i * i], np.float32), i


class _Single(Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return float(i)


def test_loader_general_dataset():
    batches = list(DataLoader(_Squares(), batch_size=4))
    assert [len(x) for x, _ in batches] == [4, 4, 2]
    x, y = batches[1]
    assert x.shape == (4, 2) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.array_equal(y.numpy(), [4, 5, 6, 7])
    assert np.array_equal(x.numpy()[:, 1], y.numpy() ** 2)
    (x,) = next(iter(DataLoader(_Single(), batch_size="full")))
    assert x.dtype == np.float32 and np.array_equal(x.numpy(), np.arange(5))
    ys = np.concatenate([y.numpy() for _, y in DataLoader(_Squares(), 3, shuffle=True, seed=0)])
    assert sorted(ys) == list(range(10))


# --------------------------------------------------------------------------- synthetic

@pytest.mark.parametrize("make", [spirals, moons])
def test_generated(make):
    X, y = make()
    assert X.shape == (200, 2) and X.dtype == np.float32
    assert y.shape == (200,) and y.dtype == np.int64
    assert np.array_equal(np.bincount(y), [100, 100])
    X2, y2 = make()
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    X3, _ = make(seed=1)
    assert not np.array_equal(X, X3)
    X, y = make(n=51, noise=0.0)
    assert X.shape == (51, 2) and np.array_equal(np.bincount(y), [25, 26])
    with pytest.raises(DataError):
        make(n=1)


def test_xor():
    X, y = xor()
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert np.array_equal(X, [[0, 0], [0, 1], [1, 0], [1, 1]]) and np.array_equal(y, [0, 1, 1, 0])
    Xn, yn = xor(n=100, noise=0.1, seed=3)
    assert Xn.shape == (100, 2) and np.array_equal(np.bincount(yn), [50, 50])
    assert np.array_equal(Xn, xor(n=100, noise=0.1, seed=3)[0])
    assert 0 < np.abs(Xn - X[np.arange(100) % 4]).max() < 1


# --------------------------------------------------------------------------- mnist5k

def test_mnist5k():
    (xtr, ytr), (xte, yte) = load_mnist5k()
    assert xtr.shape == (4000, 784) and xte.shape == (1000, 784)
    assert xtr.dtype == xte.dtype == np.float32 and ytr.dtype == yte.dtype == np.int64
    assert xtr.min() == 0 and xtr.max() == 1 and 0 <= xte.min() and xte.max() <= 1
    assert np.array_equal(np.bincount(ytr), [400] * 10)
    assert np.array_equal(np.bincount(yte), [100] * 10)
    xtr[0, 0] = 5                                  # callers get their own copies
    assert load_mnist5k()[0][0][0, 0] == 0


# --------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    a = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, a)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    b = read_idx(path)
    assert b.dtype == a.dtype and b.dtype.isnative and b.shape == a.shape and np.array_equal(a, b)
    b[0, 0, 0] = 1                                 # writable


def test_idx_gzip_by_magic_and_empty(tmp_path):
    plain = tmp_path / "x"
    write_idx(plain, np.arange(4, dtype=np.int16))
    renamed = tmp_path / "no-extension"
    renamed.write_bytes(gzip.compress(plain.read_bytes()))
    assert np.array_equal(read_idx(renamed), np.arange(4))
    write_idx(tmp_path / "e", np.zeros((0, 3), np.uint8))
    assert read_idx(tmp_path / "e").shape == (0, 3)
    with pytest.raises(DataError, match="dtype int64"):
        write_idx(tmp_path / "bad", np.arange(3))


def _idx_bytes(code, dims, data=b""):
    return bytes([0, 0, code, len(dims)]) + np.asarray(dims, ">u4").tobytes() + data


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("content, pattern", [
    (b"\x01\x00\x08\x01" + bytes(8), r"byte 0.*wrong magic"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", r"byte 2.*unknown dtype code 0x07"),
    (b"\x00\x00", r"byte 2.*truncated header"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", r"byte 8.*truncated header"),
    (_idx_bytes(0x08, [2, 3], bytes(5)), r"truncated data.*6 bytes"),
    (_idx_bytes(0x0B, [2], bytes(4) + b"xy"), r"byte 12.*trailing bytes"),
])
def test_idx_errors(tmp_path, gz, content, pattern):
    path = tmp_path / "bad.idx"
    path.write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(DataError, match=pattern) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_idx_corrupt_gzip(tmp_path):
    good = gzip.compress(_idx_bytes(0x08, [1000], bytes(range(250)) * 4))
    for name, content in (("cut", good[:-12]), ("garbled", good[:12] + b"\xff" * 20 + good[32:])):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataError, match=name):
            read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_absurd_size_rejected_before_allocating(tmp_path, gz):
    content = _idx_bytes(0x0E, [100000, 100000, 100000])
    assert len(content) == 16
    content += bytes(4)                            # a 20-byte file claiming 8e15 bytes
    path = tmp_path / "huge.idx"
    path.write_bytes(gzip.compress(content) if gz else content)
    t = time.perf_counter()
    with pytest.raises(DataError, match=r"byte \d+.*\(100000, 100000, 100000\)"):
        read_idx(path)
    assert time.perf_counter() - t < 0.5


def _write_mnist(folder, n_train, n_test, names, n_train_labels=None):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n, nl in (("train", n_train, n_train_labels or n_train), ("t10k", n_test, n_test)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        imgs[0, 0, 0], imgs[0, 0, 1] = 0, 255
        labels = rng.integers(0, 10, nl).astype(np.uint8)
        write_idx(folder / names[split, "images"], imgs)
        write_idx(folder / names[split, "labels"], labels)
        arrays[split] = imgs, labels
    return arrays


@pytest.mark.parametrize("style", ["plain", "gz", "dotted"])
def test_load_mnist_idx(tmp_path, style):
    ext = ".gz" if style == "gz" else ""
    sep = "." if style == "dotted" else "-"
    names = {(s, k): f"{s}-{k}{sep}idx{d}-ubyte{ext}"
             for s in ("train", "t10k") for k, d in (("images", 3), ("labels", 1))}
    arrays = _write_mnist(tmp_path, 6, 4, names)
    (xtr, ytr), (xte, yte) = load_mnist_idx(tmp_path)
    assert xtr.shape == (6, 784) and xte.shape == (4, 784)
    assert xtr.dtype == np.float32 and ytr.dtype == yte.dtype == np.int64
    assert xtr.min() == 0 and xtr.max() == 1
    assert np.allclose(xte * 255, arrays["t10k"][0].reshape(4, -1))
    assert np.array_equal(ytr, arrays["train"][1])
    assert load_dataset(tmp_path)[1][1].shape == (4,)


def test_load_mnist_idx_errors(tmp_path):
    names = {(s, k): f"{s}-{k}-idx{d}-ubyte"
             for s in ("train", "t10k") for k, d in (("images", 3), ("labels", 1))}
    _write_mnist(tmp_path, 6, 4, names, n_train_labels=5)
    with pytest.raises(DataError, match="6 images.*5 labels"):
        load_mnist_idx(tmp_path)
    write_idx(tmp_path / names["train", "labels"], np.zeros(6, np.uint8))
    load_mnist_idx(tmp_path)
    (tmp_path / names["t10k", "labels"]).unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_mnist_idx(tmp_path)


# --------------------------------------------------------------------------- CSV

def _csv(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_header_and_labels(tmp_path):
    X, y = read_csv(_csv(tmp_path, "a,b,label\n1,2,0\n3.5,4,1\n\n5,6,2\n"))
    assert X.dtype == np.float32 and np.array_equal(X, [[1, 2], [3.5, 4], [5, 6]])
    assert y.dtype == np.int64 and np.array_equal(y, [0, 1, 2])
    X, y = read_csv(_csv(tmp_path, "1,2,0.5\n3,4,1.5\n"))
    assert X.shape == (2, 2) and y.dtype == np.float32 and np.allclose(y, [0.5, 1.5])
    X, y = read_csv(_csv(tmp_path, "7;1;2\n8;3;4\n"), label_column=0, delimiter=";")
    assert np.array_equal(y, [7, 8]) and np.array_equal(X, [[1, 2], [3, 4]])
    X, y = read_csv(_csv(tmp_path, "1,2,3\n4,5,6\n"), header=True)
    assert X.shape == (1, 2) and np.array_equal(y, [6])
    X, y = read_csv(_csv(tmp_path, "a,b\n1,2\n3,4\n"), label_column=None)
    assert y is None and np.array_equal(X, [[1, 2], [3, 4]])
    X, y = read_csv(_csv(tmp_path, "1\n2\n"), label_column=None)
    assert X.shape == (2, 1)
    path = tmp_path / "g.csv.gz"
    path.write_bytes(gzip.compress(b"x,y\n1,0\n2,1\n"))
    assert np.array_equal(read_csv(path)[1], [0, 1])


@pytest.mark.parametrize("text, pattern", [
    ("", r"no data rows"),
    ("a,b,c\n", r"no data rows"),
    ("1,2,3\n4,5\n", r"line 2: expected 3 columns.*got 2"),
    ("a,b\n1,2\n\n3,x\n", r"line 4, column 2: non-numeric cell 'x'"),
    ("1,2\n3,\n", r"line 2, column 2: an empty cell"),
    ("1,2\n3,nan\n", r"line 2, column 2: 'nan' is not a finite"),
    ("1,2\n-inf,1\n", r"line 2, column 1: '-inf' is not a finite"),
    ("1,2\n1e300,1\n", r"line 2, column 1.*too large for float32"),
])
def test_csv_errors(tmp_path, text, pattern):
    path = _csv(tmp_path, text)
    with pytest.raises(DataError, match=pattern) as info:
        read_csv(path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------- transforms

def test_standardize():
    X = np.array([[1, 5], [3, 5]], np.float32)
    Xn, mean, std = standardize(X)
    assert Xn.dtype == np.float32 and np.array_equal(Xn, [[-1, 0], [1, 0]])
    assert np.array_equal(mean, [2, 5]) and np.array_equal(std, [1, 1])
    Xt, _, _ = standardize(np.array([[4, 6]], np.float32), mean, std)
    assert np.array_equal(Xt, [[2, 1]])


def test_minmax_scale():
    X = np.array([[0, 2, 7], [10, 4, 7], [5, 3, 7]], np.float32)
    Xs, lo, hi = minmax_scale(X)
    assert np.allclose(Xs, [[0, 0, 0], [1, 1, 0], [0.5, 0.5, 0]])
    assert np.array_equal(lo, [0, 2, 7]) and np.array_equal(hi, [10, 4, 7])
    assert np.allclose(minmax_scale([[20, 3, 8]], lo, hi)[0], [[2, 0.5, 1]])


def test_one_hot():
    oh = one_hot(np.array([2, 0, 1]), 4)
    assert oh.dtype == np.float32
    assert np.array_equal(oh, [[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0]])
    assert one_hot([1, 1]).shape == (2, 2)
    with pytest.raises(DataError, match=r"\[0, 3\)"):
        one_hot([0, 3], 3)


# --------------------------------------------------------------------------- registry

def test_load_dataset_names():
    (xtr, ytr), (xte, yte) = load_dataset("xor")
    assert np.array_equal(xtr, xte) and np.array_equal(ytr, [0, 1, 1, 0])
    for name in ("spirals", "moons"):
        (xtr, ytr), (xte, yte) = load_dataset(name, seed=3)
        assert xtr.shape == xte.shape == (200, 2) and not np.array_equal(xtr, xte)
        assert np.array_equal(load_dataset(name, seed=3)[0][0], xtr)
        assert not np.array_equal(load_dataset(name, seed=4)[0][0], xtr)
    (xtr, ytr), (xte, yte) = load_dataset("mnist5k")
    assert xtr.shape == (4000, 784) and yte.shape == (1000,)
    assert set(DATASETS) == {"mnist5k", "xor", "spirals", "moons"}


def test_load_dataset_csv(tmp_path):
    rows = "\n".join(f"{i},{i % 3}" for i in range(50))
    path = _csv(tmp_path, "x,label\n" + rows + "\n")
    (xtr, ytr), (xte, yte) = load_dataset(path, seed=1)
    assert len(xtr) == 40 and len(xte) == 10 and ytr.dtype == np.int64
    assert sorted(np.concatenate([xtr, xte])[:, 0]) == list(range(50))
    assert np.array_equal(load_dataset(str(path), seed=1)[1][0], xte)
    assert not np.array_equal(load_dataset(path, seed=2)[1][0], xte)


def test_load_dataset_unknown(tmp_path):
    with pytest.raises(DataError, match="mnist5k, xor, spirals, moons"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="not a .csv file"):
        load_dataset(_csv(tmp_path, "1,2\n", name="d.txt"))
