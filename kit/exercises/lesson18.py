"""Lesson 18 exercises: serving and monitoring — PSI bin by bin, a percentile from histogram buckets, the KS statistic of
weighted samples, micro-batching.

The references are private to this module, and none of them is one call away from a function the lesson binds
(``kit.serve.monitor`` returns PSI as one number and the unweighted KS statistic; these exercises ask for PSI's
contribution of every bin, computed from raw samples, and for the KS statistic of weighted samples).
"""
from __future__ import annotations

import math

import numpy as np

from kit.exercises import Case, function
from kit.exercises.declare import Budget, Headline, LessonEntry


# ------------------------------------------------------------------------------------------ 18.1 PSI by bin


def _psi_terms(expected_counts, actual_counts, eps):
    """Each bin's term of PSI, from the reference's and the live window's counts."""
    e = np.asarray(expected_counts, dtype=np.float64)
    a = np.asarray(actual_counts, dtype=np.float64)
    e = np.clip(e / e.sum(), eps, None)
    a = np.clip(a / a.sum(), eps, None)
    return (a - e) * np.log(a / e)


def _psi(expected_counts, actual_counts, eps):
    """PSI of two histograms (an independent check of ``kit.serve.monitor``'s, in tests/test_serve.py)."""
    return float(np.sum(_psi_terms(expected_counts, actual_counts, eps)))


def _psi_by_bin(reference, live, bins, eps):
    r = np.asarray(reference, dtype=np.float64)
    v = np.asarray(live, dtype=np.float64)
    edges = np.unique(np.quantile(r, np.linspace(0, 1, int(bins) + 1)[1:-1]))  # inner edges, each kept once
    e = np.bincount(np.searchsorted(edges, r, side="left"), minlength=len(edges) + 1)  # x == edge: the bin below
    a = np.bincount(np.searchsorted(edges, v, side="left"), minlength=len(edges) + 1)
    return _psi_terms(e, a, eps)


def _size(rng, lo, hi, bins):
    """A sample size n whose quantile positions q·(n − 1), q = k/bins, are never whole numbers: then no edge sits
    on a sample (up to rounding), and every correct way of computing the quantiles bins every value alike."""
    while True:
        n = int(rng.integers(lo, hi))
        if math.gcd(n - 1, bins) == 1:
            return n


def _psi_cases(rng):
    n, m = _size(rng, 150, 400, 10), int(rng.integers(80, 300))
    yield Case(f"a reference of {n} values, a shifted live window of {m}, 10 bins",
               (rng.normal(size=n), rng.normal(0.4, 1.0, size=m), 10, 1e-4))
    n = _size(rng, 150, 400, 10)
    yield Case(f"the same distribution, different sizes ({n} and {3 * n}), 10 bins",
               (rng.normal(size=n), rng.normal(size=3 * n), 10, 1e-4))
    x = rng.normal(size=_size(rng, 100, 300, 10))
    yield Case("identical samples (every bin 0)", (x, x.copy(), 10, 1e-4))
    k = int(rng.integers(4, 8))
    n = _size(rng, 100, 300, k)
    yield Case(f"a wider live window, {k} bins, eps 1e-3", (rng.normal(size=n), rng.normal(0, 2.0, size=150), k, 1e-3))
    n = _size(rng, 100, 300, 10)
    yield Case("a live window entirely above the reference (empty bins)",
               (rng.normal(size=n), rng.normal(5.0, 0.3, size=120), 10, 1e-4))
    yield Case("two bins: live values equal to the edge (the median 3 of [1, 2, 3, 4, 5])",
               (np.array([4.0, 1.0, 3.0, 5.0, 2.0]), np.array([3.0, 3.0, 3.0, 4.0]), 2, 1e-4))
    # like the ink fraction: a few values k/64, each many times, so several deciles fall on one value
    grid = np.arange(6) / 64
    n = _size(rng, 200, 400, 10)
    ref = np.concatenate([grid, rng.choice(grid, n - len(grid), p=[.05, .1, .4, .3, .1, .05])])
    yield Case("ties: values k/64 like the ink fraction (some edges repeat)",
               (rng.permutation(ref), rng.choice(np.arange(8) / 64, 150), 10, 1e-4))


function("18.1", "PSI bin by bin, from raw samples",
         reference=_psi_by_bin, cases=_psi_cases, atol=1e-9, rtol=1e-7,
         hints=("Work in three steps: the bin edges (from the reference alone), the counts of both samples in "
                "those bins, then one term per bin.",
                "Where the reference has many equal values, two quantiles can be the same number: keep such an "
                "edge once (np.unique), or a bin with no room in it appears. np.searchsorted's `side` decides "
                "where a value equal to an edge goes.",
                "Counts become shares of their own sample before anything else; a share below eps is raised to "
                "eps before the log."))


# ----------------------------------------------------------------- 18.2 a percentile from histogram buckets


