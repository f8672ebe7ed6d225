"""Saving and loading without pickle, and atomic writes.

A checkpoint is an ``.npz`` (a zip of ``.npy`` arrays) holding the arrays of any
nested structure of dicts, lists, arrays, numbers, strings and None, plus one
JSON document that describes the structure and carries a format version.
Loading uses ``allow_pickle=False`` and parses only JSON and raw arrays, so a
file can never run code; saving refuses anything loading would refuse. Writes go
to a temporary file in the same folder, which is fsync'ed and then renamed over
the target: a crash at any moment leaves either the old file or the new one,
never half of one (devices, FIFOs and stdout are written in place instead).

A path ending in ``.safetensors`` is read and written in the safetensors format instead
(through the optional ``safetensors`` package): a flat dict of named arrays plus string
metadata, the weights-exchange format of Hugging Face and PyTorch. It holds state_dicts
only, not checkpoints' nested structures, and is as safe to load (JSON and raw bytes).
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
import sys
import tempfile
import time
import zipfile
import zlib

import numpy as np

from . import arrays as _arrays
from .errors import RetrogradError
from .tensor import Tensor

__all__ = ["save", "load", "atomic_write", "CheckpointError", "FORMAT", "FORMAT_VERSION"]

FORMAT = "retrograd-checkpoint"
FORMAT_VERSION = 1
_META = "__retrograd__"
_MAX_HEADER = 10000          # bytes of an .npy header (numpy's own default limit)
_MAX_DEPTH = 200             # nesting of the stored structure
_MAX_DEFLATE_RATIO = 1032    # deflate cannot expand data by more than about this
_MAX_INT_DIGITS = 4300       # Python's default int <-> str limit, which json.loads applies
_MAX_INT = 10 ** _MAX_INT_DIGITS


class CheckpointError(RetrogradError, ValueError):
    """A file that is not a readable retrograd checkpoint; the message names it."""


_STALE_AFTER = 60.0           # seconds without a write before a dead writer's temp file goes


def _remove_stale_temps(folder, prefix):
    """Delete temporary files a killed save left for this target: those whose writer
    (the PID in the name) is gone and that nobody wrote to for a minute. A live
    writer's file, or one from another host whose PID we cannot judge, stays."""
    if os.name != "posix":                     # os.kill(pid, 0) probes only on POSIX
        return
    now = time.time()
    for name in os.listdir(folder):
        pid = name[len(prefix):].split("-", 1)[0] if name.startswith(prefix) else ""
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue                           # alive (or not ours to signal): keep
        except ProcessLookupError:
            pass
        except OSError:
            continue
        with contextlib.suppress(OSError):
            full = os.path.join(folder, name)
            if now - os.stat(full).st_mtime > _STALE_AFTER:
                os.unlink(full)


def is_int(v) -> bool:
    """An integer value read from a checkpoint (Python or NumPy; not a bool)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def is_number(v) -> bool:
    """A real number read from a checkpoint (an int or a float, Python or NumPy)."""
    return is_int(v) or isinstance(v, (float, np.floating))


def _umask_mode():
    """The mode ``open()`` gives a new file: 0o666 less the umask (read without
    changing it where /proc shows it; os.umask is the only way elsewhere)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _std_stream(st):
    """stdout or stderr when ``st`` is the file they write to (``/dev/stdout``, or the
    file the shell redirected them to), else None."""
    for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(fd), st):
                return fd, stream
    return None


