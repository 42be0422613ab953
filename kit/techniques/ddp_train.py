"""Data-parallel training script, started by ``torchrun`` (one process per rank).

    python -m torch.distributed.run --nproc-per-node=2 --master-port=29500 -m kit.techniques.ddp_train --out=ddp.json

``torchrun`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each
process's environment; :func:`torch.distributed.init_process_group` reads them. The backend is gloo on
CPU and nccl when each process has a GPU (``--backend=auto``).

Each rank reads its share of every epoch through a :class:`~torch.utils.data.distributed.DistributedSampler`
(:func:`make_loader`; ``sampler.set_epoch(epoch)`` reshuffles each epoch, the same way on every rank).

Two replicas of the same model train side by side on the same shards:
* ``ddp`` — wrapped in :class:`torch.nn.parallel.DistributedDataParallel`, which all-reduces gradient
  buckets *during* ``backward()`` (overlapping communication with computation);
* ``manual`` — a plain module whose gradients :func:`allreduce_gradients` averages after ``backward()``.
Rank 0 writes both loss curves (each step's loss averaged over ranks), the largest difference between
the two gradients at the first step, and the final weights, to ``--out`` (JSON) and ``<out>.pt``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from kit.models.base import accuracy_of
from kit.techniques.distributed import DDPConfig, load_task, make_model


def make_loader(X: torch.Tensor, y: torch.Tensor, global_batch: int, rank: int, world: int, seed: int) -> DataLoader:
    """Rank ``rank``'s data: a DistributedSampler (disjoint shards, shuffled with ``seed + epoch``) in a DataLoader
    of ``global_batch / world`` rows per step. Both drop the incomplete tail, so every rank takes the same
    number of steps (a rank with one step more would wait forever in its all-reduce)."""
    sampler = DistributedSampler(TensorDataset(X, y), num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                 drop_last=True)
    return DataLoader(TensorDataset(X, y), batch_size=global_batch // world, sampler=sampler, drop_last=True)


def allreduce_gradients(model: torch.nn.Module) -> None:
    """What DDP does, by hand: sum each gradient over all processes, divide by their number."""
    world = dist.get_world_size()
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world


def _mean_over_ranks(x: float) -> float:
    t = torch.tensor([x], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return (t / dist.get_world_size()).item()


def _replica_spread(model: torch.nn.Module) -> float:
    """Largest |w_rank − w_rank0| over all weights and ranks (DDP keeps replicas identical)."""
    worst = torch.zeros(1, dtype=torch.float64)
    for p in model.parameters():
        ref = p.detach().clone()
        dist.broadcast(ref, src=0)
        worst = torch.maximum(worst, (p.detach() - ref).abs().max().double().reshape(1))
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return worst.item()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file rank 0 writes")
    ap.add_argument("--backend", default="auto", choices=["auto", "gloo", "nccl"])
    ap.add_argument("--data", default="", help="a .pt file of (X_train, y_train, X_test, y_test); default: load the digits")
    for k, v in vars(DDPConfig()).items():
        ap.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=v)
    a = ap.parse_args(argv)
    cfg = DDPConfig(**{k: getattr(a, k) for k in vars(DDPConfig())})

    use_cuda = a.backend == "nccl" or (a.backend == "auto" and torch.cuda.is_available())
    backend = "nccl" if use_cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()

    task = torch.load(a.data, weights_only=True) if a.data else load_task(cfg.seed)
    Xtr, ytr, Xte, yte = task
    Xte, yte = Xte.to(device), yte.to(device)
    loader = make_loader(Xtr, ytr, cfg.batch_size, rank, world, cfg.seed)
    ddp = DDP(make_model(cfg).to(device), device_ids=[local_rank] if use_cuda else None)
    manual = make_model(cfg).to(device)
    opt_ddp = torch.optim.SGD(ddp.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    opt_man = torch.optim.SGD(manual.parameters(), lr=cfg.lr, momentum=cfg.momentum)

    losses_ddp, losses_manual, grad_diff = [], [], None
    t_ddp = t_manual = 0.0
    dist.barrier()
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        loader.sampler.set_epoch(epoch)  # without it every epoch repeats epoch 0's order
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            # DDP: the all-reduce happens inside backward()
            t = time.perf_counter()
            loss = F.cross_entropy(ddp(xb), yb)
            opt_ddp.zero_grad(set_to_none=True)
            loss.backward()
            t_ddp += time.perf_counter() - t
            # the same step by hand
            t = time.perf_counter()
            loss_m = F.cross_entropy(manual(xb), yb)
            opt_man.zero_grad(set_to_none=True)
            loss_m.backward()
            allreduce_gradients(manual)
            t_manual += time.perf_counter() - t
            if grad_diff is None:
                grad_diff = max((p.grad - q.grad).abs().max().item()
                                for p, q in zip(ddp.module.parameters(), manual.parameters()))
            t = time.perf_counter()
            opt_ddp.step()
            t_ddp += time.perf_counter() - t
            t = time.perf_counter()
            opt_man.step()
            t_manual += time.perf_counter() - t
            losses_ddp.append(_mean_over_ranks(loss.item()))
            losses_manual.append(_mean_over_ranks(loss_m.item()))
    seconds = time.perf_counter() - t0
    spread = _replica_spread(ddp.module)
    t_ddp, t_manual = _mean_over_ranks(t_ddp), _mean_over_ranks(t_manual)  # collectives: every rank calls them
    acc = accuracy_of(ddp.module, Xte, yte)
    if rank == 0:
        out = Path(a.out)
        state_path = out.with_suffix(".pt")
        torch.save({k: v.cpu() for k, v in ddp.module.state_dict().items()}, state_path)
        doc = {"world_size": world, "backend": backend, "config": vars(cfg), "per_process_batch": cfg.batch_size // world,
               "steps_per_epoch": len(loader), "sampler": type(loader.sampler).__name__,
               "losses_ddp": losses_ddp, "losses_manual": losses_manual, "first_step_grad_max_diff": grad_diff,
               "replica_max_diff": spread, "test_acc": acc, "seconds": seconds,
               "seconds_ddp": t_ddp, "seconds_manual": t_manual, "state_path": str(state_path),
               "torch": torch.__version__}
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, out)
    dist.barrier()  # nobody tears down its connections while another rank is still working
    dist.destroy_process_group()
    # Skip the interpreter's teardown: gloo's threads occasionally abort ("terminate called without an
    # active exception") while C++ globals are destroyed, after all work is done and written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
