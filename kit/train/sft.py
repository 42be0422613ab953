"""Supervised fine-tuning (instruction tuning) of a causal language model, with the loss masked on the prompt.

An example is a prompt (the template with the instruction) followed by its answer and an end marker. The model
reads the whole sequence, but only the **answer** tokens are scored: every label that would make the model
predict a prompt token (or a padding token) is ``-100``, which ``F.cross_entropy(..., ignore_index=-100)``
skips. So the model learns to answer, not to reproduce instructions.

* :func:`chat_pair` — a conversation and its answer through a real LLM's own chat template → ``(prompt ids,
  answer ids)``, the answer closed by the end-of-turn token (SmolLM2's ``<|im_end|>``), which is scored too;
* :func:`sft_batch` — token id lists → padded ``(x, y)`` with ``y`` masked (``-100``) on prompt and padding
  (no mask, for an ablation: ``sft_batch([(p[:1], p[1:] + a), …])``);
* :class:`MaskedLM` — wraps a GPT: ``forward(x, y)`` → the mean cross-entropy over the answer tokens only (the
  output layer computed at those positions only), so ``kit.train.fit(MaskedLM(gpt), batches, loss_fn=None)`` trains it;
* :func:`generate_answers` — greedy replies to a list of prompts (batched by prompt length, KV cache).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kit.models.base import evaluating

__all__ = ["IGNORE", "chat_pair", "sft_batch", "MaskedLM", "sft_train", "generate_answers"]

IGNORE = -100  # the label F.cross_entropy ignores (its default ignore_index)


def chat_pair(tok, messages: Sequence[dict], answer: str,
              end_of_turn: str = "<|im_end|>") -> tuple[list[int], list[int]]:
    """``(prompt ids, answer ids)`` for :func:`sft_batch`: ``messages`` (ending with the user's turn) rendered by
    ``tok``'s chat template with the generation prompt, then ``answer`` + ``end_of_turn`` encoded separately —
    exactly the ids the model continues from when it generates after that prompt."""
    if not messages or messages[-1].get("role") != "user":
        raise ValueError("messages must be a non-empty conversation ending with the user's turn")
    if not isinstance(answer, str) or not answer:
        raise ValueError("answer must be a non-empty string")
    if end_of_turn not in tok.special_tokens:
        raise ValueError(f"{end_of_turn!r} is not a special token of this tokenizer")
    prompt = tok.encode(tok.apply_chat_template(list(messages), add_generation_prompt=True), allowed_special="all")
    return prompt, tok.encode(answer, allowed_special=()) + [tok.special_tokens[end_of_turn]]


def sft_batch(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int = 0,
              block_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``pairs`` of ``(prompt ids, answer ids)`` → ``(x, y)``, both ``(B, L)`` long tensors.

    Each sequence ``s = prompt + answer`` is right-padded with ``pad_id``; ``x = s[:-1]`` is what the model reads
    and ``y = s[1:]`` the next token at every position, with ``IGNORE`` (-100) wherever that next token belongs
    to the prompt or is padding. ``L`` = longest sequence − 1; ``block_size`` refuses longer ones.
    """
    if not pairs:
        raise ValueError("sft_batch needs at least one (prompt, answer) pair")
    seqs = [list(p) + list(a) for p, a in pairs]
    L = max(len(s) for s in seqs)
    if block_size is not None and L - 1 > block_size:
        raise ValueError(f"an example of {L - 1} input tokens is longer than block_size {block_size}")
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), L), IGNORE, dtype=torch.long)
    for i, ((p, a), s) in enumerate(zip(pairs, seqs)):
        if len(p) < 1 or len(a) < 1:
            raise ValueError("every example needs a prompt and an answer of at least one token")
        ids[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
        labels[i, len(p):len(s)] = torch.as_tensor(list(a), dtype=torch.long)  # only the answer is scored
    return ids[:, :-1], labels[:, 1:]


class MaskedLM(nn.Module):
    """``forward(x, y)`` → mean next-token cross-entropy over the positions where ``y != -100``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, y):
        keep = y != IGNORE
        logits = self.model(x, select=keep)  # the output layer at the scored positions only (memory)
        return F.cross_entropy(logits.float(), y[keep])


def sft_train(model: nn.Module, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], *, steps: int,
              batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 0.0, pad_id: int = 0,
              warmup: int = 0, device=None, seed: int = 0, progress: bool = True, desc: str = "SFT",
              callbacks=()) -> object:
    """Instruction-tune ``model`` (a GPT, possibly with LoRA layers: only parameters with ``requires_grad``
    train) for ``steps`` steps of ``batch_size`` random examples with :func:`kit.train.fit`: AdamW, a cosine
    schedule after ``warmup`` steps, gradient clipping at 1. Returns fit's history."""
    from kit.train.loop import fit
    if steps < 1:
        raise ValueError(f"parameter 'steps' must be >= 1, got {steps}")
    block = getattr(getattr(model, "cfg", None), "block_size", None)
    pairs = list(pairs)

    def next_batch(step, gen):
        i = torch.randint(len(pairs), (batch_size,), generator=gen).tolist()
        return sft_batch([pairs[j] for j in i], pad_id, block)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return fit(MaskedLM(model), next_batch, None, steps=steps, loss_fn=None, optimizer=opt, lr=lr,
               scheduler="cosine", warmup=warmup, min_lr=0.1 * lr, clip_grad=1.0, device=device, seed=seed,
               progress=progress, desc=desc, callbacks=callbacks, eval_every=max(1, steps // 10))


@torch.no_grad()
def generate_answers(model, encode: Callable[[str], Sequence[int]], decode: Callable[[Sequence[int]], str],
                     prompts: Sequence[str], max_new_tokens: int, end: str = "\n", batch_size: int = 256) -> list[str]:
    """Greedy replies (temperature 0) to each prompt, cut at the first ``end``. Prompts of equal length are
    generated together (the GPT's KV cache makes each new token one short forward pass)."""
    dev = next(model.parameters()).device
    with evaluating(model):
        enc = [list(encode(p)) for p in prompts]
        out: list[str | None] = [None] * len(prompts)
        by_len: dict[int, list[int]] = {}
        for i, e in enumerate(enc):
            by_len.setdefault(len(e), []).append(i)
        for n, idx in sorted(by_len.items()):
            for s in range(0, len(idx), batch_size):
                part = idx[s:s + batch_size]
                x = torch.tensor([enc[i] for i in part], dtype=torch.long, device=dev)
                y = model.generate(x, max_new_tokens, temperature=0.0)[:, n:].cpu()
                for i, row in zip(part, y.tolist()):
                    out[i] = decode(row).split(end)[0]
    return out  # type: ignore[return-value]
