"""Text helpers shared by the language lessons (07 RNN/LSTM, 08 Transformer, 09 GPT, 10 BERT).

Vocabularies
    :class:`CharVocab` — one id per character (``from_text``, ``encode`` → ``LongTensor``, ``decode``).
    :class:`WordVocab` — lower-cased word/punctuation tokens with ``<pad>``=0 and ``<unk>``=1
    (``from_texts``, ``encode``, ``decode``); :func:`words` is its tokenizer; :func:`pad_batch` pads
    a list of id sequences into ``(ids, mask)``.

Token streams (language modelling)
    :func:`split_ids` — train/validation split of one long id tensor.
    :func:`lm_batches` — a random batch of ``(x, y)`` windows, ``y`` is ``x`` shifted by one token.
    :func:`stream_batches` — contiguous chunks of ``batch_size`` parallel streams, for truncated BPTT
    where a recurrent state is carried from one chunk to the next.
    :func:`evaluate_lm` — deterministic mean cross-entropy (nats/token) over a whole id stream.
    :func:`train_lm` — a small generic training loop over a token stream (progress bar, gradient
    clipping, live plot, periodic validation); works for recurrent models and for Transformers.

Sampling
    :func:`filter_logits` (top-k / top-p), :func:`sample_next` (temperature + filters),
    :func:`generate` (autoregressive generation for any model following the protocol below).

Numbers
    :func:`perplexity` = exp(mean cross-entropy in nats); :func:`unigram_entropy` — the loss of the
    best model that ignores context, a bar every language model must beat.

**Model protocol.** A language model maps ids ``(B, T)`` to logits ``(B, T, V)``. A *recurrent* model
sets the class attribute ``recurrent = True`` and has ``forward(x, state=None) -> (logits, state)``;
``train_lm``/``evaluate_lm``/``generate`` then carry ``state`` across chunks (detached: truncated
backpropagation through time). Any other model is called as ``model(x)`` and may return the logits or
a tuple whose first element is the logits.
"""
from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["CharVocab", "WordVocab", "words", "pad_batch", "split_ids", "char_corpus", "lm_batches", "stream_batches",
           "evaluate_lm", "train_lm", "LMRun", "filter_logits", "sample_next", "generate", "perplexity",
           "unigram_entropy", "is_recurrent", "logits_of"]


