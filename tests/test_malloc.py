"""retrograd.malloc: glibc's thresholds set once at import, unless the user set their own."""
import os
import platform
import subprocess
import sys

import pytest

import retrograd as rg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                           reason="glibc only")


def _child(**env):
    """A process importing retrograd with malloc's variables as ``env`` sets them; it prints
    retrograd.malloc.tuned."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")
           and k not in ("RETROGRAD_MALLOC", "GLIBC_TUNABLES")} | env | {"PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-c", "import retrograd; print(retrograd.malloc.tuned)"],
                          env=env, capture_output=True, text=True, check=True)


def _tuned_in_child(**env):
    return _child(**env).stdout.strip()


@glibc
def test_tuned_at_import_on_glibc():
    assert _tuned_in_child() == "True"


@glibc
@pytest.mark.parametrize("env", [{"RETROGRAD_MALLOC": "default"},
                                 {"MALLOC_TRIM_THRESHOLD_": "131072"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"}])
def test_left_alone_when_the_user_chose(env):
    assert _tuned_in_child(**env) == "False"


def test_a_setting_of_no_meaning_is_warned_about_and_malloc_tuned_as_unset():
    out = _child(RETROGRAD_MALLOC="off")
    assert "RETROGRAD_MALLOC='off' means nothing to retrograd" in out.stderr
    assert out.stdout.strip() == str(rg.malloc.tuned)


def test_tune_is_idempotent():
    assert rg.malloc.tune() == rg.malloc.tuned

