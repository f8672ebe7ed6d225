"""retrograd.optim: optimizers and lr schedules against PyTorch, hand-computed
Rprop/Quickprop steps, state-dict round trips, dtype and in-place contracts."""
import math

import numpy as np
import pytest

import retrograd as rg
from retrograd import optim
from retrograd.optim import lr_scheduler

from torch_oracle import torch

SHAPES = [(3, 4), (5,), (2, 2)]
LRS = (None, None, 0.03)          # the third parameter is a second group with its own lr


def params(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [rg.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in SHAPES]


def grads(steps, dtype=np.float64, seed=1):
    """A fixed sequence of random gradients; the last parameter has none on step 3."""
    rng = np.random.default_rng(seed)
    seq = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(steps)]
    if steps > 2:
        seq[2][-1] = None
    return seq


def set_grads(ps, gs):
    for p, g in zip(ps, gs):
        p.grad = None if g is None else rg.tensor(g)


def groups(ps, two_groups):
    if not two_groups:
        return ps
    return [{"params": ps[:2]}, {"params": ps[2:], "lr": LRS[2]}]


# name, kwargs: every optimizer PyTorch also has, in its main configurations
TORCH_CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, momentum=0.5, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01, maximize=True)),
    ("Rprop", dict(lr=0.01)),
    ("Rprop", dict(lr=0.05, etas=(0.3, 1.5), step_sizes=(0.02, 0.1))),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=0.1, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.5)),
]
ALL_CASES = TORCH_CASES + [
    ("Rprop", dict(lr=0.01, weight_decay=0.1)),
    ("Quickprop", dict(lr=0.05)),
    ("Quickprop", dict(lr=0.05, mu=1.5, weight_decay=1e-4)),
]
ids = [f"{name}-{'-'.join(kw)}" for name, kw in ALL_CASES]


def run(name, kw, ps, gs, two_groups=False, opt=None):
    opt = opt or getattr(optim, name)(groups(ps, two_groups), **kw)
    history = []
    for g in gs:
        set_grads(ps, g)
        opt.step()
        history.append([p.data.copy() for p in ps])
    return opt, history


# ---------------------------------------------------------------------- PyTorch oracle

@pytest.mark.torch
@pytest.mark.parametrize("two_groups", [False, True], ids=["one-group", "two-groups"])
@pytest.mark.parametrize("name, kw", TORCH_CASES, ids=ids[:len(TORCH_CASES)])
def test_matches_torch(name, kw, two_groups):
    ps, gs = params(), grads(10)
    tps = [torch.tensor(p.data.copy(), requires_grad=True) for p in ps]
    if two_groups:
        tgroups = [{"params": tps[:2]}, {"params": tps[2:], "lr": LRS[2]}]
    else:
        tgroups = tps
    topt = getattr(torch.optim, name)(tgroups, **kw)
    opt = getattr(optim, name)(groups(ps, two_groups), **kw)
    for step, g in enumerate(gs):
        set_grads(ps, g)
        for tp, gi in zip(tps, g):
            tp.grad = None if gi is None else torch.tensor(gi)
        opt.step()
        topt.step()
        for p, tp in zip(ps, tps):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-6, atol=1e-6,
                                       err_msg=f"{name} {kw} step {step + 1}")


# ---------------------------------------------------------------------- Rprop by hand

