"""Pick a device, seed every RNG, set the thread count, choose an AMP dtype."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or ``None``) → cuda if available, else mps, else cpu. An explicit name must be available;
    a ``torch.device`` is taken as it is (``torch.device("cuda", 1)``: the caller chose that card)."""
    if isinstance(device, torch.device):
        return device
    if device is None:
        device = "auto"
    if device not in DEVICES:
        raise ValueError(f"parameter 'device' must be one of {DEVICES}, got {device!r}")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("parameter 'device' is 'cuda' but no CUDA GPU is available; use device='auto'")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("parameter 'device' is 'mps' but MPS is not available; use device='auto'")
    return torch.device(device)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (all devices); return a CPU generator seeded the same."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def usable_cores() -> int:
    """Cores this process may run on (respects CPU affinity / containers)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def set_threads(n: int | None = None) -> int:
    """Use ``n`` torch threads (default: ``KIT_THREADS`` or the number of usable cores)."""
    if n is None:
        n = int(os.environ.get("KIT_THREADS") or 0) or usable_cores()
    n = max(1, int(n))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on GPUs that support it (fp16 otherwise), ``None`` (full precision) on CPU/MPS."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def setup(seed: int = 0, device: str = "auto", threads: int | None = None, quiet: bool = False) -> torch.device:
    """One call at the top of a notebook: seed, threads, device. Prints one line."""
    dev = pick_device(device)
    n = set_threads(threads)
    seed_everything(seed)
    if not quiet:
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type
        print(f"kit: device={name} threads={n} seed={seed} torch={torch.__version__}")
    return dev
