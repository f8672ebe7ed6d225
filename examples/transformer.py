"""A tiny transformer block, written from library parts, learns to reverse digit strings.

Input: 8 random digits; target at position i: the digit at position 7 - i. No position
can be copied from itself, so every output must come through attention -- and since
attention alone is blind to order, through the positional encoding. The block is the
one of Vaswani et al. (2017): token embedding + sinusoidal position code, multi-head
self-attention, residual + LayerNorm, a feed-forward net, residual + LayerNorm
(nn.TransformerEncoderLayer packages the same), then a linear read-out of the digit.
Each training step is one compiled call (rg.graph.compile_step).

Set RETROGRAD_FAST=1 for a shorter run.
"""
import os
import time

import numpy as np

import retrograd as rg
from retrograd import nn

FAST = os.environ.get("RETROGRAD_FAST") == "1"
DIGITS, LENGTH, D_MODEL, HEADS = 10, 8, 32, 4
STEPS, BATCH = (300 if FAST else 800), 64


def positional_encoding(length, d):
    """sin/cos of the position at geometric frequencies (Vaswani et al., §3.5)."""
    pos = np.arange(length)[:, None]
    freq = np.exp(-np.log(10000.0) * np.arange(0, d, 2) / d)
    pe = np.zeros((length, d), np.float32)
    pe[:, 0::2], pe[:, 1::2] = np.sin(pos * freq), np.cos(pos * freq)
    return pe


class Block(nn.Module):
    """Post-norm transformer block: x + attention, LayerNorm, x + feed-forward, LayerNorm."""

    def __init__(self, d, heads, d_ff):
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, d_ff, init="he"), nn.ReLU(), nn.Linear(d_ff, d))
        self.norm2 = nn.LayerNorm(d)

    def forward(self, x):
        a, _ = self.attn(x, x, x, need_weights=False)
        x = self.norm1(x + a)
        return self.norm2(x + self.ff(x))


class Reverser(nn.Module):
    def __init__(self):
        self.embed = nn.Embedding(DIGITS, D_MODEL)
        self.pe = rg.tensor(positional_encoding(LENGTH, D_MODEL))   # a constant
        self.block = Block(D_MODEL, HEADS, 4 * D_MODEL)
        self.out = nn.Linear(D_MODEL, DIGITS)

    def forward(self, ids):                    # (N, L) digits -> (N·L, 10) logits
        h = self.block(self.embed(ids) + self.pe)
        return rg.reshape(self.out(h), (-1, DIGITS))


def batch(rng, n):
    x = rng.integers(0, DIGITS, (n, LENGTH))
    return x, x[:, ::-1].reshape(-1).copy()


rng = np.random.default_rng(0)
rg.manual_seed(0)
model = Reverser()
opt = rg.optim.Adam(model.parameters(), lr=3e-3)
step = rg.graph.compile_step(model, nn.CrossEntropyLoss(), opt)
print(f"model: {model.num_parameters()} parameters, sequences of {LENGTH} digits, "
      f"{STEPS} steps of {BATCH}")
t0 = time.perf_counter()
first = None
for i in range(1, STEPS + 1):
    loss, _ = step(*batch(rng, BATCH))
    first = first if first is not None else loss.item()
    if i % (STEPS // 4) == 0:
        print(f"step {i:5d}  loss {loss.item():.4f}")
seconds = time.perf_counter() - t0

model.eval()
x, y = batch(np.random.default_rng(1), 1000)
with rg.no_grad():
    pred = model(x).numpy().argmax(axis=1)
token = (pred == y).mean()
whole = (pred.reshape(-1, LENGTH) == y.reshape(-1, LENGTH)).all(axis=1).mean()
print(f"training loss {first:.3f} -> {loss.item():.4f} in {seconds:.1f} s")
print(f"test: {100 * token:.1f}% of digits, {100 * whole:.1f}% of whole sequences reversed")
print("e.g.", "".join(map(str, x[0])), "->", "".join(map(str, pred[:LENGTH])))
