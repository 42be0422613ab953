"""Training: the one engine ``fit`` with callbacks, optimizers and schedules, mixed precision, and its
configurations for language models (``train_lm``, ``train_gpt`` with a :class:`TrainConfig`; the lessons' GPT
presets: :func:`preset`)."""
from kit.train.amp import Precision
from kit.train.callbacks import Callback, Checkpoint, CheckpointError, EarlyStopping, LivePlot, ProgressBar, load_checkpoint, save_atomic
from kit.train.config import PRESETS, TrainConfig, preset
from kit.train.history import History
from kit.train.lm import GPTRun, LMRun, TBPTT, train_gpt, train_lm
from kit.train.lm_eval import evaluate_lm, perplexity, unigram_entropy
from kit.train.loop import Trainer, accuracy, fit, model_loss
from kit.train.optim import OPTIMIZERS, make_optimizer, param_groups, warmup_cosine

__all__ = ["Callback", "Checkpoint", "CheckpointError", "EarlyStopping", "GPTRun", "History", "LMRun", "LivePlot",
           "OPTIMIZERS", "PRESETS", "Precision", "ProgressBar", "TBPTT", "TrainConfig", "Trainer", "accuracy",
           "evaluate_lm", "fit", "load_checkpoint", "make_optimizer", "model_loss", "param_groups", "perplexity",
           "preset", "save_atomic", "train_gpt", "train_lm", "unigram_entropy", "warmup_cosine"]
