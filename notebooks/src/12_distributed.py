# %% [markdown] id="c00"
# # 12 — Data-parallel training with torch.distributed
#
# **Goals.** Train one model with several processes using `torch.distributed` and
# `DistributedDataParallel` (DDP), started by `torchrun` from this notebook — two CPU processes talking
# through the gloo backend here, one process per GPU with nccl on a GPU machine. See, and check, that
# 2 processes with half a batch each follow **the same loss curve** as 1 process with the whole batch;
# open up the gradient **all-reduce** that makes this true (a hand-written `all_reduce` of the gradients
# gives exactly DDP's); time it; and learn how the same script runs on several machines.
#
# **Data.** scikit-learn's 1 797 real 8×8 handwritten digits (UCI).
# %% tags=["parameters"]
seed = 0            # random seed
device = "auto"     # "auto", "cpu", "cuda" or "mps": with ≥ nproc GPUs the processes use nccl, otherwise gloo on the CPU
smoke = False       # tiny run for tests
nproc = 2           # processes (ranks) on this machine
epochs = 5          # passes over the training set
batch_size = 64     # GLOBAL batch: each process gets batch_size / nproc examples per step
hidden = 128        # width of the MLP's two hidden layers
lr = 0.05           # SGD learning rate (momentum 0.9)
rtol = 1e-5         # tolerance: largest relative loss difference, DDP vs one process (CPU)
threads = 1         # CPU threads of this notebook's process (0: all usable cores); each DDP process gets 1
# %%
import kit
from kit.params import Float, Int, validate

validate(globals(), nproc=Int(1, 64), epochs=Int(1, 1000),
         batch_size=Int(2, 1024), hidden=Int(1, 8192), lr=Float(0, 10, lo_open=True), rtol=Float(0, 1, lo_open=True),
         threads=Int(0, 1024))
if batch_size % nproc:
    from kit.params import ParameterError
    raise ParameterError(f"parameter 'batch_size' must be divisible by nproc={nproc}, got {batch_size}")
dev = kit.setup(seed, device, threads=threads or None)
if smoke:
    epochs, hidden = min(epochs, 2), min(hidden, 64)
# %%
import numpy as np
import torch

import kit.viz as viz
from kit.techniques import distributed as D
from kit.techniques import ddp_train

cfg = D.DDPConfig(epochs=epochs, batch_size=batch_size, lr=lr, hidden=hidden, seed=seed)
use_nccl = dev.type == "cuda" and torch.cuda.device_count() >= nproc
backend = "nccl" if use_nccl else "gloo"
print(cfg, f"→ {nproc} processes × {batch_size // nproc} examples per step, backend {backend}")
# %% [markdown] id="c04"
# ## The idea
# Every process (**rank**) holds a full copy of the model. At each step the *global* batch of $B$
# examples is cut into `nproc` equal shards; rank $r$ computes the mean loss and its gradient $g_r$ on
# its shard of $B/W$ examples. An **all-reduce** then leaves every rank holding the average
# $\bar g = \frac1W\sum_r g_r$ — which is exactly the gradient of the mean loss over all $B$ examples —
# and every rank takes the same optimizer step, so the copies never drift apart.
#
# For the curves to match a single process *exactly* (up to float rounding), both runs must see the
# same examples at each step. Each rank reads its data through PyTorch's
# `torch.utils.data.distributed.DistributedSampler`: every rank draws **the same** permutation of the
# $n$ training examples (a generator seeded with `seed + epoch`) and takes every $W$-th position, starting
# at its rank — dealt out like cards, so the shards are disjoint and together cover the data. A
# `DataLoader` then cuts the rank's shard into batches of $B/W$. At step $s$ rank $r$ takes positions
# $(sB/W + j)\,W + r$, $j < B/W$; over all ranks these are exactly the positions $sB, …, (s+1)B-1$ — the
# contiguous global batch $s$ of the same permutation, which is what the one-process reference trains on
# (`global_batches`). The last, incomplete batch is dropped (`drop_last=True` in both sampler and loader),
# so every rank takes the same number of steps: a rank with one step more would wait forever in its
# all-reduce. There is no dropout, whose random masks would differ between the runs.
#
# **`set_epoch`.** The sampler's shuffle depends on `seed + epoch`, and the epoch is whatever you last
# told it: call `sampler.set_epoch(epoch)` at the start of every epoch, or every epoch repeats the first
# one's order.
# %%
viz.source(ddp_train.make_loader, D.global_batches, ddp_train.allreduce_gradients)
# %%
from torch.utils.data.distributed import DistributedSampler

n_train = len(D.load_task(seed)[0])
world_demo = max(nproc, 2)
samplers = [DistributedSampler(range(n_train), num_replicas=world_demo, rank=r, shuffle=True, seed=seed, drop_last=True)
            for r in range(world_demo)]