@contextlib.contextmanager
def _naming(path):
    """An OSError while writing names the user's ``path``, not the hidden temp file
    (ENOSPC from a write carries no name at all); one naming another file is kept."""
    try:
        yield
    except OSError as e:
        name = e.filename
        if e.errno is None or not (name is None or os.path.basename(os.fspath(name))
                                   .startswith(".tmp-")):
            raise
        raise OSError(e.errno, e.strerror, path) from None


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """``with atomic_write(path) as f: ...`` -- the file appears complete or not at all.

    A regular file (or a new one) is written as a hidden ``.tmp-<name>-<pid>-*`` file
    beside it, fsync'ed, then renamed over it; temp files of earlier saves that were
    killed are cleaned up. Symlinks are resolved first, so a link keeps pointing at its
    (now updated) target. The new file keeps an existing file's permission bits (and
    owner, where allowed); a new one gets those the umask allows, as ``open`` would.
    Anything else is written through in place, never replaced: a device such as
    ``/dev/null``, a FIFO, and ``/dev/stdout`` or whatever file stdout/stderr go to.
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)                   # follows symlinks, /dev/stdout's included
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    std = _std_stream(st) if st is not None else None
    if std is not None:                      # write where our stdout goes, in order
        with contextlib.suppress(Exception):
            std[1].flush()
        with _naming(path), os.fdopen(os.dup(std[0]), mode) as f:
            yield f
        return
    if st is not None and not stat.S_ISREG(st.st_mode):      # a device, a FIFO, a socket
        with _naming(path), open(path, mode) as f:
            yield f
        return
    with _naming(path):
        real = os.path.realpath(path)
        folder = os.path.dirname(real)
        os.makedirs(folder, exist_ok=True)
        prefix = ".tmp-" + os.path.basename(real) + "-"
        _remove_stale_temps(folder, prefix)
        fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}-", dir=folder)   # mode 0600
    try:
        with _naming(path):
            with os.fdopen(fd, mode) as f:
                yield f
                f.flush()
                if st is not None and hasattr(os, "fchown"):
                    with contextlib.suppress(OSError):      # only root may give it away
                        os.fchown(f.fileno(), st.st_uid, st.st_gid)
                if hasattr(os, "fchmod"):                   # POSIX; Windows has no modes
                    os.fchmod(f.fileno(), stat.S_IMODE(st.st_mode) if st else _umask_mode())
                os.fsync(f.fileno())
            os.replace(tmp, real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):          # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _encode(obj, arrays, where, depth=0):
    """Structure -> JSON-able description; arrays are moved into ``arrays``. Anything
    ``load`` would refuse (nesting past its limit, an int JSON cannot parse back) is
    refused here, before the target is touched."""
    if depth > _MAX_DEPTH:
        raise RetrogradError(f"save: {where} is nested more than {_MAX_DEPTH} levels deep "
                             "(or contains itself); rg.load would refuse the file")
    if isinstance(obj, Tensor):
        obj = obj.data
    if isinstance(obj, (np.ndarray, np.generic)):
        arr = np.asarray(obj)
        if arr.dtype.kind not in "biufc":
            raise RetrogradError(f"save: {where} is an array of dtype {arr.dtype}, which cannot be "
                                 "stored without pickle")
        key = f"a{len(arrays)}"
        arrays[key] = arr
        return {"$array": key, "$scalar": isinstance(obj, np.generic)}
    if isinstance(obj, int) and not isinstance(obj, bool) and abs(obj) >= _MAX_INT:
        raise RetrogradError(f"save: {where} is an integer of more than {_MAX_INT_DIGITS} "
                             "digits, which JSON cannot read back in Python; store it as a "
                             "string or an array")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        if isinstance(obj, float) and not np.isfinite(obj):
            return {"$float": repr(obj)}
        return obj
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise RetrogradError(f"save: {where} has a key {k!r} of type {type(k).__name__}; "
                                     "only str and int keys can be stored")
            if isinstance(k, int) and abs(k) >= _MAX_INT:
                raise RetrogradError(f"save: {where} has an integer key of more than "
                                     f"{_MAX_INT_DIGITS} digits")
            items.append([k, _encode(v, arrays, f"{where}[{k!r}]", depth + 1)])
        return {"$dict": items}
    if isinstance(obj, (list, tuple)):
        enc = [_encode(v, arrays, f"{where}[{i}]", depth + 1) for i, v in enumerate(obj)]
        return {"$tuple": enc} if isinstance(obj, tuple) else enc
    if hasattr(obj, "state_dict"):
        return _encode(obj.state_dict(), arrays, where, depth)
    if _arrays.is_foreign(obj):         # a GPU / array-API array: stored as host data
        return _encode(_arrays.to_numpy(obj), arrays, where, depth)
    raise RetrogradError(f"save: {where} is a {type(obj).__name__}, which cannot be stored "
                         "without pickle (use dicts, lists, arrays, numbers, strings)")


def _decode(node, arrays, path, depth=0):
    """The structure back from its JSON description; anything malformed is a
    CheckpointError (the description may come from a hostile file)."""
    if depth > _MAX_DEPTH:
        raise CheckpointError(f"{path}: the structure is nested more than {_MAX_DEPTH} levels "
                              "deep")
    if isinstance(node, list):
        return [_decode(v, arrays, path, depth + 1) for v in node]
    if isinstance(node, dict):
        if "$array" in node:
            key = node["$array"]
            if not isinstance(key, str) or key not in arrays:
                raise CheckpointError(f"{path}: array {key!r} is listed but missing")
            arr = arrays[key]
            if node.get("$scalar"):
                if arr.ndim != 0:
                    raise CheckpointError(f"{path}: array {key!r} is listed as a scalar but "
                                          f"has shape {arr.shape}")
                return arr[()]
            return arr
        if "$dict" in node:
            items = node["$dict"]
            if not isinstance(items, list) or not all(
                    isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], (str, int))
                    and not isinstance(kv[0], bool) for kv in items):
                raise CheckpointError(f"{path}: malformed dict entry in the structure")
            return {k: _decode(v, arrays, path, depth + 1) for k, v in items}
        if "$tuple" in node:
            if not isinstance(node["$tuple"], list):
                raise CheckpointError(f"{path}: malformed tuple entry in the structure")
            return tuple(_decode(v, arrays, path, depth + 1) for v in node["$tuple"])
        if "$float" in node:
            text = node["$float"]
            if text not in ("nan", "inf", "-inf"):
                raise CheckpointError(f"{path}: malformed float entry {text!r} in the structure")
            return float(text)
        raise CheckpointError(f"{path}: unknown entry in the structure: {sorted(node)[:5]}")
    return node


def save(obj, path, metadata=None) -> str:
    """Save a nested structure (or a Module / Optimizer: their state_dict) to ``path``
    atomically, without pickle. Returns the path.

    A ``.safetensors`` path stores a state_dict (a Module, or a flat dict of names to
    arrays) and ``metadata``, a dict of strings, in the file's ``__metadata__``."""
    if _is_safetensors(path):
        return _save_safetensors(obj, path, metadata)
    if metadata is not None:
        raise RetrogradError(f"save: metadata= is stored by .safetensors files only; in the "
                             f".npz checkpoint {os.fspath(path)} keep it in the saved structure")
    arrays: dict[str, np.ndarray] = {}
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "root": _encode(obj, arrays, "object")}
    buf = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    with atomic_write(path) as f:
        np.savez(f, **{_META: buf}, **arrays)
    return os.fspath(path)


