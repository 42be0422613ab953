"""Callbacks for ``fit``: progress bar, live plot, early stopping, atomic checkpoints."""
from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import torch


class Callback:
    """Hooks called by ``fit``; ``trainer`` is the running :class:`kit.train.loop.Trainer`.

    ``on_epoch_end`` gets every logged row: the end of an epoch, or an evaluation of a steps or seconds run.
    """

    def on_fit_start(self, trainer): ...
    def on_batch_end(self, trainer, loss: float): ...
    def on_epoch_end(self, trainer, row: dict): ...
    def on_fit_end(self, trainer): ...


class ProgressBar(Callback):
    """A ``tqdm.auto`` bar over epochs (or steps, or seconds of training) showing the latest losses and metrics."""

    def __init__(self, desc: str = "train"):
        self.desc = desc
        self.bar = None

    def on_fit_start(self, trainer):
        from tqdm.auto import tqdm
        if trainer.mode == "epochs":
            total, unit, start = trainer.epochs, "epoch", trainer.start_epoch
        elif trainer.mode == "steps":
            total, unit, start = trainer.steps, "step", 0
        else:
            total, unit, start = int(trainer.seconds), "s", 0
        self.bar = tqdm(total=total, initial=start, desc=self.desc, unit=unit, mininterval=0.5)

    def on_batch_end(self, trainer, loss):
        if trainer.mode != "epochs":
            self.bar.n = trainer.step if trainer.mode == "steps" else int(trainer.t_train)
            self.bar.update(0)

    def on_epoch_end(self, trainer, row):
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k not in ("epoch", "step", "seconds", "lr")},
                             refresh=False)
        self.bar.update(1 if trainer.mode == "epochs" else 0)

    def on_fit_end(self, trainer):
        if self.bar is not None:
            self.bar.close()


class LivePlot(Callback):
    """Loss/metric curves that update during training and stay in the output as a static figure."""

    def __init__(self, keys: list[str] | None = None, title: str = "training", every_s: float = 1.0):
        self.keys, self.title, self.every_s = keys, title, every_s
        self.live = None

    def on_fit_start(self, trainer):
        from kit.viz import LiveFigure, learning_curves
        self.live = LiveFigure(lambda: learning_curves(trainer.history, self.keys, self.title), every_s=self.every_s)

    def on_epoch_end(self, trainer, row):
        self.live.update()

    def on_fit_end(self, trainer):
        self.live.update(force=True)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best`` the model ends with the weights of its best epoch.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, mode: str = "min", min_delta: float = 0.0,
                 restore_best: bool = True):
        if mode not in ("min", "max"):
            raise ValueError(f"parameter 'mode' must be 'min' or 'max', got {mode!r}")
        self.monitor, self.patience, self.mode, self.min_delta, self.restore_best = monitor, patience, mode, min_delta, restore_best
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch, self.wait, self.best_state, self.stopped_epoch = -1, 0, None, None

    def _better(self, v):
        return v < self.best - self.min_delta if self.mode == "min" else v > self.best + self.min_delta

    def on_epoch_end(self, trainer, row):
        if self.monitor not in row:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r} but fit logged only {sorted(row)}")
        v = row[self.monitor]
        if self._better(v):
            self.best, self.best_epoch, self.wait = v, int(row.get("epoch", row.get("step", 0))), 0
            if self.restore_best:
                self.best_state = copy.deepcopy(trainer.model.state_dict())
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.stop = True
                self.stopped_epoch = int(row.get("epoch", row.get("step", 0)))

    def on_fit_end(self, trainer):
        if self.restore_best and self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)


def save_atomic(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, or not a kit checkpoint."""


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint safely (``weights_only=True``: no arbitrary unpickling); clear errors otherwise."""
    import pickle
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise  # refused by weights_only: the file holds code, not just tensors
    except Exception as e:  # truncated zip, wrong format, …
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or not a checkpoint): {e}") from e


class Checkpoint(Callback):
    """Write the full training state atomically every ``every`` epochs (``fit(resume=path)`` continues)."""

    def __init__(self, path: str | os.PathLike, every: int = 1):
        self.path, self.every = Path(path), every

    def on_epoch_end(self, trainer, row):
        if trainer.mode != "epochs":
            raise ValueError("Checkpoint and resume work with epoch runs (fit(epochs=…))")
        if int(row["epoch"]) % self.every == 0 or trainer.stop:
            save_atomic(trainer.state_dict(), self.path)
