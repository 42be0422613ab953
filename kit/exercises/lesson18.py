"""Lesson 18 exercises: serving and monitoring — PSI, a latency percentile, the KS statistic, micro-batching.

The references are private to this module (kit.serve has its own versions with other signatures), so no
function a lesson imports can stand in for an answer.
"""
from __future__ import annotations

import numpy as np

from kit.exercises import Case, function


# ------------------------------------------------------------------------------------------------ 18.1 PSI


def _psi(expected_counts, actual_counts, eps):
    e = np.asarray(expected_counts, dtype=np.float64)
    a = np.asarray(actual_counts, dtype=np.float64)
    e = np.clip(e / e.sum(), eps, None)
    a = np.clip(a / a.sum(), eps, None)
    return float(np.sum((a - e) * np.log(a / e)))


def _psi_cases(rng):
    k = int(rng.integers(5, 15))
    e = rng.integers(20, 200, size=k)
    yield Case(f"two random histograms of {k} bins (different totals)", (e, rng.integers(20, 400, size=k), 1e-4))
    yield Case("identical histograms (PSI 0)", (e, e.copy(), 1e-4))
    yield Case("the same shares, ten times the count (PSI 0)", (e, 10 * e, 1e-4))
    a = rng.integers(20, 200, size=k)
    a[int(rng.integers(0, k))] = 0
    yield Case("an empty bin in the live histogram", (e, a, 1e-4))
    e2 = e.copy()
    e2[0] = 0
    yield Case("an empty bin in the reference, eps = 1e-3", (e2, rng.integers(20, 200, size=k), 1e-3))
    yield Case("two bins, float counts", (np.array([30.0, 70.0]), np.array([55.5, 44.5]), 1e-4))


function("18.1", "the population stability index of two histograms",
         reference=_psi, cases=_psi_cases, atol=1e-9, rtol=1e-7,
         hints=("Compare shares, not counts: each histogram first becomes proportions that sum to 1.",
                "An empty bin makes a log blow up: raise every share below eps to eps before taking logs "
                "(np.clip or np.maximum).",
                "Each bin contributes (live share − reference share) times the log of their ratio; add the bins up."))


# ---------------------------------------------------------------------------------- 18.2 latency percentile


def _nearest_rank(samples_ms, q):
    s = np.sort(np.asarray(samples_ms, dtype=np.float64))
    k = -(-int(q) * len(s) // 100)  # ceil(q·n / 100) in integers: no rounding surprises
    return float(s[max(k, 1) - 1])


def _pct_cases(rng):
    n = int(rng.integers(30, 300))
    lat = rng.lognormal(1.5, 0.6, size=n)
    for q in (50, 95, 99):
        yield Case(f"p{q} of {n} random latencies (unsorted)", (lat, q))
    yield Case("p95 of a hundred samples", (rng.lognormal(1.0, 0.5, size=100), 95))
    yield Case("p99 of 7 samples (the largest)", (rng.lognormal(1.0, 0.5, size=7), 99))
    yield Case("one sample", (np.array([3.25]), 50))
    yield Case("p100 is the maximum", (lat, 100))
    yield Case("ties: [5, 1, 5, 5, 2], p50", (np.array([5.0, 1.0, 5.0, 5.0, 2.0]), 50))
    yield Case("p0 is the minimum", (lat, 0))


function("18.2", "a latency percentile by the nearest-rank rule",
         reference=_nearest_rank, cases=_pct_cases, atol=0, rtol=0,
         hints=("A reported p99 is a latency some request really had: pick one of the samples, do not interpolate "
                "between two (np.percentile's default does).",
                "Sort the samples. The nearest rank is the smallest k with k ≥ q·n/100 (round up); p0 is the "
                "smallest sample.",
                "Ranks count from 1, Python indexes from 0."))


# ---------------------------------------------------------------------------------------- 18.3 KS statistic


def _ks(a, b):
    from scipy import stats
    return float(stats.ks_2samp(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)).statistic)


