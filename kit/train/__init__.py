"""Training: ``fit`` with callbacks (progress, live plot, early stopping, checkpoint)."""
from kit.train.callbacks import Callback, Checkpoint, CheckpointError, EarlyStopping, LivePlot, ProgressBar, load_checkpoint, save_atomic
from kit.train.history import History
from kit.train.loop import OPTIMIZERS, Trainer, accuracy, fit, make_optimizer

__all__ = ["Callback", "Checkpoint", "CheckpointError", "EarlyStopping", "History", "LivePlot", "OPTIMIZERS", "ProgressBar",
           "Trainer", "accuracy", "fit", "load_checkpoint", "make_optimizer", "save_atomic"]
