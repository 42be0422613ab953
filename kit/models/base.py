"""What every model shares: counting its parameters, the one accuracy of its logits (and of a model on data), and
evaluation mode for a block (:func:`evaluating`)."""
from __future__ import annotations

import contextlib

import torch
from torch import nn


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """``model.eval()`` inside the block, the previous mode (training or not) after it."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def n_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor counted once); ``trainable_only``: those with ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows whose arg-max class equals the label (one logit per row: binary, logit > 0)."""
    logits = torch.as_tensor(logits)
    y = torch.as_tensor(y).to(logits.device)
    if logits.ndim == 1 or logits.shape[-1] == 1:
        return ((logits.reshape(-1) > 0).long() == y.reshape(-1).long()).float().mean().item()
    return (logits.argmax(-1) == y).float().mean().item()


@torch.no_grad()
def accuracy_of(fn, X: torch.Tensor, y: torch.Tensor) -> float:
    """:func:`accuracy` of ``fn(X)`` without autograd; ``fn`` is a model (in whatever mode it is) or any callable
    ``X → logits`` (tensor or numpy, e.g. an ONNX Runtime runner)."""
    return accuracy(fn(X), y)

def check_image_size(size: int, what: str) -> int:
    """``size`` for a model that halves it twice (two stride-2 convolutions): a multiple of 4, at least 4."""
    if not isinstance(size, int) or size < 4 or size % 4:
        raise ValueError(f"{what}.image_size must be a multiple of 4 (two halvings), got {size!r}")
    return size
