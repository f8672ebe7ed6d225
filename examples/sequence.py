"""A character-level LSTM language model: predict the next character of a short text.

The text is cut into 8 parallel streams read in chunks of 25 characters. The state
(h, c) that one chunk ends in is where the next chunk starts -- detached, so the
gradient flows back through 25 steps only (truncated backpropagation through time)
while the model still sees the whole text as one sequence. Then the model writes a
continuation of a prompt greedily, one character at a time, from its own state.

    python examples/sequence.py          # ~15 s; RETROGRAD_FAST=1 for a shorter run
"""
import os

import numpy as np

import retrograd as rg

FAST = os.environ.get("RETROGRAD_FAST") == "1"
TEXT = ("the quick brown fox jumps over the lazy dog. "
        "a stitch in time saves nine. "
        "all that glitters is not gold. "
        "the early bird catches the worm. "
        "actions speak louder than words. ") * 4
CHARS = sorted(set(TEXT))
INDEX = {c: i for i, c in enumerate(CHARS)}
V, HIDDEN, STREAMS, CHUNK = len(CHARS), 96, 8, 25
EPOCHS = 40 if FAST else 100


class CharLSTM(rg.nn.Module):
    def __init__(self):
        self.lstm = rg.nn.LSTM(V, HIDDEN)
        self.head = rg.nn.Linear(HIDDEN, V)

    def forward(self, x, state=None):
        out, state = self.lstm(x, state)            # out: (steps, streams, HIDDEN)
        return self.head(out), state


def one_hot(ids):
    return rg.tensor(np.eye(V, dtype=np.float32)[ids])


def streams():
    """The text as STREAMS rows read side by side: (time, stream) character ids."""
    ids = np.array([INDEX[c] for c in TEXT])
    n = (len(ids) - 1) // STREAMS
    return ids[:n * STREAMS].reshape(STREAMS, n).T, ids[1:n * STREAMS + 1].reshape(STREAMS, n).T


def train(model):
    xs, ys = streams()
    opt = rg.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(EPOCHS):
        state, total, right, count = None, 0.0, 0, 0
        for t0 in range(0, len(xs), CHUNK):
            x, y = xs[t0:t0 + CHUNK], ys[t0:t0 + CHUNK]
            logits, state = model(one_hot(x), state)
            state = tuple(s.detach() for s in state)   # truncated BPTT: cut the graph here
            loss = rg.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * y.size
            right += int((logits.numpy().argmax(-1) == y).sum())
            count += y.size
        if epoch % (EPOCHS // 5) == 0 or epoch == EPOCHS - 1:
            print(f"epoch {epoch:3d}  cross-entropy {total / count:.3f}  "
                  f"next-character accuracy {right / count:.3f}")
    return right / count


def generate(model, prompt, n):
    """Greedy continuation: feed the prompt, then each predicted character back in."""
    with rg.no_grad():
        logits, state = model(one_hot(np.array([[INDEX[c]] for c in prompt])))
        out = []
        for _ in range(n):
            nxt = int(logits.numpy()[-1, 0].argmax())
            out.append(CHARS[nxt])
            logits, state = model(one_hot(np.array([[nxt]])), state)
    return "".join(out)


if __name__ == "__main__":
    rg.manual_seed(0)
    model = CharLSTM()
    print(f"text of {len(TEXT)} characters, {V} distinct; LSTM({V}, {HIDDEN}) + Linear({HIDDEN}, "
          f"{V}), {model.num_parameters()} parameters")
    accuracy = train(model)
    print(f"final next-character accuracy: {accuracy:.3f}")
    prompt = "the quick"
    print(f"greedy continuation of {prompt!r}: {prompt + generate(model, prompt, 40)!r}")
