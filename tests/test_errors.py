"""Errors that explain (issue 6, item 1): every mistake a user makes with shapes or
dtypes raises the ``rg.RetrogradError`` family -- ``rg.ShapeError`` (also a
``ValueError``) for shapes -- with a message naming the op, the operand shapes
and, for layers, the layer. One case per message, asserting on its text."""
import re

import numpy as np
import pytest

import retrograd as rg
from retrograd import nn

A = lambda: rg.randn(2, 3, requires_grad=True)          # noqa: E731


def _cases():
    """(id, thunk, exception type, regex the whole message must match)."""
    S, R = rg.ShapeError, rg.RetrogradError
    bcast = r"operands could not be broadcast together with shapes \(2,3\) \({}\) +\(operand " \
            r"shapes: \(2, 3\), \({}\)\)"
    return [
        # matmul
        ("matmul", lambda: A() @ rg.randn(4, 5), S,
         r"matmul: shapes \(2, 3\) and \(4, 5\) are not aligned: 3 \(last axis of the first\) "
         r"!= 4 \(second-to-last axis of the second\)"),
        ("matmul_0d", lambda: rg.tensor(3.0) @ rg.randn(4, 5), S,
         r"matmul: operands must be at least 1-d, got shapes \(\) and \(4, 5\)"),
        ("matmul_batch", lambda: rg.randn(2, 3, 4) @ rg.randn(3, 4, 5), S,
         r"matmul: the batch axes of shapes \(2, 3, 4\) and \(3, 4, 5\) do not broadcast"),
        ("dot_3d", lambda: rg.dot(rg.randn(2, 2, 2), rg.randn(2, 2)), S,
         r"dot: shapes \(2, 2, 2\) and \(2, 2\): dot of arrays with more than 2 axes .*"),
        # broadcasting in binary ops
        ("add", lambda: A() + rg.randn(4, 3), S, "add: " + bcast.format("4,3", "4, 3")),
        ("sub_ndarray", lambda: A() - np.ones(5), S, "sub: " + bcast.format("5,", "5,")),
        ("mul", lambda: A() * rg.randn(3, 2), S, "mul: " + bcast.format("3,2", "3, 2")),
        ("div", lambda: A() / rg.randn(2, 4), S, "div: " + bcast.format("2,4", "2, 4")),
        ("pow", lambda: A() ** rg.randn(4), S, "pow: " + bcast.format("4,", "4,")),
        ("maximum", lambda: rg.maximum(A(), rg.randn(4)), S,
         "maximum: " + bcast.format("4,", "4,")),
        ("where", lambda: rg.where(rg.ones(2, 3) > 0, A(), rg.randn(3, 3)), S,
         r"where: operands could not be broadcast together with shapes \(2,3\) \(2,3\) \(3,3\) +"
         r"\(operand shapes: \(2, 3\), \(2, 3\), \(3, 3\)\)"),
        ("broadcast_to", lambda: rg.broadcast_to(A(), (4, 5)), S,
         r"broadcast_to: cannot broadcast shape \(2, 3\) to \(4, 5\)"),
        ("sum_to", lambda: rg.sum_to(A(), (4,)), S,
         r"sum_to: cannot sum shape \(2, 3\) down to \(4,\) \(each axis of the target must "
         r"match or be 1\)"),
        # reshaping and moving axes
        ("reshape", lambda: A().reshape(4, 2), S,
         r"reshape: cannot reshape shape \(2, 3\) \(6 elements\) into \(4, 2\) \(8 elements\)"),
        ("reshape_infer", lambda: A().reshape(-1, 4), S,
         r"reshape: cannot reshape shape \(2, 3\) into \(-1, 4\)"),
        ("transpose", lambda: A().transpose(0, 0), S,
         r"transpose: axes \(0, 0\) are not a permutation of a 2-d tensor's axes"),
        ("swapaxes", lambda: rg.swapaxes(A(), 0, 4), S,
         r"swapaxes: axis 4 is out of range for a 2-d tensor of shape \(2, 3\)"),
        ("expand_dims", lambda: rg.expand_dims(A(), 5), S,
         r"expand_dims: axis 5 is out of range for the 3-d result of expanding shape \(2, 3\)"),
        ("flatten", lambda: rg.flatten(A(), 3), S,
         r"flatten: axis 3 is out of range for a 2-d tensor of shape \(2, 3\)"),
        ("squeeze", lambda: A().squeeze(0), S,
         r"squeeze: axis 0 of shape \(2, 3\) has size 2, not 1"),
        ("getitem", lambda: A()[:, 7], S,
         r"getitem: index 7 is out of bounds for axis 1 with size 3 \(operand shapes: \(2, 3\)\)"),
        # joining and splitting
        ("concatenate", lambda: rg.concatenate([A(), rg.randn(3)], axis=0), S,
         r"concatenate: shapes \[\(2, 3\), \(3,\)\] differ outside axis 0"),
        ("concatenate_axis", lambda: rg.concatenate([A(), A()], axis=3), S,
         r"concatenate: axis 3 is out of range for 2-d inputs"),
        ("concatenate_empty", lambda: rg.concatenate([]), S,
         r"concatenate: needs at least one tensor"),
        ("stack", lambda: rg.stack([A(), rg.randn(3, 3)]), S,
         r"stack: all tensors must have the same shape, got \[\(2, 3\), \(3, 3\)\]"),
        ("split", lambda: rg.split(A(), 2, axis=1), S,
         r"split: axis 1 of size 3 does not split into 2 equal parts"),
        # reductions
        ("sum_axis", lambda: A().sum(axis=2), S, r"sum: axis 2 is out of range for a 2-d tensor"),
        ("mean_repeated", lambda: rg.mean(A(), axis=(0, 0)), S, r"mean: repeated axis in \(0, 0\)"),
        ("softmax_axis", lambda: rg.softmax(A(), axis=5), S,
         r"softmax: axis 5 is out of range for a 2-d tensor"),
        ("logsumexp_axis", lambda: rg.logsumexp(A(), axis=3), S,
         r"logsumexp: axis 3 is out of range for a 2-d tensor"),
        # dtypes and constants
        ("astype", lambda: A().astype("foo"), R,
         r"astype: 'foo' is not a dtype \(data type 'foo' not understood\)"),
        ("ufunc_types", lambda: rg.exp(rg.tensor(np.array(["a"]))), R,
         r"exp: ufunc 'exp' not supported for the input types.* \(operand types: <U1\)"),
        ("clip_tensor_bounds", lambda: rg.clip(A(), rg.randn(3), 1.0), R,
         r"clip: a_min and a_max must be numbers or arrays \(constants\), got a Tensor; for "
         r"bounds that are tensors use rg.maximum\(x, lo\) and rg.minimum\(x, hi\)"),
        ("int_requires_grad", lambda: rg.tensor([1, 2], requires_grad=True), R,
         r"tensor: only floating-point tensors can require gradients, got dtype int64"),
        ("bool_requires_grad", lambda: rg.tensor(np.array([True]), requires_grad=True), R,
         r"tensor: only floating-point tensors can require gradients, got dtype bool"),
        ("int_parameter", lambda: nn.Parameter(np.arange(3)), R,
         r"tensor: only floating-point tensors can require gradients, got dtype int64"),
        ("grad_of_int_input", lambda: rg.grad(lambda x: (x * x).sum())(np.arange(3)), R,
         r"value_and_grad: cannot differentiate with respect to an input of dtype int64; "
         r"pass floats"),
        # backward
        ("backward_nonscalar", lambda: (A() * 2).backward(), R,
         r"backward: the output has shape \(2, 3\); a gradient can be created implicitly only "
         r"for a single-element output -- pass grad= of that shape"),
        ("backward_grad_shape", lambda: (A() * 2).backward(rg.ones(3, 3)), R,
         r"backward: grad has shape \(3, 3\) but the output has shape \(2, 3\)"),
        ("backward_no_grad", lambda: rg.tensor([1.0, 2.0]).sum().backward(), R,
         r"backward: the output does not require grad -- no input of the computation had "
         r"requires_grad=True \(or it ran under rg.no_grad\(\)\)"),
        # layers: the message names the layer
        ("linear", lambda: nn.Linear(4, 2)(A()), S,
         r"Linear\(4, 2\): input has shape \(2, 3\), expected last axis 4"),
        ("linear_0d", lambda: nn.Linear(3, 2)(rg.tensor(1.0)), S,
         r"Linear\(3, 2\): input has shape \(\), expected last axis 3"),
        ("sequential", lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(5, 2))(A()), S,
         r"Sequential layer 2 \(Linear\): Linear\(5, 2\): input has shape \(2, 4\), expected "
         r"last axis 5"),
        ("mlp", lambda: nn.MLP([3, 4, 2])(rg.randn(2, 5)), S,
         r"Sequential layer 0 \(Linear\): Linear\(3, 4\): input has shape \(2, 5\), expected "
         r"last axis 3"),
        ("load_state_dict", lambda: nn.Linear(3, 2).load_state_dict(
            {"weight": np.ones((2, 3)), "bias": np.ones(2)}), S,
         r"Linear.load_state_dict: 'weight' has shape \(2, 3\) in the state dict but \(3, 2\) "
         r"in the model"),
        # losses
        ("ce_float_labels", lambda: nn.CrossEntropyLoss()(A(), rg.tensor([0.0, 1.0])), S,
         r"cross_entropy: float targets must be one-hot or probability rows of shape \(2, 3\), "
         r"got \(2,\) \(class labels must be an integer array: use labels.astype\(np.int64\)\)"),
        ("ce_onehot_shape", lambda: nn.CrossEntropyLoss()(A(), np.eye(4, dtype=np.float32)[:2]), S,
         r"cross_entropy: float targets must be one-hot or probability rows of shape \(2, 3\), "
         r"got \(2, 4\)"),
        ("ce_label_shape", lambda: nn.CrossEntropyLoss()(A(), np.array([0, 1, 2])), S,
         r"cross_entropy: integer labels must have shape \(2,\) for logits \(2, 3\), got \(3,\)"),
        ("ce_label_range", lambda: nn.CrossEntropyLoss()(A(), np.array([0, 3])), R,
         r"softmax_cross_entropy: label 3 is out of range for 3 classes"),
        ("ce_negative_label", lambda: nn.CrossEntropyLoss()(A(), np.array([-1, 0])), R,
         r"softmax_cross_entropy: label -1 is out of range for 3 classes"),
        ("ce_logits_1d", lambda: nn.CrossEntropyLoss()(rg.randn(3), np.array([0])), S,
         r"cross_entropy: logits must have shape \(batch, classes\), got \(3,\)"),
        ("ce_string_targets", lambda: nn.CrossEntropyLoss()(A(), np.array(["a", "b"])), R,
         r"cross_entropy: targets of dtype <U1 are neither class labels \(integers\) nor "
         r"probabilities \(floats\)"),
        ("nll_float_labels", lambda: nn.NLLLoss()(A(), np.array([0.0, 1.0])), R,
         r"nll_loss: labels must be integers, got dtype float64"),
        ("nll_label_shape", lambda: nn.NLLLoss()(A(), np.array([0, 1, 2])), S,
         r"nll_loss: needs log-probabilities \(batch, classes\) and labels \(batch,\), got "
         r"shapes \(2, 3\) and \(3,\)"),
        ("nll_label_range", lambda: nn.NLLLoss()(A(), np.array([0, 5])), R,
         r"nll_loss: label 5 is out of range for 3 classes"),
        ("softmax_cross_entropy_op", lambda: rg.softmax_cross_entropy(A(), np.array([0, 1, 2])),
         S, r"softmax_cross_entropy: needs logits \(N, C\) and integer labels \(N,\), got shapes "
            r"\(2, 3\) and \(3,\)"),
        ("softmax_cross_entropy_float", lambda: rg.softmax_cross_entropy(A(), np.zeros(2)), R,
         r"softmax_cross_entropy: labels must be integers, got dtype float64"),
        ("mse", lambda: nn.MSELoss()(A(), rg.randn(3, 2)), S,
         r"mse_loss: input has shape \(2, 3\) but target has shape \(3, 2\)"),
        ("mse_no_silent_broadcast", lambda: nn.MSELoss()(A(), rg.randn(2, 1)), S,
         r"mse_loss: input has shape \(2, 3\) but target has shape \(2, 1\)"),
        ("sse", lambda: nn.SSELoss()(A(), rg.randn(2)), S,
         r"sse_loss: input has shape \(2, 3\) but target has shape \(2,\)"),
        ("bce", lambda: nn.BCELoss()(rg.sigmoid(A()), rg.randn(3, 2)), S,
         r"binary_cross_entropy: input has shape \(2, 3\) but target has shape \(3, 2\)"),
        ("bce_with_logits", lambda: nn.BCEWithLogitsLoss()(A(), rg.randn(3, 2)), S,
         r"binary_cross_entropy_with_logits: input has shape \(2, 3\) but target has shape "
         r"\(3, 2\)"),
        ("mse_string_target", lambda: nn.MSELoss()(A(), np.array([["a"] * 3] * 2)), R,
         r"mse_loss: target must be numeric, got dtype <U1"),
    ]


