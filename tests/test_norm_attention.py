"""Normalisation, embedding and attention layers: against PyTorch with copied weights,
compiled against eager, their module state (buffers) and their errors. The ops and
composites themselves are in the op-case table (tests/cases_nn.py)."""
from __future__ import annotations

import numpy as np
import pytest

import retrograd as rg
from retrograd import nn
from retrograd.errors import RetrogradError, ShapeError, TraceError

from torch_oracle import torch

F = nn.functional
torch_only = pytest.mark.torch


def _np(t):
    return t.detach().numpy()


def _close(a, b, tol=1e-10):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def _copy_from_torch(ours, theirs):
    """PyTorch weights into our module: Linear weights transposed (ours are (in, out))."""
    linears = {name for name, m in ours.named_modules() if isinstance(m, nn.Linear)}
    for name, p in ours.named_parameters():
        w = _np(theirs.state_dict()[name])
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        p.data = (w.T if owner in linears and name.endswith("weight") else w).copy()


# ---------------------------------------------------------------- BatchNorm

BN_CASES = [(nn.BatchNorm1d, (8, 3)), (nn.BatchNorm1d, (6, 3, 5)), (nn.BatchNorm2d, (4, 3, 2, 3))]


@torch_only
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("cls, shape", BN_CASES)
def test_batchnorm_matches_torch_in_training_and_eval_with_running_stats(cls, shape, momentum):
    rng = np.random.default_rng(0)
    ours = cls(3, momentum=momentum, dtype=np.float64)
    theirs = getattr(torch.nn, cls.__name__)(3, momentum=momentum).double()
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(rng.standard_normal(3)))
        theirs.bias.copy_(torch.tensor(rng.standard_normal(3)))
    _copy_from_torch(ours, theirs)
    for step in range(4):                     # the running statistics after several steps
        x = rng.standard_normal(shape) * (step + 1) + step
        ct = rng.standard_normal(shape)
        xr, xt = rg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y, yt = ours(xr), theirs(xt)
        _close(y.numpy(), _np(yt))
        (y * ct).sum().backward()
        (yt * torch.tensor(ct)).sum().backward()
        _close(xr.grad.numpy(), xt.grad.numpy(), 1e-9)
        _close(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), 1e-9)
        _close(ours.bias.grad.numpy(), theirs.bias.grad.numpy(), 1e-9)
        ours.zero_grad(); theirs.zero_grad()
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        _close(getattr(ours, name).data, _np(getattr(theirs, name)))
    ours.eval(); theirs.eval()
    x = rng.standard_normal(shape)
    xr, xt = rg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yt = ours(xr), theirs(xt)
    _close(y.numpy(), _np(yt))
    y.sum().backward(); yt.sum().backward()
    _close(xr.grad.numpy(), xt.grad.numpy())
    assert ours.num_batches_tracked.data == 4          # eval changes no state


@torch_only
def test_batchnorm_without_running_stats_or_affine_matches_torch():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 4, 3))
    for kw in ({"track_running_stats": False}, {"affine": False}):
        ours = nn.BatchNorm1d(4, dtype=np.float64, **kw).eval()
        theirs = torch.nn.BatchNorm1d(4, **kw).double().eval()
        _close(ours(rg.tensor(x)).numpy(), _np(theirs(torch.tensor(x))))
        assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
        assert list(ours.state_dict()) == list(theirs.state_dict())


def test_batchnorm_state_is_buffers_in_the_state_dict_not_parameters(tmp_path):
    bn = nn.BatchNorm2d(3)
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var",
                                     "num_batches_tracked"]
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in nn.Sequential(bn).named_buffers()] == [
        "0.running_mean", "0.running_var", "0.num_batches_tracked"]
    assert bn.num_batches_tracked.dtype == np.int64 and bn.num_batches_tracked.shape == ()
    bn(rg.tensor(np.random.default_rng(0).standard_normal((4, 3, 2, 2)).astype(np.float32)))
    rg.io.save(bn, tmp_path / "bn.npz")
    other = nn.BatchNorm2d(3).load_state_dict(rg.io.load(tmp_path / "bn.npz"))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_array_equal(getattr(other, name).data, getattr(bn, name).data)
    assert other.num_batches_tracked.data == 1 and not other.running_var.requires_grad