# ---------------------------------------------------------------- vocabularies
class CharVocab:
    """A character vocabulary: ids ``0..len-1`` for the sorted distinct characters of a text.

    >>> v = CharVocab.from_text("hello")
    >>> v.decode(v.encode("hole"))
    'hole'

    ``unk``: a character (that must be in the vocabulary) used for characters never seen; without it
    encoding an unknown character raises ``KeyError`` naming it.
    """

    def __init__(self, chars: Sequence[str], unk: str | None = None):
        self.itos: list[str] = list(chars)
        if len(set(self.itos)) != len(self.itos):
            raise ValueError("CharVocab characters must be distinct")
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(self.itos)}
        if unk is not None and unk not in self.stoi:
            raise ValueError(f"unk character {unk!r} is not in the vocabulary")
        self.unk = unk

    @classmethod
    def from_text(cls, text: str, unk: str | None = None) -> "CharVocab":
        """Vocabulary of every distinct character in ``text`` (sorted, so it is deterministic)."""
        chars = sorted(set(text) | ({unk} if unk else set()))
        return cls(chars, unk=unk)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> torch.Tensor:
        """``str`` → 1-D ``LongTensor`` of ids."""
        if self.unk is None:
            try:
                return torch.tensor([self.stoi[c] for c in text], dtype=torch.long)
            except KeyError as e:
                raise KeyError(f"character {e.args[0]!r} is not in the vocabulary (pass unk=... to map it)") from None
        u = self.stoi[self.unk]
        return torch.tensor([self.stoi.get(c, u) for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        """Ids (tensor, array or list of ints) → ``str``."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        return "".join(self.itos[int(i)] for i in ids)

    def __repr__(self) -> str:
        shown = "".join(self.itos[:40]).replace("\n", "⏎")
        return f"CharVocab({len(self)} chars: {shown!r}{'…' if len(self) > 40 else ''})"


_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def words(text: str) -> list[str]:
    """Lower-cased word tokens: runs of letters/digits (with a trailing ``'s``-style suffix), and
    every other non-space character as its own token. ``words("Don't stop!") == ["don't", "stop", "!"]``."""
    return _WORD_RE.findall(text.lower())


class WordVocab:
    """A word vocabulary built from training texts: ``<pad>`` = 0, ``<unk>`` = 1, then the most frequent
    tokens (ties broken alphabetically, so it is deterministic). Extra special tokens (e.g. ``"<cls>"``,
    ``"<mask>"``) get ids 2, 3, … in the order given."""

    PAD, UNK = "<pad>", "<unk>"

    def __init__(self, itos: Sequence[str]):
        self.itos = list(itos)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.pad_id, self.unk_id = self.stoi[self.PAD], self.stoi[self.UNK]

    @classmethod
    def from_texts(cls, texts: Sequence[str], max_size: int | None = 20_000, min_freq: int = 1,
                   specials: Sequence[str] = ()) -> "WordVocab":
        counts = Counter(t for s in texts for t in words(s))
        head = [cls.PAD, cls.UNK, *specials]
        ranked = sorted((t for t, c in counts.items() if c >= min_freq and t not in head), key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[:max(0, max_size - len(head))]
        return cls(head + ranked)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        """Token ids of ``text`` (unknown words → ``unk_id``), truncated to ``max_len``."""
        ids = [self.stoi.get(t, self.unk_id) for t in words(text)]
        return ids[:max_len] if max_len is not None else ids

    def decode(self, ids) -> str:
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        return " ".join(self.itos[int(i)] for i in ids if int(i) != self.pad_id)

    def __repr__(self) -> str:
        return f"WordVocab({len(self)} tokens: {self.itos[:12]}…)"


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int = 0, max_len: int | None = None,
              min_len: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id sequences to one length → ``(ids LongTensor (B, L), mask BoolTensor (B, L))``,
    ``mask`` is ``True`` at real tokens. ``L`` = longest sequence (at least ``min_len``), capped at ``max_len``."""
    L = max([min_len] + [len(s) for s in seqs])
    if max_len is not None:
        L = min(L, max_len)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.bool)
    for i, s in enumerate(seqs):
        s = list(s)[:L]
        ids[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
        mask[i, :len(s)] = True
    return ids, mask


# ---------------------------------------------------------------- token streams
def split_ids(ids: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """First ``1 - val_fraction`` of the stream for training, the rest for validation (no shuffling:
    neighbouring characters are not independent, so a random split would leak)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"parameter 'val_fraction' must be between 0 and 1, got {val_fraction}")
    n = int(len(ids) * (1 - val_fraction))
    return ids[:n], ids[n:]


def char_corpus(name: str = "tinyshakespeare", val_fraction: float = 0.1):
    """Lesson 07's data steps in one call: load a text data set, build its character vocabulary, encode
    it and split the stream. Returns ``(corpus, vocab, train_ids, val_ids)``."""
    from kit.data import load
    corpus = load(name)
    vocab = CharVocab.from_text(corpus.text)
    train_ids, val_ids = split_ids(vocab.encode(corpus.text), val_fraction)
    return corpus, vocab, train_ids, val_ids


def lm_batches(ids: torch.Tensor, block_size: int, batch_size: int,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One random batch of windows from a 1-D id tensor: ``x[b] = ids[i_b : i_b+T]`` and
    ``y[b] = ids[i_b+1 : i_b+T+1]`` (the next token at every position). Returns ``(x, y)``, each
    ``(batch_size, block_size)`` on ``ids``' device. Offsets come from ``generator`` (CPU), so a seeded
    generator gives the same batches on every run."""
    if len(ids) < block_size + 2:
        raise ValueError(f"the token stream ({len(ids)} ids) is shorter than block_size + 2 = {block_size + 2}")
    starts = torch.randint(len(ids) - block_size - 1, (batch_size,), generator=generator)
    offs = starts[:, None] + torch.arange(block_size + 1)
    win = ids[offs.to(ids.device)]
    return win[:, :-1], win[:, 1:]


def stream_batches(ids: torch.Tensor, batch_size: int, block_size: int,
                   offset: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Contiguous ``(x, y)`` chunks for truncated BPTT.

    The stream (starting at ``offset``) is cut into ``batch_size`` equal parallel streams (rows); each
    yielded chunk holds the next ``block_size`` tokens of every row, so row ``b`` of chunk ``k+1``
    continues row ``b`` of chunk ``k`` and a recurrent state can be carried over.
    """
    ids = ids[offset:]
    n = (len(ids) - 1) // batch_size
    if n < 1:
        raise ValueError(f"the token stream ({len(ids)} ids) is too short for batch_size={batch_size}")
    xs = ids[:n * batch_size].view(batch_size, n)
    ys = ids[1:n * batch_size + 1].view(batch_size, n)
    for i in range(0, n, block_size):
        yield xs[:, i:i + block_size], ys[:, i:i + block_size]


def is_recurrent(model) -> bool:
    """True for models following the recurrent protocol (``recurrent = True``)."""
    return bool(getattr(model, "recurrent", False))


def logits_of(out) -> torch.Tensor:
    """The logits of a model's output (a tensor, or a tuple whose first element is the logits)."""
    return out[0] if isinstance(out, (tuple, list)) else out


def _detach(state):
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return type(state)(_detach(s) for s in state)


@torch.no_grad()
def evaluate_lm(model, ids: torch.Tensor, block_size: int, batch_size: int = 32, device=None,
                max_tokens: int | None = None) -> float:
    """Mean next-token cross-entropy (nats/token) over the whole stream ``ids`` (or its first
    ``max_tokens``), deterministic. The stream is cut into ``batch_size`` parallel rows read in chunks
    of ``block_size``; a recurrent model carries its state from chunk to chunk, a Transformer sees
    each chunk as its own context."""
    was_training = model.training
    model.eval()
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
    model.train(was_training)
    return total / count


@dataclass
class LMRun:
    """What :func:`train_lm` returns: curves per evaluation, and wall-clock speed.

    ``history`` (a :class:`kit.train.History`) has ``step``, ``train_loss`` (mean since the last
    evaluation), ``val_loss``, ``grad_norm`` (mean pre-clipping norm) and ``lr`` per evaluation.
    ``tokens_per_s`` is training throughput (wall-clock: put it in ``timing``, not ``metrics``).
    """
    history: object
    seconds: float
    tokens: int
    tokens_per_s: float
    final_val_loss: float
    extra: dict = field(default_factory=dict)


def train_lm(model, train_ids: torch.Tensor, val_ids: torch.Tensor | None = None, *, steps: int = 1000,
             block_size: int = 64, batch_size: int = 32, lr: float = 3e-3, optimizer: str = "adamw",
             weight_decay: float = 0.0, clip_grad: float | None = 1.0, scheduler: str | None = "cosine",
             warmup: int = 0, eval_every: int = 100, eval_tokens: int | None = 20_000, device=None,
             seed: int = 0, stateful: bool | None = None, progress: bool = True, live: bool = False,
             title: str = "language model", amp: bool | None = None) -> LMRun:
    """Train a language model on a token stream with AdamW (default), gradient clipping and a cosine
    learning-rate schedule; evaluate on ``val_ids`` every ``eval_every`` steps.

    Batches: a recurrent model with ``stateful`` (default: ``is_recurrent(model)``) reads the stream
    in order with :func:`stream_batches`, carrying its state across chunks and detaching it each step —
    **truncated backpropagation through time** over ``block_size`` steps; at the end of the stream it
    restarts at a new offset with a fresh state. Otherwise each step draws random windows with
    :func:`lm_batches` (seeded by ``seed``: the same seed gives the same run on CPU).

    ``clip_grad``: rescale the gradient when its global norm exceeds this (``None``: no clipping).
    ``warmup``: linear warm-up steps before the schedule. ``eval_tokens``: validation tokens per
    evaluation (``None``: all). ``live``: a plot of the curves that updates during training.
    Returns an :class:`LMRun`.
    """
    from kit.device import amp_dtype, pick_device
    from kit.train.history import History
    from kit.train.loop import make_optimizer

    if steps < 1:
        raise ValueError(f"parameter 'steps' must be >= 1, got {steps}")
    device = device if isinstance(device, torch.device) else pick_device(device or "auto")
    model.to(device)
    stateful = is_recurrent(model) if stateful is None else stateful
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt = make_optimizer(optimizer, [g for g in groups if g["params"]], lr, weight_decay)

    def lr_factor(step):  # step counts from 0
        if warmup and step < warmup:
            return (step + 1) / warmup
        if scheduler is None:
            return 1.0
        if scheduler == "cosine":
            t = (step - warmup) / max(1, steps - warmup)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        raise ValueError(f"parameter 'scheduler' must be None or 'cosine', got {scheduler!r}")

    use_amp = device.type == "cuda" if amp is None else amp
    dtype = amp_dtype(device) if use_amp else None
    gen = torch.Generator().manual_seed(seed)
    train_ids = train_ids.to(device)
    history = History()
    live_fig = None
    if live:
        from kit.viz import LiveFigure
        from kit.viz.text import lm_curves
        live_fig = LiveFigure(lambda: lm_curves(history, title=title))
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, desc=title, unit="step", mininterval=0.5)

    def stream():
        while True:  # a new random offset each pass, so chunk boundaries move
            off = int(torch.randint(block_size, (1,), generator=gen))
            yield None  # marks a fresh start: reset the state
            yield from stream_batches(train_ids, batch_size, block_size, offset=off)

    chunks = stream() if stateful else None
    state, run_loss, run_gn, run_n, tokens = None, 0.0, 0.0, 0, 0
    t_train = 0.0
    val_loss = float("nan")
    model.train()
    for step in range(steps):
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = lr * lr_factor(step)
        if stateful:
            nxt = next(chunks)
            if nxt is None:
                state, nxt = None, next(chunks)
            x, y = nxt
        else:
            x, y = lm_batches(train_ids, block_size, batch_size, gen)
        ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else _null()
        with ctx:
            if stateful:
                logits, state = model(x, state)
                state = _detach(state)  # truncated BPTT: no gradient into the previous chunk
            else:
                logits = logits_of(model(x))
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad is not None:
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        else:
            gn = torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in model.parameters()
                                                       if p.grad is not None]))
        opt.step()
        run_loss += loss.item()
        run_gn += float(gn)
        run_n += 1
        tokens += y.numel()
        t_train += time.perf_counter() - t0
        if bar is not None:
            bar.update(1)
        last = step + 1 == steps
        if (step + 1) % eval_every == 0 or last:
            if val_ids is not None:
                val_loss = evaluate_lm(model, val_ids, block_size, device=device, max_tokens=eval_tokens)
                model.train()
            history.log({"step": step + 1, "train_loss": run_loss / run_n, "val_loss": val_loss,
                         "grad_norm": run_gn / run_n, "lr": opt.param_groups[0]["lr"]})
            if bar is not None:
                bar.set_postfix({"train": f"{run_loss / run_n:.3f}", "val": f"{val_loss:.3f}"}, refresh=False)
            run_loss, run_gn, run_n = 0.0, 0.0, 0
            if live_fig is not None:
                live_fig.update(force=last)
    if bar is not None:
        bar.close()
    return LMRun(history=history, seconds=t_train, tokens=tokens, tokens_per_s=tokens / max(t_train, 1e-9),
                 final_val_loss=val_loss)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# ---------------------------------------------------------------- sampling
def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set logits outside the candidate set to ``-inf`` (last dimension = vocabulary).

    ``top_k``: keep the ``k`` largest. ``top_p`` (nucleus): keep the smallest set of most likely tokens
    whose probabilities sum to at least ``p`` (the most likely token is always kept).
    Both may be given (top-k first)."""
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
        drop_sorted = before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        out = out.masked_fill(drop, float("-inf"))
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
    was_training = model.training
    model.eval()
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
    model.train(was_training)
    return idx[0] if squeeze else idx


# ---------------------------------------------------------------- numbers
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
