"""Judging generated digits by numbers: a classifier trained on real digits (the *judge*) scores samples.

* :func:`confident_fraction` — the fraction of samples the judge classifies with probability ≥ 0.9;
* :func:`class_coverage` — the entropy of the judge's predicted classes, in bits (log₂ 10 ≈ 3.32 when every
  class is equally frequent, 0 when every sample is the same digit: mode collapse);
* :func:`frechet_distance` — the Fréchet distance between Gaussians fitted to the judge's penultimate features
  of two image sets (FID's recipe with a digit classifier in place of Inception):
  ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½), with ``scipy.linalg.sqrtm``. Its estimate from samples is biased
  upwards (two sets from the same distribution score well above 0, the more so the fewer samples per dimension);
* :func:`kernel_distance` — the Kernel Inception Distance's recipe (Bińkowski et al. 2018) in the same features:
  the unbiased estimate of MMD² with the kernel k(x, y) = (x·y/d + 1)³, averaged over random subsets (and its
  spread over them) — its expectation is 0 for two sets from the same distribution, at any sample size;
* :func:`within_class_spread` — the variety within a digit: the mean pixel distance between two images the judge
  puts in the same class, averaged over the classes (what a guidance scale > 1 trades for confidence);
* :func:`nearest_training_distance` — for each image the Euclidean pixel distance to its nearest training image
  (a model that memorised its training set has samples much closer to it than new real digits are).
"""
from __future__ import annotations

import numpy as np
import torch

from kit.models.base import evaluating


@torch.no_grad()
def judge_outputs(judge, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """``(probabilities (N, classes), penultimate features (N, F))`` of a :class:`kit.models.cnn.CNN` judge:
    the features are what its last linear layer reads (the flattened output of the conv blocks)."""
    with evaluating(judge):
        dev = next(judge.parameters()).device
        probs, feats = [], []
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].to(dev).float().view(-1, 1, 28, 28)
            f = judge.head[:-1](judge.features(x))            # everything but the final Linear
            probs.append(judge.head[-1](f).float().softmax(1).cpu())
            feats.append(f.float().cpu())
    return torch.cat(probs), torch.cat(feats)


def confident_fraction(probs: torch.Tensor, threshold: float = 0.9) -> float:
    """Fraction of rows whose largest class probability is ≥ ``threshold``."""
    return float((probs.max(1).values >= threshold).float().mean())


def class_coverage(probs: torch.Tensor) -> float:
    """Entropy (bits) of the distribution of predicted classes (argmax of each row)."""
    counts = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log2()).sum()) + 0.0  # + 0.0: no "-0.00" when one class holds every sample


def _gaussian_frechet(mu1, s1, mu2, s2) -> float:
    from scipy import linalg
    covmean = linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)  # tiny imaginary parts from round-off
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussians fitted (mean, covariance) to two feature sets ``(N, F)``."""
    a = np.asarray(feats_a, dtype=np.float64)
    b = np.asarray(feats_b, dtype=np.float64)
    return _gaussian_frechet(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def kernel_distance(feats_a, feats_b, subsets: int = 50, subset_size: int = 100, seed: int = 0) -> tuple[float, float]:
    """KID's recipe: ``(mean, std)`` over ``subsets`` random subsets of ``subset_size`` rows drawn (without
    replacement) from each feature set ``(N, d)`` of the unbiased MMD² estimate with the cubic polynomial kernel
    k(x, y) = (x·y/d + 1)³. Each subset's estimate is unbiased (the i = j terms left out), so their mean is too."""
    a = np.asarray(feats_a, dtype=np.float64)
    b = np.asarray(feats_b, dtype=np.float64)
    if not 2 <= subset_size <= min(len(a), len(b)):
        raise ValueError(f"parameter 'subset_size' must be between 2 and the smaller set's size "
                         f"{min(len(a), len(b))}, got {subset_size}")
    d, m = a.shape[1], subset_size
    kaa, kbb, kab = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3   # every pair, once
    rng = np.random.default_rng(seed)
    est = []
    for _ in range(subsets):
        i, j = rng.choice(len(a), m, replace=False), rng.choice(len(b), m, replace=False)
        kxx, kyy, kxy = kaa[np.ix_(i, i)], kbb[np.ix_(j, j)], kab[np.ix_(i, j)]
        off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        est.append(off - 2 * kxy.mean())
    return float(np.mean(est)), float(np.std(est))


@torch.no_grad()
def within_class_spread(images: torch.Tensor, probs: torch.Tensor, min_count: int = 2) -> float:
    """Mean Euclidean pixel distance between two different images the judge assigns to the same class (argmax of
    ``probs``), averaged over the classes with at least ``min_count`` images (each class weighs the same); NaN
    when no class has that many. Low: the images of each digit look alike (little variety)."""
    A = images.reshape(len(images), -1).double().cpu()
    cls = probs.argmax(1).cpu()
    per_class = []
    for c in cls.unique().tolist():
        M = A[cls == c]
        if len(M) >= max(2, min_count):
            d = torch.cdist(M, M, compute_mode="donot_use_mm_for_euclid_dist")
            per_class.append(float(d.sum() / (len(M) * (len(M) - 1))))   # the diagonal is 0: pairs i ≠ j
    return float(np.mean(per_class)) if per_class else float("nan")


@torch.no_grad()
def nearest_training_distance(images: torch.Tensor, train: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """For each image, the Euclidean distance (pixels in [0, 1]) to its nearest training image, and which one:
    ``(distances (N,), indices (N,))``."""
    A = images.reshape(len(images), -1).float().cpu()
    B = train.reshape(len(train), -1).float().cpu()
    d, idx = [], []
    for i in range(0, len(A), batch_size):
        dist = torch.cdist(A[i:i + batch_size], B)
        m = dist.min(1)
        d.append(m.values)
        idx.append(m.indices)
    return torch.cat(d), torch.cat(idx)


__all__ = ["class_coverage", "confident_fraction", "frechet_distance", "judge_outputs", "kernel_distance",
           "nearest_training_distance", "within_class_spread"]
