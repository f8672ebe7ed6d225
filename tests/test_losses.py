"""The losses of issue 12: L1, Huber, SmoothL1, KLDiv, and CrossEntropy's / NLL's class
weights, ignore_index and label smoothing -- values and gradients against PyTorch, every
reduction, functional and module forms, second order, compiled == eager, and the errors."""
import warnings

import numpy as np
import pytest

import retrograd as rg
from retrograd import nn
from retrograd.errors import RetrogradError, ShapeError
from tests.torch_oracle import assert_matches_torch, torch

F = nn.functional
REDUCTIONS = ("none", "mean", "sum")
TOL = dict(rtol=1e-10, atol=1e-12, grad_rtol=1e-8, grad_atol=1e-12)


def _rng():
    return np.random.default_rng(12)


def _regression_data(rng):
    x = rng.standard_normal((6, 4)) * 2           # both sides of delta/beta, none at a kink
    t = rng.standard_normal((6, 4))
    return x, t


# name, retrograd function, torch function name, module class, options
REGRESSION = [
    ("l1", F.l1_loss, "l1_loss", nn.L1Loss, {}),
    ("huber", F.huber_loss, "huber_loss", nn.HuberLoss, {}),
    ("huber_delta", F.huber_loss, "huber_loss", nn.HuberLoss, {"delta": 0.6}),
    ("smooth_l1", F.smooth_l1_loss, "smooth_l1_loss", nn.SmoothL1Loss, {}),
    ("smooth_l1_beta", F.smooth_l1_loss, "smooth_l1_loss", nn.SmoothL1Loss, {"beta": 0.4}),
    ("smooth_l1_beta0", F.smooth_l1_loss, "smooth_l1_loss", nn.SmoothL1Loss, {"beta": 0.0}),
]


@pytest.mark.torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,fn,tname,cls,opts", REGRESSION, ids=[r[0] for r in REGRESSION])
def test_regression_losses_match_torch(name, fn, tname, cls, opts, reduction):
    rng = _rng()
    x, t = _regression_data(rng)
    tfn = getattr(torch.nn.functional, tname)
    ref = lambda a, b: tfn(a, b, reduction=reduction, **opts)
    assert_matches_torch(lambda a, b: fn(a, b, reduction=reduction, **opts), ref, [x, t], rng,
                         what=f"{name} {reduction}", **TOL)
    module = cls(reduction=reduction, **opts)
    assert_matches_torch(module, ref, [x, t], rng, what=f"{cls.__name__} {reduction}", **TOL)


def _kl_data(rng, log_target, zeros=False):
    log_q = np.log(rng.dirichlet(np.ones(4), 5))
    p = rng.dirichlet(np.ones(4), 5)
    if log_target:
        return log_q, np.log(p)
    if zeros:
        p[0, 1] = p[3, 2] = 0.0                     # zero target entries contribute 0
    return log_q, p


@pytest.mark.torch
@pytest.mark.parametrize("reduction", REDUCTIONS + ("batchmean",))
def test_kl_div_zero_targets(reduction):
    # target·log(target) is 0 at target 0 (xlogy), as PyTorch; the gradient w.r.t. the input
    # matches too. W.r.t. such a target PyTorch's is nan (d(t log t)/dt is -inf there); ours
    # is the zero branch's, finite, so a zero in a learned target does not poison the rest.
    log_q, p = _kl_data(_rng(), False, zeros=True)
    a, tq = rg.tensor(log_q, requires_grad=True), torch.tensor(log_q, requires_grad=True)
    b = rg.tensor(p, requires_grad=True)
    out = F.kl_div(a, b, reduction)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = torch.nn.functional.kl_div(tq, torch.tensor(p), reduction=reduction)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-12)
    out.sum().backward()
    ref.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), tq.grad.numpy(), rtol=1e-12)
    assert np.isfinite(b.grad.numpy()).all()


@pytest.mark.torch
@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS + ("batchmean",))
def test_kl_div_matches_torch(reduction, log_target):
    rng = _rng()
    xs = _kl_data(rng, log_target)
    ref = lambda a, b: torch.nn.functional.kl_div(a, b, reduction=reduction, log_target=log_target)
    with warnings.catch_warnings():                 # torch warns for reduction="mean"
        warnings.simplefilter("ignore", UserWarning)
        assert_matches_torch(lambda a, b: F.kl_div(a, b, reduction, log_target=log_target), ref,
                             xs, rng, what=f"kl_div {reduction}", **TOL)
        assert_matches_torch(nn.KLDivLoss(reduction=reduction, log_target=log_target), ref, xs,
                             rng, what=f"KLDivLoss {reduction}", **TOL)


