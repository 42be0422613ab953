"""Data-parallel training with ``torch.distributed``: the shared pieces, and ``torchrun`` launching.

The training script is :mod:`kit.techniques.ddp_train` (``python -m torch.distributed.run … -m kit.techniques.ddp_train``).
Every process builds the same data and the same initial model. Each rank reads its share of the data through
:class:`torch.utils.data.distributed.DistributedSampler` (with ``set_epoch`` every epoch): the sampler shuffles
with ``seed + epoch`` and deals the permutation out like cards (rank ``r`` gets positions ``r, r+W, r+2W, …``),
so at step ``s`` the ranks' batches of ``batch_size / W`` together are exactly positions ``s·B … (s+1)·B − 1``
of that permutation — :func:`global_batches`, what one process with the whole batch ``B`` uses. The
all-reduced (averaged) gradient therefore equals the single-process gradient of the whole batch, up to float
rounding. :func:`train_reference` is that single process, run in the notebook itself.

    res = launch(nproc=2, epochs=3, batch_size=64)       # torchrun, 2 CPU processes (gloo)
    ref = train_reference(epochs=3, batch_size=64)       # 1 process, same global batches
"""
from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["DDPConfig", "free_port", "load_task", "make_model", "global_batches", "shard", "linear_scaled_lr",
           "train_reference",
           "torchrun_command", "launch", "multi_node_commands"]


@dataclass
class DDPConfig:
    """What :mod:`kit.techniques.ddp_train` trains: an MLP on the 8×8 digits, plain SGD with momentum, no dropout."""
    epochs: int = 3
    batch_size: int = 64      # the GLOBAL batch; each of ``world`` processes gets batch_size / world rows
    lr: float = 0.05
    momentum: float = 0.9
    hidden: int = 128
    seed: int = 0

    def args(self) -> list[str]:
        return [f"--{k.replace('_', '-')}={v}" for k, v in asdict(self).items()]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for ``--master-port``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_task(seed: int = 0):
    """``(X_train, y_train, X_test, y_test)`` float/long tensors of the digits; identical in every process."""
    import kit.data
    d = kit.data.load("digits", verbose=False)
    tr, _, te = kit.data.split(len(d), (0.7, 0.1, 0.2), seed=seed, stratify=d.y)
    X = torch.tensor(d.X / 16.0, dtype=torch.float32)
    y = torch.tensor(d.y, dtype=torch.long)
    return X[tr], y[tr], X[te], y[te]


def make_model(cfg: DDPConfig) -> torch.nn.Module:
    """The same initial weights in every process (seeded), no dropout, no batch norm."""
    from kit.models.mlp import MLP, MLPConfig
    torch.manual_seed(cfg.seed)
    return MLP(MLPConfig(64, 10, hidden=(cfg.hidden, cfg.hidden)))


def global_batches(n: int, batch_size: int, epoch: int, seed: int) -> list[torch.Tensor]:
    """Index tensors of one epoch's global batches: a seeded permutation cut into full batches (the last,
    incomplete batch is dropped so that every batch splits evenly across processes).

    The permutation is ``DistributedSampler``'s (``randperm(n)`` from a generator seeded with ``seed + epoch``),
    so the ranks' sampler batches at step ``s`` are together exactly batch ``s`` here.
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
    return [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def shard(idx: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s contiguous ``1/world`` share of a global batch."""
    if len(idx) % world:
        raise ValueError(f"a global batch of {len(idx)} does not split evenly over {world} processes")
    per = len(idx) // world
    return idx[rank * per:(rank + 1) * per]


def linear_scaled_lr(base_lr: float, base_batch: int, global_batch: int) -> float:
    """The linear scaling rule (Goyal et al., 2017): a global batch ``m`` times larger gets an ``m`` times larger
    learning rate, so that one step on ``m·B`` examples moves the weights about as far as ``m`` steps on ``B``."""
    if base_batch <= 0 or global_batch <= 0:
        raise ValueError(f"batch sizes must be positive, got {base_batch} and {global_batch}")
    return base_lr * global_batch / base_batch


