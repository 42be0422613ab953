"""Lesson 09 exercises: GPT — sampling (temperature, per-request top-k and top-p), the parameter count, and one
attention step with a KV cache.

Top-k and top-p take **one setting per row** (a server batches requests that each bring their own ``k`` or ``p``):
kit's sampler (``kit.text.filter_logits``) applies one setting to a whole batch, so it is not one call away from an
answer. Both follow the sampler's rule for ties: tokens of equal probability are kept or dropped together.
"""
from __future__ import annotations

import math

import torch

from kit.exercises import Case, function, randn
from kit.exercises.declare import Budget, Headline, LessonEntry


def _probs(rng, *shape, concentration=0.5):
    """Random next-token distributions (rows of a Dirichlet draw), float64, no exact zeros or ties."""
    p = rng.dirichlet(concentration * torch.ones(shape[-1]).numpy(), size=shape[:-1] or None)
    p = p + rng.uniform(1e-6, 2e-6, size=p.shape)
    return torch.tensor(p / p.sum(-1, keepdims=True), dtype=torch.float64)


def _rows(*rows):
    return torch.tensor(rows, dtype=torch.float64)


# ------------------------------------------------------------------ 09.1 temperature
def _temperature(logits, temperature):
    return torch.softmax(logits / temperature, dim=-1)


def _temperature_cases(rng):
    V = int(rng.integers(5, 70))
    z = torch.tensor(rng.normal(size=V) * 2, dtype=torch.float64)
    yield Case(f"{V} random logits, τ = 0.7", (z, 0.7))
    yield Case("τ = 1 (plain softmax)", (z, 1.0))
    yield Case("τ = 2.5 (flatter)", (z, 2.5))
    yield Case("a batch of 4 rows, τ = 0.5", (torch.tensor(rng.normal(size=(4, 9)), dtype=torch.float64), 0.5))
    yield Case("huge logits (±300), τ = 0.1", (torch.tensor([300.0, -300.0, 299.0, 0.0], dtype=torch.float64), 0.1))


function("09.1", "next-token probabilities at temperature τ",
         reference=_temperature, cases=_temperature_cases, atol=1e-9,
         hints=("Temperature acts on the logits, before they become probabilities.",
                "Divide, do not multiply: τ < 1 must make the distribution sharper.",
                "exp(300 / 0.1) overflows. Subtracting the same number from every logit of a row leaves its softmax "
                "unchanged — which number would keep every exponent at or below 0?"))


# ------------------------------------------------------------------ 09.2 top-k, one k per row
def _top_k(probs, k):
    k = torch.as_tensor(k, dtype=torch.long)
    kth = probs.sort(dim=-1, descending=True).values.gather(-1, (k - 1)[:, None])
    kept = torch.where(probs >= kth, probs, torch.zeros_like(probs))
    return kept / kept.sum(-1, keepdim=True)


def _top_k_cases(rng):
    V = int(rng.integers(8, 60))
    mid = int(rng.integers(2, V))
    ks = torch.tensor(rng.permutation([1, mid, V, int(rng.integers(2, V))]), dtype=torch.long)
    yield Case(f"4 rows of {V} random probabilities, k = {ks.tolist()}", (_probs(rng, 4, V), ks))
    yield Case("k = 1 in every row (greedy)", (_probs(rng, 3, V), torch.ones(3, dtype=torch.long)))
    yield Case("one row, k = V (nothing removed)", (_probs(rng, 1, V), torch.tensor([V])))
    yield Case("ties with the k-th: [0.4, 0.2, 0.2, 0.1, 0.1] with k = 2, [0.25] × 4 with k = 1",
               (_rows([0.4, 0.2, 0.2, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25, 0.0]), torch.tensor([2, 1])))


function("09.2", "top-k filtering with one k per row (renormalised)",
         reference=_top_k, cases=_top_k_cases, atol=1e-9,
         hints=("Each row has its own k: find the value of each row's k-th largest probability; what is below it goes.",
                "Sorted, a row's k-th largest sits at position k − 1 — a different column in each row. Which torch "
                "function picks one column per row?",
                "Check the last case by hand: tokens tied with the k-th largest stay, and each row's kept "
                "probabilities must add up to 1 again."))


