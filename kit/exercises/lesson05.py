"""Lesson 05 exercises: honest evaluation — F1, confusion counts, a threshold chosen on validation, stratified folds."""
from __future__ import annotations

import numpy as np

from kit.exercises import Case, function
from kit.exercises.declare import Budget, Headline, LessonEntry


# ------------------------------------------------------------------------------------------ 05.1


def _f1(tp, fp, fn):
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def _f1_cases(rng):
    tp, fp, fn = (int(v) for v in rng.integers(1, 200, 3))
    # precision and recall at least 10 % apart: when they are (nearly) equal, so is their plain average to F1
    # (within the tolerance); 10 % apart, it is ≥ 0.28 % off
    while 10 * abs(fp - fn) < max(tp + fp, tp + fn):
        fn = int(rng.integers(1, 200))
    yield Case(f"tp={tp}, fp={fp}, fn={fn}", (tp, fp, fn))
    yield Case("perfect: fp = fn = 0", (int(rng.integers(1, 50)), 0, 0))
    yield Case("tp = 0 (nothing caught): F1 = 0", (0, int(rng.integers(1, 20)), int(rng.integers(1, 20))))
    yield Case("tp = fp = 0 (nothing flagged, precision undefined): F1 = 0", (0, 0, int(rng.integers(1, 20))))
    yield Case("tp = fp = fn = 0 (no positives anywhere): F1 = 0 by convention", (0, 0, 0))
    yield Case("large counts", (int(rng.integers(10**6, 10**7)), int(rng.integers(0, 10**6)), int(rng.integers(0, 10**6))))


function("05.1", "F1 from the confusion counts, 0 when there is no true positive",
         reference=_f1, cases=_f1_cases, atol=1e-12,
         hints=("F1 is the harmonic mean of precision and recall — not their average.",
                "Substitute P = TP/(TP+FP) and R = TP/(TP+FN) into the harmonic mean and simplify: the result "
                "has no division that fails when TP + FP = 0.",
                "With TP = 0 precision or recall is 0 (or undefined): scikit-learn's zero_division=0 convention "
                "makes F1 = 0 then."))


# ------------------------------------------------------------------------------------------ 05.2


def _counts(y_true, scores, threshold):
    y, pred = np.asarray(y_true).astype(int), np.asarray(scores) >= threshold
    return (int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum()), int((~pred & (y == 0)).sum()),
            int((~pred & (y == 1)).sum()))


def _scores(rng, y):
    return 1 / (1 + np.exp(-(2.5 * (2 * y - 1) + rng.normal(0, 1.5, len(y)))))


def _counts_cases(rng):
    n = int(rng.integers(20, 200))
    y = rng.integers(0, 2, n)
    t = float(rng.uniform(0.2, 0.8))
    yield Case(f"{n} random labels and scores, threshold {t:.2f}", (y, _scores(rng, y), t))
    s = np.round(rng.uniform(0, 1, 12), 1)
    s[rng.choice(12, 3, replace=False)] = 0.5
    yield Case("scores exactly equal to the threshold (score ≥ threshold is positive)", (rng.integers(0, 2, 12), s, 0.5))
    yield Case("threshold above every score (nothing flagged)", (y, _scores(rng, y), 1.5))
    yield Case("threshold 0 (everything flagged)", (y, _scores(rng, y), 0.0))
    yield Case("only negatives", (np.zeros(9, dtype=int), rng.uniform(0, 1, 9), 0.5))
    yield Case("a single positive example", (np.array([1]), np.array([0.7]), 0.5))


function("05.2", "confusion counts (TP, FP, TN, FN) of the rule score ≥ threshold",
         reference=_counts, cases=_counts_cases,
         hints=("Turn the scores into 0/1 predictions first, then compare them with the labels example by example.",
                "A tie counts: an example whose score equals the threshold is predicted positive.",
                "Each count is the number of examples where (prediction, label) is one particular pair; return "
                "them in the order (tp, fp, tn, fn), as plain integers."))


# ------------------------------------------------------------------------------------------ 05.3


def _pick(y_val, s_val, min_precision):
    y, s = np.asarray(y_val).astype(int), np.asarray(s_val, dtype=float)
    for t in np.unique(s):                        # ascending: the first that qualifies is the lowest
        flagged = s >= t
        if y[flagged].mean() >= min_precision:
            return float(t)
    return float("inf")


def _pick_cases(rng):
    n = int(rng.integers(60, 200))
    y = rng.integers(0, 2, n)
    mp = float(rng.uniform(0.7, 0.95))
    yield Case(f"{n} validation examples, min_precision {mp:.2f}", (y, _scores(rng, y), mp))
    y2 = (rng.uniform(size=n) < 0.15).astype(int)
    yield Case("imbalanced (about 15 % positives), min_precision 0.8", (y2, _scores(rng, y2), 0.8))
    yield Case("min_precision 1.0 (no false alarm allowed)", (y, _scores(rng, y), 1.0))
    yield Case("tied scores (rounded to one decimal)", (y, np.round(_scores(rng, y), 1), mp))
    yield Case("precision is not monotone in the threshold",
               (np.array([1, 0, 0, 1, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]), 0.6))
    yield Case("no threshold meets it (no positives): return inf", (np.zeros(15, dtype=int), rng.uniform(0, 1, 15), 0.5))


