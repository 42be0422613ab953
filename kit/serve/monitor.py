"""Drift monitoring: statistics of each request's inputs and outputs, a reference window, PSI and KS, alerts.

    ref = window_stats(X_ref, probs_ref)              # one row of statistics per example
    rep = drift_report(ref, window_stats(X_live, probs_live), n_classes=10)
    rep["alert"], rep["table"]

**PSI** (population stability index) compares two histograms over the same bins:
``PSI = Σ_b (a_b − e_b) · ln(a_b / e_b)`` with ``e_b``, ``a_b`` the reference's and the live window's shares of
bin ``b`` (each clipped below at ``eps`` so an empty bin costs a large but finite amount). Rules of thumb:
< 0.1 stable, 0.1–0.25 some shift, > 0.25 a large shift. Continuous statistics are binned at the reference's
deciles, so every reference bin holds about 10 %. **KS** (two-sample Kolmogorov–Smirnov) is the largest gap
between the two empirical CDFs; ``scipy.stats.ks_2samp`` gives it with a p-value.
"""
from __future__ import annotations

import numpy as np

__all__ = ["STATS", "window_stats", "quantile_edges", "histogram", "psi_of_samples", "psi_of_classes",
           "ks_test", "drift_report"]

STATS = ("input_mean", "input_std", "ink_fraction", "confidence")


def window_stats(X, probs, ink: float = 0.5) -> dict[str, np.ndarray]:
    """Per-example statistics a service can log cheaply: input mean, std, share of pixels above ``ink``, and
    the model's confidence (top probability), plus the predicted class."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    probs = np.asarray(probs, dtype=np.float64)
    return {"input_mean": X.mean(1), "input_std": X.std(1), "ink_fraction": (X > ink).mean(1),
            "confidence": probs.max(1), "predicted": probs.argmax(1)}


def quantile_edges(reference, bins: int = 10) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (duplicates dropped): ``bins`` bins of ~equal reference mass."""
    qs = np.quantile(np.asarray(reference, dtype=np.float64), np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(qs)


def histogram(values, edges) -> np.ndarray:
    """Counts of ``values`` in the bins (−∞, e₀], (e₀, e₁], …, (e_last, ∞)."""
    return np.bincount(np.searchsorted(edges, np.asarray(values, dtype=np.float64), side="left"),
                       minlength=len(edges) + 1)


def _psi(expected_counts, actual_counts, eps: float) -> float:
    e = np.asarray(expected_counts, dtype=np.float64)
    a = np.asarray(actual_counts, dtype=np.float64)
    e = np.clip(e / e.sum(), eps, None)
    a = np.clip(a / a.sum(), eps, None)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_of_samples(reference, live, *, bins: int = 10, eps: float = 1e-4) -> float:
    """PSI of a continuous statistic, binned at the reference's quantiles."""
    edges = quantile_edges(reference, bins)
    return _psi(histogram(reference, edges), histogram(live, edges), eps)


def psi_of_classes(reference, live, *, n_classes: int, eps: float = 1e-4) -> float:
    """PSI of the predicted-class distribution (one bin per class)."""
    return _psi(np.bincount(np.asarray(reference), minlength=n_classes),
                np.bincount(np.asarray(live), minlength=n_classes), eps)


def ks_test(reference, live) -> tuple[float, float]:
    """``(statistic, p-value)`` of the two-sample Kolmogorov–Smirnov test (``scipy.stats.ks_2samp``)."""
    from scipy import stats
    r = stats.ks_2samp(np.asarray(reference, dtype=np.float64), np.asarray(live, dtype=np.float64))
    return float(r.statistic), float(r.pvalue)


def drift_report(ref: dict, live: dict, *, n_classes: int, psi_threshold: float = 0.25, ks_alpha: float = 0.01,
                 bins: int = 10) -> dict:
    """PSI and KS of every statistic (PSI only for the predicted class), and the alert.

    A statistic alerts when its PSI exceeds ``psi_threshold`` or its KS p-value is below ``ks_alpha`` divided by
    the number of KS tests (Bonferroni: several tests on a clean window must not add up to false alarms).
    """
    rows = []
    alpha = ks_alpha / len(STATS)
    for name in STATS:
        p = psi_of_samples(ref[name], live[name], bins=bins)
        d, pv = ks_test(ref[name], live[name])
        rows.append({"statistic": name, "psi": p, "ks": d, "ks_p": pv, "alert": bool(p > psi_threshold or pv < alpha)})
    p = psi_of_classes(ref["predicted"], live["predicted"], n_classes=n_classes)
    rows.append({"statistic": "predicted class", "psi": p, "ks": float("nan"), "ks_p": float("nan"),
                 "alert": bool(p > psi_threshold)})
    return {"table": rows, "alert": any(r["alert"] for r in rows),
            "psi_max": max(r["psi"] for r in rows), "ks_p_min": min(r["ks_p"] for r in rows[:-1])}
