"""BERT checkpoints beyond MiniLM: a bert-base-chinese-style folder (vocab.txt, CJK one character per token)
loads into kit's Bert with the same hidden states as `transformers`' BertModel and the same ids as BertTokenizer."""
from __future__ import annotations

import json

import pytest
import torch

from kit.models.bert import tokenize
from kit.models.bert_format import load_bert

transformers = pytest.importorskip("transformers")

CJK = list("你好世界中文我们是学生今天天气很不错的人大小")
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "，", "！", "。", "?", "!", ",", "."] + CJK + \
        ["hello", "world", "he", "##llo", "wor", "##ld", "the", "bert", "##s", "good"]
TEXTS = ["你好，世界！", "Hello 世界! 我们是学生。", "今天天气很不错", "the berts say hello world", "犬 unknown 猫"]


def _checkpoint(tmp_path, safe=True):
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=64)
    hf = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    hf.save_pretrained(tmp_path, safe_serialization=safe)
    return hf


def test_chinese_characters_are_one_token_each_as_in_transformers(tmp_path):
    _checkpoint(tmp_path)
    _, tok = load_bert(tmp_path)
    ref = transformers.BertTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=True)
    assert tok.encode("你好，世界！").tokens == ["[CLS]", "你", "好", "，", "世", "界", "！", "[SEP]"]
    for text in TEXTS:
        assert tok.encode(text).ids == ref(text)["input_ids"], text


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "pytorch_model.bin"])
def test_hidden_states_match_transformers(tmp_path, safe):
    hf = _checkpoint(tmp_path, safe)
    model, tok = load_bert(tmp_path)
    ids, mask = tokenize(tok, TEXTS)
    with torch.no_grad():
        ours = model(ids, mask)
        theirs = hf(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    assert (ours[real] - theirs[real]).abs().max() <= 1e-4


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_bert(tmp_path)
    _checkpoint(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="neither model.safetensors nor pytorch_model.bin"):
        load_bert(tmp_path)
