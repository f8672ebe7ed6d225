"""A strict CSV reader for numeric tables with one label column."""
from __future__ import annotations

import csv
import gzip
import os
import zlib

import numpy as np

from .errors import DataError
from .idx import is_gzip


def _number(cell):
    try:
        return float(cell)
    except ValueError:
        return None


def _open_binary(path):
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


# A row is parsed whole by the csv module, so the length of a line bounds the memory
# one row can take (a hostile file of one endless line of "0,0,0,..." must not
# build a list of a billion strings).
_MAX_LINE = 1 << 23              # bytes: 8 MiB, some 500,000 numeric columns
_CHUNK_ROWS = 4096               # rows parsed to float64 at a time


def _sniff_binary(path):
    """A reason why ``path`` is not a CSV file, judged by its first bytes, or None."""
    try:
        with (gzip.open if is_gzip(path) else open)(path, "rb") as f:
            head = f.read(1024)
    except (OSError, EOFError, zlib.error):
        return None                  # the text reader reports it
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "a zip archive (an .npz checkpoint?)"
    if head.startswith(b"\x93NUMPY"):
        return "a .npy array"
    if head[:2] == b"\x00\x00" and len(head) >= 4 and head[2] in (8, 9, 11, 12, 13, 14):
        return "an IDX file (read it with read_idx)"
    if b"\x00" in head:
        return "a binary file (it contains NUL bytes)"
    return None


def _lines(f, path):
    """The lines of a UTF-8 file (a BOM is dropped), refusing one longer than
    _MAX_LINE bytes or one that is not UTF-8, with its line number and byte offset."""
    n = offset = 0
    while True:
        raw = f.readline(_MAX_LINE + 1)
        if not raw:
            return
        n += 1
        if len(raw) > _MAX_LINE:
            raise DataError(f"{path}: line {n}: longer than {_MAX_LINE} bytes; not a table of "
                            "numbers")
        try:
            line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: line {n} (byte {offset + e.start}): not UTF-8 text "
                            f"({raw[e.start:e.start + 4]!r})") from None
        offset += len(raw)
        yield line


def read_csv(path, label_column=-1, header="auto", delimiter=","):
    """Read a numeric CSV file into ``(X float32 (n, d), y (n,))``.

    ``label_column`` (negative counts from the end) holds the labels; ``y`` is int64
    when every label is a whole number, float32 otherwise. ``label_column=None``
    reads features only and returns ``(X, None)``. ``header``: ``True``,
    ``False`` or ``"auto"`` (the first row is a header if any of its cells is not a
    number). Blank lines are skipped. A ragged row, a non-numeric, empty, NaN or
    infinite cell raises ``DataError`` naming the file, the 1-based line and column;
    so does a binary file (an IDX file, an .npz, anything with NUL bytes) or a line
    longer than 8 MiB. The file may be gzip-compressed. Rows are parsed in chunks,
    so memory is about 8 bytes per cell plus one chunk of text.
    """
    path = os.fspath(path)
    if header not in (True, False, "auto"):
        raise DataError(f"read_csv: header must be True, False or 'auto', got {header!r}")
    if header != "auto":
        header = bool(header)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    binary = _sniff_binary(path)
    if binary:
        raise DataError(f"{path}: not a CSV file: it is {binary}")
    width, first_line = 0, 0
    saw_header = False
    tables, rows, lines = [], [], []
    reader = None
    try:
        with _open_binary(path) as f:
            reader = csv.reader(_lines(f, path), delimiter=delimiter)
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if not width:                   # the first row fixes the width
                    width, first_line = len(row), reader.line_num
                    if label_column is not None and width < 2:
                        raise DataError(f"{path}: line {first_line}: need at least 2 columns "
                                        f"(features and a label), got {width}")
                    if label_column is not None and not -width <= label_column < width:
                        raise DataError(f"{path}: label_column {label_column} out of range "
                                        f"for {width} columns")
                    if header is True or (header == "auto"
                                          and any(_number(c) is None for c in row)):
                        saw_header = True
                        continue
                if len(row) != width:
                    raise DataError(f"{path}: line {reader.line_num}: expected {width} columns "
                                    f"like line {first_line}, got {len(row)}")
                rows.append(row)
                lines.append(reader.line_num)
                if len(rows) == _CHUNK_ROWS:
                    tables.append(_parse(path, rows, lines, label_column))
                    rows, lines = [], []
    except (OSError, EOFError, zlib.error, csv.Error) as e:
        n = 0 if reader is None else reader.line_num + (not isinstance(e, csv.Error))
        where = f"line {n}: " if n else ""
        raise DataError(f"{path}: {where}cannot read as CSV: {e}") from None
    except MemoryError:
        raise DataError(f"{path}: not enough memory to read the file") from None
    if rows:
        tables.append(_parse(path, rows, lines, label_column))
    if not tables:
        raise DataError(f"{path}: no data rows (the file is empty"
                        + (" apart from its header)" if saw_header else ")"))
    table = tables[0] if len(tables) == 1 else np.concatenate(tables)
    del tables
    col = width if label_column is None else label_column % width
    with np.errstate(over="ignore"):
        X = np.delete(table, col, axis=1) if col < width else table
        X = X.astype(np.float32)
    if label_column is None:
        return X, None
    labels = table[:, col]
    whole = np.all(labels == np.round(labels)) and np.all(np.abs(labels) < 2**63)
    if whole:
        return X, labels.astype(np.int64)
    return X, labels.astype(np.float32)


_F32_MAX = float(np.finfo(np.float32).max)


def _parse(path, rows, lines, label_column):
    """Rows of cells -> float64 table; a bad cell, or a number float32 cannot hold,
    raises DataError with its line and column."""
    try:
        table = np.array(rows, dtype=np.float64)    # numpy's parser: ~2x faster than float()
    except ValueError:
        table = None
    if table is None or not np.isfinite(table).all():
        _locate_bad_cell(path, rows, lines)     # raises with the line and column
        table = np.array([[float(c) for c in row] for row in rows])   # parser disagreement
    big = np.abs(table) > _F32_MAX
    if big.any():
        # a too-large number is an error for float32 features, and for labels too: any
        # label that large is >= 2**63, so the labels would become float32
        i, j = np.argwhere(big)[0]
        raise DataError(f"{path}: line {lines[i]}, column {j + 1}: {rows[i][j].strip()!r} is too "
                        "large for float32")
    return table


def _locate_bad_cell(path, rows, lines):
    for row, line in zip(rows, lines):
        for j, cell in enumerate(row, 1):
            v = _number(cell)
            if v is None:
                what = "an empty cell" if not cell.strip() else f"non-numeric cell {cell.strip()!r}"
                raise DataError(f"{path}: line {line}, column {j}: {what}")
            if not np.isfinite(v):
                raise DataError(f"{path}: line {line}, column {j}: {cell.strip()!r} is not a "
                                "finite number (NaN and infinity are not allowed)")
