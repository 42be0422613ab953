# %% [md]
# # 05 — Evaluating models honestly

**Goals.** Measure a classifier with accuracy, precision, recall and F1 (macro and per class), ROC and
precision–recall curves with their areas, and the confusion matrix; move the decision threshold and
watch the trade-off; see with numbers why accuracy misleads on imbalanced data; estimate performance with
k-fold and stratified cross-validation; and score a regression with MSE and MAE.
Every number comes from `kit.metrics`, a thin layer over scikit-learn.

**Data.** Breast cancer (569 tumours), 8×8 digits (1 797 images) and diabetes progression (442 patients),
all real and shipped with scikit-learn.
# %% [code] parameters
seed = 0          # random seed
device = "auto"   # "auto", "cpu", "cuda" or "mps"
smoke = False     # tiny run for tests
k_folds = 5       # folds for cross-validation
threshold = 0.5   # initial decision threshold of the binary classifier
epochs = 60       # training epochs of the small torch classifiers
# %% [code]
import kit
from kit.params import Float, Int, validate

validate(globals(), k_folds=Int(2, 20),
         threshold=Float(0, 1), epochs=Int(1, 10_000))
dev = kit.setup(seed, device)
if smoke:
    epochs, k_folds = min(epochs, 15), min(k_folds, 3)
# %% [code]
import numpy as np
import torch

import kit.data
import kit.metrics as km
import kit.viz as viz
from kit.models import MLP, MLPConfig
from kit.train import fit
from kit.viz import evaluation as ev


def train_classifier(X, y, tr, va, hidden=(), n_classes=2):
    """Standardise with training statistics, fit a (linear or MLP) classifier, return a probability function."""
    mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-8
    T = lambda idx: torch.tensor((X[idx] - mu) / sd, dtype=torch.float32)
    torch.manual_seed(seed)
    model = MLP(MLPConfig(X.shape[1], n_classes, hidden=hidden))
    fit(model, (T(tr), torch.tensor(y[tr])), (T(va), torch.tensor(y[va])), epochs=epochs, lr=1e-2,
        batch_size=64, device=dev, seed=seed, progress=False)
    model.eval()
    def proba(idx):
        with torch.inference_mode():
            return torch.softmax(model(T(idx).to(dev)), -1).cpu().numpy()
    return proba
# %% [md]
# ## 1. A binary classifier and its scores
# We detect **malignant** tumours (positive class = 1), with logistic regression trained by `kit.train.fit`.
# The model outputs a probability; a *threshold* turns it into a decision.
# %% [code]
cancer = kit.data.load("breast_cancer")
y_mal = (cancer.y == 0).astype(np.int64)  # scikit-learn codes malignant as 0; we make it the positive class
tr, va, te = kit.data.split(len(cancer), (0.6, 0.2, 0.2), seed=seed, stratify=y_mal)
proba = train_classifier(cancer.X, y_mal, tr, va)
scores = proba(te)[:, 1]
y_te = y_mal[te]
at_half = km.binary_at_threshold(y_te, scores, 0.5)
print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in at_half.items()})
# %% [md]
# * **precision** $= \frac{TP}{TP+FP}$: of the tumours we flag, how many are malignant;
# * **recall** $= \frac{TP}{TP+FN}$: of the malignant tumours, how many we catch;
# * **F1** $= \frac{2PR}{P+R}$, their harmonic mean;
# * **ROC**: recall against false-positive rate $\frac{FP}{FP+TN}$ over all thresholds; its area (AUC) is the
#   probability that a random positive scores above a random negative;
# * **PR curve**: precision against recall; its average precision (AP) summarises it.
#
# Move the threshold: lowering it catches more malignant tumours (recall ↑) at the price of more false alarms
# (precision ↓). The red marker is the operating point.
# %% [code]
import ipywidgets as w

