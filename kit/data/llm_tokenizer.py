"""A real LLM's tokenizer and chat template (SmolLM2), read from its GGUF file or a Hugging Face folder.

``load_tokenizer("SmolLM2-135M-Instruct")`` builds kit's own :class:`~kit.data.bpe.ByteLevelBPE` from the file's
vocabulary and merges, and renders its Jinja chat template the way ``transformers`` does.

* **Special tokens.** :meth:`LLMTokenizer.encode` follows ``transformers``: ``"<|im_start|>"`` written in a text
  becomes the control token (id 1), because chat templates write their markers as text. ``allowed_special=()``
  (or ``"none"``) reads such text as plain text instead, byte by byte, so a user's message cannot inject a control
  token; :meth:`LLMTokenizer.encode_chat` does that for message contents only.
* **Pre-tokenizer.** SmolLM2 cuts every digit into a piece of its own, then uses GPT-2's expression on the text
  between (its ``tokenizer.json``: ``Digits(individual_digits=True)`` then ``ByteLevel``; llama.cpp's ``smollm``
  case: ``\\p{N}`` then GPT-2's expression). ``transformers`` building the tokenizer from the GGUF file forgets the
  digit step (``smollm`` is not in its table of splits), which changes the ids only where whitespace runs up to a
  digit (``"\\n\\n1."``); ``pre_tokenizer="gpt2"`` reproduces that.
* **Streaming.** :class:`StreamDecoder` turns ids, one at a time, into text pieces that never cut a character.
"""
from __future__ import annotations

import codecs
import json
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import regex

from kit.data.bpe import ByteLevelBPE, bytes_to_unicode
from kit.data.fetch import DataUnavailable

__all__ = ["LLMTokenizer", "StreamDecoder", "load_tokenizer", "render_chat_template"]

# llama.cpp's `tokenizer.ggml.pre` names → kit's pre-tokenizers (the ones whose rule kit implements).
GGUF_PRE_TOKENIZERS = {"gpt2": "gpt2", "default": "gpt2", "smollm": "gpt2-digits", "starcoder": "gpt2-digits",
                       "refact": "gpt2-digits", "codeshell": "gpt2-digits"}
CONTROL, USER_DEFINED = 3, 4   # GGUF token types matched whole in a text


