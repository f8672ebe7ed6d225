"""rg.detect_anomaly(): NaN/Inf made in forward names the op and the calling line;
made by a VJP in backward, the op and the line that created it. Off by default."""
import os

import numpy as np
import pytest

import retrograd as rg
from retrograd.ops import REGISTRY, apply, base, defop

HERE = os.path.basename(__file__)

# an op whose VJP is wrong on purpose: d/dx 2x claimed to be g·0/0 (registered only here)
_bad_vjp = defop("_test_nan_vjp", lambda x: 2 * x, (lambda g, out, x: g * (x - x) / (x - x),))
REGISTRY.pop("_test_nan_vjp")

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")   # numpy's divide by zero


def line_of(marker: str) -> int:
    """The line of this file holding ``marker`` (so the tests don't hard-code numbers)."""
    with open(__file__, encoding="utf-8") as f:
        return next(n for n, text in enumerate(f, 1) if marker in text and "line_of" not in text)


def test_log_of_zero_in_forward_names_the_op_and_the_calling_line():
    x = rg.tensor([0.0, 1.0], requires_grad=True)
    with rg.detect_anomaly():
        with pytest.raises(rg.AnomalyError) as e:
            rg.log(x)                                   # <- log(0)
    msg = str(e.value)
    assert "'log'" in msg and "-inf" in msg
    assert f"{HERE}:{line_of('# <- log(0)')}" in msg
    assert "rg.log(x)" in msg                            # the source text of that line


def test_zero_over_zero_names_div_through_an_operator():
    a = rg.tensor([0.0, 1.0])
    with rg.detect_anomaly():
        with pytest.raises(rg.AnomalyError) as e:
            a / a                                       # <- 0/0
    assert isinstance(e.value, rg.RetrogradError)
    msg = str(e.value)
    assert "'div'" in msg and "nan" in msg and f"{HERE}:{line_of('# <- 0/0')}" in msg


def test_the_line_is_the_users_not_retrograds_own():
    model = rg.nn.Linear(2, 1)
    with rg.no_grad():
        model.weight[:] = 1e30                           # finite, but 1e30·1e30 overflows float32
    x = rg.tensor([[1e30, 1e30]])
    with rg.detect_anomaly():
        with pytest.raises(rg.AnomalyError) as e:
            model(x)                                    # <- the op runs inside Linear.forward
    msg = str(e.value)
    assert "'matmul'" in msg and "inf" in msg
    assert f"{HERE}:{line_of('# <- the op runs inside')}" in msg and "model(x)" in msg


def test_nan_and_inf_already_in_the_inputs_do_not_trigger():
    x = rg.tensor([np.inf, -np.inf, np.nan, 1.0], requires_grad=True)
    with rg.detect_anomaly():
        y = rg.exp(x) * 2 + x                            # inf, 0, nan, e: inputs were not finite
        rg.tanh(x).sum().backward()                      # tanh(±inf) = ±1, gradient 0 and nan
        assert np.isnan(y.data[2]) and np.isnan(x.grad.data[2])


def test_sqrt_at_zero_inf_gradient_names_sqrt_and_where_it_was_created():
    x = rg.tensor([0.0, 4.0], requires_grad=True)
    with rg.detect_anomaly():
        y = rg.sqrt(x)                                  # <- sqrt created here
        loss = (y * 3).sum()
        with pytest.raises(rg.AnomalyError) as e:
            loss.backward()
    msg = str(e.value)
    assert "VJP of the 'sqrt' op" in msg and "inf" in msg and "input 0" in msg
    assert f"{HERE}:{line_of('# <- sqrt created here')}" in msg


def test_a_custom_op_with_a_bad_vjp_is_named():
    x = rg.tensor([1.0, 2.0], requires_grad=True)
    with rg.detect_anomaly():
        y = apply(_bad_vjp, x)                          # <- custom op
        assert np.all(np.isfinite(y.data))               # forward is fine
        with pytest.raises(rg.AnomalyError) as e:
            (y * y).sum().backward()
    msg = str(e.value)
    assert "'_test_nan_vjp'" in msg and "nan" in msg
    assert f"{HERE}:{line_of('# <- custom op')}" in msg