def _ks_cases(rng):
    n, m = int(rng.integers(20, 200)), int(rng.integers(20, 200))
    yield Case(f"two normal samples ({n} and {m} values)", (rng.normal(size=n), rng.normal(size=m)))
    yield Case("a shifted sample", (rng.normal(size=n), rng.normal(0.7, 1.0, size=m)))
    yield Case("a wider sample (same mean)", (rng.normal(size=n), rng.normal(0, 2.5, size=m)))
    x = rng.normal(size=40)
    yield Case("identical samples (statistic 0)", (x, x.copy()))
    yield Case("many ties (small integers)", (rng.integers(0, 5, size=60).astype(float),
                                             rng.integers(1, 6, size=45).astype(float)))
    yield Case("one value against many", (np.array([0.3]), rng.normal(size=30)))
    yield Case("samples that do not overlap: a = [3, 4], b = [1, 2] (statistic 1)",
               (np.array([3.0, 4.0]), np.array([1.0, 2.0])))


function("18.3", "the two-sample Kolmogorov–Smirnov statistic",
         reference=_ks, cases=_ks_cases, atol=1e-12,
         hints=("The statistic is the largest vertical gap between the two empirical CDFs.",
                "Both CDFs only jump at observed values: evaluate both at every value of either sample "
                "(np.searchsorted on the sorted samples counts how many are ≤ x).",
                "Each CDF divides by its own sample's size: the two samples may differ in length."))


# ---------------------------------------------------------------------------------- 18.4 micro-batching


def _microbatches(arrivals_ms, max_batch, max_wait_ms):
    t = sorted(float(v) for v in arrivals_ms)
    sizes, i = [], 0
    while i < len(t):
        j = i + 1
        while j < len(t) and j - i < max_batch and t[j] <= t[i] + max_wait_ms:
            j += 1
        sizes.append(j - i)
        i = j
    return sizes


def _mb_cases(rng):
    # the small fixed cases first, so that each kind of mistake is named by the simplest case that shows it
    yield Case("a single request", (np.array([4.2]), 8, 2.0))
    yield Case("a burst of 10 at once, max_batch 4", (np.zeros(10), 4, 5.0))
    yield Case("requests 10 ms apart, wait 2 ms (no batching happens)", (np.arange(6) * 10.0, 16, 2.0))
    yield Case("evenly every 1 ms, wait 2.5 ms (the wait counts from a batch's FIRST request)",
               (np.arange(12) * 1.0, 100, 2.5))
    yield Case("max_wait 0: only simultaneous requests share a batch", (np.array([0.0, 0.0, 1.0, 1.0, 1.0, 3.0]), 8, 0.0))
    n = int(rng.integers(30, 120))
    arrivals = np.cumsum(rng.exponential(0.8, size=n))
    yield Case(f"{n} requests arriving at random (mean gap 0.8 ms), max_batch 8, wait 2 ms", (arrivals, 8, 2.0))
    yield Case("the same arrivals shuffled (sort them first)", (rng.permutation(arrivals), 8, 2.0))


def _same_sizes(got, want):
    try:
        got = [int(v) for v in got]
    except (TypeError, ValueError):
        return f"should be a list of batch sizes (ints), got {type(got).__name__}"
    if got == want:
        return None
    if sum(got) != sum(want):
        return f"its batches hold {sum(got)} requests in all, but there are {sum(want)}"
    cut = lambda v: f"{v[:12]}{' …' if len(v) > 12 else ''}"  # noqa: E731
    return f"gives batch sizes {cut(got)}, expected {cut(want)}"


function("18.4", "batch sizes of the dynamic micro-batching policy",
         reference=_microbatches, cases=_mb_cases, same=_same_sizes,
         hints=("Walk through the arrivals in time order; each batch starts with the first request that is not "
                "in a batch yet.",
                "A batch takes the following requests while it has room (max_batch) and they arrive no later than "
                "max_wait_ms after the batch's first request.",
                "The wait is measured from the batch's first request, not from the previous one."))