class LLMTokenizer:
    """Encode, decode and chat-format for one model; ``special_tokens``: text → id of each token matched whole in a
    text (GGUF types control and user-defined; tokenizer.json added tokens)."""

    def __init__(self, bpe: ByteLevelBPE, bos_token: str | None, eos_token: str | None,
                 chat_template: str | None = None, unk_token: str | None = None, pad_token: str | None = None,
                 name: str = ""):
        self.bpe, self.chat_template, self.name = bpe, chat_template, name
        self.bos_token, self.eos_token, self.unk_token, self.pad_token = bos_token, eos_token, unk_token, pad_token
        self.special_tokens: dict[str, int] = dict(bpe.special)
        self._special_ids = frozenset(self.special_tokens.values())
        longest_first = sorted(self.special_tokens, key=len, reverse=True)
        self._special_split = regex.compile("(" + "|".join(map(regex.escape, longest_first)) + ")") \
            if longest_first else None
        self._bytes = _token_bytes_table(bpe)

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self.bpe.vocab[token]

    bos_token_id = property(lambda self: self._id(self.bos_token), doc="id of the beginning-of-sequence token")
    eos_token_id = property(lambda self: self._id(self.eos_token), doc="id of the end-of-sequence token")
    pad_token_id = property(lambda self: self._id(self.pad_token), doc="id of the padding token")
    unk_token_id = property(lambda self: self._id(self.unk_token), doc="id of the unknown token")

    @property
    def vocab_size(self) -> int:
        return self.bpe.vocab_size

    def __len__(self) -> int:
        return len(self.bpe)

    def __repr__(self) -> str:
        return (f"LLMTokenizer({self.name!r}, vocab_size={self.vocab_size}, pre_tokenizer={self.bpe.pre_tokenizer!r}, "
                f"bos={self.bos_token!r}, eos={self.eos_token!r})")

    def encode(self, text: str, allowed_special: str | Iterable[str] = "all",
               disallowed_special: str | Iterable[str] = ()) -> list[int]:
        """Token ids of ``text``, no BOS added. By default a special token's text becomes its id (as in
        ``transformers``); ``allowed_special=()`` or ``"none"`` encodes it as plain text (see ByteLevelBPE.encode)."""
        return self.bpe.encode(text, allowed_special=allowed_special, disallowed_special=disallowed_special)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one token stands for (a special token: its text)."""
        i = int(token_id)
        if not 0 <= i < len(self._bytes) or self._bytes[i] is None:
            raise ValueError(f"token id {i} is not in the vocabulary (size {self.vocab_size})")
        return self._bytes[i]

    def decode_bytes(self, ids: Iterable[int], skip_special_tokens: bool = False) -> bytes:
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            ids = [i for i in ids if i not in self._special_ids]
        return b"".join(self.token_bytes(i) for i in ids)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """The text of ``ids``; a cut through a multi-byte character shows as U+FFFD."""
        return self.decode_bytes(ids, skip_special_tokens).decode("utf-8", errors="replace")

    def stream_decoder(self, skip_special_tokens: bool = False) -> "StreamDecoder":
        return StreamDecoder(self, skip_special_tokens)

    def decode_stream(self, ids: Iterable[int], skip_special_tokens: bool = False) -> Iterator[str]:
        """Text pieces of ``ids`` as they complete: never a cut character, and ``"".join`` equals :meth:`decode`."""
        stream = self.stream_decoder(skip_special_tokens)
        for i in ids:
            if piece := stream.push(i):
                yield piece
        if tail := stream.flush():
            yield tail

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True, tokenize: bool = False,
                            **kwargs) -> str | list[int]:
        """The conversation as the model's prompt text (``tokenize=True``: its ids, special-token text as control
        tokens, like ``transformers``). Extra keyword arguments reach the template."""
        if self.chat_template is None:
            raise ValueError(f"{self.name or 'this tokenizer'} has no chat template")
        specials = {"bos_token": self.bos_token, "eos_token": self.eos_token, "unk_token": self.unk_token,
                    "pad_token": self.pad_token}
        text = render_chat_template(self.chat_template, messages, add_generation_prompt,
                                    **{k: v for k, v in specials.items() if v is not None}, **kwargs)
        return self.encode(text) if tokenize else text

    def encode_chat(self, messages: list[dict], add_generation_prompt: bool = True, **kwargs) -> list[int]:
        """Ids of the conversation where only the template's own markers are control tokens: special-token text
        inside a message's content is encoded as plain text (no injected ``<|im_end|>``). Without such text, the
        ids equal ``apply_chat_template(..., tokenize=True)``."""
        start, end = "\ue000", "\ue001"   # private-use fences around each content, removed before encoding
        fenced = [{k: (start + v.replace(start, "").replace(end, "") + end if k == "content" and isinstance(v, str)
                       else v) for k, v in m.items()} for m in messages]
        text = self.apply_chat_template(fenced, add_generation_prompt, **kwargs)
        ids: list[int] = []
        plain: list[str] = []   # text since the last control token, contents included
        for k, part in enumerate(text.replace(end, start).split(start)):
            if k % 2:   # a message's content: text, whatever it holds
                plain.append(part)
                continue
            for piece in self._special_split.split(part) if self._special_split else [part]:
                if piece in self.special_tokens:
                    ids.extend(self.encode("".join(plain), allowed_special=()))
                    plain = []
                    ids.append(self.special_tokens[piece])
                else:
                    plain.append(piece)
        ids.extend(self.encode("".join(plain), allowed_special=()))
        return ids


class StreamDecoder:
    """Ids in, one at a time; text out only as whole UTF-8 characters. ``push(id)`` returns the newly complete text
    (maybe ``""``); ``flush()`` ends the stream (a dangling partial character becomes U+FFFD, as in ``decode``)."""

    def __init__(self, tokenizer: LLMTokenizer, skip_special_tokens: bool = False):
        self._tokenizer, self._skip = tokenizer, skip_special_tokens
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        if self._skip and int(token_id) in self._tokenizer._special_ids:
            return ""
        return self._utf8.decode(self._tokenizer.token_bytes(token_id))

    def flush(self) -> str:
        text = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return text


def _token_bytes_table(bpe: ByteLevelBPE) -> list[bytes | None]:
    """Each id's bytes, computed once (decoding is then a join)."""
    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    table: list[bytes | None] = [None] * bpe.vocab_size
    for token, i in bpe.vocab.items():
        table[i] = token.encode("utf-8") if token in bpe.special else bytes(byte_of[c] for c in token)
    return table


