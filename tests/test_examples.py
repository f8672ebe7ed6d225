"""Smoke tests: every worked example in examples/ runs and prints its key result.

Each script runs as a subprocess, as a user would run it, with RETROGRAD_FAST=1 (the
longer ones then train less) and the repository on PYTHONPATH.
"""
import functools
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# script -> regular expressions that must all match its output
EXAMPLES = {
    "adjoints.py": [r"∂f/∂x1 = w̄1 = cos\(x1\) \+ x2 = 4\.583853 +autodiff 4\.583853 ✓",
                    r"∂f/∂x2 = w̄2 = x1 = 2 +autodiff 2 ✓",
                    r"f\.backward\(\): +∂f/∂x1 = 4\.583853 +∂f/∂x2 = 2"],
    "generalized_delta_rule.py": [r"δ_k = .*\[0\.0878487",
                                  r"Δ_p w = δ·o = −∂E/∂w \(autodiff\) ✓",
                                  r"-> XOR learned after \d+ epochs"],
    "cnn.py": [r"LeNet-style CNN, 44426 parameters", r"epoch 1: training loss [0-9.]+, "
               r"test accuracy (\d+\.\d)%"],
    "xor.py": [r"predictions \[0 1 1 0\]", r"accuracy: 1\.0"],
    "sequence.py": [r"final next-character accuracy: 0\.9[5-9]\d",
                    r"greedy continuation of 'the quick': 'the quick brown fox jumps over"],
    "mnist_marian.py": [r"784-100-10", r"epoch 1: training cost [0-9.]+, test accuracy (\d+\.\d)%"],
    "quickprop_vs_rprop.py": [r"SGD \(η = 2\) +\d+/\d+", r"Quickprop .* +\d+/\d+ +\d+",
                              r"Rprop .* +\d+/\d+"],
    "single_layer_rules.py": [r"perceptron +learned in \d+ epochs +learned in \d+ epochs +failed",
                              r"LMS \(Widrow–Hoff\) +learned .* learned .* failed",
                              r"sigmoid unit \(seed 000\) +learned .* learned .* failed",
                              r"no single-layer rule converged"],
    "transformer.py": [r"training loss 3\.\d+ -> 0\.\d+ in", r"test: [\d.]+% of digits",
                       r"e\.g\. (\d{8}) -> \d{8}"],
}


@functools.lru_cache(maxsize=None)          # each script runs once per session
def run_example(name):
    env = dict(os.environ, RETROGRAD_FAST="1", PYTHONIOENCODING="utf-8",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", name)], cwd=ROOT,
                          env=env, capture_output=True, text=True, encoding="utf-8", timeout=120)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs_and_prints_its_result(name):
    r = run_example(name)
    assert r.returncode == 0, r.stderr
    for pattern in EXAMPLES[name]:
        assert re.search(pattern, r.stdout), f"{name}: no line matches {pattern!r} in\n{r.stdout}"


def test_marian_net_learns_something_in_one_epoch():
    r = run_example("mnist_marian.py")
    accuracy = float(re.search(r"test accuracy (\d+\.\d)%", r.stdout).group(1))
    assert accuracy > 70.0          # ten classes: chance is 10%


def test_the_cnn_learns_in_its_short_run():
    r = run_example("cnn.py")
    accuracy = float(re.search(r"test accuracy (\d+\.\d)%", r.stdout).group(1))
    assert accuracy > 50.0          # 25 steps on 1,600 digits; chance is 10%


def test_quickprop_needs_fewer_epochs_than_plain_gradient_descent():
    r = run_example("quickprop_vs_rprop.py")
    median = {m.group(1): int(m.group(2)) for m in
              re.finditer(r"^(SGD|Quickprop|Rprop).*?\d+/\d+ +(\d+)", r.stdout, re.M)}
    assert median["Quickprop"] < median["SGD"]


def test_the_transformer_block_learns_to_reverse_digit_strings():
    r = run_example("transformer.py")
    digits = float(re.search(r"test: (\d+\.\d)% of digits", r.stdout).group(1))
    assert digits > 90.0            # ten digits: chance is 10%
