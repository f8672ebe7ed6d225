"""Export to ONNX: ``rg.onnx.export(model_or_fn, example_input, "model.onnx")``.

The function (or the model's forward, in eval mode) is traced by ``rg.compile``'s
tracer; the optimised ``Program`` is then written op by op as ONNX nodes, by the one
table ``EMITTERS`` (op name -> emitter). Captured tensors (model parameters and buffers)
become initializers. An op without an entry is refused, naming it and its node.

Dynamic batch: axis 0 of every input is the symbolic ``batch``. The function is traced
at two batch sizes; a dimension that differs between the two traces is a multiple of the
batch, and every reshape target, broadcast shape and batch-sized constant (an LSTM's
zero initial state) is computed from the input's run-time shape instead of the traced
one -- so a traced ``reshape(x, (64, 400))`` is exported as ``Reshape(x, [-1, 400])``.
Needs ``onnx`` (``pip install 'retrograd[onnx]'``); ``import retrograd`` does not import it.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import RetrogradError

OPSET = 17
# opsets the table is written for (ReduceSum's axes an input, ReduceMax's an attribute:
# 13 to 17), with the IR version of each
_IR_VERSION = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8}
_I64_MAX, _I64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min


def _onnx():
    try:
        import onnx
    except ImportError:
        raise RetrogradError("rg.onnx.export needs the onnx package: "
                             "pip install 'retrograd[onnx]'") from None
    return onnx


# ---------------------------------------------------------------- the export context

class _Export:
    """One export in progress: ONNX nodes and initializers made on demand from the
    Program's nodes (an output's inputs first), so nodes no output needs (the argmax
    indices of a max pool that became MaxPool) are never written."""

    def __init__(self, prog, prog2, batches, names):
        self.onnx = _onnx()
        self.prog, self.batches, self.names = prog, batches, names
        self.twin = dict(zip(map(id, prog.nodes), prog2.nodes)) if prog2 is not None else None
        self.nodes, self.inits, self.done, self.n_tmp = [], [], {}, 0
        self.batch_name = None          # the run-time batch size, a (1,) int64 tensor

    # ---- names and values
    def fresh(self, hint="t"):
        self.n_tmp += 1
        return f"{hint}_{self.n_tmp}"

    def x(self, n, dtype=None):
        """The ONNX name of node ``n``'s value, emitting it (and what it needs) first.
        A Python-number constant becomes a scalar of ``dtype``."""
        if n.is_scalar_const:
            self._same_value(n)
            return self.const(np.asarray(n.value, dtype=dtype))
        key = id(n)
        if key not in self.done:
            self.done[key] = self._emit(n)
        return self.done[key]

    def const(self, value, hint="c"):
        name = self.fresh(hint)
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def ints(self, values):
        return self.const(np.asarray(values, np.int64), "shape")

    def op(self, op_type, inputs, outputs=1, **attrs):
        """Add one ONNX node; returns its output name (or names, for ``outputs`` > 1)."""
        outs = [self.fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0] if outputs == 1 else outs

    def _emit(self, n):
        if n.kind == "ext":
            return self.names[id(n)]
        if n.kind == "const":
            return self._constant(n)
        rule = EMITTERS.get(n.op.name)
        if rule is None:
            raise RetrogradError(f"rg.onnx.export: no ONNX mapping for op '{n.op.name}' "
                                 f"(node v{n.id}, shape {n.shape})")
        self._same_params(n)
        return rule(self, n)

    # ---- the batch size
    def batch_dims(self, n):
        """{axis: k} for the axes of ``n`` that are k times the batch size."""
        if self.twin is None:
            return {}
        other, (b1, b2) = self.twin[id(n)], self.batches
        dims = {}
        for axis, (d1, d2) in enumerate(zip(n.shape, other.shape)):
            if d1 != d2:
                if d1 % b1 or d1 * b2 != d2 * b1:
                    raise RetrogradError(
                        f"rg.onnx.export: axis {axis} of node v{n.id} ({_what(n)}, shape "
                        f"{n.shape}) changes with the batch size but is not a multiple of it; "
                        "export with dynamic_batch=False")
                dims[axis] = d1 // b1
        return dims

    def _same_params(self, n):
        if self.twin is None or n.op.name in _SHAPE_PARAMS:
            return
        from .graph.program import _freeze
        if _freeze(n.params) != _freeze(self.twin[id(n)].params):
            raise RetrogradError(f"rg.onnx.export: op '{n.op.name}' (node v{n.id}) has "
                                 "parameters that depend on the batch size; export with "
                                 "dynamic_batch=False")

    def shape_of(self, n, infer=True):
        """A 1-D int64 tensor of ``n``'s shape, its batch-sized axes from the run-time
        batch; with ``infer`` one such axis is left to Reshape as -1 (Expand needs all)."""
        dims = self.batch_dims(n)
        if not dims:
            return self.ints(n.shape)
        if infer and len(dims) == 1:
            return self.ints([-1 if a in dims else d for a, d in enumerate(n.shape)])
        parts = [self.op("Mul", [self.batch(), self.ints([dims[a]])]) if a in dims
                 else self.ints([d]) for a, d in enumerate(n.shape)]
        return self.op("Concat", parts, axis=0)

    def batch(self):
        if self.batch_name is None:
            first = self.names[id(self.prog.externals[0])]
            self.batch_name = self.op("Slice", [self.op("Shape", [first]), self.ints([0]),
                                                self.ints([1])])
        return self.batch_name

    def _same_value(self, n):
        """A constant that is not the same in both traces (1/N of a mean over the batch
        axis) would be wrong at any other batch size: refused."""
        if self.twin is None:
            return
        a, b = np.asarray(n.value), np.asarray(self.twin[id(n)].value)
        if a.shape == b.shape and not np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
            raise RetrogradError(f"rg.onnx.export: constant v{n.id} (shape {n.shape}) depends "
                                 "on the batch size (a mean over the batch axis?); export with "
                                 "dynamic_batch=False")

    def _constant(self, n):
        value = np.asarray(n.value)
        self._same_value(n)
        if not self.batch_dims(n):
            return self.const(value)
        flat = value.reshape(-1)
        if flat.size and not np.all(flat == flat[0]):
            raise RetrogradError(f"rg.onnx.export: constant v{n.id} (shape {n.shape}) has "
                                 "the batch size in its shape but is not one repeated value; "
                                 "export with dynamic_batch=False")
        fill = self.const(np.asarray(flat[0] if flat.size else 0, value.dtype))
        return self.op("Expand", [fill, self.shape_of(n, infer=False)])


def _what(n):
    return n.op.name if n.kind == "op" else n.kind


# ---------------------------------------------------------------- emitters

def _operand_dtype(n):
    """The dtype a Python-number operand of ``n`` takes: that of its array operands
    (a Python scalar is weak, as in NumPy)."""
    for i in n.inputs:
        if not i.is_scalar_const:
            return i.dtype
    return n.dtype


def _inputs(e, n, cast=True):
    """Names of ``n``'s inputs, scalars typed like the other operands, and every input
    cast to the output's dtype when ``cast`` (int / int divides to float, as NumPy)."""
    dt = _operand_dtype(n)
    names = []
    for i in n.inputs:
        name = e.x(i, dt)
        src = dt if i.is_scalar_const else i.dtype
        if cast and src != n.dtype:
            name = e.op("Cast", [name], to=_onnx_type(n.dtype))
        names.append(name)
    return names