def test_rprop_by_hand():
    """iRprop-: grow by 1.2 on equal signs, shrink by 0.5 and skip on a flip, then
    treat the next step as sign-neutral."""
    p = rg.tensor(np.zeros(3), requires_grad=True)
    opt = optim.Rprop([p], lr=0.1)
    steps = [([1.0, -2.0, 0.0], [-0.1, 0.1, 0.0]),        # first step: size lr, no change
             ([3.0, 1.0, 5.0], [-0.22, 0.1, -0.1]),       # +: 0.12;  flip: 0.05, no move
             ([2.0, 4.0, -1.0], [-0.364, 0.05, -0.1]),    # +: 0.144; neutral: 0.05; flip
             ([-1.0, 1.0, 1.0], [-0.364, -0.01, -0.15])]  # flip; +: 0.06; neutral: 0.05
    for g, expected in steps:
        p.grad = rg.tensor(np.array(g))
        opt.step()
        np.testing.assert_allclose(p.data, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(opt.state[p]["step_size"], [0.072, 0.06, 0.05], atol=1e-12)
    np.testing.assert_allclose(opt.state[p]["prev"], [0.0, 1.0, 1.0])


def test_rprop_step_size_bounds():
    p = rg.tensor(np.zeros(2), requires_grad=True)
    opt = optim.Rprop([p], lr=0.1, step_sizes=(0.09, 0.13))
    seq = [([1.0, 1.0], [-0.1, -0.1]),
           ([1.0, -1.0], [-0.22, -0.1]),      # 0.12; flip: max(0.05, 0.09) = 0.09, skip
           ([1.0, -1.0], [-0.35, -0.01]),     # min(0.144, 0.13); neutral: 0.09
           ([1.0, -1.0], [-0.48, 0.098])]     # 0.13 stays capped; 0.108
    for g, expected in seq:
        p.grad = rg.tensor(np.array(g))
        opt.step()
        np.testing.assert_allclose(p.data, expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------- Quickprop by hand

def quickprop_on_quadratic(a, c, w0, steps, **kw):
    """Run Quickprop on E = a(w - c)^2 / 2, gradient a(w - c); return the iterates."""
    p = rg.tensor(np.array(w0, dtype=np.float64), requires_grad=True)
    opt = optim.Quickprop([p], **kw)
    out = []
    for _ in range(steps):
        p.grad = rg.tensor(a * (p.data - c))
        opt.step()
        out.append(p.data.copy())
    return out


def test_quickprop_secant_jumps_to_minimum():
    # E = (w - 3)^2, w0 = 0, lr = 0.75: gradient step 0.75*6 = 4.5 overshoots to 4.5
    # (slope -6 -> +3); secant: 3/(-6 - 3) * 4.5 = -1.5, no gradient term after the
    # sign change: w = 3 exactly, and it stays there.
    w = quickprop_on_quadratic(2.0, 3.0, [0.0], 4, lr=0.75)
    assert w[0] == pytest.approx([4.5], abs=1e-12)
    for wi in w[1:]:
        assert wi == pytest.approx([3.0], abs=1e-12)
    # the same per element, with different curvatures and minima
    a, c = np.array([2.0, 5.0, 1.5]), np.array([3.0, -1.0, 0.5])
    w = quickprop_on_quadratic(a, c, np.zeros(3), 2, lr=0.75)
    np.testing.assert_allclose(w[1], c, rtol=0, atol=1e-12)


def test_quickprop_adds_gradient_term_while_slope_keeps_sign():
    # lr = 0.25: w1 = 1.5 (slope -6 -> -3, same sign); secant step -3/(-6+3)*1.5 = 1.5
    # reaches 3, and Fahlman's gradient term -0.25*(-3) = 0.75 comes on top: w2 = 3.75.
    w = quickprop_on_quadratic(2.0, 3.0, [0.0], 2, lr=0.25)
    np.testing.assert_allclose(np.concatenate(w), [1.5, 3.75], rtol=0, atol=1e-12)


def test_quickprop_mu_cap_binds():
    # lr = 0.1: w1 = 0.6, slope -6 -> -4.8; the secant factor -4.8/(-6+4.8) = 4 > mu,
    # so the step is mu*0.6 = 1.05 plus the gradient term 0.48: w2 = 2.13. Then the
    # secant (factor -1.74/(-4.8+1.74) = 0.569) reaches 3, plus 0.174: w3 = 3.174;
    # the slope has changed sign, so the last secant step lands on 3 exactly.
    w = quickprop_on_quadratic(2.0, 3.0, [0.0], 4, lr=0.1)
    np.testing.assert_allclose(np.concatenate(w), [0.6, 2.13, 3.174, 3.0], rtol=0, atol=1e-12)


def test_quickprop_infinite_secant_takes_max_step():
    # constant slope 2 (E = 2w): g = g_prev makes the secant step infinite, so each
    # step is mu times the last plus the gradient term: -0.2, -0.55, -1.1625
    p = rg.tensor(np.zeros(1), requires_grad=True)
    opt = optim.Quickprop([p], lr=0.1)
    expected = [-0.2, -0.75, -1.9125]
    for e in expected:
        p.grad = rg.tensor(np.array([2.0]))
        opt.step()
        assert p.data == pytest.approx([e], abs=1e-12)


def test_quickprop_gradient_step_where_previous_step_is_zero():
    # first step: -lr*g everywhere; the second weight had no slope, so it did not
    # move, and on the next step it takes a plain gradient step (secant undefined)
    # while the first takes secant 0.5/(1-0.5)*(-0.1) = -0.1 plus gradient -0.05.
    p = rg.tensor(np.zeros(2), requires_grad=True)
    opt = optim.Quickprop([p], lr=0.1)
    p.grad = rg.tensor(np.array([1.0, 0.0]))
    opt.step()
    np.testing.assert_allclose(p.data, [-0.1, 0.0], rtol=0, atol=1e-12)
    p.grad = rg.tensor(np.array([0.5, 2.0]))
    opt.step()
    np.testing.assert_allclose(p.data, [-0.25, -0.2], rtol=0, atol=1e-12)
    np.testing.assert_allclose(opt.state[p]["prev_step"], [-0.15, -0.2], rtol=0, atol=1e-12)


def test_quickprop_weight_decay_joins_the_slope():
    p = rg.tensor(np.array([1.0]), requires_grad=True)
    opt = optim.Quickprop([p], lr=0.5, weight_decay=0.1)
    p.grad = rg.tensor(np.array([0.0]))
    opt.step()                                  # slope 0 + 0.1*1 -> step -0.05
    assert p.data == pytest.approx([0.95], abs=1e-12)
    assert opt.state[p]["prev_grad"] == pytest.approx([0.1], abs=1e-12)


# ---------------------------------------------------------------------- schedulers

SCHEDULES = [
    ("StepLR", dict(step_size=7, gamma=0.5)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=10)),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01)),
]
PLATEAUS = [
    dict(),
    dict(patience=2),
    dict(patience=1, factor=0.5, cooldown=2, min_lr=[0.002, 0.0]),
    dict(mode="max", patience=0, threshold=0.05, threshold_mode="abs", min_lr=1e-3),
    dict(mode="max", patience=2, threshold=0.01),
]
METRICS = [1 / (1 + i) if i < 8 else 0.12 + 0.01 * ((7 * i) % 5) for i in range(30)]


