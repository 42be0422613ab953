"""Data augmentation with plain torch ops: random shifts, rotations and zooms of image batches.

Every function has the signature ``augment(xb, generator) -> xb`` used by ``fit(..., augment=...)``:
``xb`` is a batch ``(N, C, H, W)`` (or flat ``(N, H·W)`` for one square grey channel) on any device,
``generator`` a seeded CPU ``torch.Generator`` — so the same seed gives the same augmented batches.

One random affine map per image is applied with ``F.affine_grid`` (where each output pixel reads
from) and ``F.grid_sample`` (bilinear interpolation, zeros outside the image).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F


def affine_matrices(n: int, generator: torch.Generator | None = None, max_rotate: float = 10.0,
                    max_shift: float = 0.1, scale: tuple[float, float] = (0.9, 1.1)) -> torch.Tensor:
    """n random 2×3 affine matrices (one per image) in grid coordinates, where the image spans −1…1:
    rotation up to ±max_rotate degrees, zoom in scale, shift up to ±max_shift (0.1 ≈ 1.4 pixels of 28)."""
    u = torch.rand(n, 4, generator=generator)
    angle = (2 * u[:, 0] - 1) * math.radians(max_rotate)
    zoom = scale[0] + (scale[1] - scale[0]) * u[:, 1]
    tx, ty = (2 * u[:, 2] - 1) * max_shift, (2 * u[:, 3] - 1) * max_shift
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom  # grid maps output → input: inverse zoom
    return torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)


def apply_affine(xb: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp images (N, C, H, W) by matrices theta (N, 2, 3): output pixel p reads the input at theta·(p, 1)."""
    grid = F.affine_grid(theta.to(xb.device, xb.dtype), list(xb.shape), align_corners=False)
    return F.grid_sample(xb, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_affine(max_rotate: float = 10.0, max_shift: float = 0.1,
                  scale: tuple[float, float] = (0.9, 1.1)) -> Callable:
    """An ``augment(xb, generator)`` for ``fit`` with these ranges."""
    if max_rotate < 0 or max_shift < 0 or not 0 < scale[0] <= scale[1]:
        raise ValueError(f"augmentation ranges must be non-negative with 0 < scale[0] <= scale[1], "
                         f"got max_rotate={max_rotate}, max_shift={max_shift}, scale={scale}")

    def augment(xb: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        flat = xb.ndim == 2
        if flat:  # (N, H·W) of one square grey channel
            side = math.isqrt(xb.shape[1])
            if side * side != xb.shape[1]:
                raise ValueError(f"flat images need a square number of pixels, got {xb.shape[1]}")
            xb = xb.view(len(xb), 1, side, side)
        out = apply_affine(xb, affine_matrices(len(xb), generator, max_rotate, max_shift, scale))
        return out.reshape(len(out), -1) if flat else out

    augment.ranges = dict(max_rotate=max_rotate, max_shift=max_shift, scale=scale)
    return augment


augment = random_affine()
"""The default: ±10°, ±10 % shift, 0.9–1.1 zoom."""

__all__ = ["affine_matrices", "apply_affine", "augment", "random_affine"]