# ------------------------------------------------------------------------------------------------ chat template
def _raise_exception(message: str):
    import jinja2
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    """``transformers``' ``tojson``: no HTML escaping, non-ASCII kept."""
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@lru_cache(maxsize=16)
def _compiled_template(template: str):
    """The template in ``transformers``' sandbox: trim_blocks, lstrip_blocks, loop controls, its globals."""
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def render_chat_template(template: str, messages: list[dict], add_generation_prompt: bool = True, **kwargs) -> str:
    """Render a Hugging Face chat template: ``messages`` (keys whose value is None dropped), ``tools``/``documents``
    None unless given, ``add_generation_prompt``, and the special tokens passed as keyword arguments."""
    if not messages:
        raise ValueError("cannot apply a chat template to an empty conversation")
    for m in messages:
        if not isinstance(m, dict):
            raise TypeError(f"each message must be a dict with 'role' and 'content', got {m!r}")
    chat = [{k: v for k, v in m.items() if v is not None} for m in messages]
    kwargs = {"tools": None, "documents": None, **kwargs}
    return _compiled_template(template).render(messages=chat, add_generation_prompt=add_generation_prompt, **kwargs)


# ------------------------------------------------------------------------------------------------ loading
@lru_cache(maxsize=2)
def _gguf_tokenizer_metadata(path: str, mtime_ns: int) -> dict:
    """The ``tokenizer.*`` keys of a GGUF file as plain Python values (read once: ``GGUFReader`` takes seconds)."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise DataUnavailable("reading a GGUF file needs the gguf package: run `pip install gguf`") from None
    fields = GGUFReader(path).fields
    return {k: f.contents() for k, f in fields.items() if k.startswith("tokenizer.")}


def _from_gguf(path: Path, pre_tokenizer: str | None) -> LLMTokenizer:
    """Vocabulary, merges, special tokens and chat template from a GGUF file's ``tokenizer.*`` metadata."""
    metadata = _gguf_tokenizer_metadata(str(path), path.stat().st_mtime_ns)

    def get(key, default=None):
        return metadata.get(key, default)

    model, pre = get("tokenizer.ggml.model"), get("tokenizer.ggml.pre", "default")
    if model != "gpt2":
        raise ValueError(f"{path.name}: tokenizer.ggml.model is {model!r}; kit reads byte-level BPE ('gpt2') only")
    if pre_tokenizer is None:
        if pre not in GGUF_PRE_TOKENIZERS:
            raise ValueError(f"{path.name}: pre-tokenizer {pre!r} is not one kit implements "
                             f"({sorted(GGUF_PRE_TOKENIZERS)}); pass pre_tokenizer= to choose one")
        pre_tokenizer = GGUF_PRE_TOKENIZERS[pre]
    tokens, types = get("tokenizer.ggml.tokens"), get("tokenizer.ggml.token_type") or []
    alphabet = set(bytes_to_unicode().values())
    table = bytes_to_unicode()
    special = [t for t, k in zip(tokens, types) if k in (CONTROL, USER_DEFINED)]
    special_set = set(special)
    vocab = {}
    for i, t in enumerate(tokens):   # a token outside the byte alphabet is respelled in it (as transformers does)
        vocab[t if t in special_set or set(t) <= alphabet else "".join(table[b] for b in t.encode("utf-8"))] = i
    merges = [tuple(m.split(" ")) for m in get("tokenizer.ggml.merges")]
    bpe = ByteLevelBPE(vocab, merges, special, pre_tokenizer=pre_tokenizer, missing_bytes="drop")

    def token(key):
        i = get(f"tokenizer.ggml.{key}")
        return None if i is None else tokens[int(i)]

    return LLMTokenizer(bpe, token("bos_token_id"), token("eos_token_id"), get("tokenizer.chat_template"),
                        token("unknown_token_id"), token("padding_token_id"), name=path.name)


