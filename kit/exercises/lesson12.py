"""Lesson 12 exercises: data-parallel training (all-reduce, learning-rate scaling, DistributedSampler's shards)."""
from __future__ import annotations


import torch

from kit.exercises import Case, compare, function, randn as _t
from kit.exercises.declare import Budget, Headline, LessonEntry


# ------------------------------------------------------------------ 12.1 all-reduce (mean)

def _all_reduce_mean(grads_per_rank):
    mean = torch.stack(list(grads_per_rank)).sum(0) / len(grads_per_rank)
    return [mean.clone() for _ in grads_per_rank]


def _allreduce_cases(rng):
    w, d = int(rng.integers(2, 9)), int(rng.integers(2, 12))
    yield Case(f"{w} ranks, gradients of {d} numbers", ([_t(rng, d) for _ in range(w)],))
    yield Case("2 ranks, 2-D gradients (a weight matrix)", ([_t(rng, 3, 4), _t(rng, 3, 4)],))
    yield Case("one rank (world size 1: nothing to average)", ([_t(rng, 5)],))
    yield Case("3 ranks, large and small values", ([_t(rng, 4, scale=1e6), _t(rng, 4, scale=1e-6), _t(rng, 4)],))


def _same_on_every_rank(got, want):
    if not isinstance(got, (list, tuple)):
        return f"its result should be a list with one tensor per rank, got {type(got).__name__}"
    if len(got) != len(want):
        return f"its result has {len(got)} tensors, expected one per rank ({len(want)})"
    for r, (g, w) in enumerate(zip(got, want)):
        msg = compare(g, w, 1e-9, 1e-7, f"rank {r}'s tensor")
        if msg:
            return msg
    return None


function("12.1", "all-reduce (mean) of the ranks' gradients: every rank ends with the average",
         reference=_all_reduce_mean, cases=_allreduce_cases, same=_same_on_every_rank,
         hints=("After the all-reduce every rank holds the same tensor; return one per rank, in rank order.",
                "all_reduce(SUM) adds the tensors element by element across ranks; DDP then divides by the number "
                "of ranks — not by the number of elements.",
                "Give each rank its own tensor (a fresh one or a clone), so changing one rank's copy cannot "
                "change another's."))


# ------------------------------------------------------------------ 12.2 linear scaling with warm-up

def _warmup_scaled_lr(base_lr, base_batch, global_batch, step, warmup_steps):
    target = base_lr * global_batch / base_batch
    if warmup_steps <= 0 or step >= warmup_steps:
        return target
    return base_lr + (target - base_lr) * step / warmup_steps


