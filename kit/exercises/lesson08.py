"""Lesson 08 exercises: attention's parameters, position codes, causal attention, attention with padding."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kit.exercises import Case, function, randn as _t
from kit.exercises.declare import Budget, Headline, LessonEntry


# ------------------------------------------------------------------ 08.1 parameters of multi-head attention
def _mha_params(d, n_head):
    return 4 * (d * d + d)


def _mha_cases(rng):
    h = int(rng.integers(2, 9))
    d = h * int(rng.integers(2, 17))
    yield Case(f"d = {d}, {h} heads", (d, h))
    yield Case("d = 64, 4 heads (this lesson's default)", (64, 4))
    yield Case("one head (d = 32)", (32, 1))
    yield Case("d = 768, 12 heads (BERT-base, GPT-2)", (768, 12))
    yield Case("as many heads as dimensions (d = 8, 8 heads)", (8, 8))


function("08.1", "the number of parameters of multi-head attention (with biases) as a function of d and n_head",
         reference=_mha_params, cases=_mha_cases, atol=0, rtol=0,
         hints=("List the projections: queries, keys, values, and the output mixing W_O. Each is a linear layer "
                "from d to d with a bias.",
                "Splitting d into n_head heads cuts each projection's output into slices. Does slicing create new "
                "weights? Check your formula with n_params(MultiHeadAttention(d, n_head))."))


# ------------------------------------------------------------------ 08.2 sinusoidal codes, halves layout
def _sincos_ref(T, d):
    pos = torch.arange(T, dtype=torch.float64)[:, None]
    freq = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    return torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=1)


def _sincos_cases(rng):
    T, d = int(rng.integers(5, 60)), 2 * int(rng.integers(2, 17))
    yield Case(f"T = {T} positions, d = {d}", (T, d))
    yield Case("one position (T = 1)", (1, 8))
    yield Case("d = 2 (one frequency)", (7, 2))
    yield Case("long: T = 500, d = 16", (500, 16))


function("08.2", "sinusoidal position codes, sines in the first half of the dimensions and cosines in the second",
         reference=_sincos_ref, cases=_sincos_cases, atol=1e-4, rtol=0,
         hints=("Make a column of positions (T, 1) and a row of d/2 frequencies; their product is a (T, d/2) "
                "table of angles.",
                "The frequencies fall geometrically from 1 (the first dimension pair) towards 1/10000; the exponent "
                "steps by 2/d. Put sin of the angles first, cos after (torch.cat along the last axis)."))


# ------------------------------------------------------------------ 08.3 causal attention
def _causal_ref(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def _causal_cases(rng):
    B, H, T, d = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(3, 12)), int(rng.integers(2, 17))
    yield Case(f"batch {B}, {H} heads, T = {T}, d = {d}", (_t(rng, B, H, T, d), _t(rng, B, H, T, d), _t(rng, B, H, T, d)))
    yield Case("no batch axes: (T, d) = (6, 4)", (_t(rng, 6, 4), _t(rng, 6, 4), _t(rng, 6, 4)))
    yield Case("sequence length 1", (_t(rng, 2, 1, 8), _t(rng, 2, 1, 8), _t(rng, 2, 1, 8)))
    yield Case("values wider than keys (d = 4, d_v = 10)", (_t(rng, 2, 5, 4), _t(rng, 2, 5, 4), _t(rng, 2, 5, 10)))
    yield Case("extreme logits (scores in the thousands)",
               (_t(rng, 2, 7, 8, scale=30), _t(rng, 2, 7, 8, scale=30), _t(rng, 2, 7, 8)))


function("08.3", "causal scaled dot-product attention softmax(QKᵀ/√d + causal mask) V",
         reference=_causal_ref, cases=_causal_cases, atol=1e-8,
         hints=("Scores first: every query against every key, divided by the square root of the key dimension.",
                "Query i may see keys 0..i: hide the others by setting their scores to −inf before the softmax "
                "(torch.tril or torch.triu builds the pattern; mind the diagonal).",
                "The softmax must survive scores of thousands: use torch.softmax (it subtracts the row maximum), "
                "not exp(s) / sum(exp(s))."))


# ------------------------------------------------------------------ 08.4 attention with padding
def _padded_ref(q, k, v, lengths):
    T, S = q.shape[-2], k.shape[-2]
    key_ok = torch.arange(S)[None, :] < lengths[:, None]                    # (B, S)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~key_ok[:, None, :], float("-inf"))
    out = torch.softmax(scores, -1) @ v
    q_ok = torch.arange(T)[None, :] < lengths[:, None]                      # (B, T)
    return out * q_ok[..., None].to(out.dtype)


def _padded_cases(rng):
    B, T, d = int(rng.integers(3, 7)), int(rng.integers(4, 12)), int(rng.integers(2, 12))
    lengths = torch.tensor(rng.integers(1, T + 1, B))
    lengths[0], lengths[-1] = T, int(rng.integers(1, T))   # one full sentence and at least one padded one
    yield Case(f"batch {B}, T = {T}, lengths {lengths.tolist()}",
               (_t(rng, B, T, d), _t(rng, B, T, d), _t(rng, B, T, d), lengths))
    yield Case("no padding (every length = T)", (_t(rng, 2, 5, 4), _t(rng, 2, 5, 4), _t(rng, 2, 5, 4),
                                                 torch.tensor([5, 5])))
    yield Case("a sentence of one token", (_t(rng, 2, 6, 4), _t(rng, 2, 6, 4), _t(rng, 2, 6, 4), torch.tensor([1, 4])))
    yield Case("extreme logits at the padding", (_t(rng, 2, 6, 4), _t(rng, 2, 6, 4, scale=40), _t(rng, 2, 6, 4),
                                                 torch.tensor([3, 2])))


function("08.4", "attention over padded sentences: padding keys hidden, outputs at padding positions zero",
         reference=_padded_ref, cases=_padded_cases, atol=1e-8,
         hints=("Build a boolean (B, S) table from the lengths: is key j a real token of sentence b?",
                "Hide padding keys with −inf scores (a mask of shape (B, 1, S) broadcasts over the queries); "
                "padding *queries* still get a row, which you then multiply by 0.",
                "Check the off-by-one: a sentence of length L has real tokens at positions 0 … L−1."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    # smoke run (2 epochs of a 1-layer encoder, sentences cut at 32 tokens: test accuracy ≈ 0.68 against chance 0.25,
    # an untrained encoder stays near chance): clearly above chance; the baseline works;
    # the written-out attention equals PyTorch's fused kernel; position codes are not drowned by the
    # token vectors at initialisation (≈ 0.7 for both kinds; at d = 64 it was 0.09 sinusoidal / 0.0025 learned before the scale fix)
    return (m["test_acc"] > m["chance"] + 0.2 and m["val_acc"] > m["chance"] + 0.2
            and m["bow_test_acc"] > m["chance"] + 0.3
            and m["attn_diff_float64"] < 1e-6 and m["attn_diff_float32"] < 1e-5 and m["mha_diff"] < 1e-10
            and 0.5 < m["init_ratio_sinusoidal"] < 1.0 and 0.5 < m["init_ratio_learned"] < 1.0)


LESSON = LessonEntry(
    number='08', name='transformer', title='Attention and the Transformer',
    goal='Attention written out and checked against PyTorch; a Transformer classifier vs bag-of-words.',
    teaches='attention written out and **checked against `F.scaled_dot_product_attention`** (with and without a '
            'causal mask); multi-head attention, sinusoidal vs learned positions at comparable scale to the token '
            'embeddings (measured); a Transformer-encoder sentence classifier vs a bag-of-words logistic regression; '
            'attention-map explorer (sentence, layer, head)',
    data='TREC question types when online; real documentation sentences labelled by source (Python / NumPy / '
         'scikit-learn / PyTorch)',
    metrics=(
        Headline('test_acc', 'Transformer test accuracy', 'chance+0.2', unit='%'),
        Headline('bow_test_acc', 'bag-of-words test accuracy', None, unit='%'),
        Headline('attn_diff_float32', 'attention vs F.scaled_dot_product_attention', 1e-05, 'lower'),
    ),
    smoke_bar=smoke_bar,
    figure='test accuracy',
    budget=Budget(smoke_s=40),  # a smoke run took 21 s on a quiet 2-core machine
)
