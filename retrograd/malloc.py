"""Keep glibc's malloc from handing large freed arrays back to the OS between steps.

NumPy takes every array's memory from malloc. By default glibc serves blocks above
128 KiB (raised as they are freed, up to 32 MiB) with fresh mmap'd pages and gives the
top of its heap back to the OS once 128 KiB or more lie free there, so an eager training
step -- which makes and frees the same few large temporaries every step -- page-faults
its memory in anew every step: ~20% of a B1 or B3 step (bench/bench.py, one thread,
CPU time). PyTorch avoids this with its own caching allocator; the nearest NumPy
equivalent is to let the heap keep what it has: blocks up to 32 MiB (glibc's largest
mmap threshold on 64-bit) come from the heap, and the heap is trimmed only once
128 MiB lie free at its top. Freed memory stays reusable by the process, so peak RSS
does not grow; memory above the peak is given back as before.

Done once, at import, only on glibc, and not when the user set glibc's own variables
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``...) or
``RETROGRAD_MALLOC=default`` (another value of it is warned about).
"""
from __future__ import annotations

import os
import platform
import sys

ENV = "RETROGRAD_MALLOC"
MMAP_THRESHOLD = 32 * 2 ** 20
TRIM_THRESHOLD = 128 * 2 ** 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3     # malloc.h

tuned = False          # whether tune() changed malloc's settings in this process


def tune() -> bool:
    """Set the thresholds above (see the module's doc); True if they were set."""
    global tuned
    setting = os.environ.get(ENV, "")
    if setting not in ("", "default"):
        # (at import: a warning, not an error, for a setting that only costs speed)
        import warnings
        warnings.warn(f"{ENV}={setting!r} means nothing to retrograd: set it to 'default' to "
                      "leave malloc alone, or unset it (read as unset)", stacklevel=3)
    if tuned or setting == "default" or not sys.platform.startswith("linux"):
        return tuned
    if (any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ)
            or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")):
        return False                                 # the user tuned glibc themselves
    try:
        if platform.libc_ver()[0] != "glibc":
            return False
        import ctypes
        mallopt = ctypes.CDLL("libc.so.6").mallopt
        mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                     and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError, ValueError):    # no such library or symbol: leave it
        return False
    return tuned
