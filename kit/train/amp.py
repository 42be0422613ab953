"""Mixed precision in one place: bf16 autocast where the device supports it, else fp16 with loss scaling."""
from __future__ import annotations

import contextlib

import torch

from kit.device import amp_dtype


class Precision:
    """Autocast, backward and optimizer step for one run.

    ``amp=None``: on for CUDA, off elsewhere. When on: bf16 where supported (no loss scaling needed),
    else fp16 with a ``GradScaler`` (GPUs without bf16, e.g. T4, V100), so small gradients do not
    underflow. ``amp=True`` on a CPU uses bf16.
    """

    def __init__(self, device: torch.device, amp: bool | None = None):
        use = device.type == "cuda" if amp is None else amp
        self.dtype = (amp_dtype(device) or torch.bfloat16) if use else None
        self.scaler = torch.amp.GradScaler(device.type) if self.dtype == torch.float16 else None
        self.device = device

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer, parameters, clip: float | None = None, norm: bool = False) -> float | None:
        """Unscale (fp16), clip the global gradient norm to ``clip``, step. Returns the norm before clipping
        when clipping or ``norm`` is asked for, else ``None``."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        gn = None
        if clip:
            gn = torch.nn.utils.clip_grad_norm_(parameters, clip)
        elif norm:
            grads = [p.grad.detach().norm() for p in parameters if p.grad is not None]
            gn = torch.linalg.vector_norm(torch.stack(grads)) if grads else torch.zeros(())
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        return None if gn is None else float(gn)