def _onnx_type(dtype):
    return _onnx().helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _simple(op_type, cast=True, **attrs):
    return lambda e, n: e.op(op_type, _inputs(e, n, cast), **attrs)


def _compare(op_type, negate=False):
    def emit(e, n):
        # ONNX compares operands of one type: NumPy's common type of the two
        common = np.result_type(*[i.dtype for i in n.inputs if not i.is_scalar_const])
        out = e.op(op_type, [_cast_to(e, i, common) for i in n.inputs])
        return e.op("Not", [out]) if negate else out
    return emit


def _scalar(e, n, value):
    return e.const(np.asarray(value, n.dtype))


def _leaky(e, n):
    return e.op("LeakyRelu", [e.x(n.inputs[0])], alpha=float(n.params["negative_slope"]))


def _gelu(e, n):
    x = e.x(n.inputs[0])
    half_x = e.op("Mul", [x, _scalar(e, n, 0.5)])
    if n.params["approximate"] == "tanh":
        x3 = e.op("Mul", [e.op("Mul", [x, x]), x])
        inner = e.op("Add", [x, e.op("Mul", [x3, _scalar(e, n, 0.044715)])])
        t = e.op("Tanh", [e.op("Mul", [inner, _scalar(e, n, math.sqrt(2 / math.pi))])])
    else:
        t = e.op("Erf", [e.op("Mul", [x, _scalar(e, n, 1 / math.sqrt(2))])])
    return e.op("Mul", [half_x, e.op("Add", [t, _scalar(e, n, 1.0)])])


