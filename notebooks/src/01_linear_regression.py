# %% [markdown] id="c00"
# # 01 — Linear regression: house prices three ways
#
# **Goals.** Fit $\hat y = Xw$ to house prices by (1) the closed-form least-squares solution,
# (2) gradient descent with a gradient derived by hand, and (3) autograd — and see that all three agree.
# Then explore the learning rate with a slider and look at the loss surface.
#
# **Data.** With network access the loader fetches the California housing data (checksummed);
# offline it uses a synthetic town whose true price rule is known — the printed line says which.
# %% tags=["parameters"]
seed = 0            # random seed
device = "auto"     # linear regression is tiny: it runs on the CPU either way
smoke = False       # tiny run for tests
lr = 0.1            # gradient-descent learning rate (features are standardised)
steps = 1000        # gradient-descent steps
data_source = "auto"  # "auto" (real when reachable, else embedded), "real" or "embedded"
# %%
import kit
from kit.params import Choice, Float, Int, validate

validate(globals(), lr=Float(0, 10, lo_open=True),
         steps=Int(1, 1_000_000), data_source=Choice("auto", "real", "embedded"))
kit.setup(seed, device)
# %% [markdown] id="c03"
# ## The data
# %%
import numpy as np
import torch

import kit.data
import kit.viz as viz
from kit.models import linear

houses = kit.data.load("houses", source=data_source)
print(houses.description)
if smoke:
    houses.X, houses.y = houses.X[:300], houses.y[:300]
train_idx, val_idx, test_idx = kit.data.split(len(houses), (0.7, 0.15, 0.15), seed=seed)
print(f"{len(train_idx)} train / {len(val_idx)} validation / {len(test_idx)} test houses")
viz.show(viz.scatter_fit(houses.X[train_idx, 0], houses.y[train_idx], [], [],
                         title=f"price vs {houses.feature_names[0]}", xaxis=houses.feature_names[0], yaxis=houses.target_name))
# %% [markdown] id="c05"
# We standardise each feature with the *training* mean and standard deviation (never the test set's),
# and append a column of ones so the bias $b$ is the last entry of $w$. We work in float64 so the three
# methods can be compared to many digits.
# %%
mu, sd = houses.X[train_idx].mean(0), houses.X[train_idx].std(0)
def design(idx):
    return linear.add_bias(torch.tensor((houses.X[idx] - mu) / sd, dtype=torch.float64))
Xtr, Xte = design(train_idx), design(test_idx)
ytr = torch.tensor(houses.y[train_idx], dtype=torch.float64)
yte = torch.tensor(houses.y[test_idx], dtype=torch.float64)
# %% [markdown] id="c07"
# ## 1. Closed form
# The mean squared error $L(w) = \frac1n\lVert Xw - y\rVert^2$ is minimised where its gradient vanishes:
# $X^\top X w = X^\top y$ (the *normal equations*). We solve it with a least-squares solver, which is
# more stable than inverting $X^\top X$.
# %%
w_closed = linear.closed_form(Xtr, ytr)
print("weights (standardised units):", dict(zip(houses.feature_names + ["bias"], w_closed.numpy().round(3))))
# %% [markdown] id="c09"
# ## 2. Gradient descent, gradient derived by hand
# Differentiating $L(w) = \frac1n (Xw-y)^\top(Xw-y)$ gives $\nabla L(w) = \frac2n X^\top (Xw - y)$.
# Gradient descent repeats $w \leftarrow w - \eta\,\nabla L(w)$:
# %%
viz.source(linear.mse_grad, linear.gd_by_hand)
w_hand, losses_hand, path = linear.gd_by_hand(Xtr, ytr, lr, steps)
# %% [markdown] id="c11"
# ## 3. Autograd
# Same descent, but PyTorch computes the gradient from the recorded operations (`loss.backward()`) and
# `torch.optim.SGD` takes the step — the loop every later lesson's `fit` runs for us:
# %%
w_auto = torch.zeros(Xtr.shape[1], dtype=Xtr.dtype, requires_grad=True)
opt = torch.optim.SGD([w_auto], lr=lr)
losses_auto = []
for _ in range(steps):
    loss = linear.mse(Xtr, ytr, w_auto)
    losses_auto.append(loss.item())
    opt.zero_grad()
    loss.backward()  # fills w_auto.grad with ∇L(w)
    opt.step()       # w ← w − lr · w.grad
