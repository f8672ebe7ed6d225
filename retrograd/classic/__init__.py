"""The textbook algorithms of the lecture notes, written out in plain NumPy.

No autodiff is used here: every δ and gradient is computed by the equations the
notes derive, so that they can be read next to the notes and checked against
the autodiff engine (tests/test_classic.py does, to 1e-12 in float64).

    mlp            BP1–BP4 for any MLP, one pattern or a batch, with weight decay
                   (seeds 001, 003, 004): Network, forward, backprop, backprop_per_pattern
    training       batch / minibatch / online gradient descent with it: train
    generalized    seed 002's generalized delta rule for one hidden layer, in its
                   notation (δ_k, δ_j, Δw = η δ o): generalized_delta_rule, train_generalized
    single_layer   Rosenblatt's perceptron, LMS / Widrow–Hoff, seed 000's sigmoid unit
    functions      the activations with g′ and the losses with ∂E/∂a

    from retrograd import classic
    net = classic.Network([2, 2, 1], "sigmoid", seed=0)
    r = net.backprop([1.0, 0.0], [1.0], loss="sse")
    r.delta[-1], r.grad_W[0]                    # δ of the output layer, ∂E/∂W¹
"""
from . import functions
from .functions import ACTIVATIONS, LOSSES
from .generalized import (DeltaRuleStep, GeneralizedResult, TwoLayerNet, generalized_delta_rule,
                          train_generalized)
from .mlp import (Backprop, Forward, Network, backprop, backprop_per_pattern, default_reduction,
                  forward)
from .single_layer import LMS, Perceptron, RuleResult, SigmoidUnit, WidrowHoff
from .training import TrainResult, train

__all__ = ["Network", "Forward", "Backprop", "forward", "backprop", "backprop_per_pattern",
           "default_reduction", "train", "TrainResult", "generalized_delta_rule",
           "train_generalized", "TwoLayerNet", "DeltaRuleStep", "GeneralizedResult", "Perceptron",
           "LMS", "WidrowHoff", "SigmoidUnit", "RuleResult", "functions", "ACTIVATIONS", "LOSSES"]