# ------------------------------------------------------------------ 09.3 parameter count
def _n_params(vocab_size, block_size, n_layer, n_embd):
    from kit.models.gpt import GPT, GPTConfig
    cfg = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=1, n_embd=n_embd)
    return GPT(cfg).n_params(non_embedding=False)


def _n_params_cases(rng):
    yield Case("vocab 65, block 64, 2 layers, d = 64", (65, 64, 2, 64))
    v, t, L, d = int(rng.integers(10, 300)), int(rng.integers(4, 200)), int(rng.integers(1, 7)), int(rng.integers(2, 48))
    yield Case(f"vocab {v}, block {t}, {L} layer(s), d = {d}", (v, t, L, d))
    yield Case("one layer, d = 1", (5, 3, 1, 1))
    yield Case("no layers at all (embeddings and the final LayerNorm)", (100, 16, 0, 8))


function("09.3", "a GPT's parameter count from its configuration",
         reference=_n_params, cases=_n_params_cases, atol=0, rtol=0,
         hints=("Count per part: the token table, the position table, each block, the final LayerNorm. "
                "The output layer adds nothing (it is the token table, tied).",
                "A block: two LayerNorm gains of d each (no biases), attention with a d×3d and a d×d matrix, an MLP "
                "d×4d then 4d×d.",
                "Per block you should get a multiple of d² plus a multiple of d; the two tables give V·d and T·d; "
                "one more LayerNorm comes after the last block."))


# ------------------------------------------------------------------ 09.4 top-p, one p per row
def _top_p(probs, p):
    # token i is kept when the probability of the tokens strictly more likely than it is still below its row's p
    p = torch.as_tensor(p, dtype=probs.dtype)
    above = (probs[..., None, :] * (probs[..., None, :] > probs[..., :, None])).sum(-1)
    kept = torch.where(above < p[:, None], probs, torch.zeros_like(probs))
    return kept / kept.sum(-1, keepdim=True)


def _top_p_cases(rng):
    V = int(rng.integers(8, 60))
    ps = torch.tensor(rng.permutation([0.05, float(rng.uniform(0.3, 0.6)), float(rng.uniform(0.7, 0.95)), 1.0]),
                      dtype=torch.float64)
    yield Case(f"4 rows of {V} random probabilities, p = {[round(x, 3) for x in ps.tolist()]}", (_probs(rng, 4, V), ps))
    yield Case("p = 1 in every row (nothing removed)", (_probs(rng, 2, V), torch.ones(2, dtype=torch.float64)))
    yield Case("one dominant token (0.97), p = 0.9", (_rows([0.01, 0.97, 0.01, 0.01]), torch.tensor([0.9])))
    yield Case("tiny p = 0.01 (only the most likely token)", (_probs(rng, 3, V), torch.full((3,), 0.01)))
    yield Case("ties: [0.4, 0.2, 0.2, 0.2] with p = 0.5, [0.3, 0.3, 0.2, 0.2] with p = 0.2",
               (_rows([0.4, 0.2, 0.2, 0.2], [0.3, 0.3, 0.2, 0.2]), torch.tensor([0.5, 0.2], dtype=torch.float64)))


function("09.4", "top-p (nucleus) filtering with one p per row (renormalised)",
         reference=_top_p, cases=_top_p_cases, atol=1e-9,
         hints=("Walk down a row from the most to the least likely token, adding up probability: a token stays while "
                "the mass of the tokens before it is still below that row's p.",
                "So the token that crosses p stays and the most likely token always stays. Each row has its own p: "
                "check that your comparison broadcasts row by row.",
                "With ties, 'the tokens before it' depends on how a sort orders equal values. What quantity, for one "
                "token, does not depend on any ordering?"))


# ------------------------------------------------------------------ 09.5 attention with a KV cache
def _attend_with_cache(q, k_new, v_new, k_cache, v_cache):
    k = torch.cat([k_cache, k_new], dim=-2)
    v = torch.cat([v_cache, v_new], dim=-2)
    P, T = k_cache.shape[-2], q.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    visible = torch.ones(T, P + T, dtype=torch.bool, device=q.device).tril(diagonal=P)  # new query i: position P + i
    scores = scores.masked_fill(~visible, float("-inf"))
    return scores.softmax(-1) @ v, k, v


