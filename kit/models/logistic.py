"""Logistic regression: sigmoid, binary cross-entropy and its gradient derived by hand."""
from __future__ import annotations

import torch


def sigmoid(z: torch.Tensor) -> torch.Tensor:
    """σ(z) = 1 / (1 + e^{−z})."""
    return torch.sigmoid(z)


def bce(X: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """L(w) = −(1/n) Σ [y log p + (1−y) log(1−p)],  p = σ(Xw)  (computed stably from logits)."""
    z = X @ w
    return torch.nn.functional.binary_cross_entropy_with_logits(z, y)


def dloss_dz(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example ∂L/∂z = p − y (times 1/n for the mean)."""
    return (torch.sigmoid(z) - y) / len(y)


def dloss_dz_wrong(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A common wrong derivation, 1 − 2p − y: it does not survive a gradient check."""
    return (1 - 2 * torch.sigmoid(z) - y) / len(y)


def bce_grad(X: torch.Tensor, y: torch.Tensor, w: torch.Tensor, dz=dloss_dz) -> torch.Tensor:
    """Chain rule: ∂L/∂w = Xᵀ ∂L/∂z."""
    return X.T @ dz(X @ w, y)


def train_by_hand(X, y, lr: float, steps: int):
    """Gradient descent on the BCE with the hand-derived gradient; returns (w, losses)."""
    w = torch.zeros(X.shape[1], dtype=X.dtype)
    losses = []
    for _ in range(steps):
        losses.append(bce(X, y, w).item())
        w = w - lr * bce_grad(X, y, w)
    return w, losses
