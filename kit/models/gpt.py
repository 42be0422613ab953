"""A decoder-only GPT in the style of nanoGPT, with a KV cache for generation and a fast training loop.

* :class:`GPTConfig` — sizes (the lessons' presets, with their training settings, are
  :data:`kit.train.config.PRESETS`).
* :class:`GPT` — token + learned position embeddings, ``n_layer`` pre-LayerNorm :class:`Block` s
  (:class:`CausalSelfAttention` through ``F.scaled_dot_product_attention(is_causal=True)``, then an MLP),
  a final LayerNorm and a linear head whose weight is **tied** to the token embedding.
* the Llama family is the same class with other options: ``norm="rmsnorm"``, ``pos="rope"`` (``rope_theta``),
  ``activation="swiglu"`` with ``n_inner``, grouped-query attention (``n_kv_head < n_head``), no biases;
  :meth:`GPT.from_pretrained` reads GGUF files and Hugging Face Llama folders (:mod:`kit.models.llama_format`).
* :meth:`GPT.generate` — temperature / top-k / top-p sampling, with or without a :class:`KVCache`
  (the same tokens either way).
* training is :func:`kit.train.train_gpt`, a configuration of the one engine ``kit.train.fit``
  (this module only holds the model: models import no training code).
* :func:`flops_per_token`, :func:`peak_flops`, :func:`mfu` — model FLOPs utilisation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from kit.models.base import evaluating

__all__ = ["GPTConfig", "GPT", "Block", "CausalSelfAttention", "MLP",
           "KVCache", "SlotKVCache", "flops_per_token", "peak_flops", "mfu", "rope_tables", "rotate", "ACTIVATIONS",
           "NaiveGPT"]


@dataclass
class GPTConfig:
    vocab_size: int = 65
    block_size: int = 128   # context length (tokens)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False      # biases in Linear and LayerNorm (GPT-2: True; a little faster without)
    activation: str = "gelu"  # the MLP's: "gelu" (exact), "gelu_tanh" (GPT-2's approximation), "relu2" (ReLU²),
    #                           "swiglu" (Llama's gated SiLU: silu(gate) · up)
    ln_eps: float = 1e-5    # LayerNorm / RMSNorm epsilon (GPT-2: 1e-5)
    pos: str = "learned"    # positions: "learned" (GPT-2's table added to the input) or "rope" (rotary, in attention)
    qk_norm: bool = False   # RMS-normalise queries and keys per head before their dot product
    tie_weights: bool = True  # the output layer reuses the token embedding matrix
    norm: str = "layernorm"   # "layernorm" (GPT-2) or "rmsnorm" (Llama: no mean, no bias)
    n_kv_head: int | None = None  # key/value heads, grouped-query attention (Llama); None = n_head
    n_inner: int | None = None    # the MLP's hidden width; None = 4·n_embd
    rope_theta: float = 10_000.0  # the rotary base

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"GPTConfig.activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.pos not in ("learned", "rope"):
            raise ValueError(f"GPTConfig.pos must be 'learned' or 'rope', got {self.pos!r}")
        if self.norm not in ("layernorm", "rmsnorm"):
            raise ValueError(f"GPTConfig.norm must be 'layernorm' or 'rmsnorm', got {self.norm!r}")
        if self.n_kv_head is not None and not (0 < self.n_kv_head <= self.n_head and self.n_head % self.n_kv_head == 0):
            raise ValueError(f"GPTConfig.n_kv_head must divide n_head ({self.n_head}), got {self.n_kv_head}")
        if self.pos == "rope" and (self.n_embd // max(self.n_head, 1)) % 2:
            raise ValueError(f"rotary positions need an even head size, got n_embd/n_head = {self.n_embd // self.n_head}")


ACTIVATIONS = ("gelu", "gelu_tanh", "relu2", "swiglu")


# ---------------------------------------------------------------- the model
class KVCache:
    """Keys and values of every layer for the tokens seen so far, in preallocated buffers.

    ``k[layer]`` has shape ``(B, n_kv_head, max_len, head_dim)``; ``length`` tokens are filled. A forward
    pass with a cache attends to the cached tokens plus the new ones, then appends the new ones. Size it to
    the tokens you need (:meth:`GPT.generate` uses prompt + new tokens): at Llama sizes a full
    ``block_size`` cache is hundreds of MB.
    """

    def __init__(self, cfg: GPTConfig, batch: int, device, dtype=torch.float32, max_len: int | None = None):
        self.max_len = max_len or cfg.block_size
        hd = cfg.n_embd // cfg.n_head
        shape = (cfg.n_layer, batch, cfg.n_kv_head or cfg.n_head, self.max_len, hd)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k, v`` of the new tokens after the cached ones; return all keys and values."""
        s, t = self.length, k.shape[2]
        if s + t > self.max_len:
            raise ValueError(f"KV cache full: {s} + {t} tokens > max_len {self.max_len}")
        k_all, v_all = self.k[layer], self.v[layer]
        k_all.narrow(2, s, t).copy_(k)
        v_all.narrow(2, s, t).copy_(v)
        return k_all.narrow(2, 0, s + t), v_all.narrow(2, 0, s + t)

    def reset(self) -> None:
        self.length = 0

    @classmethod
    def over(cls, k: torch.Tensor, v: torch.Tensor) -> "KVCache":
        """An empty cache writing into existing buffers ``k, v`` ``(n_layer, B, n_kv_head, max_len, head_dim)``
        (e.g. one row of a :class:`SlotKVCache`)."""
        cache = cls.__new__(cls)
        cache.k, cache.v, cache.max_len, cache.length = k, v, k.shape[3], 0
        return cache

    def positions(self, B: int, T: int, device) -> tuple[torch.Tensor, int]:
        """Positions of ``T`` new tokens, ``(T,)`` (the same for every row), and the length they bring it to."""
        return torch.arange(self.length, self.length + T, device=device), self.length + T

    def advance(self, B: int, T: int) -> None:
        self.length += T


