"""Numerical checks (autograd vs finite differences) and the error an exercise check raises."""
from __future__ import annotations

from typing import Callable

import torch


class ExerciseError(AssertionError):
    """An exercise answer is missing or wrong; the message says how."""


def finite_difference_grad(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Central differences ``(f(x+εe_i) − f(x−εe_i)) / 2ε`` for every coordinate (use float64)."""
    x = x.detach().clone()
    g = torch.zeros_like(x)
    flat, gflat = x.view(-1), g.view(-1)
    with torch.no_grad():
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + eps
            hi = f(x).item()
            flat[i] = old - eps
            lo = f(x).item()
            flat[i] = old
            gflat[i] = (hi - lo) / (2 * eps)
    return g


def autograd_grad(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    f(x).backward()
    return x.grad.detach()


def max_abs_diff(a, b) -> float:
    return float((torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)).abs().max())


def gradient_check(f, x, analytic: torch.Tensor, eps: float = 1e-6) -> dict:
    """Compare an analytic gradient with autograd and finite differences (max absolute errors)."""
    return {"vs_autograd": max_abs_diff(analytic, autograd_grad(f, x)),
            "vs_finite_diff": max_abs_diff(analytic, finite_difference_grad(f, x, eps))}
