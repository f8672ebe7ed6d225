"""Every ```python block of README.md runs as written (issue 10, item 25).

One block, one fresh interpreter: a reader copies one block at a time into a new Python,
so each block must stand on its own (its own imports and data), and a block that changes
global state (it defines an op, seeds the generator) cannot leak into the other blocks or
into this test process. A block is only run; what it prints is not compared, so the test
holds whatever the README's examples compute.
"""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
# a fence that opens with ```python (possibly indented, as in a list) up to its closing ```
FENCE = re.compile(r"^([ \t]*)```python[ \t]*\n(.*?)^\1```[ \t]*$", re.M | re.S)


def python_blocks(text):
    """(line number, code) of each ```python block, its indentation removed."""
    blocks = []
    for m in FENCE.finditer(text):
        indent = m.group(1)
        lines = [ln[len(indent):] if ln.startswith(indent) else ln
                 for ln in m.group(2).splitlines()]
        blocks.append((text.count("\n", 0, m.start()) + 1, "\n".join(lines) + "\n"))
    return blocks


with open(README, encoding="utf-8") as f:
    BLOCKS = python_blocks(f.read())


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 3     # Ten lines, the op record, the Marian example


def test_blocks_are_found_as_markdown_fences():
    text = "a\n```python\nx = 1\n```\n- item\n\n  ```python\n  y = 2\n  ```\n```bash\nls\n```\n"
    assert python_blocks(text) == [(2, "x = 1\n"), (7, "y = 2\n")]


@pytest.mark.parametrize("line, code", BLOCKS, ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_readme_block_runs_as_written(line, code, tmp_path):
    script = tmp_path / f"README_md_line_{line}.py"     # named so tracebacks say where
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=ROOT, MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"the ```python block at README.md line {line} fails as written:\n"
                    f"{r.stderr}", pytrace=False)