shards = [list(s_) for s_ in samplers]
union = set().union(*shards)
print(f"{world_demo} ranks × {len(shards[0])} indices; disjoint: {sum(map(len, shards)) == len(union)}; "
      f"they cover {len(union)} of the {n_train} examples (drop_last drops {n_train - len(union)})")
per_rank = batch_size // world_demo
step0 = sorted(i for sh in shards for i in sh[:per_rank])
print(f"step 0: the ranks' batches of {per_rank} together are global batch 0: "
      f"{step0 == sorted(D.global_batches(n_train, per_rank * world_demo, 0, seed)[0].tolist())}")
again = list(samplers[0])[:8]  # a second pass, without set_epoch
samplers[0].set_epoch(1)
print(f"rank 0 starts epoch 0 with {shards[0][:8]}; a second pass without set_epoch: {again} "
      f"(the same order: {again == shards[0][:8]}); after set_epoch(1): {list(samplers[0])[:8]}")
# %% [markdown] id="c07"
# ## One process, global batch B
# The reference, trained right here (on the CPU).
# %%
ref = D.train_reference(cfg)
print(f"{len(ref['losses'])} steps in {ref['seconds']:.2f} s, test accuracy {ref['test_acc']:.4f}")
# %% [markdown] id="c09"
# ## `nproc` processes, batch B / nproc each, launched with torchrun
# `torchrun` (= `python -m torch.distributed.run`) starts the processes and gives each its `RANK`,
# `WORLD_SIZE` and the rendezvous address (`MASTER_ADDR:MASTER_PORT`, a free port here). The script
# `kit/techniques/ddp_train.py` calls `init_process_group`, wraps the model in `DistributedDataParallel`,
# and — to open the box — trains a second copy whose gradients it all-reduces by hand. Rank 0 writes the
# results to a JSON file that this notebook reads, and the final weights beside it; the processes' output
# goes to a log there too. That folder is a scratch folder of this kernel's own (`kit.results.scratch_dir`,
# removed when the kernel stops), not the notebook's folder. Each process runs with `OMP_NUM_THREADS=1`, so
# that processes × threads do not exceed the cores.
# %%
from kit.results import scratch_dir

work = scratch_dir("12")
res = D.launch(nproc, cfg, out=work / "ddp.json", backend=backend, timeout=600)
print(f"torchrun's files: {', '.join(sorted(p.name for p in work.iterdir()))} in {work}")
print(res["command"])
print(f"world size {res['world_size']}, backend {res['backend']}, {res['per_process_batch']} examples per process "
      f"per step; training loop {res['seconds']:.2f} s, whole launch {res['launch_seconds']:.1f} s")
# %%
single, ddp, manual = (np.array(v) for v in (ref["losses"], res["losses_ddp"], res["losses_manual"]))
rel = np.abs(ddp - single) / np.abs(single)
max_rel = float(rel.max())
weights_diff = max((ref["state"][k] - res["state"][k]).abs().max().item() for k in ref["state"])
fig = viz.compare_curves({"1 process, batch B": list(single), f"DDP, {nproc} × B/{nproc}": list(ddp),
                          "manual all-reduce": list(manual)}, title="the same loss curve", xaxis="step",
                         yaxis="training loss (mean over the global batch)")
fig.data[1].line.dash = "dash"
fig.data[2].line.dash = "dot"
viz.show(fig)
viz.show(viz.compare_curves({"|DDP − single| / single": list(np.maximum(rel, 1e-12))}, xaxis="step",
                            title="relative difference per step: float rounding only", yaxis="relative difference",
                            log_y=True))
tol = rtol if backend == "gloo" else max(rtol, 1e-3)  # GPUs: other kernels, other rounding
assert max_rel <= tol, f"DDP differs from one process by {max_rel:.2e} > {tol:g}"
print(f"max relative loss difference {max_rel:.2e} ≤ {tol:g} ✓; final weights differ by at most {weights_diff:.2e}")
# %% [markdown] id="c12"
# The differences are at the level of float32 rounding: summing two half-batch means and halving is not
# bit-for-bit the same sum as one mean over the whole batch.
#
# ## Inside DDP: the gradient all-reduce
# DDP registers hooks on the gradients; as `backward()` produces them, it packs them into ~25 MB
# **buckets** and launches an asynchronous all-reduce per bucket, overlapping communication with the rest
# of the backward pass. The classic algorithm is the **ring all-reduce**: each of the $W$ ranks sends and
# receives $2(W-1)/W$ times the gradient size, independent of $W$ — which is why data parallelism scales.
# Our hand-written version reduces parameter by parameter after `backward()`: slower, same numbers.
# %%
manual_vs_ddp = float(np.abs(manual - ddp).max())
print(f"first step: max |grad_DDP − grad_manual| = {res['first_step_grad_max_diff']:.2e}; "
      f"loss curves differ by at most {manual_vs_ddp:.2e}; "
      f"replicas after training differ by at most {res['replica_max_diff']:.2e}")