class SlotKVCache(KVCache):
    """Keys and values of up to ``slots`` independent sequences, each with its own length (continuous batching).

    Rows ``0 … B−1`` are the running sequences. A new sequence is prefilled alone into a free row through
    :meth:`row` (a :class:`KVCache` over that row's buffers); then one decode step feeds one token per row,
    ``model(ids (B, 1), cache=slots)``: row ``b`` writes at its position ``lengths[b]`` and attends to its own
    ``lengths[b] + 1`` tokens only (a mask hides the rest of the padded buffer). :meth:`move` fills the row of a
    finished sequence with the last running one, so the running rows stay ``0 … B−1``.

    The buffers start at ``initial`` tokens a row and double as the longest row needs, up to ``max_len``: memory
    follows the longest sequence, not the largest one allowed (SmolLM2: 46 KB a token, 750 MB for 8 × 2048).
    """

    def __init__(self, cfg: GPTConfig, slots: int, device, dtype=torch.float32, max_len: int | None = None,
                 initial: int = 256):
        self.limit = max_len or cfg.block_size
        super().__init__(cfg, slots, device, dtype, min(initial, self.limit))   # zeros: masked positions are finite
        self.lengths = [0] * slots
        self.mask = self._end = None

    def reserve(self, n: int) -> None:
        """Make room for ``n`` tokens a row (doubling the buffers, at most ``max_len``)."""
        if n > self.limit:
            raise ValueError(f"KV cache full: a sequence would reach {n} tokens > max_len {self.limit}")
        if n > self.max_len:
            size = min(self.limit, max(n, 2 * self.max_len))
            with torch.inference_mode(False):   # ordinary tensors, whether or not growing happens in inference mode
                for name in ("k", "v"):
                    old = getattr(self, name)
                    new = old.new_zeros(*old.shape[:3], size, old.shape[4])
                    new[:, :, :, :self.max_len] = old
                    setattr(self, name, new)
            self.max_len = size

    def row(self, b: int, n_tokens: int = 0) -> KVCache:
        """An empty cache over row ``b``'s buffers with room for ``n_tokens``, for prefilling a new sequence there
        (then :meth:`set_length`)."""
        self.reserve(n_tokens)
        self.lengths[b] = 0
        return KVCache.over(self.k[:, b:b + 1], self.v[:, b:b + 1])

    def set_length(self, b: int, n: int) -> None:
        self.lengths[b] = n

    def move(self, src: int, dst: int) -> None:
        """Copy row ``src``'s tokens into row ``dst``."""
        n = self.lengths[src]
        self.k[:, dst, :, :n] = self.k[:, src, :, :n]
        self.v[:, dst, :, :n] = self.v[:, src, :, :n]
        self.lengths[dst] = n

    def positions(self, B: int, T: int, device) -> tuple[torch.Tensor, int]:
        """Positions ``(B, T)`` of the new tokens of rows ``0 … B−1`` and the longest row's length after them;
        prepares this step's attention mask."""
        if T != 1:
            raise ValueError("a SlotKVCache takes one new token per row (prefill through .row(b))")
        lengths = torch.tensor(self.lengths[:B], device=device)
        self._end = max(self.lengths[:B]) + 1
        self.reserve(self._end)
        # row b sees its own positions 0 … lengths[b]: (B, 1, 1, end), broadcast over heads and the one query
        self.mask = (torch.arange(self._end, device=device) <= lengths[:, None])[:, None, None]
        self._index = lengths
        return lengths[:, None], self._end

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write each row's new ``k, v`` (``(B, heads, 1, hd)``) at its own position; return rows ``0 … B−1`` up to
        the longest one."""
        B = k.shape[0]
        index = self._index.view(B, 1, 1, 1).expand_as(k)
        k_all, v_all = self.k[layer, :B], self.v[layer, :B]
        k_all.scatter_(2, index, k)
        v_all.scatter_(2, index, v)
        return k_all[:, :, :self._end], v_all[:, :, :self._end]

    def advance(self, B: int, T: int) -> None:
        for b in range(B):
            self.lengths[b] += T


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position ``t`` only sees positions ``≤ t``.

    With ``n_kv_head < n_head`` (grouped-query attention) each group of ``n_head / n_kv_head`` query heads
    shares one key/value head: ``c_attn`` makes ``n_head`` queries and ``n_kv_head`` keys and values."""

    def __init__(self, cfg: GPTConfig, layer: int = 0):
        super().__init__()
        if cfg.n_embd % cfg.n_head:
            raise ValueError(f"n_embd ({cfg.n_embd}) must be divisible by n_head ({cfg.n_head})")
        self.n_head, self.n_embd, self.layer, self.dropout = cfg.n_head, cfg.n_embd, layer, cfg.dropout
        self.n_kv_head = cfg.n_kv_head or cfg.n_head
        self.head_size = hs = cfg.n_embd // cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, (self.n_head + 2 * self.n_kv_head) * hs, bias=cfg.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_drop = nn.Dropout(cfg.dropout)
        self.qk_norm = cfg.qk_norm
        if cfg.pos == "rope":
            cos, sin = rope_tables(cfg.block_size, hs, cfg.rope_theta)
            self.register_buffer("cos", cos, persistent=False)
            self.register_buffer("sin", sin, persistent=False)
        else:
            self.cos = self.sin = None

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, pos: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        nh, nkv, hs = self.n_head, self.n_kv_head, self.head_size
        qk, v = self.c_attn(x).view(B, T, nh + 2 * nkv, hs).split((nh + nkv, nkv), dim=2)  # (B, T, heads, hs)
        slots = isinstance(cache, SlotKVCache)   # rows of independent lengths: positions (B, 1)
        past = cache.length if cache is not None and not slots else 0
        if self.qk_norm:    # each head's query and key scaled to RMS 1: bounded attention logits
            qk = F.rms_norm(qk, (hs,))
        if self.cos is not None:  # rotary: rotate q and k by angles proportional to their positions
            if slots:
                qk = rotate(qk, self.cos[pos][:, :, None], self.sin[pos][:, :, None])
            else:
                qk = rotate(qk, self.cos[past:past + T, None], self.sin[past:past + T, None])
        q, k = qk.transpose(1, 2).split((nh, nkv), dim=1)  # (B, nh, T, hs), (B, n_kv_head, T, hs)
        v = v.transpose(1, 2)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        drop = self.dropout if self.training else 0.0
        gqa = nkv != nh
        if slots:           # each row attends to its own tokens only
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=cache.mask, enable_gqa=gqa)
        elif past == 0:     # the usual case: a causal mask over T × T
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True, enable_gqa=gqa)
        elif T == 1:        # one new token attends to every cached token: no mask
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, enable_gqa=gqa)
        else:               # several new tokens after a cache: causal mask aligned to the end
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, enable_gqa=gqa)
        y = self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return self.resid_drop(y) if self.training else y   # dropout is the identity in eval: skip the call