def _histogram_quantile(q, upper_bounds, cumulative_counts):
    """Prometheus's ``histogram_quantile`` (promql/quantile.go, bucketQuantile) for ``q`` in (0, 1]."""
    le = np.asarray(upper_bounds, dtype=np.float64)
    cum = np.asarray(cumulative_counts, dtype=np.float64)
    rank = q * cum[-1]
    b = next((i for i in range(len(le) - 1) if cum[i] >= rank), len(le) - 1)
    if b == len(le) - 1:                      # the rank is in the +Inf bucket: its finite lower bound
        return float(le[-2])
    if b == 0 and le[0] <= 0:
        return float(le[0])
    start, count = (le[b - 1], cum[b] - cum[b - 1]) if b > 0 else (0.0, cum[0])
    rank -= cum[b - 1] if b > 0 else 0.0
    return float(start + (le[b] - start) * rank / count)


_LE = np.array([5.0, 10, 25, 50, 100, 250, 500, 1000, np.inf])   # upper bounds (ms), as a service declares them


def _hq_cases(rng):
    inf = np.inf
    # fixed cases: each separates Prometheus's rule from a near miss (interpolating between bucket midpoints or
    # upper bounds, np.interp over the cumulative counts, counting the +Inf bucket as finite, not cumulating)
    yield Case("q = 0.6, counts 2, 4, 8, 8 (the rank is inside the third bucket)",
               (0.6, np.array([1.0, 2.0, 4.0, inf]), np.array([2.0, 4.0, 8.0, 8.0])))
    yield Case("q = 0.25 with the rank exactly at the end of the first bucket, then empty buckets",
               (0.25, np.array([1.0, 2.0, 4.0, 8.0, inf]), np.array([2.0, 2.0, 2.0, 8.0, 8.0])))
    yield Case("q = 0.5, the rank lands exactly on a bucket's cumulative count before an empty bucket",
               (0.5, np.array([10.0, 20.0, 30.0, inf]), np.array([1.0, 3.0, 3.0, 6.0])))
    yield Case("q = 0.99 with a tenth of the requests above the last finite bound (the +Inf bucket)",
               (0.99, np.array([0.1, 0.5, 1.0, inf]), np.array([50.0, 80.0, 90.0, 100.0])))
    yield Case("q = 1 (the largest finite bound when nothing is in +Inf)",
               (1.0, np.array([1.0, 2.0, 3.0, inf]), np.array([1.0, 5.0, 7.0, 7.0])))
    yield Case("a first bucket with a negative upper bound",
               (0.1, np.array([-1.0, 0.0, 1.0, inf]), np.array([3.0, 5.0, 9.0, 10.0])))
    yield Case("one request", (0.5, np.array([1.0, 2.0, inf]), np.array([0.0, 1.0, 1.0])))
    lat = rng.lognormal(3.5, 0.9, size=int(rng.integers(200, 2000)))
    cum = np.array([(lat <= b).sum() for b in _LE], dtype=np.float64)
    for q in (0.5, 0.9, 0.95, 0.99):
        yield Case(f"q = {q} of {int(cum[-1])} random latencies in the buckets {list(_LE[:-1])}", (q, _LE, cum))
    q = float(rng.uniform(0.05, 1.0))
    yield Case(f"a random q = {q:.3f}", (q, _LE, cum))


function("18.2", "a percentile from cumulative histogram buckets, as Prometheus computes it",
         reference=_histogram_quantile, cases=_hq_cases, atol=1e-9, rtol=1e-12,
         hints=("The answer lies in the first bucket whose cumulative count reaches the rank q·(total); inside it, "
                "assume the requests are spread evenly between the bucket's lower and upper bound.",
                "A bucket's lower bound is the previous bucket's upper bound (0 for the first, unless its upper "
                "bound is ≤ 0). How many requests of the rank lie inside the chosen bucket?",
                "The last bucket's upper bound is +∞: no point can be interpolated there."))


# ------------------------------------------------------------------------------ 18.3 KS of weighted samples


def _weighted_ks(a, wa, b, wb):
    x = np.concatenate([np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)])

    def cdf(v, w):  # the share of the total weight on values ≤ each x
        v, w = np.asarray(v, dtype=np.float64), np.asarray(w, dtype=np.float64)
        order = np.argsort(v, kind="stable")
        cum = np.concatenate([[0.0], np.cumsum(w[order])]) / w.sum()
        return cum[np.searchsorted(v[order], x, side="right")]
    return float(np.max(np.abs(cdf(a, wa) - cdf(b, wb))))


