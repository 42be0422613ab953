"""Text in, text out for a real LLM: a model and its tokenizer, streamed generation, chat.

``load_llm("SmolLM2-135M-Instruct")`` → ``(model, tokenizer)``; ``stream(model, tok, prompt)`` yields text pieces
as tokens arrive (never half a UTF-8 character), stopping at the end-of-sequence token or a stop string;
``complete(...)`` returns the same text at once; ``continuations(..., n=5)`` samples several in one batch;
``chat(...)`` renders messages with the model's own chat template, then streams the answer.
"""
from __future__ import annotations

import time
from typing import Iterable, Iterator

import torch

from kit.models.gpt import GPT, KVCache
from kit.models.sampling import sample_next

__all__ = ["load_llm", "stream", "complete", "continuations", "chat", "StopStrings"]


def load_llm(name_or_path: str = "SmolLM2-135M-Instruct", device=None, verbose: bool = False):
    """``(model, tokenizer)`` of a Llama-family checkpoint (a shipped name, a GGUF file or a Hugging Face folder)."""
    from kit.data import load_tokenizer
    t0 = time.perf_counter()
    model = GPT.from_pretrained(name_or_path, device=device).eval()
    tok = load_tokenizer(name_or_path)
    if verbose:
        import sys
        print(f"loaded {name_or_path}: {model.n_params() / 1e6:.1f} M parameters in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
    return model, tok


class StopStrings:
    """Holds back text that might be the start of a stop string; ``feed(piece)`` → (text safe to show, stopped)."""

    def __init__(self, stops: Iterable[str] = ()):
        self.stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        text = self.pending + piece
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.pending = ""
            return text[:min(hits)], True
        keep = max((k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        self.pending = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep], False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def _prompt_ids(tok, prompt) -> list[int]:
    ids = tok.encode(prompt) if isinstance(prompt, str) else [int(i) for i in prompt]
    if not ids:
        raise ValueError("the prompt is empty: give at least one token of text")
    return ids


def check_sampling(max_new_tokens, temperature, top_k, top_p):
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def _cache_for(model: GPT, batch: int, n_tokens: int) -> KVCache:
    if n_tokens > model.cfg.block_size:
        raise ValueError(f"prompt + max_new_tokens = {n_tokens} tokens, more than the model's context of "
                         f"{model.cfg.block_size}")
    w = model.wte.weight
    return KVCache(model.cfg, batch, w.device, dtype=w.dtype, max_len=n_tokens)


@torch.no_grad()
def token_stream(model: GPT, prompt_ids: list[int], max_new_tokens: int = 128, temperature: float = 0.7,
                 top_k: int | None = None, top_p: float | None = 0.9, seed: int | None = None,
                 eos_id: int | None = None) -> Iterator[int]:
    """New token ids one at a time (the KV cache holds the prompt's and every new token's keys and values)."""
    check_sampling(max_new_tokens, temperature, top_k, top_p)
    dev = model.wte.weight.device
    n = min(max_new_tokens, model.cfg.block_size - len(prompt_ids))
    cache = _cache_for(model, 1, len(prompt_ids) + max(n, 0))
    gen = torch.Generator(device=dev).manual_seed(seed) if seed is not None else None
    idx = torch.tensor([prompt_ids], dtype=torch.long, device=dev)
    for _ in range(n):
        logits = model(idx, cache=cache)[:, -1].float()
        nxt = sample_next(logits, temperature, top_k, top_p, gen)
        t = int(nxt[0])
        if eos_id is not None and t == eos_id:
            return
        yield t
        idx = nxt[:, None]


def stream(model: GPT, tok, prompt, max_new_tokens: int = 128, temperature: float = 0.7,
           top_k: int | None = None, top_p: float | None = 0.9, seed: int | None = None,
           stop: Iterable[str] = (), stop_at_eos: bool = True) -> Iterator[str]:
    """Text pieces of a continuation of ``prompt`` (text or ids) as they are generated; joined they are the
    decoded new tokens, cut before the first stop string. Pieces never split a UTF-8 character."""
    ids = _prompt_ids(tok, prompt)
    eos = tok.eos_token_id if stop_at_eos else None
    decoder, stops = tok.stream_decoder(), StopStrings(stop)
    for t in token_stream(model, ids, max_new_tokens, temperature, top_k, top_p, seed, eos):
        piece = decoder.push(t)
        if piece:
            text, stopped = stops.feed(piece)
            if text:
                yield text
            if stopped:
                return
    text, _ = stops.feed(decoder.flush())
    text += stops.flush()
    if text:
        yield text


def complete(model: GPT, tok, prompt, **kw) -> str:
    """The whole continuation of :func:`stream` as one string."""
    return "".join(stream(model, tok, prompt, **kw))


@torch.no_grad()
def continuations(model: GPT, tok, prompt: str, n: int = 5, max_new_tokens: int = 30, temperature: float = 0.8,
                  top_k: int | None = None, top_p: float | None = 0.95, seed: int | None = 0) -> list[str]:
    """``n`` sampled continuations of one prompt, generated as one batch (each cut at its end-of-sequence token)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    check_sampling(max_new_tokens, temperature, top_k, top_p)
    ids = _prompt_ids(tok, prompt)
    dev = model.wte.weight.device
    cache = _cache_for(model, n, len(ids) + max_new_tokens)
    gen = torch.Generator(device=dev).manual_seed(seed) if seed is not None else None
    idx = torch.tensor([ids] * n, dtype=torch.long, device=dev)
    out = []
    for _ in range(max_new_tokens):
        nxt = sample_next(model(idx, cache=cache)[:, -1].float(), temperature, top_k, top_p, gen)
        out.append(nxt)
        idx = nxt[:, None]
    rows = torch.stack(out, 1).tolist()
    eos = tok.eos_token_id
    return [tok.decode(r[:r.index(eos)] if eos in r else r) for r in rows]


def chat(model: GPT, tok, messages: list[dict], **kw) -> Iterator[str]:
    """Stream the assistant's answer to ``messages`` (``[{"role": "system"|"user"|"assistant", "content": …}]``),
    the conversation rendered by the model's own chat template."""
    if not messages or any(not isinstance(m, dict) or "role" not in m or "content" not in m for m in messages):
        raise ValueError('messages must be a non-empty list of {"role": …, "content": …} dicts')
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True)
    return stream(model, tok, prompt, **kw)
