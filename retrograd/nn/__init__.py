"""Neural-network building blocks with PyTorch's habits: Module, Parameter,
layers, activations, losses, initialisers."""
from . import functional, init
from .conv import (AdaptiveAvgPool2d, AvgPool2d, Conv1d, Conv2d, ConvTranspose2d, Flatten,
                   MaxPool2d, Upsample)
from .layers import (ACTIVATIONS, MLP, Dropout, Identity, LeakyReLU, Linear, LogSoftmax, ReLU,
                     Sigmoid, Softmax, Tanh, activation)
from .losses import (LOSSES, BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, KLDivLoss,
                     L1Loss, MSELoss, NLLLoss, SmoothL1Loss, SSELoss)
from .module import Buffer, Module, Parameter, Sequential
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from .embedding import Dropout2d, Embedding
from .transformer import MultiheadAttention, TransformerEncoderLayer
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .summary import Summary, summary

__all__ = ["Module", "Parameter", "Sequential", "Linear", "Dropout", "Sigmoid", "Tanh", "ReLU",
           "LeakyReLU", "Softmax", "LogSoftmax", "Identity", "MLP", "activation", "MSELoss",
           "SSELoss", "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "L1Loss",
           "HuberLoss", "SmoothL1Loss", "KLDivLoss", "functional",
           "init", "ACTIVATIONS", "LOSSES",
           "Buffer", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "Embedding",
           "Dropout2d", "MultiheadAttention", "TransformerEncoderLayer",
           "Conv1d", "Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
           "Flatten", "Upsample",
           "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "summary", "Summary"]
