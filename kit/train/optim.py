"""Optimizers, parameter groups and learning-rate schedules: the one place ``fit`` takes them from."""
from __future__ import annotations

import inspect
import math

import torch

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam", "adamw")
SCHEDULES = (None, "cosine", "onecycle")


def param_groups(params, weight_decay: float, decay_matrices_only: bool = True) -> list[dict]:
    """Weight decay on matrices (linear and embedding weights) only, not on biases and norm gains."""
    params = [p for p in params if p.requires_grad]
    if not decay_matrices_only:
        return [{"params": params, "weight_decay": weight_decay}]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                   betas: tuple | None = None, decay_matrices_only: bool = False, fused: bool = False):
    """SGD, SGD with momentum, RMSProp, Adam or AdamW by name.

    ``decay_matrices_only``: parameter groups with no weight decay on biases and norms. ``fused``: AdamW's
    fused kernel where this torch has it for the parameters' device (else ``foreach``).
    """
    params = list(params)
    if name not in OPTIMIZERS:
        raise ValueError(f"parameter 'optimizer' must be one of {OPTIMIZERS}, got {name!r}")
    groups = param_groups(params, weight_decay, decay_matrices_only) if decay_matrices_only else params
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, weight_decay=weight_decay)
    if name == "momentum":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, weight_decay=weight_decay)
    kw = {} if betas is None else {"betas": tuple(betas)}
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, **kw)
    if fused:
        first = params[0] if params and isinstance(params[0], torch.Tensor) else \
            next(p for g in groups for p in (g["params"] if isinstance(g, dict) else [g]))
        if "fused" in inspect.signature(torch.optim.AdamW).parameters and first.device.type in ("cuda", "cpu"):
            kw["fused"] = True
        else:
            kw["foreach"] = True
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, **kw)


def warmup_cosine(progress: float, step: int, lr: float, min_lr: float, warmup: int = 0) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``lr`` down to ``min_lr`` as ``progress``
    (the fraction of the run done: of its steps or of its seconds) goes from 0 to 1."""
    if step < warmup:
        return lr * (step + 1) / warmup
    p = min(max(progress, 0.0), 1.0)
    return min_lr + 0.5 * (1 + math.cos(math.pi * p)) * (lr - min_lr)


def epoch_scheduler(schedule, optimizer, lr: float, total_steps: int):
    """A per-step torch scheduler for epoch-based runs: ``"onecycle"``, ``"cosine"`` (to 0), a callable
    ``f(optimizer, total_steps)``, or ``None``."""
    if schedule is None:
        return None
    if schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if callable(schedule):
        return schedule(optimizer, total_steps)
    raise ValueError(f"parameter 'scheduler' must be None, 'onecycle', 'cosine' or a callable, got {schedule!r}")
