"""Lesson 15: the exercises reject typical wrong answers (naming the case), and the kit pieces the lesson uses."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kit.data.bpe import ByteLevelBPE
from kit.data.bpe_tools import (MIXED_UNICODE, bits_per_byte, matches_tokenizers, merge_table, roundtrip_ok,
                                split_encode, truncate)
from kit.exercises import verdict
from kit.exercises import lesson15 as L

SHAKESPEARE = None


def _text(n=60_000):
    global SHAKESPEARE
    if SHAKESPEARE is None:
        from kit.data.datasets import _tinyshakespeare_embedded
        SHAKESPEARE = _tinyshakespeare_embedded().text
    return SHAKESPEARE[:n]


# ------------------------------------------------------------------------------------- right answers pass
@pytest.mark.parametrize("id,fn", [("15.1", L._bits_per_byte), ("15.2", L._most_frequent_pair), ("15.3", L._merge),
                                   ("15.4", L._train), ("15.5", L._hf_to_kit)])
def test_reference_style_answers_pass_on_fresh_inputs(id, fn):
    for _ in range(4):
        assert verdict(id, fn) is None


def test_other_right_answers_pass():
    from collections import Counter

    def pair_counter(ids):  # Counter.most_common keeps first-seen order among equal counts
        c = Counter(zip(ids, ids[1:]))
        return c.most_common(1)[0][0] if c else None

    def merge_by_index(ids, pair, new_id):
        out, skip = [], False
        for i, x in enumerate(ids):
            if skip:
                skip = False
            elif i + 1 < len(ids) and (x, ids[i + 1]) == pair:
                out.append(new_id)
                skip = True
            else:
                out.append(x)
        return out

    def hf_to_kit_tensors_as_numpy(name, tensor):  # returning a transposed copy, not a view, is fine too
        got = L._hf_to_kit(name, tensor)
        return None if got is None else (got[0], got[1].contiguous())

    assert verdict("15.1", lambda loss, n_tokens, n_bytes: loss / math.log(2) * (n_tokens / n_bytes)) is None
    assert verdict("15.2", pair_counter) is None
    assert verdict("15.3", merge_by_index) is None
    assert verdict("15.5", hf_to_kit_tensors_as_numpy) is None


# ------------------------------------------------------------------------------------- wrong answers fail
def test_15_1_wrong_answers():
    nats = verdict("15.1", lambda loss, n_tokens, n_bytes: loss * n_tokens / n_bytes)
    assert nats and "on the case 'loss" in nats
    upside_down = verdict("15.1", lambda loss, n_tokens, n_bytes: loss * n_bytes / n_tokens / math.log(2))
    assert upside_down and "on the case 'loss" in upside_down
    log10 = verdict("15.1", lambda loss, n_tokens, n_bytes: loss * n_tokens / n_bytes / math.log(10))
    assert log10 and "on the case" in log10


def test_15_2_wrong_answers():
    def largest_on_ties(ids):
        c = {}
        for p in zip(ids, ids[1:]):
            c[p] = c.get(p, 0) + 1
        return max(c, key=lambda p: (c[p], p)) if c else None

    def non_overlapping(ids):
        c, i = {}, 0
        while i + 1 < len(ids):
            p = (ids[i], ids[i + 1])
            c[p] = c.get(p, 0) + 1
            i += 2 if p[0] == p[1] else 1
        return max(c, key=c.get) if c else None

    def no_short_lists(ids):
        c = {}
        for p in zip(ids, ids[1:]):
            c[p] = c.get(p, 0) + 1
        return max(c, key=c.get)

    for wrong in (largest_on_ties, non_overlapping):
        msg = verdict("15.2", wrong)
        assert msg and "on the case '" in msg and "tie rule" in msg
    msg = verdict("15.2", no_short_lists)
    assert "on the case 'one id: no pair' your function raised ValueError" in msg


def test_15_3_wrong_answers():
    def overlapping(ids, pair, new_id):  # replaces every position where the pair starts, overlaps included
        out = []
        for i in range(len(ids)):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                out.append(new_id)
            elif i > 0 and (ids[i - 1], ids[i]) == pair:
                continue
            else:
                out.append(ids[i])
        return out

    def drops_the_last(ids, pair, new_id):
        out, i = [], 0
        while i < len(ids) - 1:
            if (ids[i], ids[i + 1]) == pair:
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        return out

    def no_bounds_check(ids, pair, new_id):
        out, i = [], 0
        while i < len(ids):
            if ids[i] == pair[0] and ids[i + 1] == pair[1]:
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        return out

    msg = verdict("15.3", overlapping)
    assert msg and "on the case" in msg
    msg = verdict("15.3", drops_the_last)
    assert msg and "on the case" in msg and ("ids where" in msg or "differs" in msg)
    assert "raised IndexError" in verdict("15.3", no_bounds_check)


def test_15_4_wrong_answers():
    def off_by_one_ids(ids, n_merges, first_id):
        return L._train(ids, n_merges, first_id + 1)

    def never_stops(ids, n_merges, first_id):
        ids, merges = list(ids), {}
        for k in range(n_merges):
            pair = L._most_frequent_pair(ids)
            merges[pair] = first_id + k
            ids = L._merge(ids, pair, first_id + k)
        return merges, ids

    def only_merges(ids, n_merges, first_id):
        return L._train(ids, n_merges, first_id)[0]

    assert "different merge number 1" in verdict("15.4", off_by_one_ids)
    msg = verdict("15.4", never_stops)
    assert "more merges than possible" in msg and "not a pair" in msg
    assert "(merges, ids)" in verdict("15.4", only_merges)


def test_15_5_wrong_answers():
    def transposes_every_matrix(name, tensor):
        got = L._hf_to_kit(name, tensor)
        return None if got is None else (got[0], tensor.t() if tensor.ndim == 2 else tensor)

    def keeps_the_prefix(name, tensor):
        got = L._hf_to_kit(name, tensor)
        return None if got is None else ("transformer." + got[0] if name.startswith("transformer.") else got[0], got[1])

    def no_transpose(name, tensor):
        got = L._hf_to_kit(name, tensor)
        return None if got is None else (got[0], tensor)

    def keeps_lm_head(name, tensor):
        return L._hf_to_kit(name, tensor) or (name, tensor)

    assert "on the case '(square)" not in verdict("15.5", no_transpose)
    assert "c_proj.weight' (square)" in verdict("15.5", no_transpose)
    assert "wte.weight'" in verdict("15.5", transposes_every_matrix)
    assert "not kit's name" in verdict("15.5", keeps_the_prefix)
    assert "should be None" in verdict("15.5", keeps_lm_head)


def test_blank_answers_say_no_answer_yet():
    def blank(*args):
        raise NotImplementedError
    for i in range(1, 6):
        assert verdict(f"15.{i}", blank).startswith("no answer yet")


def test_15_4_reference_agrees_with_kit_bpe_on_a_text_without_ties():
    """The exercise's ids-level training is what ByteLevelBPE does inside one piece (when counts do not tie)."""
    ids = list("abababcabab".encode())
    merges, out = L._train(ids, 2, 256)
    assert list(merges) == [(97, 98), (256, 256)] and L._merge(L._merge(ids, (97, 98), 256), (256, 256), 257) == out
    bpe = ByteLevelBPE.train("abababcabab", 256 + 2, special_tokens=())
    assert bpe.merges == [("a", "b"), ("ab", "ab")]


