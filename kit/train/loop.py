"""One device-agnostic training loop: ``fit(model, (X, y), val=(Xv, yv), ...)``."""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterable

import torch
import torch.nn.functional as F

from kit.device import amp_dtype, pick_device
from kit.train.callbacks import Callback, LivePlot, ProgressBar, load_checkpoint
from kit.train.history import History

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam", "adamw")


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows whose arg-max class equals the label (binary: logit > 0)."""
    if logits.ndim == 1 or logits.shape[-1] == 1:
        return ((logits.reshape(-1) > 0).long() == y.reshape(-1).long()).float().mean().item()
    return (logits.argmax(-1) == y).float().mean().item()


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9):
    """SGD, SGD with momentum, RMSProp, Adam or AdamW by name."""
    params = list(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"parameter 'optimizer' must be one of {OPTIMIZERS}, got {name!r}")


def _as_tensor_pair(data, device):
    X, y = data
    X = torch.as_tensor(X)
    y = torch.as_tensor(y)
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
    return X.to(device, non_blocking=True), y.to(device, non_blocking=True)


class Trainer:
    """The state of one training run; ``fit`` builds one and calls :meth:`run`."""

    def __init__(self, model, train, val=None, *, loss_fn: Callable = F.cross_entropy, epochs: int = 10,
                 batch_size: int = 64, optimizer="adam", lr: float = 1e-3, weight_decay: float = 0.0,
                 momentum: float = 0.9, scheduler: str | Callable | None = None, clip_grad: float | None = None,
                 metrics: dict[str, Callable] | None = None, penalty: Callable | None = None,
                 device=None, amp: bool | None = None, callbacks: Iterable[Callback] = (), seed: int = 0,
                 progress: bool = True, live: bool = False, augment: Callable | None = None,
                 compile: bool = False, eval_batch_size: int = 4096):
        if epochs < 1:
            raise ValueError(f"parameter 'epochs' must be >= 1, got {epochs}")
        if batch_size < 1:
            raise ValueError(f"parameter 'batch_size' must be >= 1, got {batch_size}")
        if eval_batch_size < 1:
            raise ValueError(f"parameter 'eval_batch_size' must be >= 1, got {eval_batch_size}")
        self.device = device if isinstance(device, torch.device) else pick_device(device or "auto")
        self.model = model.to(self.device)
        # torch.compile (optional, mostly worth it on GPU): the compiled wrapper shares the model's weights
        self.forward = torch.compile(self.model) if compile else self.model
        self.train_data = _as_tensor_pair(train, self.device)
        self.val_data = None if val is None else _as_tensor_pair(val, self.device)
        self.loss_fn, self.epochs, self.batch_size = loss_fn, epochs, batch_size
        self.eval_batch_size = eval_batch_size
        self.metrics = {"acc": accuracy} if metrics is None else dict(metrics)
        self.penalty, self.clip_grad, self.augment = penalty, clip_grad, augment
        self.optimizer = optimizer if isinstance(optimizer, torch.optim.Optimizer) else make_optimizer(
            optimizer, model.parameters(), lr, weight_decay, momentum)
        self.steps_per_epoch = -(-len(self.train_data[0]) // batch_size)
        self.scheduler = self._make_scheduler(scheduler, lr)
        use_amp = self.device.type == "cuda" if amp is None else amp
        self.amp_dtype = amp_dtype(self.device) if use_amp else None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.generator = torch.Generator().manual_seed(seed)
        self.history = History()
        self.start_epoch, self.stop = 0, False
        self.callbacks = list(callbacks)
        if live:
            self.callbacks.insert(0, LivePlot())
        if progress:
            self.callbacks.insert(0, ProgressBar())

    def _make_scheduler(self, scheduler, lr):
        total = self.epochs * self.steps_per_epoch
        if scheduler is None:
            return None
        if scheduler == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=lr, total_steps=total)
        if scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=total)
        if callable(scheduler):
            return scheduler(self.optimizer, total)
        raise ValueError(f"parameter 'scheduler' must be None, 'onecycle', 'cosine' or a callable, got {scheduler!r}")

    # ---- state, for atomic checkpoints and resuming
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "epoch": len(self.history), "history": self.history.as_dict(),
                "torch_rng": torch.get_rng_state(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        self.history = History(state["history"])
        self.start_epoch = int(state["epoch"])
        torch.set_rng_state(state["torch_rng"])
        self.generator.set_state(state["generator"])

    # ---- steps
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_epoch(self) -> float:
        self.model.train()
        X, y = self.train_data
        order = torch.randperm(len(X), generator=self.generator).to(self.device)
        total, n = 0.0, 0
        for i in range(0, len(X), self.batch_size):
            idx = order[i:i + self.batch_size]
            xb, yb = X[idx], y[idx]
            if self.augment is not None:
                xb = self.augment(xb, self.generator)
            with self._autocast():
                loss = self.loss_fn(self.forward(xb), yb)
                full = loss + self.penalty(self.model) if self.penalty is not None else loss
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(full).backward()
                self.scaler.unscale_(self.optimizer)
            else:
                full.backward()
            if self.clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            total += loss.item() * len(idx)
            n += len(idx)
            for cb in self.callbacks:
                cb.on_batch_end(self, loss.item())
        return total / n

    @torch.inference_mode()
    def evaluate(self, data, batch_size: int | None = None) -> dict:
        """Mean loss and metrics of the model on ``(X, y)``, ``batch_size`` (default ``eval_batch_size``) rows at a time."""
        batch_size = batch_size or self.eval_batch_size
        self.model.eval()
        X, y = data
        outs = []
        for i in range(0, len(X), batch_size):
            with self._autocast():
                outs.append(self.forward(X[i:i + batch_size]).float())
        logits = torch.cat(outs)
        row = {"loss": self.loss_fn(logits, y).item()}
        row.update({k: fn(logits, y) for k, fn in self.metrics.items()})
        return row

    def run(self) -> History:
        for cb in self.callbacks:
            cb.on_fit_start(self)
        try:
            for epoch in range(self.start_epoch, self.epochs):
                t0 = time.perf_counter()
                row = {"epoch": epoch + 1, "train_loss": self.train_epoch()}
                if self.val_data is not None:
                    row.update({f"val_{k}": v for k, v in self.evaluate(self.val_data).items()})
                row["lr"] = self.optimizer.param_groups[0]["lr"]
                row["seconds"] = time.perf_counter() - t0
                self.history.log(row)
                for cb in self.callbacks:
                    cb.on_epoch_end(self, row)
                if self.stop:
                    break
        finally:
            for cb in self.callbacks:
                cb.on_fit_end(self)
        return self.history


def fit(model, train, val=None, *, resume: str | None = None, **kwargs) -> History:
    """Train ``model`` on ``train=(X, y)`` (tensors or arrays, kept on the device), evaluating on ``val``.

    Keyword arguments: ``loss_fn, epochs, batch_size, optimizer ('sgd'|'momentum'|'rmsprop'|'adam'|'adamw'
    or an Optimizer), lr, weight_decay, momentum, scheduler (None|'onecycle'|'cosine'|callable), clip_grad,
    metrics ({name: fn(logits, y)}), penalty (fn(model) → extra loss, e.g. L1), device, amp, callbacks,
    seed, progress, live, augment (fn(xb, generator) → xb), compile, eval_batch_size`` (rows per evaluation
    forward pass: lower it for large models). ``resume`` continues from a checkpoint file.
    Returns a :class:`History`; the model is trained in place.
    """
    trainer = Trainer(model, train, val, **kwargs)
    if resume is not None:
        import os
        if os.path.exists(resume):
            trainer.load_state_dict(load_checkpoint(resume, map_location=trainer.device))
    trainer.run()
    return trainer.history
