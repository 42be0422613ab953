"""Lesson 17 exercises: the pieces of a VAE, a GAN, a diffusion model and of their judge."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from kit.exercises import Case, function, randn as _t


# ---- 17.1 the closed-form KL of a diagonal Gaussian to N(0, I), per example

def _kl_reference(mu, logvar):
    return 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)


def _kl_cases(rng):
    n, d = int(rng.integers(2, 40)), int(rng.integers(2, 20))
    yield Case(f"random μ and log σ² of shape ({n}, {d})", (_t(rng, n, d), _t(rng, n, d)))
    yield Case("μ = 0, log σ² = 0 (q is the prior: KL = 0)", (torch.zeros(3, 5, dtype=torch.float64),
                                                               torch.zeros(3, 5, dtype=torch.float64)))
    yield Case("one example, one latent dimension", (_t(rng, 1, 1), _t(rng, 1, 1)))
    yield Case("extreme log σ² (±15)", (_t(rng, 4, 3), torch.tensor([[15.0, -15.0, 0.0]] * 4, dtype=torch.float64)))
    yield Case("large μ (±30), σ = 1", (_t(rng, 5, 4, scale=30), torch.zeros(5, 4, dtype=torch.float64)))


function("17.1", "KL(N(μ, diag σ²) ‖ N(0, I)) per example, from μ and log σ²", reference=_kl_reference,
         cases=_kl_cases, atol=1e-8,
         hints=("Work one latent dimension at a time: the KL between two 1-D Gaussians has a closed form; the "
                "dimensions are independent, so their KLs add up.",
                "For one dimension it involves μ², σ² = exp(log σ²), the constant 1 and log σ² itself, with a "
                "factor ½ in front. Check yours against torch.distributions.kl_divergence.",
                "Return one number per row: sum over the last axis, do not average over the batch."))


# ---- 17.2 one jump of the forward (noising) process

def _q_reference(x0, t, eps, alpha_bar):
    ab = alpha_bar[t].view(-1, *([1] * (x0.ndim - 1)))
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def _alpha_bar(rng, T):
    betas = np.sort(rng.uniform(1e-4, 0.05, size=T))
    return torch.tensor(np.cumprod(1 - betas), dtype=torch.float64)


def _q_cases(rng):
    T = int(rng.integers(20, 200))
    ab = _alpha_bar(rng, T)
    n = int(rng.integers(2, 12))
    t = torch.tensor(rng.integers(0, T, n))
    yield Case(f"{n} images (1×6×6), random steps of T = {T}", (_t(rng, n, 1, 6, 6), t, _t(rng, n, 1, 6, 6), ab))
    m, d = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    yield Case(f"flat vectors ({m}, {d})", (_t(rng, m, d), torch.tensor(rng.integers(0, T, m)), _t(rng, m, d), ab))
    yield Case("t = 0 for every image", (_t(rng, 3, 1, 4, 4), torch.zeros(3, dtype=torch.long), _t(rng, 3, 1, 4, 4), ab))
    yield Case("the last step t = T − 1", (_t(rng, 2, 5), torch.full((2,), T - 1), _t(rng, 2, 5), ab))
    yield Case("one image", (_t(rng, 1, 1, 3, 3), torch.tensor([int(rng.integers(0, T))]), _t(rng, 1, 1, 3, 3), ab))


function("17.2", "x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε, one step t per example", reference=_q_reference, cases=_q_cases,
         atol=1e-9,
         hints=("Each example has its own step t: look up its ᾱ in alpha_bar and reshape it so it broadcasts over "
                "the example's other axes (images are (N, 1, H, W), vectors (N, D)).",
                "The signal keeps a fraction of its *standard deviation*, not of its variance: the two weights "
                "are square roots, and their squares add up to 1.",
                "alpha_bar[t] is already the product of the α's up to t: do not multiply again or shift t by one."))


# ---- 17.3 the non-saturating generator loss, from logits, stably

def _g_cases(rng):
    n = int(rng.integers(3, 60))
    yield Case(f"{n} random logits", (_t(rng, n, scale=3),))
    yield Case("the discriminator sure the fakes are fake: logits −800", (torch.tensor([-800.0, -60.0, 2.0],
                                                                                   dtype=torch.float64),))
    yield Case("the discriminator fooled: logits +800", (torch.tensor([800.0, 50.0], dtype=torch.float64),))
    yield Case("a single logit", (_t(rng, 1),))


function("17.3", "the non-saturating generator loss −log D(G(z)) from the discriminator's logits (mean)",
         reference=lambda l: F.softplus(-l).mean(), cases=_g_cases, atol=1e-8,
         hints=("D(G(z)) = σ(l). The generator wants it near 1; its loss is large when the discriminator is sure "
                "the fake is fake (l very negative).",
                "log σ(−800) underflows if you compute σ first: write −log σ(l) with a function that never takes "
                "the log of 0 (F.logsigmoid or F.softplus).",
                "A mean over the batch, not a sum."))


# ---- 17.4 the Fréchet distance between two Gaussians

def _frechet_reference(mu1, cov1, mu2, cov2):
    from kit.techniques.judge import _gaussian_frechet
    return _gaussian_frechet(np.asarray(mu1), np.asarray(cov1), np.asarray(mu2), np.asarray(cov2))


def _spd(rng, d, scale=1.0):
    A = rng.normal(size=(d, d)) * scale
    return A @ A.T + 0.1 * np.eye(d)


def _frechet_cases(rng):
    d = int(rng.integers(2, 7))
    yield Case(f"two random Gaussians in {d} dimensions", (rng.normal(size=d), _spd(rng, d), rng.normal(size=d),
                                                           _spd(rng, d)))
    mu, S = rng.normal(size=d), _spd(rng, d)
    yield Case("the same Gaussian twice (distance 0)", (mu, S, mu.copy(), S.copy()))
    yield Case("diagonal covariances", (rng.normal(size=3), np.diag(rng.uniform(0.1, 3, 3)), rng.normal(size=3),
                                        np.diag(rng.uniform(0.1, 3, 3))))
    yield Case("same covariance, shifted mean", (np.zeros(d), S, np.ones(d), S.copy()))
    yield Case("one dimension", (rng.normal(size=1), _spd(rng, 1), rng.normal(size=1), _spd(rng, 1)))


function("17.4", "the Fréchet distance ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½) between two Gaussians",
         reference=_frechet_reference, cases=_frechet_cases, atol=1e-6, rtol=1e-5,
         hints=("Two parts: how far apart the means are (a squared distance), and how different the covariances "
                "are (traces).",
                "The matrix square root is of the product Σ₁Σ₂ (scipy.linalg.sqrtm), not the product of two square "
                "roots — those agree only when the matrices commute. Round-off can leave a tiny imaginary part: "
                "keep the real part.",
                "Return a plain float; the distance of a Gaussian to itself must come out 0."))
