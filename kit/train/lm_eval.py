"""The numbers a language model is judged by: validation loss over a stream, perplexity, the unigram bar."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from kit.data.batches import stream_batches
from kit.models.base import evaluating
from kit.models.sampling import is_recurrent, logits_of

__all__ = ["evaluate_lm", "perplexity", "unigram_entropy"]


@torch.no_grad()
def evaluate_lm(model, ids: torch.Tensor, block_size: int, batch_size: int = 32, device=None,
                max_tokens: int | None = None) -> float:
    """Mean next-token cross-entropy (nats/token) over the whole stream ``ids`` (or its first
    ``max_tokens``), deterministic. The stream is cut into ``batch_size`` parallel rows read in chunks
    of ``block_size``; a recurrent model carries its state from chunk to chunk, a Transformer sees
    each chunk as its own context."""
    with evaluating(model):
        device = device or next(model.parameters()).device
        ids = ids[: max_tokens + 1] if max_tokens else ids
        batch_size = max(1, min(batch_size, (len(ids) - 1) // max(block_size, 1)))
        total, count, state = 0.0, 0, None
        for x, y in stream_batches(ids, batch_size, block_size):
            x, y = x.to(device), y.to(device)
            if is_recurrent(model):
                logits, state = model(x, state)
            else:
                logits = logits_of(model(x))
            total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                                     reduction="sum").item()
            count += y.numel()
    return total / count


def perplexity(loss: float) -> float:
    """exp(mean cross-entropy in nats/token): the effective number of equally likely next tokens."""
    return float(math.exp(loss))


def unigram_entropy(ids: torch.Tensor, vocab_size: int | None = None, eval_ids: torch.Tensor | None = None) -> float:
    """Cross-entropy (nats/token) of the unigram model — token frequencies counted on ``ids`` — on
    ``eval_ids`` (default: ``ids`` itself, i.e. the entropy of the frequencies). Add-one smoothing
    when ``eval_ids`` is given, so unseen tokens do not give infinity."""
    V = int(vocab_size or int(ids.max()) + 1)
    counts = np.bincount(np.asarray(ids.cpu()), minlength=V).astype(np.float64)
    if eval_ids is None:
        p = counts / counts.sum()
        nz = p[p > 0]
        return float(-(nz * np.log(nz)).sum())
    p = (counts + 1) / (counts.sum() + V)
    return float(-np.log(p[np.asarray(eval_ids.cpu())]).mean())