def test_batchnorm_needs_more_than_one_value_per_channel_in_training():
    with pytest.raises(ShapeError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(rg.ones((1, 3)))
    nn.BatchNorm1d(3).eval()(rg.ones((1, 3)))                # fine in eval mode


def test_batchnorm_refuses_inputs_of_the_wrong_shape():
    with pytest.raises(ShapeError, match=r"BatchNorm2d\(3\).*\(2, 4, 5, 5\).*4-d with 3 channels"):
        nn.BatchNorm2d(3)(rg.ones((2, 4, 5, 5)))
    with pytest.raises(ShapeError, match="BatchNorm1d"):
        nn.BatchNorm1d(3)(rg.ones((2, 3, 4, 4)))


def _bn_net(seed):
    rg.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_running_stats_update_at_every_compiled_step_as_eager(momentum):
    rng = np.random.default_rng(2)
    data = [(rng.standard_normal((8, 4)).astype(np.float32), rng.integers(0, 3, 8))
            for _ in range(4)]
    eager, comp = _bn_net(0), _bn_net(0)
    eager[1].momentum = comp[1].momentum = momentum
    opt_e = rg.optim.SGD(eager.parameters(), lr=0.1, momentum=0.9)
    opt_c = rg.optim.SGD(comp.parameters(), lr=0.1, momentum=0.9)
    step = rg.graph.compile_step(comp, nn.CrossEntropyLoss(), opt_c)
    for x, y in data:
        loss = nn.CrossEntropyLoss()(eager(rg.tensor(x)), y)
        opt_e.zero_grad(); loss.backward(); opt_e.step()
        loss_c, _ = step(x, y)
        np.testing.assert_allclose(loss_c.item(), loss.item(), rtol=1e-5)
    assert comp[1].num_batches_tracked.data == eager[1].num_batches_tracked.data == 4
    for a, b in zip(comp.state_dict().values(), eager.state_dict().values()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert step.compiled.traces == 1


def test_compiled_functions_read_and_update_buffers_at_every_call():
    bn = nn.BatchNorm1d(3, dtype=np.float64)
    f = rg.compile(lambda x: bn(x))
    rng = np.random.default_rng(3)
    ref = nn.BatchNorm1d(3, dtype=np.float64)
    for _ in range(3):
        x = rng.standard_normal((5, 3))
        np.testing.assert_allclose(f(x).numpy(), ref(rg.tensor(x)).numpy(), rtol=1e-12)
    for name, b in ref.named_buffers():
        np.testing.assert_allclose(getattr(bn, name).data, b.data, rtol=1e-12)
    bn.eval()
    g = rg.compile(lambda x: bn(x))
    x = rng.standard_normal((5, 3))
    first = g(x).numpy()
    bn.running_mean.assign(bn.running_mean.data + 1.0)   # state changed after the trace
    np.testing.assert_allclose(g(x).numpy(), first - 1.0 / np.sqrt(bn.running_var.data + 1e-5),
                               rtol=1e-10)
    assert g.traces == 1


def test_a_define_then_run_graph_refuses_to_update_running_stats():
    g = rg.graph.Graph()
    x = g.input("x", (4, 3))
    with pytest.raises(TraceError, match="running_mean.*model.eval"):
        nn.BatchNorm1d(3)(x)
    y = nn.BatchNorm1d(3).eval()(x)                  # eval mode reads them: fine
    out = g.forward({x: np.ones((4, 3), np.float32)}, outputs=y)
    np.testing.assert_allclose(out, np.full((4, 3), 1 / np.sqrt(1 + 1e-5)), rtol=1e-6)


def test_buffer_assign_checks_the_shape():
    with pytest.raises(ShapeError, match=r"Buffer.assign.*\(2,\).*\(3,\)"):
        nn.BatchNorm1d(3).running_mean.assign(np.zeros(2))


# ---------------------------------------------------------------- LayerNorm, GroupNorm

@torch_only
@pytest.mark.parametrize("ours, theirs, shape", [
    (lambda: nn.LayerNorm(5, dtype=np.float64), lambda: torch.nn.LayerNorm(5), (3, 4, 5)),
    (lambda: nn.LayerNorm((4, 5), eps=1e-3, dtype=np.float64),
     lambda: torch.nn.LayerNorm((4, 5), eps=1e-3), (3, 4, 5)),
    (lambda: nn.LayerNorm(5, elementwise_affine=False, dtype=np.float64),
     lambda: torch.nn.LayerNorm(5, elementwise_affine=False), (2, 5)),
    (lambda: nn.GroupNorm(2, 6, dtype=np.float64), lambda: torch.nn.GroupNorm(2, 6), (3, 6, 4)),
    (lambda: nn.GroupNorm(3, 6, affine=False, dtype=np.float64),
     lambda: torch.nn.GroupNorm(3, 6, affine=False), (2, 6, 2, 2)),
])
def test_layernorm_and_groupnorm_match_torch(ours, theirs, shape):
    rng = np.random.default_rng(4)
    a, b = ours(), theirs().double()
    with torch.no_grad():
        for p in b.parameters():
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape))))
    _copy_from_torch(a, b)
    x, ct = rng.standard_normal(shape), rng.standard_normal(shape)
    xr, xt = rg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    (a(xr) * ct).sum().backward()
    yt = b(xt)
    (yt * torch.tensor(ct)).sum().backward()
    _close(a(rg.tensor(x)).numpy(), _np(yt))
    _close(xr.grad.numpy(), xt.grad.numpy(), 1e-9)
    for (n, p), (m, q) in zip(a.named_parameters(), b.named_parameters()):
        assert n == m
        _close(p.grad.numpy(), q.grad.numpy(), 1e-9)