def _sniff(head: bytes) -> str:
    """What a file that is not a zip archive looks like, for the error message."""
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle, which retrograd never loads"
    if head.startswith(b"\x93NUMPY"):
        return "a single .npy array"
    if len(head) >= 4 and head[:2] == b"\x00\x00" and head[2] in (8, 9, 11, 12, 13, 14):
        return "an IDX file"
    if not head:
        return "an empty file"
    if all(32 <= c < 127 or c in b"\t\r\n" for c in head):
        return "a text file"
    return "not a zip archive"


def _member(zf, info, path, file_size):
    """One ``.npy`` entry of the archive as an array, checked before anything is
    allocated: a numeric dtype (never object: reading those would unpickle), a shape
    whose bytes are exactly what the entry holds, and an entry size its compressed
    size can produce."""
    name = info.filename
    where = f"{path}: entry {name!r}"
    if info.flag_bits & 0x1:
        raise CheckpointError(f"{where} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise CheckpointError(f"{where} uses zip compression method {info.compress_type}; "
                              "a checkpoint's entries are stored or deflated")
    limit = info.compress_size if info.compress_type == zipfile.ZIP_STORED else (
        _MAX_DEFLATE_RATIO * info.compress_size + 1024)
    if info.compress_size > file_size or info.file_size > limit:
        raise CheckpointError(f"{where} claims {info.file_size} bytes from {info.compress_size} "
                              f"compressed bytes in a {file_size}-byte file: truncated or corrupt")
    fmt = np.lib.format
    with zf.open(info) as m:
        version = fmt.read_magic(m)
        if version not in ((1, 0), (2, 0)):
            raise CheckpointError(f"{where}: .npy format version {version} is not read")
        try:                 # numpy's parser of the header (a Python literal) is a black box
            read_header = (fmt.read_array_header_1_0 if version == (1, 0)
                           else fmt.read_array_header_2_0)
            shape, fortran, dtype = read_header(m, max_header_size=_MAX_HEADER)
        except Exception as e:      # noqa: BLE001 -- ValueError, SyntaxError, TokenError, ...
            raise CheckpointError(f"{where}: unreadable .npy header ({type(e).__name__}: "
                                  f"{e})") from None
        header = m.tell()
        if dtype.hasobject or dtype.kind not in "biufc" or dtype.fields is not None or (
                dtype.subdtype is not None):
            what = ("could only be read by unpickling" if dtype.hasobject
                    else "is not a number type")
            raise CheckpointError(f"{where} holds an array of dtype {dtype}, which {what}; a "
                                  "checkpoint holds numeric arrays only")
        if len(shape) > 64 or any(d < 0 for d in shape) or math.prod(
                d for d in shape if d) * dtype.itemsize >= 2 ** 48:
            raise CheckpointError(f"{where}: absurd array shape {shape} in its header")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes != info.file_size - header:
            raise CheckpointError(f"{where}: its header says shape {shape} of {dtype} "
                                  f"({nbytes} bytes) but it holds {info.file_size - header} "
                                  f"bytes after the {header}-byte header")
        buf = bytearray(nbytes)     # at most the entry's size, checked above
        view, got = memoryview(buf), 0
        while got < nbytes:         # reading to the end also checks the entry's CRC
            chunk = m.read(min(nbytes - got, 1 << 22))
            if not chunk:
                raise CheckpointError(f"{where}: truncated data ({got} of {nbytes} bytes)")
            view[got:got + len(chunk)] = chunk
            got += len(chunk)
        m.read(1)
    arr = np.frombuffer(buf, dtype)
    return arr.reshape(shape[::-1]).T if fortran and len(shape) > 1 else arr.reshape(shape)


