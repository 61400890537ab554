"""Variable-length batches: padding, masks, masked losses, and batches of similar lengths.

Sentences, utterances and pieces of music come in different lengths. A batch pads them to its
longest member and carries their ``lengths``, which the recurrent layers take (``lengths=``)
and the losses below use to ignore the padding. :class:`LengthBuckets` puts sequences of
similar lengths together, so little of a batch is padding, in an order drawn from a seed and
the epoch number alone: the batch at any step is known from the step, so a resumed run reads
exactly the batches an uninterrupted one would have read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def pad(sequences: Sequence[Tensor], value: float = 0, batch_first: bool = True) -> tuple[Tensor, Tensor]:
    """Stack sequences of shape ``(L_i, ...)`` into ``(B, T, ...)`` (or ``(T, B, ...)``) and their lengths ``(B,)``."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.int64)
    padded = torch.nn.utils.rnn.pad_sequence(list(sequences), batch_first=batch_first, padding_value=value)
    return padded, lengths


def length_mask(lengths: Tensor, steps: int | None = None) -> Tensor:
    """``(B, T)`` booleans, True at each sequence's valid steps."""
    steps = int(lengths.max()) if steps is None else steps
    return torch.arange(steps, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def masked_mean(values: Tensor, lengths: Tensor) -> Tensor:
    """Mean of ``values`` ``(B, T)`` over valid steps only."""
    mask = length_mask(lengths.to(values.device), values.shape[1])
    return values.masked_select(mask).mean()


def masked_cross_entropy(logits: Tensor, targets: Tensor, lengths: Tensor, label_smoothing: float = 0.0,
                         reduction: str = "mean") -> Tensor:
    """Cross-entropy of ``logits`` ``(B, T, V)`` against ``targets`` ``(B, T)`` over valid steps only.

    ``reduction="sum"`` gives the total over valid steps (for averages over a whole data set).
    """
    mask = length_mask(lengths.to(logits.device), logits.shape[1])
    return F.cross_entropy(logits[mask].float(), targets[mask], label_smoothing=label_smoothing,
                           reduction=reduction)


class LengthBuckets:
    """Batches of indices with similar lengths, reshuffled every epoch from ``seed`` and the epoch alone.

    Each epoch: shuffle all indices, cut them into pools of ``pool`` batches, sort each pool by
    length, cut it into batches, and shuffle the batches. Either ``batch_size`` sequences a
    batch, or with ``max_tokens`` as many as fit that many padded steps (long sequences then
    come in smaller batches). ``shuffle=False`` keeps the given order (for evaluation).
    ``shortest_first=N``: the first N epochs run their batches from the shortest to the longest
    (SortaGrad, Amodei et al. 2016: a CTC model learns to align on short utterances first).
    """

    def __init__(self, lengths: Sequence[int] | np.ndarray, batch_size: int | None = 32, max_tokens: int | None = None,
                 seed: int = 0, shuffle: bool = True, pool: int = 50, drop_last: bool = False,
                 shortest_first: int = 0) -> None:
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if len(self.lengths) == 0:
            raise ValueError("no sequences to batch")
        if (batch_size is None) == (max_tokens is None):
            raise ValueError("give batch_size or max_tokens")
        if (batch_size is not None and batch_size <= 0) or (max_tokens is not None and max_tokens <= 0):
            raise ValueError("batch_size and max_tokens must be positive")
        self.batch_size, self.max_tokens, self.seed = batch_size, max_tokens, seed
        self.shuffle, self.pool, self.drop_last = shuffle, pool, drop_last
        self.shortest_first = shortest_first
        self._cache: tuple[int, list[np.ndarray]] | None = None
        self._count = len(self.epoch(0))

    def __len__(self) -> int:
        """Batches per epoch (the same every epoch when batching by count; epoch 0's by tokens)."""
        return self._count

    def _cut(self, order: np.ndarray) -> list[np.ndarray]:
        if self.batch_size is not None:
            batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
            if self.drop_last and len(batches) > 1 and len(batches[-1]) < self.batch_size:
                batches.pop()
            return batches
        batches, start, longest = [], 0, 0
        for i, idx in enumerate(order):
            longest_if = max(longest, int(self.lengths[idx]))
            if i > start and longest_if * (i - start + 1) > self.max_tokens:
                batches.append(order[start:i])
                start, longest_if = i, int(self.lengths[idx])
            longest = longest_if
        batches.append(order[start:])
        return batches

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """Every batch of ``epoch``, in order."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        if not self.shuffle:
            batches = self._cut(np.arange(len(self.lengths)))
        else:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(len(self.lengths))
            size = (self.batch_size or max(1, self.max_tokens // max(1, int(np.median(self.lengths))))) * self.pool
            batches = []
            for start in range(0, len(order), size):
                chunk = order[start:start + size]
                chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
                batches += self._cut(chunk)
            batches = [batches[i] for i in rng.permutation(len(batches))]
            if epoch < self.shortest_first:
                batches.sort(key=lambda b: int(self.lengths[b].max()))
        self._cache = (epoch, batches)
        return batches

    def batch(self, epoch: int, index: int) -> np.ndarray:
        """The indices of batch ``index`` of ``epoch`` (``index`` wraps when an epoch has fewer batches)."""
        batches = self.epoch(epoch)
        return batches[index % len(batches)]

    def padding_share(self, epoch: int = 0) -> float:
        """Share of padded steps over an epoch's batches: what bucketing saves against random batches."""
        padded = sum(len(b) * int(self.lengths[b].max()) for b in self.epoch(epoch))
        return 1 - float(self.lengths.sum()) / max(1, padded)


def shard(indices: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This process's share of a batch under data parallelism: contiguous, sizes differing by at most one
    (so no process is left without work while another has two items more)."""
    if world <= 1:
        return indices
    return np.array_split(indices, world)[rank]


__all__ = ["LengthBuckets", "length_mask", "masked_cross_entropy", "masked_mean", "pad", "shard"]
