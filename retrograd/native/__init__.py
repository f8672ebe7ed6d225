"""Numba support shared by the Numba backend (graph/numba_backend.py) and the ops' own
Numba forms (ops/numba_forms.py): the BLAS binding its products call (numba_blas.py) and the
njit helpers (numba_helpers.py). Importing this package imports no Numba: the modules
beside it do, and only code that found Numba ``available`` loads them."""
from __future__ import annotations

import importlib.util
import os
import re

import numpy as np

from ..errors import RetrogradError

# the dtypes an op's Numba form is written for unless it names its own (``form.dtypes``)
FORM_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def form_dtypes(form):
    """The dtypes of the arrays ``form`` (an op's ``lowering=`` loop function) runs on."""
    return getattr(form, "dtypes", FORM_DTYPES)


def available() -> bool:
    """Whether Numba (and SciPy, which its np.dot needs) can be imported."""
    return (importlib.util.find_spec("numba") is not None
            and importlib.util.find_spec("scipy") is not None)


def load_blas():
    """Load SciPy's BLAS, which compiled products call where NumPy's cannot be (numba_blas.py):
    loaded now, it is among the libraries a later BLAS thread limit (retrograd.blas,
    threadpoolctl) sees and sets."""
    import scipy.linalg.cython_blas  # noqa: F401


def raised_by_numba(e) -> bool:
    """Whether ``e`` (or what it was raised from) came out of Numba's compiler: our bug,
    where a user's error is theirs."""
    import numba
    package = os.path.dirname(numba.__file__) + os.sep
    if isinstance(e, RetrogradError):       # our own message for the user's input
        return False
    while e is not None:
        tb = e.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename.startswith(package):
                return True
            tb = tb.tb_next
        e = e.__context__
    return False


def failure(e) -> str:
    """'TypingError: ...': the error's kind and first line, without Numba's terminal
    colours, for a one-line warning."""
    lines = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:200] if lines else ''}"
