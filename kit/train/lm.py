"""Training and scoring language models — thin configurations of :func:`kit.train.fit`.

* :func:`train_lm` — lessons 07 (RNN/LSTM): AdamW, gradient clipping, cosine schedule; a recurrent
  model reads the stream in order carrying its state (:class:`TBPTT`: truncated backpropagation
  through time), any other model random windows.
* :func:`train_gpt` — lesson 09: a GPT on random windows for a number of steps (deterministic) or a
  budget of seconds, fused AdamW with matrix-only weight decay, warm-up + cosine, bf16 on GPU.
The numbers a language model is judged by are in :mod:`kit.train.lm_eval`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kit.data.batches import lm_batches, stream_batches
from kit.models.sampling import detach_state, is_recurrent, logits_of
from kit.train.callbacks import Callback
from kit.train.lm_eval import evaluate_lm
from kit.train.loop import fit
from kit.train.optim import MuonAdamW, hidden_matrices

__all__ = ["LMRun", "GPTRun", "TBPTT", "train_lm", "train_gpt"]


@dataclass
class LMRun:
    """What :func:`train_lm` returns: curves per evaluation, and wall-clock speed.

    ``history`` (a :class:`kit.train.History`) has ``step``, ``seconds``, ``train_loss`` (mean since the
    last evaluation), ``val_loss``, ``grad_norm`` (mean pre-clipping norm) and ``lr`` per evaluation.
    ``tokens_per_s`` is training throughput (wall-clock: put it in ``timing``, not ``metrics``).
    """
    history: object
    seconds: float
    tokens: int
    tokens_per_s: float
    final_val_loss: float
    extra: dict = field(default_factory=dict)


@dataclass
class GPTRun:
    """What :func:`train_gpt` returns. ``history`` rows: one per evaluation (``step``, ``seconds`` of
    training so far, ``tokens``, ``train_loss`` (mean since the last evaluation), ``val_loss``, ``lr``)."""
    history: object
    steps: int
    tokens: int
    seconds: float
    tokens_per_s: float
    final_val_loss: float
    extra: dict = field(default_factory=dict)

    def val_loss_at(self, seconds: float) -> float | None:
        """The last validation loss measured within ``seconds`` of training (``None`` if none)."""
        h = self.history
        got = [v for s, v in zip(h["seconds"], h["val_loss"]) if s <= seconds + 1e-9]
        return got[-1] if got else None


class TBPTT(nn.Module):
    """A recurrent language model that keeps its state between calls, cut from the graph each time:
    ``forward(x, y, reset)`` → the mean next-token cross-entropy of one chunk (truncated BPTT)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.state = model, None

    def forward(self, x, y, reset: bool = False):
        logits, state = self.model(x, None if reset else self.state)
        self.state = detach_state(state)  # no gradient into the previous chunk
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))


