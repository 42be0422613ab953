"""Optimizers, parameter groups and learning-rate schedules: the one place ``fit`` takes them from."""
from __future__ import annotations

import inspect
import math

import torch

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam", "adamw")
SCHEDULES = (None, "cosine", "onecycle")  # or a callable f(optimizer, total_steps)


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


class MuonAdamW:
    """Muon (``torch.optim.Muon``: momentum orthogonalised by Newton–Schulz) for the hidden layers' weight
    matrices, AdamW for everything else (embeddings, the output layer, norms and biases).

    ``muon_params`` are 2-D matrices; Muon's step is scaled to AdamW's update size (``adjust_lr_fn=
    "match_rms_adamw"``) so one learning rate and schedule drive both. Duck-types an optimizer for ``fit``:
    ``param_groups`` (both optimizers' groups, so the schedule reaches every one), ``step``, ``zero_grad``,
    ``state_dict``/``load_state_dict``.
    """

    def __init__(self, muon_params, adamw_params, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.99),
                 momentum: float = 0.95, fused: bool = False):
        muon_params, adamw_params = list(muon_params), list(adamw_params)
        bad = [tuple(p.shape) for p in muon_params if p.ndim != 2]
        if bad:
            raise ValueError(f"Muon orthogonalises matrices: got parameters of shape {bad}")
        self.muon = torch.optim.Muon(muon_params, lr=lr, weight_decay=weight_decay, momentum=momentum,
                                     adjust_lr_fn="match_rms_adamw")
        self.adamw = make_optimizer("adamw", adamw_params, lr, weight_decay, betas=betas, decay_matrices_only=True,
                                    fused=fused)
        self.param_groups = self.muon.param_groups + self.adamw.param_groups

    @property
    def state(self):
        return {**self.muon.state, **self.adamw.state}

    def step(self, closure=None):
        self.muon.step()
        self.adamw.step()

    def zero_grad(self, set_to_none: bool = True):
        self.muon.zero_grad(set_to_none=set_to_none)
        self.adamw.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.muon.load_state_dict(state["muon"])
        self.adamw.load_state_dict(state["adamw"])


def hidden_matrices(model: torch.nn.Module) -> tuple[list, list]:
    """``(matrices of the hidden layers, the rest)``: the weights of ``nn.Linear`` layers that are not the
    output layer (whose weight is often tied to the embedding) go to Muon, all else to AdamW."""
    out = getattr(model, "lm_head", None)
    skip = {id(out.weight)} if out is not None else set()
    hidden = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not out
              and id(m.weight) not in skip and m.weight.requires_grad]
    ids = {id(p) for p in hidden}
    return hidden, [p for p in model.parameters() if id(p) not in ids and p.requires_grad]


def warmup_cosine(progress: float, step: int, lr: float, min_lr: float, warmup: int = 0) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``lr`` down to ``min_lr`` as ``progress``
    (the fraction of the run done: of its steps or of its seconds) goes from 0 to 1."""
    if step < warmup:
        return lr * (step + 1) / warmup
    p = min(max(progress, 0.0), 1.0)
    return min_lr + 0.5 * (1 + math.cos(math.pi * p)) * (lr - min_lr)


def torch_scheduler(schedule, optimizer, lr: float, total_steps: int):
    """A per-step torch scheduler over a run of ``total_steps`` optimizer steps (an epoch or a steps run):
    ``"onecycle"`` (warms up over its first 30 %, then anneals), or a callable ``f(optimizer, total_steps)``.
    ``"cosine"`` is not one: ``fit`` sets :func:`warmup_cosine`'s rate before each step, in every kind of run."""
    if schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps)
    if callable(schedule):
        return schedule(optimizer, total_steps)
    raise ValueError(f"parameter 'scheduler' must be None, 'cosine', 'onecycle' or a callable, got {schedule!r}")
