"""A Transformer encoder from scratch: attention written out, multi-head attention, positions, blocks,
and a sentence classifier.

    attention(Q, K, V) = softmax(Q Kᵀ / √d + mask) V

:func:`attention` is the written-out version (it can return the attention weights, which the lessons
plot); :class:`MultiHeadAttention` uses ``torch.nn.functional.scaled_dot_product_attention`` (fused,
same numbers — tests/test_language_models.py asserts it) unless the weights are asked for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kit.models.base import evaluating


# ---------------------------------------------------------------- attention
def causal_mask(T: int, S: int | None = None, device=None) -> torch.Tensor:
    """``(T, S)`` boolean mask, ``True`` where query ``i`` may attend to key ``j`` (``j ≤ i``).

    Lower-triangular, aligned at the top-left like ``F.scaled_dot_product_attention(is_causal=True)``."""
    S = T if S is None else S
    return torch.ones(T, S, dtype=torch.bool, device=device).tril()


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              causal: bool = False, return_weights: bool = False):
    """Scaled dot-product attention, written out: ``softmax(q kᵀ / √d) v``.

    ``q`` (…, T, d), ``k`` (…, S, d), ``v`` (…, S, d_v). ``mask`` broadcastable to (…, T, S): boolean
    (``True`` = may attend, as in ``F.scaled_dot_product_attention``) or float (added to the scores).
    ``causal`` also hides keys after each query. Returns the output (…, T, d_v), and the weights
    (…, T, S) when ``return_weights``. A query that may attend to nothing gets an all-zero output.
    """
    d = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (…, T, S): how well each query matches each key
    if causal:
        scores = scores.masked_fill(~causal_mask(q.shape[-2], k.shape[-2], q.device), float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    weights = torch.softmax(scores, dim=-1)  # each row sums to 1 over the keys
    weights = torch.nan_to_num(weights, nan=0.0)  # rows with every key masked
    out = weights @ v  # a weighted average of the values
    return (out, weights) if return_weights else out


class MultiHeadAttention(nn.Module):
    """``n_head`` attentions in parallel on ``n_embd / n_head``-dimensional slices, then a projection.

    ``forward(x, key_mask=None, causal=False, return_weights=False)``: ``key_mask`` (B, S) is ``True``
    at real tokens (padding ``False``). With ``return_weights`` it uses :func:`attention` and also
    returns the weights (B, n_head, T, S); otherwise the fused ``F.scaled_dot_product_attention``.
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} must be divisible by n_head={n_head}")
        self.n_embd, self.n_head, self.d_head, self.dropout = n_embd, n_head, n_embd // n_head, dropout
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)  # W_Q, W_K, W_V for all heads at once
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)     # W_O

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None, causal: bool = False,
                return_weights: bool = False):
        B, T, _ = x.shape
        q, k, v = self.qkv(x).split(self.n_embd, dim=-1)
        # (B, T, n_embd) → (B, n_head, T, d_head)
        q, k, v = (t.view(B, T, self.n_head, self.d_head).transpose(1, 2) for t in (q, k, v))
        mask = None if key_mask is None else key_mask[:, None, None, :].bool()  # (B, 1, 1, S)
        if return_weights:
            out, w = attention(q, k, v, mask=mask, causal=causal, return_weights=True)
        else:
            if causal and mask is not None:
                mask, causal = mask & causal_mask(T, T, x.device), False
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                                 dropout_p=self.dropout if self.training else 0.0)
            w = None
        out = out.transpose(1, 2).reshape(B, T, self.n_embd)  # concatenate the heads
        out = self.proj(out)
        return (out, w) if return_weights else out


# ---------------------------------------------------------------- positions
def sinusoidal_positions(max_len: int, n_embd: int) -> torch.Tensor:
    """``PE[p, 2i] = sin(p / 10000^(2i/d))``, ``PE[p, 2i+1] = cos(p / 10000^(2i/d))`` — (max_len, n_embd)."""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, n_embd, 2, dtype=torch.float32) / n_embd)
    pe = torch.zeros(max_len, n_embd)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : n_embd // 2]
    return pe