def test_a_nan_gradient_flowing_in_is_not_blamed_on_the_next_op():
    x = rg.tensor([1.0, 2.0], requires_grad=True)
    with rg.detect_anomaly():
        y = apply(_bad_vjp, x)
        z = rg.tanh(y)
        with pytest.raises(rg.AnomalyError) as e:
            z.sum().backward(grad=None)
    assert "'_test_nan_vjp'" in str(e.value)             # not tanh, not sum
    w = rg.tensor([1.0, 2.0], requires_grad=True)
    with rg.detect_anomaly():                            # a NaN seed is the caller's, not an op's
        rg.tanh(w).backward(grad=np.array([np.nan, 1.0], np.float32))
    assert np.isnan(w.grad.data[0])


def test_nodes_made_before_anomaly_mode_have_no_known_line():
    x = rg.tensor([1.0], requires_grad=True)
    y = apply(_bad_vjp, x)
    with rg.detect_anomaly():
        with pytest.raises(rg.AnomalyError, match="before anomaly detection was turned on"):
            y.sum().backward()


def test_off_by_default_and_restored_after_the_block_even_on_error():
    assert base.anomaly_hook is None
    x = rg.tensor([0.0], requires_grad=True)
    y = rg.log(x)                                        # no error: -inf
    assert np.isneginf(y.data[0])
    rg.sqrt(x).sum().backward()                          # inf gradient, no error
    assert np.isinf(x.grad.data[0])
    with pytest.raises(rg.AnomalyError):
        with rg.detect_anomaly():
            rg.log(x)
    assert base.anomaly_hook is None
    with rg.detect_anomaly():
        with rg.detect_anomaly():
            pass
        assert base.anomaly_hook is not None             # the inner block restores the outer
    assert base.anomaly_hook is None


def test_usable_as_a_decorator():
    @rg.detect_anomaly()
    def f(t):
        return rg.log(t)

    with pytest.raises(rg.AnomalyError, match="'log'"):
        f(rg.tensor([0.0]))
    assert base.anomaly_hook is None
    assert f(rg.tensor([1.0])).item() == 0.0


def test_finite_training_and_higher_order_gradients_run_unchanged():
    rg.manual_seed(0)
    model = rg.nn.MLP([3, 4, 2], "tanh")
    opt = rg.optim.SGD(model.parameters(), lr=0.1)
    x, labels = rg.randn(5, 3), np.array([0, 1, 0, 1, 1])
    with rg.detect_anomaly():
        for _ in range(3):
            loss = rg.nn.functional.cross_entropy(model(x), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        d1 = rg.grad(lambda a: (rg.sin(a) * a).sum())
        d2 = rg.grad(lambda a: d1(a).sum())(rg.tensor([0.5, 1.0]))
    a = np.array([0.5, 1.0])
    np.testing.assert_allclose(d2.data, 2 * np.cos(a) - a * np.sin(a), rtol=1e-5)


def test_graph_values_are_not_checked_and_compile_works():
    from retrograd.graph import Graph
    with rg.detect_anomaly():
        g = Graph()
        x = g.input("x", shape=(2,))
        y = rg.log(x)                                    # symbolic: nothing to check
        out = g.forward({x: np.array([0.0, 1.0], np.float32)}, y)   # compiled code: unchecked
        assert np.isneginf(np.asarray(out)[0])
        f = rg.compile(lambda a: (rg.exp(a) * 2).sum())
        assert np.isfinite(f(np.array([1.0, 2.0], np.float32)).item())


def test_integer_results_are_not_checked():
    with rg.detect_anomaly():
        assert rg.argmax(rg.tensor([np.nan, 1.0])).item() == 0
        assert rg.tensor([1, 2]).sum().item() == 3
