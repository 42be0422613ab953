"""Chat examples for supervised fine-tuning of a real LLM: the model's own chat template, the loss on the answer only.

An example is a conversation (``messages``, ending with the user's turn) and the assistant's ``answer``. The prompt is
rendered with the tokenizer's chat template and a generation prompt (``<|im_start|>assistant\\n`` for SmolLM2), then
the answer and the end-of-turn token are appended **as separate token sequences** — exactly the ids the model sees when
it generates after that prompt. The targets are the next tokens; every target that is a prompt token is ``-100``
(``F.cross_entropy``'s ignore index), so the loss counts the answer and its end-of-turn token only
(``mask_prompt=False``: every token, for the ablation).

    ids, targets = sft_example(tok, [{"role": "user", "content": "Reverse stone"}], "enots")
    x, y = pad_batch([sft_example(...), ...], pad_id=tok.eos_token_id)
    logits, loss = model(x, y)
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["IGNORE", "sft_example", "pad_batch"]

IGNORE = -100


def sft_example(tok, messages: Sequence[dict], answer: str, end_of_turn: str = "<|im_end|>",
                mask_prompt: bool = True) -> tuple[list[int], list[int]]:
    """``(input_ids, targets)`` of one conversation and its answer, equally long (the full sequence minus one)."""
    if not messages or messages[-1].get("role") != "user":
        raise ValueError("messages must be a non-empty conversation ending with the user's turn")
    if not isinstance(answer, str) or not answer:
        raise ValueError("answer must be a non-empty string")
    if end_of_turn not in tok.special_tokens:
        raise ValueError(f"{end_of_turn!r} is not a special token of this tokenizer")
    prompt = tok.encode(tok.apply_chat_template(list(messages), add_generation_prompt=True), allowed_special="all")
    reply = tok.encode(answer, allowed_special=()) + [tok.special_tokens[end_of_turn]]
    full = prompt + reply
    targets = full[1:]
    if mask_prompt:
        targets = [IGNORE] * (len(prompt) - 1) + targets[len(prompt) - 1:]
    return full[:-1], targets


def pad_batch(examples: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad ``(input_ids, targets)`` pairs into ``(B, T)`` tensors: inputs with ``pad_id``, targets with
    ``-100`` (a causal model never looks right, so padding on the right changes no real position's logits)."""
    if not examples:
        raise ValueError("pad_batch needs at least one example")
    T = max(len(ids) for ids, _ in examples)
    x = torch.full((len(examples), T), int(pad_id), dtype=torch.long)
    y = torch.full((len(examples), T), IGNORE, dtype=torch.long)
    for i, (ids, tg) in enumerate(examples):
        x[i, :len(ids)] = torch.tensor(ids)
        y[i, :len(tg)] = torch.tensor(tg)
    return x, y
