"""Numba's disk cache for retrograd's own njit functions, kept fresh across their callees.

Numba stamps a cached function with a hash of its own source file only, yet its machine
code holds every njit function it calls. ``numba_helpers.dot`` (cached beside
numba_helpers.py) calls ``numba_blas.gemm``, which calls ``numba_tiles``' products, and
the ops' Numba forms (cached beside ops/rnn.py, ops/conv.py) call the helpers: after a
change to numba_blas.py alone -- a retrograd upgrade whose other files are unchanged (pip
removes a package's files, not the cache files Numba wrote beside them) -- they went on
running the old products.
Here each cached function of the retrograd package is stamped with its own file's hash
and a digest of every module of this folder, so a change to any of them compiles anew.
Importing this module registers that stamp with Numba: the native modules import it
before defining a cached function."""
import functools
import hashlib
import os

from numba.core import caching

# (CacheImpl: _CacheImpl before Numba 0.61)
_IMPL = getattr(caching, "CacheImpl", None) or caching._CacheImpl
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_HERE = os.path.dirname(os.path.abspath(__file__))


@functools.lru_cache(maxsize=None)
def native_digest() -> str:
    """A digest of the source of every module in retrograd/native (read once a process)."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(_HERE)):
        if name.endswith(".py"):
            with open(os.path.join(_HERE, name), "rb") as f:
                h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()[:16]


class RetrogradLocator(caching._CacheLocator):
    """Where Numba's own locators would put the cache of a function in the retrograd
    package (the first of them that can), with the native digest in its stamp."""

    def __init__(self, inner):
        self._inner = inner

    def ensure_cache_path(self):
        self._inner.ensure_cache_path()

    def get_cache_path(self):
        return self._inner.get_cache_path()

    def get_source_stamp(self):
        return (self._inner.get_source_stamp(), native_digest())

    def get_disambiguator(self):
        return self._inner.get_disambiguator()

    @classmethod
    def from_function(cls, py_func, py_file):
        if not os.path.abspath(py_file).startswith(_PACKAGE):
            return None
        for other in _IMPL._locator_classes:
            if other is not cls:
                inner = other.from_function(py_func, py_file)
                if inner is not None:
                    return cls(inner)
        return None


if RetrogradLocator not in _IMPL._locator_classes:
    _IMPL._locator_classes.insert(0, RetrogradLocator)