def _cache_case(rng, B, H, P, T, hs):
    q, k, v = (randn(rng, B, H, T, hs) for _ in range(3))
    kc, vc = randn(rng, B, H, P, hs), randn(rng, B, H, P, hs)
    return q, k, v, kc, vc


def _attend_cases(rng):
    T = int(rng.integers(3, 7))
    yield Case(f"an empty cache, a prompt of {T} tokens (plain causal attention)", _cache_case(rng, 1, 2, 0, T, 4))
    P = int(rng.integers(3, 10))
    yield Case(f"one new token after {P} cached ones (a generation step)", _cache_case(rng, 1, 2, P, 1, 4))
    P = int(rng.integers(2, 8))
    yield Case(f"3 new tokens after {P} cached ones", _cache_case(rng, 1, 2, P, 3, 4))
    P, T = int(rng.integers(1, 6)), int(rng.integers(2, 5))
    yield Case(f"a batch of 2, 3 heads of size 16, {T} new tokens after {P} cached ones",
               _cache_case(rng, 2, 3, P, T, 16))


function("09.5", "one attention step with a KV cache (output and grown cache)",
         reference=_attend_with_cache, cases=_attend_cases, atol=1e-9,
         hints=("The new tokens' keys and values go after the cached ones; the new queries look at that whole "
                "sequence.",
                "Number the positions: the cached tokens are 0 … P − 1, new token i is P + i. Which keys may the "
                "query of new token i see?",
                "Test the two ends yourself: with an empty cache you must get full causal attention; with one new "
                "token, nothing is hidden from it."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    # smoke run: 60 steps of a 2-layer model — well below the unigram loss (≈3.3 nats/char on real text),
    # KV-cache generation identical to full recomputation, no information flowing from the future
    return (m["val_loss"] < m["unigram_val_loss"] - 0.2 and m["val_loss"] < 3.0
            and m["kv_cache_same_greedy"] is True and m["kv_cache_same_sampled"] is True
            and m["causal_leak"] < 1e-4 and m["n_params"] > 50_000)


LESSON = LessonEntry(
    number='09', name='gpt', title='A GPT from scratch',
    goal='A nanoGPT-style GPT on tiny-shakespeare for a time budget, sampled with a KV cache.',
    teaches='a decoder-only GPT in nanoGPT style (`kit.models.gpt`: config dataclass, pre-LN blocks, '
            '`F.scaled_dot_product_attention`, weight tying), characters vs byte-level BPE (vocabulary, tokens per '
            'character), char-level pretraining with Muon + AdamW, warm-up + cosine, bf16 and optional '
            '`torch.compile` on GPU, for a time budget; validation loss vs training seconds; sampling with '
            "temperature, top-k, top-p (tied tokens kept or dropped together, one rule for kit's sampler and the "
            'exercises) and a **KV cache (same tokens as without it, tested)**; parameter count, tokens/s, MFU on '
            "GPU (attention's share of the FLOPs printed); exercises: temperature, top-k and top-p with one setting "
            'per request, the parameter count, one attention step with a KV cache. A time-budget run prints its '
            'tokens/s against the 56.9 k tokens/s the CPU bars assume and says when the machine delivered much less '
            '(saved in `timing`: `tokens_per_s`, `reference_tokens_per_s`). The default CPU preset (0.23 M '
            "parameters; Muon for the blocks' matrices, AdamW for the rest, 32 windows of 128 characters) reaches "
            'validation loss 1.66 after 60 s and 1.455 after 180 s of training on 2 CPU cores (median of 3 seeds, '
            'quiet machine; bars 1.70 / 1.47; the former AdamW preset: 1.76 / 1.53); a **speedrun** section shows '
            'the ablation and why each change helps; `preset="gpu"` for one GPU',
    data='tiny-shakespeare, shipped with kit (356 kB, xz; sha256 of the real file checked)',
    metrics=(
        Headline('val_loss', 'validation loss after 180 s (nats/char)', 1.47, 'lower'),
        Headline('val_loss_60s', 'validation loss after 60 s', 1.7, 'lower'),
        Headline('kv_cache_same_greedy', 'KV cache gives the same tokens', True),
    ),
    smoke_bar=smoke_bar,
    figure='loss against training time',
    budget=Budget(smoke_s=30),  # a smoke run took 15 s on a quiet 2-core machine
)
