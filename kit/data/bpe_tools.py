"""What lesson 15 measures about a byte-level BPE: round trips, parity with ``tokenizers``, tokens per byte.

* :func:`roundtrip_ok` — ``decode(encode(t)) == t`` for every text (default: :data:`MIXED_UNICODE`: Chinese,
  emoji with modifiers, accents, whitespace runs, control characters, a special token);
* :func:`matches_tokenizers` — the same ids as the ``tokenizers`` library's ``ByteLevelBPETokenizer`` reading
  the very files :meth:`ByteLevelBPE.save` wrote;
* :func:`split_encode` — encode a text's train and validation parts (cut as text, not as ids, so every
  vocabulary is scored on the **same** validation bytes); :func:`bits_per_byte` turns a loss per token into a
  loss per byte, the number that compares tokenizers;
* :func:`merge_table` — the first merges, readable (what BPE learned first);
* :func:`truncate` — the tokenizer with only the first merges: training is greedy, one merge at a time, so a
  smaller vocabulary trained on the same text is exactly a prefix of a bigger one (``tests/test_lesson15.py``).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from kit.data.bpe import ByteLevelBPE

__all__ = ["MIXED_UNICODE", "truncate", "roundtrip_ok", "matches_tokenizers", "SplitIds", "split_encode", "bits_per_byte",
           "merge_table"]

MIXED_UNICODE = (
    "Hello, my name is",
    "你好，世界！ 中文字符与English混排。",
    "emoji 😀🚀 and a modified one 👍🏽, a flag 🇫🇷, a family 👨‍👩‍👧",
    "accents: café, naïve, Ærøskøbing, Straße, ñandú — “quotes” … ’tis",
    "whitespace:   three spaces\ttab\n\nnew lines\r\nCRLF  \u00a0nbsp \u200bzero-width",
    "numbers 3.14159, 1,000,000 and ٣٤٥ (Arabic-Indic) Ω≈π∑√∞",
    "control \x00\x07 bytes, and a special token<|endoftext|>after it",
    "",
)


def roundtrip_ok(bpe: ByteLevelBPE, texts: Iterable[str] = MIXED_UNICODE) -> bool:
    """``True`` when ``bpe.decode(bpe.encode(t)) == t`` for every text."""
    return all(bpe.decode(bpe.encode(t)) == t for t in texts)


def matches_tokenizers(bpe: ByteLevelBPE, folder: str | os.PathLike, texts: Iterable[str] = MIXED_UNICODE) -> bool:
    """``True`` when the ``tokenizers`` library's byte-level BPE, given ``folder/vocab.json`` and
    ``folder/merges.txt`` (and the same special tokens), gives ``bpe``'s ids on every text."""
    from tokenizers import ByteLevelBPETokenizer
    folder = Path(folder)
    ref = ByteLevelBPETokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    if bpe.special:
        ref.add_special_tokens(list(bpe.special))
    return all(ref.encode(t).ids == bpe.encode(t, allowed_special="all") for t in texts)  # tokenizers: specials always


@dataclass
class SplitIds:
    """A text's train / validation ids under one tokenizer; ``val_bytes`` is the validation text's UTF-8 size."""
    train_ids: torch.Tensor
    val_ids: torch.Tensor
    val_bytes: int
    train_bytes: int

    @property
    def tokens_per_byte(self) -> float:
        """Validation tokens per validation byte (1.0 for bytes only; smaller with more merges)."""
        return len(self.val_ids) / self.val_bytes


def split_encode(bpe: ByteLevelBPE, train_text: str, val_text: str) -> SplitIds:
    """Encode the training and validation texts as plain text (no special tokens): a :class:`SplitIds`. Cut the
    text once, before encoding, so every tokenizer is scored on the same validation bytes."""
    as_ids = lambda t: torch.tensor(bpe.encode(t, allowed_special="none"), dtype=torch.long)  # noqa: E731
    return SplitIds(as_ids(train_text), as_ids(val_text), len(val_text.encode("utf-8")),
                    len(train_text.encode("utf-8")))


def bits_per_byte(loss_nats_per_token: float, tokens_per_byte: float) -> float:
    """Loss per byte in bits: ``loss (nats/token) × tokens/byte ÷ ln 2`` — comparable across tokenizers."""
    return float(loss_nats_per_token) * float(tokens_per_byte) / math.log(2)


def merge_table(bpe: ByteLevelBPE, n: int = 20, start: int = 0) -> list[tuple[int, str, str, str]]:
    """The merges ``start … start+n−1`` as ``(rank, left, right, merged)`` texts (bytes shown as text, ``␣`` for a
    space, ``⏎`` for a new line)."""
    show = lambda s: bpe.decode_bytes([bpe.vocab[s]]).decode("utf-8", errors="replace") \
        .replace(" ", "␣").replace("\n", "⏎")  # noqa: E731
    return [(r, show(a), show(b), show(a + b)) for r, (a, b) in enumerate(bpe.merges[start:start + n], start)]



def truncate(bpe: ByteLevelBPE, vocab_size: int) -> ByteLevelBPE:
    """``bpe`` with its first ``vocab_size − 256 − len(special)`` merges only (the special tokens keep the last ids):
    the tokenizer that :meth:`ByteLevelBPE.train` gives for ``vocab_size`` on the same text."""
    from kit.data.bpe import bytes_to_unicode
    n = vocab_size - 256 - len(bpe.special)
    if not 0 <= n <= len(bpe.merges):
        raise ValueError(f"vocab_size must be between {256 + len(bpe.special)} and {bpe.vocab_size}, got {vocab_size}")
    vocab = {c: b for b, c in bytes_to_unicode().items()}
    for a, b in bpe.merges[:n]:
        vocab[a + b] = len(vocab)
    return ByteLevelBPE(vocab, bpe.merges[:n], list(bpe.special))
