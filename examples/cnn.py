"""A LeNet-style convolutional network on the bundled MNIST digits, as 1×28×28 images.

    conv 5×5 (1 -> 6), ReLU, max pool 2   ->  6×12×12
    conv 5×5 (6 -> 16), ReLU, max pool 2  -> 16×4×4
    flatten, 256 -> 120 -> 84 -> 10, ReLU between

The layers are PyTorch's (rg.nn.Conv2d, MaxPool2d, Flatten, Linear), the convolution is
im2col and one matrix product, and its gradient is itself a convolution. The whole
training step -- forward, loss, backward, Adam's update -- is compiled into one
generated function (rg.graph.compile_step); Adam's learning rate follows a cosine over
the epochs. Set RETROGRAD_FAST=1 for a short run.
"""
import os
import time

import numpy as np

import retrograd as rg
from retrograd import blas, nn
from retrograd.data import ArrayDataset, DataLoader, load_mnist5k

FAST = os.environ.get("RETROGRAD_FAST") == "1"
EPOCHS, BATCH, LR = (1 if FAST else 12), 64, 3e-3
N_TRAIN = 1600 if FAST else None              # digits trained on (None: all 4,000)

(x_train, y_train), (x_test, y_test) = load_mnist5k()
x_train, x_test = x_train.reshape(-1, 1, 28, 28), x_test.reshape(-1, 1, 28, 28)
if N_TRAIN:                                    # a random subset (the digits come sorted by class)
    keep = np.random.default_rng(0).permutation(len(x_train))[:N_TRAIN]
    x_train, y_train = x_train[keep], y_train[keep]

rg.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(),
    nn.Linear(16 * 4 * 4, 120, init="he"), nn.ReLU(),
    nn.Linear(120, 84, init="he"), nn.ReLU(),
    nn.Linear(84, 10))
optimizer = rg.optim.Adam(model.parameters(), lr=LR)
schedule = rg.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS)   # per epoch
step = rg.graph.compile_step(model, nn.CrossEntropyLoss(), optimizer)
loader = DataLoader(ArrayDataset(x_train, y_train), batch_size=BATCH, shuffle=True,
                    drop_last=True, seed=0)


def accuracy(x, y):
    model.eval()
    with rg.no_grad():
        right = sum(int((model(rg.tensor(x[i:i + 500])).numpy().argmax(1) == y[i:i + 500]).sum())
                    for i in range(0, len(x), 500))
    model.train()
    return right / len(x)


print(f"LeNet-style CNN, {model.num_parameters()} parameters, {len(x_train)} training digits, "
      f"batch {BATCH}, Adam lr {LR}")
t0 = time.perf_counter()
# products this small run fastest on one BLAS thread, on a busy machine by far (see rg.blas)
with blas.limit("auto", blas.product_work(model, BATCH)):
    for epoch in range(1, EPOCHS + 1):
        total, n = 0.0, 0
        for xb, yb in loader:
            loss, _ = step(xb, yb)
            total, n = total + loss.item() * len(yb), n + len(yb)
        schedule.step()
        print(f"epoch {epoch}: training loss {total / n:.4f}, test accuracy "
              f"{accuracy(x_test, y_test) * 100:.1f}% ({time.perf_counter() - t0:.1f}s)")
