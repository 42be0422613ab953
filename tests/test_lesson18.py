"""Lesson 18's exercises: right answers pass on fresh inputs, plausible wrong ones fail naming the case, and no
one-call answer from the lesson's namespace (kit.serve.monitor, scipy.stats, numpy's percentile) passes; the
formulas the lesson shows (PSI, KS, a percentile from histogram buckets, the micro-batching policy) checked by hand/scipy."""
from __future__ import annotations

import math

import numpy as np
import pytest

from kit.exercises import verdict
from kit.exercises import lesson18 as L
from kit.serve import monitor

REPEAT = 5  # right answers: fresh cases each time (when the cases change, run this file's checks 100×)


def fails_naming(id, fn, names):
    why = verdict(id, fn)
    assert why is not None and why.startswith("on the case '"), why
    assert any(c in why for c in ((names,) if isinstance(names, str) else names)), why


# ------------------------------------------------------------------------------------------------- 18.1


def _shares(counts, eps):
    c = np.asarray(counts, float)
    return np.maximum(c / c.sum(), eps)


def psi_right(reference, live, bins, eps):
    edges = np.unique(np.quantile(reference, np.arange(1, bins) / bins))
    e = _shares(np.bincount(np.searchsorted(edges, reference), minlength=len(edges) + 1), eps)
    a = _shares(np.bincount(np.searchsorted(edges, live), minlength=len(edges) + 1), eps)
    return (a - e) * np.log(a / e)


def psi_right_with_monitor(reference, live, bins, eps):  # the monitor's binning, the formula by hand
    edges = monitor.quantile_edges(reference, bins)
    e = _shares(monitor.histogram(reference, edges), eps)
    a = _shares(monitor.histogram(live, edges), eps)
    return (a - e) * np.log(a / e)


def psi_right_digitize(reference, live, bins, eps):  # percentiles, np.digitize(right=True), a Python loop
    edges = sorted(set(np.percentile(reference, [100 * k / bins for k in range(1, bins)]).tolist()))
    ce = np.bincount(np.digitize(reference, edges, right=True), minlength=len(edges) + 1)
    ca = np.bincount(np.digitize(live, edges, right=True), minlength=len(edges) + 1)
    out = []
    for x, y in zip(ce / ce.sum(), ca / ca.sum()):
        x, y = max(x, eps), max(y, eps)
        out.append((y - x) * math.log(y / x))
    return out


def psi_no_eps(reference, live, bins, eps):  # an empty bin gives inf or nan
    edges = np.unique(np.quantile(reference, np.arange(1, bins) / bins))
    e = np.bincount(np.searchsorted(edges, reference), minlength=len(edges) + 1) / len(reference)
    a = np.bincount(np.searchsorted(edges, live), minlength=len(edges) + 1) / len(live)
    with np.errstate(all="ignore"):
        return (a - e) * np.log(a / e)


def psi_on_counts(reference, live, bins, eps):  # forgets to turn counts into shares
    edges = np.unique(np.quantile(reference, np.arange(1, bins) / bins))
    e = np.maximum(np.bincount(np.searchsorted(edges, reference), minlength=len(edges) + 1), eps)
    a = np.maximum(np.bincount(np.searchsorted(edges, live), minlength=len(edges) + 1), eps)
    return (a - e) * np.log(a / e)


def psi_pooled_edges(reference, live, bins, eps):  # bins from both samples, not from the reference
    pooled = np.concatenate([reference, live])
    return _psi_with_edges(np.unique(np.quantile(pooled, np.arange(1, bins) / bins)), reference, live, eps)


def psi_equal_width(reference, live, bins, eps):  # equal-width bins over the reference's range
    return _psi_with_edges(np.linspace(np.min(reference), np.max(reference), bins + 1)[1:-1], reference, live, eps)


def psi_repeated_edges(reference, live, bins, eps):  # keeps repeated edges: empty bins of no width
    return _psi_with_edges(np.quantile(reference, np.arange(1, bins) / bins), reference, live, eps)


def psi_edge_goes_up(reference, live, bins, eps):  # a value equal to an edge counted in the bin above
    return _psi_with_edges(np.unique(np.quantile(reference, np.arange(1, bins) / bins)), reference, live, eps,
                           side="right")


