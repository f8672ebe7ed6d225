"""One table of op test cases, shared by the finite-difference, second-order,
dtype and PyTorch tests (in the spirit of tinygrad's helper_test_op).

Each case: a retrograd function, the same function in PyTorch (or None), the
input shapes, and the domain the inputs are drawn from (kinks and poles are
kept away from, since finite differences are meaningless there).
"""
from __future__ import annotations

import numpy as np

import retrograd as rg

from opcase import Case
from torch_oracle import torch   # None without it: those tests are skipped

IDX = np.array([2, 0, 2, 1])          # repeated index: the VJP must accumulate
MASK = np.array([[True, False, True, True], [False, True, False, True], [True, True, False, False]])

CASES = [
    # ---- binary arithmetic, with broadcasting
    Case("add", lambda a, b: a + b, lambda a, b: a + b, ((3, 4), (4,))),
    Case("add_scalar", lambda a: 2.5 + a, lambda a: 2.5 + a, ((3, 4),)),
    Case("sub", lambda a, b: a - b, lambda a, b: a - b, ((3, 1), (1, 4))),
    Case("rsub", lambda a: 1 - a, lambda a: 1 - a, ((5,),)),
    Case("mul", lambda a, b: a * b, lambda a, b: a * b, ((2, 3, 4), (3, 1))),
    Case("div", lambda a, b: a / b, lambda a, b: a / b, ((3, 4), (3, 4)), domain="away0"),
    Case("rdiv", lambda a: 2.0 / a, lambda a: 2.0 / a, ((3, 4),), domain="away0"),
    Case("neg", lambda a: -a, lambda a: -a, ((3, 4),)),
    Case("pow_scalar", lambda a: a ** 3, lambda a: a ** 3, ((3, 4),)),
    Case("pow_half", lambda a: a ** 0.5, lambda a: a ** 0.5, ((3, 4),), domain="positive"),
    Case("square", lambda a: rg.square(a), lambda a: a ** 2, ((3, 4),)),
    Case("pow_tensor", lambda a, b: a ** b, lambda a, b: a ** b, ((3, 4), (4,)), domain="positive"),
    Case("rpow", lambda a: 2.0 ** a, lambda a: 2.0 ** a, ((3, 4),)),
    Case("maximum", rg.maximum, lambda a, b: torch.maximum(a, b), ((3, 4), (4,)), domain="distinct"),
    Case("minimum", rg.minimum, lambda a, b: torch.minimum(a, b), ((3, 4), (3, 1)), domain="distinct"),
    Case("arctan2", rg.arctan2, lambda a, b: torch.atan2(a, b), ((3, 4), (4,)), domain="away0"),
    Case("logaddexp", rg.logaddexp, lambda a, b: torch.logaddexp(a, b), ((3, 4), (3, 1))),
    Case("hypot", rg.hypot, lambda a, b: torch.hypot(a, b), ((3, 4), (4,)), domain="away0"),
    Case("copysign", rg.copysign, lambda a, b: torch.copysign(a, b), ((3, 4), (4,)),
         domain="away0"),
    Case("where", lambda a, b: rg.where(a > 0, a, b),
         lambda a, b: torch.where(a > 0, a, b), ((3, 4), (4,)), domain="away0"),
    Case("clip", lambda a: rg.clip(a, -0.5, 0.7), lambda a: torch.clamp(a, -0.5, 0.7), ((4, 5),),
         domain="away0"),
    # ---- unary math
    Case("exp", rg.exp, lambda a: a.exp(), ((3, 4),)),
    Case("log", rg.log, lambda a: a.log(), ((3, 4),), domain="positive"),
    Case("sqrt", rg.sqrt, lambda a: a.sqrt(), ((3, 4),), domain="positive"),
    Case("abs", rg.abs, lambda a: a.abs(), ((3, 4),), domain="away0"),
    Case("sin", rg.sin, lambda a: a.sin(), ((3, 4),)),
    Case("cos", rg.cos, lambda a: a.cos(), ((3, 4),)),
    Case("tanh", rg.tanh, lambda a: a.tanh(), ((3, 4),)),
    Case("erf", rg.erf, lambda a: a.erf(), ((3, 4),)),
    Case("sigmoid", rg.sigmoid, lambda a: a.sigmoid(), ((3, 4),)),
    Case("relu", rg.relu, lambda a: a.relu(), ((3, 4),), domain="away0"),
    Case("leaky_relu", lambda a: rg.leaky_relu(a, 0.1),
         lambda a: torch.nn.functional.leaky_relu(a, 0.1), ((3, 4),), domain="away0"),
    Case("softplus", rg.softplus, lambda a: torch.nn.functional.softplus(a), ((3, 4),)),
    # ---- activations (the kinked ones: inputs scaled so every piece is hit, off the kinks)
    Case("gelu", rg.gelu, lambda a: torch.nn.functional.gelu(a), ((3, 4),)),
    Case("gelu_tanh", lambda a: rg.gelu(a, approximate="tanh"),
         lambda a: torch.nn.functional.gelu(a, approximate="tanh"), ((3, 4),)),
    Case("silu", rg.silu, lambda a: torch.nn.functional.silu(a), ((3, 4),)),
    Case("mish", rg.mish, lambda a: torch.nn.functional.mish(a), ((3, 4),)),
    Case("logsigmoid", rg.logsigmoid, lambda a: torch.nn.functional.logsigmoid(a), ((3, 4),)),
    Case("softsign", rg.softsign, lambda a: torch.nn.functional.softsign(a), ((3, 4),),
         domain="away0"),
    Case("elu", lambda a: rg.elu(a, 0.7), lambda a: torch.nn.functional.elu(a, 0.7), ((3, 4),),
         domain="away0"),
    Case("selu", rg.selu, lambda a: torch.nn.functional.selu(a), ((3, 4),), domain="away0"),
    Case("celu", lambda a: rg.celu(a, 1.5), lambda a: torch.nn.functional.celu(a, 1.5), ((3, 4),),
         domain="away0"),
    Case("hardswish", lambda a: rg.hardswish(a * 3.5), lambda a: torch.nn.functional.hardswish(a * 3.5),
         ((4, 5),)),
    # PyTorch's float64 hardsigmoid gradient is float32's 1/6 (0.16666667163), and it has no
    # double backward: the oracle is relu6(x + 3) / 6, the same function with an exact 1/6
    Case("hardsigmoid", lambda a: rg.hardsigmoid(a * 3.5),
         lambda a: torch.nn.functional.relu6(a * 3.5 + 3) / 6, ((4, 5),)),
    Case("hardtanh", lambda a: rg.hardtanh(a, -0.5, 0.8),
         lambda a: torch.nn.functional.hardtanh(a, -0.5, 0.8), ((4, 5),), domain="away0"),
    Case("relu6", lambda a: rg.relu6(a * 4), lambda a: torch.nn.functional.relu6(a * 4), ((4, 5),),
         domain="away0"),
    Case("tan", rg.tan, lambda a: a.tan(), ((3, 4),), domain="unit"),
    Case("sinh", rg.sinh, lambda a: a.sinh(), ((3, 4),)),
    Case("cosh", rg.cosh, lambda a: a.cosh(), ((3, 4),)),
    Case("arcsin", rg.arcsin, lambda a: a.asin(), ((3, 4),), domain="unit"),
    Case("arccos", rg.arccos, lambda a: a.acos(), ((3, 4),), domain="unit"),
    Case("arctan", rg.arctan, lambda a: a.atan(), ((3, 4),)),
    Case("arcsinh", rg.arcsinh, lambda a: a.asinh(), ((3, 4),)),
    Case("arccosh", lambda a: rg.acosh(a + 1.0), lambda a: (a + 1.0).acosh(), ((3, 4),),
         domain="positive"),
    Case("arctanh", rg.arctanh, lambda a: a.atanh(), ((3, 4),), domain="unit"),
    Case("log1p", rg.log1p, lambda a: a.log1p(), ((3, 4),), domain="positive"),
    Case("expm1", rg.expm1, lambda a: a.expm1(), ((3, 4),)),
    Case("log2", rg.log2, lambda a: a.log2(), ((3, 4),), domain="positive"),
    Case("log10", rg.log10, lambda a: a.log10(), ((3, 4),), domain="positive"),
    Case("exp2", rg.exp2, lambda a: torch.exp2(a), ((3, 4),)),
    Case("reciprocal", rg.reciprocal, lambda a: a.reciprocal(), ((3, 4),), domain="away0"),
    Case("rsqrt", rg.rsqrt, lambda a: a.rsqrt(), ((3, 4),), domain="positive"),
    # ---- reductions
    Case("sum_all", lambda a: a.sum(), lambda a: a.sum(), ((3, 4),)),
    Case("sum_axis", lambda a: a.sum(axis=1), lambda a: a.sum(dim=1), ((3, 4, 2),)),
    Case("sum_axes_keepdims", lambda a: a.sum(axis=(0, 2), keepdims=True),
         lambda a: a.sum(dim=(0, 2), keepdim=True), ((3, 4, 2),)),
    Case("mean", lambda a: a.mean(axis=0), lambda a: a.mean(dim=0), ((3, 4),)),
    Case("mean_all", lambda a: rg.mean(a), lambda a: a.mean(), ((3, 4),)),
    Case("var", lambda a: a.var(axis=1), lambda a: a.var(dim=1, unbiased=False), ((3, 5),)),
    Case("var_ddof1", lambda a: rg.var(a, ddof=1), lambda a: a.var(), ((3, 5),)),
    Case("std", lambda a: rg.std(a, axis=0), lambda a: a.std(dim=0, unbiased=False), ((4, 3),)),
    Case("max_all", lambda a: a.max(), lambda a: a.max(), ((3, 4),), domain="distinct"),
    Case("max_axis", lambda a: a.max(axis=1), lambda a: a.amax(dim=1), ((3, 4),), domain="distinct"),
    Case("min_axis_keepdims", lambda a: a.min(axis=0, keepdims=True),
         lambda a: a.amin(dim=0, keepdim=True), ((3, 4),), domain="distinct"),
    Case("prod", lambda a: a.prod(axis=1), lambda a: a.prod(dim=1), ((3, 4),), domain="away0"),
    Case("prod_all", lambda a: rg.prod(a), lambda a: a.prod(), ((2, 3),), domain="away0"),
    Case("logsumexp", lambda a: rg.logsumexp(a, axis=1), lambda a: a.logsumexp(dim=1), ((3, 4),)),
    Case("logsumexp_all", lambda a: rg.logsumexp(a), lambda a: a.flatten().logsumexp(dim=0), ((3, 4),)),
    Case("softmax", lambda a: rg.softmax(a, axis=1), lambda a: a.softmax(dim=1), ((3, 4),)),
    Case("softmax_axis0", lambda a: rg.softmax(a, axis=0), lambda a: a.softmax(dim=0), ((3, 4),)),
    Case("log_softmax", lambda a: rg.log_softmax(a, axis=-1), lambda a: a.log_softmax(dim=-1), ((3, 4),)),
    # ---- matrix products
    Case("matmul_2d", lambda a, b: a @ b, lambda a, b: a @ b, ((3, 4), (4, 2))),
    Case("matmul_vec_mat", lambda a, b: a @ b, lambda a, b: a @ b, ((4,), (4, 2))),
    Case("matmul_mat_vec", lambda a, b: a @ b, lambda a, b: a @ b, ((3, 4), (4,))),
    Case("matmul_vec_vec", lambda a, b: rg.dot(a, b), lambda a, b: a @ b, ((4,), (4,))),
    Case("matmul_batched", lambda a, b: rg.matmul(a, b), lambda a, b: a @ b, ((2, 3, 4), (4, 5))),
    Case("matmul_batched_bcast", lambda a, b: a @ b, lambda a, b: a @ b, ((2, 1, 3, 4), (3, 4, 2))),
    Case("dot", lambda a, b: rg.dot(a, b), lambda a, b: a @ b, ((3, 4), (4, 2))),
    # ---- movement
    Case("reshape", lambda a: a.reshape(4, -1), lambda a: a.reshape(4, -1), ((2, 3, 4),)),
    Case("transpose", lambda a: a.T, lambda a: a.permute(2, 1, 0), ((2, 3, 4),)),
    Case("transpose_axes", lambda a: rg.transpose(a, (1, 2, 0)), lambda a: a.permute(1, 2, 0), ((2, 3, 4),)),
    Case("swapaxes", lambda a: rg.swapaxes(a, 0, 2), lambda a: a.transpose(0, 2), ((2, 3, 4),)),
    Case("broadcast_to", lambda a: rg.broadcast_to(a, (2, 3, 4)), lambda a: a.expand(2, 3, 4), ((3, 1),)),
    Case("sum_to", lambda a: rg.sum_to(a, (3, 1)), lambda a: a.sum(dim=0).sum(dim=-1, keepdim=True),
         ((2, 3, 4),)),
    Case("expand_dims", lambda a: rg.expand_dims(a, 1), lambda a: a.unsqueeze(1), ((3, 4),)),
    Case("squeeze", lambda a: rg.squeeze(a, 1), lambda a: a.squeeze(1), ((3, 1, 4),)),
    Case("flatten", lambda a: a.flatten(), lambda a: a.flatten(), ((3, 4),)),
    # a float32 round trip: finite differences need a large eps to rise above its rounding
    Case("astype", lambda a: rg.astype(a, np.float32) * 1.0, lambda a: a.float() * 1.0, ((3, 4),),
         second_order=False, tol=dict(eps=1e-2, atol=1e-4)),
    Case("getitem_slice", lambda a: a[1:, ::2], lambda a: a[1:, ::2], ((3, 4),)),
    Case("getitem_int", lambda a: a[1], lambda a: a[1], ((3, 4),)),
    Case("getitem_newaxis", lambda a: a[None, ..., 0], lambda a: a[None, ..., 0], ((3, 4),)),
    Case("getitem_intarray", lambda a: a[IDX], lambda a: a[torch.as_tensor(IDX)], ((3, 4),)),
    Case("getitem_pairs", lambda a: a[np.arange(4), IDX[:4] % 3], lambda a: a[torch.arange(4), torch.as_tensor(IDX % 3)],
         ((4, 3),)),
    Case("getitem_mask", lambda a: a[MASK], lambda a: a[torch.as_tensor(MASK)], ((3, 4),)),
    Case("scatter_add", lambda g: rg.scatter_add(g, IDX, (3, 4)),
         lambda g: torch.zeros(3, 4, dtype=g.dtype).index_add(0, torch.as_tensor(IDX), g), ((4, 4),)),
    # (the compiler's fold of a sum of scatters: a base, a repeated index, a slice)
    Case("scatter_sum", lambda a, g, h: rg.ops.base.apply(
        rg.ops.shape._scatter_sum, a, g, h, idxs=((IDX,), (1, slice(1, 3))), shape=(3, 4),
        base=True),
         lambda a, g, h: a.index_add(0, torch.as_tensor(IDX), g)
         + torch.nn.functional.pad(h, (1, 1)).reshape(1, 4) * torch.tensor([[0.0], [1.0], [0.0]],
                                                                           dtype=h.dtype),
         ((3, 4), (4, 4), (2,))),
    Case("concatenate", lambda a, b: rg.concatenate([a, b], axis=1),
         lambda a, b: torch.cat([a, b], dim=1), ((3, 2), (3, 4))),
    Case("stack", lambda a, b: rg.stack([a, b], axis=1), lambda a, b: torch.stack([a, b], dim=1),
         ((3, 4), (3, 4))),
    Case("split", lambda a: rg.split(a, [1, 3], axis=1)[1] * 2 + rg.split(a, 2, axis=0)[0].sum(),
         lambda a: a[:, 1:3] * 2 + a[:2].sum(), ((4, 4),)),
    Case("pad", lambda a: rg.pad(a, ((1, 0), (2, 1))),
         lambda a: torch.nn.functional.pad(a, (2, 1, 1, 0)), ((3, 4),)),
    Case("softmax_cross_entropy", lambda z: rg.softmax_cross_entropy(z, np.array([2, 0, 1, 2])),
         lambda z: torch.nn.functional.cross_entropy(z, torch.tensor([2, 0, 1, 2]), reduction="none"),
         ((4, 3),)),
    Case("softmax_minus_onehot", lambda z: rg.softmax_minus_onehot(z, np.array([2, 0, 1, 2])),
         lambda z: z.softmax(dim=1) - torch.nn.functional.one_hot(torch.tensor([2, 0, 1, 2]), 3),
         ((4, 3),)),
    Case("binary_cross_entropy",
         lambda a, b: rg.nn.functional.binary_cross_entropy(rg.sigmoid(a), rg.sigmoid(b),
                                                            reduction="none"),
         lambda a, b: torch.nn.functional.binary_cross_entropy(a.sigmoid(), b.sigmoid(),
                                                              reduction="none"),
         ((3, 4), (3, 4))),
    # (times w, so that the gradient's own op, nll_loss_vjp, gets a cotangent that needs grad)
    Case("nll_loss", lambda z, w: rg.nn.functional.nll_loss(z, np.array([2, 0, 1, 2]), reduction="none") * w,
         lambda z, w: torch.nn.functional.nll_loss(z, torch.tensor([2, 0, 1, 2]), reduction="none") * w,
         ((4, 3), (4,))),
    # ---- composites that matter for training
    Case("mlp_tanh_ce", lambda x, w, b: -(rg.log_softmax(rg.tanh(x @ w + b), axis=1)[np.arange(3), [0, 2, 1]]).mean(),
         lambda x, w, b: torch.nn.functional.cross_entropy(torch.tanh(x @ w + b), torch.tensor([0, 2, 1])),
         ((3, 5), (5, 3), (3,))),
]