# ------------------------------------------------------------------------------------- kit pieces of the lesson
def test_bits_per_byte_formula_matches_the_total_code_length():
    """bits/byte = L̄ · N_tokens / (N_bytes ln 2): the total −log₂ p of the tokens spread over the bytes."""
    rng = np.random.default_rng(0)
    n_tokens, n_bytes = 700, 1_000
    p = rng.uniform(0.01, 0.9, n_tokens)              # probability the model gave each true next token
    total_bits = float(-np.log2(p).sum())
    mean_nats = float(-np.log(p).mean())
    assert bits_per_byte(mean_nats, n_tokens / n_bytes) == pytest.approx(total_bits / n_bytes, rel=1e-12)
    assert bits_per_byte(math.log(256), 1.0) == pytest.approx(8.0)  # a uniform guess over bytes: 8 bits
    assert L._bits_per_byte(mean_nats, n_tokens, n_bytes) == pytest.approx(total_bits / n_bytes, rel=1e-12)


def test_truncate_is_training_with_a_smaller_vocabulary():
    text = _text(40_000)
    big = ByteLevelBPE.train(text, 500)
    for V in (257, 300, 420):
        small, direct = truncate(big, V), ByteLevelBPE.train(text, V)
        assert small.merges == direct.merges and small.vocab == direct.vocab and small.special == direct.special
        assert small.encode(text[:3000]) == direct.encode(text[:3000])
    with pytest.raises(ValueError, match="vocab_size must be between 257 and 500"):
        truncate(big, 600)