class _NextToken(nn.Module):
    """Any other language model: ``forward(x, y)`` → mean next-token cross-entropy."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, y):
        logits = logits_of(self.model(x))
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))


class _LiveCurves(Callback):
    """Train and validation curves that update during training (lesson 07)."""

    def __init__(self, title: str):
        self.title, self.fig = title, None

    def on_fit_start(self, trainer):
        from kit.viz import LiveFigure
        from kit.viz.text import lm_curves
        self.fig = LiveFigure(lambda: lm_curves(trainer.history, title=self.title))

    def on_epoch_end(self, trainer, row):
        self.fig.update()

    def on_fit_end(self, trainer):
        self.fig.update(force=True)


class _OnEval(Callback):
    def __init__(self, fn):
        self.fn = fn

    def on_epoch_end(self, trainer, row):
        self.fn(row)


def train_lm(model, train_ids: torch.Tensor, val_ids: torch.Tensor | None = None, *, steps: int = 1000,
             block_size: int = 64, batch_size: int = 32, lr: float = 3e-3, optimizer: str = "adamw",
             weight_decay: float = 0.0, clip_grad: float | None = 1.0, scheduler: str | None = "cosine",
             warmup: int = 0, eval_every: int = 100, eval_tokens: int | None = 20_000, device=None,
             seed: int = 0, stateful: bool | None = None, progress: bool = True, live: bool = False,
             title: str = "language model", amp: bool | None = None) -> LMRun:
    """Train a language model on a token stream with ``fit``: AdamW (default; no decay on biases and
    norms), gradient clipping (``clip_grad``; ``None``: off) and a cosine schedule down to a tenth of
    ``lr`` after ``warmup`` linear steps; the validation loss every ``eval_every`` steps.

    Batches: a recurrent model with ``stateful`` (default: ``is_recurrent(model)``) reads the stream
    in order with :func:`stream_batches`, carrying its state across chunks and detaching it each step —
    **truncated backpropagation through time** over ``block_size`` steps; at the end of the stream it
    restarts at a new offset with a fresh state. Otherwise each step draws random windows with
    :func:`lm_batches` (seeded by ``seed``: the same seed gives the same run on CPU).
    ``eval_tokens``: validation tokens per evaluation (``None``: all). ``live``: a plot of the curves
    that updates during training. Returns an :class:`LMRun`.
    """
    from kit.device import pick_device
    if steps < 1:
        raise ValueError(f"parameter 'steps' must be >= 1, got {steps}")
    if scheduler not in (None, "cosine"):
        raise ValueError(f"parameter 'scheduler' must be None or 'cosine', got {scheduler!r}")
    device = pick_device(device)
    model.to(device)
    stateful = is_recurrent(model) if stateful is None else stateful
    train_ids = train_ids.to(device)

    if stateful:
        net = TBPTT(model)

        def chunks(gen):
            while True:  # a new random offset each pass, so chunk boundaries move
                off = int(torch.randint(block_size, (1,), generator=gen))
                for k, (x, y) in enumerate(stream_batches(train_ids, batch_size, block_size, offset=off)):
                    yield x, y, k == 0  # a fresh state at the start of each pass
        stream = None

        def next_batch(step, gen):
            nonlocal stream
            stream = stream or chunks(gen)
            return next(stream)
    else:
        net = _NextToken(model)

        def next_batch(step, gen):
            return lm_batches(train_ids, block_size, batch_size, gen)

    val = None if val_ids is None else \
        (lambda m: evaluate_lm(model, val_ids, block_size, device=device, max_tokens=eval_tokens))
    callbacks = []
    if live:
        callbacks.append(_LiveCurves(title))
    tokens = 0

    def counted(step, gen):
        nonlocal tokens
        batch = next_batch(step, gen)
        tokens += batch[1].numel()
        return batch
    history = fit(net, counted, val, steps=steps, loss_fn=None, optimizer=optimizer, lr=lr,
                  weight_decay=weight_decay, decay_matrices_only=True, scheduler=scheduler, warmup=warmup,
                  min_lr=0.1 * lr if scheduler == "cosine" else 0.0, clip_grad=clip_grad, grad_norm=True,
                  eval_every=eval_every, device=device, amp=amp, seed=seed, progress=progress, desc=title,
                  callbacks=callbacks)
    last = history.last
    return LMRun(history=history, seconds=last["seconds"], tokens=tokens,
                 tokens_per_s=tokens / max(last["seconds"], 1e-9), final_val_loss=last.get("val_loss", float("nan")))


def train_gpt(model, train_ids: torch.Tensor, val_ids: torch.Tensor, tc, *, seconds: float | None = None,
              eval_marks: tuple = (), eval_every_s: float = 10.0, device=None, amp: bool | None = None,
              compile: bool = False, seed: int = 0, progress: bool = True, on_eval: Callable | None = None) -> GPTRun:
    """Train a GPT (``model(x, y) -> (logits, loss)``) on random windows of ``train_ids`` with ``fit``.

    ``tc`` is a :class:`kit.train.config.TrainConfig`: fused AdamW with weight decay on matrices only
    (or, with ``tc.optimizer="muon"``, Muon for the blocks' matrices and AdamW for the rest),
    linear warm-up then cosine from ``tc.lr`` to ``tc.min_lr``, gradient clipping.
    * ``seconds=None``: ``tc.steps`` steps, evaluating every ``tc.eval_every`` — deterministic on CPU
      for a given ``seed``.
    * ``seconds=S``: train for ``S`` seconds of training time (evaluation excluded); the cosine follows
      the elapsed fraction of ``S``. Evaluates every ``eval_every_s`` seconds and just before each of
      ``eval_marks`` (e.g. ``(60,)``) so "loss within 60 s" is measured exactly.
    * ``amp``: bf16 autocast (default: on CUDA only; fp16 with loss scaling where bf16 is missing).
      ``compile``: ``torch.compile`` the model (a GPU speed-up; on CPU its compile time dwarfs a lesson).
    ``on_eval(row)`` is called after each evaluation (e.g. a live plot). Returns a :class:`GPTRun`.
    """
    from kit.device import pick_device
    device = pick_device(device)
    model.to(device)
    train_ids, val_ids = train_ids.to(device), val_ids.to(device)
    block = model.cfg.block_size

    def next_batch(step, gen):
        return lm_batches(train_ids, block, tc.batch_size, gen)

    def val(m):
        return evaluate_lm(model, val_ids, block, batch_size=64, device=device, max_tokens=tc.eval_tokens)

    callbacks = []
    if on_eval is not None:
        callbacks.append(_OnEval(on_eval))
    budget = dict(seconds=seconds, eval_every_s=eval_every_s, eval_marks=eval_marks) if seconds else \
        dict(steps=tc.steps, eval_every=tc.eval_every)
    name = getattr(tc, "optimizer", "adamw")
    if name == "muon":  # Muon for the blocks' matrices, AdamW for embeddings, output layer, norms
        opt = dict(optimizer=MuonAdamW(*hidden_matrices(model), lr=tc.lr, weight_decay=tc.weight_decay,
                                       betas=tc.betas, fused=True))
    elif name == "adamw":
        opt = dict(optimizer="adamw", weight_decay=tc.weight_decay, betas=tc.betas, decay_matrices_only=True,
                   fused=True)
    else:
        raise ValueError(f"TrainConfig.optimizer must be 'adamw' or 'muon', got {name!r}")
    history = fit(model, next_batch, val, loss_fn=None, lr=tc.lr, scheduler="cosine", warmup=tc.warmup,
                  min_lr=tc.min_lr, clip_grad=tc.clip_grad or None, eval_at_start=True, device=device, amp=amp,
                  compile=compile, seed=seed, progress=progress, desc="training", callbacks=callbacks, **opt, **budget)
    per_step = tc.batch_size * block
    history.data["tokens"] = [s * per_step for s in history["step"]]
    last = history.last
    steps, t = int(last["step"]), last["seconds"]
    return GPTRun(history=history, steps=steps, tokens=steps * per_step, seconds=t,
                  tokens_per_s=steps * per_step / max(t, 1e-9), final_val_loss=last["val_loss"])