def _silu(e, n):
    x = e.x(n.inputs[0])
    return e.op("Mul", [x, e.op("Sigmoid", [x])])


def _mish(e, n):
    x = e.x(n.inputs[0])
    return e.op("Mul", [x, e.op("Tanh", [e.op("Softplus", [x])])])


def _logsigmoid(e, n):
    return e.op("Neg", [e.op("Softplus", [e.op("Neg", [e.x(n.inputs[0])])])])


def _rsqrt(e, n):
    return e.op("Reciprocal", [e.op("Sqrt", [e.x(n.inputs[0])])])


def _log_base(base):
    return lambda e, n: e.op("Div", [e.op("Log", [e.x(n.inputs[0])]),
                                     _scalar(e, n, math.log(base))])


def _pow_scalar(e, n):
    return e.op("Pow", [e.x(n.inputs[0]), _scalar(e, n, n.params["p"])])


def _clip(e, n):
    x = e.x(n.inputs[0])
    for key, op_type in (("lo", "Max"), ("hi", "Min")):
        bound = n.params[key]
        if bound is not None:
            x = e.op(op_type, [x, e.const(np.asarray(bound, n.dtype))])
    return x


def _hardtanh(e, n):
    return e.op("Clip", [e.x(n.inputs[0]), _scalar(e, n, n.params["lo"]),
                         _scalar(e, n, n.params["hi"])])


def _hardsigmoid(e, n):
    return e.op("HardSigmoid", [e.x(n.inputs[0])], alpha=1 / 6, beta=0.5)


def _hardswish(e, n):
    x = e.x(n.inputs[0])
    return e.op("Mul", [x, e.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)])


def _elu(e, n):
    p = n.params
    x = e.op("Mul", [e.x(n.inputs[0]), _scalar(e, n, p["input_scale"])])
    return e.op("Mul", [e.op("Elu", [x], alpha=float(p["alpha"])), _scalar(e, n, p["scale"])])


def _softplus(e, n):
    # log(1 + e^x) written stably, as NumPy's logaddexp(0, x): max(x, 0) + log1p(e^-|x|)
    x = e.x(n.inputs[0])
    zero = _scalar(e, n, 0.0)
    tail = e.op("Log", [e.op("Add", [_scalar(e, n, 1.0),
                                     e.op("Exp", [e.op("Neg", [e.op("Abs", [x])])])])])
    return e.op("Add", [e.op("Max", [x, zero]), tail])


def _where(e, n):
    c, a, b = n.inputs
    dt = n.dtype
    return e.op("Where", [e.x(c, np.bool_)] + [_cast_to(e, i, dt) for i in (a, b)])


def _cast_to(e, i, dtype):
    name = e.x(i, dtype)
    if not i.is_scalar_const and i.dtype != dtype:
        name = e.op("Cast", [name], to=_onnx_type(dtype))
    return name


# ---- reductions and normalisations

def _axes(n):
    axis = n.params.get("axis")
    ndim = len(n.inputs[0].shape)
    if axis is None:
        return list(range(ndim))
    return [int(a) % max(ndim, 1) for a in np.atleast_1d(axis)]


def _reduce(op_type, axes_input=False):
    def emit(e, n):
        x, axes = _cast_to(e, n.inputs[0], n.dtype), _axes(n)
        keep = int(bool(n.params.get("keepdims", False)))
        if not axes:
            return e.op("Identity", [x])
        if axes_input:               # ReduceSum takes the axes as an input from opset 13
            return e.op(op_type, [x, e.ints(axes)], keepdims=keep)
        return e.op(op_type, [x], axes=axes, keepdims=keep)
    return emit


def _one_axis(op_type):
    def emit(e, n):
        (axis,) = _axes(n)
        return e.op(op_type, [e.x(n.inputs[0])], axis=axis)
    return emit


def _arg(op_type):
    def emit(e, n):
        x, axis = e.x(n.inputs[0]), n.params["axis"]
        keep = int(bool(n.params["keepdims"]))
        if axis is None:
            x, axis = e.op("Reshape", [x, e.ints([-1])]), 0
            out = e.op(op_type, [x], axis=0, keepdims=keep)
            return e.op("Reshape", [out, e.ints([1] * len(n.inputs[0].shape))]) if keep else \
                e.op("Reshape", [out, e.ints([])])
        return e.op(op_type, [x], axis=int(axis), keepdims=keep)
    return emit


