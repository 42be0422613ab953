"""Lesson 01: its exercises reject typical mistakes and accept right answers; the standardisation fix's numbers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kit.exercises import verdict
from kit.models import linear


def _ok(id, fn, times=4):
    for _ in range(times):  # fresh random inputs every time
        assert verdict(id, fn) is None, verdict(id, fn)


def _fails(id, fn, *words):
    why = verdict(id, fn)
    assert why is not None and "on the case '" in why, why
    for w in words:
        assert w in why, why
    return why


def test_01_1_mse_and_its_gradient():
    _ok("01.1", lambda y, y_hat: (((y_hat - y) ** 2).mean(), 2 * (y_hat - y) / len(y)))
    _fails("01.1", lambda y, y_hat: (((y_hat - y) ** 2).sum(), 2 * (y_hat - y)), "random targets")  # sums
    _fails("01.1", lambda y, y_hat: (((y_hat - y) ** 2).mean(), 2 * (y_hat - y)), "random targets")  # forgot 1/n
    _fails("01.1", lambda y, y_hat: (((y_hat - y) ** 2).mean(), 2 * (y - y_hat) / len(y)))  # sign
    _fails("01.1", lambda y, y_hat: (((y_hat - y) ** 2).mean().sqrt(), 2 * (y_hat - y) / len(y)))  # the RMSE
    # library one-liners give only half of it
    _fails("01.1", lambda y, y_hat: torch.nn.functional.mse_loss(y_hat, y))
    assert "no answer yet" in verdict("01.1", None)


def test_01_2_standardise():
    def right(A, B):
        mu, sd = A.mean(0), A.std(0)
        return (A - mu) / sd, (B - mu) / sd
    _ok("01.2", right)

    def own_stats(A, B):  # the test set standardised with its own statistics
        return (A - A.mean(0)) / A.std(0), (B - B.mean(0)) / B.std(0)
    _fails("01.2", own_stats, "train (")

    def ddof1(A, B):  # the sample standard deviation (torch.std's default)
        mu, sd = A.mean(0), A.std(0, ddof=1)
        return (A - mu) / sd, (B - mu) / sd
    _fails("01.2", ddof1)


def test_01_3_gd_step():
    _ok("01.3", lambda X, y, w, lr: w - lr * 2 / len(X) * X.T @ (X @ w - y))
    _fails("01.3", lambda X, y, w, lr: w - lr / len(X) * X.T @ (X @ w - y), "random X")  # the factor 2 forgotten
    _fails("01.3", lambda X, y, w, lr: w - lr * 2 * X.T @ (X @ w - y))                   # a sum, not a mean
    _fails("01.3", lambda X, y, w, lr: w + lr * 2 / len(X) * X.T @ (X @ w - y))         # uphill


def test_01_4_max_stable_lr():
    _ok("01.4", lambda X: 2 / torch.linalg.eigvalsh(2 / len(X) * X.T @ X).max())
    _ok("01.4", lambda X: 2 / torch.linalg.eigvalsh(linear.hessian(X)).max())
    _fails("01.4", lambda X: 2 / torch.linalg.eigvalsh(X.T @ X).max(), "random design")  # H without 2/n
    _fails("01.4", lambda X: 1 / torch.linalg.eigvalsh(2 / len(X) * X.T @ X).max())


def test_01_5_normal_equation():
    def right(X, y):
        A = linear.add_bias(X)
        wb = torch.linalg.solve(A.T @ A, A.T @ y)
        return wb[:-1], wb[-1]
    _ok("01.5", right)

    def no_bias(X, y):
        return torch.linalg.solve(X.T @ X, X.T @ y), 0.0
    _fails("01.5", no_bias, "random well-conditioned")
    assert verdict("01.5", linear.closed_form) is not None  # kit's own solver has another convention: no leak


def _lesson_data():
    import kit.data
    houses = kit.data.load("houses", source="embedded")
    train_idx, _, _ = kit.data.split(len(houses), (0.7, 0.15, 0.15), seed=0)
    X = houses.X[train_idx].astype(np.float64)
    raw = linear.add_bias(torch.tensor(X))
    scaled = linear.add_bias(torch.tensor((X - X.mean(0)) / X.std(0)))
    y = torch.tensor(houses.y[train_idx], dtype=torch.float64)
    return raw, scaled, y


def test_condition_number_formula():
    X = torch.randn(50, 3, dtype=torch.float64)
    ev = np.linalg.eigvalsh((2 / 50 * X.T @ X).numpy())
    assert linear.condition_number(X) == pytest.approx(ev.max() / ev.min(), rel=1e-10)
    assert torch.allclose(linear.hessian(X), torch.autograd.functional.hessian(
        lambda w: linear.mse(X, torch.zeros(50, dtype=torch.float64), w), torch.zeros(3, dtype=torch.float64)))
    # orthogonal columns of equal norm: a perfectly round bowl
    assert linear.condition_number(torch.eye(4, dtype=torch.float64)) == pytest.approx(1.0)


def test_standardising_shrinks_the_condition_number_on_the_lessons_data():
    raw, scaled, y = _lesson_data()
    k_raw, k_scaled = linear.condition_number(raw), linear.condition_number(scaled)
    assert k_scaled < 20
    assert k_raw > 1e4 * k_scaled  # measured: κ ≈ 3.4e5 raw vs ≈ 14 standardised (ratio ≈ 2.4e4)
    # and gradient descent at each problem's best lr 2/(λmax + λmin), 1000 steps: the raw run is far from optimal
    L_star = linear.mse(scaled, y, linear.closed_form(scaled, y)).item()
    ends = {}
    for name, X in (("raw", raw), ("scaled", scaled)):
        ev = torch.linalg.eigvalsh(linear.hessian(X))
        _, losses, _ = linear.gd_by_hand(X, y, 2 / (ev.max() + ev.min()).item(), 1000)
        ends[name] = losses[-1] - L_star
    assert ends["scaled"] < 1e-6 and ends["raw"] > 1e3 * max(ends["scaled"], 1e-9)


def test_best_lr_shrinks_the_slowest_error_by_kappa_formula():
    """The lesson's claim: at lr = 2/(λmax + λmin) the error along the flattest direction shrinks by (κ−1)/(κ+1)."""
    g = torch.Generator().manual_seed(0)
    X = linear.add_bias(torch.randn(40, 3, generator=g, dtype=torch.float64) * torch.tensor([5.0, 1.0, 0.2],
                                                                                             dtype=torch.float64))
    y = torch.randn(40, generator=g, dtype=torch.float64)
    ev, vecs = torch.linalg.eigh(linear.hessian(X))
    kappa = linear.condition_number(X)
    w_star = linear.closed_form(X, y)
    _, _, path = linear.gd_by_hand(X, y, 2 / (ev.max() + ev.min()).item(), 5)
    slow = (path - w_star) @ vecs[:, 0]  # the error's component along λmin's eigenvector
    assert torch.allclose(slow[1:] / slow[:-1], torch.full((5,), (kappa - 1) / (kappa + 1), dtype=torch.float64))
