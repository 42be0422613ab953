"""Any Hugging Face BERT checkpoint folder as kit's :class:`~kit.models.bert.Bert` and its WordPiece tokenizer.

MiniLM ships a ``tokenizer.json``; ``bert-base-chinese`` and older checkpoints may have only ``vocab.txt``.
:func:`load_bert` reads ``config.json``, the weights (``model.safetensors``, or ``pytorch_model.bin`` with
``weights_only=True``; names with or without the ``bert.`` prefix) and builds the tokenizer from
``tokenizer.json`` or, failing that, from ``vocab.txt`` with BERT's rules: lower-casing and accent stripping as
``tokenizer_config.json`` says (``do_lower_case``), and **every CJK character its own word**, so "你好，世界！"
becomes 你 / 好 / ， / 世 / 界 / ！. ``tests/test_bert_format.py`` checks ids against ``transformers``'
``BertTokenizer`` and hidden states against ``BertModel`` on a tiny random checkpoint with a Chinese vocabulary.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from kit.models.bert import Bert, BertConfig, hf_name_map

__all__ = ["load_bert", "load_wordpiece", "read_state"]


def read_state(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of a Hugging Face checkpoint folder: ``model.safetensors``, else ``pytorch_model.bin`` (weights only)."""
    if (folder / "model.safetensors").exists():
        from safetensors.torch import load_file
        return load_file(str(folder / "model.safetensors"))
    if (folder / "pytorch_model.bin").exists():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder} has neither model.safetensors nor pytorch_model.bin")


def load_wordpiece(folder: str | os.PathLike, max_length: int = 512):
    """A ``tokenizers.Tokenizer`` for the checkpoint: its ``tokenizer.json``, else BERT's rules over ``vocab.txt``."""
    from tokenizers import Tokenizer
    from tokenizers.implementations import BertWordPieceTokenizer
    folder = Path(folder)
    if (folder / "tokenizer.json").exists():
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    elif (folder / "vocab.txt").exists():
        conf = folder / "tokenizer_config.json"
        lower = json.loads(conf.read_text()).get("do_lower_case", True) if conf.exists() else True
        tok = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=lower, strip_accents=None if lower else False,
                                     handle_chinese_chars=True)._tokenizer
    else:
        raise FileNotFoundError(f"{folder} has neither tokenizer.json nor vocab.txt")
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]") or 0, pad_token="[PAD]")
    return tok


def load_bert(folder: str | os.PathLike, device="cpu", max_length: int = 512):
    """``(model, tokenizer)`` of a Hugging Face BERT checkpoint folder (model in eval mode, on ``device``)."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder} has no config.json: not a Hugging Face checkpoint folder")
    cfg = BertConfig.from_json(folder / "config.json")
    model = Bert(cfg)
    raw = read_state(folder)
    prefix = "bert." if any(k.startswith("bert.") for k in raw) else ""
    state = model.state_dict()
    new = {}
    for ours, theirs in hf_name_map(cfg).items():
        t = raw.get(prefix + theirs)
        if t is None:
            raise KeyError(f"{folder}: the checkpoint has no tensor {prefix + theirs!r} (needed for {ours})")
        if t.shape != state[ours].shape:
            raise ValueError(f"{prefix + theirs}: shape {tuple(t.shape)} in the checkpoint, "
                             f"{tuple(state[ours].shape)} in the model")
        new[ours] = t.to(state[ours].dtype)
    model.load_state_dict(new, strict=True)
    return model.to(device).eval(), load_wordpiece(folder, min(max_length, cfg.block_size))