# ---- shapes

def _reshape(e, n):
    return e.op("Reshape", [e.x(n.inputs[0]), e.shape_of(n)])


def _broadcast(e, n):
    return e.op("Expand", [e.x(n.inputs[0]), e.shape_of(n, infer=False)])


def _transpose(e, n):
    conv = _conv_pattern(n)
    if conv is not None:
        return _conv(e, *conv)
    axes = n.params["axes"]
    perm = list(range(len(n.shape)))[::-1] if axes is None else [int(a) for a in axes]
    return e.op("Transpose", [e.x(n.inputs[0])], perm=perm)


def _concatenate(e, n):
    axis = int(n.params["axis"]) % len(n.shape)
    return e.op("Concat", [_cast_to(e, i, n.dtype) for i in n.inputs], axis=axis)


def _stack(e, n):
    axis = int(n.params["axis"]) % len(n.shape)
    parts = [e.op("Unsqueeze", [_cast_to(e, i, n.dtype), e.ints([axis])]) for i in n.inputs]
    return e.op("Concat", parts, axis=axis)


def _getitem(e, n):
    """Basic indexing (ints, slices, None, Ellipsis) as Slice, Squeeze and Unsqueeze;
    one integer array (a list or ndarray of ints) as Gather."""
    x, shape = e.x(n.inputs[0]), n.inputs[0].shape
    items = _index_items(n, len(shape))
    starts, ends, axes, steps, squeeze, unsqueeze = [], [], [], [], [], []
    axis, out_axis = 0, 0
    for it in items:
        if it is None:
            unsqueeze.append(out_axis)
            out_axis += 1
        elif isinstance(it, slice):
            step = 1 if it.step is None else int(it.step)
            if (it.start, it.stop, step) != (None, None, 1):
                starts.append(_bound(it.start, step, True))
                ends.append(_bound(it.stop, step, False))
                axes.append(axis)
                steps.append(step)
            axis += 1
            out_axis += 1
        elif isinstance(it, (int, np.integer)):
            i = int(it)
            starts.append(i)
            ends.append(i + 1 if i != -1 else _I64_MAX)
            axes.append(axis)
            steps.append(1)
            squeeze.append(axis)
            axis += 1
        else:
            return _gather_index(e, n, items)
    if axes:
        x = e.op("Slice", [x, e.ints(starts), e.ints(ends), e.ints(axes), e.ints(steps)])
    if squeeze:
        x = e.op("Squeeze", [x, e.ints(squeeze)])
    if unsqueeze:
        x = e.op("Unsqueeze", [x, e.ints(unsqueeze)])
    return x if (axes or squeeze or unsqueeze) else e.op("Identity", [x])


def _index_items(n, ndim):
    idx = n.params["idx"]
    items = list(idx) if isinstance(idx, tuple) else [idx]
    if any(it is Ellipsis for it in items):
        k = items.index(Ellipsis)
        used = sum(1 for it in items if it is not None and it is not Ellipsis)
        items[k:k + 1] = [slice(None)] * (ndim - used)
    return items


def _bound(v, step, start):
    if v is None:                # ONNX clamps as Python does: these mean "from the end"
        return (0 if step > 0 else _I64_MAX) if start else (_I64_MAX if step > 0 else _I64_MIN)
    return int(v)


def _gather_index(e, n, items):
    """x[..., ints, ...]: exactly one integer-array index and full slices elsewhere."""
    arrays = [k for k, it in enumerate(items) if not isinstance(it, slice)]
    plain = all(isinstance(it, slice) and it == slice(None) for k, it in enumerate(items)
                if k not in arrays)
    idx = np.asarray(items[arrays[0]]) if len(arrays) == 1 else None
    if idx is None or not plain or idx.dtype.kind not in "iu":
        raise RetrogradError(f"rg.onnx.export: no ONNX mapping for op 'getitem' with index "
                             f"{n.params['idx']!r} (node v{n.id}, shape {n.shape}): one integer "
                             "array index with full slices, or basic indexing, is supported")
    return e.op("Gather", [e.x(n.inputs[0]), e.const(idx.astype(np.int64))], axis=arrays[0])


