# %% [md]
# # 01 — Linear regression: house prices three ways

**Goals.** Fit $\hat y = Xw$ to house prices by (1) the closed-form least-squares solution,
(2) gradient descent with a gradient derived by hand, and (3) autograd — and see that all three agree.
Then explore the learning rate with a slider and look at the loss surface.

**Data.** With network access the loader fetches the California housing data (checksummed);
offline it uses a synthetic town whose true price rule is known — the printed line says which.
# %% [code] parameters
seed = 0            # random seed
device = "auto"     # linear regression is tiny: it runs on the CPU either way
smoke = False       # tiny run for tests
lr = 0.1            # gradient-descent learning rate (features are standardised)
steps = 1000        # gradient-descent steps
data_source = "auto"  # "auto" (real when reachable, else embedded), "real" or "embedded"
# %% [code]
import kit
from kit.params import Choice, Float, Int, validate

validate(globals(), lr=Float(0, 10, lo_open=True),
         steps=Int(1, 1_000_000), data_source=Choice("auto", "real", "embedded"))
kit.setup(seed, device)
# %% [md]
# ## The data
# %% [code]
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
# %% [md]
# We standardise each feature with the *training* mean and standard deviation (never the test set's),
# and append a column of ones so the bias $b$ is the last entry of $w$. We work in float64 so the three
# methods can be compared to many digits.
# %% [code]
mu, sd = houses.X[train_idx].mean(0), houses.X[train_idx].std(0)
def design(idx):
    return linear.add_bias(torch.tensor((houses.X[idx] - mu) / sd, dtype=torch.float64))
Xtr, Xte = design(train_idx), design(test_idx)
ytr = torch.tensor(houses.y[train_idx], dtype=torch.float64)
yte = torch.tensor(houses.y[test_idx], dtype=torch.float64)
# %% [md]
# ## 1. Closed form
# The mean squared error $L(w) = \frac1n\lVert Xw - y\rVert^2$ is minimised where its gradient vanishes:
# $X^\top X w = X^\top y$ (the *normal equations*). We solve it with a least-squares solver, which is
# more stable than inverting $X^\top X$.
# %% [code]
w_closed = linear.closed_form(Xtr, ytr)
print("weights (standardised units):", dict(zip(houses.feature_names + ["bias"], w_closed.numpy().round(3))))
# %% [md]
# ## 2. Gradient descent, gradient derived by hand
# Differentiating $L(w) = \frac1n (Xw-y)^\top(Xw-y)$ gives $\nabla L(w) = \frac2n X^\top (Xw - y)$.
# Gradient descent repeats $w \leftarrow w - \eta\,\nabla L(w)$:
# %% [code]
viz.source(linear.mse_grad, linear.gd_by_hand)
w_hand, losses_hand, path = linear.gd_by_hand(Xtr, ytr, lr, steps)
# %% [md]
# ## 3. Autograd
# Same descent, but PyTorch computes the gradient from the recorded operations (`loss.backward()`) and
# `torch.optim.SGD` takes the step — the loop every later lesson's `fit` runs for us:
# %% [code]
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
# %% [code]
viz.show(viz.compare_curves({"by hand": losses_hand, "autograd": losses_auto}, log_y=True, xaxis="step",
                            yaxis="training MSE", title="both descents follow the same path"))
# %% [md]
# ## 4. The same model with the kit's training loop
# Later lessons train every model with `kit.train.fit`: minibatches, an optimizer, a validation set, a live
# plot of the curves. On this problem it is a `torch.nn.Linear` layer trained with minibatch SGD on the same
# standardised features; it approaches the closed-form optimum too (minibatch noise keeps it from landing exactly).
# %% [code]
import torch.nn.functional as F
from kit.train import fit

