"""Op cases: convolution, pooling, unfold/fold, interpolate (joined into tests/cases.py's table)."""
from __future__ import annotations

import numpy as np

import retrograd as rg

from opcase import Case
from torch_oracle import torch   # None without it: those tests are skipped

CASES: list = [
]

# ops without a gradient, checked forward-only against NumPy: name -> (ours, numpy's)
NONDIFF: dict = {
}
