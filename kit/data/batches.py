"""Batches of token ids: padded sentence batches, and windows or streams of one long id stream."""
from __future__ import annotations

from typing import Iterator, Sequence

import torch

__all__ = ["pad_batch", "split_ids", "char_corpus", "lm_batches", "stream_batches"]


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
    from kit.data.tokenizers import CharVocab
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