def both_optimizers():
    ps = params()
    opt = optim.SGD([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.05}], lr=0.1)
    tps = [torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)]
    topt = torch.optim.SGD([{"params": tps[:1]}, {"params": tps[1:], "lr": 0.05}], lr=0.1)
    return opt, topt


@pytest.mark.torch
@pytest.mark.parametrize("name, kw", SCHEDULES, ids=[f"{n}-{kw}" for n, kw in SCHEDULES])
def test_schedule_matches_torch(name, kw):
    opt, topt = both_optimizers()
    sched = getattr(lr_scheduler, name)(opt, **kw)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr())
    for epoch in range(30):
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
        assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-12, abs=1e-15)
        assert [g["lr"] for g in opt.param_groups] == sched.get_last_lr()


@pytest.mark.torch
@pytest.mark.parametrize("kw", PLATEAUS, ids=[str(kw) for kw in PLATEAUS])
def test_reduce_on_plateau_matches_torch(kw):
    opt, topt = both_optimizers()
    sched = lr_scheduler.ReduceLROnPlateau(opt, **kw)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw)
    lrs, tlrs = [], []
    for m in METRICS:
        sched.step(m)
        tsched.step(m)
        lrs.append(sched.get_last_lr())
        tlrs.append(tsched.get_last_lr())
    assert lrs == tlrs
    assert lrs[0] != lrs[-1]                       # the schedule did reduce


