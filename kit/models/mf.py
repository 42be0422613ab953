"""Matrix factorization recommenders, trained with ``kit.train.fit``, and ranking metrics.

* :class:`MatrixFactorization` — explicit ratings: ``r̂_ui = μ + b_u + b_i + p_u·q_i``; input rows are
  ``(user, item)`` pairs; L2 regularization through :func:`l2_penalty` (Koren, Bell & Volinsky 2009).
* :class:`BPRMF` — implicit feedback, Bayesian personalized ranking (Rendle et al. 2009): input rows are
  ``(user, positive item, negative item)``; the loss ``−log σ(x_ui − x_uj)`` (:func:`bpr_loss`) asks that a
  user's items outrank the others. :func:`resample_negatives` draws fresh negatives every batch (a
  ``fit(augment=…)`` hook).
* :func:`ranking_metrics` — precision@k, recall@k and NDCG@k (``sklearn.metrics.ndcg_score``) of top-k lists
  with the user's training items excluded.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MatrixFactorization", "BPRMF", "bpr_loss", "resample_negatives", "rmse", "val_rmse",
           "ranking_metrics", "per_user_ndcg"]


class MatrixFactorization(nn.Module):
    """``forward(ui)`` with ``ui`` a ``(N, 2)`` long tensor of (user, item) → predicted ratings ``(N,)``;
    ``forward(ui, ratings)`` → ``{"loss", "mse"}``: the squared error plus, in training, ``l2`` times the
    batch's mean of ``‖p_u‖² + ‖q_i‖² + b_u² + b_i²`` (the per-rating L2 term of the classic MF
    objective), so ``fit(model, (ui, ratings), loss_fn=None)`` trains it.

    ``k=0`` gives the biases-only baseline. ``mu`` (the global mean) is a fixed buffer: set it to the
    training mean.
    """

    def __init__(self, n_users: int, n_items: int, k: int = 16, biases: bool = True, mu: float = 0.0,
                 init_std: float = 0.1, l2: float = 0.0):
        super().__init__()
        self.k, self.biases, self.l2 = k, biases, l2
        self.register_buffer("mu", torch.tensor(float(mu)))
        self.P = nn.Embedding(n_users, max(k, 1))
        self.Q = nn.Embedding(n_items, max(k, 1))
        nn.init.normal_(self.P.weight, 0, init_std)
        nn.init.normal_(self.Q.weight, 0, init_std)
        if k == 0:
            self.P.weight.requires_grad_(False)
            self.P.weight.data.zero_()
        self.bu = nn.Embedding(n_users, 1)
        self.bi = nn.Embedding(n_items, 1)
        nn.init.zeros_(self.bu.weight)
        nn.init.zeros_(self.bi.weight)
        if not biases:
            self.bu.weight.requires_grad_(False)
            self.bi.weight.requires_grad_(False)

    def forward(self, ui: torch.Tensor, ratings: torch.Tensor | None = None):
        u, i = ui[:, 0], ui[:, 1]
        p, q, bu, bi = self.P(u), self.Q(i), self.bu(u).squeeze(-1), self.bi(i).squeeze(-1)
        pred = self.mu + bu + bi + (p * q).sum(-1)
        if ratings is None:
            return pred
        mse = F.mse_loss(pred, ratings)
        loss = mse
        if self.training and self.l2:
            loss = mse + self.l2 * (p.pow(2).sum(-1) + q.pow(2).sum(-1) + bu.pow(2) + bi.pow(2)).mean()
        return {"loss": loss, "mse": mse}

    @torch.no_grad()
    def full_matrix(self) -> torch.Tensor:
        """Predicted ratings for every (user, item): ``(n_users, n_items)``."""
        return (self.mu + self.bu.weight + self.bi.weight.T + self.P.weight @ self.Q.weight.T)


class BPRMF(nn.Module):
    """Implicit-feedback MF: score ``x_ui = p_u·q_i + b_i``. ``forward(uij)`` for rows ``(user, positive
    item, negative item)`` → the BPR loss of :func:`bpr_loss` on ``x_ui − x_uj``, plus in training ``l2``
    times the batch's mean squared norm of the factors and biases used (``fit(model, (uij,), loss_fn=None)``)."""

    def __init__(self, n_users: int, n_items: int, k: int = 16, init_std: float = 0.1, l2: float = 0.0):
        super().__init__()
        self.l2 = l2
        self.P = nn.Embedding(n_users, k)
        self.Q = nn.Embedding(n_items, k)
        self.bi = nn.Embedding(n_items, 1)
        nn.init.normal_(self.P.weight, 0, init_std)
        nn.init.normal_(self.Q.weight, 0, init_std)
        nn.init.zeros_(self.bi.weight)

    def forward(self, uij: torch.Tensor) -> torch.Tensor:
        p, qi, qj = self.P(uij[:, 0]), self.Q(uij[:, 1]), self.Q(uij[:, 2])
        bi, bj = self.bi(uij[:, 1]).squeeze(-1), self.bi(uij[:, 2]).squeeze(-1)
        loss = bpr_loss((p * (qi - qj)).sum(-1) + bi - bj)
        if self.training and self.l2:
            loss = loss + self.l2 * (p.pow(2).sum(-1) + qi.pow(2).sum(-1) + qj.pow(2).sum(-1) + bi.pow(2)
                                     + bj.pow(2)).mean()
        return loss

    @torch.no_grad()
    def scores(self) -> torch.Tensor:
        """Scores of every (user, item): ``(n_users, n_items)``; only their order per user matters."""
        return self.P.weight @ self.Q.weight.T + self.bi.weight.T