assert res["first_step_grad_max_diff"] <= 1e-6 and res["replica_max_diff"] == 0.0
# %% [markdown] id="c14"
# ## Time
# On one machine with a couple of shared CPU cores and a model this small, the processes mostly wait for
# each other: each step moves the whole gradient to compute on only a few dozen examples. Data
# parallelism pays when computation per step dwarfs communication — big models, big batches, GPUs
# connected by NVLink or InfiniBand. Launching also costs seconds (each process imports torch).
# %%
timing = {"single_process_seconds": ref["seconds"], "ddp_loop_seconds": res["seconds"],
          "ddp_only_seconds": res["seconds_ddp"], "manual_allreduce_seconds": res["seconds_manual"],
          "launch_seconds": res["launch_seconds"]}
if not smoke and nproc > 1:
    one = D.launch(1, cfg, out=work / "ddp1.json", backend=backend, timeout=600)
    timing["torchrun_1_process_ddp_only_seconds"] = one["seconds_ddp"]
    print(f"torchrun with 1 process reproduces the reference too: "
          f"max relative difference {np.max(np.abs(np.array(one['losses_ddp']) - single) / single):.1e}")
viz.show(viz.bar({"1 process": ref["seconds"], f"DDP step, {nproc} proc.": res["seconds_ddp"],
                  f"manual all-reduce, {nproc} proc.": res["seconds_manual"]},
                 title="training-loop seconds on this machine (noisy: shared cores)", yaxis="seconds"))
# %% [markdown] id="c16"
# ## More processes: the global batch and the learning rate
# Above, the global batch $B$ stays fixed and each process gets $B/W$. In practice one usually keeps the
# **per-process** batch (what fits on one GPU) and adds processes, so the global batch grows to $W$ times
# as large and an epoch takes $W$ times fewer steps. With the same learning rate, training then moves
# the weights much less per epoch. The **linear scaling rule** (Goyal et al., 2017) multiplies the learning
# rate by the same factor as the global batch, $\eta = \eta_\text{base}\cdot B_\text{global}/B_\text{base}$
# (`D.linear_scaled_lr`): one step on $mB$ examples then moves the weights about as far as $m$ steps on
# $B$ did. It holds up to a point — large rates are unstable early in training, hence a **warm-up** that
# ramps the rate up over the first steps (exercise 12.2) — and it fails for very large batches.
#
# Measured here with the one-process trainer (the DDP run gives the same numbers, as checked above): the
# lesson's batch and rate, a global batch `scale` times larger with the same rate, and with the scaled rate.
# %%
scale = 4
runs = {f"B = {batch_size}, lr = {lr:g}": D.DDPConfig(epochs=epochs, batch_size=batch_size, lr=lr, hidden=hidden, seed=seed),
        f"B = {scale * batch_size}, lr = {lr:g}": D.DDPConfig(epochs=epochs, batch_size=scale * batch_size, lr=lr,
                                                              hidden=hidden, seed=seed)}
lr_scaled = D.linear_scaled_lr(lr, batch_size, scale * batch_size)
runs[f"B = {scale * batch_size}, lr = {lr_scaled:g} (scaled)"] = D.DDPConfig(epochs=epochs, batch_size=scale * batch_size,
                                                                            lr=lr_scaled, hidden=hidden, seed=seed)
scaling = {}
for name, c in runs.items():
    out = D.train_reference(c)
    per_epoch = len(out["losses"]) // epochs
    scaling[name] = {"steps": len(out["losses"]), "last_epoch_loss": float(np.mean(out["losses"][-per_epoch:])),
                     "test_acc": out["test_acc"]}
    print(f"{name:32s} {scaling[name]['steps']:4d} steps; mean training loss in the last epoch "
          f"{scaling[name]['last_epoch_loss']:.4f}; test accuracy {scaling[name]['test_acc']:.4f}")
base_run, big_same, big_scaled = scaling.values()
print(f"the {scale}× larger batch at the same rate ends at loss {big_same['last_epoch_loss']:.3f} "
      f"(vs {base_run['last_epoch_loss']:.3f}); the scaled rate brings it to {big_scaled['last_epoch_loss']:.3f}")