w_auto = w_auto.detach()
from kit.checks import max_abs_diff

agree = {"hand vs autograd": max_abs_diff(w_hand, w_auto),
         "hand vs closed form": max_abs_diff(w_hand, w_closed),
         "autograd vs closed form": max_abs_diff(w_auto, w_closed)}
for k, v in agree.items():
    print(f"max |Δw| {k:>24}: {v:.2e}")
assert max(agree.values()) < 1e-4, "the three methods should agree; try more steps or a larger lr"
# %%
viz.show(viz.compare_curves({"by hand": losses_hand, "autograd": losses_auto}, log_y=True, xaxis="step",
                            yaxis="training MSE", title="both descents follow the same path"))
# %% [markdown] id="c14"
# ## 4. The same model with the kit's training loop
# Later lessons train every model with `kit.train.fit`: minibatches, an optimizer, a validation set, a live
# plot of the curves. On this problem it is a `torch.nn.Linear` layer trained with minibatch SGD on the same
# standardised features; it approaches the closed-form optimum too (minibatch noise keeps it from landing exactly).
# %%
import torch.nn.functional as F
from kit.train import fit

Xva, yva = design(val_idx)[:, :-1].float(), torch.tensor(houses.y[val_idx])
layer = torch.nn.Linear(Xtr.shape[1] - 1, 1)
history = fit(layer, (Xtr[:, :-1].float(), ytr.float()), (Xva, yva), loss_fn=lambda out, y: F.mse_loss(out.squeeze(-1), y),
              optimizer="sgd", lr=lr / 2, epochs=10 if smoke else 40, batch_size=32, seed=seed,
              device="cpu", live=True)
fit_val_mse = history["val_loss"][-1]
print(f"validation MSE after {len(history)} epochs: {fit_val_mse:.1f} "
      f"(closed form: {linear.mse(design(val_idx), yva.double(), w_closed).item():.1f})")
# %% [markdown] id="c16"
# ## The learning rate
# For this quadratic loss, gradient descent converges exactly when $\eta < 2/\lambda_{max}$, where
# $\lambda_{max}$ is the largest eigenvalue of the Hessian $H = \frac2n X^\top X$. Move the slider:
# small rates crawl, rates past the limit diverge.
# %%
import ipywidgets as w

H = 2 / len(Xtr) * Xtr.T @ Xtr
lam_max = torch.linalg.eigvalsh(H).max().item()
print(f"λ_max = {lam_max:.3f} → largest stable learning rate 2/λ_max = {2 / lam_max:.3f}")
L_star = linear.mse(Xtr, ytr, w_closed).item()

def lr_figure(lr):
    _, ls, _ = linear.gd_by_hand(Xtr, ytr, lr, 100)
    gap = [max(l - L_star, 1e-12) for l in ls]
    return viz.compare_curves({f"lr = {lr:.3g}": gap}, log_y=True, xaxis="step", yaxis="MSE − optimum",
                              title=f"lr = {lr:.3g}  (stable below {2 / lam_max:.3g})")

lr_slider = w.FloatLogSlider(value=lr, base=10, min=-3, max=0.3, step=0.05, description="learning rate",
                             style={"description_width": "initial"})
viz.slider_plot(lr_figure, lr=lr_slider);
# %% [markdown] id="c18"
# ## Why standardise the features?
# We standardised every feature at the start without saying why. The reason is the same $\lambda$'s: gradient
# descent's speed is set by the *condition number* $\kappa = \lambda_{max}/\lambda_{min}$ of $H$. With its best
# constant learning rate $2/(\lambda_{max}+\lambda_{min})$ it shrinks the error along the flattest direction by
# $(\kappa-1)/(\kappa+1)$ per step. Raw features on very different scales (square metres in the hundreds,
# bedrooms in single digits) make the bowl a long thin valley. Below: the same problem in raw units, its
# condition number, and gradient descent on it for the same number of steps at its best learning rate.
# %%
from IPython.display import Markdown, display

