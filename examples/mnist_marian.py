"""Seed 001 §4.6: the 2-layer network of the Marian toolkit, on the bundled MNIST digits.

The notes write it in Marian's C++ graph API:

    auto w1 = param(shape={784, 100});   auto b1 = param(shape={1, 100});
    auto l1 = tanh(dot(x, w1) + b1);
    auto w2 = param(shape={100, 10});    auto b2 = param(shape={1, 10});
    auto l2 = softmax(dot(l1, w2) + b2, axis=1);
    auto graph = -mean(sum(y * log(l2), axis=1), axis=0);
    graph.forward();  graph.backward();  auto dw = w.grad();

Below is the same graph in retrograd, line for line, trained by minibatch SGD for two
epochs on the 4,000 training digits bundled with retrograd, then tested on the other 1,000.
(`retrograd train` trains the same net with the fused, overflow-proof cross-entropy op.)
Set RETROGRAD_FAST=1 for a one-epoch run.
"""
import os
import time

import numpy as np

import retrograd as rg
from retrograd.data import load_mnist5k
from retrograd.nn.init import glorot_uniform

FAST = os.environ.get("RETROGRAD_FAST") == "1"
# Marian's snippet uses a batch of 500; with only 4,000 digits a batch of 50 gives more steps
EPOCHS, BATCH, LR = (1 if FAST else 2), 50, 0.1

(x_train, y_train), (x_test, y_test) = load_mnist5k()        # x: (n, 784) in [0, 1], y: labels
Y_train = np.eye(10, dtype=np.float32)[y_train]              # one-hot rows: the y of the graph

rg.manual_seed(0)
w1 = rg.tensor(glorot_uniform((784, 100)), requires_grad=True)   # param(shape={784, 100})
b1 = rg.zeros(1, 100, requires_grad=True)                         # param(shape={1, 100})
w2 = rg.tensor(glorot_uniform((100, 10)), requires_grad=True)
b2 = rg.zeros(1, 10, requires_grad=True)
params = [w1, b1, w2, b2]


def forward(x):
    l1 = rg.tanh(rg.matmul(x, w1) + b1)
    return rg.softmax(rg.matmul(l1, w2) + b2, axis=1)


print(f"784-100-10 tanh/softmax net, {len(x_train)} training digits, batch {BATCH}, η = {LR}")
rng = np.random.default_rng(0)
t0 = time.perf_counter()
for epoch in range(1, EPOCHS + 1):
    order = rng.permutation(len(x_train))
    total = 0.0
    for start in range(0, len(order), BATCH):
        idx = order[start:start + BATCH]
        x, y = rg.tensor(x_train[idx]), rg.tensor(Y_train[idx])
        graph = -rg.mean(rg.sum(y * rg.log(forward(x)), axis=1), axis=0)   # the cost
        for p in params:
            p.grad = None
        graph.backward()                                   # dw = w.grad() for every param
        with rg.no_grad():
            for p in params:
                p.data -= LR * p.grad.data                 # plain SGD step
        total += graph.item() * len(idx)
    with rg.no_grad():
        accuracy = (forward(rg.tensor(x_test)).numpy().argmax(axis=1) == y_test).mean()
    print(f"epoch {epoch}: training cost {total / len(x_train):.4f}, "
          f"test accuracy {accuracy * 100:.1f}% ({time.perf_counter() - t0:.1f}s)")
