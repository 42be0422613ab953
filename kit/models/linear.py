"""Linear regression: the loss, its hand-derived gradient, the closed form and gradient descent by hand
(lesson 01 writes the autograd version out in the notebook)."""
from __future__ import annotations

import torch


def add_bias(X: torch.Tensor) -> torch.Tensor:
    """Append a column of ones so the bias is the last weight."""
    return torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype, device=X.device)], 1)


def mse(X: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """L(w) = (1/n) ‖Xw − y‖²  (X already has the bias column)."""
    r = X @ w - y
    return (r * r).mean()


def mse_grad(X: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """∇L(w) = (2/n) Xᵀ(Xw − y), derived by hand."""
    return 2.0 / len(X) * X.T @ (X @ w - y)


def closed_form(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Least squares w* = argmin ‖Xw − y‖² (solves the normal equations XᵀXw = Xᵀy stably)."""
    return torch.linalg.lstsq(X, y.unsqueeze(1), driver="gelsd" if X.device.type == "cpu" else None).solution.squeeze(1)


def gd_by_hand(X, y, lr: float, steps: int, w0: torch.Tensor | None = None):
    """Plain gradient descent with the hand-derived gradient; returns (w, losses, path)."""
    w = torch.zeros(X.shape[1], dtype=X.dtype) if w0 is None else w0.clone()
    losses, path = [], [w.clone()]
    for _ in range(steps):
        losses.append(mse(X, y, w).item())
        w = w - lr * mse_grad(X, y, w)
        path.append(w.clone())
    return w, losses, torch.stack(path)


def hessian(X: torch.Tensor) -> torch.Tensor:
    """H = (2/n) XᵀX, the (constant) Hessian of the mean squared error L(w) = (1/n) ‖Xw − y‖²."""
    return 2.0 / len(X) * X.T @ X


def condition_number(X: torch.Tensor) -> float:
    """κ = λ_max / λ_min of the MSE's Hessian (2/n) XᵀX: how elongated the loss bowl is.

    Gradient descent with its best constant learning rate 2/(λ_max + λ_min) shrinks the error along the slowest
    direction by (κ − 1)/(κ + 1) per step, so a large κ means many steps.
    """
    ev = torch.linalg.eigvalsh(hessian(X.double()))
    return float(ev.max() / ev.min())