Xtr_raw = linear.add_bias(torch.tensor(houses.X[train_idx], dtype=torch.float64))
ev_raw = torch.linalg.eigvalsh(linear.hessian(Xtr_raw))
lr_raw = 2 / (ev_raw.max() + ev_raw.min()).item()
w_raw, losses_raw, _ = linear.gd_by_hand(Xtr_raw, ytr, lr_raw, steps)
kappa = {"standardised": linear.condition_number(Xtr), "raw units": linear.condition_number(Xtr_raw)}
loss_after = {"standardised": losses_hand[-1], "raw units": losses_raw[-1]}
display(Markdown(
    "| features | κ of H | largest stable lr | training MSE after " + f"{steps} steps |\n|---|---|---|---|\n"
    + f"| standardised | {kappa['standardised']:.3g} | {2 / lam_max:.3g} | {loss_after['standardised']:.6g} |\n"
    + f"| raw units | {kappa['raw units']:.3g} | {2 / ev_raw.max().item():.3g} | {loss_after['raw units']:.6g} |\n\n"
    + f"The raw problem's κ is **{kappa['raw units'] / kappa['standardised']:,.0f}×** the standardised one; "
    + f"the lesson's lr = {lr} is {lr / (2 / ev_raw.max().item()):,.3g}× the raw problem's stability limit"
    + (" (it would diverge there). " if lr > 2 / ev_raw.max().item() else ". ")
    + f"At its best learning rate ({lr_raw:.3g}) the raw run still ends {loss_after['raw units'] - L_star:.4g} above "
    + f"the optimum {L_star:.6g} (standardised: {max(loss_after['standardised'] - L_star, 0):.2g} above): "
    + "at the best learning rate the slowest error shrinks per step by a factor "
    + f"{(kappa['raw units'] - 1) / (kappa['raw units'] + 1):.6f} in raw units, "
    + f"{(kappa['standardised'] - 1) / (kappa['standardised'] + 1):.3f} standardised."))
viz.show(viz.compare_curves({"standardised (lr = " + f"{lr:.3g})": [max(l - L_star, 1e-12) for l in losses_hand],
                             f"raw units (lr = {lr_raw:.3g})": [max(l - L_star, 1e-12) for l in losses_raw]},
                            log_y=True, xaxis="step", yaxis="training MSE − optimum",
                            title="same problem, same steps: standardising makes the bowl round"))
# %% [markdown] id="c20"
# ## The loss surface
# The loss over two of the weights (the first feature's weight and the bias, the others held at their
# optimum) is a bowl; gradient descent walks down it.
# %%
k = 0
g0 = np.linspace(w_closed[k] - 2 * abs(w_closed[k]) - 10, w_closed[k] + 2 * abs(w_closed[k]) + 10, 60)
g1 = np.linspace(float(w_closed[-1]) - 150, float(w_closed[-1]) + 150, 60)
Z = np.zeros((len(g1), len(g0)))
for i, b in enumerate(g1):
    for j, a in enumerate(g0):
        wv = w_closed.clone()
        wv[k], wv[-1] = a, b
        Z[i, j] = linear.mse(Xtr, ytr, wv).item()
viz.show(viz.loss_surface(g0, g1, Z, path=path[:200, [k, -1]].numpy(),
                          labels=(f"w[{houses.feature_names[k]}]", "bias"), title="MSE over two weights"))
# %% [markdown] id="c22"
# ## How good is the fit?
# %%
from kit.metrics import regression_report

test = regression_report(yte, Xte @ w_closed)
baseline = regression_report(yte, torch.full_like(yte, ytr.mean().item()))
print(f"test MSE {test['mse']:.1f} (predict-the-mean baseline {baseline['mse']:.1f}), R² = {test['r2']:.3f}")
pred = (Xte @ w_closed).numpy()
viz.show(viz.scatter_fit(yte.numpy(), pred, [yte.min().item(), yte.max().item()], [yte.min().item(), yte.max().item()],
                         title="predicted vs actual (test set)", xaxis="actual", yaxis="predicted"))
