import importlib
import os
import sys

import pytest

# the shared case table (tests/cases.py) is imported by several test modules
sys.path.insert(0, os.path.dirname(__file__))

# rg.compile's backend="auto" follows RETROGRAD_BACKEND (else NumPy); the suite tests the
# NumPy generator through "auto" whatever the machine's environment says, and
# test_numba_backend.py asks for backend="numba" itself. RETROGRAD_BACKEND=numba runs
# the whole suite through Numba.
os.environ.setdefault("RETROGRAD_BACKEND", "numpy")

# PyTorch is the test oracle but not a dependency of the test extra: unpinned torch wheels
# pull gigabytes of CUDA on Linux. So the comparisons (marked @pytest.mark.torch) skip
# without it, and the end of the run says how many did and the one command that adds it.
TORCH_CPU = "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
TORCH_SKIP = "PyTorch comparison: torch is not installed"


def _torch_importable() -> bool:
    try:
        importlib.import_module("torch")
    except ImportError:
        return False
    return True


def pytest_configure(config):
    config.addinivalue_line("markers", "torch: compares with PyTorch, the test oracle; "
                            "skipped when torch is not installed")


def pytest_collection_modifyitems(config, items):
    marked = [item for item in items if item.get_closest_marker("torch")]
    if marked and not _torch_importable():
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=TORCH_SKIP))


def _skipped_for_torch(report) -> bool:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    # the marker's skips, and a pytest.importorskip("torch") anywhere
    return TORCH_SKIP in reason or "could not import 'torch'" in reason


def pytest_terminal_summary(terminalreporter):
    n = sum(map(_skipped_for_torch, terminalreporter.stats.get("skipped", [])))
    if n:
        tr = terminalreporter
        tr.write_sep("!", f"{n} PyTorch comparison{'s were' if n > 1 else ' was'} skipped",
                     red=True, bold=True)
        tr.write_line(f"torch is not installed, so {n} test{'s' if n > 1 else ''} comparing "
                      "retrograd with PyTorch (the test oracle) did not run. To run them, install "
                      "PyTorch's CPU build:")
        tr.write_line(f"    {TORCH_CPU}", bold=True)