def _pad(e, n):
    widths = n.params["pad_width"]
    pads = [int(lo) for lo, _ in widths] + [int(hi) for _, hi in widths]
    value = np.asarray(n.params["constant_values"], n.dtype)
    return e.op("Pad", [e.x(n.inputs[0]), e.ints(pads), e.const(value)], mode="constant")


# ---- indexing

def _embedding(e, n):
    weight, ids = n.inputs
    return e.op("Gather", [e.x(weight), _cast_to(e, ids, np.int64)], axis=0)


def _take(e, n):
    x, idx = n.inputs
    axis = n.params["axis"]
    src = e.x(x)
    if axis is None:
        src, axis = e.op("Reshape", [src, e.ints([-1])]), 0
    return e.op("Gather", [src, _cast_to(e, idx, np.int64)], axis=int(axis))


def _gather(e, n):
    x, idx = n.inputs
    return e.op("GatherElements", [e.x(x), _cast_to(e, idx, np.int64)],
                axis=int(n.params["axis"]) % len(x.shape))


# ---- convolution and pooling

def _im2col(e, n):
    """im2col as Pad, one Gather of precomputed window positions per plane, Transpose and
    Reshape: rows (c, i, j), columns (oh, ow, n), exactly the op's layout."""
    p = n.params
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = (p["kernel_size"], p["dilation"], p["padding"],
                                              p["stride"])
    _, c, h, w = n.inputs[0].shape
    hp, wp = h + 2 * ph, w + 2 * pw
    oh, ow = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    x = e.x(n.inputs[0])
    if ph or pw:
        x = e.op("Pad", [x, e.ints([0, 0, ph, pw, 0, 0, ph, pw])], mode="constant")
    rows = np.arange(kh)[:, None] * dh, np.arange(kw)[None, :] * dw       # window offsets
    origin = (np.arange(oh)[:, None] * sh) * wp + np.arange(ow)[None, :] * sw
    offset = (rows[0] * wp + rows[1]).reshape(-1)
    index = (offset[:, None] + origin.reshape(-1)[None, :]).astype(np.int64)
    planes = e.op("Reshape", [x, e.ints([0, 0, hp * wp])])               # (N, C, Hp·Wp)
    cols = e.op("Gather", [planes, e.const(index)], axis=2)              # (N, C, kk, oh·ow)
    cols = e.op("Transpose", [cols], perm=[1, 2, 3, 0])                  # (C, kk, oh·ow, N)
    return e.op("Reshape", [cols, e.ints([c * kh * kw, -1])])


def _conv_pattern(n):
    """conv2d as retrograd lowers it -- transpose(reshape(matmul(W (O, C·kh·kw),
    im2col(x)), (O, oh, ow, N)), (3, 0, 1, 2)) -- as (x, W, im2col's params), else None."""
    if tuple(n.params["axes"] or ()) != (3, 0, 1, 2):
        return None
    r = n.inputs[0]
    m = r.inputs[0] if r.kind == "op" and r.op.name == "reshape" else None
    if m is None or m.kind != "op" or m.op.name != "matmul":
        return None
    w, cols = m.inputs
    if cols.kind != "op" or cols.op.name != "im2col" or len(w.shape) != 2:
        return None
    x = cols.inputs[0]
    if r.shape[0] != w.shape[0] or r.shape[3] != x.shape[0] or n.shape[2:] != r.shape[1:3]:
        return None
    return x, w, cols.params


def _conv(e, x, w, p):
    """The pattern above as one ONNX Conv (its weight (O, C, kh, kw), as PyTorch's)."""
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = (p["kernel_size"], p["dilation"], p["padding"],
                                              p["stride"])
    kernel = e.op("Reshape", [e.x(w), e.ints([w.shape[0], x.shape[1], kh, kw])])
    return e.op("Conv", [e.x(x), kernel], kernel_shape=[kh, kw], strides=[sh, sw],
                pads=[ph, pw, ph, pw], dilations=[dh, dw])


def _maxpool(e, x_node, p, indices=False):
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (p["kernel_size"], p["stride"], p["padding"],
                                              p["dilation"])
    h, w = x_node.shape[2:]
    floor = [(m + 2 * q - d * (k - 1) - 1) // s + 1
             for m, q, d, k, s in ((h, ph, dh, kh, sh), (w, pw, dw, kw, sw))]
    ceil = int(list(p["out_size"]) != floor)
    return e.op("MaxPool", [e.x(x_node)], outputs=2 if indices else 1, kernel_shape=[kh, kw],
                strides=[sh, sw], pads=[ph, pw, ph, pw], dilations=[dh, dw], ceil_mode=ceil)


