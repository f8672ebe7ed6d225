"""DataLoader: batches of Tensors from a Dataset, online, minibatch or full batch."""
from __future__ import annotations

import copy
import math

import numpy as np

from ..tensor import Tensor, as_tensor, default_generator
from .dataset import ArrayDataset
from .errors import DataError

# Bit generators a saved state may name; set_generator_state builds only these.
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


class DataLoader:
    """Iterate over ``dataset`` in batches; each batch is a tuple of ``Tensor``.

    ``batch_size``: ``1`` is online learning (one sample per step), an int ``b`` is
    minibatch learning, ``None`` or ``"full"`` is batch learning (the whole set as
    one batch). ``shuffle`` draws a fresh permutation from the loader's own
    ``numpy.random.Generator`` at the start of every epoch (every ``iter()``). The
    generator is seeded by ``seed``; with ``seed=None`` and ``shuffle=True`` the seed
    is drawn from retrograd's global generator, so ``rg.manual_seed`` makes it
    deterministic. ``generator_state()`` / ``set_generator_state()`` save and restore
    it so a resumed run sees the same order.

    For an ``ArrayDataset`` each batch indexes every array once (unshuffled batches
    are views, shuffled ones copies); other datasets are read item by item and the
    fields stacked with ``np.stack``. Batches share memory with that data and do
    not require grad.

    ``shard=(rank, size)`` (data-parallel training, rg.distributed): each batch is
    rank ``rank``'s contiguous slice of the global batch of ``batch_size`` rows (sizes
    differ by at most one), the order the same on every rank, so the ranks together see
    exactly the batches of an unsharded loader; ``len()`` counts global batches and
    ``global_rows(k)`` is the size of global batch ``k``.
    """

    def __init__(self, dataset, batch_size=1, shuffle: bool = False, drop_last: bool = False,
                 seed: int | None = None, shard=None):
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise DataError(f"DataLoader: dataset must have __len__ and __getitem__, "
                            f"got {type(dataset).__name__}")
        self.dataset = dataset
        self.full_batch = batch_size is None or (isinstance(batch_size, str)
                                                 and batch_size == "full")
        if not self.full_batch:
            if (isinstance(batch_size, (bool, np.bool_))
                    or not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
                raise DataError(f"DataLoader: batch_size must be a positive int, None or "
                                f"'full', got {batch_size!r}")
            batch_size = int(batch_size)
        self._batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if seed is None:
            # Only a shuffling loader consumes the global stream, so adding an
            # unshuffled loader does not change other seeded randomness.
            seed = int(default_generator().integers(2**63)) if self.shuffle else 0
        self.seed = seed
        self._gen = np.random.default_rng(seed)
        if shard is not None:
            r, size = shard
            if not 0 <= r < size:
                raise DataError(f"DataLoader: shard {shard!r} is not (rank, size) with "
                                "0 <= rank < size")
        self.shard = shard

    def global_rows(self, k) -> int:
        """Rows in global batch ``k`` (all ranks' slices together)."""
        return min(len(self.dataset), (k + 1) * self.batch_size) - k * self.batch_size

    @property
    def batch_size(self) -> int:
        """Samples per batch (the dataset size for full-batch learning)."""
        return len(self.dataset) if self.full_batch else self._batch_size

    def __len__(self) -> int:
        n, b = len(self.dataset), self.batch_size
        if n == 0:
            return 0
        return n // b if self.drop_last else math.ceil(n / b)

    def __iter__(self):
        # The permutation is drawn here, not at the first next(), so the generator
        # state after iter() already accounts for this epoch.
        n = len(self.dataset)
        order = self._gen.permutation(n) if self.shuffle else None
        return self._batches(order, n)

    def _batches(self, order, n):
        b = self.batch_size
        ds = self.dataset
        fast = isinstance(ds, ArrayDataset)
        for k in range(len(self)):
            start, stop = k * b, min(k * b + b, n)
            if self.shard is not None:        # this rank's part of the global batch
                r, size = self.shard
                rows = stop - start
                start, stop = start + rows * r // size, start + rows * (r + 1) // size
            idx = slice(start, stop) if order is None else order[start:stop]
            if fast:
                yield tuple(as_tensor(a[idx]) for a in ds.arrays)
            else:
                items = range(start, stop) if order is None else idx.tolist()
                yield _collate([ds[i] for i in items])

    # ---- reproducibility
    def generator_state(self) -> dict:
        """The shuffling generator's state: a dict of str and int (JSON-able)."""
        return copy.deepcopy(self._gen.bit_generator.state)

    def set_generator_state(self, state: dict) -> None:
        """Restore a state from ``generator_state()``; the next epoch's order follows."""
        if not isinstance(state, dict) or "bit_generator" not in state:
            raise DataError("set_generator_state: expected the dict returned by "
                            f"generator_state(), got {type(state).__name__}")
        name = state["bit_generator"]
        if name not in _BIT_GENERATORS:
            raise DataError(f"set_generator_state: unknown bit generator {name!r}, "
                            f"expected one of {', '.join(_BIT_GENERATORS)}")
        bitgen = getattr(np.random, name)()
        try:
            bitgen.state = copy.deepcopy(state)
        except (ValueError, TypeError, KeyError) as e:
            raise DataError(f"set_generator_state: invalid {name} state: {e}") from None
        self._gen = np.random.Generator(bitgen)

    def __repr__(self):
        b = "'full'" if self.full_batch else self._batch_size
        return (f"DataLoader({self.dataset!r}, batch_size={b}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, batches={len(self)})")


def _field(values, k=None):
    vals = [v.data if isinstance(v, Tensor) else v for v in values]
    first = vals[0]
    if isinstance(first, bool):
        dtype = np.bool_
    elif isinstance(first, int):      # Python numbers follow rg.tensor's defaults
        dtype = np.int64
    elif isinstance(first, float):
        dtype = np.float32
    else:
        dtype = None
    try:
        out = np.stack([np.asarray(v) for v in vals])
    except ValueError as e:
        where = "" if k is None else f" field {k}"
        raise DataError(f"DataLoader: cannot stack samples{where} into a batch: {e}") from None
    return out if dtype is None else out.astype(dtype, copy=False)


def _collate(items):
    """Samples -> one tuple of batched Tensors (one Tensor per sample field)."""
    first = items[0]
    if isinstance(first, (tuple, list)):
        m = len(first)
        if any(not isinstance(it, (tuple, list)) or len(it) != m for it in items):
            raise DataError(f"DataLoader: samples have different numbers of fields "
                            f"(the first has {m})")
        return tuple(as_tensor(_field([it[k] for it in items], k)) for k in range(m))
    return (as_tensor(_field(items)),)
