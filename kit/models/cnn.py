"""A small convolutional network for 28×28 images: conv blocks → pool → … → linear head.

Plain ``nn.Module`` configured by a dataclass (nanoGPT style)::

    model = CNN(CNNConfig(channels=(32, 64, 128)))
    logits = model(x)            # x: (N, 1, 28, 28) or flat (N, 784)

Each block is ``[Conv → [BatchNorm] → ReLU] × convs_per_block → MaxPool(2)``; the head flattens (or
global-average-pools) and applies ``[Dropout] → Linear``. ``model.conv_layers()`` lists the convolutions
(for filters and feature maps in :mod:`kit.techniques.explain`), ``model.activation_layers()`` the ReLU
after each of them (Grad-CAM's rectified feature maps).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class CNNConfig:
    in_channels: int = 1             # 1 for grey images
    image_size: int = 28             # height = width of the input
    n_classes: int = 10
    channels: tuple[int, ...] = (32, 64, 128)  # output channels of each block; each block halves the size
    convs_per_block: int = 1         # conv layers per block before its pooling
    kernel_size: int = 3             # odd: 'same' padding keeps the size inside a block
    batchnorm: bool = True           # BatchNorm after each conv (bias then redundant, so none)
    dropout: float = 0.0             # before the linear head
    head: str = "flatten"            # "flatten" (keeps where things are) or "gap" (global average pool)


class CNN(nn.Module):
    """``CNN(cfg)(x)`` → logits ``(N, n_classes)``."""

    def __init__(self, cfg: CNNConfig):
        super().__init__()
        if cfg.kernel_size % 2 != 1:
            raise ValueError(f"parameter 'kernel_size' must be odd, got {cfg.kernel_size}")
        if cfg.head not in ("flatten", "gap"):
            raise ValueError(f"parameter 'head' must be 'flatten' or 'gap', got {cfg.head!r}")
        if not cfg.channels:
            raise ValueError("parameter 'channels' needs at least one block")
        self.cfg = cfg
        blocks, c_in, size = [], cfg.in_channels, cfg.image_size
        for c_out in cfg.channels:
            layers = []
            for _ in range(cfg.convs_per_block):
                layers.append(nn.Conv2d(c_in, c_out, cfg.kernel_size, padding=cfg.kernel_size // 2,
                                        bias=not cfg.batchnorm))
                if cfg.batchnorm:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(nn.ReLU())
                c_in = c_out
            layers.append(nn.MaxPool2d(2))
            size //= 2
            blocks.append(nn.Sequential(*layers))
        if size < 1:
            raise ValueError(f"{len(cfg.channels)} blocks halve a {cfg.image_size}-pixel image below one pixel")
        self.features = nn.Sequential(*blocks)
        n_flat = c_in if cfg.head == "gap" else c_in * size * size
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1) if cfg.head == "gap" else nn.Identity(), nn.Flatten(),
                                  nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity(),
                                  nn.Linear(n_flat, cfg.n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:  # flat pixels (N, H·W·C) → images
            x = x.view(len(x), self.cfg.in_channels, self.cfg.image_size, self.cfg.image_size)
        return self.head(self.features(x))

    def conv_layers(self) -> list[nn.Conv2d]:
        """The convolutions, first to last."""
        return [m for m in self.features.modules() if isinstance(m, nn.Conv2d)]

    def activation_layers(self) -> list[nn.ReLU]:
        """The ReLU after each convolution, first to last: its output is the conv's *rectified* feature map
        (after batch norm when there is one) — what the rest of the network sees, and what Grad-CAM weighs."""
        return [m for m in self.features.modules() if isinstance(m, nn.ReLU)]


def as_images(X, channels: int = 1, size: int = 28) -> torch.Tensor:
    """Flat pixel rows ``(N, C·size²)`` (array or tensor) → float tensor ``(N, C, size, size)``."""
    X = torch.as_tensor(X, dtype=torch.float32)
    return X.reshape(len(X), channels, size, size)


__all__ = ["CNN", "CNNConfig", "as_images"]
