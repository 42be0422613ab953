# %% [markdown] id="c00"
# # 05 — Evaluating models honestly
#
# **Goals.** Measure a classifier with accuracy, precision, recall and F1 (macro and per class), ROC and
# precision–recall curves with their areas, and the confusion matrix; move the decision threshold and
# watch the trade-off; see with numbers why accuracy misleads on imbalanced data; estimate performance with
# k-fold and stratified cross-validation; and score a regression with MSE and MAE.
# Every number comes from `kit.metrics`, a thin layer over scikit-learn.
#
# **Data.** Breast cancer (569 tumours), 8×8 digits (1 797 images) and diabetes progression (442 patients),
# all real and shipped with scikit-learn.
# %% tags=["parameters"]
seed = 0          # random seed
device = "auto"   # "auto", "cpu", "cuda" or "mps"
smoke = False     # tiny run for tests
k_folds = 5       # folds for cross-validation
threshold = 0.5   # initial decision threshold of the binary classifier
epochs = 60       # training epochs of the small torch classifiers
n_resplits = 200  # random halvings of the held-out data that measure the optimism of tuning on test
# %%
import kit
from kit.params import Float, Int, validate

validate(globals(), k_folds=Int(2, 20),
         threshold=Float(0, 1), epochs=Int(1, 10_000), n_resplits=Int(1, 100_000))
dev = kit.setup(seed, device)
if smoke:
    epochs, k_folds, n_resplits = min(epochs, 15), min(k_folds, 3), min(n_resplits, 50)
# %%
import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

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
    fit(model, (T(tr), torch.tensor(y[tr])), (T(va), torch.tensor(y[va])), loss_fn=F.cross_entropy,
        epochs=epochs, lr=1e-2, batch_size=64, device=dev, seed=seed, progress=False)
    model.eval()
    def proba(idx):
        with torch.inference_mode():
            return torch.softmax(model(T(idx).to(dev)), -1).cpu().numpy()
    return proba
# %% [markdown] id="c04"
# ## 1. Three sets, three jobs
# We detect **malignant** tumours (positive class = 1), with logistic regression trained by `kit.train.fit`.
# The model outputs a probability; a *threshold* turns it into a decision. The data is split once into three
# sets, and each has one job:
#
# * **training** (60 %) fits the weights;
# * **validation** (20 %) is where we make every other choice — here, the decision threshold (elsewhere also
#   the number of epochs, the learning rate, which model to keep);
# * **test** (20 %) is looked at **once**, at the very end, to report how the finished system will do on new
#   patients.
#
# If the test set influences a choice, information about it *leaks* into the system: the choice is fitted to
# those particular tumours, and the test score stops being an estimate for new data — it becomes
# optimistic. Section 1c measures by how much.
# %%
cancer = kit.data.load("breast_cancer")
y_mal = (cancer.y == 0).astype(np.int64)  # scikit-learn codes malignant as 0; we make it the positive class
tr, va, te = kit.data.split(len(cancer), (0.6, 0.2, 0.2), seed=seed, stratify=y_mal)
proba = train_classifier(cancer.X, y_mal, tr, va)
y_va, s_va = y_mal[va], proba(va)[:, 1]   # validation: for choosing
y_te, s_te = y_mal[te], proba(te)[:, 1]   # test: scored once, in 1b
print(f"{len(tr)} training, {len(va)} validation, {len(te)} test tumours "
      f"({y_va.mean():.0%} / {y_te.mean():.0%} malignant in validation / test)")
at_half = km.binary_at_threshold(y_va, s_va, 0.5)
print("validation, threshold 0.5:", {k: (round(float(v), 4) if isinstance(v, float) else v) for k, v in at_half.items()})
# %% [markdown] id="c06"
# * **precision** $= \frac{TP}{TP+FP}$: of the tumours we flag, how many are malignant;
# * **recall** $= \frac{TP}{TP+FN}$: of the malignant tumours, how many we catch;
# * **F1** $= \frac{2PR}{P+R}$, their harmonic mean;
# * **ROC**: recall against false-positive rate $\frac{FP}{FP+TN}$ over all thresholds; its area (AUC) is the
#   probability that a random positive scores above a random negative;
# * **PR curve**: precision against recall; its average precision (AP) summarises it.
#
# Move the threshold — on the **validation** scores, since we are still choosing: lowering it catches more
# malignant tumours (recall ↑) at the price of more false alarms (precision ↓). The red marker is the operating
# point.
# %%
import ipywidgets as w