slider = w.FloatSlider(value=threshold, min=0.01, max=0.99, step=0.01, description="threshold")
viz.slider_plot(lambda threshold: ev.roc_pr(y_te, scores, threshold), threshold=slider);
roc_auc = km.roc(y_te, scores)["auc"]
ap = km.pr(y_te, scores)["average_precision"]
# %% [code]
thresholds = np.linspace(0.05, 0.95, 19)
ops = [km.binary_at_threshold(y_te, scores, t) for t in thresholds]
fig = viz.compare_curves({k: [o[k] for o in ops] for k in ("precision", "recall", "f1")},
                         title="precision, recall and F1 as the threshold moves", yaxis="value", xaxis="threshold")
fig.update_traces(x=thresholds)
viz.show(fig)
# %% [md]
# ## 2. Why accuracy misleads on imbalanced data
# Task: "is this digit a 9?" Only about one image in ten is a 9. A "classifier" that always answers *no*
# is right about 90 % of the time — and useless.
# %% [code]
digits = kit.data.load("digits")
y9 = (digits.y == 9).astype(np.int64)
dtr, dva, dte = kit.data.split(len(digits), (0.6, 0.2, 0.2), seed=seed, stratify=digits.y)
always_no = np.zeros_like(y9[dte])
trivial = km.classification_report(y9[dte], always_no, average="binary")
nine_proba = train_classifier(digits.X, y9, dtr, dva)
learned = km.classification_report(y9[dte], (nine_proba(dte)[:, 1] >= 0.5).astype(int), average="binary")
from sklearn.metrics import balanced_accuracy_score
trivial["balanced_accuracy"] = balanced_accuracy_score(y9[dte], always_no)
learned["balanced_accuracy"] = balanced_accuracy_score(y9[dte], (nine_proba(dte)[:, 1] >= 0.5).astype(int))
print(f"positives in the test set: {y9[dte].mean():.1%}")
import pandas as pd
pd.DataFrame({"always 'no'": trivial, "logistic regression": learned}).round(3)
# %% [code]
import plotly.graph_objects as go
fig = go.Figure([go.Bar(name=name, x=list(rep), y=list(rep.values())) for name, rep in
                 {"always 'no'": trivial, "logistic regression": learned}.items()])
fig.update_layout(title="accuracy looks fine for the useless classifier; recall and F1 do not", barmode="group",
                  template="plotly_white", height=380)
viz.show(fig)
# %% [md]
# ## 3. Many classes: confusion matrix, macro averages, per-class scores
# %% [code]
multi = train_classifier(digits.X, digits.y, dtr, dva, hidden=(64,), n_classes=10)
pred = multi(dte).argmax(1)
macro = km.classification_report(digits.y[dte], pred, average="macro")
per = km.per_class_report(digits.y[dte], pred, labels=list(range(10)))
print({k: round(v, 4) for k, v in macro.items()})
viz.show(ev.confusion_matrix(km.confusion(digits.y[dte], pred, labels=list(range(10))), list(range(10))))
viz.show(ev.per_class(per))
# %% [md]
# ## 4. Cross-validation
# One split gives one number; a different split gives another. **k-fold cross-validation** trains k models,
# each tested on a different fold, and reports the mean and spread. **Stratified** folds keep the class
# proportions of every fold equal to the whole set's — which matters when a class is rare. The scaler sits
# inside the pipeline, so each fold's test data never influences its own preprocessing.
# %% [code]
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
cv_plain = km.cross_validate(clf, digits.X, y9, k=k_folds, stratified=False, seed=seed, scoring="f1")
cv_strat = km.cross_validate(clf, digits.X, y9, k=k_folds, stratified=True, seed=seed, scoring="f1")
viz.show(ev.fold_scores({"k-fold": cv_plain["scores"], "stratified k-fold": cv_strat["scores"]},
                        title=f"F1 of 'is it a 9?' over {k_folds} folds", yaxis="F1"))