def test_norm_layers_refuse_wrong_shapes():
    with pytest.raises(ShapeError, match=r"layer_norm.*\(3, 4\).*\(5,\)"):
        nn.LayerNorm(5)(rg.ones((3, 4)))
    with pytest.raises(ValueError, match="num_channels 6 is not divisible by num_groups 4"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ShapeError, match=r"GroupNorm\(2, 6\).*\(3, 4\)"):
        nn.GroupNorm(2, 6)(rg.ones((3, 4)))


# ---------------------------------------------------------------- Embedding, Dropout2d

@torch_only
@pytest.mark.parametrize("padding_idx", [None, 1, -2])
def test_embedding_gradients_accumulate_repeats_and_skip_the_padding_row(padding_idx):
    rng = np.random.default_rng(5)
    ours = nn.Embedding(6, 3, padding_idx=padding_idx, dtype=np.float64)
    theirs = torch.nn.Embedding(6, 3, padding_idx=padding_idx).double()
    _copy_from_torch(ours, theirs)
    ids = np.array([[1, 3, 3, 0], [4, 1, 3, 5]])         # 3 three times, the padding id twice
    ct = rng.standard_normal((2, 4, 3))
    y, yt = ours(ids), theirs(torch.tensor(ids))
    _close(y.numpy(), _np(yt))
    (y * ct).sum().backward()
    (yt * torch.tensor(ct)).sum().backward()
    _close(ours.weight.grad.numpy(), theirs.weight.grad.numpy())
    if padding_idx is not None:
        assert not ours.weight.data[padding_idx].any()          # starts at zero, as torch's
        assert not ours.weight.grad.numpy()[padding_idx].any()


def test_embedding_out_of_range_ids_name_the_layer_and_the_id_eager_and_compiled():
    emb = nn.Embedding(10, 4)
    for bad in (10, -1):
        with pytest.raises(RetrogradError, match=rf"Embedding\(10, 4\): id {bad} is out of range "
                                                 r"for 10 embeddings"):
            emb(np.array([[1, bad]]))
    f = rg.compile(lambda ids: emb(ids).sum())
    f(np.array([1, 2]))
    with pytest.raises(RetrogradError, match=r"Embedding\(10, 4\): id 12 is out of range"):
        f(np.array([3, 12]))
    with pytest.raises(RetrogradError, match="ids must be integers"):
        emb(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="padding_idx 10 is out of range"):
        nn.Embedding(10, 4, padding_idx=10)