def _ce_data(rng, ignore=False):
    z = rng.standard_normal((7, 5)) * 2
    y = np.array([0, 1, 2, 3, 4, 1, 3])
    if ignore:
        y[[1, 5]] = -100
    return z, y


CE_OPTIONS = [
    ("weight", {"weight": True}),
    ("ignore_default", {}),
    ("ignore_3", {"ignore_index": 3}),
    ("ignore_minus100_explicit", {"ignore_index": -100}),
    ("smoothing", {"label_smoothing": 0.2}),
    ("weight_smoothing", {"weight": True, "label_smoothing": 0.3}),
    ("all", {"weight": True, "label_smoothing": 0.15, "ignore_index": -100}),
    ("weight_ignore_3", {"weight": True, "ignore_index": 3}),
]


def _options(opts, rng, to_torch=False):
    out = dict(opts)
    if out.get("weight"):
        w = np.random.default_rng(5).random(5) + 0.2
        out["weight"] = torch.tensor(w) if to_torch else w
    return out


@pytest.mark.torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,opts", CE_OPTIONS, ids=[c[0] for c in CE_OPTIONS])
def test_cross_entropy_options_match_torch(name, opts, reduction):
    rng = _rng()
    z, y = _ce_data(rng, ignore="ignore_3" not in name and name != "weight_ignore_3")
    ours, theirs = _options(opts, rng), _options(opts, rng, to_torch=True)
    ty = torch.tensor(y)
    ref = lambda a: torch.nn.functional.cross_entropy(a, ty, reduction=reduction, **theirs)
    assert_matches_torch(lambda a: F.cross_entropy(a, y, reduction, **ours), ref, [z], rng,
                         what=f"cross_entropy {name} {reduction}", **TOL)
    assert_matches_torch(lambda a: nn.CrossEntropyLoss(reduction=reduction, **ours)(a, y), ref,
                         [z], rng, what=f"CrossEntropyLoss {name} {reduction}", **TOL)
    nll_opts = {k: v for k, v in ours.items() if k != "label_smoothing"}
    nll_theirs = {k: v for k, v in theirs.items() if k != "label_smoothing"}
    nref = lambda a: torch.nn.functional.nll_loss(torch.log_softmax(a, 1), ty,
                                                  reduction=reduction, **nll_theirs)
    assert_matches_torch(lambda a: F.nll_loss(rg.log_softmax(a, axis=1), y, reduction,
                                              **nll_opts), nref, [z], rng,
                         what=f"nll_loss {name} {reduction}", **TOL)
    assert_matches_torch(lambda a: nn.NLLLoss(reduction=reduction, **nll_opts)(
        rg.log_softmax(a, axis=1), y), nref, [z], rng, what=f"NLLLoss {name} {reduction}", **TOL)


@pytest.mark.torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opts", [{"weight": True}, {"label_smoothing": 0.25},
                                  {"weight": True, "label_smoothing": 0.1}])
def test_cross_entropy_probability_targets_match_torch(opts, reduction):
    rng = _rng()
    z = rng.standard_normal((6, 5))
    p = rng.dirichlet(np.ones(5), 6)
    ours, theirs = _options(opts, rng), _options(opts, rng, to_torch=True)
    tp = torch.tensor(p)
    assert_matches_torch(lambda a: F.cross_entropy(a, p, reduction, **ours),
                         lambda a: torch.nn.functional.cross_entropy(a, tp, reduction=reduction,
                                                                      **theirs),
                         [z], rng, what=f"cross_entropy probabilities {opts} {reduction}", **TOL)


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_all_rows_ignored_is_nan_as_torch():
    z = np.zeros((2, 3))
    y = np.array([-100, -100])
    ref = torch.nn.functional.cross_entropy(torch.tensor(z), torch.tensor(y)).item()
    assert np.isnan(ref) and np.isnan(F.cross_entropy(rg.tensor(z), y).item())
    assert F.cross_entropy(rg.tensor(z), y, reduction="sum").item() == 0.0


# -- second order, where the loss is smooth ---------------------------------------------------