def _ks_cases(rng):
    n, m = int(rng.integers(20, 200)), int(rng.integers(20, 200))
    yield Case(f"two normal samples ({n} and {m} values), random weights",
               (rng.normal(size=n), rng.uniform(0.1, 2.0, n), rng.normal(size=m), rng.uniform(0.1, 2.0, m)))
    age = np.arange(m)[::-1]  # the newest request last, with weight 1
    yield Case("a shifted sample whose weights halve every 50 requests",
               (rng.normal(size=n), np.ones(n), rng.normal(0.5, 1.0, size=m), 0.5 ** (age / 50)))
    yield Case("a wider sample (same mean), random weights",
               (rng.normal(size=n), rng.uniform(0.1, 2.0, n), rng.normal(0, 2.5, size=m), rng.uniform(0.1, 2.0, m)))
    yield Case("equal weights (the ordinary two-sample statistic)",
               (rng.normal(size=n), np.ones(n), rng.normal(0.3, 1.0, size=m), np.ones(m)))
    x, w = rng.normal(size=40), rng.uniform(0.1, 2.0, 40)
    yield Case("the same sample, its weights times 7 (statistic 0)", (x, w, x.copy(), 7 * w))
    yield Case("the same values, other weights", (x, w, x.copy(), rng.uniform(0.1, 2.0, 40)))
    yield Case("many ties (small integers), random weights",
               (rng.integers(0, 5, size=60).astype(float), rng.uniform(0.1, 2.0, 60),
                rng.integers(1, 6, size=45).astype(float), rng.uniform(0.1, 2.0, 45)))
    yield Case("one value against many", (np.array([0.3]), np.array([2.5]), rng.normal(size=30), rng.uniform(0.1, 2.0, 30)))
    yield Case("samples that do not overlap: a = [3, 4], b = [1, 2] (statistic 1)",
               (np.array([3.0, 4.0]), np.array([1.0, 3.0]), np.array([1.0, 2.0]), np.array([0.5, 0.5])))


function("18.3", "the Kolmogorov–Smirnov statistic of two weighted samples",
         reference=_weighted_ks, cases=_ks_cases, atol=1e-12,
         hints=("The statistic is the largest vertical gap between the two weighted empirical CDFs; start from how "
                "you would compute it with every weight 1, then let each value count with its weight.",
                "Both CDFs only jump at observed values: evaluating both at every value of either sample is enough. "
                "When you sort a sample, its weights must move with their values.",
                "A CDF at x is a share: the weight of the values ≤ x over the sample's total weight — and ≤ counts "
                "every value tied with x."))


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


function("18.4", "batch sizes of a simplified micro-batching policy (model calls take no time)",
         reference=_microbatches, cases=_mb_cases, same=_same_sizes,
         hints=("Walk through the arrivals in time order; each batch starts with the first request that is not "
                "in a batch yet.",
                "A batch takes the following requests while it has room (max_batch) and they arrive no later than "
                "max_wait_ms after the batch's first request.",
                "The wait is measured from the batch's first request, not from the previous one."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    return (m["bad_requests_sent"] >= 10 and m["bad_requests_rejected"] == m["bad_requests_sent"]
            and m["drift_alert_clean"] is False and m["drift_alert_shifted"] is True
            and m["psi_min_shifted"] > m["psi_max_clean"] and m["acc_reference"] > 0.7
            and m["acc_last_window"] < m["acc_reference"] and m["server_stopped"] is True)


LESSON = LessonEntry(
    number='18', name='serving_monitoring', title='Serving and monitoring',
    goal='An HTTP model service load-tested (p50/p99) with Prometheus metrics and drift alerts.',
    teaches='a model in service: `kit serve MODEL` — FastAPI + uvicorn over an ONNX Runtime session (`POST '
            '/predict`, `GET /health`, `GET /metrics` in Prometheus text), every bad request (malformed JSON, wrong '
            'shape or type, NaN/inf, empty or oversized batch or body) answered with a clear 4xx while it keeps '
            'serving; an async load test at 1…64 concurrent clients: throughput and p50/p95/p99, dynamic '
            'micro-batching on vs off; **monitoring**: a reference window, then clean, noisy, rotated and class-mix '
            'windows — PSI and KS (scipy) on input statistics and predictions, the reference and live windows drawn '
            'from disjoint halves of the images; alerts on the shifted windows, the **false-alarm rate** over 200 '
            "pairs of disjoint clean windows (0 of 200 at defaults) and PSI's sampling floor at the window size "
            "(median 0.09 for the largest of a window's PSIs), accuracy decay seen when delayed labels arrive; "
            'exercises: PSI bin by bin from raw samples, a p99 from histogram buckets as Prometheus computes it, the '
            'KS statistic of weighted samples, a simplified micro-batching policy; one dashboard',
    data='8×8 digits (scikit-learn, real); a wide MLP trained and exported in the lesson',
    metrics=(
        Headline('p99_ms', 'p99 latency (ms)', None, 'lower'),
        Headline('bad_requests_rejected', 'bad requests rejected', 'bad_requests_sent', 'equal'),
        Headline('drift_alert_shifted', 'drift alert on shifted traffic', True),
        Headline('drift_alert_clean', 'drift alert on clean traffic', False),
    ),
    smoke_bar=smoke_bar,
    budget=Budget(smoke_s=30),  # a smoke run took 20 s on a quiet 2-core machine
)