def test_compiled_embedding_takes_new_ids_at_every_call():
    emb = nn.Embedding(7, 3, dtype=np.float64)
    f = rg.compile(rg.grad(lambda w, ids: (nn.functional.embedding(ids, w) ** 2).sum()))
    for ids in (np.array([0, 1, 1]), np.array([6, 6, 2])):
        eager = rg.grad(lambda w: (nn.functional.embedding(ids, w) ** 2).sum())(emb.weight.data)
        np.testing.assert_allclose(f(emb.weight.data, ids).numpy(), eager.numpy(), rtol=1e-12)
    assert f.traces == 1


def test_embedding_of_no_ids_has_a_zero_gradient():
    emb = nn.Embedding(5, 3)
    y = emb(np.zeros((0, 4), np.int64))
    assert y.shape == (0, 4, 3)
    y.sum().backward()
    np.testing.assert_array_equal(emb.weight.grad.numpy(), np.zeros((5, 3)))


def test_embedding_is_twice_differentiable():
    w = np.random.default_rng(6).standard_normal((5, 2))
    ids = np.array([0, 3, 3, 1])
    assert rg.gradgradcheck(lambda w: nn.functional.embedding(ids, w) ** 3, w)


def test_dropout2d_zeroes_whole_channels_and_is_the_identity_in_eval():
    x = rg.ones((16, 8, 3, 3))
    layer = nn.Dropout2d(0.5)
    rg.manual_seed(0)
    y = layer(x).numpy()
    per_channel = y.reshape(16, 8, 9)
    assert np.all((per_channel == per_channel[..., :1]))         # each channel one value
    assert set(np.unique(y)) == {0.0, 2.0}
    assert 0.3 < (y == 0).mean() < 0.7
    assert layer.eval()(x) is x
    with pytest.raises(ShapeError, match=r"dropout2d: input must be \(N, C, H, W\)"):
        nn.functional.dropout2d(rg.ones((2, 3)))


def test_dropout2d_compiled_draws_new_masks_as_eager():
    x = np.ones((4, 6, 2, 2), np.float32)
    f = rg.compile(lambda x: nn.functional.dropout2d(x, 0.5))
    rg.manual_seed(1)
    comp = [f(x).numpy() for _ in range(3)]
    rg.manual_seed(1)
    eager = [nn.functional.dropout2d(rg.tensor(x), 0.5).numpy() for _ in range(3)]
    for a, b in zip(comp, eager):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(comp[0], comp[1])


# ---------------------------------------------------------------- attention

def test_sdpa_refuses_two_masks_and_causal_with_a_mask():
    q = rg.ones((2, 3, 4))
    with pytest.raises(ValueError, match="attn_mask or mask, not both"):
        F.scaled_dot_product_attention(q, q, q, np.ones((3, 3), bool), mask=np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="is_causal and attn_mask"):
        F.scaled_dot_product_attention(q, q, q, np.ones((3, 3), bool), is_causal=True)
    with pytest.raises(ShapeError, match="key .* and value .* same number"):
        F.scaled_dot_product_attention(q, q, rg.ones((2, 4, 4)))


@torch_only
def test_sdpa_causal_matches_torch_and_dropout_drops_weights():
    rng = np.random.default_rng(7)
    q, k, v = (rng.standard_normal((2, 5, 4)) for _ in range(3))
    ours = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    theirs = torch.nn.functional.scaled_dot_product_attention(
        *map(torch.tensor, (q, k, v)), is_causal=True)
    _close(ours.numpy(), _np(theirs))
    rg.manual_seed(0)
    dropped = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5).numpy()
    assert not np.allclose(dropped, F.scaled_dot_product_attention(q, k, v).numpy())


def _mha_pair(E=8, H=2, **kw):
    rng = np.random.default_rng(8)
    ours = nn.MultiheadAttention(E, H, dtype=np.float64, **kw)
    theirs = torch.nn.MultiheadAttention(E, H, **kw).double()
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)) * 0.5))
    _copy_from_torch(ours, theirs)
    return ours, theirs


