"""Byte-level BPE from scratch, in GPT-2's format: train merges, encode, decode, save and load.

* Text is split by GPT-2's regular expression (contractions, letter runs, digit runs, punctuation runs,
  whitespace), each piece's UTF-8 **bytes** are written as printable characters (GPT-2's byte ↔ unicode
  table), and merges are applied by rank inside each piece. Every UTF-8 string round-trips exactly.
* :meth:`ByteLevelBPE.train` learns merges by repeatedly joining the most frequent adjacent pair (counts kept
  incrementally, a heap picks the next pair). :meth:`save` writes GPT-2's ``vocab.json`` + ``merges.txt``;
  :meth:`from_files` reads any such pair (GPT-2's own included), and encodes exactly as the ``tokenizers``
  library's byte-level BPE does with the same files (``tests/test_bpe.py``).
* Special tokens (``<|endoftext|>``) map to their own ids only where the caller allows them: by default
  :meth:`ByteLevelBPE.encode` reads ``"<|endoftext|>"`` in a text as **plain text** (its bytes), so a user's text
  cannot inject the control token; ``allowed_special={"<|endoftext|>"}`` (or ``"all"``) makes it the control token,
  and ``disallowed_special="all"`` refuses such a text with a ``ValueError`` (tiktoken's default).
* ``pre_tokenizer`` picks how text is cut into pieces before merging (:data:`PRE_TOKENIZERS`): ``"gpt2"`` (the
  default, above) or ``"gpt2-digits"`` — every digit a piece of its own, GPT-2's expression on the text between
  (SmolLM2 and StarCoder: ``tokenizers``' ``Digits(individual_digits=True)`` then ``ByteLevel``). A vocabulary
  that lacks some of the 256 byte symbols (SmolLM2 lacks 21) loads with ``missing_bytes="drop"``: those bytes are
  dropped when encoding, as ``tokenizers``' BPE does when it has no unknown token.
"""
from __future__ import annotations

import heapq
import json
import os
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

import regex

__all__ = ["ByteLevelBPE", "GPT2_PATTERN", "PRE_TOKENIZERS", "bytes_to_unicode", "split_gpt2", "split_gpt2_digits"]

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_SPLIT = regex.compile(GPT2_PATTERN)
_DIGIT = regex.compile(r"(\p{N})")


def split_gpt2(text: str) -> list[str]:
    """GPT-2's pieces: contractions, letter runs, digit runs, punctuation runs, whitespace."""
    return _SPLIT.findall(text)


def split_gpt2_digits(text: str) -> list[str]:
    """Every digit a piece of its own, GPT-2's pieces for the text between the digits (so ``"  1"`` → ``"  "``,
    ``"1"``, where GPT-2 alone gives ``" "``, ``" 1"``)."""
    pieces: list[str] = []
    for part in _DIGIT.split(text):
        if part:
            pieces.extend(_SPLIT.findall(part))
    return pieces


PRE_TOKENIZERS: dict[str, Callable[[str], list[str]]] = {"gpt2": split_gpt2, "gpt2-digits": split_gpt2_digits}


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table: each byte 0–255 as a printable character (printable Latin-1 stays itself)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def _to_symbols(piece: str) -> str:
    table = bytes_to_unicode()
    return "".join(table[b] for b in piece.encode("utf-8"))


def _special_set(special: dict[str, int], which, what: str) -> set[str]:
    """``allowed_special`` / ``disallowed_special`` as a set of special tokens (``"all"``, ``"none"`` or a set)."""
    if which == "all":
        return set(special)
    if which == "none":
        return set()
    if isinstance(which, str):
        raise TypeError(f"{what} must be 'all', 'none' or a set of special tokens, got the string {which!r} "
                        f"(write {{{which!r}}} for a set)")
    which = set(which)
    unknown = sorted(which - set(special))
    if unknown:
        raise ValueError(f"{what} names {unknown}, which are not special tokens of this tokenizer "
                         f"(it has {sorted(special)})")
    return which