def test_round_trip_and_tokenizers_parity_helpers(tmp_path):
    bpe = ByteLevelBPE.train(_text(40_000) + "你好，世界！" * 3, 400)
    folder = bpe.save(tmp_path)
    assert roundtrip_ok(bpe) and roundtrip_ok(bpe, [_text(5_000)])
    assert matches_tokenizers(bpe, folder) and matches_tokenizers(bpe, folder, [_text(5_000)])
    assert any("你" in t for t in MIXED_UNICODE) and any("<|endoftext|>" in t for t in MIXED_UNICODE)
    other = truncate(bpe, 300)        # a different tokenizer must not "match" the saved files
    assert not matches_tokenizers(other, folder, [_text(5_000)])


def test_split_encode_counts_tokens_per_byte_on_the_same_bytes():
    text = _text(30_000) + " café 你好"
    bpe = ByteLevelBPE.train(text, 400)
    train, val = text[:27_000], text[27_000:]
    a, b = split_encode(truncate(bpe, 257), train, val), split_encode(bpe, train, val)
    assert a.val_bytes == b.val_bytes == len(val.encode()) and a.tokens_per_byte == 1.0
    assert b.tokens_per_byte < 0.7
    assert bpe.decode(b.val_ids.tolist()) == val and bpe.decode(b.train_ids.tolist()) == train


def test_merge_table_shows_spaces_and_newlines():
    bpe = ByteLevelBPE.train("the the the\nthe\nthen", 260, special_tokens=())
    rows = merge_table(bpe, 3)
    assert [r[0] for r in rows] == [0, 1, 2]
    assert all(ab == a + b for _, a, b, ab in rows)
    assert any("␣" in r[3] for r in merge_table(bpe, 4)) or any("⏎" in r[1] for r in merge_table(bpe, 4))


def test_transformers_parity_helper(tmp_path):
    pytest.importorskip("transformers")
    from kit.models.gpt import GPT, GPTConfig
    from kit.models.gpt2_parity import transformers_max_abs_diff
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=32, bias=True, activation="gelu_tanh"))
    m.save_pretrained(tmp_path)
    idx = torch.randint(0, 50, (2, 16))
    assert transformers_max_abs_diff(tmp_path, GPT.from_pretrained(tmp_path), idx) <= 1e-5
    with torch.no_grad():
        m.blocks[0].mlp.c_fc.weight.add_(0.5 * torch.randn_like(m.blocks[0].mlp.c_fc.weight))  # a different model
    assert transformers_max_abs_diff(tmp_path, m, idx) > 1e-3
    with pytest.raises(FileNotFoundError):
        transformers_max_abs_diff(tmp_path / "nope", m, idx)


def test_tradeoff_figures():
    from kit.viz.tokenization import bpb_vs_seconds, vocab_tradeoff
    rows = [{"vocab": 257, "tokens_per_byte": 1.0, "bits_per_byte": 3.0},
            {"vocab": 1024, "tokens_per_byte": 0.4, "bits_per_byte": 2.5}]
    fig = vocab_tradeoff(rows)
    assert list(fig.data[0].y) == [1.0, 0.4] and list(fig.data[1].y) == [3.0, 2.5]
    fig = bpb_vs_seconds({"vocabulary 257": {"seconds": [0, 10], "bits_per_byte": [8, 3]}})
    assert list(fig.data[0].x) == [0, 10]