slider = w.FloatSlider(value=threshold, min=0.01, max=0.99, step=0.01, description="threshold")
viz.slider_plot(lambda threshold: ev.roc_pr(y_va, s_va, threshold), threshold=slider);
# %% [markdown] id="c08"
# The sweep below is also on validation. `km.choose_threshold` takes **only validation labels and scores** and
# returns the threshold with the best validation F1 (every distinct validation score is a candidate).
# %%
thresholds = np.linspace(0.05, 0.95, 19)
ops = [km.binary_at_threshold(y_va, s_va, t) for t in thresholds]
fig = viz.compare_curves({k: [o[k] for o in ops] for k in ("precision", "recall", "f1")},
                         title="validation precision, recall and F1 as the threshold moves", yaxis="value",
                         xaxis="threshold")
fig.update_traces(x=thresholds)
t_val = km.choose_threshold(y_va, s_va, metric="f1")
fig.add_vline(x=t_val, line_dash="dash", annotation_text=f"chosen on validation: {t_val:.3f}")
viz.show(fig)
# %% [markdown] id="c10"
# ### 1b. The test set, once
# The threshold is fixed; now, and only now, the test set is scored — one time, with everything frozen.
# `km.threshold_report` does both steps in that order: choose on validation, then score the test set.
# %%
final = km.threshold_report(y_va, s_va, y_te, s_te, metric="f1")
assert final["threshold"] == t_val
test_op = final["test"]
roc_auc = km.roc(y_te, s_te)["auc"]
ap = km.pr(y_te, s_te)["average_precision"]
print(f"threshold {final['threshold']:.3f} (chosen on validation, F1 there {final['validation']['f1']:.3f})")
print("TEST:", {k: (round(float(v), 4) if isinstance(v, float) else v) for k, v in test_op.items()},
      f"ROC AUC {roc_auc:.4f}, AP {ap:.4f}")
viz.show(ev.roc_pr(y_te, s_te, final["threshold"], title="test set, at the threshold chosen on validation"))
# %% [markdown] id="c12"
# ### 1c. What choosing on the test set would have done
# Suppose we had tuned the threshold on the test set instead (don't: this cell exists to measure the damage).
# %%
t_cheat = km.choose_threshold(y_te, s_te, metric="f1")
f1_cheat = km.binary_at_threshold(y_te, s_te, t_cheat)["f1"]
display(Markdown(
    f"Tuned on test, the threshold would be {t_cheat:.3f} and the test F1 **{f1_cheat:.3f}**; the honest "
    f"procedure reports **{test_op['f1']:.3f}**. The first number is the best of many tries *graded on the same "
    f"answers* — it is never below the honest one on the same data, and it says nothing about new patients."))