def test_second_order_regression_and_kl():
    rng = _rng()
    x, t = _regression_data(rng)
    for fn in (lambda a, b: F.huber_loss(a, b, "sum", delta=0.6),
               lambda a, b: F.smooth_l1_loss(a, b, "mean", beta=0.4),
               lambda a, b: F.huber_loss(a, b, "none")):
        assert rg.gradgradcheck(fn, x, t)
    lq, p = _kl_data(rng, False)
    assert rg.gradgradcheck(lambda a: F.kl_div(a, p, "batchmean"), lq)
    assert rg.gradgradcheck(lambda a, b: F.kl_div(a, b, "sum", log_target=True),
                            *_kl_data(rng, True))


@pytest.mark.parametrize("name,opts", CE_OPTIONS, ids=[c[0] for c in CE_OPTIONS])
def test_second_order_cross_entropy_options(name, opts):
    rng = _rng()
    z, y = _ce_data(rng, ignore="ignore_3" not in name and name != "weight_ignore_3")
    ours = _options(opts, rng)
    for reduction in REDUCTIONS:
        assert rg.gradgradcheck(lambda a: F.cross_entropy(a, y, reduction, **ours), z)


# -- compiled equals eager ----------------------------------------------------------------------

def _scalar(fn):
    """fn's output against a fixed cotangent: a number for rg.grad whatever the reduction."""
    def scalar(a, b):
        out = fn(a, b)
        return rg.sum(out * np.linspace(0.5, 1.5, out.size).reshape(out.shape))
    return scalar


COMPILED = [
    ("l1", lambda a, b: F.l1_loss(a, b)),
    ("huber", lambda a, b: F.huber_loss(a, b, "sum", delta=0.6)),
    ("smooth_l1", lambda a, b: F.smooth_l1_loss(a, b, "none", beta=0.4)),
    ("kl_batchmean", lambda a, b: F.kl_div(a, rg.softmax(b, axis=1), "batchmean")),
    ("kl_log_target", lambda a, b: F.kl_div(a, b, "mean", log_target=True)),
]


