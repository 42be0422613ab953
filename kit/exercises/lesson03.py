"""Lesson 03 exercises: counting an MLP's parameters, and the momentum, Adam and AdamW updates.

kit's references are private here (``_adam_step`` …); ``tests/test_lesson03.py`` checks them, and the formulas
the lesson writes out, against ``torch.optim`` step by step.
"""
from __future__ import annotations

import torch

from kit.exercises import Case, function, randn as _t
from kit.exercises.declare import Budget, Headline, LessonEntry


def _sq(rng, *shape, scale=1.0):  # a second moment: non-negative
    return torch.tensor(rng.normal(size=shape) ** 2 * scale, dtype=torch.float64)


# ------------------------------------------------------------------------------------------ 03.1 parameters

def _mlp_params(sizes):
    sizes = list(sizes)
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def _params_cases(rng):
    yield Case("the lesson's MLP [64, 128, 10]", ([64, 128, 10],))
    yield Case("no hidden layer (logistic regression) [30, 1]", ([30, 1],))
    depth = int(rng.integers(2, 5))
    sizes = [int(x) for x in rng.integers(1, 300, size=depth + 2)]
    yield Case(f"random widths {sizes}", (sizes,))
    yield Case("deep and narrow [784, 256, 256, 128, 10]", ([784, 256, 256, 128, 10],))


function("03.1", "the parameter count of an MLP from its layer sizes", reference=_mlp_params, cases=_params_cases,
         atol=0, rtol=0,
         hints=("Count one Linear(a, b) layer at a time, then add up the layers; there is one per consecutive pair.",
                "A Linear(a, b) layer has a weight matrix and a bias vector: how many numbers in each?"))


# ------------------------------------------------------------------------------------------ 03.2 momentum

def _momentum_step(w, g, v, lr, beta):
    v = beta * v + g
    return w - lr * v, v


def _momentum_cases(rng):
    d = int(rng.integers(2, 20))
    yield Case(f"{d} weights, v from earlier steps, lr = 0.05, β = 0.9", (_t(rng, d), _t(rng, d), _t(rng, d), 0.05, 0.9))
    yield Case("the first step: v = 0", (_t(rng, 5), _t(rng, 5), torch.zeros(5, dtype=torch.float64), 0.1, 0.9))
    yield Case("β = 0 (plain SGD)", (_t(rng, 4), _t(rng, 4), _t(rng, 4), 0.1, 0.0))
    yield Case("a weight matrix (3, 4), β = 0.99", (_t(rng, 3, 4), _t(rng, 3, 4), _t(rng, 3, 4), 0.01, 0.99))


function("03.2", "one step of SGD with momentum (torch's convention)", reference=_momentum_step,
         cases=_momentum_cases, atol=1e-12,
         hints=("Update the velocity first, then move the weights with the *new* velocity.",
                "torch's velocity is β·v + g — no (1 − β) factor on g (that would be an exponential moving average).",
                "Return both: (new w, new v)."))


# ------------------------------------------------------------------------------------------ 03.3 Adam

def _adam_step(w, g, m, v, t, lr, b1, b2, eps):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    return w - lr * m_hat / (v_hat.sqrt() + eps), m, v


def _adamw_step(w, g, m, v, t, lr, b1, b2, eps, wd):
    w, m, v = _adam_step(w * (1 - lr * wd), g, m, v, t, lr, b1, b2, eps)
    return w, m, v


def _rmsprop_step(w, g, s, lr, alpha=0.99, eps=1e-8):
    """RMSProp as torch.optim.RMSprop takes it (no momentum, not centred): returns (w, s)."""
    s = alpha * s + (1 - alpha) * g * g
    return w - lr * g / (s.sqrt() + eps), s