def _masks(n, L, S, kind):
    rng = np.random.default_rng(9)
    kpm = np.zeros((n, S), bool)
    kpm[0, -2:] = True                       # the last two keys of sample 0 are padding
    if kind == "bool":
        am = np.triu(np.ones((L, S), bool), 1)
        return kpm, am
    if kind == "float":
        return np.where(kpm, -np.inf, 0.0), rng.standard_normal((L, S))
    if kind == "3d":
        return None, rng.standard_normal((n * 2, L, S))
    return None, None


@torch_only
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("kind", ["none", "bool", "float", "3d"])
@pytest.mark.parametrize("average", [True, False])
def test_multihead_self_attention_matches_torch(batch_first, kind, average):
    ours, theirs = _mha_pair(batch_first=batch_first)
    n, L = 3, 5
    rng = np.random.default_rng(10)
    x = rng.standard_normal((n, L, 8) if batch_first else (L, n, 8))
    ct = rng.standard_normal(x.shape)
    kpm, am = _masks(n, L, L, kind)
    xr, xt = rg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, w = ours(xr, xr, xr, key_padding_mask=kpm, attn_mask=am, average_attn_weights=average)
    t = lambda a: None if a is None else torch.tensor(a)
    out_t, w_t = theirs(xt, xt, xt, key_padding_mask=t(kpm), attn_mask=t(am),
                        average_attn_weights=average)
    _close(out.numpy(), _np(out_t))
    _close(w.numpy(), _np(w_t))
    ((out * ct).sum() + (w * w).sum()).backward()
    ((out_t * torch.tensor(ct)).sum() + (w_t * w_t).sum()).backward()
    _close(xr.grad.numpy(), xt.grad.numpy(), 1e-9)
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        g = q.grad.numpy()
        _close(p.grad.numpy(), g.T if name == "out_proj.weight" else g, 1e-9)


@torch_only
@pytest.mark.parametrize("kw", [{}, {"kdim": 5, "vdim": 3}, {"bias": False}])
def test_multihead_cross_attention_matches_torch(kw):
    ours, theirs = _mha_pair(batch_first=True, **kw)
    rng = np.random.default_rng(11)
    q = rng.standard_normal((2, 4, 8))
    k = rng.standard_normal((2, 6, kw.get("kdim", 8)))
    v = rng.standard_normal((2, 6, kw.get("vdim", 8)))
    args = [rg.tensor(a, requires_grad=True) for a in (q, k, v)]
    targs = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    out, w = ours(*args, need_weights=False)
    out_t, _ = theirs(*targs, need_weights=False)
    assert w is None
    _close(out.numpy(), _np(out_t))
    out.sum().backward(); out_t.sum().backward()
    for a, b in zip(args, targs):
        _close(a.grad.numpy(), b.grad.numpy(), 1e-9)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]


@torch_only
def test_multihead_attention_unbatched_matches_torch():
    ours, theirs = _mha_pair()
    x = np.random.default_rng(12).standard_normal((5, 8))
    kpm = np.array([False, False, False, True, True])
    out, w = ours(x, x, x, key_padding_mask=kpm)
    out_t, w_t = theirs(*(torch.tensor(x),) * 3, key_padding_mask=torch.tensor(kpm))
    _close(out.numpy(), _np(out_t))
    _close(w.numpy(), _np(w_t))


