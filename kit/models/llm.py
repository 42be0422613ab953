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

from kit.models.base import evaluating
from kit.models.gpt import GPT, KVCache
from kit.models.sampling import sample_next

__all__ = ["load_llm", "stand_in", "stream", "complete", "continuations", "chat", "StopStrings"]


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


_CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
           "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def stand_in(tok=None, seed: int = 0, n_layer: int = 2, n_embd: int = 64):
    """``(model, tok)``: a small **random** Llama-configured :class:`~kit.models.gpt.GPT` (RMSNorm, RoPE, SwiGLU,
    grouped-query attention, tied embedding; every row a whole number of 32-weight blocks) that stands in for a real
    LLM where loading one would take too long (smoke runs) or is not installed. ``tok``: the tokenizer to size its
    vocabulary for (e.g. SmolLM2's); ``None``: a byte-level tokenizer (256 bytes, ``<|endoftext|>``, ChatML markers)."""
    from kit.models.gpt import GPT, GPTConfig
    if tok is None:
        from kit.data.bpe import ByteLevelBPE, bytes_to_unicode
        from kit.data.llm_tokenizer import LLMTokenizer
        vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
        bpe = ByteLevelBPE(vocab, [], special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"))
        tok = LLMTokenizer(bpe, "<|im_start|>", "<|im_end|>", chat_template=_CHATML, name="bytes")
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=512, n_layer=n_layer, n_head=4, n_kv_head=2, n_embd=n_embd,
                    n_inner=2 * n_embd, norm="rmsnorm", pos="rope", activation="swiglu", bias=False, tie_weights=True)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = GPT(cfg).eval()
    finally:
        torch.random.set_rng_state(state)
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


@torch.inference_mode()
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
        logits = model(idx, cache=cache, last_only=True)[:, -1].float()
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


@torch.inference_mode()
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
        nxt = sample_next(model(idx, cache=cache, last_only=True)[:, -1].float(), temperature, top_k, top_p, gen)
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


# ---------------------------------------------------------------- measuring a model on a text
@torch.no_grad()
def text_bits_per_byte(model: GPT, tok, text: str, window: int = 1024, bos_id: int | None = None,
                       batch_size: int = 1) -> dict:
    """Bits per byte of ``text`` under ``model``: the summed next-token loss (in bits) of every token of ``text``,
    divided by its UTF-8 bytes — a number that compares models with different tokenizers.

    The text is encoded once (special-token text read as plain text), then cut into non-overlapping windows of
    ``window - 1`` tokens, each prefixed with the document token ``bos_id`` (SmolLM2's ``<|endoftext|>``, id 0), so
    every token is predicted exactly once and the first token of a window from the document token alone. A token
    early in a window sees little context (a sliding window gives every token more, at more compute).
    Returns ``{"bits_per_byte", "bits", "tokens", "bytes", "windows"}``."""
    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty string")
    if bos_id is None:
        raise ValueError("bos_id: give the id of the document token that starts each window")
    if not 2 <= window <= model.cfg.block_size:
        raise ValueError(f"window must be in [2, {model.cfg.block_size}] (the model's context), got {window}")
    ids = tok.encode(text, allowed_special=())
    step, dev = window - 1, model.wte.weight.device
    chunks = [ids[s:s + step] for s in range(0, len(ids), step)]
    total = 0.0
    with evaluating(model):
        for b in range(0, len(chunks), batch_size):
            rows = chunks[b:b + batch_size]
            n = max(len(r) for r in rows)
            x = torch.full((len(rows), n + 1), int(bos_id), dtype=torch.long, device=dev)
            y = torch.full((len(rows), n), -100, dtype=torch.long, device=dev)   # -100: padding, not scored
            for i, r in enumerate(rows):
                x[i, 1:len(r) + 1] = torch.tensor(r, dtype=torch.long)
                y[i, :len(r)] = torch.tensor(r, dtype=torch.long)
            logits = model(x[:, :-1]).float()
            total += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1),
                                                             ignore_index=-100, reduction="sum"))
    n_bytes = len(text.encode("utf-8"))
    bits = total / 0.6931471805599453   # nats → bits: ÷ ln 2
    return {"bits_per_byte": bits / n_bytes, "bits": bits, "tokens": len(ids), "bytes": n_bytes,
            "windows": len(chunks)}


def kv_cache_bytes(cfg, n_tokens: int, bytes_per_value: int = 4, n_kv_head: int | None = None) -> int:
    """Memory of a KV cache holding ``n_tokens`` tokens: keys and values (2) × layers × kv heads × head size ×
    bytes per value (4 for float32), per token. ``n_kv_head``: another head count (``cfg.n_head``: without
    grouped-query attention)."""
    heads = n_kv_head or cfg.n_kv_head or cfg.n_head
    return 2 * cfg.n_layer * heads * (cfg.n_embd // cfg.n_head) * bytes_per_value * int(n_tokens)


@torch.no_grad()
def prefill_decode_speed(model: GPT, prompt_ids: list[int], n_new: int = 32) -> dict:
    """Tokens per second of the two phases of generation (greedy, batch 1): the **prefill** — the whole prompt in
    one forward pass that fills the KV cache — and the **decode** — ``n_new`` steps of one token each, every step
    reading all the weights for one token. Returns ``{"prefill_tokens_per_s", "decode_tokens_per_s",
    "prefill_s", "decode_s", "tokens"}`` (``tokens``: the greedy ids)."""
    if isinstance(prompt_ids, str) or not len(prompt_ids):
        raise ValueError("prompt_ids must be a non-empty list of token ids")
    if n_new < 1:
        raise ValueError(f"n_new must be >= 1, got {n_new}")
    ids = [int(i) for i in prompt_ids]
    dev = model.wte.weight.device
    cache = _cache_for(model, 1, len(ids) + n_new)
    idx = torch.tensor([ids], dtype=torch.long, device=dev)
    model(idx[:, :4], last_only=True)                                                 # warm-up, no cache
    t0 = time.perf_counter()
    nxt = model(idx, cache=cache, last_only=True)[:, -1].argmax(-1, keepdim=True)   # the prompt at once
    out = [int(nxt)]                                                                  # int(): waits for the device
    prefill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n_new):                                                            # one token a step
        nxt = model(nxt, cache=cache, last_only=True)[:, -1].argmax(-1, keepdim=True)
        out.append(int(nxt))
    decode_s = time.perf_counter() - t0
    return {"prefill_tokens_per_s": len(ids) / prefill_s, "decode_tokens_per_s": n_new / decode_s,
            "prefill_s": prefill_s, "decode_s": decode_s, "tokens": out}


def tokenizers_twin(tok):
    """The same vocabulary, merges, pre-tokenizer rule and special tokens in Hugging Face's ``tokenizers`` library
    (Rust): an independent encoder to check a kit tokenizer's ids against, built in memory in about a second."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    bpe = getattr(tok, "bpe", tok)
    if not hasattr(bpe, "merges") or not hasattr(bpe, "vocab"):
        raise ValueError("tok must be a kit byte-level BPE tokenizer (LLMTokenizer or ByteLevelBPE)")
    twin = Tokenizer(models.BPE(vocab=dict(bpe.vocab), merges=[tuple(m) for m in bpe.merges]))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    twin.pre_tokenizer = byte_level if bpe.pre_tokenizer == "gpt2" else \
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    specials = getattr(tok, "special_tokens", bpe.special)
    twin.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return twin
