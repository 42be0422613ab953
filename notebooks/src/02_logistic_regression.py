# %% [markdown] id="c00"
# # 02 — Logistic regression and backpropagation
#
# **Goals.** Classify breast tumours as malignant or benign with logistic regression; derive the gradient
# of the binary cross-entropy by hand, **verify it** against autograd and finite differences, and see a
# common wrong derivation fail the same check.
#
# **Data.** The Wisconsin diagnostic breast cancer set (569 real tumours, 30 features), shipped with scikit-learn.
# %% tags=["parameters"]
seed = 0          # random seed
device = "auto"   # the by-hand model runs on the CPU
smoke = False     # tiny run for tests
lr = 0.5          # gradient-descent learning rate
steps = 500       # gradient-descent steps
# %%
import kit
from kit.params import Float, Int, validate

validate(globals(), lr=Float(0, 100, lo_open=True),
         steps=Int(1, 1_000_000))
kit.setup(seed, device)
if smoke:
    steps = min(steps, 100)
# %%
import numpy as np
import torch
import torch.nn.functional as F

import kit.data
import kit.viz as viz
from kit.models import linear, logistic

cancer = kit.data.load("breast_cancer")
tr, va, te = kit.data.split(len(cancer), (0.6, 0.2, 0.2), seed=seed, stratify=cancer.y)
mu, sd = cancer.X[tr].mean(0), cancer.X[tr].std(0)
def design(idx):
    return linear.add_bias(torch.tensor((cancer.X[idx] - mu) / sd, dtype=torch.float64))
Xtr, Xva, Xte = design(tr), design(va), design(te)
ytr, yva, yte = (torch.tensor(cancer.y[i], dtype=torch.float64) for i in (tr, va, te))
print(f"classes: {cancer.classes}; {int(ytr.sum())} of {len(ytr)} training tumours are benign (label 1)")
# %% [markdown] id="c04"
# ## The model
# The probability of class 1 is $p = \sigma(z)$ with $z = x^\top w$ and $\sigma(z) = 1/(1+e^{-z})$.
# %%
zs = torch.linspace(-8, 8, 161)
viz.show(viz.compare_curves({"σ(z)": torch.sigmoid(zs).tolist(), "σ'(z) = σ(1−σ)": (torch.sigmoid(zs) * (1 - torch.sigmoid(zs))).tolist()},
                            title="the sigmoid and its derivative (x axis: z from −8 to 8)", yaxis="value", xaxis="sample"))
# %% [markdown] id="c06"
# ## The loss and its gradient, by hand
# Binary cross-entropy: $L = -\frac1n\sum_i \big[y_i\log p_i + (1-y_i)\log(1-p_i)\big]$.
#
# For one example, $\frac{\partial L}{\partial p} = -\frac{y}{p} + \frac{1-y}{1-p}$ and
# $\frac{\partial p}{\partial z} = p(1-p)$, so by the chain rule
# $$\frac{\partial L}{\partial z} = -y(1-p) + (1-y)p = p - y.$$
# Then $z = Xw$ gives $\nabla_w L = \frac1n X^\top (p - y)$.
# %%
viz.source(logistic.dloss_dz, logistic.bce_grad)
# %% [markdown] id="c08"
# ## Check it numerically
# We compare the hand-derived gradient with autograd and with central finite differences
# $\frac{L(w+\epsilon e_i) - L(w-\epsilon e_i)}{2\epsilon}$ at a random $w$ (float64).
# %%
from kit.checks import gradient_check

g = torch.Generator().manual_seed(seed)
w_test = torch.randn(Xtr.shape[1], dtype=torch.float64, generator=g) * 0.1
loss_at = lambda w: logistic.bce(Xtr, ytr, w)
right = gradient_check(loss_at, w_test, logistic.bce_grad(Xtr, ytr, w_test))
print("p − y       :", {k: f"{v:.2e}" for k, v in right.items()})
# %% [markdown] id="c10"
# A common mistake is to lose a sign or a factor and arrive at $\partial L/\partial z = 1 - 2p - y$.
# The same check exposes it at once:
# %%
wrong = gradient_check(loss_at, w_test, logistic.bce_grad(Xtr, ytr, w_test, dz=logistic.dloss_dz_wrong))
print("1 − 2p − y  :", {k: f"{v:.2e}" for k, v in wrong.items()})
assert right["vs_finite_diff"] < 1e-6 and wrong["vs_finite_diff"] > 1e-3
viz.show(viz.bar({"p − y vs autograd": right["vs_autograd"], "p − y vs finite diff": right["vs_finite_diff"],
                  "1 − 2p − y vs finite diff": wrong["vs_finite_diff"]}, title="gradient check: max |error| (log scale)"
                 ).update_yaxes(type="log"))