def bpr_loss(diff: torch.Tensor) -> torch.Tensor:
    """``−log σ(x_ui − x_uj)``, averaged: the negative log-likelihood that each positive outranks its negative."""
    return -F.logsigmoid(diff).mean()


def resample_negatives(n_items: int):
    """``fit(augment=…)``: replace column 2 (the negative item) by uniformly drawn items, with ``fit``'s
    seeded generator — fresh negatives every batch, reproducibly. (A draw that is secretly a positive is
    rare and harmless.)"""
    def augment(xb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        xb = xb.clone()
        xb[:, 2] = torch.randint(0, n_items, (len(xb),), generator=generator).to(xb.device)
        return xb
    return augment


def rmse(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Root mean squared error of predicted ratings."""
    return torch.sqrt(F.mse_loss(pred.float(), target.float())).item()


def val_rmse(history) -> list[float]:
    """The validation RMSE after each epoch of ``fit``: the square root of the logged ``val_mse``."""
    return [v ** 0.5 for v in history["val_mse"]]


def ranking_metrics(scores: np.ndarray, train_pos: list[np.ndarray], test_pos: list[np.ndarray], k: int = 10) -> dict:
    """Top-``k`` precision, recall and NDCG (binary relevance), averaged over users with test items.

    ``scores[u, i]``: the model's score; ``train_pos[u]`` (excluded from the ranking: already known) and
    ``test_pos[u]`` (the relevant items) are arrays of item indices. NDCG is ``sklearn.metrics.ndcg_score``.
    """
    from sklearn.metrics import ndcg_score
    scores = np.array(scores, dtype=np.float64, copy=True)
    users = [u for u in range(len(scores)) if len(test_pos[u])]
    floor = scores.min() - 1e6
    rel = np.zeros((len(users), scores.shape[1]))
    for row, u in enumerate(users):
        scores[u, train_pos[u]] = floor
        rel[row, test_pos[u]] = 1.0
    S = scores[users]
    top = np.argsort(-S, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(rel, top, 1).sum(1)
    n_rel = rel.sum(1)
    return {f"precision@{k}": float(np.mean(hits / k)), f"recall@{k}": float(np.mean(hits / n_rel)),
            f"ndcg@{k}": float(ndcg_score(rel, S, k=k)), "users": len(users)}


def per_user_ndcg(users: np.ndarray, true: np.ndarray, pred: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k of each user's held-out items ranked by predicted rating, with the true ratings as
    graded relevance (users with at least two held-out items; ``sklearn.metrics.ndcg_score``)."""
    from sklearn.metrics import ndcg_score
    vals = []
    for u in np.unique(users):
        m = users == u
        if m.sum() >= 2:
            vals.append(ndcg_score(np.maximum(true[m], 0)[None], pred[m][None], k=k))
    return float(np.mean(vals))
