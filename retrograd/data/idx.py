"""The IDX format of the MNIST files, plain or gzip-compressed.

Layout: two zero bytes, a dtype code, the number of dimensions ``d``, then ``d``
big-endian uint32 sizes, then the data in C order, big-endian.
"""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from .errors import DataError

_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODE_OF = {np.dtype(v).str[1:]: k for k, v in _CODES.items()}   # "u1" -> 0x08, ...
_GZIP_MAGIC = b"\x1f\x8b"
# Deflate cannot expand data by more than about 1032:1, so a gzip file of s bytes
# holds at most ~1032*s bytes; anything claiming more is rejected before reading.
_MAX_DEFLATE_RATIO = 1032
_CHUNK = 1 << 22
_MAX_NDIM = 64                       # numpy's limit
_MAX_BYTES = 1 << 48


def is_gzip(path) -> bool:
    """True when the file starts with the gzip magic bytes 1f 8b."""
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def read_idx(path) -> np.ndarray:
    """Read an IDX file (gzip detected by its magic bytes) into a native-endian array.

    Raises ``DataError`` naming the file and byte offset for a wrong magic number,
    an unknown dtype code, a truncated header or body, trailing bytes, or sizes the
    file cannot hold (checked against the file size before anything is allocated).
    Offsets in a gzip file are into the decompressed stream.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    try:
        size = os.path.getsize(path)
        gz = is_gzip(path)
        with (gzip.open if gz else open)(path, "rb") as f:
            return _read(f, path, size, gz)
    except (OSError, EOFError, zlib.error) as e:     # OSError includes gzip.BadGzipFile
        raise DataError(f"{path}: cannot read the file: {e}") from None
    except MemoryError:
        raise DataError(f"{path}: not enough memory to read the file") from None


def _read(f, path, file_size, gz):
    where = " (decompressed)" if gz else ""

    def fail(offset, msg):
        raise DataError(f"{path}: byte {offset}{where}: {msg}")

    head = f.read(4)
    if len(head) < 4:
        fail(len(head), f"truncated header: the file has {len(head)} bytes, an IDX "
                        "header needs at least 4")
    if head[0] != 0 or head[1] != 0:
        looks = ("; it looks like a zip archive (an .npz checkpoint?)" if head.startswith(b"PK")
                 else "; it looks like text (a CSV file?)" if all(
                     32 <= c < 127 or c in b"\t\r\n" for c in head) else "")
        fail(0, f"wrong magic number {head.hex(' ')}: an IDX file starts with two zero "
                f"bytes, a dtype code and the number of dimensions{looks}")
    code, ndim = head[2], head[3]
    if code not in _CODES:
        fail(2, f"unknown dtype code 0x{code:02X}, expected one of "
                + ", ".join(f"0x{c:02X}" for c in _CODES))
    raw = f.read(4 * ndim)
    if len(raw) < 4 * ndim:
        fail(4 + len(raw), f"truncated header: {ndim} dimensions need {4 * ndim} bytes of "
                           f"sizes, only {len(raw)} present")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4"))
    dtype = np.dtype(_CODES[code])
    header = 4 + 4 * ndim
    if ndim > _MAX_NDIM:
        fail(3, f"{ndim} dimensions; an array has at most {_MAX_NDIM}")
    count = nonzero = 1
    for d in dims:
        count *= d                   # Python ints: no overflow for absurd sizes
        nonzero *= d or 1
    nbytes = count * dtype.itemsize
    if nonzero * dtype.itemsize >= _MAX_BYTES:   # even with a zero size: no such array exists
        fail(4, f"absurd shape {dims} in the header")
    if gz:
        if nbytes > _MAX_DEFLATE_RATIO * file_size:
            fail(header, f"header claims shape {dims} ({nbytes} bytes of {dtype.name}), "
                         f"more than a {file_size}-byte gzip file can hold")
        data = _read_exact(f, nbytes, lambda got: fail(
            header + got, f"truncated data: shape {dims} needs {nbytes} bytes after the "
                          f"{header}-byte header, only {got} present"))
        if f.read(1):
            fail(header + nbytes, f"trailing bytes after the {nbytes} bytes of data for "
                                  f"shape {dims}")
    else:
        body = file_size - header
        if nbytes > body:
            fail(file_size, f"truncated data: shape {dims} needs {nbytes} bytes after the "
                            f"{header}-byte header, only {body} present")
        if nbytes < body:
            fail(header + nbytes, f"{body - nbytes} trailing bytes after the {nbytes} bytes "
                                  f"of data for shape {dims}")
        data = bytearray(nbytes)
        got = f.readinto(data)
        if got != nbytes:                # the file shrank while we read it
            fail(header + got, "truncated data")
    # bytearray -> a writable array without a copy; swap to native order in place
    arr = np.frombuffer(data, dtype).reshape(dims)
    if dtype.itemsize > 1 and not dtype.isnative:
        arr = arr.byteswap(inplace=True).view(dtype.newbyteorder("="))
    return arr


def _read_exact(f, n, on_short):
    """Read n bytes in chunks, so a short stream never causes an n-byte allocation."""
    parts, got = [], 0
    while got < n:
        chunk = f.read(min(_CHUNK, n - got))
        if not chunk:
            on_short(got)
        parts.append(chunk)
        got += len(chunk)
    return bytearray().join(parts)


def write_idx(path, array) -> None:
    """Write ``array`` as an IDX file; gzip-compressed when ``path`` ends with ``.gz``.

    Supported dtypes: uint8, int8, int16, int32, float32, float64.
    """
    path = os.fspath(path)
    arr = np.asarray(array)
    key = arr.dtype.str[1:]              # byte order dropped: "<f4" -> "f4"
    if key not in _CODE_OF or arr.dtype.kind not in "uif":
        raise DataError(f"write_idx: dtype {arr.dtype} has no IDX code; use one of uint8, "
                        "int8, int16, int32, float32, float64")
    if arr.ndim > 255 or any(d >= 2**32 for d in arr.shape):
        raise DataError(f"write_idx: shape {arr.shape} does not fit an IDX header")
    code = _CODE_OF[key]
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    body = np.ascontiguousarray(arr, dtype=np.dtype(_CODES[code])).tobytes()
    if path.endswith(".gz"):
        with gzip.GzipFile(path, "wb", mtime=0) as f:
            f.write(header + body)
    else:
        with open(path, "wb") as f:
            f.write(header + body)
