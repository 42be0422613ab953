"""Lesson 02 exercises: logistic regression and backpropagation by hand."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kit.exercises import Case, function, randn as _t
from kit.exercises.declare import Budget, Headline, LessonEntry


def _labels(rng, n):
    return torch.tensor(rng.integers(0, 2, size=n), dtype=torch.float64)


def _predict_cases(rng):
    n, d = rng.integers(3, 40), rng.integers(1, 8)
    yield Case(f"random X of shape ({n}, {d})", (_t(rng, n, d), _t(rng, d)))
    yield Case("one example", (_t(rng, 1, 3), _t(rng, 3)))
    yield Case("w = 0 (every p is ½)", (_t(rng, 5, 4), torch.zeros(4, dtype=torch.float64)))


function("02.1", "predicted probabilities p = σ(Xw)",
         reference=lambda X, w: torch.sigmoid(X @ w), cases=_predict_cases,
         hints=("Compute the logits z first, one per row of X.",
                "z = X @ w; then squash every z with the sigmoid (torch has one)."))


def _weighted_bce(z, y, weights):
    losses = -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z))
    return (weights * losses).sum() / weights.sum()


def _weights(rng, n):
    return torch.tensor(rng.uniform(0.2, 3.0, n), dtype=torch.float64)


def _bce_cases(rng):
    n = int(rng.integers(4, 50))
    yield Case(f"{n} random logits, random weights", (_t(rng, n, scale=3), _labels(rng, n), _weights(rng, n)))
    yield Case("every weight 1 (the plain mean)", (_t(rng, 9, scale=3), _labels(rng, 9), torch.ones(9, dtype=torch.float64)))
    yield Case("confident and right: z = ±40", (torch.tensor([40.0, -40.0], dtype=torch.float64),
                                                torch.tensor([1.0, 0.0], dtype=torch.float64),
                                                torch.tensor([1.0, 2.0], dtype=torch.float64)))
    yield Case("confident and wrong: z = ±100", (torch.tensor([100.0, -100.0, 3.0], dtype=torch.float64),
                                                 torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64),
                                                 torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)))
    yield Case("weight 0 on a confidently wrong example (it must not count, nor make NaN)",
               (torch.tensor([100.0, 0.5, -1.0], dtype=torch.float64), torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64),
                torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)))
    yield Case("weights that do not sum to n", (_t(rng, 6, scale=2), _labels(rng, 6),
                                                 torch.tensor([10.0, 0.1, 0.1, 0.1, 0.1, 0.1], dtype=torch.float64)))


function("02.2", "class-weighted binary cross-entropy from logits, computed stably",
         reference=_weighted_bce, cases=_bce_cases, atol=1e-8,
         hints=("Your loss must stay finite when |z| is large: log(σ(100)) is fine, but log(1 − σ(100)) is log(0). "
                "Rewrite 1 − σ(z) as σ of something.",
                "torch.nn.functional has a log-sigmoid that never takes log of 0. A weight-0 example must contribute "
                "exactly 0 — which 0·∞ would not.",
                "A weighted mean divides by the total weight, not by the number of examples."))


def _softmax_cases(rng):
    n, k = int(rng.integers(2, 30)), int(rng.integers(3, 8))
    yield Case(f"random logits ({n} examples, {k} classes)", (_t(rng, n, k, scale=2), torch.tensor(rng.integers(0, k, n))))
    yield Case("two classes", (_t(rng, 6, 2), torch.tensor(rng.integers(0, 2, 6))))
    yield Case("huge logits (±80)", (torch.tensor([[80.0, -80.0, 0.0], [-80.0, 80.0, 1.0]], dtype=torch.float64),
                                     torch.tensor([0, 2])))
    yield Case("a single example", (_t(rng, 1, 4), torch.tensor([3])))


function("02.3", "the gradient of the mean softmax cross-entropy with respect to the logits",
         reference=lambda Z, y: (torch.softmax(Z, dim=1) - F.one_hot(y, Z.shape[1]).to(Z.dtype)) / len(y),
         cases=_softmax_cases, atol=1e-9,
         hints=("It generalises ∂L/∂z = p − y from two classes to K: one row of probabilities per example.",
                "p = softmax over each row (subtract the row's max first, or use torch.softmax, so e^80 does not "
                "overflow); y becomes a one-hot row.",
                "Remember the loss is a mean over n examples."))


def _l2_cases(rng):
    n, d = int(rng.integers(5, 40)), int(rng.integers(2, 7))
    yield Case(f"random ({n} examples, {d} weights), λ = 0.1", (_t(rng, n, d), _labels(rng, n), _t(rng, d), 0.1))
    yield Case("λ = 0 (plain logistic regression)", (_t(rng, n, d), _labels(rng, n), _t(rng, d), 0.0))
    yield Case("large λ = 5", (_t(rng, 8, 3), _labels(rng, 8), _t(rng, 3), 5.0))


function("02.4", "the gradient of BCE + λ‖w‖²",
         reference=lambda X, y, w, lam: X.T @ (torch.sigmoid(X @ w) - y) / len(y) + 2 * lam * w,
         cases=_l2_cases, atol=1e-9,
         hints=("The gradient of a sum is the sum of the gradients: the BCE part is the lesson's Xᵀ(p − y)/n.",
                "Differentiate λ Σ wⱼ² one coordinate at a time; check your factor by finite differences "
                "(kit.checks.gradient_check)."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    return (m["grad_err_fd"] < 1e-6 and m["grad_err_autograd"] < 1e-10
            and m["wrong_grad_err_fd"] > 1e-2 and m["test_acc"] > 0.93)


LESSON = LessonEntry(
    number='02', name='logistic_regression', title='Logistic regression',
    goal='Classify tumours; check the gradient p − y against autograd and finite differences.',
    teaches='sigmoid, binary cross-entropy, dL/dz = p − y derived and **checked against autograd and finite '
            'differences**; the common wrong derivation 1 − 2p − y failing the same check',
    data='breast cancer (scikit-learn, real)',
    metrics=(
        Headline('test_acc', 'test accuracy', 0.93, unit='%'),
        Headline('grad_err_fd', 'p − y vs finite differences', 1e-06, 'lower'),
    ),
    smoke_bar=smoke_bar,
    figure='gradient descent',
    budget=Budget(smoke_s=20),  # a smoke run took 12 s on a quiet 2-core machine
)