def _read_checkpoint(f, path, file_size):
    with zipfile.ZipFile(f) as zf:
        infos = {}
        for info in zf.infolist():
            infos[info.filename] = info
        meta_name = _META + ".npy"
        if meta_name not in infos:
            names = [n[:-4] if n.endswith(".npy") else n for n in infos]
            raise CheckpointError(f"{path}: not a retrograd checkpoint (no {_META} entry; "
                                  f"entries: {names[:5]})")
        foreign = [n for n in infos if not n.endswith(".npy")]
        if foreign:
            raise CheckpointError(f"{path}: entry {foreign[0]!r} is not an .npy array; a "
                                  "checkpoint holds nothing else")
        raw = _member(zf, infos[meta_name], path, file_size)
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise CheckpointError(f"{path}: its {_META} entry is not the JSON description "
                                  f"(an array of {raw.dtype} {raw.shape})")
        meta = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a retrograd checkpoint")
        version = meta.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise CheckpointError(f"{path}: invalid checkpoint format version {version!r}")
        if version > FORMAT_VERSION:
            raise CheckpointError(f"{path}: checkpoint format version {version} is newer "
                                  f"than this retrograd understands ({FORMAT_VERSION}); upgrade "
                                  "retrograd")
        arrays = {name[:-4]: _member(zf, info, path, file_size) for name, info in infos.items()
                  if name != meta_name}
    return meta, arrays


