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
