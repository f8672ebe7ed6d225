"""Loss modules: thin wrappers that fix ``reduction`` and call nn.functional."""
from __future__ import annotations

from . import functional as F
from .module import Module


class _Loss(Module):
    fn = None
    default_reduction = "mean"

    def __init__(self, reduction: str | None = None):
        self.reduction = reduction or self.default_reduction

    def forward(self, input, target):
        return type(self).fn(input, target, reduction=self.reduction)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    """Mean squared error over all entries."""
    fn = F.mse_loss


class SSELoss(_Loss):
    """Seed 002's E = ½ Σ (d − o)², summed over outputs and patterns."""
    fn = F.sse_loss
    default_reduction = "sum"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy on logits; integer labels or one-hot/probability rows."""
    fn = F.cross_entropy


class NLLLoss(_Loss):
    fn = F.nll_loss


class BCELoss(_Loss):
    """Binary cross-entropy on probabilities."""
    fn = F.binary_cross_entropy


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits (sigmoid fused in, stable for any logit)."""
    fn = F.binary_cross_entropy_with_logits


LOSSES = {"mse": MSELoss, "sse": SSELoss, "cross_entropy": CrossEntropyLoss, "ce": CrossEntropyLoss,
          "nll": NLLLoss, "bce": BCELoss, "bce_with_logits": BCEWithLogitsLoss}