def load(path, with_metadata=False):
    """Load what ``save`` wrote. Raises CheckpointError (naming the file) for anything
    that is missing, truncated, foreign, corrupt, or of a newer format version.

    Nothing in the file can run code (no pickle: object arrays are refused), and
    nothing is allocated before its size is checked against the file's: an entry
    whose header claims more data than it holds is refused, and a compressed entry
    cannot claim more than deflate can expand it to (about 1032 times its size).

    A ``.safetensors`` file loads as a dict of arrays; ``with_metadata=True`` returns
    ``(arrays, metadata)`` with its ``__metadata__`` strings.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: not a file")
    if _is_safetensors(path):
        return _load_safetensors(path, with_metadata)
    if with_metadata:
        raise RetrogradError(f"load: with_metadata= is for .safetensors files; {path} is an "
                             ".npz checkpoint")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if not head.startswith(b"PK"):
                raise CheckpointError(f"{path}: not an .npz checkpoint (a checkpoint is a zip "
                                      f"file; this one is {_sniff(head)}: it starts with "
                                      f"{head!r})")
            f.seek(0)
            meta, arrays = _read_checkpoint(f, path, os.fstat(f.fileno()).st_size)
        return _decode(meta.get("root"), arrays, path)
    except CheckpointError:
        raise
    except RecursionError:
        raise CheckpointError(f"{path}: the structure is nested too deeply") from None
    except MemoryError:
        raise CheckpointError(f"{path}: not enough memory to load it") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, KeyError,
            UnicodeDecodeError, NotImplementedError, RuntimeError, OverflowError,
            zlib.error) as e:
        raise CheckpointError(f"{path}: truncated or corrupt ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------- safetensors

def _is_safetensors(path) -> bool:
    return os.fspath(path).lower().endswith(".safetensors")


def _safetensors_numpy(who):
    try:
        import safetensors.numpy
    except ImportError:
        raise RetrogradError(f"{who}: .safetensors files need the safetensors package: pip "
                             "install 'retrograd[safetensors]'") from None
    return safetensors.numpy


def _flat_arrays(obj, path):
    """A state_dict as {name: C-contiguous ndarray}. Nested structures (a training
    checkpoint, an optimizer's state) are refused: safetensors is a flat list of named
    tensors, and a private convention for nesting would be one no other tool reads."""
    if hasattr(obj, "state_dict") and not isinstance(obj, dict):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise RetrogradError(f"save: {path} is a .safetensors file, which holds a dict of named "
                             f"arrays (a state_dict), not a {type(obj).__name__}; save other "
                             "structures as .npz")
    out = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise RetrogradError(f"save: {path}: key {k!r} is a {type(k).__name__}; a "
                                 ".safetensors file names its arrays with strings")
        if k == "__metadata__":
            raise RetrogradError(f"save: {path}: the name '__metadata__' is reserved by the "
                                 "safetensors format; pass metadata= instead")
        v = v.data if isinstance(v, Tensor) else v
        v = _arrays.to_numpy(v) if _arrays.is_foreign(v) else v
        if not isinstance(v, (np.ndarray, np.generic)):
            raise RetrogradError(f"save: {path}: entry {k!r} is a {type(v).__name__}, not an "
                                 "array; a .safetensors file holds arrays only (save nested "
                                 "structures as .npz)")
        out[k] = np.asarray(v, order="C")      # (ascontiguousarray makes a 0-d array 1-d)
    return out


def _save_safetensors(obj, path, metadata):
    """Serialise in memory first, so anything the format refuses (a dtype such as
    complex128, non-string metadata) fails before the target is touched."""
    st = _safetensors_numpy("save")
    arrays = _flat_arrays(obj, os.fspath(path))
    if metadata is not None and not (isinstance(metadata, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise RetrogradError(f"save: {os.fspath(path)}: metadata must be a dict of strings to "
                             f"strings, got {metadata!r:.80}")
    try:
        data = st.save(arrays, metadata=metadata)
    except Exception as e:      # noqa: BLE001 -- the Rust side raises its own error types
        raise RetrogradError(f"save: {os.fspath(path)}: safetensors cannot store this "
                             f"({type(e).__name__}: {e})") from None
    with atomic_write(path) as f:
        f.write(data)
    return os.fspath(path)


def _safetensors_header(data: bytes, path):
    """The JSON header (an 8-byte little-endian length, then JSON), checked against the
    file's size before the package parses it."""
    if len(data) < 8:
        raise CheckpointError(f"{path}: truncated or corrupt (a .safetensors file starts with "
                              f"an 8-byte header length; this one has {len(data)} bytes)")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise CheckpointError(f"{path}: truncated or corrupt (its header claims {n} bytes, "
                              f"the file holds {len(data) - 8} after the length)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: not a .safetensors file (unreadable header: "
                              f"{type(e).__name__}: {e})") from None
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: not a .safetensors file (malformed header)")
    return meta


def _load_safetensors(path, with_metadata):
    st = _safetensors_numpy("load")
    try:
        with open(path, "rb") as f:
            data = f.read()
        meta = _safetensors_header(data, path)
        arrays = st.load(data)
    except CheckpointError:
        raise
    except MemoryError:
        raise CheckpointError(f"{path}: not enough memory to load it") from None
    except Exception as e:      # noqa: BLE001 -- SafetensorError and friends: a corrupt file
        raise CheckpointError(f"{path}: truncated or corrupt ({type(e).__name__}: {e})") from None
    return (arrays, meta) if with_metadata else arrays
