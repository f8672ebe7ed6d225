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


def test_batch_last_times_loops_that_compute_the_same_values():
    """Each pair bench/batch_last.py times computes one result: the view and its
    transpose, one running sum and 8 lanes, a branch and selects (ties and NaNs too)."""
    pytest.importorskip("numba")
    import numpy as np
    import batch_last as BL
    rng = np.random.default_rng(1)
    stored = rng.standard_normal((6, 24, 24, 64), dtype=np.float32)
    stored[0, 0, 0, :3] = np.nan
    stored[1, :2, :2, 5] = 0.5                                   # a tied window
    b = rng.standard_normal((6, 1, 1), dtype=np.float32)
    o1, o2 = np.empty_like(stored), np.empty_like(stored)
    BL.relu_view(stored.transpose(3, 0, 1, 2), b, o1.transpose(3, 0, 1, 2))
    BL.relu_transpose(stored, b, o2)
    np.testing.assert_array_equal(o1, o2)
    finite = np.nan_to_num(stored)
    np.testing.assert_allclose(BL.sum_lanes(finite), BL.sum_one_chain(finite), rtol=1e-12)
    np.testing.assert_allclose(BL.sum_lanes(finite), finite.sum(axis=(1, 2, 3)), rtol=1e-5)
    best = [np.empty((6, 12, 12, 64), np.float32) for _ in range(2)]
    arg = [np.empty((6, 12, 12, 64), np.int8) for _ in range(2)]
    BL.argmax_branch(stored, best[0], arg[0])
    BL.argmax_select(stored, best[1], arg[1])
    np.testing.assert_array_equal(best[0], best[1])
    np.testing.assert_array_equal(arg[0], arg[1])