class SinusoidalPositions(nn.Module):
    """Adds fixed sinusoidal position codes (no parameters; any length up to ``max_len``)."""

    def __init__(self, max_len: int, n_embd: int):
        super().__init__()
        self.register_buffer("pe", sinusoidal_positions(max_len, n_embd), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[: x.shape[1]]


class LearnedPositions(nn.Module):
    """Adds a learned vector per position (``max_len`` × ``n_embd`` parameters).

    Initialised with ``std`` = 1/√2 per coordinate: the root-mean-square of a sinusoidal code (half its
    coordinates are sines, half cosines), so learned and sinusoidal positions start at the same scale,
    comparable to the token vectors (see :class:`TransformerEncoder`).
    """

    def __init__(self, max_len: int, n_embd: int, std: float = 2 ** -0.5):
        super().__init__()
        self.pe = nn.Embedding(max_len, n_embd)
        nn.init.normal_(self.pe.weight, std=std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe(torch.arange(x.shape[1], device=x.device))


# ---------------------------------------------------------------- blocks and models
class Block(nn.Module):
    """Pre-norm Transformer block: ``x + MHA(LN(x))`` then ``x + MLP(LN(x))`` (MLP: d → n_inner → d, GELU)."""

    def __init__(self, n_embd: int, n_head: int, n_inner: int | None = None, dropout: float = 0.0):
        super().__init__()
        n_inner = n_inner or 4 * n_embd
        self.ln1 = nn.LayerNorm(n_embd)
        self.attn = MultiHeadAttention(n_embd, n_head, dropout)
        self.ln2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, n_inner), nn.GELU(), nn.Linear(n_inner, n_embd), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, key_mask=None, causal: bool = False, return_weights: bool = False):
        a = self.attn(self.ln1(x), key_mask, causal, return_weights)
        a, w = a if return_weights else (a, None)
        x = x + self.drop(a)
        x = x + self.mlp(self.ln2(x))
        return (x, w) if return_weights else x


@dataclass
class TransformerConfig:
    vocab_size: int
    n_classes: int
    max_len: int = 64            # longest input (tokens)
    n_embd: int = 64
    n_head: int = 4
    n_layer: int = 2
    n_inner: int | None = None      # MLP width (default 4·n_embd)
    dropout: float = 0.1
    positions: str = "sinusoidal"  # "sinusoidal", "learned" or "none"
    pad_id: int = 0


