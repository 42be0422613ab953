"""Tokenizers that turn text into ids and back: characters and words (lessons 07–10)."""
from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

import torch

__all__ = ["CharVocab", "WordVocab", "words", "train_bpe", "tokens_per_char"]


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


def train_bpe(text: str, vocab_size: int):
    """A byte-level BPE tokenizer (GPT-2's scheme) trained on ``text`` with the ``tokenizers`` library.

    It starts from the 256 bytes and merges the most frequent adjacent pair until ``vocab_size`` tokens
    exist; words are split on spaces first (a leading space belongs to the word, as in GPT-2), so merges
    never cross words. Deterministic for a given text. Returns a ``tokenizers.Tokenizer``:
    ``tok.encode(s).ids``, ``tok.decode(ids)``, ``tok.get_vocab_size()``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    if vocab_size < 256:
        raise ValueError(f"a byte-level BPE needs vocab_size >= 256 (the bytes), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    lines = text.splitlines(keepends=True)
    tok.train_from_iterator(("".join(lines[i:i + 200]) for i in range(0, len(lines), 200)), trainer)
    return tok


def tokens_per_char(tokenizer, text: str) -> float:
    """How many tokens ``tokenizer`` makes of ``text``, per character (a ``CharVocab`` gives exactly 1)."""
    if not text:
        raise ValueError("tokens_per_char needs a non-empty text")
    n = len(tokenizer.encode(text)) if isinstance(tokenizer, (CharVocab, WordVocab)) else len(tokenizer.encode(text).ids)
    return n / len(text)
