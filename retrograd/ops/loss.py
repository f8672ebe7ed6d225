"""Fused loss primitives, where a dedicated rule beats the composite for speed.

``softmax_cross_entropy`` is -log softmax(z)[label] per row. Its VJP is the
textbook (softmax(z) - onehot(label)) · g, itself one primitive,
``softmax_minus_onehot``, whose own VJP is softmax's: two array passes instead of
the half-dozen ops of log_softmax + indexing + their VJPs, and still
differentiable again.
"""
from __future__ import annotations

import numpy as np

from ..arrays import device, kind, namespace, to_numpy
from ..errors import RetrogradError, ShapeError
from ..tensor import Tensor
from .base import apply, defop
from .kernels import fmax, fsum
from .elementwise import log, maximum, where
from .reduce import softmax, sum
from .shape import reshape


# The two forwards run once per training step on a small (batch, classes) array, where
# NumPy's call overhead is all: the fewest calls, and no np.errstate (it slows every
# ufunc inside it). Shifting by the row max needs no guard for infinite rows here:
# their loss and gradient are nan either way.

def _shifted(z):
    return z - fmax(z, (1,), keepdims=True)


# Class labels are checked at run time by an op of their own: in compiled code labels are
# run-time data, so a check at trace time could not see them; as a graph node the check
# runs on every call, once per step (the loss and its gradient use the same checked
# labels, and CSE merges equal checks), and eager and compiled steps refuse the same labels
# with the same message. (NumPy indexing would wrap a negative label round to the last
# classes.) Seen as unsigned, a negative label is at least 2**(bits-1), so for the usual
# class counts one max over the unsigned view checks both ends (~2 us alone, ~4 us in a
# compiled step on a shared 2-core VM; ufunc call overhead is the floor here).
_UNSIGNED = {np.dtype(t): (np.dtype(t.replace("int", "uint")) if t[0] == "i" else np.dtype(t),
                           2 ** (np.dtype(t).itemsize * 8 - (t[0] == "i")))
             for t in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")}


class IgnoredLabel(RetrogradError):
    """A label equal to the default ignore_index reached the fused loss, which has no rows
    to skip: eager cross_entropy catches it and takes the masked path (nn/functional.py)."""


def _class_labels_forward(labels, classes, who, ignore=None):
    if type(labels) is not np.ndarray:
        # another namespace: a min and a max where the labels live; for a bad label, the
        # NumPy check of a host copy gives the message
        xp = namespace(labels)
        if labels.size and (int(xp.min(labels)) < 0 or int(xp.max(labels)) >= classes):
            _class_labels_forward(to_numpy(labels), classes, who, ignore)
        return labels
    if labels.size:
        unsigned, limit = _UNSIGNED[labels.dtype]
        if classes <= limit:
            bad = np.maximum.reduce(labels.view(unsigned)) >= classes
        else:
            bad = labels.min() < 0 or labels.max() >= classes
        if bad and ignore is not None and not np.any((labels != ignore) & (
                (labels < 0) | (labels >= classes))):
            raise IgnoredLabel(f"{who}: label {ignore} is the default ignore_index, which a "
                               "compiled step cannot skip: pass ignore_index explicitly to "
                               "cross_entropy / nll_loss (or the loss module) to mask those rows")
        if bad:
            t = labels.astype(np.int64) if labels.dtype.kind == "i" else labels   # no int8 overflow
            raise RetrogradError(f"{who}: label {t[(t < 0) | (t >= classes)][0]} is out of "
                                 f"range for {classes} classes")
    return labels


# (lowering: the Numba backend checks the range in its kernel and, on a bad label, runs this
# forward for the error message)
_class_labels = defop("class_labels", _class_labels_forward, lowering="check_labels")


def _onehot(xp, labels, classes, dtype):
    """onehot(labels) (N, C) of ``dtype`` in namespace xp."""
    hit = xp.arange(classes, device=device(labels))[None, :] == xp.reshape(labels, (-1, 1))
    return xp.astype(hit, dtype)


def _picked(xp, z, labels):
    """z[i, labels[i]] per row, in namespace xp."""
    return xp.take_along_axis(z, xp.reshape(labels, (-1, 1)), axis=1)[:, 0]


def _sce_in(xp, z, labels):
    s = z - xp.max(z, axis=1, keepdims=True)
    return xp.log(xp.sum(xp.exp(s), axis=1)) - _picked(xp, s, labels)


def _smo_in(xp, z, labels):
    p = xp.exp(z - xp.max(z, axis=1, keepdims=True))
    return p / xp.sum(p, axis=1, keepdims=True) - _onehot(xp, labels, z.shape[1], z.dtype)


def _checked(who, logits, labels, ignore=None):
    """``labels`` after the shape, dtype (now) and value (at run time) checks; a label equal
    to ``ignore`` (out of range) raises IgnoredLabel instead."""
    _check_labels(who, logits, labels)
    if ignore is None:          # (the params as before: no new key for CSE or the caches)
        return apply(_class_labels, labels, classes=int(logits.shape[1]), who=who)
    return apply(_class_labels, labels, classes=int(logits.shape[1]), who=who, ignore=ignore)


def _sce_forward(z, labels):
    s = _shifted(z)                       # log-sum-exp(z) - z[label], from shifted logits
    picked = s[np.arange(len(s)), labels]
    np.exp(s, out=s)
    return np.log(fsum(s, (1,))) - picked


def _smo_forward(z, labels):
    p = _shifted(z)
    np.exp(p, out=p)
    p /= fsum(p, (1,), keepdims=True)
    p[np.arange(len(p)), labels] -= 1      # one entry per row: no repeats to accumulate
    return p


def _smo_vjp(u, out, z, labels):
    s = softmax(z, axis=1)                 # d(softmax(z) - onehot)/dz is softmax's Jacobian
    return s * (u - sum(u * s, axis=1, keepdims=True))


_softmax_minus_onehot = defop("softmax_minus_onehot", _smo_forward, (_smo_vjp, None),
                              reads=((0,), ()), fresh=True, lowering="rows_softmax_onehot",
                              xp_forward=_smo_in)


def softmax_minus_onehot(z, labels):
    """softmax(z, axis=1) - onehot(labels): the gradient of cross-entropy w.r.t. logits."""
    return apply(_softmax_minus_onehot, z, _checked("softmax_minus_onehot", z, labels))


def _sce_vjp(g, out, z, labels):            # (labels: checked by the forward's caller)
    return apply(_softmax_minus_onehot, z, labels) * reshape(g, (-1, 1))


_softmax_cross_entropy = defop("softmax_cross_entropy", _sce_forward, (_sce_vjp, None),
                               reads=((0, 1), ()), fresh=True, lowering="rows_lse_pick",
                               xp_forward=_sce_in)


def _nll_vjp(g, out, x, labels):
    return apply(_nll_t, g, labels, classes=x.shape[1])


def _nll_t_forward(g, labels, classes):
    out = np.zeros((len(labels), classes), g.dtype)
    out[np.arange(len(labels)), labels] = -g
    return out


# -x[i, labels[i]] per row and its transpose: each one's VJP is the other, so it is
# differentiable to any order; labels are data (checked by class_labels), not an index param
def _nll_t_in(xp, g, labels, classes):
    hit = _onehot(xp, labels, classes, xp.bool)
    return xp.where(hit, -xp.reshape(g, (-1, 1)), xp.zeros_like(hit, dtype=g.dtype))


_nll = defop("nll_loss", lambda x, labels: -x[np.arange(len(labels)), labels], (_nll_vjp, None),
             reads=((1,), ()), xp_forward=lambda xp, x, labels: -_picked(xp, x, labels))
_nll_t = defop("nll_loss_vjp", _nll_t_forward,
               (lambda u, out, g, labels, classes: apply(_nll, u, labels), None), reads=((1,), ()),
               xp_forward=_nll_t_in)


def _check_labels(op, logits, labels):
    """Shapes and dtype (known while tracing too); the values are checked by class_labels."""
    z = logits.shape if isinstance(logits, Tensor) else np.shape(logits)
    shape, dtype = (labels.shape, labels.dtype) if isinstance(labels, Tensor) else (
        np.shape(labels), np.asarray(labels).dtype)
    if kind(dtype) not in "iu":
        raise RetrogradError(f"{op}: labels must be integers, got dtype {dtype}")
    if len(z) != 2 or shape != z[:1]:
        raise ShapeError(f"{op}: needs logits (N, C) and integer labels (N,), got shapes "
                         f"{tuple(z)} and {shape}")


def softmax_cross_entropy(logits, labels, ignore=None):
    """Per-row cross-entropy of softmax(logits) (N, C) against integer labels (N,); a label
    equal to ``ignore`` raises IgnoredLabel (for cross_entropy's default ignore_index)."""
    return apply(_softmax_cross_entropy, logits,
                 _checked("softmax_cross_entropy", logits, labels, ignore))



# Binary cross-entropy of probabilities, PyTorch's way: the logs are clamped at -100, so
# p = 0 or 1 gives a large finite loss, and the gradient's denominator p(1 - p) at 1e-12,
# so a saturated sigmoid (p rounded to 0 or 1) gets a finite gradient -- the derivative of
# the clamped logs (0 · 1/0) would be nan there.
_BCE_EPS = 1e-12


def _bce_forward(p, t):
    with np.errstate(divide="ignore"):
        return -(t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log1p(-p), -100))


