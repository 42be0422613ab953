"""Lesson 05: its exercises reject typical mistakes, and the threshold is chosen on validation data only."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score

import kit.metrics as km
from kit.exercises import verdict

SRC = Path(__file__).resolve().parents[1] / "notebooks" / "src" / "05_evaluation.py"


def _scores(rng, y, noise=1.5):
    return 1 / (1 + np.exp(-(2.0 * (2 * y - 1) + rng.normal(0, noise, len(y)))))


# ------------------------------------------------------------------------------- reference answers pass


def f1_right(tp, fp, fn):
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def counts_right(y, s, t):
    p, y = np.asarray(s) >= t, np.asarray(y) == 1
    return int((p & y).sum()), int((p & ~y).sum()), int((~p & ~y).sum()), int((~p & y).sum())


def pick_right(y, s, mp):
    y, s = np.asarray(y), np.asarray(s)
    for t in np.unique(s):
        if y[s >= t].mean() >= mp:
            return float(t)
    return float("inf")


def folds_right(y, k):
    y = np.asarray(y)
    f = np.empty(len(y), dtype=int)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        f[idx] = np.arange(len(idx)) % k
    return f


@pytest.mark.parametrize("rep", range(3))
def test_right_answers_pass_on_fresh_inputs(rep):
    assert verdict("05.1", f1_right) is None
    assert verdict("05.2", counts_right) is None
    assert verdict("05.3", pick_right) is None
    assert verdict("05.4", folds_right) is None


# ------------------------------------------------------------------------------- typical wrong answers fail


def test_f1_mistakes_fail_naming_the_case():
    def arithmetic_mean(tp, fp, fn):
        return 0.0 if tp == 0 else (tp / (tp + fp) + tp / (tp + fn)) / 2
    assert "tp=" in verdict("05.1", arithmetic_mean)

    def divides_by_zero(tp, fp, fn):
        p, r = tp / (tp + fp), tp / (tp + fn)
        return 2 * p * r / (p + r)
    msg = verdict("05.1", divides_by_zero)
    assert "tp = 0" in msg and "ZeroDivisionError" in msg


def test_counts_mistakes_fail_naming_the_case():
    def _strict(y, s, t):
        p, y = np.asarray(s) > t, np.asarray(y) == 1
        return int((p & y).sum()), int((p & ~y).sum()), int((~p & ~y).sum()), int((~p & y).sum())
    assert "exactly equal to the threshold" in verdict("05.2", _strict)

    def swapped(y, s, t):  # (tp, fn, tn, fp): the off-diagonal counts swapped
        tp, fp, tn, fn = counts_right(y, s, t)
        return tp, fn, tn, fp
    assert "case '" in verdict("05.2", swapped)


def test_pick_threshold_mistakes_fail_naming_the_case():
    def stops_at_first_failure(y, s, mp):  # assumes precision only grows with t: scans down from the top
        y, s = np.asarray(y), np.asarray(s)
        best = float("inf")
        for t in np.unique(s)[::-1]:
            if y[s >= t].mean() < mp:
                break
            best = float(t)
        return best
    msg = verdict("05.3", stops_at_first_failure)  # always wrong on the non-monotone case, often on random ones
    assert msg and "case '" in msg

    def returns_none(y, s, mp):
        y, s = np.asarray(y), np.asarray(s)
        ok = [t for t in np.unique(s) if y[s >= t].mean() >= mp]
        return float(min(ok)) if ok else None
    assert "no threshold meets it" in verdict("05.3", returns_none)

    def highest(y, s, mp):
        y, s = np.asarray(y), np.asarray(s)
        ok = [t for t in np.unique(s) if y[s >= t].mean() >= mp]
        return float(max(ok)) if ok else float("inf")
    assert "case '" in verdict("05.3", highest)


def test_stratified_folds_mistakes_fail_naming_the_case():
    def contiguous(y, k):  # KFold without shuffling: blocks of consecutive examples
        return (np.arange(len(y)) * k) // len(y)
    assert "spread unevenly" in verdict("05.4", contiguous)

    def one_based(y, k):
        return folds_right(y, k) + 1
    assert "0.." in verdict("05.4", one_based)


# ------------------------------------------------------------------------------- the teaching fix


def test_threshold_is_chosen_on_validation_only():
    rng = np.random.default_rng(0)
    y_val = rng.integers(0, 2, 200)
    s_val = _scores(rng, y_val)
    y_te = rng.integers(0, 2, 150)
    s_te = _scores(rng, y_te)
    rep = km.threshold_report(y_val, s_val, y_te, s_te)
    assert rep["threshold"] == km.choose_threshold(y_val, s_val)
    # any change to the test data leaves the choice as it was; only its test score moves
    for _ in range(5):
        y2 = rng.integers(0, 2, 150)
        other = km.threshold_report(y_val, s_val, y2, _scores(rng, y2, noise=3.0))
        assert other["threshold"] == rep["threshold"]
        assert other["validation"] == rep["validation"]
    # while changing the validation data does change it
    y3 = rng.integers(0, 2, 200)
    assert km.threshold_report(y3, _scores(rng, y3, 3.0), y_te, s_te)["threshold"] != rep["threshold"]
    # choose_threshold accepts nothing but validation labels and scores (keyword-only options)
    with pytest.raises(TypeError):
        km.choose_threshold(y_val, s_val, y_te)


def test_choose_threshold_maximises_validation_f1():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = _scores(rng, y)
    t = km.choose_threshold(y, s)
    best = max(f1_score(y, s >= u) for u in np.unique(s))
    assert f1_score(y, s >= t) == pytest.approx(best)
    assert t == min(u for u in np.unique(s) if f1_score(y, s >= u) == pytest.approx(best))
    g = np.linspace(0.05, 0.95, 19)
    assert km.choose_threshold(y, s, grid=g) in g


def test_tuning_on_the_scored_data_is_optimistic():
    """The lesson's resampling, with numbers: choosing on B and scoring B beats choosing on A and scoring B."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 228)
    s = _scores(rng, y, noise=2.0)
    gaps = []
    for _ in range(60):
        perm = rng.permutation(len(y))
        A, B = perm[:114], perm[114:]
        honest = km.binary_at_threshold(y[B], s[B], km.choose_threshold(y[A], s[A]))["f1"]
        leaky = km.binary_at_threshold(y[B], s[B], km.choose_threshold(y[B], s[B]))["f1"]
        gaps.append(leaky - honest)
    gaps = np.array(gaps)
    assert (gaps >= -1e-12).all() and gaps.mean() > 0.005