CASES = _cases()


@pytest.mark.parametrize("thunk,kind,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_message(thunk, kind, message):
    with pytest.raises(rg.RetrogradError) as info:
        thunk()
    e = info.value
    assert isinstance(e, kind), f"{type(e).__name__}: {e}"
    assert re.fullmatch(message, str(e)), str(e)
    if isinstance(e, rg.ShapeError):
        assert isinstance(e, ValueError)


def test_no_message_carries_a_traceback_or_numpy_internals():
    for name, thunk, kind, _ in CASES:
        try:
            thunk()
        except rg.RetrogradError as e:
            assert "Traceback" not in str(e) and "numpy" not in str(e).lower(), (name, str(e))


# ---------------------------------------------------------------- in training

def test_fit_with_the_wrong_number_of_features_names_the_layer():
    model = nn.MLP([3, 4, 2])
    opt = rg.optim.SGD(model.parameters(), lr=0.1)
    for compile in (True, False):
        with pytest.raises(rg.ShapeError, match=r"^Sequential layer 0 \(Linear\): Linear\(3, 4\): "
                                                r"input has shape \(8, 5\), expected last axis 3$"):
            rg.train.fit(model, nn.CrossEntropyLoss(), opt,
                         (np.ones((8, 5), np.float32), np.zeros(8, np.int64)), epochs=1,
                         batch_size="full", progress=False, log=None, compile=compile)


def test_fit_with_float_class_labels_says_how_to_fix_them():
    model = nn.MLP([3, 4, 2])
    opt = rg.optim.SGD(model.parameters(), lr=0.1)
    for compile in (True, False):
        with pytest.raises(rg.ShapeError, match=r"use labels.astype\(np.int64\)"):
            rg.train.fit(model, nn.CrossEntropyLoss(), opt,
                         (np.ones((8, 3), np.float32), np.array([0.0, 1.0] * 4)), epochs=1,
                         batch_size=4, progress=False, log=None, compile=compile)


def test_a_compiled_function_reports_matmul_shapes_like_eager():
    x, y = np.ones((2, 3), np.float32), np.ones((4, 5), np.float32)
    with pytest.raises(rg.ShapeError, match=r"^matmul: shapes \(2, 3\) and \(4, 5\) are not "
                                            r"aligned"):
        rg.compile(lambda a, b: (a @ b).sum())(x, y)


def test_a_compiled_function_reports_broadcast_shapes_like_eager():
    x, y = np.ones((2, 3), np.float32), np.ones((4, 5), np.float32)
    with pytest.raises(rg.ShapeError, match=r"^add: .*\(2, 3\).*\(4, 5\)"):
        rg.compile(lambda a, b: (a + b).sum())(x, y)


def test_integer_results_carry_no_gradient_and_a_hand_set_flag_is_caught():
    """A cast to int or a comparison does not require grad (as in PyTorch), eagerly and
    traced; requires_grad set by hand on an int tensor is refused when a gradient reaches
    it, instead of a truncated gradient."""
    x = rg.tensor([1.0, 3.0, 2.0], requires_grad=True)
    assert not x.astype(np.int64).requires_grad and not (x > 1).requires_grad
    g = rg.compile(rg.grad(lambda t: (t * rg.astype(t.astype(np.int64), np.float64)).sum()))
    np.testing.assert_array_equal(g(np.array([1.5, 2.5])).numpy(), [1.0, 2.0])
    t = rg.tensor(np.arange(3))
    t.requires_grad = True
    with pytest.raises(rg.RetrogradError, match=r"the 'mul' op's VJP sends a gradient to a tensor "
                                                r"of dtype int64 \(shape \(3,\)\) that requires grad"):
        (t * 2.5).sum().backward()