def _bce_in(xp, p, t):
    return -(t * xp.maximum(xp.log(p), -100.0) + (1 - t) * xp.maximum(xp.log1p(-p), -100.0))


def _clamped_log(x):
    """max(log x, -100) as ops, finite (and warning-free) at x = 0."""
    pos = x > 0
    return where(pos, maximum(log(where(pos, x, 1)), -100.0), -100.0)


def _bce_scalar(p, t):
    return (f"(-({t} * max(math.log({p}), -100.0)"
            f" + (1.0 - {t}) * max(math.log1p(-{p}), -100.0)))")


binary_cross_entropy = defop("binary_cross_entropy", _bce_forward, (
    lambda g, out, p, t: g * (p - t) / maximum(p * (1 - p), _BCE_EPS),
    lambda g, out, p, t: g * (_clamped_log(1 - p) - _clamped_log(p))), reads=((0, 1), (0,)),
    fresh=True, scalar=_bce_scalar, xp_forward=_bce_in,
    doc="Elementwise -(t·log p + (1 - t)·log(1 - p)), the logs clamped at -100 (as PyTorch).")


def nll(log_probs, labels, ignore=None):
    """-log_probs[i, labels[i]] per row: log-probabilities (N, C), integer labels (N,)."""
    return apply(_nll, log_probs, _checked("nll_loss", log_probs, labels, ignore))