_DIGITS_THEN_BYTELEVEL = ("Digits", "ByteLevel")


def _folder_pre_tokenizer(pre: dict | None) -> str:
    """kit's name for a ``tokenizer.json`` pre-tokenizer: ByteLevel (GPT-2's expression), or Digits then ByteLevel."""
    steps = pre.get("pretokenizers", []) if pre and pre.get("type") == "Sequence" else [pre] if pre else []
    kinds = tuple(s.get("type") for s in steps)
    byte_level = steps[-1] if steps else {}
    ok = byte_level.get("use_regex", True) and not byte_level.get("add_prefix_space", False)
    if kinds == ("ByteLevel",) and ok:
        return "gpt2"
    if kinds == _DIGITS_THEN_BYTELEVEL and steps[0].get("individual_digits") and ok:
        return "gpt2-digits"
    raise ValueError(f"pre-tokenizer {json.dumps(pre)} is not one kit implements (ByteLevel, or Digits then "
                     f"ByteLevel, with use_regex and no prefix space)")


def _token_text(value) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def _from_folder(folder: Path, pre_tokenizer: str | None) -> LLMTokenizer:
    """A Hugging Face folder: byte-level BPE ``tokenizer.json``, plus ``tokenizer_config.json`` and
    ``chat_template.jinja`` where present."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"{folder} has no tokenizer.json: not a Hugging Face tokenizer folder")
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data.get("model", {})
    if model.get("type") != "BPE" or data.get("normalizer") is not None:
        raise ValueError(f"{path}: kit reads byte-level BPE without a normalizer only (model "
                         f"{model.get('type')!r}, normalizer {data.get('normalizer')!r})")
    pre = pre_tokenizer or _folder_pre_tokenizer(data.get("pre_tokenizer"))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    vocab = dict(model["vocab"])
    added = data.get("added_tokens", [])
    vocab.update({a["content"]: a["id"] for a in added})
    bpe = ByteLevelBPE(vocab, merges, [a["content"] for a in added], pre_tokenizer=pre, missing_bytes="drop")
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    template_path = folder / "chat_template.jinja"
    template = template_path.read_text(encoding="utf-8") if template_path.is_file() else config.get("chat_template")
    tok = {k: _token_text(config.get(k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    return LLMTokenizer(bpe, tok["bos_token"], tok["eos_token"], template, tok["unk_token"], tok["pad_token"],
                        name=folder.name)


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int, pre_tokenizer: str | None) -> LLMTokenizer:
    p = Path(path)
    if p.is_dir():
        return _from_folder(p, pre_tokenizer)
    if p.suffix.lower() == ".gguf":
        return _from_gguf(p, pre_tokenizer)
    raise ValueError(f"{p} is neither a .gguf file nor a folder with tokenizer.json")


def load_tokenizer(name_or_path: str | Path, pre_tokenizer: str | None = None) -> LLMTokenizer:
    """The tokenizer of a shipped model (``"SmolLM2-135M-Instruct"``), a ``.gguf`` file or a Hugging Face folder.

    ``pre_tokenizer``: ``None`` (the file's own rule), ``"gpt2"`` or ``"gpt2-digits"``. Loaded once per file.
    """
    from kit.data.llm_files import resolve_llm
    path = resolve_llm(name_or_path).resolve()
    return _load_cached(str(path), path.stat().st_mtime_ns, pre_tokenizer)