class TransformerEncoder(nn.Module):
    """Token embedding (× √d) + positions → ``n_layer`` blocks → final LayerNorm.

    Scales: the token table starts at N(0, 1/d), so after the × √d each coordinate of a token vector has
    standard deviation 1 and its norm is about √d; a sinusoidal code has norm √(d/2) (coordinates of RMS
    1/√2), and learned codes start at the same RMS. Position codes are then about 0.7 × the size of the
    token vectors at initialisation (:func:`position_to_token_ratio`), so neither drowns the other. (With
    N(0, 1) tokens × √d and learned codes of std 0.02, the ratio was 1/√(2d) for sinusoidal codes, 0.09 at
    d = 64, and 0.02/√d, 0.0025, for learned ones.)
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        if cfg.positions not in ("sinusoidal", "learned", "none"):
            raise ValueError(f"parameter 'positions' must be 'sinusoidal', 'learned' or 'none', got {cfg.positions!r}")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.n_embd, padding_idx=cfg.pad_id)
        with torch.no_grad():
            nn.init.normal_(self.embed.weight, std=cfg.n_embd ** -0.5)
            if cfg.pad_id is not None:
                self.embed.weight[cfg.pad_id].zero_()
        self.pos = {"sinusoidal": SinusoidalPositions, "learned": LearnedPositions}.get(
            cfg.positions, lambda *a: nn.Identity())(cfg.max_len, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg.n_embd, cfg.n_head, cfg.n_inner, cfg.dropout) for _ in range(cfg.n_layer))
        self.ln = nn.LayerNorm(cfg.n_embd)

    def token_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """The scaled token embeddings ``embed(ids) · √d`` (before the positions are added)."""
        return self.embed(ids) * math.sqrt(self.cfg.n_embd)

    def forward(self, ids: torch.Tensor, key_mask: torch.Tensor | None = None, return_weights: bool = False):
        """``ids`` (B, T) → hidden states (B, T, n_embd) [and a list of (B, heads, T, T) weights per layer]."""
        x = self.drop(self.pos(self.token_vectors(ids)))
        weights = []
        for blk in self.blocks:
            if return_weights:
                x, w = blk(x, key_mask, return_weights=True)
                weights.append(w)
            else:
                x = blk(x, key_mask)
        x = self.ln(x)
        return (x, weights) if return_weights else x


class TransformerClassifier(nn.Module):
    """Encoder → mean of the hidden states over real (non-padding) tokens → linear head (class logits).

    ``forward(ids)`` takes padded ids (B, T) — padding is ``cfg.pad_id`` — so it trains with
    ``kit.train.fit(model, (ids, labels), …)``. ``attention_maps(ids)`` returns the per-layer weights.
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = TransformerEncoder(cfg)
        self.head = nn.Linear(cfg.n_embd, cfg.n_classes)

    def forward(self, ids: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        key_mask = ids != self.cfg.pad_id if key_mask is None else key_mask
        h = self.encoder(ids, key_mask)
        m = key_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
        return self.head(pooled)

    @torch.no_grad()
    def attention_maps(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """Attention weights of every layer for ``ids`` (B, T): a list of (B, n_head, T, T) tensors."""
        with evaluating(self):
            _, w = self.encoder(ids, ids != self.cfg.pad_id, return_weights=True)
        return w


# ---------------------------------------------------------------- measuring
@torch.no_grad()
def position_to_token_ratio(encoder: TransformerEncoder) -> float:
    """Mean norm of the position codes over all ``max_len`` positions divided by the mean norm of the scaled
    token vectors over the vocabulary (padding excluded): how loud word order is next to word identity."""
    cfg = encoder.cfg
    if cfg.positions == "none":
        return 0.0
    zeros = torch.zeros(1, cfg.max_len, cfg.n_embd, device=encoder.embed.weight.device)
    pos = encoder.pos(zeros)[0].norm(dim=-1).mean()
    ids = torch.tensor([i for i in range(cfg.vocab_size) if i != cfg.pad_id], device=zeros.device)
    tok = encoder.token_vectors(ids).norm(dim=-1).mean()
    return float(pos / tok)


@torch.no_grad()
def attention_head_stats(model: "TransformerClassifier", ids: torch.Tensor, pad_id: int, min_count: int = 5,
                         batch_size: int = 256) -> list[dict]:
    """What each head attends to, measured over sentences ``ids`` (B, T) padded with ``pad_id``.

    One dict per (layer, head): ``evenness`` (mean entropy of a query's weights / log of the sentence length:
    1 = spread evenly, 0 = on one token), ``self`` and ``neighbours`` (mean weight on the query's own token and
    on the tokens right before and after it) with ``neighbours_uniform`` (what even attention would give),
    and ``lift`` — for every token id seen as a key at least ``min_count`` times, the mean weight it receives
    times the sentence length (1 = what even attention gives), as ``[(token id, lift, count), …]`` sorted
    from the most attended. Sentences shorter than 3 tokens are skipped.
    """
    lengths = (ids != pad_id).sum(1)
    keep = lengths >= 3
    ids, lengths = ids[keep], lengths[keep]
    n_layer, n_head = len(model.encoder.blocks), model.cfg.n_head
    ent = torch.zeros(n_layer, n_head, dtype=torch.float64)
    self_w, neigh_w, neigh_u = (torch.zeros(n_layer, n_head, dtype=torch.float64) for _ in range(3))
    n_q = 0
    V = model.cfg.vocab_size
    recv = torch.zeros(n_layer, n_head, V, dtype=torch.float64)
    count = torch.zeros(V, dtype=torch.float64)
    dev = next(model.parameters()).device
    for s in range(0, len(ids), batch_size):
        x, L = ids[s:s + batch_size].to(dev), lengths[s:s + batch_size].to(dev)
        maps = model.attention_maps(x)  # n_layer × (b, h, T, T)
        T = x.shape[1]
        real = torch.arange(T, device=dev)[None] < L[:, None]                       # (b, T)
        q_real = real[:, None, :, None].double()                                    # queries that count
        i = torch.arange(T, device=dev)
        near = ((i[:, None] - i[None]).abs() == 1).double()                          # (T, T)
        n_near = (near[None] * real[:, None, :].double()).sum(-1)                    # (b, T) neighbours per query
        for l, w in enumerate(maps):
            w = w.double()
            e = -(w * w.clamp_min(1e-30).log()).sum(-1) / L[:, None, None].double().log()  # (b, h, T)
            ent[l] += (e * q_real[..., 0]).sum((0, 2)).cpu()
            self_w[l] += (torch.diagonal(w, dim1=-2, dim2=-1) * q_real[..., 0]).sum((0, 2)).cpu()
            neigh_w[l] += ((w * near).sum(-1) * q_real[..., 0]).sum((0, 2)).cpu()
            # the mean weight a key receives from the sentence's L queries, times L (1 for even attention),
            # is the sum of the weights it receives
            got = (w * q_real).sum(2)  # (b, h, T)
            for h in range(n_head):
                recv[l, h].index_add_(0, x[real].cpu(), got[:, h][real].cpu())
        neigh_u += (n_near / L[:, None].double() * real.double()).sum().cpu()
        count.index_add_(0, x[real].cpu(), torch.ones(int(real.sum()), dtype=torch.float64))
        n_q += int(real.sum())
    out = []
    seen = count >= min_count
    for l in range(n_layer):
        for h in range(n_head):
            lift = torch.where(seen, recv[l, h] / count.clamp_min(1), torch.zeros_like(count))
            order = [int(t) for t in lift.argsort(descending=True) if seen[t]]
            out.append({"layer": l, "head": h, "evenness": float(ent[l, h] / n_q), "self": float(self_w[l, h] / n_q),
                        "neighbours": float(neigh_w[l, h] / n_q), "neighbours_uniform": float(neigh_u[l, h] / n_q),
                        "lift": [(t, float(lift[t]), int(count[t])) for t in order]})
    return out
