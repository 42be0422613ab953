"""Numerical checks (autograd vs finite differences) and exercise checks with helpful messages."""
from __future__ import annotations

from typing import Callable

import numpy as np
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


def expect_close(name: str, answer, expected, atol: float = 1e-4, hint: str = "") -> bool:
    """Pass if ``answer`` equals ``expected`` within ``atol``; otherwise raise with a helpful message."""
    if answer is None or answer is ...:
        raise ExerciseError(f"{name}: no answer yet — replace the placeholder with your code. {hint}".strip())
    try:
        a = np.asarray(answer.detach().cpu() if hasattr(answer, "detach") else answer, dtype=np.float64)
        e = np.asarray(expected.detach().cpu() if hasattr(expected, "detach") else expected, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ExerciseError(f"{name}: answer must be numeric, got {type(answer).__name__}") from err
    if a.shape != e.shape:
        raise ExerciseError(f"{name}: answer has shape {a.shape}, expected {e.shape}. {hint}".strip())
    err = float(np.max(np.abs(a - e))) if a.size else 0.0
    if not err <= atol:
        raise ExerciseError(f"{name}: not yet — largest difference from the expected value is {err:.3g} "
                            f"(tolerance {atol:g}). {hint}".strip())
    print(f"✓ {name}: correct")
    return True


def expect_true(name: str, ok: bool, hint: str) -> bool:
    if not ok:
        raise ExerciseError(f"{name}: not yet — {hint}")
    print(f"✓ {name}: correct")
    return True