Xva, yva = design(val_idx)[:, :-1].float(), torch.tensor(houses.y[val_idx])
layer = torch.nn.Linear(Xtr.shape[1] - 1, 1)
history = fit(layer, (Xtr[:, :-1].float(), ytr.float()), (Xva, yva), loss_fn=lambda out, y: F.mse_loss(out.squeeze(-1), y),
              metrics={}, optimizer="sgd", lr=lr / 2, epochs=10 if smoke else 40, batch_size=32, seed=seed,
              device="cpu", live=True)
fit_val_mse = history["val_loss"][-1]
print(f"validation MSE after {len(history)} epochs: {fit_val_mse:.1f} "
      f"(closed form: {linear.mse(design(val_idx), yva.double(), w_closed).item():.1f})")
# %% [md]
# ## The learning rate
# For this quadratic loss, gradient descent converges exactly when $\eta < 2/\lambda_{max}$, where
# $\lambda_{max}$ is the largest eigenvalue of the Hessian $H = \frac2n X^\top X$. Move the slider:
# small rates crawl, rates past the limit diverge.
# %% [code]
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
# %% [md]
# ## The loss surface
# The loss over two of the weights (the first feature's weight and the bias, the others held at their
# optimum) is a bowl; gradient descent walks down it.
# %% [code]
k = 0
g0 = np.linspace(w_closed[k] - 2 * abs(w_closed[k]) - 10, w_closed[k] + 2 * abs(w_closed[k]) + 10, 60)
g1 = np.linspace(float(w_closed[-1]) - 150, float(w_closed[-1]) + 150, 60)
Z = np.zeros((len(g1), len(g0)))
for i, b in enumerate(g1):
    for j, a in enumerate(g0):
        wv = w_closed.clone(); wv[k] = a; wv[-1] = b
        Z[i, j] = linear.mse(Xtr, ytr, wv).item()
viz.show(viz.loss_surface(g0, g1, Z, path=path[:200, [k, -1]].numpy(),
                          labels=(f"w[{houses.feature_names[k]}]", "bias"), title="MSE over two weights"))
# %% [md]
# ## How good is the fit?
# %% [code]
from kit.metrics import regression_report

test = regression_report(yte, Xte @ w_closed)
baseline = regression_report(yte, torch.full_like(yte, ytr.mean().item()))
print(f"test MSE {test['mse']:.1f} (predict-the-mean baseline {baseline['mse']:.1f}), R² = {test['r2']:.3f}")
pred = (Xte @ w_closed).numpy()
viz.show(viz.scatter_fit(yte.numpy(), pred, [yte.min().item(), yte.max().item()], [yte.min().item(), yte.max().item()],
                         title="predicted vs actual (test set)", xaxis="actual", yaxis="predicted"))
# %% [code]
kit.save_metrics({"max_weight_diff": max(agree.values()), "hand_vs_autograd": agree["hand vs autograd"],
                  "test_mse": test["mse"], "test_r2": test["r2"], "baseline_mse": baseline["mse"],
                  "final_gd_loss": losses_hand[-1], "fit_val_mse": fit_val_mse, "closed_form_loss": L_star, "max_stable_lr": 2 / lam_max,
                  "n_train": len(train_idx)},
                 params={"data": houses.source})
# %% [md]
# ## Exercises
# **Exercise 1.** Compute the test-set MSE of the baseline that always predicts the *training* mean price.
# %% [code] solution
answer_1 = ((yte - ytr.mean()) ** 2).mean()
# %% [code]
from kit.checks import expect_close
expect_close("Exercise 1", answer_1, baseline["mse"], atol=1e-6, hint="Use ytr.mean() as the prediction for every test house.")
# %% [md]
# **Exercise 2.** Compute the largest stable learning rate $2/\lambda_{max}$ of $H = \frac{2}{n}X^\top X$ yourself
# (hint: `torch.linalg.eigvalsh`).
# %% [code] solution
answer_2 = 2 / torch.linalg.eigvalsh(2 / len(Xtr) * Xtr.T @ Xtr).max()
# %% [code]
expect_close("Exercise 2", answer_2, 2 / lam_max, atol=1e-9, hint="H = 2/n · Xtrᵀ Xtr; take its largest eigenvalue.")