def rope_tables(n_pos: int, head_size: int, base: float = 10_000.0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``sin`` of the rotary angles ``pos · base^(-2i/head_size)``, each ``(n_pos, head_size/2)``."""
    inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32, device=device) / head_size)
    angles = torch.outer(torch.arange(n_pos, dtype=torch.float32, device=device), inv_freq)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding: rotate each pair ``(x₁ᵢ, x₂ᵢ)`` (the two halves of the head) by its angle.
    Then ``q·k`` depends on the positions only through their difference."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


class MLP(nn.Module):
    """``c_proj(act(c_fc(x)))``; for ``"swiglu"`` ``c_fc`` makes gate and up in one matmul (rows: gate, then up)
    and the hidden state is ``silu(gate) · up``."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        n_inner = cfg.n_inner or 4 * cfg.n_embd
        self.activation = cfg.activation
        self.c_fc = nn.Linear(cfg.n_embd, 2 * n_inner if cfg.activation == "swiglu" else n_inner, bias=cfg.bias)
        self.c_proj = nn.Linear(n_inner, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        h = self.c_fc(x)
        if self.activation == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        elif self.activation == "relu2":
            h = F.relu(h).square()
        else:
            h = F.gelu(h, approximate="tanh" if self.activation == "gelu_tanh" else "none")
        h = self.c_proj(h)
        return self.drop(h) if self.training else h


def norm_layer(cfg: GPTConfig) -> nn.Module:
    """The config's normalisation over ``n_embd``: LayerNorm (GPT-2) or RMSNorm (Llama)."""
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.n_embd, eps=cfg.ln_eps)
    return nn.LayerNorm(cfg.n_embd, eps=cfg.ln_eps, bias=cfg.bias)


class Block(nn.Module):
    """Pre-LN Transformer block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``."""

    def __init__(self, cfg: GPTConfig, layer: int = 0):
        super().__init__()
        self.ln_1 = norm_layer(cfg)
        self.attn = CausalSelfAttention(cfg, layer)
        self.ln_2 = norm_layer(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x, cache: KVCache | None = None, pos: torch.Tensor | None = None):
        x = x + self.attn(self.ln_1(x), cache, pos)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only Transformer language model: ids ``(B, T)`` → logits ``(B, T, vocab)``."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)   # token embedding
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.pos == "learned" else None  # learned positions
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = norm_layer(cfg)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight              # weight tying: one matrix, used twice
        self.share_rope()
        # True: in training, each block's activations are recomputed in the backward pass instead of kept
        # (activation checkpointing: memory of one block's activations instead of all, ~⅓ more compute)
        self.checkpointing = False
        self.apply(self._init_weights)
        for name, p in self.named_parameters():                # GPT-2: scale residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def share_rope(self, device=None) -> None:
        """Give every layer the same rotary tables, computed once (on ``device``; a model built on the meta
        device needs real ones). No-op with learned positions."""
        if self.cfg.pos != "rope":
            return
        cos, sin = rope_tables(self.cfg.block_size, self.cfg.n_embd // self.cfg.n_head, self.cfg.rope_theta, device)
        for b in self.blocks:
            b.attn.cos, b.attn.sin = cos, sin

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    @classmethod
    def from_pretrained(cls, name_or_path: str, device=None, dtype: torch.dtype = torch.float32) -> "GPT":
        """A pretrained checkpoint as kit's GPT, in eval mode.

        * a shipped name (``"SmolLM2-135M-Instruct"``, :mod:`kit.data.llm_files`) or a ``.gguf`` file → Llama
          weights from GGUF (:func:`kit.models.llama_format.load_gguf`);
        * a Hugging Face folder whose ``config.json`` says ``llama`` → :func:`kit.models.llama_format.load_llama_folder`;
        * otherwise a Hugging Face GPT-2 checkpoint (a folder, or a hub name such as ``"gpt2"``),
          :mod:`kit.models.gpt2_format`.

        ``dtype``: the weights' type (GGUF tensors are dequantised to it)."""
        from kit.models import llama_format
        kind = llama_format.checkpoint_kind(name_or_path)
        if kind == "gguf":
            return llama_format.load_gguf(name_or_path, device=device, dtype=dtype)
        if kind == "llama":
            return llama_format.load_llama_folder(name_or_path, device=device, dtype=dtype)
        from kit.models.gpt2_format import load_gpt2
        model = load_gpt2(name_or_path, device=device)
        return model if dtype == torch.float32 else model.to(dtype)

    def save_pretrained(self, folder, eos_token_id: int | None = None) -> None:
        """Write this model in Hugging Face's GPT-2 format (loadable by ``transformers`` and :meth:`from_pretrained`);
        ``eos_token_id``: the vocabulary's end-of-text token, if it has one."""
        from kit.models.gpt2_format import save_gpt2
        save_gpt2(self, folder, eos_token_id=eos_token_id)

    def n_params(self, non_embedding: bool = True) -> int:
        """Parameters (the tied matrix counted once); ``non_embedding`` leaves out the position table."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding and self.wpe is not None else n

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None,
                last_only: bool = False, select: torch.Tensor | None = None):
        """Logits ``(B, T, V)``; with ``targets`` returns ``(logits, mean cross-entropy)``.

        With a ``cache`` the ``T`` new tokens continue the cached ones (positions ``cache.length…``; with a
        :class:`SlotKVCache` each row continues its own sequence).
        ``last_only``: logits of the last position only, ``(B, 1, V)`` (generation: the output layer is the
        biggest matrix of a small model, and only the last row is sampled from). ``select``: a boolean ``(B, T)`` mask,
        logits ``(N, V)`` of its ``N`` true positions only (a loss scored on a few positions, e.g. answer tokens,
        need not hold ``B·T·V`` logits and their gradient in memory)."""
        B, T = idx.shape
        pos, end = cache.positions(B, T, idx.device) if cache is not None else (torch.arange(T, device=idx.device), T)
        if end > self.cfg.block_size:
            raise ValueError(f"sequence of {end} tokens is longer than block_size {self.cfg.block_size}")
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(pos)
        x = self.drop(x)
        recompute = self.checkpointing and self.training and cache is None and torch.is_grad_enabled()
        pos = pos if isinstance(cache, SlotKVCache) else None   # only per-row positions travel to the layers
        for block in self.blocks:
            x = checkpoint(block, x, None, use_reentrant=False) if recompute else block(x, cache, pos)
        if cache is not None:
            cache.advance(B, T)
        if last_only:
            x = x[:, -1:]
        if select is not None:
            x = x[select]
        logits = self._output_layer(self.ln_f(x))
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def _output_layer(self, h: torch.Tensor) -> torch.Tensor:
        """``lm_head(h)``. For a few rows on the CPU without autograd (a decode step of a small batch) it is computed
        as ``W·hᵀ``: for 2–8 rows MKL's kernel for ``h·Wᵀ`` with SmolLM2's 49152 × 576 matrix took 27–30 ms where
        ``W·hᵀ`` took 9–16 ms (2 cores, AMD EPYC; one row: the same 11 ms). The same values up to float rounding."""
        lm = self.lm_head
        rows = h.numel() // h.shape[-1]
        if (2 <= rows <= 32 and h.device.type == "cpu" and not torch.is_grad_enabled() and type(lm) is nn.Linear
                and lm.bias is None):
            return (lm.weight @ h.reshape(rows, -1).t()).t().reshape(*h.shape[:-1], lm.weight.shape[0])
        return lm(h)

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
                 use_cache: bool = True, eos_token_id: int | None = None) -> torch.Tensor:
        """Append ``max_new_tokens`` sampled ids to ``prompt`` (1-D or ``(B, T)``; prompt included in the result).

        ``temperature=0`` is greedy. Without the cache every step re-reads the last ``block_size``
        tokens; with it each step feeds only the newest token and reuses the keys and values of the
        others (the cache holds prompt + new tokens, at most ``block_size``). Positions cannot slide: once the
        window is full, every step rebuilds the cache from the last ``block_size`` tokens (no saving past that
        point). The tokens are the same either way. ``eos_token_id``: stop early once every row has produced
        it (rows that ended earlier go on sampling after it).
        """
        from kit.models.sampling import sample_next
        with evaluating(self):
            dev = next(self.parameters()).device
            idx = prompt.to(dev)
            squeeze = idx.ndim == 1
            idx = idx[None] if squeeze else idx
            B, n = idx.shape
            if n == 0:
                raise ValueError("generate needs a prompt of at least one token")
            bs = self.cfg.block_size
            out = torch.empty(B, n + max_new_tokens, dtype=idx.dtype, device=dev)   # no concatenation per step
            out[:, :n] = idx
            cache = KVCache(self.cfg, B, dev, dtype=self.wte.weight.dtype, max_len=min(n + max_new_tokens, bs)) \
                if use_cache and max_new_tokens > 0 else None
            ended = torch.zeros(B, dtype=torch.bool, device=dev) if eos_token_id is not None else None
            with torch.inference_mode():   # no autograd bookkeeping at all (views included): faster small steps
                for _ in range(max_new_tokens):
                    if cache is None:                                 # re-read the whole visible window
                        logits = self(out[:, max(0, n - bs):n], last_only=True)[:, -1]
                    elif cache.length == 0 or cache.length >= bs:     # (re)fill the cache from the window
                        cache.reset()
                        logits = self(out[:, max(0, n - bs):n], cache=cache, last_only=True)[:, -1]
                    else:                                             # only the newest token
                        logits = self(out[:, n - 1:n], cache=cache, last_only=True)[:, -1]
                    out[:, n] = sample_next(logits, temperature, top_k, top_p, generator)
                    n += 1
                    if ended is not None:
                        ended |= out[:, n - 1] == eos_token_id
                        if bool(ended.all()):
                            break
        return out[0, :n] if squeeze else out[:, :n]


# ---------------------------------------------------------------- FLOPs and MFU
def flops_per_token(cfg: GPTConfig, n_params: int, seq_len: int | None = None) -> float:
    """Training FLOPs per token: ``6·N`` (forward + backward through the weights, N = non-embedding
    parameters) plus the attention scores and weighted sum, ``12·n_layer·T·n_embd`` — the PaLM appendix
    formula, as nanoGPT counts it. Causal masking would halve the useful attention work; this count does not."""
    T = seq_len or cfg.block_size
    return 6 * n_params + 12 * cfg.n_layer * cfg.n_embd * T


PEAK_BF16 = {  # dense bf16 tensor-core peak, FLOP/s (matched in this order: "A100" before "A10", "L40S" before "L4")
    "H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12,
    "RTX 4090": 165e12, "RTX 3090": 71e12,
}  # V100 and T4 have no bf16 tensor cores (kit trains there in fp16, kit.train.amp): no bf16 peak, MFU not applicable


def peak_flops(device) -> float | None:
    """The GPU's peak dense bf16 FLOP/s from a small table, or ``None`` (CPU, MPS or an unknown GPU)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    if "H100" in name and "PCIe" in name:
        return 756e12
    for key, val in PEAK_BF16.items():
        if key in name:
            return val
    return None


def mfu(tokens_per_s: float, cfg: GPTConfig, n_params: int, device) -> float | None:
    """Model FLOPs utilisation: achieved training FLOP/s ÷ the GPU's peak; ``None`` where not applicable."""
    peak = peak_flops(device)
    if peak is None:
        return None
    return tokens_per_s * flops_per_token(cfg, n_params) / peak


# ---------------------------------------------------------------- a naive baseline (for the benchmark)
class NaiveCausalSelfAttention(CausalSelfAttention):
    """Hand-written attention: explicit ``QKᵀ/√d``, ``masked_fill`` with a causal mask, softmax, ``@ V``
    — the steps that ``scaled_dot_product_attention`` fuses into one kernel."""

    def __init__(self, cfg: GPTConfig, layer: int = 0):
        super().__init__(cfg, layer)
        self.register_buffer("mask", torch.tril(torch.ones(cfg.block_size, cfg.block_size, dtype=torch.bool)),
                             persistent=False)

    def forward(self, x, cache=None, pos=None):
        if cache is not None:
            raise NotImplementedError("the naive baseline has no KV cache")
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
        att = att.masked_fill(~self.mask[:T, :T], float("-inf"))
        att = F.softmax(att, dim=-1)
        if self.training and self.dropout:
            att = F.dropout(att, self.dropout)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.c_proj(y))


class NaiveGPT(GPT):
    """The same network (same initial weights for the same seed) with :class:`NaiveCausalSelfAttention`.
    For the throughput benchmark only."""

    def __init__(self, cfg: GPTConfig):
        super().__init__(cfg)
        for i, b in enumerate(self.blocks):
            naive = NaiveCausalSelfAttention(cfg, i)
            naive.load_state_dict(b.attn.state_dict())
            b.attn = naive