# %%
kit.save_metrics({"max_weight_diff": max(agree.values()), "hand_vs_autograd": agree["hand vs autograd"],
                  "test_mse": test["mse"], "test_r2": test["r2"], "baseline_mse": baseline["mse"],
                  "final_gd_loss": losses_hand[-1], "fit_val_mse": fit_val_mse, "closed_form_loss": L_star, "max_stable_lr": 2 / lam_max,
                  "n_train": len(train_idx), "cond_scaled": kappa["standardised"], "cond_raw": kappa["raw units"],
                  "raw_gd_loss": loss_after["raw units"]},
                 params={"data": houses.source})
# %% [markdown] id="c25"
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("01.3", 2)` shows the next hint.
# Inputs are float64 tensors unless said otherwise.
#
# **Exercise 01.1 (warm-up: a loss and its gradient).** Write `mse_and_grad(y, y_hat)` for targets `y` and
# predictions `y_hat` (two vectors of length $n$): return `(loss, grad)`, the mean squared error
# $L = \frac1n\sum_i (\hat y_i - y_i)^2$ and its gradient $\partial L / \partial \hat y$ — a vector of length $n$,
# derived by hand (no autograd). This gradient is the first link of the chain rule that exercise 01.3 completes.
# %% tags=["solution"]
def mse_and_grad(y, y_hat):
    residual = y_hat - y
    return (residual ** 2).mean(), 2 * residual / len(residual)
# %%
from kit.exercises import check, hint
check("01.1", mse_and_grad)
# %% [markdown] id="c28"
# **Exercise 01.2 (standardising).** Write `standardise(X_train, X_test)` for two NumPy arrays with the same
# columns: return `(Z_train, Z_test)`, each column shifted and scaled to $(x - \mu_j)/\sigma_j$ where $\mu_j$ and
# $\sigma_j$ are the mean and the (population, `ddof=0`) standard deviation of column $j$ **of the training set**.
# %% tags=["solution"]
def standardise(X_train, X_test):
    mu, sd = X_train.mean(0), X_train.std(0)
    return (X_train - mu) / sd, (X_test - mu) / sd
# %%
check("01.2", standardise)
# %% [markdown] id="c31"
# **Exercise 01.3 (implement: one step of gradient descent).** Write `gd_step(X, y, w, lr)`: one step
# $w \leftarrow w - \eta\,\nabla L(w)$ on $L(w) = \frac1n\lVert Xw - y\rVert^2$, with the gradient derived by hand
# (no autograd). Return the new `w`; `X` already holds the column of ones.
# %% tags=["solution"]
def gd_step(X, y, w, lr):
    return w - lr * 2 / len(X) * X.T @ (X @ w - y)
# %%
check("01.3", gd_step)
# %% [markdown] id="c34"
# **Exercise 01.4 (the stability limit).** Write `max_stable_lr(X)`: the largest learning rate for which
# gradient descent on the MSE with design matrix `X` converges, $2/\lambda_{max}(H)$ for the Hessian $H$ of $L$.
# %% tags=["solution"]
def max_stable_lr(X):
    return 2 / torch.linalg.eigvalsh(2 / len(X) * X.T @ X).max()
# %%
check("01.4", max_stable_lr)
# %% [markdown] id="c37"
# **Exercise 01.5 (implement: the closed form).** Write `normal_equation(X, y)` for a feature matrix `X`
# **without** the column of ones: fit $\hat y = Xw + b$ by least squares and return `(w, b)` — `w` a vector with
# one weight per column of `X`, `b` a number. Solve the normal equations yourself (`torch.linalg.solve` or
# `lstsq`; not `linear.closed_form`).
# %% tags=["solution"]
def normal_equation(X, y):
    A = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1)
    wb = torch.linalg.solve(A.T @ A, A.T @ y)
    return wb[:-1], wb[-1]
# %%
check("01.5", normal_equation)
