"""Generating from a language model: the model protocol, top-k / top-p filtering, sampling, generation.

**Model protocol.** A language model maps ids ``(B, T)`` to logits ``(B, T, V)``. A *recurrent* model
sets the class attribute ``recurrent = True`` and has ``forward(x, state=None) -> (logits, state)``;
evaluation and generation then carry ``state`` across chunks. Any other model is called as ``model(x)``
and may return the logits or a tuple whose first element is the logits.
"""
from __future__ import annotations

import torch

from kit.models.base import evaluating

__all__ = ["is_recurrent", "logits_of", "detach_state", "filter_logits", "sample_next", "generate"]


def is_recurrent(model) -> bool:
    """True for models following the recurrent protocol (``recurrent = True``)."""
    return bool(getattr(model, "recurrent", False))


def logits_of(out) -> torch.Tensor:
    """The logits of a model's output (a tensor, or a tuple whose first element is the logits)."""
    return out[0] if isinstance(out, (tuple, list)) else out


def detach_state(state):
    """A recurrent state cut from the graph (truncated backpropagation through time)."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return type(state)(detach_state(s) for s in state)


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set logits outside the candidate set to ``-inf`` (last dimension = vocabulary).

    ``top_k``: keep the ``k`` largest, and the tokens tied with the ``k``-th. ``top_p`` (nucleus): keep a token
    when the probability of the tokens strictly more likely than it is below ``p`` — the smallest set of most likely
    tokens whose probabilities sum to at least ``p``, with the most likely token always kept. Either way tied tokens
    are kept or dropped together, so the set does not depend on how a sort orders equal values (lesson 09's
    exercises use the same rule). Both may be given (top-k first)."""
    out = logits.clone()
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"parameter 'top_k' must be >= 1, got {top_k}")
        k = min(int(top_k), out.shape[-1])
        kth = torch.topk(out, k, dim=-1).values[..., -1:]
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise ValueError(f"parameter 'top_p' must be in (0, 1], got {top_p}")
        sorted_logits, order = torch.sort(out, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # probability mass of the tokens ranked above each one
        kept_sorted = before < top_p       # a prefix of the sorted row
        # tied tokens share one fate: keep every token at least as likely as the last one kept
        last = torch.where(kept_sorted, sorted_logits, float("inf")).amin(-1, keepdim=True)
        out = out.masked_fill(out < last, float("-inf"))
    return out


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample one token id per row from ``logits`` (``(..., V)`` → ``(...)`` LongTensor).

    The logits are divided by ``temperature`` (< 1 sharper, > 1 flatter; ``0`` = greedy arg-max),
    filtered by :func:`filter_logits`, and sampled with ``torch.multinomial`` using ``generator``
    (which must live on the logits' device; pass ``None`` for the global RNG)."""
    if temperature < 0:
        raise ValueError(f"parameter 'temperature' must be >= 0, got {temperature}")
    if temperature == 0:
        return filter_logits(logits.float(), top_k, top_p).argmax(-1)
    z = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = z.softmax(-1)
    flat = probs.reshape(-1, probs.shape[-1])
    ids = torch.multinomial(flat, 1, generator=generator)
    return ids.reshape(probs.shape[:-1])


@torch.no_grad()
def generate(model, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
             block_size: int | None = None) -> torch.Tensor:
    """Autoregressive generation: append ``max_new_tokens`` sampled ids to ``prompt`` (1-D or ``(B, T)``).

    A recurrent model reads the prompt once and then one token at a time, carrying its state; any
    other model is re-run on the last ``block_size`` tokens (its context window) at every step.
    Returns the ids (prompt included) with the prompt's shape convention, on the model's device."""
    with evaluating(model):
        device = next(model.parameters()).device
        idx = prompt.to(device)
        squeeze = idx.ndim == 1
        if squeeze:
            idx = idx[None]
        if idx.shape[1] == 0:
            raise ValueError("generate needs a prompt of at least one token")
        if is_recurrent(model):
            logits, state = model(idx, None)
            for _ in range(max_new_tokens):
                nxt = sample_next(logits[:, -1], temperature, top_k, top_p, generator)
                idx = torch.cat([idx, nxt[:, None]], 1)
                logits, state = model(nxt[:, None], state)
        else:
            for _ in range(max_new_tokens):
                ctx = idx if block_size is None else idx[:, -block_size:]
                logits = logits_of(model(ctx))
                nxt = sample_next(logits[:, -1], temperature, top_k, top_p, generator)
                idx = torch.cat([idx, nxt[:, None]], 1)
    return idx[0] if squeeze else idx
