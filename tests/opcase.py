"""The op test case record (tests/cases.py holds the table; each op family of
issue 12 has its own table file, tests/cases_<family>.py, joined there)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Case:
    name: str
    fn: Callable
    torch_fn: Callable | None
    shapes: tuple
    domain: str = "real"          # real | positive | away0 (|x| >= 0.2) | distinct | unit
    ints: dict = field(default_factory=dict)   # extra non-differentiable arguments
    second_order: bool = True
    tol: dict = field(default_factory=dict)    # gradcheck eps/atol/rtol overrides

    def inputs(self, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        out = []
        for shape in self.shapes:
            x = rng.standard_normal(shape)
            if self.domain == "positive":
                x = np.abs(x) + 0.5
            elif self.domain == "away0":
                x = np.sign(x) * (np.abs(x) + 0.2)
            elif self.domain == "distinct":   # no ties (max/min/sort-like ops)
                x = rng.permutation(np.arange(x.size)).reshape(shape) * 0.37 + rng.uniform(0, .1, shape)
            elif self.domain == "unit":
                x = rng.uniform(-0.9, 0.9, shape)
            out.append(x.astype(dtype))
        return out
