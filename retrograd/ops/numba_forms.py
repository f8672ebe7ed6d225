"""An op whose NumPy forward is a Python loop of NumPy calls a step (the LSTM's time loop)
runs its Numba form instead wherever Numba is installed: eagerly, and in the NumPy code that
``backend="auto"`` generates. The form is the op's ``lowering=`` fact, marked ``eager``
(plain Python in the op's file, which the Numba backend compiles into its kernels); here it
is compiled alone, once per process, and cached on disk by Numba.

Where: ``Op.run`` (ops/base.py) is this dispatcher for such ops, the forward itself for the
rest; eager ``apply`` and the NumPy generator call ``run``. The form runs for NumPy arrays of
its dtypes (float32 for the LSTM) writing a C-contiguous result; anything else, and every
process with ``RETROGRAD_BACKEND=numpy``, runs the NumPy forward. Its numbers are the
forward's to float32 rounding (the forms' own tanh: a few ulps; tests/test_rnn.py).
``rg.compile(..., backend="numpy")`` generates calls of the forwards only.

What it costs: the first use on a machine compiles the forms (B6's eager first step 7.3 s
instead of 0.02), a later process loads them (0.49 s), and importing Numba and LLVM adds
~130 MB to the process. The LSTM's forms repay that: B6's eager step 10.8 -> 7.2 ms
(bench/bench.py, Intel VM). col2im's and max pooling's forms run eagerly too in a trial,
saving 0.4 ms of B5's 4.7 ms step, which a 12 s first compile would take 30,000 steps
to repay: they stay the Numba backend's."""
from __future__ import annotations

import os
import threading
import warnings

import numpy as np

from ..native import available, failure, form_dtypes, load_blas, raised_by_numba

_compiled = {}              # form -> its njit dispatcher, or None where it cannot compile
_lock = threading.Lock()
_numba = None               # whether Numba is installed (asked once)


def enabled() -> bool:
    """Whether ops may run their Numba forms: Numba is installed and RETROGRAD_BACKEND is
    not 'numpy' (read on every call: a test or a program may change it)."""
    global _numba
    if os.environ.get("RETROGRAD_BACKEND") == "numpy":
        return False
    if _numba is None:
        _numba = available()
    return _numba


def _compile(form):
    """The form's njit function (Numba compiles it at its first call), or None once that
    failed (_failed)."""
    with _lock:
        if form not in _compiled:
            from ..native import numba_helpers         # (imports Numba)
            load_blas()
            _compiled[form] = numba_helpers.loop_form(form.__module__, form.__name__)
        return _compiled[form]


def _failed(op, form, e):
    _compiled[form] = None
    warnings.warn(f"{op.name}: Numba could not compile its loop form ({failure(e)}); it runs "
                  "its NumPy forward", RuntimeWarning, stacklevel=4)


def dispatcher(op):
    """``run`` for ``op``: its Numba form where it applies (see the module's doc), else its
    NumPy forward. The result's shape and dtype come from ``op.shape``."""
    form, forward = op.lowering, op.forward
    dtypes = form_dtypes(form)

    def run(*arrays, out=None, **params):
        if (_compiled.get(form, form) is not None and enabled()
                and all(type(a) is np.ndarray and a.dtype in dtypes for a in arrays)
                and (out is None or out.flags.c_contiguous)):
            fn = _compile(form)
            if fn is not None:
                if out is None:
                    shape, dtype = op.shape(*arrays, **params)
                    out = np.empty(shape, dtype)
                try:
                    fn(*map(np.ascontiguousarray, arrays), **params, out=out)
                    return out
                except Exception as e:     # noqa: BLE001 -- only Numba's own errors
                    if not raised_by_numba(e):
                        raise
                    _failed(op, form, e)
        return forward(*arrays, **params) if out is None else forward(*arrays, out=out, **params)

    run.__name__ = run.__qualname__ = f"{op.name}_run"
    run.__doc__ = f"{op.name}: its Numba form where it applies, else its NumPy forward."
    return run

