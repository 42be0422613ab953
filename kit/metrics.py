"""Evaluation metrics: a thin layer over ``sklearn.metrics`` and ``sklearn.model_selection``."""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def _np(a):
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def classification_report(y_true, y_pred, average: str = "macro") -> dict:
    """Accuracy, precision, recall and F1 (``average`` over classes)."""
    y_true, y_pred = _np(y_true), _np(y_pred)
    p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
    return {"accuracy": skm.accuracy_score(y_true, y_pred), "precision": p, "recall": r, "f1": f}


def per_class_report(y_true, y_pred, labels=None) -> dict:
    """Precision, recall, F1 and support for every class (lists aligned with ``labels``)."""
    y_true, y_pred = _np(y_true), _np(y_pred)
    labels = np.unique(np.concatenate([y_true, y_pred])) if labels is None else np.asarray(labels)
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {"labels": labels.tolist(), "precision": p.tolist(), "recall": r.tolist(), "f1": f.tolist(),
            "support": s.tolist()}


def binary_at_threshold(y_true, scores, threshold: float) -> dict:
    """Counts and rates of the rule ``score >= threshold`` (positive class 1)."""
    y_true, pred = _np(y_true).astype(int), (_np(scores) >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y_true, pred, labels=[0, 1]).ravel()
    rep = classification_report(y_true, pred, average="binary")
    return {"tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn), "fpr": fp / max(fp + tn, 1),
            "precision": rep["precision"], "recall": rep["recall"], "f1": rep["f1"], "accuracy": rep["accuracy"]}


def confusion(y_true, y_pred, labels=None) -> np.ndarray:
    return skm.confusion_matrix(_np(y_true), _np(y_pred), labels=labels)


def regression_report(y_true, y_pred) -> dict:
    y_true, y_pred = _np(y_true), _np(y_pred)
    return {"mse": skm.mean_squared_error(y_true, y_pred), "mae": skm.mean_absolute_error(y_true, y_pred),
            "r2": skm.r2_score(y_true, y_pred)}


def roc(y_true, scores) -> dict:
    fpr, tpr, thr = skm.roc_curve(_np(y_true), _np(scores))
    return {"fpr": fpr, "tpr": tpr, "thresholds": thr, "auc": skm.auc(fpr, tpr)}


def pr(y_true, scores) -> dict:
    prec, rec, thr = skm.precision_recall_curve(_np(y_true), _np(scores))
    return {"precision": prec, "recall": rec, "thresholds": thr,
            "average_precision": skm.average_precision_score(_np(y_true), _np(scores))}


def cross_validate(estimator, X, y, k: int = 5, stratified: bool = True, seed: int = 0, scoring="accuracy") -> dict:
    """k-fold (stratified by default) cross-validation scores of a scikit-learn estimator."""
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    cv = (StratifiedKFold if stratified else KFold)(n_splits=k, shuffle=True, random_state=seed)
    scores = cross_val_score(estimator, _np(X), _np(y), cv=cv, scoring=scoring)
    return {"scores": scores, "mean": scores.mean(), "std": scores.std()}


def choose_threshold(y_val, scores_val, *, metric: str = "f1", grid=None) -> float:
    """The decision threshold that maximises ``metric`` of the rule ``score >= t`` on VALIDATION data.

    Give it validation labels and scores only — never the test set's: a threshold tuned on the test set makes
    the test score an optimistic estimate (lesson 05 measures by how much). ``metric`` is a key of
    :func:`binary_at_threshold` ("f1", "accuracy", "precision", "recall"); candidates are ``grid`` or, by default,
    every distinct validation score. Ties go to the lowest threshold.
    """
    y_val, scores_val = _np(y_val).astype(int), _np(scores_val).astype(float)
    if len(y_val) != len(scores_val) or len(y_val) == 0:
        raise ValueError(f"need as many labels as scores (got {len(y_val)} and {len(scores_val)}), at least one")
    candidates = np.unique(scores_val) if grid is None else np.sort(np.asarray(grid, dtype=float))
    # counts of ``score >= t`` for every candidate at once (the same numbers binary_at_threshold gives, vectorised)
    pos, neg = np.sort(scores_val[y_val == 1]), np.sort(scores_val[y_val == 0])
    tp = len(pos) - np.searchsorted(pos, candidates, side="left")
    fp = len(neg) - np.searchsorted(neg, candidates, side="left")
    fn, tn = len(pos) - tp, len(neg) - fp
    with np.errstate(divide="ignore", invalid="ignore"):
        values = {"f1": np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0),
                  "precision": np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0),
                  "recall": tp / max(len(pos), 1), "accuracy": (tp + tn) / len(y_val)}
    if metric not in values:
        raise ValueError(f"metric must be one of {sorted(values)}, got {metric!r}")
    return float(candidates[int(np.argmax(values[metric]))])


def threshold_report(y_val, scores_val, y_test, scores_test, *, metric: str = "f1", grid=None) -> dict:
    """Choose the threshold on validation (:func:`choose_threshold`), then score the test set ONCE with it.

    Returns ``{"threshold", "validation": {...}, "test": {...}}`` (each a :func:`binary_at_threshold` dict). The
    test data only ever meets the threshold after it is fixed, so changing it cannot change the choice.
    """
    t = choose_threshold(y_val, scores_val, metric=metric, grid=grid)
    return {"threshold": t, "validation": binary_at_threshold(y_val, scores_val, t),
            "test": binary_at_threshold(y_test, scores_test, t)}
