# %% [md]
# # 12 — Data-parallel training with torch.distributed

**Goals.** Train one model with several processes using `torch.distributed` and
`DistributedDataParallel` (DDP), started by `torchrun` from this notebook — two CPU processes talking
through the gloo backend here, one process per GPU with nccl on a GPU machine. See, and check, that
2 processes with half a batch each follow **the same loss curve** as 1 process with the whole batch;
open up the gradient **all-reduce** that makes this true (a hand-written `all_reduce` of the gradients
gives exactly DDP's); time it; and learn how the same script runs on several machines.

**Data.** scikit-learn's 1 797 real 8×8 handwritten digits (UCI).
# %% [code] parameters
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
# %% [code]
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
# %% [code]
import numpy as np
import torch

import kit.viz as viz
from kit.techniques import distributed as D
from kit.techniques import ddp_train

cfg = D.DDPConfig(epochs=epochs, batch_size=batch_size, lr=lr, hidden=hidden, seed=seed)
use_nccl = dev.type == "cuda" and torch.cuda.device_count() >= nproc
backend = "nccl" if use_nccl else "gloo"
print(cfg, f"→ {nproc} processes × {batch_size // nproc} examples per step, backend {backend}")
# %% [md]
# ## The idea
# Every process (**rank**) holds a full copy of the model. At each step the *global* batch of $B$
# examples is cut into `nproc` equal shards; rank $r$ computes the mean loss and its gradient $g_r$ on
# its shard of $B/W$ examples. An **all-reduce** then leaves every rank holding the average
# $\bar g = \frac1W\sum_r g_r$ — which is exactly the gradient of the mean loss over all $B$ examples —
# and every rank takes the same optimizer step, so the copies never drift apart.
#
# For the curves to match a single process *exactly* (up to float rounding), both runs must see the
# same examples in the same order: one seeded permutation per epoch, cut into global batches
# (the last, incomplete one is dropped so every batch splits evenly), each rank taking its slice.
# There is no dropout, whose random masks would differ between the runs.
# %% [code]
viz.source(D.global_batches, D.shard, ddp_train.allreduce_gradients)
# %% [md]
# ## One process, global batch B
# The reference, trained right here (on the CPU).
# %% [code]
ref = D.train_reference(cfg)
print(f"{len(ref['losses'])} steps in {ref['seconds']:.2f} s, test accuracy {ref['test_acc']:.4f}")
# %% [md]
# ## `nproc` processes, batch B / nproc each, launched with torchrun
# `torchrun` (= `python -m torch.distributed.run`) starts the processes and gives each its `RANK`,
# `WORLD_SIZE` and the rendezvous address (`MASTER_ADDR:MASTER_PORT`, a free port here). The script
# `kit/ddp_train.py` calls `init_process_group`, wraps the model in `DistributedDataParallel`, and —
# to open the box — trains a second copy whose gradients it all-reduces by hand. Rank 0 writes the
# results to a JSON file that this notebook reads. Each process runs with `OMP_NUM_THREADS=1`, so that
# processes × threads do not exceed the cores.
# %% [code]
res = D.launch(nproc, cfg, out="ddp/ddp.json", backend=backend, timeout=600)
print(res["command"])
print(f"world size {res['world_size']}, backend {res['backend']}, {res['per_process_batch']} examples per process "
      f"per step; training loop {res['seconds']:.2f} s, whole launch {res['launch_seconds']:.1f} s")
# %% [code]
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
# %% [md]
# The differences are at the level of float32 rounding: summing two half-batch means and halving is not
# bit-for-bit the same sum as one mean over the whole batch.
#
# ## Inside DDP: the gradient all-reduce
# DDP registers hooks on the gradients; as `backward()` produces them, it packs them into ~25 MB
# **buckets** and launches an asynchronous all-reduce per bucket, overlapping communication with the rest
# of the backward pass. The classic algorithm is the **ring all-reduce**: each of the $W$ ranks sends and
# receives $2(W-1)/W$ times the gradient size, independent of $W$ — which is why data parallelism scales.
# Our hand-written version reduces parameter by parameter after `backward()`: slower, same numbers.
# %% [code]
manual_vs_ddp = float(np.abs(manual - ddp).max())
print(f"first step: max |grad_DDP − grad_manual| = {res['first_step_grad_max_diff']:.2e}; "
      f"loss curves differ by at most {manual_vs_ddp:.2e}; "
      f"replicas after training differ by at most {res['replica_max_diff']:.2e}")
assert res["first_step_grad_max_diff"] <= 1e-6 and res["replica_max_diff"] == 0.0
# %% [md]
# ## Time
# On one machine with a couple of shared CPU cores and a model this small, the processes mostly wait for
# each other: each step moves the whole gradient to compute on only a few dozen examples. Data
# parallelism pays when computation per step dwarfs communication — big models, big batches, GPUs
# connected by NVLink or InfiniBand. Launching also costs seconds (each process imports torch).
# %% [code]
timing = {"single_process_seconds": ref["seconds"], "ddp_loop_seconds": res["seconds"],
          "ddp_only_seconds": res["seconds_ddp"], "manual_allreduce_seconds": res["seconds_manual"],
          "launch_seconds": res["launch_seconds"]}
if not smoke and nproc > 1:
    one = D.launch(1, cfg, out="ddp/ddp1.json", backend=backend, timeout=600)
    timing["torchrun_1_process_ddp_only_seconds"] = one["seconds_ddp"]
    print(f"torchrun with 1 process reproduces the reference too: "
          f"max relative difference {np.max(np.abs(np.array(one['losses_ddp']) - single) / single):.1e}")
viz.show(viz.bar({"1 process": ref["seconds"], f"DDP step, {nproc} proc.": res["seconds_ddp"],
                  f"manual all-reduce, {nproc} proc.": res["seconds_manual"]},
                 title="training-loop seconds on this machine (noisy: shared cores)", yaxis="seconds"))
# %% [md]
# ## On several machines
# The script does not change. On each of the machines start `torchrun` with the number of machines
# (`--nnodes`), processes per machine, and one **rendezvous** endpoint that all can reach (a host and a
# free port on one of them); `--rdzv-backend c10d` runs the rendezvous inside torchrun itself, so nothing
# else needs installing. Ranks are numbered across machines (`RANK` = 0 … W−1, `LOCAL_RANK` per machine),
# so "rank 0 writes the results" still means one process. With GPUs use one process per GPU
# (`--nproc-per-node` = GPUs per machine) and nccl; for gloo over the network, set `GLOO_SOCKET_IFNAME`
# (and for nccl `NCCL_SOCKET_IFNAME`) to the interface the machines share.
# %% [code]
for line in D.multi_node_commands(nnodes=2, nproc_per_node=4, endpoint="node0.example.org:29500"):
    print(line)
# %% [code]
kit.save_metrics({"nproc": nproc, "world_size": res["world_size"], "steps": len(single),
                  "max_rel_loss_diff": max_rel, "final_weights_max_diff": weights_diff,
                  "manual_vs_ddp_max_loss_diff": manual_vs_ddp, "first_step_grad_max_diff": res["first_step_grad_max_diff"],
                  "replica_max_diff": res["replica_max_diff"], "final_loss_single": float(single[-1]),
                  "final_loss_ddp": float(ddp[-1]), "test_acc_single": ref["test_acc"], "test_acc_ddp": res["test_acc"],
                  "rtol": tol},
                 timing=timing,
                 params={"device": str(dev), "backend": backend})
# %% [md]
# ## Exercises
# **Exercise 1.** Three ranks hold the gradients $[1, 2]$, $[3, 4]$ and $[5, 9]$. What does every rank
# hold after `all_reduce(SUM)` followed by division by the world size?
# %% [code] solution
answer_1 = [(1 + 3 + 5) / 3, (2 + 4 + 9) / 3]
# %% [code]
from kit.checks import expect_close
expect_close("Exercise 1", answer_1, torch.tensor([[1., 2.], [3., 4.], [5., 9.]]).mean(0),
             hint="Sum element by element over the ranks, then divide by 3.")
# %% [md]
# **Exercise 2.** With the 1 257 training images, a global batch of 64 and the last incomplete batch
# dropped, how many optimizer steps does one epoch take — with 1 process, and with 4?
# %% [code] solution
answer_2 = [1257 // 64, 1257 // 64]
# %% [code]
_n = len(D.load_task(seed)[0])
expect_close("Exercise 2", answer_2, [len(D.global_batches(_n, 64, 0, seed))] * 2,
             hint="The global batch, not the per-process one, sets the number of steps; more processes share each step.")
