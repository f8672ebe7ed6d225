"""One training run per run folder: ``with claim(out, resume=..., overwrite=...): fit(...)``.

A run folder holds one run's ``last.npz``, ``best.npz`` and ``history.json``; two
runs writing into it at once would leave a mix of both. ``claim`` holds an advisory
lock on ``<out>/.lock`` (``flock``; the file holds the owner's pid for the message)
for as long as the run lasts, and refuses a second run naming the first. The kernel
drops the lock when its owner dies, even by ``kill -9``, so a lock file left by a dead
run is simply taken over. A rerun into a folder that already holds a run must say
what it means: continue it (``resume``) or start afresh (``overwrite``). ``overwrite``
moves the old run's files into ``<out>/.replaced`` first, so the folder never mixes two
runs, and deletes them once the new run has written a file of its own; a new run that
ends (by an error, Ctrl-C, a kill) before writing any gets them back, at its end or, after
a ``kill -9``, at the next claim of the folder.
"""
from __future__ import annotations

import contextlib
import os

from .errors import RetrogradError

try:
    import fcntl
except ImportError:                      # not POSIX: the pid in the file decides
    fcntl = None

__all__ = ["claim", "RunFolderError", "LOCK", "REPLACED", "RUN_FILES"]

LOCK = ".lock"
REPLACED = ".replaced"      # the run an --overwrite run replaces, until it writes its own
RUN_FILES = ("last.npz", "best.npz", "history.json")      # what train.fit writes


class RunFolderError(RetrogradError):
    """The run folder is in use by another run, or holds a run and no choice was made."""


def _owner(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True                      # exists, but is not ours to signal
    return True


def _in_use(out, lock, pid):
    who = f"pid {pid}" if pid else "a process that has not yet written its pid"
    return RunFolderError(f"{out} is in use by another training run ({who}; lock file {lock}); "
                          "wait for it to finish, or choose another --out")


def _lock(out):
    """An open descriptor of ``out/.lock`` that this process now holds."""
    path = os.path.join(out, LOCK)
    for _ in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise _in_use(out, path, _owner(fd)) from None
            else:
                pid = _owner(fd)
                if pid is not None and pid != os.getpid() and _alive(pid):
                    raise _in_use(out, path, pid)
            # a finishing owner unlinks the file it held: lock the one now at `path`
            with contextlib.suppress(FileNotFoundError):
                if os.path.samestat(os.fstat(fd), os.stat(path)):
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())
                    return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise RunFolderError(f"{out}: could not take the lock {path}")


def _unlock(out, fd):
    path = os.path.join(out, LOCK)
    with contextlib.suppress(OSError):
        if os.path.samestat(os.fstat(fd), os.stat(path)):
            os.unlink(path)              # while still held: see _lock's check
    os.close(fd)


@contextlib.contextmanager
def claim(out, *, resume=False, overwrite=False):
    """Hold the run folder ``out`` (created if missing) for the ``with`` block.

    Raises RunFolderError, before anything is written, when another run holds it, or
    when it already holds a run (any of RUN_FILES) and neither ``resume`` nor
    ``overwrite`` is given; ``overwrite`` sets those files aside once the lock is held
    (``REPLACED``: deleted at the end of a run that wrote files of its own, put back where
    it wrote none).
    A folder this call created is removed again if the run leaves it empty.
    """
    out = os.fspath(out)
    if resume and overwrite:
        raise RunFolderError("--resume continues the run in --out and --overwrite replaces it; "
                             "give one of them")
    created = not os.path.isdir(out)
    os.makedirs(out, exist_ok=True)
    fd = _lock(out)
    try:
        _settle_replaced(out)            # one left by a killed --overwrite run
        old = _run_files(out)
        if old and not resume:
            if not overwrite:
                raise RunFolderError(f"{out} already holds a run ({', '.join(old)}); add --resume "
                                     "to continue it, --overwrite to replace it, or choose "
                                     "another --out")
            _move(out, os.path.join(out, REPLACED), old)
        try:
            yield out
        finally:
            _settle_replaced(out)
    finally:
        _unlock(out, fd)
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(out)            # only succeeds when nothing was written


def _run_files(folder):
    return [n for n in RUN_FILES if os.path.lexists(os.path.join(folder, n))]


def _move(src, dst, names):
    """Move the files ``names`` from folder ``src`` into folder ``dst`` (created), each by an
    atomic rename."""
    os.makedirs(dst, exist_ok=True)
    for name in names:
        os.replace(os.path.join(src, name), os.path.join(dst, name))


def _settle_replaced(out):
    """The replaced run in ``out/.replaced``: deleted where a new run has written its files,
    moved back where none has (nothing replaced it)."""
    kept = os.path.join(out, REPLACED)
    if not os.path.isdir(kept):
        return
    if not _run_files(out):
        _move(kept, out, _run_files(kept))
    for name in _run_files(kept):
        os.unlink(os.path.join(kept, name))
    with contextlib.suppress(OSError):
        os.rmdir(kept)                   # (anything else put there stays)