def _max_pool_indices(e, n):
    """The flat index into H·W of each window's maximum: MaxPool's indices (into
    N·C·H·W) modulo H·W."""
    _, idx = _maxpool(e, n.inputs[0], n.params, indices=True)
    h, w = n.inputs[0].shape[2:]
    flat = e.op("Mod", [idx, e.ints(h * w)])
    return e.op("Cast", [flat], to=_onnx_type(n.dtype))


def _max_pool(e, n):
    """max_pool2d, the windows' maxima: MaxPool. (The ops of its derivatives -- argmax
    offsets, their scatter and gather -- have no mapping: a model's forward has none.)"""
    return _maxpool(e, n.inputs[0], n.params)


# ---- recurrence

def _lstm_scan(e, n):
    """lstm_scan as an ONNX Scan over time whose body is the op's own step: a = xw_t +
    h W_hh; i, f, g, o = σ, σ, tanh, σ of a's blocks; c = f·c + i·g; h = o·tanh(c); each
    step's output [h, c, i, f, g, o], in time order (reverse: the steps run backwards,
    the outputs still stored at their own t)."""
    helper = e.onnx.helper
    xw, h0, c0, w_hh = n.inputs
    hidden = w_hh.shape[0]
    ty = _onnx_type(n.dtype)
    tag = f"lstm{n.id}"
    body = _Body(e, tag)
    a = body.op("Add", [body.op("MatMul", [f"{tag}_h", e.x(w_hh)]), f"{tag}_x"])
    blocks = body.op("Split", [a, body.ints([hidden] * 4)], outputs=4, axis=1)
    i, f, o = (body.op("Sigmoid", [blocks[k]]) for k in (0, 1, 3))
    g = body.op("Tanh", [blocks[2]])
    c = body.op("Add", [body.op("Mul", [f, f"{tag}_c"]), body.op("Mul", [i, g])])
    h = body.op("Mul", [o, body.op("Tanh", [c])])
    y = body.op("Concat", [h, c, i, f, g, o], axis=1)
    outs = [body.op("Identity", [v]) for v in (h, c, y)]
    graph = helper.make_graph(
        body.nodes, tag, [helper.make_tensor_value_info(f"{tag}_{k}", ty, None)
                          for k in ("h", "c", "x")],
        [helper.make_tensor_value_info(v, ty, None) for v in outs], initializer=body.inits)
    rev = int(bool(n.params["reverse"]))
    _, _, ys = e.op("Scan", [e.x(h0), e.x(c0), e.x(xw)], outputs=3, body=graph,
                    num_scan_inputs=1, scan_input_directions=[rev],
                    scan_output_directions=[rev])
    return ys


class _Body:
    """A subgraph's nodes (a Scan body), named apart from the outer graph's; it reads
    the outer graph's values (W_hh) by name, as ONNX allows."""

    def __init__(self, outer, tag):
        self.outer, self.tag, self.nodes, self.inits, self.k = outer, tag, [], [], 0

    def op(self, op_type, inputs, outputs=1, **attrs):
        outs = []
        for _ in range(outputs):
            self.k += 1
            outs.append(f"{self.tag}_{op_type.lower()}{self.k}")
        self.nodes.append(self.outer.onnx.helper.make_node(op_type, inputs, outs, **attrs))
        return outs[0] if outputs == 1 else outs

    def ints(self, values):
        self.k += 1
        name = f"{self.tag}_shape{self.k}"
        self.inits.append(self.outer.onnx.numpy_helper.from_array(np.asarray(values, np.int64),
                                                                   name))
        return name


# ---------------------------------------------------------------- the table

# ops whose parameters name an output shape (computed from the run-time batch instead)
_SHAPE_PARAMS = {"reshape", "broadcast_to"}

_UNARY = {"neg": "Neg", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "abs": "Abs",
          "sin": "Sin", "cos": "Cos", "tan": "Tan", "tanh": "Tanh", "sigmoid": "Sigmoid",
          "relu": "Relu", "sinh": "Sinh", "cosh": "Cosh", "arcsin": "Asin", "arccos": "Acos",
          "arctan": "Atan", "arcsinh": "Asinh", "arccosh": "Acosh", "arctanh": "Atanh",
          "reciprocal": "Reciprocal", "erf": "Erf", "floor": "Floor", "ceil": "Ceil",
          "sign": "Sign", "softsign": "Softsign", "stop_gradient": "Identity",
          "round": "Round"}
