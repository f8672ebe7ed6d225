"""The forwards of the matrix, convolution, pooling, scan and LSTM ops on arrays of another
namespace (array_api_strict on a device of its own: any NumPy call on them raises) give
the NumPy forward's numbers. Forward by forward (Op.forward_in), so that each op's generic
branch is checked on its own, also for the spec/shape corners the case table skips."""
import numpy as np
import pytest

from retrograd.ops.base import REGISTRY

xp = pytest.importorskip("array_api_strict")
pytest.importorskip("array_api_compat")

DEVICE = xp.Device("device1")
rng = np.random.default_rng(0)


def on_device(a):
    return xp.asarray(a, device=DEVICE) if isinstance(a, np.ndarray) else a


def host(a):
    assert type(a) is type(on_device(np.zeros(1))), f"not an array_api_strict array: {type(a)}"
    assert a.device == DEVICE, f"left the device: {a.device}"
    return np.asarray(xp.asarray(a, device=xp.Device()))


def check(name, arrays, **params):
    op = REGISTRY[name]
    ref = op.forward(*[a.copy() if isinstance(a, np.ndarray) else a for a in arrays], **params)
    ours = op.forward_in(xp, [on_device(a) for a in arrays], params)
    got = host(ours)
    assert got.shape == np.shape(ref), f"{name}: shape {got.shape} != {np.shape(ref)}"
    assert str(got.dtype) == str(np.asarray(ref).dtype), f"{name}: dtype {got.dtype}"
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12, err_msg=f"{name} {params}")


def r(*shape):
    return rng.standard_normal(shape)


EINSUMS = [("ij,jk->ik", (3, 4), (4, 2)), ("ij,kj->ik", (3, 4), (2, 4)),
           ("bij,jk->bik", (2, 3, 4), (4, 2)), ("aij,bjk->abik", (2, 3, 4), (1, 4, 2)),
           ("ii,i->i", (3, 3), (3,)), ("ijk,j->i", (2, 3, 4), (3,)), ("i,j->ji", (3,), (2,)),
           ("ij,ij->", (3, 4), (3, 4)), ("ij,ij->ij", (3, 4), (1, 4)),
           ("ij,jk->ik", (3, 1), (4, 2)), ("iij,jk->ik", (3, 3, 2), (2, 5)),
           ("abc,cba->b", (2, 3, 4), (4, 3, 2)), ("ij,->ij", (2, 3), ())]
UNARY = [("ii->", (4, 4)), ("ii->i", (3, 3)), ("ij->ji", (3, 4)), ("ijk->j", (2, 3, 4)),
         ("iji->ij", (3, 2, 3)), ("i->", (5,))]


@pytest.mark.parametrize("spec,sa,sb", EINSUMS)
def test_einsum(spec, sa, sb):
    check("einsum", [r(*sa), r(*sb)], subscripts=spec)


@pytest.mark.parametrize("spec,sa", UNARY)
def test_einsum_unary(spec, sa):
    check("einsum_unary", [r(*sa)], subscripts=spec)


@pytest.mark.parametrize("shape,offset,a1,a2", [((4, 4), 1, 0, 1), ((3, 2, 4), -1, 2, 0),
                                                ((3, 5), 2, 0, 1), ((2, 3, 4), 0, 1, 2),
                                                ((3, 3), 5, 0, 1)])
def test_diagonal_and_its_adjoint(shape, offset, a1, a2):
    x = r(*shape)
    check("diagonal", [x], offset=offset, axis1=a1, axis2=a2)
    d = np.diagonal(x, offset, a1, a2)
    check("diagonal_vjp", [r(*d.shape)], offset=offset, axis1=a1, axis2=a2, shape=shape)


GEOMETRIES = [((2, 3, 5, 6), (2, 3), (1, 2), (1, 1), (2, 1)), ((1, 2, 4, 4), (3, 3), (1, 1), (0, 0), (1, 1)),
              ((2, 1, 7, 5), (2, 2), (2, 1), (2, 0), (3, 2))]


@pytest.mark.parametrize("shape,k,d,p,s", GEOMETRIES)
def test_im2col_col2im(shape, k, d, p, s):
    x = r(*shape)
    check("im2col", [x], kernel_size=k, dilation=d, padding=p, stride=s)
    cols = REGISTRY["im2col"].forward(x, kernel_size=k, dilation=d, padding=p, stride=s)
    check("col2im", [r(*cols.shape)], shape=shape, kernel_size=k, dilation=d, padding=p, stride=s)


POOLS = [((2, 3, 6, 6), (2, 2), (2, 2), (0, 0), (1, 1), (3, 3)),
         ((2, 3, 7, 6), (2, 3), (2, 3), (0, 0), (1, 1), (3, 2)),
         ((2, 2, 7, 6), (3, 3), (2, 2), (1, 1), (1, 1), (4, 3)),
         ((1, 2, 7, 7), (2, 3), (2, 1), (1, 1), (2, 1), (4, 5))]


@pytest.mark.parametrize("shape,k,s,p,d,out", POOLS)
def test_max_pool(shape, k, s, p, d, out):
    x = r(*shape)
    x[0, 0, 1, 1] = np.nan
    x[0, 1, 2] = 0.5                          # ties: the first maximum wins
    geo = dict(kernel_size=k, stride=s, padding=p, dilation=d, out_size=out)
    for name in ("max_pool2d", "max_pool2d_argmax", "max_pool2d_indices"):
        check(name, [x], **geo)
    arg = REGISTRY["max_pool2d_argmax"].forward(x, **geo)
    check("pool_gather", [x, arg], **geo)
    check("pool_gather", [r(*shape), arg], **geo)
    check("pool_scatter", [r(*arg.shape), arg], shape=shape, **geo)


@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_scan(reverse):
    L, N, H = 4, 3, 5
    check("lstm_scan", [r(L, N, 4 * H), r(N, H), r(N, H), r(H, 4 * H) * 0.5], reverse=reverse)


@pytest.mark.parametrize("axis,reverse", [(0, False), (1, True), (2, False), (2, True)])
def test_scans(axis, reverse):
    x = r(3, 4, 5)
    check("cumsum", [x], axis=axis, reverse=reverse)
    check("logcumsumexp", [x * 3], axis=axis, reverse=reverse)
    check("cumprod", [x], axis=axis)
    x[0, 1, 2] = np.nan
    for reduce in ("max", "min"):
        check("cum_extremum_indices", [np.round(x, 1)], axis=axis, reduce=reduce)
