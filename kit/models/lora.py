"""LoRA from scratch: a frozen ``nn.Linear`` plus a trainable low-rank update ``(α/r)·B·A``.

For a pretrained weight ``W`` (out × in), LoRA learns ``ΔW = (α/r) B A`` with ``A`` (r × in) and ``B``
(out × r), ``r ≪ min(in, out)``: the layer computes ``W x + (α/r) B A dropout(x)``. ``B`` starts at zero,
so the wrapped model starts exactly as the pretrained one; ``A`` starts like a Linear layer's weight
(Kaiming-uniform, as the ``peft`` library does). :meth:`LoRALinear.merge` folds ``ΔW`` into ``W`` for
inference at no extra cost; :meth:`unmerge` takes it out again. ``tests/test_lora.py`` checks the maths
against ``peft``'s LoRA on the same layer and initialisation.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterable

import torch
from torch import nn

__all__ = ["LoRALinear", "apply_lora", "merge_lora", "unmerge_lora", "fold_lora", "trainable_parameters",
           "lora_disabled"]


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) · B(A(dropout(x)))`` with ``base`` frozen (``rslora``: ``alpha / √r``, rsLoRA's scale)."""

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0, dropout: float = 0.0, rslora: bool = False):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRA wraps nn.Linear layers, got {type(base).__name__}")
        if not (isinstance(r, int) and r >= 1):
            raise ValueError(f"parameter 'r' (LoRA rank) must be an integer ≥ 1, got {r!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"parameter 'dropout' must be in [0, 1), got {dropout!r}")
        self.base, self.r, self.alpha = base, r, float(alpha)
        self.scaling = self.alpha / (math.sqrt(r) if rslora else r)
        for p in base.parameters():
            p.requires_grad_(False)
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.enabled = True   # False: the layer is its frozen base (see lora_disabled)

    def delta_weight(self) -> torch.Tensor:
        """``ΔW = (α/r) B A``, the update LoRA adds to the frozen weight."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged or not self.enabled:
            return y
        return y + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold ``ΔW`` into the base weight (one matmul at inference, same outputs)."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}, merged={self.merged}"


def _matches(name: str, targets: Iterable[str]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def apply_lora(model: nn.Module, targets: Iterable[str], r: int = 8, alpha: float = 16.0, dropout: float = 0.0,
               train: Iterable[str] = (), rslora: bool = False) -> nn.Module:
    """Freeze ``model`` and wrap each ``nn.Linear`` whose name ends with one of ``targets`` in :class:`LoRALinear`
    (``rslora``: the update scaled by α/√r instead of α/r, as ``peft``'s ``use_rslora``).

    ``train`` names further modules to keep trainable (e.g. a new classification head). Returns ``model``.
    """
    targets, train = list(targets), list(train)
    for p in model.parameters():
        p.requires_grad_(False)
    found = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and _matches(n, targets)]
    if not found:
        linears = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"parameter 'targets' {targets} matches no nn.Linear layer; the model's are named {linears}")
    for name in found:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), r=r, alpha=alpha, dropout=dropout, rslora=rslora))
    for n, m in model.named_modules():
        if train and _matches(n, train):
            for p in m.parameters():
                p.requires_grad_(True)
    return model


def _lora_layers(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module) -> nn.Module:
    for m in _lora_layers(model):
        m.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    for m in _lora_layers(model):
        m.unmerge()
    return model


@torch.no_grad()
def fold_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA layer's ``ΔW`` into its base weight and start a fresh adapter there (``A`` re-drawn, ``B = 0``):
    the model computes the same function, and from now on :func:`lora_disabled` gives *this* model — e.g. the
    instruction-tuned model as DPO's frozen reference while a new adapter learns preferences. Returns ``model``."""
    for m in _lora_layers(model):
        if not m.merged:
            m.base.weight += m.delta_weight()
        m.merged = False
        nn.init.kaiming_uniform_(m.lora_A, a=math.sqrt(5))
        m.lora_B.zero_()
    return model


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (shared tensors counted once)."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


@contextmanager
def lora_disabled(model: nn.Module):
    """Inside the block every LoRA layer of ``model`` is its frozen base: the pretrained model, with no second copy
    (DPO's reference policy; ``peft``'s ``disable_adapter()``). Merged layers cannot be switched off: unmerge first."""
    layers = list(_lora_layers(model))
    if any(m.merged for m in layers):
        raise ValueError("lora_disabled needs unmerged LoRA layers: call unmerge_lora(model) first")
    for m in layers:
        m.enabled = False
    try:
        yield model
    finally:
        for m in layers:
            m.enabled = True