from sklearn.model_selection import KFold, StratifiedKFold
share = lambda cv: [y9[te_idx].mean() for _, te_idx in cv.split(digits.X, y9)]
print("share of 9s per fold, plain     :", np.round(share(KFold(k_folds, shuffle=True, random_state=seed)), 3))
print("share of 9s per fold, stratified:", np.round(share(StratifiedKFold(k_folds, shuffle=True, random_state=seed)), 3))
# %% [md]
# ## 5. Regression: MSE and MAE
# $\mathrm{MSE} = \frac1n\sum (y-\hat y)^2$ punishes large errors quadratically; $\mathrm{MAE} = \frac1n\sum|y-\hat y|$
# treats all errors linearly. One wild prediction shows the difference.
# %% [code]
from sklearn.linear_model import Ridge

diabetes = kit.data.load("diabetes")
rtr, _, rte = kit.data.split(len(diabetes), (0.7, 0.1, 0.2), seed=seed)
ridge = Ridge(alpha=1.0).fit(diabetes.X[rtr], diabetes.y[rtr])
y_hat = ridge.predict(diabetes.X[rte])
reg = km.regression_report(diabetes.y[rte], y_hat)
y_bad = y_hat.copy()
y_bad[0] += 500  # one wild prediction
reg_bad = km.regression_report(diabetes.y[rte], y_bad)
cv_mse = -km.cross_validate(Ridge(alpha=1.0), diabetes.X, diabetes.y, k=k_folds, stratified=False, seed=seed,
                            scoring="neg_mean_squared_error")["mean"]
print(f"test MSE {reg['mse']:.0f}, MAE {reg['mae']:.1f}, R² {reg['r2']:.3f};  {k_folds}-fold CV MSE {cv_mse:.0f}")
print(f"one wild prediction: MSE ×{reg_bad['mse'] / reg['mse']:.2f}, MAE ×{reg_bad['mae'] / reg['mae']:.2f}")
viz.show(viz.scatter_fit(diabetes.y[rte], y_hat, [25, 350], [25, 350], title="ridge regression: predicted vs actual",
                         xaxis="actual progression", yaxis="predicted"))
# %% [code]
kit.save_metrics({"binary_accuracy": at_half["accuracy"], "binary_precision": at_half["precision"],
                  "binary_recall": at_half["recall"], "binary_f1": at_half["f1"], "roc_auc": roc_auc,
                  "average_precision": ap, "imbalanced_trivial_accuracy": trivial["accuracy"],
                  "imbalanced_trivial_f1": trivial["f1"], "imbalanced_model_accuracy": learned["accuracy"],
                  "imbalanced_model_f1": learned["f1"], "multiclass_accuracy": macro["accuracy"],
                  "multiclass_macro_f1": macro["f1"], "cv_f1_kfold_mean": cv_plain["mean"],
                  "cv_f1_kfold_std": cv_plain["std"], "cv_f1_stratified_mean": cv_strat["mean"],
                  "cv_f1_stratified_std": cv_strat["std"], "regression_mse": reg["mse"], "regression_mae": reg["mae"],
                  "regression_cv_mse": cv_mse, "outlier_mse_factor": reg_bad["mse"] / reg["mse"],
                  "outlier_mae_factor": reg_bad["mae"] / reg["mae"]})
# %% [md]
# ## Exercises
# **Exercise 1.** A classifier has TP = 30, FP = 10, FN = 20. Compute its F1 score by hand.
# %% [code] solution
P, R = 30 / (30 + 10), 30 / (30 + 20)
answer_1 = 2 * P * R / (P + R)
# %% [code]
from kit.checks import expect_close
expect_close("Exercise 1", answer_1, 2 * 30 / (2 * 30 + 10 + 20), hint="F1 = 2PR/(P+R) = 2TP / (2TP + FP + FN).")
# %% [md]
# **Exercise 2.** Using `km.binary_at_threshold`, find the *lowest* threshold in `thresholds` (the grid above)
# at which the breast-cancer classifier's precision on the test set is at least 0.95.
# %% [code] solution
answer_2 = min(t for t in thresholds if km.binary_at_threshold(y_te, scores, t)["precision"] >= 0.95)
# %% [code]
_ok = [t for t in thresholds if km.binary_at_threshold(y_te, scores, t)["precision"] >= 0.95]
expect_close("Exercise 2", answer_2, min(_ok), hint="Loop over thresholds and keep those with precision ≥ 0.95.")
