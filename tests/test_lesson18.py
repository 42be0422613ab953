"""Lesson 18's exercises: right answers pass on fresh inputs, plausible wrong ones fail naming the case; the
formulas the lesson shows (PSI, KS, nearest-rank percentile, the micro-batching policy) checked by hand/scipy."""
from __future__ import annotations

import math

import numpy as np
import pytest

from kit.exercises import verdict
from kit.exercises import lesson18 as L


# ------------------------------------------------------------------------------------------------- 18.1


def psi_right(expected_counts, actual_counts, eps):
    e = np.asarray(expected_counts, float)
    a = np.asarray(actual_counts, float)
    e, a = np.maximum(e / e.sum(), eps), np.maximum(a / a.sum(), eps)
    return float(((a - e) * np.log(a / e)).sum())


def psi_on_counts(expected_counts, actual_counts, eps):  # forgets to turn counts into shares
    e = np.maximum(np.asarray(expected_counts, float), eps)
    a = np.maximum(np.asarray(actual_counts, float), eps)
    return float(((a - e) * np.log(a / e)).sum())


def psi_no_eps(expected_counts, actual_counts, eps):  # an empty bin gives inf or nan
    e = np.asarray(expected_counts, float) / np.sum(expected_counts)
    a = np.asarray(actual_counts, float) / np.sum(actual_counts)
    with np.errstate(all="ignore"):
        return float(((a - e) * np.log(a / e)).sum())


def psi_kl_only(expected_counts, actual_counts, eps):  # KL(a‖e), half of the symmetric sum
    e = np.maximum(np.asarray(expected_counts, float) / np.sum(expected_counts), eps)
    a = np.maximum(np.asarray(actual_counts, float) / np.sum(actual_counts), eps)
    return float((a * np.log(a / e)).sum())


def psi_eps_added(expected_counts, actual_counts, eps):  # adds eps instead of raising to it: off on every bin
    e = np.asarray(expected_counts, float) / np.sum(expected_counts) + eps
    a = np.asarray(actual_counts, float) / np.sum(actual_counts) + eps
    return float(((a - e) * np.log(a / e)).sum())


def test_18_1_right_answer_passes_repeatedly():
    for _ in range(5):
        assert verdict("18.1", psi_right) is None


@pytest.mark.parametrize("wrong,case", [(psi_on_counts, "different totals"), (psi_no_eps, "empty bin"),
                                        (psi_kl_only, "random histograms"), (psi_eps_added, "random histograms")])
def test_18_1_wrong_answers_fail_naming_the_case(wrong, case):
    why = verdict("18.1", wrong)
    assert why is not None and why.startswith("on the case '"), why
    assert any(c in why for c in ((case,) if isinstance(case, str) else case)), why


def test_psi_formula_by_hand():
    # shares e = (.5, .3, .2), a = (.2, .3, .5): PSI = 2 · 0.3 · ln 2.5
    assert L._psi([50, 30, 20], [2, 3, 5], 1e-4) == pytest.approx(0.6 * math.log(2.5), rel=1e-12)
    assert L._psi([1, 1], [1, 0], 1e-4) == pytest.approx((1 - .5) * math.log(1 / .5) + (1e-4 - .5) * math.log(1e-4 / .5))


# ------------------------------------------------------------------------------------------------- 18.2


def pct_right(samples_ms, q):
    s = sorted(samples_ms)
    return float(s[max(math.ceil(q * len(s) / 100), 1) - 1])


def pct_numpy(samples_ms, q):  # linear interpolation between samples
    return float(np.percentile(samples_ms, q))


def pct_floor(samples_ms, q):  # rounds the rank down
    s = sorted(samples_ms)
    return float(s[min(int(q * len(s) / 100), len(s) - 1)])


def pct_unsorted(samples_ms, q):  # forgets to sort
    s = list(samples_ms)
    return float(s[max(math.ceil(q * len(s) / 100), 1) - 1])


def test_18_2_right_answer_passes_repeatedly():
    for _ in range(5):
        assert verdict("18.2", pct_right) is None


@pytest.mark.parametrize("wrong,case", [(pct_numpy, ("random latencies", "a hundred")), (pct_floor, ("random latencies", "a hundred")),
                                        (pct_unsorted, "unsorted")])
def test_18_2_wrong_answers_fail_naming_the_case(wrong, case):
    why = verdict("18.2", wrong)
    assert why is not None and why.startswith("on the case '"), why
    assert any(c in why for c in ((case,) if isinstance(case, str) else case)), why


def test_nearest_rank_by_hand():
    x = [15, 20, 35, 40, 50]  # the textbook example: p30 = 20, p40 = 20, p50 = 35, p100 = 50
    assert [L._nearest_rank(x, q) for q in (5, 30, 40, 50, 100, 0)] == [15, 20, 20, 35, 50, 15]


# ------------------------------------------------------------------------------------------------- 18.3


def ks_right(a, b):
    a, b = np.sort(a), np.sort(b)
    x = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, x, "right") / len(a) - np.searchsorted(b, x, "right") / len(b)).max())


def ks_one_size(a, b):  # divides both counts by the size of a
    a, b = np.sort(a), np.sort(b)
    x = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, x, "right") / len(a) - np.searchsorted(b, x, "right") / len(a)).max())


def ks_only_at_a(a, b):  # evaluates the CDFs at a's values only
    a, b = np.sort(a), np.sort(b)
    return float(np.abs(np.searchsorted(a, a, "right") / len(a) - np.searchsorted(b, a, "right") / len(b)).max())


def ks_mean_gap(a, b):  # a mean difference, not a CDF gap
    return float(abs(np.mean(a) - np.mean(b)))


def test_18_3_right_answer_passes_repeatedly():
    for _ in range(5):
        assert verdict("18.3", ks_right) is None


@pytest.mark.parametrize("wrong,case", [(ks_one_size, ("normal samples", "shifted", "wider", "ties")),
                                        (ks_only_at_a, ("normal samples", "shifted", "wider", "one value", "overlap")),
                                        (ks_mean_gap, "normal samples")])
def test_18_3_wrong_answers_fail_naming_the_case(wrong, case):
    why = verdict("18.3", wrong)
    assert why is not None and why.startswith("on the case '"), why
    assert any(c in why for c in ((case,) if isinstance(case, str) else case)), why


def test_ks_statistic_by_hand_and_against_scipy():
    # a = {1, 2}, b = {3}: F_a reaches 1 at 2 while F_b is still 0
    assert L._ks([1.0, 2.0], [3.0]) == 1.0
    assert L._ks([1.0, 3.0], [2.0, 4.0]) == 0.5
    from scipy import stats
    a, b = np.random.default_rng(0).normal(size=(2, 50))
    assert ks_right(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic)


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
    for _ in range(5):
        assert verdict("18.4", mb_right) is None


@pytest.mark.parametrize("wrong,case", [(mb_from_previous, "FIRST request"), (mb_no_cap, "burst"),
                                        (mb_unsorted, "shuffled")])
def test_18_4_wrong_answers_fail_naming_the_case(wrong, case):
    why = verdict("18.4", wrong)
    assert why is not None and why.startswith("on the case '"), why
    assert any(c in why for c in ((case,) if isinstance(case, str) else case)), why


def test_micro_batch_policy_by_hand():
    assert L._microbatches([0, 1, 2, 3, 4, 5], 100, 2.5) == [3, 3]
    assert L._microbatches([0, 0, 0, 0, 0], 2, 1.0) == [2, 2, 1]
    assert L._microbatches([0, 10, 20], 4, 2.0) == [1, 1, 1]
    assert L._microbatches([], 4, 2.0) == []