_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow",
           "maximum": "Max", "minimum": "Min", "matmul": "MatMul"}

EMITTERS = {
    **{name: _simple(op_type) for name, op_type in {**_UNARY, **_BINARY}.items()},
    "eq": _compare("Equal"), "ne": _compare("Equal", negate=True), "lt": _compare("Less"),
    "le": _compare("LessOrEqual"), "gt": _compare("Greater"), "ge": _compare("GreaterOrEqual"),
    "logical_and": _simple("And", cast=False), "logical_or": _simple("Or", cast=False),
    "logical_not": _simple("Not", cast=False), "isnan": _simple("IsNaN", cast=False),
    "astype": lambda e, n: e.op("Cast", [e.x(n.inputs[0])], to=_onnx_type(n.dtype)),
    "pow_scalar": _pow_scalar, "leaky_relu": _leaky, "gelu": _gelu, "silu": _silu,
    "mish": _mish, "logsigmoid": _logsigmoid, "softplus": _softplus, "rsqrt": _rsqrt,
    "log2": _log_base(2), "log10": _log_base(10), "clip": _clip, "hardtanh": _hardtanh,
    "hardsigmoid": _hardsigmoid, "hardswish": _hardswish, "elu": _elu, "where": _where,
    "sum": _reduce("ReduceSum", axes_input=True), "max": _reduce("ReduceMax"),
    "min": _reduce("ReduceMin"), "prod": _reduce("ReduceProd"),
    "logsumexp": _reduce("ReduceLogSumExp"),
    "softmax": _one_axis("Softmax"), "log_softmax": _one_axis("LogSoftmax"),
    "argmax": _arg("ArgMax"), "argmin": _arg("ArgMin"),
    "reshape": _reshape, "broadcast_to": _broadcast, "transpose": _transpose,
    "concatenate": _concatenate, "stack": _stack, "getitem": _getitem, "pad": _pad,
    "embedding": _embedding, "take": _take, "gather": _gather,
    "im2col": _im2col, "max_pool2d_indices": _max_pool_indices, "max_pool2d": _max_pool,
    "lstm_scan": _lstm_scan,
}


# ---------------------------------------------------------------- tracing and writing

def _as_inputs(example_input):
    items = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    from .tensor import Tensor
    arrays = []
    for a in items:
        arr = a._data if isinstance(a, Tensor) else np.asarray(a)
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
            raise RetrogradError(f"rg.onnx.export: example inputs must be arrays or tensors "
                                 f"of numbers, got {type(a).__name__}")
        arrays.append(arr)
    return arrays


def _resized(arrays, batch):
    """The example inputs with ``batch`` rows (repeating theirs): a second trace."""
    out = []
    for a in arrays:
        if a.ndim == 0:
            raise RetrogradError("rg.onnx.export: dynamic_batch needs every input to have a "
                                 "batch axis (axis 0); a 0-d input has none -- export with "
                                 "dynamic_batch=False")
        out.append(np.resize(a, (batch,) + a.shape[1:]).astype(a.dtype))
    return out


def _trace(fn, arrays, passes):
    from .graph.api import Compiled
    c = Compiled(fn, passes)
    entry = c._entry(c.signature(tuple(arrays)), tuple(arrays))
    if "eager" in entry:
        raise RetrogradError("rg.onnx.export: the function could not be traced")
    prog = entry["exe"].program
    n_out = len(prog.outputs) - len(entry["state"])      # not the buffer updates
    return prog, n_out


def _program(fn, arrays, dynamic):
    from .graph.api import PASSES
    if not dynamic:
        prog, n_out = _trace(fn, arrays, PASSES)
        return prog, None, None, n_out
    # CSE merges small equal constants (<= 64 values) only: it could pair the nodes of the
    # two traces differently, so both traces are optimised without it
    passes = tuple(p for p in PASSES if p != "cse")
    b1 = arrays[0].shape[0]
    b2 = b1 + 2
    prog, n_out = _trace(fn, arrays, passes)
    prog2, _ = _trace(fn, _resized(arrays, b2), passes)
    if [(_what(a), a.kind) for a in prog.nodes] != [(_what(b), b.kind) for b in prog2.nodes]:
        raise RetrogradError("rg.onnx.export: the traced program changes with the batch size "
                             f"(traced at {b1} and {b2}); export with dynamic_batch=False")
    return prog, prog2, (b1, b2), n_out


