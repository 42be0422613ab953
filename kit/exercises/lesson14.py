"""Lesson 14 exercises: the matrix-factorization prediction, the BPR loss computed stably, NDCG@k."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from kit.exercises import Case, function, randn as _t
from kit.exercises.declare import Budget, Headline, LessonEntry


# ------------------------------------------------------------------ 14.1 r̂ = μ + b_u + b_i + p_u·q_i

def _mf_predict(mu, b_u, b_i, P, Q, users, items):
    return mu + b_u[users] + b_i[items] + (P[users] * Q[items]).sum(-1)


def _mf_cases(rng):
    nu, ni, k = int(rng.integers(3, 30)), int(rng.integers(3, 40)), int(rng.integers(1, 9))
    n = int(rng.integers(5, 60))
    mu = float(rng.uniform(2.5, 4.0))
    yield Case(f"{nu} users × {ni} items, k = {k}, {n} pairs",
               (mu, _t(rng, nu, scale=0.4), _t(rng, ni, scale=0.5), _t(rng, nu, k), _t(rng, ni, k),
                torch.tensor(rng.integers(0, nu, n)), torch.tensor(rng.integers(0, ni, n))))
    yield Case("one pair", (3.5, _t(rng, 4), _t(rng, 5), _t(rng, 4, 2), _t(rng, 5, 2), torch.tensor([2]), torch.tensor([4])))
    yield Case("the same user with several items (repeated indices)",
               (mu, _t(rng, 3), _t(rng, 6), _t(rng, 3, 4), _t(rng, 6, 4), torch.tensor([1, 1, 1, 1]),
                torch.tensor([0, 5, 2, 5])))
    yield Case("more users than items, k = 1", (mu, _t(rng, 9), _t(rng, 2), _t(rng, 9, 1), _t(rng, 2, 1),
                                                torch.tensor([8, 0, 3]), torch.tensor([1, 1, 0])))
    yield Case("k = 0 (the biases-only model)", (mu, _t(rng, 3), _t(rng, 3), torch.zeros(3, 0, dtype=torch.float64),
                                                 torch.zeros(3, 0, dtype=torch.float64), torch.tensor([0, 2]),
                                                 torch.tensor([1, 2])))


function("14.1", "matrix factorization's predicted ratings μ + b_u + b_i + p_u·q_i for (user, item) pairs",
         reference=_mf_predict, cases=_mf_cases, atol=1e-9,
         hints=("Look up the rows you need first: each pair n uses user users[n]'s bias and factor vector and item "
                "items[n]'s bias and factor vector.",
                "P[users] and Q[items] are both (N, k): you want one dot product per row, not the (N, N) matrix "
                "P[users] @ Q[items].T.",
                "The result has one number per pair, shape (N,); check the case k = 0, where the dot product is 0."))


# ------------------------------------------------------------------ 14.2 the BPR loss

def _bpr(pos, neg):
    return F.softplus(neg - pos).mean()


def _bpr_cases(rng):
    n = int(rng.integers(5, 200))
    yield Case(f"{n} random score pairs", (_t(rng, n, scale=2), _t(rng, n, scale=2)))
    yield Case("positives far above their negatives (difference +1000)",
               (torch.tensor([1000.0, 500.0, 3.0], dtype=torch.float64), torch.tensor([0.0, -500.0, 2.0], dtype=torch.float64)))
    yield Case("negatives far above their positives (difference −1000)",
               (torch.tensor([-500.0, 0.0], dtype=torch.float64), torch.tensor([500.0, 1.0], dtype=torch.float64)))
    yield Case("equal scores (loss log 2)", (torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)))
    yield Case("a single pair", (_t(rng, 1), _t(rng, 1)))


function("14.2", "the BPR loss mean −log σ(x_ui − x_uj), finite and exact for large differences",
         reference=_bpr, cases=_bpr_cases, atol=1e-9, rtol=1e-9,
         hints=("The loss asks each positive to outrank its negative: it depends only on the difference "
                "x_ui − x_uj, and it is a mean over the pairs.",
                "log(σ(d)) underflows to log(0) = −inf when d is −1000. Write −log σ(d) with a function that never "
                "takes the log of 0 (lesson 02 met the same problem: F.logsigmoid, F.softplus).",
                "Mind the sign: a pair whose positive is far above its negative costs almost nothing."))


# ------------------------------------------------------------------ 14.3 NDCG@k

def _ndcg(relevance, k):
    rel = np.asarray(relevance, dtype=float)
    disc = 1.0 / np.log2(np.arange(2, len(rel) + 2))
    dcg = float((rel[:k] * disc[:k]).sum())
    ideal = float((np.sort(rel)[::-1][:k] * disc[:k]).sum())
    return dcg / ideal if ideal > 0 else 0.0


def _ndcg_cases(rng):
    n = int(rng.integers(5, 30))
    k = int(rng.integers(2, n))
    binary, graded = rng.integers(0, 2, n).astype(float), rng.integers(0, 6, n).astype(float)
    binary[rng.integers(n)] = graded[rng.integers(n)] = 1.0  # at least one relevant item: "none" is its own case
    yield Case(f"binary relevance, a list of {n}, k = {k}", (binary, k))
    yield Case(f"graded relevance (0–5), a list of {n}, k = {k}", (graded, k))
    yield Case("relevant items beyond the cut-off k count in the ideal order",
               (np.array([0.0, 0.0, 1.0, 0.0, 1.0, 1.0]), 3))
    yield Case("no relevant item in the list: 0", (np.zeros(7), 5))
    yield Case("k larger than the list", (np.array([1.0, 0.0, 2.0]), 10))
    yield Case("k = 1", (rng.integers(0, 3, 6).astype(float), 1))
    yield Case("already in ideal order: 1", (np.array([3.0, 2.0, 2.0, 1.0, 0.0]), 4))


function("14.3", "NDCG@k of a ranked list of relevance grades",
         reference=_ndcg, cases=_ndcg_cases, atol=1e-10,
         hints=("DCG adds each item's relevance discounted by its position: the item at rank 1 counts fully, the "
                "one at rank i is divided by log₂(i + 1). Only the first k positions count.",
                "The ideal DCG is the DCG of the same grades sorted from high to low — sort the whole list, not just "
                "its first k entries, then keep the top k.",
                "When every grade is 0 the ideal DCG is 0: return 0.0 instead of dividing by it."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    ok = (m["rmse_mf"] < m["rmse_biases"] < m["rmse_global_mean"]  # each part of the model earns its place
          and m["rmse_mf"] <= m["rmse_mf_no_l2"]                     # L2 helps
          and m["bpr_ndcg_at_10"] > m["pop_ndcg_at_10"] and m["bpr_precision_at_10"] > m["pop_precision_at_10"]
          and 0 < m["ndcg_explicit"] <= 1
          # the random-order baselines: what NDCG is worth by chance (graded relevance: far above 0)
          and m["ndcg_explicit"] > m["ndcg_explicit_biases"] > m["ndcg_explicit_random"] > 0
          and m["bpr_ndcg_at_10"] > m["pop_ndcg_at_10"] > m["random_ndcg_at_10"]
          # k is chosen on validation and used: the chosen model's test RMSE is reported
          and m[f"k_sweep_val_rmse_{m['chosen_k']}"] == min(v for k, v in m.items() if k.startswith("k_sweep_val_rmse_"))
          and m["rmse_mf_chosen_k"] < m["rmse_biases"])
    if m["synthetic"]:  # offline: the true factors are known and must be recovered
        ok = ok and (m["recovery_corr_truth_test"] > 0.85 and m["recovery_corr_truth_unobserved"] > 0.6
                     and m["rmse_mf"] < 1.5 * m["recovery_noise_sigma"] and m["recovery_corr_item_bias"] > 0.8)
    return ok


LESSON = LessonEntry(
    number='14', name='recommender', title='Recommender systems',
    goal='Matrix factorization and BPR against biases, popularity and random baselines.',
    teaches='matrix factorization with user/item biases and L2 (RMSE vs global mean and biases-only; choosing k), '
            'recovery of known true factors (correlation with noise-free ratings, subspace angles); BPR for implicit '
            'feedback vs popularity, scored by precision@k, recall@k and NDCG@k (`sklearn.metrics.ndcg_score`), each '
            'against a random-order baseline; k chosen on validation and used',
    data='MovieLens ml-latest-small when online (sha256-checked); synthetic low-rank ratings with known true factors',
    metrics=(
        Headline('rmse_mf', 'test RMSE, matrix factorization', 'rmse_biases', 'lower'),
        Headline('bpr_ndcg_at_10', 'BPR NDCG@10', 'pop_ndcg_at_10'),
    ),
    smoke_bar=smoke_bar,
    budget=Budget(smoke_s=40),  # a smoke run took 23 s on a quiet 2-core machine
)