function("05.3", "the lowest threshold whose VALIDATION precision reaches min_precision (inf if none)",
         reference=_pick, cases=_pick_cases, atol=0, rtol=0,
         hints=("Only the distinct validation scores are worth trying: a threshold between two scores flags exactly "
                "the same examples as the next score above it.",
                "For each candidate t, precision is the share of positives among the examples with score ≥ t. "
                "Precision can go down and up again as t grows, so try all candidates rather than stopping early.",
                "Try the candidates in increasing order and return the first that qualifies; if none does, the "
                "only rule that makes no false alarm is to flag nothing."))


# ------------------------------------------------------------------------------------------ 05.4


def _folds(y, k):
    y = np.asarray(y)
    fold = np.empty(len(y), dtype=int)
    start = 0
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        fold[idx] = (start + np.arange(len(idx))) % k
        start += len(idx)
    return fold


def _folds_cases(rng):
    n = int(rng.integers(60, 300))
    y = (rng.uniform(size=n) < 0.1).astype(int)
    k = int(rng.integers(3, 8))
    yield Case(f"{n} imbalanced binary labels (about 10 % positives), k={k}", (y, k))
    y3 = rng.integers(0, 4, n)
    yield Case(f"{n} labels of 4 classes, k=5", (y3, 5))
    yield Case("labels sorted by class, k=4", (np.sort(rng.integers(0, 3, 90)), 4))
    yield Case("a class with fewer members than folds, k=5", (np.array([0] * 20 + [1] * 3 + [2] * 7), 5))
    yield Case("labels 3 and 7 (not 0..K−1), k=2", (rng.choice([3, 7], 41), 2))


def _check_folds(fn_result, y, k):
    f = np.asarray(fn_result)
    y = np.asarray(y)
    if f.shape != y.shape:
        return f"the fold ids have shape {tuple(f.shape)}, expected one per example {tuple(y.shape)}"
    if not np.issubdtype(f.dtype, np.integer) or f.min() < 0 or f.max() >= k:
        return f"fold ids must be integers in 0..{k - 1}"
    for c in np.unique(y):
        per_fold = np.bincount(f[y == c], minlength=k)
        if per_fold.max() - per_fold.min() > 1:
            return (f"class {c} is spread unevenly: {per_fold.tolist()} examples per fold (the counts of each "
                    f"class must differ by at most 1 between folds)")
    sizes = np.bincount(f, minlength=k)
    if sizes.max() - sizes.min() > len(np.unique(y)):
        return f"the folds have very different sizes: {sizes.tolist()}"
    return None


class _Spec:
    """What a correct fold assignment must satisfy: several answers are right, so kit checks the property."""
    def __init__(self, y, k):
        self.y, self.k = np.asarray(y), k


def _same_folds(got, spec):
    if got is None:
        return "its result is None — did you forget to return it?"
    try:
        return _check_folds(got, spec.y, spec.k)
    except (TypeError, ValueError) as e:
        return f"its result is not an array of fold ids ({type(e).__name__}: {e})"


function("05.4", "stratified k-fold assignment: every class spread evenly over the folds",
         reference=_Spec, cases=_folds_cases, same=_same_folds,
         hints=("Deal the examples of one class at a time, like cards, so each fold gets its share of that class.",
                "Within a class, give its i-th member the fold i mod k; do that for each class separately.",
                "To keep the fold sizes even too, carry on dealing where the previous class stopped rather than "
                "restarting at fold 0."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    return (m["roc_auc"] > 0.95 and m["binary_f1"] > 0.85
            and 0 < m["threshold_from_validation"] < 1
            # tuning on the scored data is optimistic, measured over re-splits (≥ 0 by construction on each one)
            and m["tuning_on_test_optimism_f1"] > 0 and m["resplit_leaky_f1"] > m["resplit_honest_f1"]
            and m["test_f1_threshold_tuned_on_test"] >= m["binary_f1"]
            # the lesson's point, measured: a useless classifier has high accuracy but zero F1
            and m["imbalanced_trivial_accuracy"] > 0.85 and m["imbalanced_trivial_f1"] == 0.0
            and m["imbalanced_model_f1"] > 0.6 and m["multiclass_accuracy"] > 0.85
            and m["outlier_mse_factor"] > m["outlier_mae_factor"] > 1.0)


LESSON = LessonEntry(
    number='05', name='evaluation', title='Evaluating classifiers',
    goal='Precision, recall, F1, ROC/PR; a threshold chosen on validation and the test set scored once.',
    teaches='accuracy, precision, recall, F1 (macro, per class), ROC/PR curves with AUC and a **threshold slider** '
            'moving the operating point; why accuracy misleads on imbalanced data (measured); training, validation '
            'and test roles: the threshold chosen on validation, test scored once, and the optimism of tuning on '
            'test measured; confusion matrix; k-fold vs stratified cross-validation; MSE vs MAE — all through '
            '`kit.metrics` (scikit-learn)',
    data='breast cancer, digits, diabetes (scikit-learn, real)',
    metrics=(
        Headline('roc_auc', 'ROC AUC', 0.95),
        Headline('binary_f1', 'test F1 at the validation threshold', 0.85),
        Headline('tuning_on_test_optimism_f1', 'optimism of tuning on test (F1)', None),
    ),
    smoke_bar=smoke_bar,
    figure='as the threshold',
    budget=Budget(smoke_s=30),  # a smoke run took 17 s on a quiet 2-core machine
)
