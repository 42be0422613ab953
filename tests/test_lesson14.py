"""Lesson 14: the exercises reject plausible mistakes; the random-order NDCG baseline and choosing k."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import ndcg_score

from kit.exercises import verdict
from kit.models import mf


# ------------------------------------------------------------------ right answers (reference style)
def mf_predict(mu, b_u, b_i, P, Q, users, items):
    return mu + b_u[users] + b_i[items] + (P[users] * Q[items]).sum(1)


def bpr_loss(pos, neg):
    return -F.logsigmoid(pos - neg).mean()


def ndcg_at_k(rel, k):
    rel = np.asarray(rel, float)
    dcg = lambda v: float(np.sum(v[:k] / np.log2(np.arange(2, len(v[:k]) + 2))))  # noqa: E731
    ideal = dcg(np.sort(rel)[::-1])
    return dcg(rel) / ideal if ideal > 0 else 0.0


@pytest.mark.parametrize("ex,fn", [("14.1", mf_predict), ("14.2", bpr_loss), ("14.3", ndcg_at_k)])
def test_right_answers_pass_on_fresh_inputs(ex, fn):
    for _ in range(5):
        assert verdict(ex, fn) is None


def test_mf_predict_wrong_answers():
    no_bias = lambda mu, bu, bi, P, Q, u, i: mu + (P[u] * Q[i]).sum(1)  # noqa: E731
    assert "on the case '" in verdict("14.1", no_bias)
    matrix = lambda mu, bu, bi, P, Q, u, i: mu + bu[u] + bi[i] + P[u] @ Q[i].T  # noqa: E731 - (N, N), not (N,)
    assert "on the case '" in verdict("14.1", matrix)
    swapped = lambda mu, bu, bi, P, Q, u, i: mu + bu[i % len(bu)] + bi[u % len(bi)] + (P[u] * Q[i]).sum(1)  # noqa: E731
    assert "on the case '" in verdict("14.1", swapped)


def test_bpr_loss_wrong_answers():
    naive = lambda p, n: -torch.log(torch.sigmoid(p - n)).mean()  # noqa: E731 - log(0) at −1000
    why = verdict("14.2", naive)
    assert "difference −1000" in why
    sign = lambda p, n: -F.logsigmoid(n - p).mean()  # noqa: E731
    assert "on the case '" in verdict("14.2", sign)
    summed = lambda p, n: -F.logsigmoid(p - n).sum()  # noqa: E731
    assert "on the case '" in verdict("14.2", summed)


def test_ndcg_wrong_answers():
    def ideal_of_top_k(rel, k):  # sorts only the first k: misses relevant items below the cut-off
        rel = np.asarray(rel, float)
        return ndcg_at_k(rel[:k], k) if rel[:k].any() else 0.0
    assert "on the case '" in verdict("14.3", ideal_of_top_k)

    def nan_when_empty(rel, k):
        rel = np.asarray(rel, float)
        d = lambda v: float(np.sum(v[:k] / np.log2(np.arange(2, len(v[:k]) + 2))))  # noqa: E731
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.float64(d(rel)) / np.float64(d(np.sort(rel)[::-1]))
    assert "no relevant item" in verdict("14.3", nan_when_empty)

    def log_i(rel, k):  # discount log2(i) instead of log2(i + 1): rank 1 divides by 0
        rel = np.asarray(rel, float)
        d = lambda v: float(np.sum(v[:k][1:] / np.log2(np.arange(2, len(v[:k]) + 1))) + v[0])  # noqa: E731
        ideal = d(np.sort(rel)[::-1])
        return d(rel) / ideal if ideal > 0 else 0.0
    assert "on the case '" in verdict("14.3", log_i)


def test_ndcg_reference_matches_sklearn():
    rng = np.random.default_rng(0)
    import kit.exercises.lesson14 as L
    for _ in range(20):
        rel = rng.integers(0, 4, 12).astype(float)
        if not rel.any():
            continue
        k = int(rng.integers(1, 12))
        assert L._ndcg(rel, k) == pytest.approx(ndcg_score([rel], [np.arange(12)[::-1]], k=k))


# ------------------------------------------------------------------ teaching fixes, with numbers
def test_random_order_ndcg_is_the_chance_level_and_well_above_zero_for_graded_relevance():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(200), 8)
    true = rng.integers(1, 6, len(users)).astype(float)  # star ratings as graded relevance
    rand = np.mean([mf.per_user_ndcg(users, true, rng.random(len(users)), k=5) for _ in range(5)])
    perfect = mf.per_user_ndcg(users, true, true, k=5)
    assert perfect == pytest.approx(1.0) and 0.6 < rand < 0.95  # random order is far from 0 here
    # binary relevance over a large catalogue: random NDCG@k is small; a useful score beats it by a lot
    n_users, n_items, k = 100, 300, 10
    test_pos = [rng.choice(n_items, 5, replace=False) for _ in range(n_users)]
    train_pos = [np.setdiff1d(rng.choice(n_items, 10, replace=False), t) for t in test_pos]
    random_ndcg = mf.ranking_metrics(rng.random((n_users, n_items)), train_pos, test_pos, k)[f"ndcg@{k}"]
    oracle = np.zeros((n_users, n_items))
    for u, t in enumerate(test_pos):
        oracle[u, t] = 1.0
    assert random_ndcg < 0.1 < 0.99 < mf.ranking_metrics(oracle, train_pos, test_pos, k)[f"ndcg@{k}"]


def test_choose_k_on_validation_picks_the_true_rank_region():
    """The lesson picks k by validation RMSE and reports that model's test RMSE; on tiny data with true rank 2,
    too few factors lose clearly on validation."""
    from kit.data.ratings import synthetic_ratings
    from kit.train import fit
    torch.set_num_threads(1)
    r = synthetic_ratings(n_users=100, n_items=60, rank=2, per_user=25, noise=0.3, seed=1)
    idx = np.random.default_rng(0).permutation(len(r))
    tr, va = idx[: int(0.85 * len(r))], idx[int(0.85 * len(r)):]
    UI = torch.tensor(np.stack([r.users, r.items], 1))
    R = torch.tensor(r.ratings)
    val = {}
    for k in (0, 2):
        torch.manual_seed(0)
        m = mf.MatrixFactorization(r.n_users, r.n_items, k=k, mu=R[tr].mean().item(), l2=0.02)
        h = fit(m, (UI[tr], R[tr]), (UI[va], R[va]), loss_fn=None, optimizer="adam", lr=0.03, epochs=8,
                batch_size=128, device="cpu", seed=0, progress=False)
        val[k] = mf.val_rmse(h)[-1]
    assert min(val, key=val.get) == 2 and val[2] < val[0] - 0.05
