"""The benchmark's helper scripts run and say what they claim (bench/: timings themselves
are never asserted)."""
import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
sys.path.insert(0, BENCH)

import bench as B  # noqa: E402
import node_times  # noqa: E402
import slice_loop  # noqa: E402


def test_case_flops_counts_an_lstm_as_an_lstm():
    (i, h, c), t, n = B.CASES["B6"].sizes, B.LSTM_STEPS, B.CASES["B6"].batch
    projection, recurrent, head = t * i * 4 * h, t * h * 4 * h, h * c
    assert B.case_flops(B.CASES["B6"]) == 2 * n * (2 * projection + 3 * recurrent + 3 * head)


def test_node_times_lists_the_generated_steps_calls(capsys):
    node_times.main(["B2", "retrograd.compile", "--steps", "2", "--top", "3"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("B2 retrograd.compile (numpy backend): step ")
    assert len(out) == 4 and all(" ms  v" in line for line in out[1:])


def test_node_times_refuses_an_implementation_it_cannot_time(capsys):
    with pytest.raises(SystemExit) as e:
        node_times.main(["B2", "torch"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_slice_loop_times_both_ways_and_leaves_getitem_as_it_was(capsys):
    accumulate = slice_loop.rg.ops.shape._getitem.accumulate
    slice_loop.main(steps=(3,))
    assert slice_loop.rg.ops.shape._getitem.accumulate is accumulate
    line = capsys.readouterr().out
    assert line.startswith("L=    3  eager forward+backward") and "(unfolded" in line
