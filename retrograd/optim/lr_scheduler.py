"""Learning-rate schedules, with PyTorch's semantics.

Call ``scheduler.step()`` once per epoch, after that epoch's optimizer steps
(``ReduceLROnPlateau.step(metric)`` with the epoch's validation metric). Each
scheduler rewrites ``group["lr"]`` of its optimizer's parameter groups;
``get_last_lr()`` returns the rates it last set.
"""
from __future__ import annotations

import math

from .optimizer import Optimizer

__all__ = ["LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR", "ReduceLROnPlateau"]


class _Scheduler:
    """What every scheduler shares: the optimizer link, ``get_last_lr`` and a
    checkpoint-safe ``state_dict`` (every attribute except the optimizer)."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def get_last_lr(self) -> list:
        return list(self._last_lr)

    def state_dict(self) -> dict:
        return {k: list(v) if isinstance(v, list) else v
                for k, v in vars(self).items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict):
        expected = set(vars(self)) - {"optimizer"}
        if set(state_dict) != expected:
            raise ValueError(f"{type(self).__name__}.load_state_dict: missing keys "
                             f"{sorted(expected - set(state_dict))}, unexpected keys "
                             f"{sorted(set(state_dict) - expected)}")
        self.__dict__.update({k: list(v) if isinstance(v, (list, tuple)) else v
                              for k, v in state_dict.items()})


class LRScheduler(_Scheduler):
    """Epoch-based schedule: ``step()`` advances ``last_epoch`` and sets each group's
    lr to ``_next_lr(lr, base_lr)``; ``base_lrs`` are the groups' lrs at creation
    (kept in ``group["initial_lr"]``, as PyTorch does)."""

    def __init__(self, optimizer: Optimizer):
        super().__init__(optimizer)
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = 0

    def step(self):
        self.last_epoch += 1
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = self._next_lr(group["lr"], base_lr)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _next_lr(self, lr: float, base_lr: float) -> float:
        raise NotImplementedError


class StepLR(LRScheduler):
    """lr ← lr·gamma every ``step_size`` epochs."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def _next_lr(self, lr, base_lr):
        return lr * self.gamma if self.last_epoch % self.step_size == 0 else lr


class ExponentialLR(LRScheduler):
    """lr ← lr·gamma every epoch."""

    def __init__(self, optimizer, gamma: float):
        self.gamma = gamma
        super().__init__(optimizer)

    def _next_lr(self, lr, base_lr):
        return lr * self.gamma


class CosineAnnealingLR(LRScheduler):
    """lr_t = eta_min + (base_lr − eta_min)·(1 + cos(π·t/T_max))/2, computed recursively
    from the current lr as PyTorch does (so outside changes to lr carry through);
    past T_max it climbs back up, a cosine of period 2·T_max."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0):
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer)

    def _next_lr(self, lr, base_lr):
        t, T, eta_min = self.last_epoch, self.T_max, self.eta_min
        if (t - 1 - T) % (2 * T) == 0:
            return lr + (base_lr - eta_min) * (1 - math.cos(math.pi / T)) / 2
        return ((1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
                * (lr - eta_min) + eta_min)


class ReduceLROnPlateau(_Scheduler):
    """lr ← max(lr·factor, min_lr) once the metric passed to ``step(metric)`` has not
    improved for more than ``patience`` epochs; then wait ``cooldown`` epochs.

    "Improved" means below best·(1 − threshold) (mode 'min', threshold_mode 'rel'),
    below best − threshold ('min', 'abs'), above best·(1 + threshold) ('max', 'rel')
    or above best + threshold ('max', 'abs'). Reductions smaller than ``eps`` are skipped.
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        super().__init__(optimizer)
        if factor >= 1.0:
            raise ValueError("ReduceLROnPlateau: factor should be < 1.0")
        if mode not in ("min", "max") or threshold_mode not in ("rel", "abs"):
            raise ValueError(f"ReduceLROnPlateau: unknown mode {mode!r} or threshold_mode "
                             f"{threshold_mode!r}")
        n = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise ValueError(f"ReduceLROnPlateau: expected {n} min_lrs, got {len(min_lr)}")
            self.min_lrs = list(min_lr)
        else:
            self.min_lrs = [min_lr] * n
        self.mode, self.factor, self.patience = mode, factor, patience
        self.threshold, self.threshold_mode = threshold, threshold_mode
        self.cooldown, self.eps = cooldown, eps
        self.last_epoch = 0
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _is_better(self, a: float) -> bool:
        best, th = self.best, self.threshold
        if self.mode == "min":
            return a < (best * (1.0 - th) if self.threshold_mode == "rel" else best - th)
        return a > (best * (th + 1.0) if self.threshold_mode == "rel" else best + th)

    def step(self, metric):
        current = float(metric)
        self.last_epoch += 1
        if self._is_better(current):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0          # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs, strict=True):
                new_lr = max(group["lr"] * self.factor, min_lr)
                if group["lr"] - new_lr > self.eps:
                    group["lr"] = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
