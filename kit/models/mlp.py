"""A multi-layer perceptron with optional dropout and batch norm."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class MLPConfig:
    n_in: int
    n_out: int
    hidden: tuple[int, ...] = (128,)
    dropout: float = 0.0
    batchnorm: bool = False


class MLP(nn.Module):
    """Linear → [BatchNorm] → ReLU → [Dropout], repeated, then a linear head giving logits."""

    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.cfg = cfg
        layers, width = [], cfg.n_in
        for h in cfg.hidden:
            layers.append(nn.Linear(width, h))
            if cfg.batchnorm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU())
            if cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
            width = h
        layers.append(nn.Linear(width, cfg.n_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


def l1_penalty(strength: float):
    """A ``penalty`` for ``fit``: strength · Σ|w| over weight matrices (not biases)."""
    def penalty(model: nn.Module) -> torch.Tensor:
        return strength * sum(p.abs().sum() for n, p in model.named_parameters() if p.ndim > 1)
    return penalty


def weight_sparsity(model: nn.Module, tol: float = 1e-3) -> dict:
    """Over the weight matrices (what ``l1_penalty`` penalises, not biases): the fraction of weights that are
    exactly 0.0 and the fraction with |w| < ``tol``."""
    w = torch.cat([p.detach().flatten() for p in model.parameters() if p.ndim > 1])
    return {"exact_zero": (w == 0).double().mean().item(), "below_tol": (w.abs() < tol).double().mean().item(),
            "n_weights": w.numel()}
