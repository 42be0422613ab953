"""Training configurations: :class:`TrainConfig` (how :func:`kit.train.train_gpt` trains a GPT) and :data:`PRESETS`,
the lessons' ``"smoke"``, ``"cpu"``, ``"cpu_adamw"`` and ``"gpu"`` sizes — a :class:`kit.models.gpt.GPTConfig` with
the training settings measured for it (they live beside the training engine: models import no training code)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from kit.models.gpt import GPTConfig

__all__ = ["PRESETS", "TrainConfig", "preset"]


@dataclass
class TrainConfig:
    batch_size: int = 32
    lr: float = 3e-3         # peak learning rate
    min_lr: float = 3e-4     # end of the cosine
    warmup: int = 50         # linear warm-up steps
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.99)
    clip_grad: float = 1.0
    steps: int = 2000        # used when no time budget is given
    eval_every: int = 100    # steps between evaluations in a fixed-steps run
    eval_tokens: int = 32_768  # validation tokens per evaluation
    optimizer: str = "adamw"  # "adamw", or "muon" (Muon for the blocks' matrices, AdamW for the rest)


PRESETS: dict[str, tuple[GPTConfig, TrainConfig]] = {
    # tests: a few seconds on 2 cores
    "smoke": (GPTConfig(block_size=32, n_layer=2, n_head=2, n_embd=64),
              TrainConfig(batch_size=16, lr=3e-3, min_lr=3e-4, warmup=10, steps=60, eval_every=20,
                          eval_tokens=4096)),
    # the default: on tiny-shakespeare, validation loss ≤ 1.70 within 60 s and ≤ 1.47 within 180 s of
    # training on 2 CPU cores (benchmarks/gpt_speedrun.py, issue 19). Measured per second, not per step: on
    # a CPU this shallow 0.23 M-parameter model learns faster than 4 layers or n_embd=128 (more tokens/s
    # outweighs capacity at this budget); Muon for the blocks' matrices, 32 windows of 128 characters per
    # step and a cosine down to lr/100 each lowered the loss per second.
    "cpu": (GPTConfig(block_size=128, n_layer=2, n_head=4, n_embd=96),
            TrainConfig(batch_size=32, lr=8e-3, min_lr=8e-5, warmup=30, steps=2500, eval_every=250,
                        eval_tokens=32_768, optimizer="muon")),   # 2 500 steps ≈ what 180 s reach on 2 cores
    # lesson 09's CPU preset before the speedrun (AdamW, 64 characters, batch 16): ≤ 1.88 within 60 s and ≤ 1.70
    # within 180 s; lessons 15 and 16 keep it, so their measured budgets and results hold
    "cpu_adamw": (GPTConfig(block_size=64, n_layer=2, n_head=4, n_embd=96),
                  TrainConfig(batch_size=16, lr=8e-3, min_lr=8e-4, warmup=30, steps=5000, eval_every=250,
                              eval_tokens=32_768)),
    # one GPU (nanoGPT's shakespeare-char model): ~10.7 M parameters
    "gpu": (GPTConfig(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2),
            TrainConfig(batch_size=64, lr=1e-3, min_lr=1e-4, warmup=100, steps=5000, eval_every=250,
                        eval_tokens=131_072)),
}


def preset(name: str, vocab_size: int | None = None) -> tuple[GPTConfig, TrainConfig]:
    """Copies of a preset's model and training configs (``vocab_size`` filled in when given)."""
    if name not in PRESETS:
        raise ValueError(f"parameter 'preset' must be one of {tuple(PRESETS)}, got {name!r}")
    m, t = PRESETS[name]
    m = replace(m, vocab_size=vocab_size) if vocab_size else replace(m)
    return m, replace(t)
