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


class _Keywords(_Loss):
    """A loss with keyword options beyond ``reduction``, passed on to its function."""
    options = ()

    def __init__(self, reduction: str | None = None, **options):
        super().__init__(reduction)
        unknown = set(options) - set(self.options)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unexpected keyword {sorted(unknown)[0]!r}; "
                            f"it takes reduction, {', '.join(self.options)}")
        defaults = dict(zip(self.options, self.defaults))
        for name in self.options:
            setattr(self, name, options.get(name, defaults[name]))

    def forward(self, input, target):
        return type(self).fn(input, target, reduction=self.reduction,
                             **{name: getattr(self, name) for name in self.options})

    def extra_repr(self):
        shown = [f"{n}={getattr(self, n)!r}" for n, d in zip(self.options, self.defaults)
                 if n != "weight" and getattr(self, n) != d]
        return ", ".join([super().extra_repr(), *shown])


class CrossEntropyLoss(_Keywords):
    """Softmax cross-entropy on logits; integer labels or one-hot/probability rows; class
    ``weight``, ``ignore_index`` and ``label_smoothing`` as PyTorch's."""
    fn = F.cross_entropy
    options, defaults = ("weight", "ignore_index", "label_smoothing"), (None, F.IGNORE_INDEX, 0.0)


class NLLLoss(_Keywords):
    fn = F.nll_loss
    options, defaults = ("weight", "ignore_index"), (None, F.IGNORE_INDEX)


class L1Loss(_Loss):
    """Mean absolute error over all entries."""
    fn = F.l1_loss


class HuberLoss(_Keywords):
    """Squared error within ``delta``, absolute error beyond (PyTorch's HuberLoss)."""
    fn = F.huber_loss
    options, defaults = ("delta",), (1.0,)


class SmoothL1Loss(_Keywords):
    """Huber loss over ``beta`` (PyTorch's SmoothL1Loss)."""
    fn = F.smooth_l1_loss
    options, defaults = ("beta",), (1.0,)


class KLDivLoss(_Keywords):
    """KL divergence of log-probabilities from a target distribution (PyTorch's KLDivLoss;
    reduction "batchmean" is the true KL per example)."""
    fn = F.kl_div
    options, defaults = ("log_target",), (False,)


class BCELoss(_Loss):
    """Binary cross-entropy on probabilities."""
    fn = F.binary_cross_entropy


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits (sigmoid fused in, stable for any logit)."""
    fn = F.binary_cross_entropy_with_logits


LOSSES = {"mse": MSELoss, "sse": SSELoss, "cross_entropy": CrossEntropyLoss, "ce": CrossEntropyLoss,
          "nll": NLLLoss, "bce": BCELoss, "bce_with_logits": BCEWithLogitsLoss, "l1": L1Loss,
          "huber": HuberLoss, "smooth_l1": SmoothL1Loss, "kl_div": KLDivLoss}
