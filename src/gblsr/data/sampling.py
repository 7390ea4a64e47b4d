"""Training randomness and batch order, pure functions of (seed, epoch, sample index).

Every crop, scale, flip and query subset is drawn from a generator seeded with exactly those
numbers (:func:`sample_rng`), and the sample order of an epoch from (seed, epoch)
(:class:`ResumableBatchSampler`). So crops differ across epochs and seeds, results do not
depend on the number of loader workers, a resumed run sees exactly the batches the
uninterrupted run would have seen, and data-parallel ranks split each global batch without
coordination.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from ..errors import UserInputError

__all__ = [
    "sample_rng",
    "split_key",
    "batch_step",
    "batch_scale",
    "augment",
    "ResumableBatchSampler",
]


# --------------------------------------------------------------------------- randomness


def sample_rng(*keys: int) -> np.random.Generator:
    """A generator determined by ``keys`` (seed, epoch, index, ...), all non-negative ints."""
    return np.random.default_rng([int(k) & 0xFFFFFFFFFFFFFFFF for k in keys])


def split_key(key: Any) -> tuple[int, int]:
    """Dataset keys are ``idx`` (epoch 0) or ``(epoch, idx)`` as the batch sampler yields them."""
    if isinstance(key, (tuple, list)):
        return int(key[0]), int(key[1])
    return 0, int(key)


def batch_step(key: Any) -> int | None:
    """The global step in a ``(epoch, idx, step)`` key (a sampler with ``step_in_key``)."""
    if isinstance(key, (tuple, list)) and len(key) > 2:
        return int(key[2])
    return None


def batch_scale(seed: int, step: int, scale_min: float, scale_max: float) -> float:
    """The scale every sample of global step ``step`` shares, s ~ U(scale_min, scale_max).

    Four keys, so the stream never coincides with a per-sample ``(seed, epoch, idx)`` one; it
    depends on (seed, step) only, so every data-parallel rank and a resumed run draw the same.
    """
    return float(sample_rng(seed, 0x5CA1E, 0xBA7C, step).uniform(scale_min, scale_max))


def augment(tensors: list[torch.Tensor], rng: np.random.Generator) -> list[torch.Tensor]:
    """Same random row flip, column flip and transpose (each p = 0.5, in that order) for all."""
    if rng.random() < 0.5:
        tensors = [t.flip(-2) for t in tensors]
    if rng.random() < 0.5:
        tensors = [t.flip(-1) for t in tensors]
    if rng.random() < 0.5:
        tensors = [t.transpose(-2, -1) for t in tensors]
    return [t.contiguous() for t in tensors]


# --------------------------------------------------------------------------- batch order


class ResumableBatchSampler(Sampler):
    """Endless batches of ``(epoch, index)`` keys, starting at any global step.

    Epoch e visits a permutation of range(n) drawn from (seed, e) (or range(n) in order when
    ``shuffle`` is False), cut into ``n // batch_size`` global batches (the incomplete tail is
    dropped, so every step sees a full batch). Rank r of ``world_size`` yields the r-th
    contiguous slice of each global batch, so the ranks together see exactly what a single
    process with the same global batch sees.

    ``step_in_key``: keys are ``(epoch, index, global step)`` instead, so a dataset can draw
    what a whole global batch shares (one scale per batch, :func:`batch_scale`).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
        total_steps: int | None = None,
        step_in_key: bool = False,
    ):
        if batch_size < 1:
            raise UserInputError(f"batch_size must be >= 1, got {batch_size}")
        if batch_size % world_size:
            raise UserInputError(
                f"the global batch size {batch_size} must be divisible by the number of "
                f"processes ({world_size})"
            )
        if n < batch_size:
            raise UserInputError(
                f"the training set has {n} samples, fewer than one batch of {batch_size}; "
                "add images, raise the repeat count or lower the batch size"
            )
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.start_step = int(start_step)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.total_steps = total_steps
        self.local_batch = self.batch_size // self.world_size
        self.step_in_key = bool(step_in_key)

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size

    def epoch_order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return sample_rng(self.seed, 0x5EED, epoch).permutation(self.n)

    def _keys(self, epoch: int, step: int, idx) -> list[tuple[int, ...]]:
        if self.step_in_key:
            return [(epoch, int(i), step) for i in idx]
        return [(epoch, int(i)) for i in idx]

    def global_batch(self, step: int) -> list[tuple[int, ...]]:
        """All keys of global step ``step`` (every rank's share)."""
        epoch, b = divmod(int(step), self.steps_per_epoch)
        order = self.epoch_order(epoch)
        return self._keys(epoch, int(step), order[b * self.batch_size : (b + 1) * self.batch_size])

    def __iter__(self) -> Iterator[list[tuple[int, ...]]]:
        step = self.start_step
        cached_epoch, order = -1, None
        while self.total_steps is None or step < self.total_steps:
            epoch, b = divmod(step, self.steps_per_epoch)
            if epoch != cached_epoch:
                cached_epoch, order = epoch, self.epoch_order(epoch)
            lo = b * self.batch_size + self.rank * self.local_batch
            yield self._keys(epoch, step, order[lo : lo + self.local_batch])
            step += 1

    def __len__(self) -> int:
        if self.total_steps is None:
            raise TypeError("an endless batch sampler has no length")
        return max(0, self.total_steps - self.start_step)