def _names(prog, n_inputs, input_names, param_names):
    names, seen = {}, set()
    for k, n in enumerate(prog.externals):
        if k < n_inputs:
            name = input_names[k]
        else:
            base = param_names.get(id(n.source)) or n.name or "param"
            name, j = base, 1
            while name in seen:
                j += 1
                name = f"{base}_{j}"
        seen.add(name)
        names[id(n)] = name
    return names


def _default_names(given, count, stem):
    if given is None:
        return [stem] if count == 1 else [f"{stem}_{k}" for k in range(count)]
    given = [given] if isinstance(given, str) else list(given)
    if len(given) != count:
        raise RetrogradError(f"rg.onnx.export: {len(given)} {stem} names for {count} {stem}s")
    return given


def build(model_or_fn, example_input, dynamic_batch=True, opset=OPSET, input_names=None,
          output_names=None):
    """The ONNX ModelProto of ``model_or_fn`` (see ``export``), not written anywhere."""
    onnx = _onnx()
    from .nn import Module
    if opset not in _IR_VERSION:
        raise RetrogradError(f"rg.onnx.export: opset {opset} is not supported; the mapping is "
                             f"written for opsets {min(_IR_VERSION)} to {max(_IR_VERSION)}")
    arrays = _as_inputs(example_input)
    model = model_or_fn if isinstance(model_or_fn, Module) else None
    params = {}
    if model is not None:
        params = {id(t): name for name, t in [*model.named_parameters(), *model.named_buffers()]}
        modes = [m.training for m in model.modules()]
        model.eval()                # deployment: dropout off, running statistics (PyTorch)
    try:
        prog, prog2, batches, n_out = _program(model_or_fn, arrays, dynamic_batch)
    finally:
        if model is not None:
            for m, mode in zip(model.modules(), modes):
                m.training = mode
    in_names = _default_names(input_names, len(arrays), "input")
    out_names = _default_names(output_names, n_out, "output")
    e = _Export(prog, prog2, batches, _names(prog, len(arrays), in_names, params))
    results = [e.x(o, o.dtype or np.float32) for o in prog.outputs[:n_out]]
    for r, name in zip(results, out_names):
        e.nodes.append(onnx.helper.make_node("Identity", [r], [name]))
    graph = _graph(e, prog, prog2, arrays, in_names, out_names, n_out)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
                                   producer_name="retrograd")
    # the IR version of the opset, not the newest the onnx package knows: runtimes accept
    # files up to the IR version they were built for (onnxruntime 1.17 reads up to 9)
    proto.ir_version = _IR_VERSION[opset]
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _graph(e, prog, prog2, arrays, in_names, out_names, n_out):
    helper = e.onnx.helper
    n_in = len(arrays)

    def info(name, n):
        dims = e.batch_dims(n) if prog2 is not None else {}
        shape = [d if a not in dims else "batch" if dims[a] == 1 else f"{dims[a]}*batch"
                 for a, d in enumerate(n.shape)]
        return helper.make_tensor_value_info(name, _onnx_type(n.dtype or np.float32), shape)

    inputs = [info(name, n) for name, n in zip(in_names, prog.externals[:n_in])]
    outputs = [info(name, n) for name, n in zip(out_names, prog.outputs[:n_out])]
    for n in prog.externals[n_in:]:
        source = n.source
        data = source._data if hasattr(source, "_data") else np.asarray(source)
        e.inits.append(e.onnx.numpy_helper.from_array(np.ascontiguousarray(data),
                                                      e.names[id(n)]))
    return helper.make_graph(e.nodes, "retrograd", inputs, outputs, initializer=e.inits)


def export(model_or_fn, example_input, path, dynamic_batch=True, opset=OPSET,
           input_names=None, output_names=None):
    """Write ``model_or_fn`` -- an ``nn.Module`` (exported in eval mode, its parameters
    and buffers as initializers) or a function of tensors -- as an ONNX model to ``path``
    (atomically: complete or not at all). ``example_input``: an array or tensor, or a
    tuple of them, one per argument. ``dynamic_batch``: axis 0 of every input (and of
    the outputs) is the symbolic ``batch``, so the file runs at any batch size. The file
    passes ``onnx.checker``. Returns the ModelProto."""
    from .io import atomic_write
    proto = build(model_or_fn, example_input, dynamic_batch, opset, input_names, output_names)
    with atomic_write(path) as f:
        f.write(proto.SerializeToString())
    return proto