def psi_kl_only(reference, live, bins, eps):  # KL(a‖e): half of the symmetric sum
    edges = np.unique(np.quantile(reference, np.arange(1, bins) / bins))
    e = _shares(np.bincount(np.searchsorted(edges, reference), minlength=len(edges) + 1), eps)
    a = _shares(np.bincount(np.searchsorted(edges, live), minlength=len(edges) + 1), eps)
    return a * np.log(a / e)


def psi_eps_added(reference, live, bins, eps):  # adds eps instead of raising to it: off on every bin
    edges = np.unique(np.quantile(reference, np.arange(1, bins) / bins))
    e = np.bincount(np.searchsorted(edges, reference), minlength=len(edges) + 1) / len(reference) + eps
    a = np.bincount(np.searchsorted(edges, live), minlength=len(edges) + 1) / len(live) + eps
    return (a - e) * np.log(a / e)


def psi_total(reference, live, bins, eps):  # the sum, not the bins (what the monitor already computes)
    return monitor.psi_of_samples(reference, live, bins=bins, eps=eps)


def _psi_with_edges(edges, reference, live, eps, side="left"):
    e = _shares(np.bincount(np.searchsorted(edges, reference, side), minlength=len(edges) + 1), eps)
    a = _shares(np.bincount(np.searchsorted(edges, live, side), minlength=len(edges) + 1), eps)
    return (a - e) * np.log(a / e)


@pytest.mark.parametrize("right", [psi_right, psi_right_with_monitor, psi_right_digitize])
def test_18_1_right_answers_pass_repeatedly(right):
    for _ in range(REPEAT):
        assert verdict("18.1", right) is None


@pytest.mark.parametrize("wrong,case", [
    (psi_no_eps, ("empty bins", "ties", "shifted", "different sizes", "wider")),  # wherever a bin is empty
    (psi_on_counts, ("shifted", "different sizes")),
    (psi_pooled_edges, "shifted"), (psi_equal_width, "shifted"), (psi_repeated_edges, "ties"),
    (psi_edge_goes_up, "equal to the edge"), (psi_kl_only, "shifted"), (psi_eps_added, "shifted"),
    (psi_total, "shifted")])
def test_18_1_wrong_answers_fail_naming_the_case(wrong, case):
    fails_naming("18.1", wrong, case)


def test_psi_by_bin_adds_up_to_the_monitors_psi():
    rng = np.random.default_rng(0)
    for _ in range(20):
        r, v = rng.normal(size=int(rng.integers(50, 400))), rng.normal(0.3, 1.2, size=int(rng.integers(50, 400)))
        assert L._psi_by_bin(r, v, 10, 1e-4).sum() == pytest.approx(monitor.psi_of_samples(r, v), rel=1e-12)
    # by hand: reference [1..5], 2 bins at its median 3: shares (3/5, 2/5); live [3, 3, 3, 4]: (3/4, 1/4)
    got = L._psi_by_bin([4, 1, 3, 5, 2], [3, 3, 3, 4], 2, 1e-4)
    assert got == pytest.approx([(.75 - .6) * math.log(.75 / .6), (.25 - .4) * math.log(.25 / .4)], rel=1e-12)
    # repeated edges are kept once: the 9 deciles of 100 × each of 0, 1, 2 are the edges 0, 1, 2 → 4 bins
    assert len(L._psi_by_bin(np.repeat([0.0, 1.0, 2.0], 100), [0.0, 1.0, 2.0], 10, 1e-4)) == 4


# ------------------------------------------------------------------------------------------------- 18.2


def hq_right(q, le, cum):
    le, cum = list(le), list(cum)
    rank = q * cum[-1]
    b = next(i for i in range(len(le)) if i == len(le) - 1 or cum[i] >= rank)
    if b == len(le) - 1:
        return le[-2]
    if b == 0 and le[0] <= 0:
        return le[0]
    lo, below = (le[b - 1], cum[b - 1]) if b else (0.0, 0.0)
    return lo + (le[b] - lo) * (rank - below) / (cum[b] - below)


def hq_interp(q, le, cum):  # np.interp over the cumulative counts: wrong where a bucket is empty
    return float(np.interp(q * cum[-1], np.r_[0, cum[:-1]], np.r_[0, le[:-1]]))


def hq_upper(q, le, cum):  # the chosen bucket's upper bound, no interpolation
    b = next(i for i in range(len(le)) if cum[i] >= q * cum[-1])
    return float(le[b] if np.isfinite(le[b]) else le[b - 1])


