"""gradcheck itself: it passes correct gradients and catches wrong ones, with a
message that names the input, the worst entry and both values."""
import numpy as np
import pytest

import retrograd as rg
from retrograd.ops import apply, defop, REGISTRY

# a deliberately wrong op: d/dx x³ claimed to be 2x² (registered only for this test)
_bad = defop("_test_bad_cube", lambda x: x ** 3, (lambda g, out, x: g * 2 * x * x,))
REGISTRY.pop("_test_bad_cube")


def bad_cube(x):
    return apply(_bad, x)


def test_gradcheck_passes_and_accepts_floats_arrays_tensors():
    assert rg.gradcheck(lambda a, b: (a * rg.exp(b)).sum(), 1.5, np.array([0.1, 0.2]))
    assert rg.gradcheck(lambda a: rg.tanh(a), rg.tensor([0.3, 0.4]))


def test_gradcheck_names_input_entry_and_values_on_failure():
    x = np.array([[1.0, 2.0], [3.0, -1.0]])
    with pytest.raises(rg.GradcheckError) as e:
        rg.gradcheck(lambda a, b: a.sum() + bad_cube(b).sum(), np.ones(2), x)
    msg = str(e.value)
    assert "input 1" in msg and "(1, 0)" in msg          # the entry with the largest error: x=3
    assert "analytic 18" in msg and "numeric 27" in msg


def test_gradcheck_report_table():
    rep = rg.gradcheck(lambda a, b: a.sum() + bad_cube(b).sum(), np.ones(2), np.array([1.0, 2.0]),
                       report=True)
    assert [r["passed"] for r in rep] == [True, False]
    assert rep[1]["max_abs_err"] == pytest.approx(4.0, rel=1e-6)   # 3·2² - 2·2²
    assert not rep.passed
    text = str(rep)
    assert "max rel err" in text and "✗" in text and "✓" in text


def test_gradcheck_ignores_integer_inputs_and_handles_tuple_outputs():
    labels = np.array([1, 0])
    f = lambda z, y: (-(rg.log_softmax(z, axis=1)[np.arange(2), y]).mean(), z * 2)
    assert rg.gradcheck(f, np.random.default_rng(0).standard_normal((2, 3)), labels)


def test_gradgradcheck_catches_a_wrong_second_derivative():
    # the VJP below is right to first order but not differentiable correctly: it
    # hides x from the graph (x.detach()), so d²/dx² comes out as 0
    wrong = defop("_test_bad_second", lambda x: x ** 2, (lambda g, out, x: g * 2 * x.detach(),))
    REGISTRY.pop("_test_bad_second")
    f = lambda t: apply(wrong, t)
    assert rg.gradcheck(f, np.array([1.0, 2.0]))
    with pytest.raises(rg.GradcheckError):
        rg.gradgradcheck(f, np.array([1.0, 2.0]))
