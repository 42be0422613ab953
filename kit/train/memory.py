"""How much memory a training run needs — measured, and said what was measured.

On a GPU, PyTorch's allocator keeps statistics: :class:`MemoryMeter` reports
``torch.cuda.max_memory_allocated`` during ``fit`` (above what was allocated before it started). On a CPU there
are no such statistics (and ``tracemalloc`` does not see tensor memory), so the meter counts the tensors that
training keeps alive:

* **training state** — the weights, their gradients and the optimizer's state (AdamW: two moments per trained
  weight), counted from the tensors themselves at the end of the run;
* **activations** — the tensors autograd saves for the backward pass, counted for every step through
  ``torch.autograd.graph.saved_tensors_hooks`` (each storage once; the weights themselves excluded); the
  largest step is kept.

Their sum is a lower bound of the peak (temporaries of the backward pass and the allocator's slack are not
counted), and it is exact about what differs between full fine-tuning, LoRA and a head-only run: which tensors
have gradients and optimizer state.
"""
from __future__ import annotations

import torch

from kit.train.callbacks import Callback

__all__ = ["MemoryMeter", "tensor_bytes", "state_bytes"]


def tensor_bytes(tensors) -> int:
    """Bytes of the distinct storages among ``tensors`` (shared or tied tensors counted once)."""
    seen, total = set(), 0
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            continue
        s = t.untyped_storage()
        if s.data_ptr() in seen:
            continue
        seen.add(s.data_ptr())
        total += s.nbytes()
    return total


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """``{"weights", "gradients", "optimizer"}``: bytes of the model's parameters and buffers, of the gradients
    they hold, and of the optimizer's state tensors."""
    params = list(model.parameters())
    opt = [] if optimizer is None else [v for st in optimizer.state.values() for v in st.values()
                                        if isinstance(v, torch.Tensor) and v.ndim > 0]
    return {"weights": tensor_bytes(params + list(model.buffers())),
            "gradients": tensor_bytes(p.grad for p in params if p.grad is not None),
            "optimizer": tensor_bytes(opt)}


class MemoryMeter(Callback):
    """A ``fit`` callback measuring the memory of a training run (see the module's docstring).

    After the run: ``peak_bytes`` (CUDA: the allocator's peak above the start; CPU: training state + largest
    step's saved activations), ``parts`` (the CPU breakdown, bytes) and ``what`` (how it was measured, in words).
    """

    def __init__(self):
        self.peak_bytes, self.parts, self.what = 0, {}, ""
        self._ctx, self._step, self._act_peak, self._params = None, {}, 0, set()

    def _pack(self, t):
        s = t.untyped_storage()
        ptr = s.data_ptr()
        if ptr not in self._params and ptr not in self._step:
            self._step[ptr] = s.nbytes()
        return t

    def on_fit_start(self, trainer):
        self.device = trainer.device
        self._params = {p.untyped_storage().data_ptr() for p in trainer.model.parameters()}
        self._step, self._act_peak = {}, 0
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._ctx.__enter__()

    def on_batch_end(self, trainer, loss):
        self._act_peak = max(self._act_peak, sum(self._step.values()))
        self._step = {}

    def on_fit_end(self, trainer):
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = None
        self.parts = {**state_bytes(trainer.model, trainer.optimizer), "activations": self._act_peak}
        if self.device.type == "cuda":
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
            self.what = "CUDA allocator peak during training (torch.cuda.max_memory_allocated)"
        else:
            self.peak_bytes = sum(self.parts.values())
            self.what = ("weights + gradients + optimizer state + the largest step's activations saved for backward, "
                         "counted from the tensors (a lower bound of the CPU peak)")