def hq_not_cumulative(q, le, cum):  # treats the counts as per-bucket counts
    return hq_right(q, le, np.cumsum(cum))


def hq_first_lower_is_upper(q, le, cum):  # ignores the ≤ 0 rule for the first bucket
    le = np.asarray(le, dtype=float)
    return hq_right(q, np.r_[abs(le[0]) + 1e-9 if le[0] <= 0 else le[0], le[1:]], cum)


def test_18_2_right_answer_passes_repeatedly():
    for _ in range(REPEAT):
        assert verdict("18.2", hq_right) is None


def test_18_2_reference_matches_prometheus_by_hand():
    # Prometheus's documented example shape: 100 requests, buckets 0.1/0.5/1/+Inf with 50/80/90/100
    assert L._histogram_quantile(0.5, [0.1, 0.5, 1.0, np.inf], [50, 80, 90, 100]) == pytest.approx(0.1)
    assert L._histogram_quantile(0.65, [0.1, 0.5, 1.0, np.inf], [50, 80, 90, 100]) == pytest.approx(0.3)
    assert L._histogram_quantile(0.95, [0.1, 0.5, 1.0, np.inf], [50, 80, 90, 100]) == 1.0


@pytest.mark.parametrize("wrong,case", [(hq_interp, "empty buckets"), (hq_upper, "third bucket"),
                                        (hq_not_cumulative, "third bucket"),
                                        (hq_first_lower_is_upper, "negative upper bound")])
def test_18_2_wrong_answers_fail_naming_the_case(wrong, case):
    fails_naming("18.2", wrong, case)


# ------------------------------------------------------------------------------------------------- 18.3


def _wcdf(v, w, x):
    v, w = np.asarray(v, float), np.asarray(w, float)
    o = np.argsort(v)
    cum = np.concatenate([[0.0], np.cumsum(w[o])]) / w.sum()
    return cum[np.searchsorted(v[o], x, "right")]


def ks_right(a, wa, b, wb):
    x = np.concatenate([a, b])
    return float(np.abs(_wcdf(a, wa, x) - _wcdf(b, wb, x)).max())


def ks_right_loop(a, wa, b, wb):  # a plain loop over the distinct values
    ta, tb = sum(wa), sum(wb)
    best = 0.0
    for x in sorted(set(a) | set(b)):
        fa = sum(w for v, w in zip(a, wa) if v <= x) / ta
        fb = sum(w for v, w in zip(b, wb) if v <= x) / tb
        best = max(best, abs(fa - fb))
    return best


def ks_unweighted(a, wa, b, wb):  # ignores the weights: the ordinary statistic
    from scipy import stats
    return float(stats.ks_2samp(a, b).statistic)


def ks_weights_left_behind(a, wa, b, wb):  # sorts the values but not their weights
    x = np.concatenate([a, b])

    def cdf(v, w):
        cum = np.concatenate([[0.0], np.cumsum(w)]) / np.sum(w)
        return cum[np.searchsorted(np.sort(v), x, "right")]
    return float(np.abs(cdf(a, wa) - cdf(b, wb)).max())


def ks_divides_by_count(a, wa, b, wb):  # the weights summed, but divided by the number of values
    x = np.concatenate([a, b])
    fa = _wcdf(a, wa, x) * np.sum(wa) / len(a)
    fb = _wcdf(b, wb, x) * np.sum(wb) / len(b)
    return float(np.abs(fa - fb).max())


def ks_walk_ignores_ties(a, wa, b, wb):  # one step per value in the merged order: a tie is split in two
    v = np.concatenate([a, b])
    step = np.concatenate([np.asarray(wa) / np.sum(wa), -np.asarray(wb) / np.sum(wb)])
    return float(np.abs(np.cumsum(step[np.argsort(v, kind="stable")])).max())


def ks_mean_gap(a, wa, b, wb):  # a weighted mean difference, not a CDF gap
    return float(abs(np.average(a, weights=wa) - np.average(b, weights=wb)))


@pytest.mark.parametrize("right", [ks_right, ks_right_loop])
def test_18_3_right_answers_pass_repeatedly(right):
    for _ in range(REPEAT):
        assert verdict("18.3", right) is None


@pytest.mark.parametrize("wrong,case", [
    (ks_unweighted, "random weights"), (ks_weights_left_behind, "random weights"),
    (ks_divides_by_count, "random weights"), (ks_walk_ignores_ties, ("times 7", "same values", "ties")),
    (ks_mean_gap, "random weights")])
