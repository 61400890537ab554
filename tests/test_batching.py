"""rnnkit.data.batching: padding, masks, masked losses and batches of similar lengths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnkit.data.batching import LengthBuckets, length_mask, masked_cross_entropy, masked_mean, pad, shard

LENGTHS = np.random.default_rng(0).integers(1, 200, size=1000)


def test_every_sequence_once_an_epoch_and_each_epoch_drawn_from_the_seed_alone():
    buckets = LengthBuckets(LENGTHS, batch_size=32, seed=3)
    for epoch in (0, 1, 7):
        seen = np.concatenate(buckets.epoch(epoch))
        assert sorted(seen.tolist()) == list(range(len(LENGTHS)))
    again = LengthBuckets(LENGTHS, batch_size=32, seed=3)  # a resumed run builds its sampler anew
    assert all(np.array_equal(a, b) for a, b in zip(buckets.epoch(5), again.epoch(5), strict=True))
    assert np.array_equal(buckets.batch(5, 3), again.batch(5, 3))
    assert not np.array_equal(np.concatenate(buckets.epoch(0)), np.concatenate(buckets.epoch(1)))
    other_seed = LengthBuckets(LENGTHS, batch_size=32, seed=4)
    assert not np.array_equal(np.concatenate(buckets.epoch(0)), np.concatenate(other_seed.epoch(0)))
    assert np.array_equal(buckets.batch(0, len(buckets)), buckets.batch(0, 0))  # the index wraps


def test_similar_lengths_together_waste_little_padding():
    buckets = LengthBuckets(LENGTHS, batch_size=32, seed=0)
    rng = np.random.default_rng(0)
    random = [b for b in np.array_split(rng.permutation(len(LENGTHS)), len(LENGTHS) // 32)]
    random_share = 1 - LENGTHS.sum() / sum(len(b) * LENGTHS[b].max() for b in random)
    assert buckets.padding_share() < 0.1 < 0.3 < random_share


def test_a_token_budget_bounds_each_padded_batch():
    buckets = LengthBuckets(LENGTHS, batch_size=None, max_tokens=800, seed=0)
    for batch in buckets.epoch(0):
        assert len(batch) == 1 or len(batch) * LENGTHS[batch].max() <= 800
    with pytest.raises(ValueError):
        LengthBuckets(LENGTHS, batch_size=32, max_tokens=800)


def test_shortest_first_orders_only_the_first_epochs():
    buckets = LengthBuckets(LENGTHS, batch_size=32, seed=0, shortest_first=1)
    first = [int(LENGTHS[b].max()) for b in buckets.epoch(0)]
    later = [int(LENGTHS[b].max()) for b in buckets.epoch(1)]
    assert first == sorted(first) and later != sorted(later)
    plain = LengthBuckets(LENGTHS, batch_size=32, seed=0)
    assert sorted(map(tuple, plain.epoch(0))) == sorted(map(tuple, buckets.epoch(0)))  # the same batches, reordered
    assert all(np.array_equal(a, b) for a, b in zip(plain.epoch(1), buckets.epoch(1), strict=True))


def test_unshuffled_batches_keep_the_given_order():
    buckets = LengthBuckets(LENGTHS[:70], batch_size=32, shuffle=False)
    assert [b.tolist() for b in buckets.epoch(0)] == [list(range(32)), list(range(32, 64)), list(range(64, 70))]


def test_padding_masks_and_masked_losses_ignore_the_padding():
    seqs = [torch.tensor([1, 2, 3]), torch.tensor([4]), torch.tensor([5, 6])]
    ids, lengths = pad(seqs)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0], [5, 6, 0]] and lengths.tolist() == [3, 1, 2]
    assert length_mask(lengths).tolist() == [[True] * 3, [True, False, False], [True, True, False]]
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 99.0, 99.0], [5.0, 6.0, 99.0]])
    assert masked_mean(values, lengths).item() == pytest.approx(21 / 6)
    torch.manual_seed(0)
    logits = torch.randn(3, 3, 7)
    targets = torch.randint(0, 7, (3, 3))
    each = [F.cross_entropy(logits[i, :n], targets[i, :n], reduction="sum") for i, n in enumerate([3, 1, 2])]
    assert masked_cross_entropy(logits, targets, lengths).item() == pytest.approx(sum(each).item() / 6, rel=1e-6)
    assert masked_cross_entropy(logits, targets, lengths, reduction="sum").item() == pytest.approx(
        sum(each).item(), rel=1e-6)


def test_shards_split_a_batch_across_processes():
    idx = np.arange(10)
    parts = [shard(idx, rank, 3) for rank in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(10))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