# %% [markdown] id="c18"
# ## On several machines
# The script does not change. On each of the machines start `torchrun` with the number of machines
# (`--nnodes`), processes per machine, and one **rendezvous** endpoint that all can reach (a host and a
# free port on one of them); `--rdzv-backend c10d` runs the rendezvous inside torchrun itself, so nothing
# else needs installing. Ranks are numbered across machines (`RANK` = 0 … W−1, `LOCAL_RANK` per machine),
# so "rank 0 writes the results" still means one process. With GPUs use one process per GPU
# (`--nproc-per-node` = GPUs per machine) and nccl; for gloo over the network, set `GLOO_SOCKET_IFNAME`
# (and for nccl `NCCL_SOCKET_IFNAME`) to the interface the machines share.
# %%
for line in D.multi_node_commands(nnodes=2, nproc_per_node=4, endpoint="node0.example.org:29500"):
    print(line)
# %%
kit.save_metrics({"nproc": nproc, "world_size": res["world_size"], "steps": len(single),
                  "max_rel_loss_diff": max_rel, "final_weights_max_diff": weights_diff,
                  "manual_vs_ddp_max_loss_diff": manual_vs_ddp, "first_step_grad_max_diff": res["first_step_grad_max_diff"],
                  "replica_max_diff": res["replica_max_diff"], "final_loss_single": float(single[-1]),
                  "final_loss_ddp": float(ddp[-1]), "test_acc_single": ref["test_acc"], "test_acc_ddp": res["test_acc"],
                  "rtol": tol, "lr_scale": scale, "lr_scaled": lr_scaled,
                  "loss_base_batch": base_run["last_epoch_loss"], "loss_big_batch_same_lr": big_same["last_epoch_loss"],
                  "loss_big_batch_scaled_lr": big_scaled["last_epoch_loss"], "acc_big_batch_same_lr": big_same["test_acc"],
                  "acc_big_batch_scaled_lr": big_scaled["test_acc"]},
                 timing=timing,
                 params={"device": str(dev), "backend": backend})
# %% [markdown] id="c21"
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("12.2", 2)` shows the next hint.
#
# **Exercise 12.1 (warm-up: the all-reduce).** Simulate the all-reduce DDP performs. Write
# `all_reduce_mean(grads_per_rank)`: given a list with one gradient tensor per rank (all the same shape), return
# a list with one tensor per rank, each holding the element-wise **mean** over the ranks — what every rank has
# after `all_reduce(SUM)` and the division by the world size.
# %% tags=["solution"]
def all_reduce_mean(grads_per_rank):
    total = torch.zeros_like(grads_per_rank[0])
    for g in grads_per_rank:
        total = total + g
    return [total / len(grads_per_rank) for _ in grads_per_rank]
# %%
from kit.exercises import check, hint
check("12.1", all_reduce_mean)
# %% [markdown] id="c24"
# **Exercise 12.2 (the learning rate for a larger global batch).** Write
# `warmup_scaled_lr(base_lr, base_batch, global_batch, step, warmup_steps)`: the learning rate at optimizer step
# `step` (0, 1, …) for training with `global_batch` examples per step, when `base_lr` was tuned for `base_batch`.
# The target rate follows the linear scaling rule; during the first `warmup_steps` steps the rate rises
# linearly from `base_lr` (at step 0) towards the target (reached at step `warmup_steps`), then stays there.
# `warmup_steps = 0` means no warm-up.
# %% tags=["solution"]
def warmup_scaled_lr(base_lr, base_batch, global_batch, step, warmup_steps):
    target = base_lr * (global_batch / base_batch)
    if warmup_steps == 0 or step >= warmup_steps:
        return target
    return base_lr + (target - base_lr) * (step / warmup_steps)
# %%
check("12.2", warmup_scaled_lr)
# %% [markdown] id="c27"
# **Exercise 12.3 (implement: DistributedSampler's shard).** Write
# `shard_indices(n, rank, world_size, seed, epoch, drop_last=False)` that returns, as a list of ints, the indices
# rank `rank` reads in epoch `epoch` — exactly what
# `DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=drop_last)`
# yields after `set_epoch(epoch)`, including when `n` is not divisible by `world_size`. Do not use
# `DistributedSampler` itself: shuffle with a `torch.Generator`, then shard.
# %% tags=["solution"]
def shard_indices(n, rank, world_size, seed, epoch, drop_last=False):
    g = torch.Generator().manual_seed(seed + epoch)
    order = torch.randperm(n, generator=g).tolist()
    if drop_last and n % world_size:
        per_rank = -(-(n - world_size) // world_size)
    else:
        per_rank = -(-n // world_size)
    total = per_rank * world_size
    while len(order) < total:  # pad by wrapping around (several times when n < world_size)
        order = order + order[:total - len(order)]
    order = order[:total]
    return order[rank:total:world_size]
# %%
check("12.3", shard_indices)
