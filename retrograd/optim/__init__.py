"""retrograd.optim: optimizers that update parameters in place, and lr schedules.

    opt = rg.optim.Adam(model_params, lr=1e-3)
    sched = rg.optim.lr_scheduler.StepLR(opt, step_size=10)
    for epoch in range(epochs):
        for batch in data:
            opt.zero_grad(); loss(batch).backward(); opt.step()
        sched.step()

State dicts (optimizers and schedulers) hold only dicts, lists, tuples, ndarrays
and Python scalars, so checkpoints can be written without pickle.
"""
from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .lr_scheduler import CosineAnnealingLR, ExponentialLR, LRScheduler, ReduceLROnPlateau, StepLR
from .optimizer import Optimizer
from .quickprop import Quickprop
from .rmsprop import RMSprop
from .rprop import Rprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Rprop", "Quickprop", "Adam", "AdamW", "RMSprop", "Adagrad",
           "lr_scheduler", "LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR",
           "ReduceLROnPlateau"]