def _lr_cases(rng):
    base, w = float(rng.uniform(0.01, 0.2)), int(rng.integers(5, 50))
    b0 = int(rng.choice([32, 64, 128]))
    m = int(rng.integers(2, 9))
    yield Case(f"global batch {m}×{b0}, half-way through a {w}-step warm-up", (base, b0, m * b0, w // 2, w))
    yield Case("step 0: warm-up starts at the base rate", (base, b0, m * b0, 0, w))
    yield Case("after the warm-up: the scaled rate", (base, b0, m * b0, w + int(rng.integers(0, 100)), w))
    yield Case("no warm-up (warmup_steps = 0)", (base, b0, 4 * b0, 3, 0))
    yield Case("a smaller global batch than the base one (scale down)", (base, 256, 64, 100, 10))
    yield Case("the base batch itself: nothing changes", (base, b0, b0, 2, 10))


function("12.2", "the linear learning-rate scaling rule with gradual warm-up",
         reference=_warmup_scaled_lr, cases=_lr_cases, atol=1e-12, rtol=1e-9,
         hints=("First find the target rate: the global batch is some multiple m of the base batch; the rule "
                "multiplies the learning rate by the same m.",
                "During warm-up move in a straight line from the base rate (at step 0) to the target (at step "
                "warmup_steps); from then on, and when there is no warm-up at all, use the target.",
                "Check your edge cases: warmup_steps = 0 must not divide by zero, and a global batch smaller than "
                "the base batch makes the target smaller, not larger."))


# ------------------------------------------------------------------ 12.3 DistributedSampler's shard

def _sampler_shard(n, rank, world_size, seed, epoch, drop_last=False):
    from torch.utils.data.distributed import DistributedSampler
    s = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=drop_last)
    s.set_epoch(epoch)
    return list(s)


def _shard_cases(rng):
    w = int(rng.integers(2, 6))
    n = int(rng.integers(5, 40)) * w
    seed, epoch = int(rng.integers(0, 1000)), int(rng.integers(0, 20))
    yield Case(f"n = {n}, divisible by world size {w}", (n, int(rng.integers(0, w)), w, seed, epoch))
    n2 = n + int(rng.integers(1, w))
    yield Case(f"n = {n2}, not divisible by {w}: the shard is padded by wrapping around",
               (n2, w - 1, w, seed, epoch))
    yield Case(f"n = {n2}, not divisible by {w}, drop_last=True", (n2, 0, w, seed, epoch, True))
    yield Case("another epoch: set_epoch reshuffles", (n2, 0, w, seed, epoch + 1))
    yield Case("world size 1: the whole shuffled data set", (17, 0, 1, seed, epoch))
    yield Case("fewer examples than ranks (n = 3, 8 ranks)", (3, 7, 8, seed, 0))


def _same_indices(got, want):
    try:
        got = [int(i) for i in (got.tolist() if hasattr(got, "tolist") else got)]
    except (TypeError, ValueError):
        return f"its result should be a list of integer indices, got {type(got).__name__}"
    if len(got) != len(want):
        return f"its result has {len(got)} indices, expected {len(want)}"
    if got != want:
        i = next(k for k, (a, b) in enumerate(zip(got, want)) if a != b)
        return f"its result differs first at position {i} (got {got[i]}, expected {want[i]})"
    return None


function("12.3", "rank r's indices for one epoch, exactly as DistributedSampler(shuffle=True) gives them",
         reference=_sampler_shard, cases=_shard_cases, same=_same_indices,
         hints=("Every rank draws the same permutation, from a torch.Generator seeded with seed + epoch; the "
                "ranks then pick different positions of it.",
                "Ranks take positions rank, rank + world_size, rank + 2·world_size, … (dealt like cards, not cut "
                "in blocks). Make the length a multiple of world_size first: with drop_last cut the tail off, "
                "otherwise repeat indices from the start of the permutation (more than once if n < world_size).",
                "Each rank gets ceil(n / world_size) indices, or, with drop_last and n not divisible, "
                "ceil((n − world_size) / world_size): compare len(...) with DistributedSampler's num_samples."))

__all__ = []


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    return (m["world_size"] == m["nproc"] == 2
            # 2 processes × B/2 follow the 1-process curve with batch B
            and m["max_rel_loss_diff"] <= m["rtol"] <= 1e-5 and m["final_weights_max_diff"] < 1e-4
            # a hand-written all_reduce of the gradients is DDP's gradient, and the replicas stay identical
            and m["manual_vs_ddp_max_loss_diff"] <= 1e-6 and m["first_step_grad_max_diff"] <= 1e-6
            and m["replica_max_diff"] == 0.0
            and m["final_loss_ddp"] < 2.0 and abs(m["test_acc_ddp"] - m["test_acc_single"]) < 0.01
            # the linear scaling rule: a global batch lr_scale× larger at the same rate trains less per epoch;
            # the rate scaled by lr_scale makes up for much of it
            and m["loss_big_batch_scaled_lr"] < m["loss_big_batch_same_lr"]
            and m["acc_big_batch_scaled_lr"] >= m["acc_big_batch_same_lr"])


LESSON = LessonEntry(
    number='12', name='distributed', title='Data-parallel training',
    goal='DistributedDataParallel launched by torchrun: 2 processes × B/2 reproduce 1 process × B.',
    teaches='data-parallel training with `torch.distributed` and `DistributedDataParallel`, launched by `torchrun` '
            'from the notebook (2 CPU processes with gloo; nccl on GPUs); 2 processes × B/2 reproduce 1 process × B '
            '(asserted to 1e-5 relative); `DistributedSampler` with `set_epoch`, and the linear learning-rate '
            "scaling rule measured; a hand-written gradient all-reduce equals DDP's; timings; the same script on "
            'several machines',
    data='8×8 digits (scikit-learn, real)',
    metrics=(
        Headline('max_rel_loss_diff', '2 × B/2 vs 1 × B (relative loss gap)', 1e-05, 'lower'),
        Headline('test_acc_ddp', 'test accuracy (DDP)', None, unit='%'),
    ),
    smoke_bar=smoke_bar,
    budget=Budget(smoke_s=40),  # a smoke run took 22 s on a quiet 2-core machine
)