def train_reference(cfg: DDPConfig | None = None, **kw) -> dict:
    """One process, global batch ``batch_size``: the curve 2-process DDP must reproduce.

    Returns ``{"losses": [per step], "test_acc", "seconds", "state": final state_dict}``.
    """
    from kit.models.base import accuracy_of
    cfg = cfg or DDPConfig(**kw)
    Xtr, ytr, Xte, yte = load_task(cfg.seed)
    model = make_model(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    losses = []
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        for idx in global_batches(len(Xtr), cfg.batch_size, epoch, cfg.seed):
            loss = F.cross_entropy(model(Xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    seconds = time.perf_counter() - t0
    return {"losses": losses, "test_acc": accuracy_of(model.eval(), Xte, yte), "seconds": seconds,
            "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def torchrun_command(nproc: int, port: int, out: str | Path, cfg: DDPConfig, backend: str = "auto",
                     data: str | Path | None = None) -> list[str]:
    """``python -m torch.distributed.run --nproc-per-node N --master-port P -m kit.techniques.ddp_train …``."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--nnodes=1",
            "--master-addr=127.0.0.1", f"--master-port={port}", "-m", "kit.techniques.ddp_train",
            f"--out={out}", f"--backend={backend}", *([f"--data={data}"] if data else []), *cfg.args()]


def launch(nproc: int = 2, cfg: DDPConfig | None = None, out: str | Path | None = None, backend: str = "auto",
           timeout: float = 300, threads_per_process: int = 1, **kw) -> dict:
    """Run :mod:`kit.techniques.ddp_train` under ``torchrun`` with ``nproc`` local processes; return rank 0's JSON.

    Every file goes beside ``out``: the data, written once to ``<out>-task.pt`` for the workers; rank 0's
    JSON and final weights (``<out>.pt``, ``state`` in the result, a state_dict); the processes' output,
    ``<out>-torchrun.log`` (on failure the error names the exit code and shows its start and end). So give
    ``out`` in a folder of the caller's own (a lesson's :func:`kit.results.scratch_dir`), never relative to
    the working directory; without ``out``, a fresh scratch folder, removed when this process exits.
    Each process gets ``OMP_NUM_THREADS=threads_per_process`` (processes × threads should not exceed the cores).
    """
    cfg = cfg or DDPConfig(**kw)
    if out is None:
        from kit.results import scratch_dir
        out = scratch_dir("ddp") / "ddp.json"  # removed when this process exits
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads_per_process), KIT_THREADS=str(threads_per_process),
               PYTHONUNBUFFERED="1")
    root = str(Path(__file__).resolve().parents[2])  # so `-m kit.techniques.ddp_train` imports this kit
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    loopback = _loopback_interface()
    if loopback and "GLOO_SOCKET_IFNAME" not in env:
        env["GLOO_SOCKET_IFNAME"] = loopback  # one machine: gloo talks over loopback, whatever the hostname says
    data = out.with_name(out.stem + "-task.pt")  # the workers load the tensors instead of importing scikit-learn
    torch.save(tuple(load_task(cfg.seed)), data)
    log = out.with_name(out.stem + "-torchrun.log")
    t0 = time.perf_counter()
    for attempt in range(2):
        cmd = torchrun_command(nproc, free_port(), out, cfg, backend, data)
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"torchrun did not finish in {timeout:.0f} s: {shlex.join(cmd)}") from e
        log.write_text(proc.stdout + proc.stderr)
        if proc.returncode == 0 and out.exists():
            break
        text = proc.stdout + proc.stderr
        if attempt == 0 and ("address already in use" in text.lower() or "EADDRINUSE" in text
                             or "terminate called without an active exception" in text):
            # another program took the free port between our check and torchrun, or gloo aborted while
            # tearing down: run once more (a failed run's output is never used)
            out.unlink(missing_ok=True)
            continue
        raise RuntimeError(f"torchrun exited with code {proc.returncode}: {shlex.join(cmd)}\n"
                           f"full output in {log}; its first and last lines:\n{text[:2000]}\n…\n{text[-2000:]}")
    wall = time.perf_counter() - t0
    res = json.loads(out.read_text())
    res["launch_seconds"] = wall
    res["command"] = shlex.join(cmd)
    res["state"] = torch.load(res["state_path"], weights_only=True)
    return res


def _loopback_interface() -> str | None:
    """The loopback network interface's name (``lo`` on Linux, ``lo0`` on macOS), if there is one."""
    try:
        names = [n for _, n in socket.if_nameindex()]
    except (OSError, AttributeError):
        return None
    return next((n for n in ("lo", "lo0") if n in names), None)


def multi_node_commands(nnodes: int = 2, nproc_per_node: int = 8, endpoint: str = "node0.example:29500",
                        job_id: str = "kit-ddp", script: str = "-m kit.techniques.ddp_train --out=ddp.json") -> list[str]:
    """The command to type on each machine (node ``i`` of ``nnodes``) for a multi-machine run."""
    return [f"torchrun --nnodes={nnodes} --nproc-per-node={nproc_per_node} --node-rank={i} "
            f"--rdzv-backend=c10d --rdzv-endpoint={endpoint} --rdzv-id={job_id} {script}"
            for i in range(nnodes)]