@pytest.mark.parametrize("name,fn", COMPILED, ids=[c[0] for c in COMPILED])
def test_compiled_regression_losses_equal_eager(name, fn):
    x, t = _regression_data(_rng())
    scalar = _scalar(fn)
    step = rg.compile(lambda a, b: (fn(a, b), rg.grad(scalar)(a, b)))
    for k in range(2):                                  # the trace, then the generated code
        xk, tk = x + k, t - k
        (v, g), (v0, g0) = step(xk, tk), (fn(rg.tensor(xk), tk), rg.grad(scalar)(rg.tensor(xk), tk))
        np.testing.assert_allclose(v.numpy(), v0.numpy(), rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(g.numpy(), g0.numpy(), rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("name,opts", CE_OPTIONS, ids=[c[0] for c in CE_OPTIONS])
def test_compiled_cross_entropy_options_equal_eager(name, opts):
    rng = _rng()
    ignore = "ignore_3" not in name and name != "weight_ignore_3" and name != "ignore_default"
    z, y = _ce_data(rng, ignore=ignore)
    ours = _options(opts, rng)
    for reduction in REDUCTIONS:
        f = lambda a, labels: F.cross_entropy(a, labels, reduction, **ours)
        scalar = _scalar(f)
        step = rg.compile(lambda a, labels: (f(a, labels), rg.grad(scalar)(a, labels)))
        for k in range(2):
            yk = np.roll(y, k)
            (v, g), (v0, g0) = step(z, yk), (f(rg.tensor(z), yk), rg.grad(scalar)(rg.tensor(z), yk))
            np.testing.assert_allclose(v.numpy(), v0.numpy(), rtol=1e-12, err_msg=name)
            np.testing.assert_allclose(g.numpy(), g0.numpy(), rtol=1e-12, err_msg=name)
        with pytest.raises(RetrogradError, match="out of range for 5 classes"):
            step(z, np.where(y == 2, 5, y))             # labels are still checked when compiled


def test_default_ignore_index_in_a_compiled_step_is_refused_clearly():
    # The default takes the fused path (the benchmarked step): eager answers -100 rows by
    # the masked path, a compiled step refuses them and names the fix.
    z, y = _ce_data(_rng(), ignore=True)
    step = rg.compile(lambda a, labels: F.cross_entropy(a, labels))
    step(z, np.where(y < 0, 0, y))
    with pytest.raises(RetrogradError, match="default ignore_index.*pass ignore_index"):
        step(z, y)
    explicit = rg.compile(lambda a, labels: F.cross_entropy(a, labels, ignore_index=-100))
    np.testing.assert_allclose(explicit(z, y).numpy(),
                               F.cross_entropy(rg.tensor(z), y).numpy(), rtol=1e-12)


def _train(loss, x, y, compiled):
    rg.manual_seed(0)
    model = nn.Linear(3, 4)
    opt = rg.optim.SGD(model.parameters(), lr=0.1)
    step = rg.graph.compile_step(model, loss, opt) if compiled else None
    losses = []
    for _ in range(3):
        if compiled:
            losses.append(float(step(x, y)[0]))
            continue
        opt.zero_grad()
        value = loss(model(rg.tensor(x)), y)
        value.backward()
        opt.step()
        losses.append(float(value))
    return losses


def test_modules_in_a_compiled_training_step_equal_eager():
    rng = _rng()
    x = rng.standard_normal((16, 3)).astype(np.float32)
    y = rng.integers(0, 4, 16)
    for loss in (nn.CrossEntropyLoss(weight=np.arange(1, 5), label_smoothing=0.1,
                                     ignore_index=0),
                 nn.CrossEntropyLoss(label_smoothing=0.05), nn.NLLLoss(weight=np.ones(4))):
        eager, compiled = _train(loss, x, y, False), _train(loss, x, y, True)
        np.testing.assert_allclose(compiled, eager, rtol=1e-5, err_msg=repr(loss))
        assert eager[-1] < eager[0]


# -- errors ---------------------------------------------------------------------------------------

def test_errors_name_the_loss_and_the_shapes():
    a, b = rg.randn(3, 2), rg.randn(2, 3)
    for fn, who in ((F.l1_loss, "l1_loss"), (F.huber_loss, "huber_loss"),
                    (F.smooth_l1_loss, "smooth_l1_loss"), (F.kl_div, "kl_div")):
        with pytest.raises(ShapeError, match=rf"{who}: .*\(3, 2\).*\(2, 3\)"):
            fn(a, b)
        with pytest.raises(RetrogradError, match=who):
            fn(a, np.array([["x", "y"]] * 3))
        with pytest.raises(ValueError, match=f"{who}: reduction"):
            fn(a, a, reduction="avg")
    with pytest.raises(ValueError, match="huber_loss: delta"):
        F.huber_loss(a, a, delta=0)
    with pytest.raises(ValueError, match="smooth_l1_loss: beta"):
        F.smooth_l1_loss(a, a, beta=-1)
    with pytest.raises(ValueError, match="l1_loss: reduction"):
        F.l1_loss(a, a, reduction="batchmean")


def test_cross_entropy_option_errors():
    z = rg.randn(3, 4)
    y = np.array([0, 1, 3])
    with pytest.raises(ShapeError, match=r"cross_entropy: weight must have shape \(4,\).*\(3,\)"):
        F.cross_entropy(z, y, weight=np.ones(3))
    with pytest.raises(ShapeError, match=r"nll_loss: weight must have shape \(4,\)"):
        F.nll_loss(z, y, weight=np.ones((4, 1)))
    with pytest.raises(RetrogradError, match="cross_entropy: weight .*dtype <U1"):
        F.cross_entropy(z, y, weight=np.array(list("abcd")))
    with pytest.raises(ValueError, match="cross_entropy: label_smoothing must be in"):
        F.cross_entropy(z, y, label_smoothing=1.5)
    with pytest.raises(TypeError, match="CrossEntropyLoss: unexpected keyword 'smoothing'"):
        nn.CrossEntropyLoss(smoothing=0.1)
    # labels out of range stay refused, except ignore_index
    for opts in ({}, {"weight": np.ones(4)}, {"label_smoothing": 0.1}, {"ignore_index": 1}):
        with pytest.raises(RetrogradError, match="label 4 is out of range for 4 classes"):
            F.cross_entropy(z, np.array([0, 4, 1]), **opts)
        with pytest.raises(RetrogradError, match="label -1 is out of range for 4 classes"):
            F.cross_entropy(z, np.array([0, -1, -100]), **opts)
    with pytest.raises(RetrogradError, match="label -100 is out of range"):
        F.cross_entropy(z, np.array([0, -100, 1]), ignore_index=1)


def test_losses_are_registered():
    for name, cls in (("l1", nn.L1Loss), ("huber", nn.HuberLoss),
                      ("smooth_l1", nn.SmoothL1Loss), ("kl_div", nn.KLDivLoss)):
        assert nn.LOSSES[name] is cls
    assert repr(nn.HuberLoss(delta=2.0)) == "HuberLoss(reduction='mean', delta=2.0)"
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss(reduction='mean')"
    assert "ignore_index=3" in repr(nn.CrossEntropyLoss(ignore_index=3))
