"""Lesson 01 exercises: linear regression — the loss, standardising, a gradient step, the stability limit and
the closed form. kit's references are private here, so no public kit function solves an exercise."""
from __future__ import annotations

import numpy as np
import torch

from kit.exercises import Case, function, randn as _t
from kit.exercises.declare import Budget, Headline, LessonEntry


def _with_ones(X):
    return torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1)


# ------------------------------------------------------------------------------------------ 01.1 mse and its gradient

def _mse_and_grad(y, y_hat):
    r = y_hat - y
    return (r ** 2).mean(), 2 * r / len(r)


def _mse_cases(rng):
    n = int(rng.integers(5, 60))
    yield Case(f"{n} random targets and predictions", (_t(rng, n), _t(rng, n)))
    yield Case("one example", (_t(rng, 1), _t(rng, 1)))
    y = _t(rng, 7)
    yield Case("perfect predictions (MSE 0, gradient 0)", (y, y.clone()))
    yield Case("prices in the hundreds", (_t(rng, 20, scale=50, loc=300), _t(rng, 20, scale=50, loc=300)))


function("01.1", "the mean squared error and its gradient with respect to the predictions",
         reference=_mse_and_grad, cases=_mse_cases, atol=1e-9,
         hints=("Both parts start from the residuals ŷ − y. The loss reduces them to one number; the gradient keeps one "
                "number per prediction.",
                "The loss is a mean over the n examples (not a sum, no square root). For the gradient, differentiate "
                "one term of that mean with respect to its own ŷᵢ — and remember the 1/n."))


# ------------------------------------------------------------------------------------------ 01.2 standardise

def _standardise(X_train, X_test):
    mu, sd = X_train.mean(0), X_train.std(0)
    return (X_train - mu) / sd, (X_test - mu) / sd


def _std_cases(rng):
    n, m, d = int(rng.integers(8, 60)), int(rng.integers(3, 20)), int(rng.integers(1, 6))
    yield Case(f"train ({n}, {d}), test ({m}, {d})", (rng.normal(2, 3, (n, d)), rng.normal(2, 3, (m, d))))
    scales = np.array([1e3, 1.0, 1e-2])
    yield Case("columns on very different scales (×1000, ×1, ×0.01)",
               (rng.normal(5, 1, (30, 3)) * scales, rng.normal(5, 1, (6, 3)) * scales))
    yield Case("a test set of one row", (rng.normal(0, 2, (12, 2)), rng.normal(0, 2, (1, 2))))
    yield Case("a test set shifted away from the training set", (rng.normal(0, 1, (10, 2)), rng.normal(4, 1, (5, 2))))


function("01.2", "standardise with the training set's mean and standard deviation", reference=_standardise,
         cases=_std_cases, atol=1e-9,
         hints=("Compute one mean and one standard deviation per column (axis 0), from X_train only.",
                "Apply the *same* μ and σ to both arrays: the test set must not use its own statistics.",
                "NumPy's .std uses ddof=0 (the population formula), which is what is asked; torch.std would not."))


# ------------------------------------------------------------------------------------------ 01.3 gd_step

def _gd_step(X, y, w, lr):
    return w - lr * 2.0 / len(X) * X.T @ (X @ w - y)


def _gd_cases(rng):
    n, d = int(rng.integers(5, 50)), int(rng.integers(1, 6))
    yield Case(f"random X ({n}, {d + 1}) with the ones column, lr = 0.05",
               (_with_ones(_t(rng, n, d)), _t(rng, n), _t(rng, d + 1), 0.05))
    yield Case("one example, lr = 0.3", (_with_ones(_t(rng, 1, 3)), _t(rng, 1), _t(rng, 4), 0.3))
    yield Case("w = 0, lr = 1", (_with_ones(_t(rng, 9, 2)), _t(rng, 9), torch.zeros(3, dtype=torch.float64), 1.0))
    yield Case("lr = 0 (w must not move)", (_with_ones(_t(rng, 6, 2)), _t(rng, 6), _t(rng, 3), 0.0))