# ops without a gradient, checked forward-only against NumPy
NONDIFF = {
    "stop_gradient": (rg.ops.stop_gradient, lambda a: a),
    "sign": (rg.sign, np.sign), "eq": (rg.equal, np.equal), "ne": (rg.not_equal, np.not_equal),
    "lt": (rg.less, np.less), "le": (rg.less_equal, np.less_equal), "gt": (rg.greater, np.greater),
    "ge": (rg.greater_equal, np.greater_equal), "argmax": (lambda a: rg.argmax(a, axis=1),
                                                         lambda a: np.argmax(a, axis=1)),
    "argmin": (lambda a: rg.argmin(a, axis=0), lambda a: np.argmin(a, axis=0)),
    "logical_and": (lambda a, b: rg.logical_and(a > 0, b > 0), lambda a, b: (a > 0) & (b > 0)),
    "logical_or": (lambda a, b: rg.logical_or(a > 0, b > 0), lambda a, b: (a > 0) | (b > 0)),
    "logical_not": (lambda a: rg.logical_not(a > 0), lambda a: ~(a > 0)),
    "bernoulli_mask": (lambda a: rg.bernoulli_mask(a, 0.3, np.random.default_rng(0)),
                       lambda a: (np.random.default_rng(0).random(a.shape) >= 0.3) / 0.7),
    "ceil": (rg.ceil, np.ceil), "trunc": (rg.trunc, np.trunc),
    "isnan": (lambda a: rg.isnan(rg.where(a > 0, a, np.nan)), lambda a: ~(a > 0)),
    "isinf": (lambda a: rg.isinf(rg.where(a > 0, a, -np.inf)), lambda a: ~(a > 0)),
    "isfinite": (rg.isfinite, np.isfinite), "floor": (rg.floor, np.floor), "round": (rg.round, np.round),
    "class_labels": (lambda a: rg.ops.apply(rg.ops.REGISTRY["class_labels"], rg.argmax(a, axis=1),
                                            classes=4, who="t"), lambda a: np.argmax(a, axis=1)),
}


# the op families of issue 12, one table file each (CASES: a list of Case; NONDIFF: as above)
for _family in ("conv", "nn", "index", "linalg"):
    _module = __import__(f"cases_{_family}")
    CASES += _module.CASES
    NONDIFF.update(_module.NONDIFF)
del _family, _module


def ops_in_graph(t, names):
    """Add to ``names`` the op of every node in the graph that computed ``t``."""
    stack, visited = [t], set()
    while stack:
        n = stack.pop()
        if isinstance(n, rg.Tensor) and n._op is not None and id(n) not in visited:
            visited.add(id(n))
            names.add(n._op.name)
            stack.extend(n._inputs or ())
