"""Lesson 00 exercises: tensors, broadcasting and a first use of autograd."""
from __future__ import annotations

import math

import torch

from kit.exercises import Case, function
from kit.exercises.inputs import InputFunction
from kit.exercises.declare import Budget, Headline, LessonEntry


def _scaled_identity_cases(rng):
    n = int(rng.integers(2, 9))
    yield Case(f"n = {n}, c = random", (n, float(rng.normal() * 3)))
    yield Case("n = 1", (1, float(rng.normal())))
    yield Case("c = 0", (4, 0.0))


function("00.1", "an n×n matrix with c on the diagonal",
         reference=lambda n, c: c * torch.eye(n), cases=_scaled_identity_cases,
         hints=("torch has a function for the identity matrix.",
                "Multiplying a tensor by a number scales every entry."))


def _pts(rng, *shape):
    return torch.tensor(rng.normal(size=shape), dtype=torch.float64)


def _dists_cases(rng):
    m, k, d = (int(v) for v in rng.integers(2, 12, size=3))
    yield Case(f"A ({m}, {d}) and B ({k}, {d})", (_pts(rng, m, d), _pts(rng, k, d)))
    yield Case("one point each", (_pts(rng, 1, 3), _pts(rng, 1, 3)))
    yield Case("points in 1-D", (_pts(rng, 5, 1), _pts(rng, 4, 1)))
    same = _pts(rng, 3, 2)
    yield Case("B equal to A (the diagonal must be 0)", (same, same.clone()))


function("00.2", "all squared distances between two sets of points, by broadcasting",
         reference=lambda A, B: ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1), cases=_dists_cases, atol=1e-9,
         hints=("The result has one row per point of A and one column per point of B: shape (m, k).",
                "Insert a new axis with None (or unsqueeze) so that A − B broadcasts to shape (m, k, d); then "
                "reduce over the last axis."))


def _tangent_reference(f, x0):
    x = torch.tensor(float(x0), dtype=torch.float64, requires_grad=True)
    y = f(x)
    y.backward()
    slope = x.grad.item()
    return slope, y.item() - slope * float(x0)


_FUNCTIONS = [(label, InputFunction(kind, label)) for label, kind in
              [("x³", "cube"), ("sin x", "sin"), ("e^(−x²)", "gauss"), ("log(1 + x²)", "log1p_square")]]


def _tangent_cases(rng):
    for name, f in _FUNCTIONS:
        x0 = float(rng.uniform(-2, 2))
        yield Case(f"f(x) = {name} at x0 = {x0:.3f}", (f, x0))
    yield Case("f(x) = x³ at x0 = 0 (a flat tangent)", (_FUNCTIONS[0][1], 0.0))
    yield Case("f(x) = sin x at x0 = π/2", (_FUNCTIONS[1][1], math.pi / 2))


function("00.3", "the tangent line (slope, intercept) of f at x0, with autograd",
         reference=_tangent_reference, cases=_tangent_cases, atol=1e-9,
         hints=("The slope is f'(x0): make x0 a tensor that records operations, evaluate f, and go backwards.",
                "torch.tensor(x0, dtype=torch.float64, requires_grad=True); after y.backward() the slope is in .grad. "
                "The tangent passes through (x0, f(x0)): solve for the intercept.",
                "Return two plain numbers (use .item()), as a tuple (slope, intercept)."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    return m["grad_error"] < 1e-8 and m["dot"] == 10.0


LESSON = LessonEntry(
    number='00', name='setup', title='Setup and a first gradient',
    goal='Check the environment, pick a device, and verify a first gradient against finite differences.',
    teaches='environment check, device choice, tensors, a first gradient checked by finite differences, how '
            'parameters and `metrics.json` work',
    data='—',
    metrics=(
        Headline('grad_error', 'autograd vs finite differences', 1e-08, 'lower'),
    ),
    smoke_bar=smoke_bar,
    budget=Budget(smoke_s=20),  # a smoke run took 11 s on a quiet 2-core machine
)