function("01.3", "one step of gradient descent on the MSE, gradient by hand", reference=_gd_step, cases=_gd_cases,
         atol=1e-9,
         hints=("The residual r = Xw − y has one entry per example; the gradient has one entry per weight.",
                "Differentiate (1/n) Σᵢ rᵢ² with the chain rule: each rᵢ² contributes a factor from the square "
                "and a row of X. Check your factor by finite differences (kit.checks.gradient_check).",
                "The step moves *against* the gradient, scaled by lr."))


# ------------------------------------------------------------------------------------------ 01.4 max_stable_lr

def _max_stable_lr(X):
    return 2.0 / torch.linalg.eigvalsh(2.0 / len(X) * X.T @ X).max()


def _lr_cases(rng):
    n, d = int(rng.integers(10, 80)), int(rng.integers(1, 6))
    yield Case(f"random design ({n}, {d + 1}) with the ones column", (_with_ones(_t(rng, n, d)),))
    yield Case("raw features on different scales (×100, ×1)",
               (_with_ones(torch.cat([_t(rng, 40, 1, scale=100, loc=150), _t(rng, 40, 1)], 1)),))
    yield Case("a single example", (_with_ones(_t(rng, 1, 2)),))
    yield Case("one column", (_t(rng, 25, 1, scale=3),))


function("01.4", "the largest stable learning rate 2/λ_max", reference=_max_stable_lr, cases=_lr_cases, rtol=1e-7,
         atol=0,
         hints=("Write down the Hessian of L(w) = (1/n)‖Xw − y‖²: differentiate the gradient once more. It does not "
                "depend on w or y.",
                "H is symmetric, so torch.linalg.eigvalsh gives its eigenvalues; mind the constant in front of XᵀX.",))


# ------------------------------------------------------------------------------------------ 01.5 normal_equation

def _normal_equation(X, y):
    wb = torch.linalg.lstsq(_with_ones(X), y.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    return wb[:-1], wb[-1]


def _problem(rng, n, d, loc=0.0):
    X = _t(rng, n, d, loc=loc)
    y = X @ _t(rng, d, scale=3) + float(rng.normal(0, 10)) + _t(rng, n, scale=0.5)
    return X, y


def _ne_cases(rng):
    n, d = int(rng.integers(20, 80)), int(rng.integers(2, 6))
    yield Case(f"random well-conditioned X ({n}, {d}) and y with an intercept", _problem(rng, n, d))
    yield Case("tall and skinny: 2 000 examples, 1 feature", _problem(rng, 2000, 1))
    yield Case("exactly determined: 4 examples, 3 features", _problem(rng, 4, 3))
    yield Case("features centred far from zero (mean 20)", _problem(rng, 50, 2, loc=20.0))


function("01.5", "least squares with a bias, by the normal equations", reference=_normal_equation, cases=_ne_cases,
         atol=1e-6, rtol=1e-6,
         hints=("The bias is one more weight: give X a column that multiplies it.",
                "Setting the gradient of the MSE to zero gives a d+1 by d+1 linear system in the weights and bias; "
                "solve it rather than inverting a matrix.",
                "Return the weights and the bias separately, as a tuple (w, b)."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    return (m["max_weight_diff"] < 1e-4 and m["hand_vs_autograd"] < 1e-9
            and m["test_r2"] > 0.9 and m["test_mse"] < 0.1 * m["baseline_mse"]
            # why standardise: the raw problem's Hessian is far worse conditioned and GD gets less far on it
            and m["cond_raw"] > 100 * m["cond_scaled"] and m["raw_gd_loss"] > 1.5 * m["final_gd_loss"])


LESSON = LessonEntry(
    number='01', name='linear_regression', title='Linear regression',
    goal='House prices three ways — closed form, gradient descent, autograd — that agree to 1e-4.',
    teaches='house prices three ways — closed form, gradient descent with a hand-derived gradient, autograd — all '
            'agree (asserted to 1e-4); learning-rate slider and the 2/λ_max stability limit; why standardise: the '
            'condition number and gradient descent on raw vs standardised features, measured; loss surface',
    data='California housing when online; synthetic houses with a known price rule',
    metrics=(
        Headline('test_r2', 'test R²', 0.9),
        Headline('max_weight_diff', "the three solutions' largest weight gap", 0.0001, 'lower'),
    ),
    smoke_bar=smoke_bar,
    budget=Budget(smoke_s=30),  # a smoke run took 19 s on a quiet 2-core machine
)