# %% [markdown] id="c12"
# ## Train it with the hand-derived gradient
# %%
w_fit, losses = logistic.train_by_hand(Xtr, ytr, lr, steps)
acc = lambda X, y: ((X @ w_fit > 0).double() == y).double().mean().item()
val_loss = logistic.bce(Xva, yva, w_fit).item()
print(f"train loss {losses[-1]:.4f}, val loss {val_loss:.4f}; accuracy train {acc(Xtr, ytr):.3f}, "
      f"val {acc(Xva, yva):.3f}, test {acc(Xte, yte):.3f}")
viz.show(viz.compare_curves({"training BCE": losses}, title="gradient descent on the cross-entropy", xaxis="step"))
# %% [markdown] id="c14"
# ## Which features matter?
# With standardised inputs, the weight sizes are comparable: a large negative weight pushes toward malignant (0).
# %%
order = np.argsort(-np.abs(w_fit[:-1].numpy()))[:10]
viz.show(viz.bar({cancer.feature_names[i]: float(w_fit[i]) for i in order}, title="ten largest weights"))
# %%
kit.save_metrics({"grad_err_autograd": right["vs_autograd"], "grad_err_fd": right["vs_finite_diff"],
                  "wrong_grad_err_fd": wrong["vs_finite_diff"], "train_loss": losses[-1], "val_loss": val_loss,
                  "train_acc": acc(Xtr, ytr), "val_acc": acc(Xva, yva), "test_acc": acc(Xte, yte)})
# %% [markdown] id="c17"
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("02.3", 2)` shows the next hint.
#
# **Exercise 02.1 (warm-up).** Write `predict_proba(X, w)` that returns the vector of probabilities
# $p = \sigma(Xw)$, one per row of `X`.
# %% tags=["solution"]
def predict_proba(X, w):
    return torch.sigmoid(X @ w)
# %%
from kit.exercises import check, hint
check("02.1", predict_proba)
# %% [markdown] id="c20"
# **Exercise 02.2 (stability, with class weights).** On imbalanced data each example often gets a weight $w_i$
# (e.g. larger for the rare class). Write `weighted_bce(z, y, weights)`: the weighted mean binary cross-entropy
# $\sum_i w_i \ell_i / \sum_i w_i$, each $\ell_i$ computed from the logit $z_i$ (not from a probability). It must stay
# finite and exact when a logit is $\pm 100$ — a model that is confidently wrong has a large loss, not `inf` or
# `nan` — and an example of weight 0 must not count at all.
# %% tags=["solution"]
def weighted_bce(z, y, weights):
    losses = -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z))
    return (weights * losses).sum() / weights.sum()
# %%
check("02.2", weighted_bce)
# %% [markdown] id="c23"
# **Exercise 02.3 (implement: the key step for many classes).** With $K$ classes the model outputs a row of
# logits $z$ per example, $p = \mathrm{softmax}(z)$ and $L = -\frac1n\sum_i \log p_{i,y_i}$. Derive
# $\partial L/\partial Z$ (the same chain rule as above gives a familiar shape) and write
# `softmax_ce_grad(Z, y)` for logits `Z` of shape `(n, K)` and integer labels `y`.
# %% tags=["solution"]
def softmax_ce_grad(Z, y):
    P = torch.softmax(Z, dim=1)
    P[torch.arange(len(y)), y] -= 1
    return P / len(y)
# %%
check("02.3", softmax_ce_grad)
# %% [markdown] id="c26"
# **Exercise 02.4 (regularisation).** Adding an L2 penalty gives $L(w) + \lambda\lVert w\rVert^2$. Write
# `l2_logistic_grad(X, y, w, lam)`, its gradient with respect to `w`. Verify your factor with
# `kit.checks.gradient_check` before you check it.
# %% tags=["solution"]
def l2_logistic_grad(X, y, w, lam):
    return X.T @ (torch.sigmoid(X @ w) - y) / len(y) + 2 * lam * w
# %%
check("02.4", l2_logistic_grad)