def test_step_lr_by_hand():
    opt = optim.SGD(params(), lr=1.0)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    seen = [sched.get_last_lr()[0]]
    for _ in range(5):
        sched.step()
        seen.append(sched.get_last_lr()[0])
    assert seen == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_cosine_by_hand():
    opt = optim.SGD(params(), lr=1.0)
    sched = optim.CosineAnnealingLR(opt, T_max=4)
    seen = [sched.get_last_lr()[0]]
    for _ in range(8):
        sched.step()
        seen.append(sched.get_last_lr()[0])
    closed = [(1 + math.cos(math.pi * t / 4)) / 2 for t in range(9)]
    assert seen == pytest.approx(closed, abs=1e-12)


# ---------------------------------------------------------------------- checkpoints

ALLOWED_SCALARS = (bool, int, float, str, type(None))


def assert_checkpoint_safe(obj, path="sd"):
    """Only dicts with str/int keys, lists/tuples, ndarrays and Python scalars."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert type(k) in (str, int), f"{path}: key {k!r} of type {type(k).__name__}"
            assert_checkpoint_safe(v, f"{path}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            assert_checkpoint_safe(v, f"{path}[{i}]")
    elif isinstance(obj, np.ndarray):
        assert obj.dtype != object, f"{path}: object array"
    else:
        assert type(obj) in ALLOWED_SCALARS, f"{path}: {type(obj).__name__} {obj!r}"


@pytest.mark.parametrize("name, kw", ALL_CASES, ids=ids)
def test_state_dict_round_trip(name, kw):
    gs = grads(6)
    ps_full = params()
    _, full = run(name, kw, ps_full, gs, two_groups=True)

    ps = params()
    opt, _ = run(name, kw, ps, gs[:3], two_groups=True)
    sd = opt.state_dict()
    assert_checkpoint_safe(sd)
    assert sorted(sd["state"]) == [0, 1, 2]
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert all(s["step"] == (3 if i < 2 else 2) for i, s in sd["state"].items())

    fresh = [rg.tensor(p.data.copy(), requires_grad=True) for p in ps]
    opt2 = getattr(optim, name)(groups(fresh, True), lr=123.0) if name == "SGD" else \
        getattr(optim, name)(groups(fresh, True))          # hyperparameters come from sd
    opt2.load_state_dict(sd)
    assert opt2.param_groups[1]["lr"] == LRS[2]
    for s in sd["state"].values():                         # loaded arrays are copies
        for v in s.values():
            if isinstance(v, np.ndarray):
                v += 1e3
    _, rest = run(name, kw, fresh, gs[3:], opt=opt2)
    for got, want in zip(rest, full[3:]):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_load_state_dict_validates():
    ps = params()
    opt = optim.Adam(groups(ps, True), lr=0.01)
    set_grads(ps, grads(1)[0])
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="2 parameter groups.*1"):
        optim.Adam(params(), lr=0.01).load_state_dict(sd)
    other = params()
    with pytest.raises(ValueError, match="group 0.*2 parameters.*1"):
        optim.Adam([{"params": other[:1]}, {"params": other[1:]}]).load_state_dict(sd)
    bad = params()
    bad[1] = rg.tensor(np.zeros(4), requires_grad=True)
    with pytest.raises(ValueError, match=r"exp_avg.*parameter 1.*\(5,\).*\(4,\)"):
        optim.Adam(groups(bad, True)).load_state_dict(sd)


def test_optimizer_state_dict_keeps_scheduler_lr():
    ps = params()
    opt = optim.SGD(ps, lr=0.1, momentum=0.9)
    sched = optim.StepLR(opt, step_size=1, gamma=0.5)
    for g in grads(3):
        set_grads(ps, g)
        opt.step()
        sched.step()
    sd, ssd = opt.state_dict(), sched.state_dict()
    assert_checkpoint_safe(sd)
    assert_checkpoint_safe(ssd)
    opt2 = optim.SGD(params(), lr=0.1, momentum=0.9)
    sched2 = optim.StepLR(opt2, step_size=1, gamma=0.5)
    opt2.load_state_dict(sd)
    sched2.load_state_dict(ssd)
    assert opt2.param_groups[0]["lr"] == 0.1 * 0.5 ** 3
    sched.step()
    sched2.step()
    assert sched2.get_last_lr() == sched.get_last_lr() == [0.1 * 0.5 ** 4]


@pytest.mark.parametrize("make", [
    lambda o: lr_scheduler.StepLR(o, 3, 0.5),
    lambda o: lr_scheduler.ExponentialLR(o, 0.9),
    lambda o: lr_scheduler.CosineAnnealingLR(o, 5, 0.01),
    lambda o: lr_scheduler.ReduceLROnPlateau(o, patience=1, cooldown=1),
], ids=["step", "exp", "cosine", "plateau"])
def test_scheduler_state_dict_round_trip(make):
    def advance(sched, epochs):
        out = []
        for m in epochs:
            sched.step(m) if isinstance(sched, lr_scheduler.ReduceLROnPlateau) else sched.step()
            out.append(sched.get_last_lr())
        return out

    full = advance(make(optim.SGD(params(), lr=0.1)), METRICS[:16])
    opt = optim.SGD(params(), lr=0.1)
    sched = make(opt)
    first = advance(sched, METRICS[:8])
    ssd, osd = sched.state_dict(), opt.state_dict()
    assert_checkpoint_safe(ssd)
    opt2 = optim.SGD(params(), lr=0.1)
    sched2 = make(opt2)
    opt2.load_state_dict(osd)
    sched2.load_state_dict(ssd)
    assert first + advance(sched2, METRICS[8:16]) == full
    with pytest.raises(ValueError, match="missing keys"):
        sched2.load_state_dict({"last_epoch": 3})


# ---------------------------------------------------------------------- contracts

@pytest.mark.parametrize("name, kw", ALL_CASES, ids=ids)
def test_float32_in_place(name, kw):
    ps = params(np.float32)
    arrays = [p.data for p in ps]
    opt, history = run(name, kw, ps, grads(4, np.float32), two_groups=True)
    for p, a in zip(ps, arrays):
        assert p.data is a                               # updated in place, never rebound
        assert p.data.dtype == np.float32
    for state in opt.state.values():
        for k, v in state.items():
            if isinstance(v, np.ndarray):
                assert v.dtype == np.float32, k
    # and the same numbers as float64, to float32 precision
    _, history64 = run(name, kw, params(), grads(4), two_groups=True)
    for got, want in zip(history[-1], history64[-1]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_params_without_grad_are_skipped():
    ps = params()
    before = [p.data.copy() for p in ps]
    opt = optim.Adam(ps, lr=0.1)
    ps[0].grad = rg.tensor(np.ones(SHAPES[0]))
    opt.step()
    assert not np.array_equal(ps[0].data, before[0])
    for p, b in zip(ps[1:], before[1:]):
        np.testing.assert_array_equal(p.data, b)
    assert list(opt.state) == [ps[0]]


def test_zero_grad_and_closure():
    p = rg.tensor(np.array([1.0, -2.0]), requires_grad=True)
    opt = optim.SGD([p], lr=0.25)
    calls = []

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        calls.append(1)
        return loss

    loss = opt.step(closure)
    assert calls == [1] and loss.item() == pytest.approx(5.0)
    np.testing.assert_allclose(p.data, [0.5, -1.0])       # w - 0.25 * 2w
    assert p.grad is not None
    opt.zero_grad()
    assert p.grad is None
    assert opt.step() is None


def test_param_groups_and_errors():
    ps = params()
    opt = optim.SGD(ps[:2], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": ps[2], "lr": 0.01})
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    assert opt.param_groups[1]["momentum"] == 0.9
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [ps[0]]})
    with pytest.raises(TypeError):
        optim.SGD(ps[0], lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([])
    with pytest.raises(ValueError):
        optim.SGD(ps, lr=0.1, nesterov=True)
    with pytest.raises(ValueError):
        optim.Rprop(ps, etas=(1.2, 0.5))
    assert "SGD" in repr(opt)


# ---------------------------------------------------------------------- fused (flat) updates

from retrograd.optim.fused import FusedUpdate  # noqa: E402


def fused_run(fu, gs):
    history = []
    for g in gs:
        for arr, gi in zip(fu.grad_arrays, g):
            arr[...] = gi
        fu.step()
        history.append([p.data.copy() for p in fu.params])
    return history


def full_grads(steps, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) for s in SHAPES] for _ in range(steps)]


@pytest.mark.parametrize("chunk", [None, 5], ids=["one-chunk", "chunks-of-5"])
@pytest.mark.parametrize("name, kw", ALL_CASES, ids=ids)
def test_fused_update_equals_per_parameter_update(name, kw, chunk, monkeypatch):
    """The optimizer's own rule on the parameters laid end to end (in one call, or a chunk
    at a time): the same numbers to the last bit, the same per-parameter state (views of
    the flat state) and state dict."""
    if chunk:
        monkeypatch.setattr("retrograd.optim.fused.CHUNK", chunk)
    gs = full_grads(6)
    ps = params()
    opt, want = run(name, kw, ps, gs, two_groups=True)
    fps = params()
    fopt = getattr(optim, name)(groups(fps, True), **kw)
    fu = FusedUpdate(fopt, fps)
    got = fused_run(fu, gs)
    for step, (a, b) in enumerate(zip(got, want)):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y, err_msg=f"step {step + 1}")
    sd, fsd = opt.state_dict(), fopt.state_dict()
    assert fsd["param_groups"] == sd["param_groups"]
    for i in sd["state"]:
        assert sorted(fsd["state"][i]) == sorted(sd["state"][i])
        for k, v in sd["state"][i].items():
            np.testing.assert_array_equal(fsd["state"][i][k], v)
    for p, g in zip(fps, gs[-1]):                 # grads and data stay per parameter
        np.testing.assert_array_equal(p.grad.data, g)
        assert p.data.base is not None and p.data.shape == g.shape


@pytest.mark.parametrize("name, kw", [ALL_CASES[1], ALL_CASES[8], ALL_CASES[-1]],
                         ids=[ids[1], ids[8], ids[-1]])
def test_fused_update_notices_loaded_state_and_rebound_data(name, kw):
    gs = full_grads(6)
    _, want = run(name, kw, params(), gs, two_groups=True)
    # a checkpoint after 3 steps, loaded into an optimizer already running fused steps
    ps = params()
    opt, _ = run(name, kw, ps, gs[:3], two_groups=True)
    sd, data = opt.state_dict(), [p.data.copy() for p in ps]
    fps = params(seed=7)
    fopt = getattr(optim, name)(groups(fps, True), **kw)
    fu = FusedUpdate(fopt, fps)
    fused_run(fu, full_grads(2, seed=9))          # some other training first
    fopt.load_state_dict(sd)
    for p, d in zip(fps, data):
        p.data = d.copy()                         # rebinds p.data: copied into the flat array
    got = fused_run(fu, gs[3:])
    for a, b in zip(got, want[3:]):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    for bad in (np.zeros((2, 2)), np.zeros(fps[0].shape, np.float32)):
        fps[0].data = bad
        with pytest.raises(rg.ShapeError, match="compile the training step again"):
            fu.step()


def test_fused_update_falls_back_when_states_disagree():
    """Parameters at different step counts (one had no gradient once) cannot share one
    flat state: that step runs per parameter, with the same numbers."""
    gs = full_grads(4)
    want_ps = params()
    opt = optim.Adam(want_ps, lr=0.01)
    first = [gs[0][0], None, None]
    run("Adam", {}, want_ps, [first] + gs[1:], opt=opt)
    ps = params()
    fopt = optim.Adam(ps, lr=0.01)
    run("Adam", {}, ps, [first], opt=fopt)        # eager step: only p0 has state
    fu = FusedUpdate(fopt, ps)
    fused_run(fu, gs[1:])
    for p, q in zip(ps, want_ps):
        np.testing.assert_array_equal(p.data, q.data)
    assert [fopt.state[p]["step"] for p in ps] == [4, 3, 3]


def test_fused_update_leaves_params_outside_the_optimizer_and_follows_new_groups():
    ps = params()
    opt = optim.SGD(ps[:2], lr=0.1, momentum=0.9)
    fu = FusedUpdate(opt, ps)
    before = ps[2].data.copy()
    g = full_grads(3)
    fused_run(fu, g[:1])
    np.testing.assert_array_equal(ps[2].data, before)          # in no group: not updated
    np.testing.assert_array_equal(ps[2].grad.data, g[0][2])    # but its gradient is set
    opt.add_param_group({"params": [ps[2]], "lr": 1.0})
    fused_run(fu, g[1:2])
    np.testing.assert_array_equal(ps[2].data, before - g[1][2])  # first momentum step: g
    assert ps[2].version > 0


def test_fused_update_needs_an_elementwise_update_rule():
    """A rule with per-tensor norms, or a subclass with a step() of its own, keeps the
    per-parameter path, also in a compiled training step."""
    class Normed(optim.SGD):
        elementwise = False

    class OwnStep(optim.Optimizer):
        def __init__(self, ps):
            super().__init__(ps, {})
            self.calls = 0

        def step(self, closure=None):
            self.calls += 1
            for p in self.param_groups[0]["params"]:
                p.data -= 0.5 * p.grad.data

    for opt in (Normed(params(), lr=0.1), OwnStep(params())):
        with pytest.raises(ValueError, match="not an elementwise _update"):
            FusedUpdate(opt, params())
    model = rg.nn.Linear(3, 2)
    opt = OwnStep(model.parameters())
    step = rg.graph.compile_step(model, rg.nn.MSELoss(), opt)
    before = model.weight.data.copy()
    step(np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32))
    assert step.fused is None and opt.calls == 1
    np.testing.assert_allclose(model.weight.data, before - 0.5 * model.weight.grad.data)


def test_fused_update_keeps_one_flat_array_per_group_and_dtype():
    ps = params() + params(np.float32, seed=3)
    opt = optim.Adam([{"params": ps[:4]}, {"params": ps[4:], "lr": 0.1}], lr=0.01)
    fu = FusedUpdate(opt, ps)
    assert sorted((b.group, b.w.dtype.name, len(b.params)) for b in fu.buckets) == [
        (0, "float32", 1), (0, "float64", 3), (1, "float32", 2)]
    ref = params() + params(np.float32, seed=3)
    ref_opt = optim.Adam([{"params": ref[:4]}, {"params": ref[4:], "lr": 0.1}], lr=0.01)
    gs = [[np.full(p.shape, 0.5 + k, p.dtype) for p in ps] for k in range(3)]
    fused_run(fu, gs)
    run("Adam", {}, ref, gs, opt=ref_opt)
    for p, q in zip(ps, ref):
        assert p.dtype == q.dtype
        np.testing.assert_array_equal(p.data, q.data)


def test_fused_update_follows_eager_steps_taken_in_between():
    """optimizer.step() called directly (an eager step) between fused steps: the fused
    update notices the per-parameter step counts and new state and carries on exactly."""
    gs = full_grads(5)
    ref = params()
    run("SGD", dict(lr=0.1, momentum=0.9), ref, gs, opt=optim.SGD(ref, lr=0.1, momentum=0.9))
    ps = params()
    opt = optim.SGD(ps, lr=0.1, momentum=0.9)
    fu = FusedUpdate(opt, ps)
    run("SGD", {}, ps, gs[:1], opt=opt)            # eager first step: makes momentum buffers
    fused_run(fu, gs[1:3])
    run("SGD", {}, ps, gs[3:4], opt=opt)           # eager again
    fused_run(fu, gs[4:])
    for p, q in zip(ps, ref):
        np.testing.assert_array_equal(p.data, q.data)
    assert [opt.state[p]["step"] for p in ps] == [5, 5, 5]
    with pytest.raises(ValueError, match="listed twice"):
        FusedUpdate(opt, [ps[0], ps[0]])


def test_fused_update_follows_group_lists_replaced_or_changed_in_place():
    """A group's parameter list replaced (a parameter moved out, another in) is a new
    layout, even when the new list reuses the freed old list's id (CPython does), and so
    is a list changed in place."""
    ps = params()
    opt = optim.SGD(ps[:2], lr=0.1)
    fu = FusedUpdate(opt, ps)
    g = full_grads(3)
    fused_run(fu, g[:1])
    before = [p.data.copy() for p in ps]
    group = opt.param_groups[0]
    group["params"] = [ps[0], ps[2]]               # ps[1] out, ps[2] in
    group["params"] = [ps[0], ps[2]]               # a new list again: CPython gives it the
                                                   # freed first list's id
    fused_run(fu, g[1:2])
    np.testing.assert_array_equal(ps[0].data, before[0] - 0.1 * g[1][0])
    np.testing.assert_array_equal(ps[1].data, before[1])
    np.testing.assert_array_equal(ps[2].data, before[2] - 0.1 * g[1][2])
    before = [p.data.copy() for p in ps]
    group["params"][1] = ps[1]                     # and back, in place: ps[2] out, ps[1] in
    fused_run(fu, g[2:])
    np.testing.assert_array_equal(ps[0].data, before[0] - 0.1 * g[2][0])
    np.testing.assert_array_equal(ps[1].data, before[1] - 0.1 * g[2][1])
    np.testing.assert_array_equal(ps[2].data, before[2])


def test_compiled_step_follows_every_change_made_between_its_calls():
    """compile_step under what a training script may do between steps: a new parameter
    group, an eager step, a loaded checkpoint with rebound p.data, parameters at
    different step counts: the same numbers as the eager loop doing the same."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((8, 4)).astype(np.float32), rng.integers(0, 3, 8)
    loss_fn = rg.nn.CrossEntropyLoss()

    def eager(model, opt, only=None):
        opt.zero_grad()
        loss_fn(model(rg.tensor(X)), Y).backward()
        for p in model.parameters():
            if only is not None and all(p is not q for q in only):
                p.grad = None
        opt.step()

    def script(compiled):
        rg.manual_seed(0)
        model = rg.nn.MLP([4, 6, 3], "relu")
        ps = list(model.parameters())
        opt = optim.Adam(ps[:2], lr=0.01)
        step = rg.graph.compile_step(model, loss_fn, opt) if compiled else None
        train = (lambda: step(X, Y)) if compiled else (lambda: eager(model, opt))
        train(); train()
        opt.add_param_group({"params": ps[2:], "lr": 0.05})
        train()
        eager(model, opt)                            # an eager step in between
        train()
        sd, data = opt.state_dict(), [p.data.copy() for p in ps]
        train(); train()
        opt.load_state_dict(sd)                      # back to the checkpoint
        for p, d in zip(ps, data):
            p.data = d.copy()
        train()
        eager(model, opt, only=ps[:1])               # one parameter a step ahead
        train(); train()
        assert [opt.state[p]["step"] for p in ps] == [9, 8, 6, 6]
        if compiled:
            assert sorted(h[3] for h in step.prepared.values()) == [1]
        return [p.data.copy() for p in ps]

    for a, b in zip(script(True), script(False)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