def test_18_3_wrong_answers_fail_naming_the_case(wrong, case):
    fails_naming("18.3", wrong, case)


def test_weighted_ks_by_hand_and_against_scipy():
    from scipy import stats
    # a = {1, 2} with weights (3, 1), b = {2}: at 1, F_a = 3/4 and F_b = 0
    assert L._weighted_ks([1.0, 2.0], [3.0, 1.0], [2.0], [1.0]) == 0.75
    assert L._weighted_ks([3.0, 4.0], [1.0, 3.0], [1.0, 2.0], [0.5, 0.5]) == 1.0
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(0.3, 1, size=70)
    assert L._weighted_ks(a, np.ones(50), b, np.full(70, 2.5)) == pytest.approx(stats.ks_2samp(a, b).statistic)
    wa, wb = rng.integers(1, 5, 50), rng.integers(1, 5, 70)  # whole weights = repeated values
    assert L._weighted_ks(a, wa, b, wb) == pytest.approx(stats.ks_2samp(np.repeat(a, wa), np.repeat(b, wb)).statistic)


# ------------------------------------------------------------------------- one call away: none of them passes


def test_the_lessons_one_call_answers_fail():
    from scipy import stats
    for _ in range(20):
        assert verdict("18.1", monitor._psi) is not None
        assert verdict("18.1", lambda r, v, bins, eps: monitor.psi_of_samples(r, v, bins=bins, eps=eps)) is not None
        assert verdict("18.1", lambda r, v, bins, eps: monitor.psi_of_samples(r, v)) is not None
        assert verdict("18.3", lambda a, wa, b, wb: monitor.ks_test(a, b)[0]) is not None
        assert verdict("18.3", lambda a, b: monitor.ks_test(a, b)[0]) is not None
        assert verdict("18.3", lambda a, wa, b, wb: stats.ks_2samp(a, b).statistic) is not None
        assert verdict("18.3", lambda a, wa, b, wb: stats.kstest(a, b)[0]) is not None
        assert verdict("18.2", lambda s, q: float(np.percentile(s, q, method="nearest"))) is not None


# ------------------------------------------------------------------------------------------------- 18.4


def mb_right(arrivals_ms, max_batch, max_wait_ms):
    t = sorted(arrivals_ms)
    out, i = [], 0
    while i < len(t):
        j = i
        while j < len(t) and j - i < max_batch and t[j] - t[i] <= max_wait_ms:
            j += 1
        out.append(j - i)
        i = j
    return out


def mb_from_previous(arrivals_ms, max_batch, max_wait_ms):  # measures the wait from the previous request
    t = sorted(arrivals_ms)
    out, i = [], 0
    while i < len(t):
        j = i + 1
        while j < len(t) and j - i < max_batch and t[j] - t[j - 1] <= max_wait_ms:
            j += 1
        out.append(j - i)
        i = j
    return out


def mb_no_cap(arrivals_ms, max_batch, max_wait_ms):  # ignores max_batch
    return mb_right(arrivals_ms, 10 ** 9, max_wait_ms)


def mb_unsorted(arrivals_ms, max_batch, max_wait_ms):  # trusts the order it is given
    t = list(arrivals_ms)
    out, i = [], 0
    while i < len(t):
        j = i + 1
        while j < len(t) and j - i < max_batch and t[j] - t[i] <= max_wait_ms:
            j += 1
        out.append(j - i)
        i = j
    return out


def test_18_4_right_answer_passes_repeatedly():
    for _ in range(REPEAT):
        assert verdict("18.4", mb_right) is None


@pytest.mark.parametrize("wrong,case", [(mb_from_previous, "FIRST request"), (mb_no_cap, "burst"),
                                        (mb_unsorted, "shuffled")])
def test_18_4_wrong_answers_fail_naming_the_case(wrong, case):
    fails_naming("18.4", wrong, case)


def test_micro_batch_policy_by_hand():
    assert L._microbatches([0, 1, 2, 3, 4, 5], 100, 2.5) == [3, 3]
    assert L._microbatches([0, 0, 0, 0, 0], 2, 1.0) == [2, 2, 1]
    assert L._microbatches([0, 10, 20], 4, 2.0) == [1, 1, 1]
    assert L._microbatches([], 4, 2.0) == []