def test_lesson_chooses_on_validation_and_scores_test_once():
    src = SRC.read_text()
    code = src[: src.index("## Exercises")]
    assert re.search(r"km\.choose_threshold\(y_va, s_va", code)
    assert re.search(r"km\.threshold_report\(y_va, s_va, y_te, s_te", code)
    assert "ev.roc_pr(y_va, s_va, threshold)" in code  # the slider moves over validation scores
    assert "km.binary_at_threshold(y_va, s_va, t) for t in thresholds" in code  # and so does the sweep
    # before section 1b the test scores appear only where they are computed
    before = code[: code.index("### 1b.")]
    before = before.replace("y_te.mean()", "")  # the share of malignant tumours, printed for orientation
    assert before.count("s_te") == 1 and before.count("y_te") == 1


def test_f1_formula_shown_in_the_lesson():
    rng = np.random.default_rng(3)
    for _ in range(20):
        y, p = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
        tp, fp, tn, fn = counts_right(y, p, 1)
        P, R = precision_score(y, p, zero_division=0), tp / max(tp + fn, 1)
        want = f1_score(y, p, zero_division=0)
        assert f1_right(tp, fp, fn) == pytest.approx(want)
        if P + R > 0:
            assert 2 * P * R / (P + R) == pytest.approx(want)
        op = km.binary_at_threshold(y, p, 1)
        assert (op["tp"], op["fp"], op["tn"], op["fn"]) == (tp, fp, tn, fn)
        assert op["fpr"] == pytest.approx(fp / (fp + tn))


@pytest.mark.parametrize("metric", ["f1", "precision", "recall", "accuracy"])
def test_choose_threshold_agrees_with_binary_at_threshold(metric):
    rng = np.random.default_rng(4)
    for _ in range(5):
        y = rng.integers(0, 2, 80)
        s = np.round(_scores(rng, y), 2)  # ties included
        vals = [km.binary_at_threshold(y, s, u)[metric] for u in np.unique(s)]
        assert km.choose_threshold(y, s, metric=metric) == float(np.unique(s)[int(np.argmax(vals))])
