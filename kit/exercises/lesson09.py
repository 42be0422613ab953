"""Lesson 09 exercises: GPT — sampling (temperature, top-k, top-p) and the parameter count."""
from __future__ import annotations

import torch

from kit.exercises import Case, function


def _probs(rng, *shape, concentration=0.5):
    """Random next-token distributions (rows of a Dirichlet draw), float64, no exact zeros or ties."""
    p = rng.dirichlet(concentration * torch.ones(shape[-1]).numpy(), size=shape[:-1] or None)
    p = p + rng.uniform(1e-6, 2e-6, size=p.shape)
    return torch.tensor(p / p.sum(-1, keepdims=True), dtype=torch.float64)


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
                "Normalise over the last dimension (the vocabulary) in a way that cannot overflow for logits "
                "in the hundreds (torch has a function for it)."))


# ------------------------------------------------------------------ 09.2 top-k
def _top_k(probs, k):
    kth = torch.topk(probs, min(int(k), probs.shape[-1]), dim=-1).values[..., -1:]
    kept = torch.where(probs >= kth, probs, torch.zeros_like(probs))
    return kept / kept.sum(-1, keepdim=True)


def _top_k_cases(rng):
    V = int(rng.integers(8, 60))
    p = _probs(rng, V)
    yield Case(f"{V} random probabilities, k = 3", (p, 3))
    yield Case("k = 1 (greedy)", (p, 1))
    yield Case("k = V (nothing removed)", (p, V))
    yield Case("a batch of 3 rows, k = 4", (_probs(rng, 3, 10), 4))
    yield Case("ties with the k-th: [0.4, 0.2, 0.2, 0.1, 0.1], k = 2",
               (torch.tensor([0.4, 0.2, 0.2, 0.1, 0.1], dtype=torch.float64), 2))


function("09.2", "top-k filtering of a next-token distribution (renormalised)",
         reference=_top_k, cases=_top_k_cases, atol=1e-9,
         hints=("Find the k-th largest probability of each row; everything below it goes.",
                "torch.topk gives the k largest values per row; compare every probability with the smallest of "
                "them (keep its last dimension so it broadcasts), so tokens tied with it stay.",
                "The kept probabilities must sum to 1 again: divide by their row sum."))


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


# ------------------------------------------------------------------ 09.4 top-p
def _top_p(probs, p):
    # token i is kept when the probability of the tokens strictly more likely than it is still below p
    above = (probs[..., None, :] * (probs[..., None, :] > probs[..., :, None])).sum(-1)
    kept = torch.where(above < p, probs, torch.zeros_like(probs))
    return kept / kept.sum(-1, keepdim=True)


def _top_p_cases(rng):
    V = int(rng.integers(8, 60))
    p = _probs(rng, V)
    yield Case(f"{V} random probabilities, p = 0.7", (p, 0.7))
    yield Case("p = 1 (nothing removed)", (p, 1.0))
    yield Case("a batch of 3 rows, p = 0.9", (_probs(rng, 3, 12), 0.9))
    yield Case("one dominant token (0.97), p = 0.9",
               (torch.tensor([0.01, 0.97, 0.01, 0.01], dtype=torch.float64), 0.9))
    yield Case("tiny p = 0.01 (only the most likely token)", (p, 0.01))
    yield Case("ties: [0.4, 0.2, 0.2, 0.2], p = 0.5",
               (torch.tensor([0.4, 0.2, 0.2, 0.2], dtype=torch.float64), 0.5))


function("09.4", "top-p (nucleus) filtering of a next-token distribution (renormalised)",
         reference=_top_p, cases=_top_p_cases, atol=1e-9,
         hints=("Sort each row from most to least likely and walk down it, adding up probability.",
                "A token stays if the mass of the tokens ranked above it is still below p — so the token that "
                "crosses p stays, and the most likely token always stays.",
                "Tied tokens must share one fate: for each token, sum the probabilities strictly greater than "
                "its own (no sorting needed), then renormalise the kept ones."))
