"""kit.metrics against direct scikit-learn calls and small cases computed by hand."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

import kit.metrics as km

Y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
P = np.array([1, 0, 1, 0, 1, 0, 0, 1])  # TP=3, FN=1, FP=1, TN=3
S = np.array([0.9, 0.4, 0.8, 0.1, 0.6, 0.3, 0.2, 0.7])


def test_binary_by_hand():
    rep = km.classification_report(Y, P, average="binary")
    assert rep == pytest.approx({"accuracy": 6 / 8, "precision": 3 / 4, "recall": 3 / 4, "f1": 3 / 4})
    op = km.binary_at_threshold(Y, S, 0.5)
    assert (op["tp"], op["fp"], op["tn"], op["fn"]) == (3, 1, 3, 1) and op["fpr"] == pytest.approx(0.25)


def test_auc_by_hand():
    # AUC = P(score of a random positive > score of a random negative): count the 16 pairs.
    pos, neg = S[Y == 1], S[Y == 0]
    by_hand = np.mean([p > n for p in pos for n in neg])
    assert km.roc(Y, S)["auc"] == pytest.approx(by_hand) == pytest.approx(15 / 16)


def test_matches_sklearn_multiclass():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    rep = km.classification_report(y, p, average="macro")
    assert rep["f1"] == pytest.approx(skm.f1_score(y, p, average="macro"))
    assert rep["precision"] == pytest.approx(skm.precision_score(y, p, average="macro"))
    assert rep["recall"] == pytest.approx(skm.recall_score(y, p, average="macro"))
    per = km.per_class_report(y, p)
    assert per["f1"] == pytest.approx(skm.f1_score(y, p, average=None).tolist())
    assert (km.confusion(y, p) == skm.confusion_matrix(y, p)).all()
    s = rng.random(200)
    assert km.pr((y == 1), s)["average_precision"] == pytest.approx(skm.average_precision_score(y == 1, s))


def test_regression_by_hand():
    rep = km.regression_report([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert rep["mse"] == pytest.approx(4 / 3) and rep["mae"] == pytest.approx(2 / 3)


def test_cross_validate_matches_sklearn():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    X, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=1000)
    ours = km.cross_validate(clf, X, y, k=5, seed=3)
    theirs = cross_val_score(clf, X, y, cv=StratifiedKFold(5, shuffle=True, random_state=3))
    assert np.allclose(ours["scores"], theirs) and ours["mean"] == pytest.approx(theirs.mean())
