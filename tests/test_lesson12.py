"""Lesson 12: the exercises reject plausible mistakes; DistributedSampler shards, set_epoch and lr scaling."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data.distributed import DistributedSampler

from kit.exercises import verdict
from kit.techniques import distributed as D


# ------------------------------------------------------------------ right answers (reference style)
def all_reduce_mean(grads):
    m = torch.stack(list(grads)).mean(0)
    return [m.clone() for _ in grads]


def warmup_scaled_lr(base_lr, base_batch, global_batch, step, warmup_steps):
    target = base_lr * global_batch / base_batch
    return target if warmup_steps == 0 or step >= warmup_steps else base_lr + (target - base_lr) * step / warmup_steps


def shard_indices(n, rank, world_size, seed, epoch, drop_last=False):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    per = math.ceil((n - world_size) / world_size) if drop_last and n % world_size else math.ceil(n / world_size)
    total = per * world_size
    order = (order * math.ceil(total / n))[:total]
    return order[rank:total:world_size]


@pytest.mark.parametrize("ex,fn", [("12.1", all_reduce_mean), ("12.2", warmup_scaled_lr), ("12.3", shard_indices)])
def test_right_answers_pass_on_fresh_inputs(ex, fn):
    for _ in range(5):
        assert verdict(ex, fn) is None


def test_all_reduce_wrong_answers():
    summed = lambda g: [torch.stack(g).sum(0) for _ in g]  # noqa: E731 - all_reduce(SUM) without the division
    assert "on the case '" in verdict("12.1", summed)
    per_element = lambda g: [torch.stack(g).sum(0) / g[0].numel() for _ in g]  # noqa: E731
    assert "on the case '" in verdict("12.1", per_element)
    one = lambda g: torch.stack(g).mean(0)  # noqa: E731 - one tensor instead of one per rank
    assert "one tensor per rank" in verdict("12.1", one)


def test_warmup_lr_wrong_answers():
    no_warmup = lambda b, bb, gb, s, w: b * gb / bb  # noqa: E731
    assert "step 0" in verdict("12.2", no_warmup) or "half-way" in verdict("12.2", no_warmup)
    from_zero = lambda b, bb, gb, s, w: b * gb / bb * min(1.0, s / w) if w else b * gb / bb  # noqa: E731
    assert "half-way" in verdict("12.2", from_zero)
    div_zero = lambda b, bb, gb, s, w: b + (b * gb / bb - b) * min(1.0, s / w)  # noqa: E731
    assert "no warm-up" in verdict("12.2", div_zero) and "ZeroDivisionError" in verdict("12.2", div_zero)
    sqrt_rule = lambda b, bb, gb, s, w: warmup_scaled_lr(b, bb, bb * math.sqrt(gb / bb), s, w)  # noqa: E731
    assert verdict("12.2", sqrt_rule) is not None


def test_shard_wrong_answers():
    def blocks(n, rank, world_size, seed, epoch, drop_last=False):  # contiguous blocks instead of dealt cards
        order = shard_indices(n, 0, 1, seed, epoch)
        per = math.ceil(n / world_size)
        return (order * 2)[rank * per:(rank + 1) * per]
    assert "on the case '" in verdict("12.3", blocks)

    def no_epoch(n, rank, world_size, seed, epoch, drop_last=False):  # forgets set_epoch: seeds with seed only
        return shard_indices(n, rank, world_size, seed, 0, drop_last)
    assert "set_epoch" in verdict("12.3", no_epoch) or "on the case '" in verdict("12.3", no_epoch)

    def no_padding(n, rank, world_size, seed, epoch, drop_last=False):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        return order[rank::world_size]
    assert "not divisible" in verdict("12.3", no_padding) or "fewer examples" in verdict("12.3", no_padding)

    def pad_once(n, rank, world_size, seed, epoch, drop_last=False):  # breaks when n < world_size
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        if drop_last and n % world_size:
            total = (n // world_size) * world_size
        else:
            total = math.ceil(n / world_size) * world_size
        order = (order + order[:total - n])[:total]
        return order[rank:total:world_size]
    assert "fewer examples than ranks" in verdict("12.3", pad_once)


# ------------------------------------------------------------------ teaching fix: the sampler and the lr rule
@pytest.mark.parametrize("n,world,batch", [(1257, 2, 64), (103, 4, 12), (50, 3, 6)])
def test_distributed_sampler_shards_are_disjoint_and_add_up_to_the_global_batches(n, world, batch):
    for epoch in (0, 3):
        shards = []
        for r in range(world):
            s = DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=True, seed=7, drop_last=True)
            s.set_epoch(epoch)
            shards.append(list(s))
        flat = [i for sh in shards for i in sh]
        assert len(flat) == len(set(flat)) and len(flat) >= n - world + 1  # disjoint, cover all but < world
        per = batch // world
        glob = D.global_batches(n, batch, epoch, seed=7)
        steps = len(shards[0]) // per  # the DataLoader drops the incomplete tail
        assert steps == len(glob)
        for s_, g in enumerate(glob):  # step s: the ranks' batches together are the single process's batch s
            assert sorted(i for sh in shards for i in sh[s_ * per:(s_ + 1) * per]) == sorted(g.tolist())


def test_set_epoch_changes_the_order_and_without_it_nothing_changes():
    s = DistributedSampler(range(100), num_replicas=2, rank=0, shuffle=True, seed=0)
    first, again = list(s), list(s)
    s.set_epoch(1)
    assert first == again and list(s) != first and sorted(list(s)) != sorted(first)


def test_make_loader_uses_distributed_sampler():
    from kit.techniques import ddp_train
    X, y = torch.arange(20.0).reshape(10, 2), torch.arange(10)
    loaders = [ddp_train.make_loader(X, y, 4, r, 2, seed=1) for r in range(2)]
    assert all(isinstance(ld.sampler, DistributedSampler) for ld in loaders)
    assert len(loaders[0]) == len(D.global_batches(10, 4, 0, 1)) == 2
    for ld in loaders:
        ld.sampler.set_epoch(2)
    got = sorted(int(v) for ld in loaders for _, yb in ld for v in yb)
    assert got == sorted(torch.cat(D.global_batches(10, 4, 2, 1)).tolist())


def test_linear_scaled_lr():
    assert D.linear_scaled_lr(0.05, 64, 256) == pytest.approx(0.2)  # 4× the global batch → 4× the rate
    assert D.linear_scaled_lr(0.1, 256, 64) == pytest.approx(0.025)
    assert D.linear_scaled_lr(0.05, 32, 32 * 8) == pytest.approx(0.05 * 8)  # 8 ranks × the same per-rank batch
    with pytest.raises(ValueError):
        D.linear_scaled_lr(0.1, 0, 64)


def test_scaled_lr_trains_a_larger_batch_further_than_the_same_lr():
    torch.set_num_threads(1)
    cfg = dict(epochs=2, hidden=32, seed=0)
    same = D.train_reference(D.DDPConfig(batch_size=256, lr=0.05, **cfg))
    scaled = D.train_reference(D.DDPConfig(batch_size=256, lr=D.linear_scaled_lr(0.05, 64, 256), **cfg))
    last = lambda r: sum(r["losses"][-4:]) / 4  # noqa: E731 - the last epoch's 4 steps
    assert last(scaled) < last(same)