class ByteLevelBPE:
    """A byte-level BPE tokenizer: ``merges`` in rank order, ``vocab`` token string → id, special tokens.

    ``pre_tokenizer``: a name in :data:`PRE_TOKENIZERS`. ``missing_bytes``: ``"error"`` (a vocabulary must hold all
    256 byte symbols) or ``"drop"`` (bytes it lacks are left out of the encoding)."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], special_tokens: Iterable[str] = (),
                 pre_tokenizer: str = "gpt2", missing_bytes: str = "error"):
        self.vocab = dict(vocab)
        self.merges = [tuple(m) for m in merges]
        self.ranks = {m: i for i, m in enumerate(self.merges)}
        if pre_tokenizer not in PRE_TOKENIZERS:
            raise ValueError(f"pre_tokenizer must be one of {sorted(PRE_TOKENIZERS)}, got {pre_tokenizer!r}")
        self.pre_tokenizer = pre_tokenizer
        self._split = PRE_TOKENIZERS[pre_tokenizer]
        if missing_bytes not in ("error", "drop"):
            raise ValueError(f"missing_bytes must be 'error' or 'drop', got {missing_bytes!r}")
        missing = [c for c in bytes_to_unicode().values() if c not in self.vocab]
        if missing and missing_bytes == "error":
            raise ValueError(f"vocab lacks {len(missing)} of the 256 byte symbols: not a byte-level vocabulary "
                             f"(missing_bytes='drop' encodes without them)")
        self._missing = frozenset(missing)
        for s in special_tokens:
            self.vocab.setdefault(s, max(self.vocab.values()) + 1)
        self.special = {s: self.vocab[s] for s in special_tokens}
        self._special_re = regex.compile("(" + "|".join(regex.escape(s) for s in
                                                        sorted(self.special, key=len, reverse=True)) + ")") \
            if self.special else None
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self._byte_of = {c: b for b, c in bytes_to_unicode().items()}
        self._cache: dict[str, list[int]] = {}

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def vocab_size(self) -> int:
        return max(self.vocab.values()) + 1

    def __repr__(self) -> str:
        return f"ByteLevelBPE(vocab_size={self.vocab_size}, merges={len(self.merges)}, special={list(self.special)})"

    # ------------------------------------------------------------------------------------- training
    @classmethod
    def train(cls, text: str, vocab_size: int, special_tokens: Iterable[str] = ("<|endoftext|>",),
              progress: bool = False) -> "ByteLevelBPE":
        """Learn ``vocab_size − 256 − len(special_tokens)`` merges on ``text``."""
        special_tokens = list(special_tokens)
        n_merges = vocab_size - 256 - len(special_tokens)
        if n_merges < 0:
            raise ValueError(f"vocab_size must be at least {256 + len(special_tokens)} (256 bytes + special tokens), "
                             f"got {vocab_size}")
        if special_tokens:
            text = regex.sub("|".join(regex.escape(s) for s in special_tokens), " ", text)
        counts = Counter(_to_symbols(p) for p in _SPLIT.findall(text))
        words = [list(w) for w in counts]
        freq = [counts[w] for w in counts]
        pair_count: dict[tuple[str, str], int] = defaultdict(int)
        where: dict[tuple[str, str], set[int]] = defaultdict(set)
        for i, w in enumerate(words):
            for pair in zip(w, w[1:]):
                pair_count[pair] += freq[i]
                where[pair].add(i)
        heap = [(-c, p) for p, c in pair_count.items()]
        heapq.heapify(heap)
        table = bytes_to_unicode()
        vocab = {table[b]: b for b in range(256)}
        merges: list[tuple[str, str]] = []
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=n_merges, desc="BPE merges", unit="merge")
        while len(merges) < n_merges and heap:
            neg, pair = heapq.heappop(heap)
            if pair_count.get(pair, 0) != -neg or -neg <= 0:
                continue  # a stale entry: the count changed since it was pushed
            merged = pair[0] + pair[1]
            merges.append(pair)
            vocab[merged] = len(vocab)
            changed = set()
            for i in list(where[pair]):
                w = words[i]
                for p in zip(w, w[1:]):  # take the word's pairs out …
                    pair_count[p] -= freq[i]
                    changed.add(p)
                out, j = [], 0
                while j < len(w):
                    if j + 1 < len(w) and w[j] == pair[0] and w[j + 1] == pair[1]:
                        out.append(merged)
                        j += 2
                    else:
                        out.append(w[j])
                        j += 1
                words[i] = out
                for p in zip(out, out[1:]):  # … and the merged word's pairs back in
                    pair_count[p] += freq[i]
                    where[p].add(i)
                    changed.add(p)
            del pair_count[pair], where[pair]
            for p in changed:
                if p != pair and pair_count.get(p, 0) > 0:
                    heapq.heappush(heap, (-pair_count[p], p))
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        return cls(vocab, merges, special_tokens)

    # ------------------------------------------------------------------------------------- encoding
    def _bpe(self, symbols: str) -> list[int]:
        """GPT-2's encoding of one piece: while some adjacent pair has a merge, merge every occurrence (left to
        right) of the pair of **lowest rank** — until no adjacent pair has one."""
        word = [c for c in symbols if c not in self._missing] if self._missing else list(symbols)
        while len(word) > 1:
            best = min(zip(word, word[1:]), key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            out, j = [], 0
            while j < len(word):
                if j + 1 < len(word) and word[j] == best[0] and word[j + 1] == best[1]:
                    out.append(best[0] + best[1])
                    j += 2
                else:
                    out.append(word[j])
                    j += 1
            word = out
        return [self.vocab[t] for t in word]

    def _encode_ordinary(self, text: str) -> list[int]:
        ids: list[int] = []
        cache = self._cache
        for piece in self._split(text):
            got = cache.get(piece)
            if got is None:
                got = self._bpe(_to_symbols(piece))
                if len(cache) < 100_000:
                    cache[piece] = got
            ids.extend(got)
        return ids

    def encode(self, text: str, allowed_special: str | Iterable[str] = (),
               disallowed_special: str | Iterable[str] = ()) -> list[int]:
        """Token ids of ``text``.

        A special token's text (``"<|endoftext|>"``) inside ``text`` becomes the special token's id **only** if
        ``allowed_special`` names it (a set of special tokens, or ``"all"``); otherwise it is plain text, encoded
        byte by byte like any other — so a text a user typed cannot smuggle in the control token. With
        ``disallowed_special="all"`` (tiktoken's default) or a set, a text that holds a disallowed special token
        raises ``ValueError`` instead of being read as plain text.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, got {type(text).__name__}")
        allowed = _special_set(self.special, allowed_special, "allowed_special")
        disallowed = _special_set(self.special, disallowed_special, "disallowed_special") - allowed
        if disallowed:
            found = sorted(s for s in disallowed if s in text)
            if found:
                raise ValueError(f"the text contains the special token {found[0]!r}, which is disallowed here. Pass "
                                 f"allowed_special={{{found[0]!r}}} to encode it as the control token, or "
                                 f"disallowed_special=() to encode it as plain text")
        if not allowed or self._special_re is None:
            return self._encode_ordinary(text)
        ids: list[int] = []
        for part in self._special_re.split(text):
            if part in allowed:
                ids.append(self.special[part])
            elif part:
                ids.extend(self._encode_ordinary(part))
        return ids

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        out = bytearray()
        for i in ids:
            tok = self.id_to_token.get(int(i))
            if tok is None:
                raise ValueError(f"token id {int(i)} is not in the vocabulary (size {self.vocab_size})")
            out += tok.encode("utf-8") if tok in self.special else bytes(self._byte_of[c] for c in tok)
        return bytes(out)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` (a cut through a multi-byte character shows as U+FFFD)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # ------------------------------------------------------------------------------------- files
    def save(self, folder: str | os.PathLike) -> Path:
        """Write GPT-2's ``vocab.json`` and ``merges.txt`` into ``folder`` (atomically, each)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in (("vocab.json", json.dumps(self.vocab, ensure_ascii=False)),
                           ("merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in self.merges))):
            tmp = folder / f".{name}.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, folder / name)
        return folder

    @classmethod
    def from_files(cls, vocab_json: str | os.PathLike, merges_txt: str | os.PathLike,
                   special_tokens: Iterable[str] = ("<|endoftext|>",)) -> "ByteLevelBPE":
        """Load GPT-2-format files; special tokens listed here that the vocabulary holds keep their ids."""
        vocab = json.loads(Path(vocab_json).read_text(encoding="utf-8"))
        merges = []
        for line in Path(merges_txt).read_text(encoding="utf-8").splitlines():
            if line.startswith("#version") or not line.strip():
                continue
            a, b = line.split(" ")
            merges.append((a, b))
        return cls(vocab, merges, [s for s in special_tokens if s in vocab])

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> "ByteLevelBPE":
        """Load ``folder/vocab.json`` + ``folder/merges.txt`` (a Hugging Face GPT-2 folder, or one :meth:`save` wrote)."""
        folder = Path(folder)
        for name in ("vocab.json", "merges.txt"):
            if not (folder / name).exists():
                raise FileNotFoundError(f"{folder} has no {name}: not a GPT-2-format tokenizer folder")
        return cls.from_files(folder / "vocab.json", folder / "merges.txt")
