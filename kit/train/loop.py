"""The one training engine: ``fit(model, data, val, epochs= | steps= | seconds=, ...)``.

``data`` is ``(X, y)`` tensors (shuffled minibatches each epoch, kept on the device), a ``DataLoader``
(or any re-iterable of batches), or a batch function ``next_batch(step, generator)``. A batch ``(x, y)``
goes through ``loss_fn(model(x), y)``; with ``loss_fn=None`` the model gets the whole batch
(``model(*batch)``, or ``model(**batch)`` for a dict) and returns its own loss: a scalar tensor, a dict
with ``"loss"`` (its other scalars are logged too), or nanoGPT's ``(logits, loss)``.

The run stops after ``epochs`` passes, ``steps`` optimizer steps or ``seconds`` of training (evaluation
not counted). Epoch runs evaluate after each epoch; step and second runs every ``eval_every`` steps,
every ``eval_every_s`` seconds, just before each of ``eval_marks`` (seconds, so "the loss within 60 s"
is read at ≤ 60 s) and at the end. ``val`` is ``(X, y)`` tensors or a function ``val(model) -> float |
dict`` (e.g. a language model's validation loss). Optimizers, parameter groups and schedules come from
:mod:`kit.train.optim`; mixed precision from :class:`kit.train.amp.Precision`.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

import torch

from kit.device import pick_device
from kit.models.base import accuracy, evaluating
from kit.train.amp import Precision
from kit.train.callbacks import Callback, LivePlot, ProgressBar, load_checkpoint
from kit.train.history import History
from kit.train.optim import OPTIMIZERS, SCHEDULES, make_optimizer, torch_scheduler, warmup_cosine

__all__ = ["OPTIMIZERS", "Trainer", "accuracy", "fit", "make_optimizer", "model_loss"]


def model_loss(out) -> tuple[torch.Tensor, dict]:
    """``(loss, other scalars)`` from what a model returned: a scalar tensor, a dict with ``"loss"``, or
    ``(logits, loss)``."""
    if isinstance(out, dict):
        if "loss" not in out:
            raise ValueError(f"a model trained with loss_fn=None must return its loss: got a dict with {sorted(out)}")
        return out["loss"], {k: v for k, v in out.items() if k != "loss" and _is_scalar(v)}
    if isinstance(out, (tuple, list)) and out and _is_scalar(out[-1]):
        return out[-1], {}
    if _is_scalar(out):
        return out, {}
    raise ValueError("a model trained with loss_fn=None must return a scalar loss, a dict with 'loss', or (logits, loss)")


def _is_scalar(v) -> bool:
    return isinstance(v, torch.Tensor) and v.ndim == 0


def _as_tensors(data, device) -> tuple:
    ts = tuple(torch.as_tensor(d) for d in data)
    if len(ts) == 2 and len(ts[0]) != len(ts[1]):
        raise ValueError(f"X has {len(ts[0])} rows but y has {len(ts[1])}")
    if len({len(t) for t in ts}) > 1:
        raise ValueError("the tensors of a data set need one row per example: they have "
                         + ", ".join(str(len(t)) for t in ts) + " rows")
    return tuple(t.to(device, non_blocking=True) for t in ts)


def _is_tensors(data) -> bool:
    """``(X, y)``, or ``(ids, mask, y)``, … : equally long arrays, batched together."""
    return isinstance(data, (tuple, list)) and len(data) >= 1 and \
        all(isinstance(d, torch.Tensor) or hasattr(d, "__array__") for d in data)


def _is_optimizer(optimizer) -> bool:
    """A torch Optimizer or a duck-typed one (e.g. :class:`kit.train.optim.MuonAdamW`), not a name."""
    return hasattr(optimizer, "step") and hasattr(optimizer, "param_groups")


def _check_options(mode: str, kind: str, val, **o) -> None:
    """Refuse options that would mean nothing in this run (rather than ignore them)."""
    def no(msg):
        raise ValueError(msg)
    if o["metrics"]:
        if o["loss_fn"] is None:
            no("metrics need a loss_fn (they read the logits): a model that returns its own loss reports its "
               "other scalars itself (a dict with 'loss' and them)")
        if val is None or (callable(val) and not _is_tensors(val)):
            no("metrics are computed on the validation data: give val=(X, y) (a validation function returns "
               "its own numbers)")
    if kind != "tensors":
        for name in ("batch_size", "augment"):
            if o[name] is not None:
                no(f"parameter {name!r} applies to (X, y) tensors: a DataLoader or a batch function makes "
                   "its own batches")
    if _is_optimizer(o["optimizer"]):
        for name in _NAMED_ONLY:
            if o[name] not in (None, False):
                no(f"parameter {name!r} builds a named optimizer: give it to the Optimizer you pass instead")
        if o["lr"] is not None and o["scheduler"] is None and not o["warmup"]:
            no("parameter 'lr' with an Optimizer is only the peak of a schedule: the Optimizer has its own lr")
    elif o["optimizer"] in OPTIMIZERS:
        if o["momentum"] is not None and o["optimizer"] != "momentum":
            no(f"parameter 'momentum' is for optimizer='momentum', not {o['optimizer']!r}")
        if o["betas"] is not None and o["optimizer"] not in ("adam", "adamw"):
            no(f"parameter 'betas' is for optimizer='adam' or 'adamw', not {o['optimizer']!r}")
        if o["fused"] and o["optimizer"] != "adamw":
            no(f"parameter 'fused' is for optimizer='adamw', not {o['optimizer']!r}")
    sched = o["scheduler"]
    if not (sched in SCHEDULES or callable(sched)):
        no(f"parameter 'scheduler' must be one of {SCHEDULES} or a callable f(optimizer, total_steps), got {sched!r}")
    if sched not in (None, "cosine"):
        if mode == "seconds":
            no(f"scheduler={sched!r} needs the run's number of optimizer steps, which a seconds run does not know: "
               "use None or 'cosine' (it follows the elapsed fraction of the seconds)")
        if o["warmup"]:
            no(f"parameter 'warmup' is for scheduler=None or 'cosine': {sched!r} shapes the whole run itself")
    if o["min_lr"] and sched != "cosine":
        no(f"parameter 'min_lr' is where scheduler='cosine' ends: it means nothing with scheduler={sched!r}")
    when = {"epochs": "after each epoch", "steps": "every 'eval_every' steps and at the end"}
    for name, modes in (("eval_every", ("steps", "seconds")), ("eval_at_start", ("steps", "seconds")),
                        ("eval_every_s", ("seconds",)), ("eval_marks", ("seconds",))):
        if o[name] and mode not in modes:
            no(f"parameter {name!r} is for {' and '.join(modes)} runs: this {mode.rstrip('s')} run evaluates "
               f"{when[mode]}")


_NAMED_ONLY = ("weight_decay", "momentum", "betas", "decay_matrices_only", "fused")


class Trainer:
    """The state of one training run; ``fit`` builds one (with the same options) and calls :meth:`run`."""

    def __init__(self, model, train, val=None, *,
                 # the task
                 loss_fn: Callable | None, metrics: dict[str, Callable] | None = None, penalty: Callable | None = None,
                 # the budget
                 epochs: int | None = None, steps: int | None = None, seconds: float | None = None,
                 # batches
                 batch_size: int | None = None, augment: Callable | None = None, eval_batch_size: int = 4096,
                 # the optimizer
                 optimizer="adam", lr: float | None = None, weight_decay: float | None = None,
                 momentum: float | None = None, betas: tuple | None = None, decay_matrices_only: bool = False,
                 fused: bool = False,
                 # the learning-rate schedule
                 scheduler: str | Callable | None = None, warmup: int = 0, min_lr: float = 0.0,
                 # each step
                 clip_grad: float | None = None, grad_norm: bool = False, amp: bool | None = None,
                 compile: bool = False,
                 # evaluation of steps and seconds runs
                 eval_every: int | None = None, eval_every_s: float | None = None, eval_marks: Iterable[float] = (),
                 eval_at_start: bool = False,
                 # the run
                 device=None, seed: int = 0, callbacks: Iterable[Callback] = (), progress: bool = True,
                 live: bool = False, desc: str = "train"):
        given = [k for k, v in (("epochs", epochs), ("steps", steps), ("seconds", seconds)) if v is not None]
        if len(given) > 1:
            raise ValueError(f"give one of 'epochs', 'steps' or 'seconds', not {' and '.join(map(repr, given))}")
        self.mode = given[0] if given else "epochs"
        epochs = 10 if self.mode == "epochs" and epochs is None else epochs
        for name, v, lo in (("epochs", epochs, 1), ("steps", steps, 1), ("batch_size", batch_size, 1),
                            ("eval_batch_size", eval_batch_size, 1), ("warmup", warmup, 0)):
            if v is not None and v < lo:
                raise ValueError(f"parameter {name!r} must be >= {lo}, got {v}")
        if seconds is not None and not seconds > 0:
            raise ValueError(f"parameter 'seconds' must be > 0, got {seconds}")
        self.epochs, self.steps, self.seconds = epochs, steps, seconds
        self.kind = "tensors" if _is_tensors(train) else "function" if callable(train) else "loader"
        _check_options(self.mode, self.kind, val, loss_fn=loss_fn, metrics=metrics, batch_size=batch_size,
                       augment=augment, optimizer=optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum,
                       betas=betas, decay_matrices_only=decay_matrices_only, fused=fused, scheduler=scheduler,
                       warmup=warmup, min_lr=min_lr, eval_every=eval_every, eval_every_s=eval_every_s,
                       eval_marks=tuple(eval_marks), eval_at_start=eval_at_start)
        self.device = pick_device(device)
        self.model = model.to(self.device)
        # torch.compile (optional, mostly worth it on GPU): the compiled wrapper shares the model's weights
        self.forward = torch.compile(self.model) if compile else self.model
        self.train_data = _as_tensors(train, self.device) if self.kind == "tensors" else train
        self.val_data = _as_tensors(val, self.device) if val is not None and _is_tensors(val) else val
        for name, d in (("train", self.train_data), ("val", self.val_data)):
            if loss_fn is not None and isinstance(d, tuple) and len(d) != 2:
                raise ValueError(f"with a loss_fn, {name!r} must be (X, y); a model that returns its own loss "
                                 f"(loss_fn=None) may take {len(d)} tensors")
        batch_size = 64 if batch_size is None else batch_size
        self.loss_fn, self.batch_size, self.eval_batch_size = loss_fn, batch_size, eval_batch_size
        self.metrics = dict(metrics or {})
        self.penalty, self.clip_grad, self.augment = penalty, clip_grad, augment
        self.grad_norm = grad_norm
        duck = _is_optimizer(optimizer)
        if duck:
            lr = optimizer.param_groups[0]["lr"] if lr is None else lr
        else:
            lr = 1e-3 if lr is None else lr
            optimizer = make_optimizer(optimizer, model.parameters(), lr, 0.0 if weight_decay is None else weight_decay,
                                       0.9 if momentum is None else momentum, betas, decay_matrices_only, fused)
        self.optimizer = optimizer
        self.lr, self.warmup, self.min_lr = lr, warmup, min_lr
        if self.kind == "tensors":
            self.steps_per_epoch = -(-len(self.train_data[0]) // batch_size)
        elif self.kind == "loader" and hasattr(train, "__len__"):
            self.steps_per_epoch = len(train)
        else:
            self.steps_per_epoch = None
        # the optimizer steps of the whole run (None in a seconds run: its schedules follow the elapsed time)
        if self.mode == "epochs":
            if (scheduler is not None or warmup) and self.steps_per_epoch is None:
                raise ValueError("a schedule in an epoch run needs data of known length (tensors or a DataLoader)")
            self.total_steps = None if self.steps_per_epoch is None else self.epochs * self.steps_per_epoch
        else:
            self.total_steps = steps
        self.schedule = scheduler
        # onecycle and callables are torch schedulers stepped after each optimizer step; cosine and warm-up are
        # set before each step by warmup_cosine, the same function in epoch, steps and seconds runs
        self.scheduler = None if scheduler in (None, "cosine") else \
            torch_scheduler(scheduler, self.optimizer, lr, self.total_steps)
        self.precision = Precision(self.device, amp)
        self.generator = torch.Generator().manual_seed(seed)
        self.eval_every, self.eval_every_s = eval_every, eval_every_s
        self.eval_marks = sorted(m for m in eval_marks if seconds is None or m < seconds)
        self.eval_at_start = eval_at_start
        self.history = History()
        self.start_epoch, self.stop = 0, False
        self.step, self.t_train = 0, 0.0
        self.callbacks = list(callbacks)
        if live:
            self.callbacks.insert(0, LivePlot())
        if progress:
            self.callbacks.insert(0, ProgressBar(desc))

    # ---- state, for atomic checkpoints and resuming
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "epoch": len(self.history), "step": self.step, "history": self.history.as_dict(),
                "torch_rng": torch.get_rng_state(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        self.history = History(state["history"])
        self.start_epoch = int(state["epoch"])
        self.step = int(state.get("step", self.start_epoch * (self.steps_per_epoch or 0)))
        torch.set_rng_state(state["torch_rng"])
        self.generator.set_state(state["generator"])

    # ---- one step
    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        """The training loss of one batch (and the model's other scalars), under autocast."""
        with self.precision.autocast():
            if self.loss_fn is None:
                out = self.forward(**batch) if isinstance(batch, dict) else \
                    self.forward(*batch) if isinstance(batch, (tuple, list)) else self.forward(batch)
                return model_loss(out)
            xb, yb = batch
            return self.loss_fn(self.forward(xb), yb), {}

    def train_step(self, batch) -> tuple[float, float | None]:
        """Forward, backward, clip and update on one batch; returns ``(loss, gradient norm or None)``."""
        loss, _ = self.loss(batch)
        full = loss + self.penalty(self.model) if self.penalty is not None else loss
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward(full)
        gn = self.precision.step(self.optimizer, self.model.parameters(), self.clip_grad, self.grad_norm)
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.item(), gn

    # ---- batches
    def _tensor_batches(self):
        X, *rest = self.train_data
        order = torch.randperm(len(X), generator=self.generator).to(self.device)
        for i in range(0, len(X), self.batch_size):
            idx = order[i:i + self.batch_size]
            xb = X[idx]
            if self.augment is not None:
                xb = self.augment(xb, self.generator)
            yield (xb, *(t[idx] for t in rest))

    def _epoch_batches(self):
        if self.kind == "tensors":
            yield from self._tensor_batches()
        else:
            yield from self.train_data

    def _batches(self):
        """Endless batches for a steps or seconds run."""
        if self.kind == "function":
            while True:
                yield self.train_data(self.step, self.generator)
        while True:
            yield from self._epoch_batches()

    # ---- evaluation
    @torch.inference_mode()
    def evaluate(self, data=None, batch_size: int | None = None) -> dict:
        """Mean loss and metrics of the model on ``(X, y)`` (``eval_batch_size`` rows at a time), or the
        result of a validation function."""
        data = self.val_data if data is None else data
        with evaluating(self.model):
            if callable(data) and not isinstance(data, tuple):
                with self.precision.autocast():
                    got = data(self.model)
                return dict(got) if isinstance(got, dict) else {"loss": float(got)}
            batch_size = batch_size or self.eval_batch_size
            if self.loss_fn is None:  # the model returns its loss (and other scalars): their means over the rows
                sums, N = {}, len(data[0])
                for i in range(0, N, batch_size):
                    with self.precision.autocast():
                        loss, ex = model_loss(self.forward(*(t[i:i + batch_size] for t in data)))
                    n = min(batch_size, N - i)
                    for k, v in {"loss": loss, **ex}.items():
                        sums[k] = sums.get(k, 0.0) + v.item() * n
                return {k: v / N for k, v in sums.items()}
            X, y = data
            outs = []
            for i in range(0, len(X), batch_size):
                with self.precision.autocast():
                    outs.append(self.forward(X[i:i + batch_size]).float())
            logits = torch.cat(outs)
            row = {"loss": self.loss_fn(logits, y).item()}
            row.update({k: fn(logits, y) for k, fn in self.metrics.items()})
            return row

    def _log(self, row: dict) -> None:
        self.history.log(row)
        for cb in self.callbacks:
            cb.on_epoch_end(self, row)

    # ---- runs
    def run(self) -> History:
        for cb in self.callbacks:
            cb.on_fit_start(self)
        try:
            self._run_epochs() if self.mode == "epochs" else self._run_steps()
        finally:
            for cb in self.callbacks:
                cb.on_fit_end(self)
        return self.history

    def _set_lr(self, progress: float) -> None:
        """Cosine (after a linear warm-up), or a warm-up to a constant rate: the rate of the next optimizer step.
        ``progress`` is the fraction of the run done: of its optimizer steps, or of its seconds."""
        if self.schedule == "cosine" or (self.warmup and self.step < self.warmup):
            lr = warmup_cosine(progress, self.step, self.lr, self.min_lr if self.schedule else self.lr, self.warmup)
            for g in self.optimizer.param_groups:
                g["lr"] = lr

    def _run_epochs(self) -> None:
        for epoch in range(self.start_epoch, self.epochs):
            t0 = time.perf_counter()
            self.model.train()
            total, n, gn_sum, steps = 0.0, 0, 0.0, 0
            for batch in self._epoch_batches():
                if self.total_steps:
                    self._set_lr(self.step / self.total_steps)
                lv, gn = self.train_step(batch)
                rows = len(batch[0]) if isinstance(batch, (tuple, list)) else 1
                total += lv * rows
                n += rows
                gn_sum, steps = gn_sum + (float(gn) if gn is not None else 0.0), steps + 1
                self.step += 1
                for cb in self.callbacks:
                    cb.on_batch_end(self, lv)
            row = {"epoch": epoch + 1, "train_loss": total / max(n, 1)}
            if self.val_data is not None:
                row.update({f"val_{k}": v for k, v in self.evaluate().items()})
            if self.grad_norm and steps:
                row["grad_norm"] = gn_sum / steps
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            row["seconds"] = time.perf_counter() - t0
            self._log(row)
            if self.stop:
                break

    def _eval_row(self, run_loss: float, run_gn: float, run_n: int) -> dict:
        row = {"step": self.step, "seconds": self.t_train,
               "train_loss": run_loss / run_n if run_n else float("nan")}
        if self.val_data is not None:
            row.update({f"val_{k}": v for k, v in self.evaluate().items()})
        if self.grad_norm and run_n:
            row["grad_norm"] = run_gn / run_n
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        return row

    def _run_steps(self) -> None:
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        batches = self._batches()
        run_loss, run_gn, run_n, last_dt = 0.0, 0.0, 0, 0.0
        next_eval_t, marks = self.eval_every_s, list(self.eval_marks)
        if self.eval_at_start:
            self._log(self._eval_row(0.0, 0.0, 0))
        self.model.train()
        while not self.stop:
            if self.mode == "steps":
                if self.step >= self.steps:
                    break
                progress = self.step / self.steps
            else:
                if self.t_train + last_dt > self.seconds:  # the next step would overrun the budget
                    break
                progress = self.t_train / self.seconds
            self._set_lr(progress)
            t0 = time.perf_counter()
            lv, gn = self.train_step(next(batches))
            sync()
            last_dt = time.perf_counter() - t0
            self.t_train += last_dt
            self.step += 1
            run_loss, run_n = run_loss + lv, run_n + 1
            run_gn += float(gn) if gn is not None else 0.0
            for cb in self.callbacks:
                cb.on_batch_end(self, lv)
            due = bool(self.eval_every and self.step % self.eval_every == 0)
            if self.mode == "steps":
                due = due or self.step == self.steps
            else:
                nxt = self.t_train + 2 * last_dt  # a safety margin: step times vary on a busy machine
                due = due or (next_eval_t is not None and self.t_train >= next_eval_t) or \
                    any(self.t_train <= m < nxt for m in marks)
            if due:
                self._log(self._eval_row(run_loss, run_gn, run_n))
                run_loss, run_gn, run_n = 0.0, 0.0, 0
                self.model.train()
                if next_eval_t is not None:
                    while next_eval_t <= self.t_train:
                        next_eval_t += self.eval_every_s
                if self.mode == "seconds":
                    marks = [m for m in marks if m >= nxt]
        if run_n:
            self._log(self._eval_row(run_loss, run_gn, run_n))


def fit(model, train, val=None, *,
        # the task
        loss_fn: Callable | None, metrics: dict[str, Callable] | None = None, penalty: Callable | None = None,
        # the budget
        epochs: int | None = None, steps: int | None = None, seconds: float | None = None,
        # batches
        batch_size: int | None = None, augment: Callable | None = None, eval_batch_size: int = 4096,
        # the optimizer
        optimizer="adam", lr: float | None = None, weight_decay: float | None = None, momentum: float | None = None,
        betas: tuple | None = None, decay_matrices_only: bool = False, fused: bool = False,
        # the learning-rate schedule
        scheduler: str | Callable | None = None, warmup: int = 0, min_lr: float = 0.0,
        # each step
        clip_grad: float | None = None, grad_norm: bool = False, amp: bool | None = None, compile: bool = False,
        # evaluation of steps and seconds runs
        eval_every: int | None = None, eval_every_s: float | None = None, eval_marks: Iterable[float] = (),
        eval_at_start: bool = False,
        # the run
        device=None, seed: int = 0, callbacks: Iterable[Callback] = (), progress: bool = True, live: bool = False,
        desc: str = "train", resume: str | None = None) -> History:
    """Train ``model`` in place on ``train`` (see the module docstring), evaluating on ``val``; returns the
    :class:`History` (one row per epoch, or per evaluation of a steps or seconds run). Every option is
    keyword-only; an option that would mean nothing in the run is refused with a ``ValueError``.

    **The task** (no default: say what is learned). ``loss_fn(model(x), y)``, e.g. ``F.cross_entropy``, or
    ``None``: the model gets the whole batch and returns its loss (a scalar, a dict with ``"loss"`` whose other
    scalars are logged too, or ``(logits, loss)``). ``metrics``: ``{name: fn(logits, y) -> float}`` computed on
    ``val=(X, y)`` and logged as ``val_<name>``, e.g. ``{"acc": accuracy}`` (default: none; they need a
    ``loss_fn``). ``penalty``: ``fn(model)`` added to the training loss (e.g. L1).

    **The budget**: one of ``epochs`` (passes over the data; the default, 10), ``steps`` (optimizer steps) or
    ``seconds`` (of training, evaluation not counted).

    **Batches** (``train=(X, y)`` tensors only; a DataLoader or a batch function makes its own):
    ``batch_size`` (default 64; reshuffled each epoch with the seeded generator), ``augment(xb, generator)``.
    ``eval_batch_size``: validation rows per forward pass.

    **The optimizer**: ``'sgd' | 'momentum' | 'rmsprop' | 'adam' | 'adamw'`` built with ``lr`` (default 1e-3),
    ``weight_decay`` (0), ``momentum`` ('momentum' only; 0.9), ``betas`` (Adam/AdamW), ``decay_matrices_only``
    (no decay on biases and norms) and ``fused`` (AdamW's fused kernel); or an Optimizer (kit's ``MuonAdamW``
    too), which takes none of them: then ``lr`` is only a schedule's peak (default: the optimizer's own).

    **The schedule** — the same in epoch, steps and seconds runs, per optimizer step. ``None``: constant ``lr``
    (after ``warmup`` linear steps if given). ``'cosine'``: ``warmup`` linear steps, then
    :func:`~kit.train.optim.warmup_cosine` from ``lr`` down to ``min_lr`` over the run (the fraction of its
    optimizer steps done; of its seconds in a seconds run). ``'onecycle'`` or a callable
    ``f(optimizer, total_steps)`` (a torch scheduler stepped after each step): epoch and steps runs, with no
    ``warmup`` or ``min_lr`` (they shape the run themselves).

    **Each step**: ``clip_grad`` (global norm), ``grad_norm`` (log the mean norm before clipping),
    ``amp`` (bf16 autocast, fp16 with a scaler without bf16; default: on CUDA only), ``compile`` (torch.compile).

    **Evaluation**: an epoch run evaluates after each epoch. Steps and seconds runs: every ``eval_every``
    steps, at the end, and before the first step with ``eval_at_start``; seconds runs also every
    ``eval_every_s`` seconds and just before each of ``eval_marks`` (seconds, so "the loss within 60 s" is read
    at ≤ 60 s).

    **The run**: ``device`` (default: the best available), ``seed`` (batches and augmentation), ``callbacks``,
    ``progress`` (a bar), ``live`` (curves that update), ``desc`` (the bar's label), ``resume`` (an epoch run
    continues from this checkpoint file when it exists: see :class:`~kit.train.callbacks.Checkpoint`).
    """
    options = {k: v for k, v in locals().items() if k not in ("model", "train", "val", "resume")}
    if resume is not None and (steps is not None or seconds is not None):
        raise ValueError("parameter 'resume' continues an epoch run (Checkpoint saves after each epoch)")
    trainer = Trainer(model, train, val, **options)
    if resume is not None:
        import os
        if os.path.exists(resume):
            trainer.load_state_dict(load_checkpoint(resume, map_location=trainer.device))
    trainer.run()
    return trainer.history
