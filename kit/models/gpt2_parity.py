"""Is kit's GPT, saved in GPT-2's format, the model ``transformers`` loads? One number: max |Δ logits|.

:func:`transformers_max_abs_diff` loads ``folder`` with ``transformers.GPT2LMHeadModel.from_pretrained`` and
compares its logits with a kit model's on the same ids (lesson 15: the model saved there and reloaded with
:meth:`kit.models.gpt.GPT.from_pretrained`).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from kit.models.base import evaluating

__all__ = ["transformers_max_abs_diff"]


@torch.no_grad()
def transformers_max_abs_diff(folder: str | os.PathLike, model, idx: torch.Tensor) -> float:
    """max |logits of ``model`` − logits of ``GPT2LMHeadModel.from_pretrained(folder)``| on ``idx`` ``(B, T)``
    (both in float32 on the CPU, in eval mode)."""
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder} is not a checkpoint folder")
    import transformers
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()   # no notes about GPT-2's default special-token ids, no progress bar
    bars = transformers.logging.is_progress_bar_enabled()
    transformers.logging.disable_progress_bar()
    try:
        hf = transformers.GPT2LMHeadModel.from_pretrained(str(folder)).float().eval()
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.logging.enable_progress_bar()
    with evaluating(model):
        dev = next(model.parameters()).device
        ours = model(idx.to(dev)).float().cpu()
    theirs = hf(idx.cpu()).logits.float()
    return float((ours - theirs).abs().max())