# %% [markdown] id="c14"
# One split is one draw. To see that the optimism is systematic, we pool the held-out validation and test
# tumours and split them in two halves A and B many times: the **honest** score chooses on A and scores B; the
# **leaky** one chooses on B and scores B.
# %%
held = np.concatenate([va, te])
y_h, s_h = y_mal[held], proba(held)[:, 1]
rng = np.random.default_rng(seed)
honest_f1, leaky_f1 = [], []
for _ in range(n_resplits):
    perm = rng.permutation(len(held))
    A, B = perm[: len(held) // 2], perm[len(held) // 2:]
    t_A = km.choose_threshold(y_h[A], s_h[A])            # chosen on A (plays validation)
    honest_f1.append(km.binary_at_threshold(y_h[B], s_h[B], t_A)["f1"])
    t_B = km.choose_threshold(y_h[B], s_h[B])            # chosen on B itself: leakage
    leaky_f1.append(km.binary_at_threshold(y_h[B], s_h[B], t_B)["f1"])
honest_f1, leaky_f1 = np.array(honest_f1), np.array(leaky_f1)
optimism = float((leaky_f1 - honest_f1).mean())
display(Markdown(
    f"Over {n_resplits} re-splits: honest F1 {honest_f1.mean():.3f} ± {honest_f1.std():.3f}, leaky F1 "
    f"{leaky_f1.mean():.3f} ± {leaky_f1.std():.3f}. Choosing on the data you report inflates F1 by "
    f"**{optimism:.3f}** on average, and the leaky score is at least the honest one in "
    f"{(leaky_f1 >= honest_f1).mean():.0%} of the splits. Here only one number (a threshold) was tuned on the "
    f"scored data; every further choice made there (epochs, features, the model) is one more chance to fit its "
    f"noise."))
fig = go.Figure([go.Histogram(x=honest_f1, name="chosen on A, scored on B (honest)", opacity=0.6),
                 go.Histogram(x=leaky_f1, name="chosen on B, scored on B (leaky)", opacity=0.6)])
fig.update_layout(title="test F1 over re-splits: tuning on the scored data shifts it up", barmode="overlay",
                  template="plotly_white", height=360, xaxis_title="F1 on B")
viz.show(fig)
# %% [markdown] id="c16"
# ## 2. Why accuracy misleads on imbalanced data
# Task: "is this digit a 9?" Only about one image in ten is a 9. A "classifier" that always answers *no*
# is right about 90 % of the time — and useless.
# %%
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
# %%
fig = go.Figure([go.Bar(name=name, x=list(rep), y=list(rep.values())) for name, rep in
                 {"always 'no'": trivial, "logistic regression": learned}.items()])
fig.update_layout(title="accuracy looks fine for the useless classifier; recall and F1 do not", barmode="group",
                  template="plotly_white", height=380)
viz.show(fig)
# %% [markdown] id="c19"
# ## 3. Many classes: confusion matrix, macro averages, per-class scores
# %%
multi = train_classifier(digits.X, digits.y, dtr, dva, hidden=(64,), n_classes=10)
pred = multi(dte).argmax(1)
macro = km.classification_report(digits.y[dte], pred, average="macro")
per = km.per_class_report(digits.y[dte], pred, labels=list(range(10)))
print({k: round(v, 4) for k, v in macro.items()})
viz.show(ev.confusion_matrix(km.confusion(digits.y[dte], pred, labels=list(range(10))), list(range(10))))
viz.show(ev.per_class(per))
# %% [markdown] id="c21"
# ## 4. Cross-validation
# One split gives one number; a different split gives another. **k-fold cross-validation** trains k models,
# each tested on a different fold, and reports the mean and spread. **Stratified** folds keep the class
# proportions of every fold equal to the whole set's — which matters when a class is rare. The scaler sits
# inside the pipeline, so each fold's test data never influences its own preprocessing.
# %%
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
# %% [markdown] id="c23"
# ## 5. Regression: MSE and MAE
# $\mathrm{MSE} = \frac1n\sum (y-\hat y)^2$ punishes large errors quadratically; $\mathrm{MAE} = \frac1n\sum|y-\hat y|$
# treats all errors linearly. One wild prediction shows the difference.
# %%
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
# %%
kit.save_metrics({"threshold_from_validation": final["threshold"], "binary_accuracy": test_op["accuracy"],
                  "binary_precision": test_op["precision"], "binary_recall": test_op["recall"],
                  "binary_f1": test_op["f1"], "test_f1_threshold_tuned_on_test": f1_cheat,
                  "resplit_honest_f1": honest_f1.mean(), "resplit_leaky_f1": leaky_f1.mean(),
                  "tuning_on_test_optimism_f1": optimism, "roc_auc": roc_auc,
                  "average_precision": ap, "imbalanced_trivial_accuracy": trivial["accuracy"],
                  "imbalanced_trivial_f1": trivial["f1"], "imbalanced_model_accuracy": learned["accuracy"],
                  "imbalanced_model_f1": learned["f1"], "multiclass_accuracy": macro["accuracy"],
                  "multiclass_macro_f1": macro["f1"], "cv_f1_kfold_mean": cv_plain["mean"],
                  "cv_f1_kfold_std": cv_plain["std"], "cv_f1_stratified_mean": cv_strat["mean"],
                  "cv_f1_stratified_std": cv_strat["std"], "regression_mse": reg["mse"], "regression_mae": reg["mae"],
                  "regression_cv_mse": cv_mse, "outlier_mse_factor": reg_bad["mse"] / reg["mse"],
                  "outlier_mae_factor": reg_bad["mae"] / reg["mae"]})
# %% [markdown] id="c26"
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("05.3", 2)` shows the next hint.
#
# **Exercise 05.1 (warm-up).** Write `f1_from_counts(tp, fp, fn)`: the F1 score of a classifier from its
# confusion counts, $F_1 = \frac{2PR}{P+R}$. When there is no true positive ($TP = 0$) it must return 0 — even
# when nothing was flagged at all and precision is $\frac00$.
# %% tags=["solution"]
def f1_from_counts(tp, fp, fn):
    """F1 from the counts of true positives, false positives and false negatives (0 when tp == 0)."""
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
# %%
from kit.exercises import check, hint
check("05.1", f1_from_counts)
# %% [markdown] id="c29"
# **Exercise 05.2 (the counts).** Write `confusion_counts(y_true, scores, threshold)` for numpy arrays of 0/1
# labels and scores: the rule *score ≥ threshold* predicts positive; return the tuple `(tp, fp, tn, fn)` of
# integers. (Without `km.binary_at_threshold` — this is what it does inside.)
# %% tags=["solution"]
def confusion_counts(y_true, scores, threshold):
    """(tp, fp, tn, fn) of the rule scores >= threshold."""
    pred = np.asarray(scores) >= threshold
    pos = np.asarray(y_true) == 1
    return int((pred & pos).sum()), int((pred & ~pos).sum()), int((~pred & ~pos).sum()), int((~pred & pos).sum())
# %%
check("05.2", confusion_counts)
# %% [markdown] id="c32"
# **Exercise 05.3 (implement: choosing on validation).** A hospital wants at least a given precision: of the
# tumours flagged, at least `min_precision` must be malignant. Write `pick_threshold(y_val, s_val, min_precision)`
# that returns the **lowest** threshold $t$ at which the rule *score ≥ t* has validation precision
# $\ge$ `min_precision` (lower thresholds catch more tumours, so the lowest that qualifies is the best). Try every
# distinct validation score as $t$; if none qualifies, return `float("inf")` (flag nothing). It takes validation
# data only — you would call it as `pick_threshold(y_va, s_va, 0.95)` and then score the test set once.
# %% tags=["solution"]
def pick_threshold(y_val, s_val, min_precision):
    """The lowest threshold (a distinct validation score) whose validation precision is >= min_precision; inf if none."""
    y_val, s_val = np.asarray(y_val), np.asarray(s_val)
    for t in np.unique(s_val):
        if y_val[s_val >= t].mean() >= min_precision:
            return float(t)
    return float("inf")
# %%
check("05.3", pick_threshold)
# %% [markdown] id="c35"
# **Exercise 05.4 (stratified folds).** Write `stratified_folds(y, k)` that assigns each example a fold id in
# $0, \dots, k-1$ (an integer array, one per example) so that **every class is spread evenly**: for each class,
# the numbers of its examples in the $k$ folds differ by at most one. (This is what `StratifiedKFold` guarantees
# in section 4; no shuffling is needed for the check.)
# %% tags=["solution"]
def stratified_folds(y, k):
    """Fold ids 0..k-1, one per example, with every class spread evenly over the folds."""
    y = np.asarray(y)
    fold = np.empty(len(y), dtype=int)
    dealt = 0
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        fold[members] = (dealt + np.arange(len(members))) % k
        dealt += len(members)
    return fold
# %%
check("05.4", stratified_folds)
