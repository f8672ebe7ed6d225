"""Saving and loading without pickle, and atomic writes.

A checkpoint is an ``.npz`` (a zip of ``.npy`` arrays) holding the arrays of any
nested structure of dicts, lists, arrays, numbers, strings and None, plus one
JSON document that describes the structure and carries a format version.
Loading uses ``allow_pickle=False`` and parses only JSON and raw arrays, so a
file can never run code. Writes go to a temporary file in the same folder,
which is fsync'ed and then renamed over the target: a crash at any moment
leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import contextlib
import io as _io
import json
import os
import tempfile
import zipfile

import numpy as np

from .errors import RetrogradError
from .tensor import Tensor

__all__ = ["save", "load", "atomic_write", "CheckpointError", "FORMAT", "FORMAT_VERSION"]

FORMAT = "retrograd-checkpoint"
FORMAT_VERSION = 1
_META = "__retrograd__"


class CheckpointError(RetrogradError, ValueError):
    """A file that is not a readable retrograd checkpoint; the message names it."""


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """``with atomic_write(path) as f: ...`` -- the file appears complete or not at all."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
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


def _encode(obj, arrays, where):
    """Structure -> JSON-able description; arrays are moved into ``arrays``."""
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
            items.append([k, _encode(v, arrays, f"{where}[{k!r}]")])
        return {"$dict": items}
    if isinstance(obj, (list, tuple)):
        enc = [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
        return {"$tuple": enc} if isinstance(obj, tuple) else enc
    if hasattr(obj, "state_dict"):
        return _encode(obj.state_dict(), arrays, where)
    raise RetrogradError(f"save: {where} is a {type(obj).__name__}, which cannot be stored "
                         "without pickle (use dicts, lists, arrays, numbers, strings)")


def _decode(node, arrays, path):
    if isinstance(node, list):
        return [_decode(v, arrays, path) for v in node]
    if isinstance(node, dict):
        if "$array" in node:
            key = node["$array"]
            if key not in arrays:
                raise CheckpointError(f"{path}: array {key!r} is listed but missing")
            arr = arrays[key]
            return arr[()] if node.get("$scalar") else arr
        if "$dict" in node:
            return {k: _decode(v, arrays, path) for k, v in node["$dict"]}
        if "$tuple" in node:
            return tuple(_decode(v, arrays, path) for v in node["$tuple"])
        if "$float" in node:
            return float(node["$float"])
        raise CheckpointError(f"{path}: unknown entry in the structure: {sorted(node)}")
    return node


def save(obj, path) -> str:
    """Save a nested structure (or a Module / Optimizer: their state_dict) to ``path``
    atomically, without pickle. Returns the path."""
    arrays: dict[str, np.ndarray] = {}
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "root": _encode(obj, arrays, "object")}
    buf = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    with atomic_write(path) as f:
        np.savez(f, **{_META: buf}, **arrays)
    return os.fspath(path)


def load(path):
    """Load what ``save`` wrote. Raises CheckpointError (naming the file) for anything
    that is missing, truncated, foreign, or of a newer format version."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if not raw.startswith(b"PK"):
            raise CheckpointError(f"{path}: not an .npz checkpoint (a checkpoint is a zip file; "
                                  f"this one starts with {raw[:8]!r})")
        with np.load(_io.BytesIO(raw), allow_pickle=False) as z:
            if _META not in z.files:
                raise CheckpointError(f"{path}: not a retrograd checkpoint (no {_META} entry; "
                                      f"entries: {z.files[:5]})")
            meta = json.loads(bytes(z[_META]).decode("utf-8"))
            arrays = {k: z[k] for k in z.files if k != _META}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: truncated or corrupt ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a retrograd checkpoint")
    if not isinstance(meta.get("version"), int) or meta["version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {meta.get('version')} is newer "
                              f"than this retrograd understands ({FORMAT_VERSION}); upgrade retrograd")
    return _decode(meta.get("root"), arrays, path)