def test_multihead_attention_compiles_to_the_eager_numbers_and_refuses_bad_masks():
    rg.manual_seed(0)
    mha = nn.MultiheadAttention(8, 4, dtype=np.float64)
    x = np.random.default_rng(13).standard_normal((5, 2, 8))
    kpm = np.array([[False] * 5, [False, False, False, True, True]])
    f = rg.compile(lambda x, m: mha(x, x, x, key_padding_mask=m)[0])
    eager = mha(rg.tensor(x), rg.tensor(x), rg.tensor(x), key_padding_mask=kpm)[0]
    np.testing.assert_allclose(f(x, kpm).numpy(), eager.numpy(), rtol=1e-12)
    other = ~kpm & True
    other[:, 0] = False                      # a new mask: the same trace
    eager2 = mha(rg.tensor(x), rg.tensor(x), rg.tensor(x), key_padding_mask=other)[0]
    np.testing.assert_allclose(f(x, other).numpy(), eager2.numpy(), rtol=1e-12)
    assert f.traces == 1
    with pytest.raises(ShapeError, match=r"key_padding_mask has shape \(5, 2\), expected \(2, 5\)"):
        mha(x, x, x, key_padding_mask=kpm.T)
    with pytest.raises(ShapeError, match=r"attn_mask has shape \(4, 4\)"):
        mha(x, x, x, attn_mask=np.zeros((4, 4)))
    with pytest.raises(ShapeError, match=r"MultiheadAttention\(8, 4\)"):
        mha(x[..., :6], x, x)
    with pytest.raises(ValueError, match="embed_dim 6 is not divisible by num_heads 4"):
        nn.MultiheadAttention(6, 4)
    with pytest.raises(RetrogradError, match="is_causal needs attn_mask"):
        mha(x, x, x, is_causal=True)
    with pytest.raises(RetrogradError, match="is_causal needs src_mask"):
        nn.TransformerEncoderLayer(8, 2, 16)(x, is_causal=True)


def test_multihead_attention_is_twice_differentiable():
    rg.manual_seed(1)
    mha = nn.MultiheadAttention(4, 2, dtype=np.float64)
    x = np.random.default_rng(14).standard_normal((3, 1, 4))
    am = np.triu(np.ones((3, 3), bool), 1)
    assert rg.gradgradcheck(lambda x: mha(x, x, x, attn_mask=am)[0], x)


@torch_only
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation, batch_first", [("relu", False), ("gelu", True)])
def test_transformer_encoder_layer_matches_torch(norm_first, activation, batch_first):
    kw = dict(dim_feedforward=16, dropout=0.0, activation=activation, batch_first=batch_first,
              norm_first=norm_first)
    ours = nn.TransformerEncoderLayer(8, 2, dtype=np.float64, **kw)
    theirs = torch.nn.TransformerEncoderLayer(8, 2, **kw).double()
    rng = np.random.default_rng(15)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)) * 0.3))
    _copy_from_torch(ours, theirs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    x = rng.standard_normal((3, 4, 8))
    mask = np.triu(np.full((4, 4) if batch_first else (3, 3), -np.inf), 1)
    xr, xt = rg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yt = ours(xr, src_mask=mask), theirs(xt, src_mask=torch.tensor(mask))
    _close(y.numpy(), _np(yt), 1e-9)
    y.sum().backward(); yt.sum().backward()
    _close(xr.grad.numpy(), xt.grad.numpy(), 1e-8)
    theirs.eval()      # (PyTorch's eval fast path is another kernel: the same numbers)
    _close(ours.eval()(xr, src_mask=mask).numpy(), _np(theirs(xt, src_mask=torch.tensor(mask))),
           1e-9)


def test_fit_with_batchnorm_compiled_equals_eager_and_checkpoints_the_running_stats(tmp_path):
    from retrograd.data import spirals
    from retrograd.train import fit
    x, y = spirals(n=60, seed=2)
    runs = {}
    for compiled in (False, True):
        rg.manual_seed(3)
        model = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 2))
        opt = rg.optim.SGD(model.parameters(), lr=0.1)
        h = fit(model, nn.CrossEntropyLoss(), opt, (x, y), (x, y), epochs=3, batch_size=20,
                seed=1, progress=False, log=None, compile=compiled,
                out_dir=tmp_path / str(compiled))
        runs[compiled] = ([r["val_loss"] for r in h], model)
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=1e-5)
    bn = runs[True][1][1]
    assert bn.num_batches_tracked.data == 9                     # 3 epochs of 3 batches
    saved = rg.io.load(tmp_path / "True" / "last.npz")["model"]
    np.testing.assert_array_equal(saved["1.running_mean"], bn.running_mean.data)
    np.testing.assert_allclose(saved["1.running_var"], runs[False][1][1].running_var.data,
                               rtol=1e-5)