def _adam_cases(rng, extra=()):
    d = int(rng.integers(2, 20))
    zeros = torch.zeros(d, dtype=torch.float64)
    yield Case("t = 1 from m = v = 0 (bias correction matters most)",
               (_t(rng, d), _t(rng, d), zeros, zeros.clone(), 1, 1e-3, 0.9, 0.999, 1e-8) + extra)
    yield Case("t = 7 with moments from earlier steps, lr = 0.01",
               (_t(rng, d), _t(rng, d), _t(rng, d, scale=0.3), _sq(rng, d, scale=0.1), 7, 1e-2, 0.9, 0.999, 1e-8) + extra)
    yield Case("t = 5000 (corrections ≈ 1), β₁ = 0.8, β₂ = 0.99",
               (_t(rng, d), _t(rng, d), _t(rng, d, scale=0.3), _sq(rng, d, scale=0.1), 5000, 1e-3, 0.8, 0.99, 1e-8) + extra)
    z = torch.zeros(4, dtype=torch.float64)
    yield Case("tiny gradients 1e-9 at t = 1 (where ε goes matters)",
               (_t(rng, 4), torch.full((4,), 1e-9, dtype=torch.float64), z, z.clone(), 1, 0.1, 0.9, 0.999, 1e-8) + extra)
    yield Case("a weight matrix (3, 4) at t = 2",
               (_t(rng, 3, 4), _t(rng, 3, 4), _t(rng, 3, 4, scale=0.1), _sq(rng, 3, 4, scale=0.01), 2, 1e-3, 0.9,
                0.999, 1e-8) + extra)


function("03.3", "one step of Adam with bias correction", reference=_adam_step, cases=_adam_cases, atol=1e-10,
         rtol=1e-8,
         hints=("Update both running means from g first; the step uses the bias-corrected versions, but you return "
                "the uncorrected ones.",
                "Bias correction divides by 1 − β to the power t (the step number, starting at 1). ε is added after "
                "the square root, not inside it.",
                "Every operation is elementwise: g * g, not g @ g."))


def _adamw_cases(rng):
    yield from _adam_cases(rng, extra=(0.1,))
    yield Case("weight decay 0 (plain Adam)", next(iter(_adam_cases(rng, extra=(0.0,)))).args)


function("03.4", "one step of AdamW (decoupled weight decay)", reference=_adamw_step, cases=_adamw_cases,
         atol=1e-10, rtol=1e-8,
         hints=("Start from your Adam step: the moments m and v are exactly the same as without decay.",
                "The decay does not go into g. It multiplies the weights by a factor that depends on lr and wd.",
                "torch shrinks the weights first and then applies the Adam step; with one multiplication and one "
                "subtraction the order does not matter."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    return (m["val_acc_adam"] > 0.85 and m["test_acc"] > 0.85
            and m["final_val_loss_none"] >= m["final_val_loss_early_stopping"]
            # like with like: early stopping is the unregularized run cut short, so its best is no better
            and m["best_val_loss_early_stopping"] >= m["best_val_loss_none"] - 1e-9
            # L1 with subgradients + Adam: many weights near zero, (almost) none exactly zero
            and m["l1_below_1e-3"] > 2 * m["none_below_1e-3"] and m["l1_exact_zero"] < 0.01)


LESSON = LessonEntry(
    number='03', name='mlp_training', title='MLP training and optimizers',
    goal='An MLP on digits; SGD to AdamW written out and checked against torch.optim; regularizers compared.',
    teaches='MLP and the `fit` loop (progress bar, live plot); SGD, momentum, RMSProp, Adam and AdamW written out '
            '(m_t, v_t, bias correction; coupled L2 vs decoupled decay) and **checked against `torch.optim`**; the '
            'best optimizer picked by the run; overfitting and L2, L1 (exact zeros measured), dropout, early '
            'stopping compared like with like',
    data='8×8 digits (scikit-learn, real)',
    metrics=(
        Headline('test_acc', 'test accuracy', 0.85, unit='%'),
        Headline('l1_below_1e-3', 'weights below 1e-3 under L1', 'none_below_1e-3*2', unit='%'),
        Headline('l1_exact_zero', 'weights exactly zero under L1', None, 'lower', unit='%'),
    ),
    smoke_bar=smoke_bar,
    figure='validation loss by optimizer',
    budget=Budget(smoke_s=40),  # a smoke run took 21 s on a quiet 2-core machine
)
