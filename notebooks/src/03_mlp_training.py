# %% [markdown] id="c00"
# # 03 — MLPs, the training loop, optimizers and regularization
#
# **Goals.** Train a multi-layer perceptron on handwritten digits with `kit.train.fit` — one loop with a
# progress bar and a live plot. Compare SGD, momentum, RMSProp and Adam on one plot; then make a network
# overfit on purpose and tame it with L2, L1, dropout and early stopping.
#
# **Data.** scikit-learn's 1 797 real 8×8 handwritten digits (UCI).
# %% tags=["parameters"]
seed = 0            # random seed
device = "auto"     # "auto", "cpu", "cuda" or "mps"
smoke = False       # tiny run for tests
epochs = 40         # epochs for the optimizer comparison
hidden = 128        # hidden units per layer
batch_size = 64     # minibatch size
overfit_train = 200 # training examples in the overfitting demo
# %%
import kit
from kit.params import Int, validate

validate(globals(), epochs=Int(1, 10_000),
         hidden=Int(1, 100_000), batch_size=Int(1, 100_000), overfit_train=Int(20, 1_500))
dev = kit.setup(seed, device)
if smoke:
    epochs = min(epochs, 6)
# %%
import torch
import torch.nn.functional as F

import kit.data
import kit.viz as viz
from kit.models import MLP, MLPConfig, l1_penalty, n_params
from kit.train import EarlyStopping, accuracy, fit

digits = kit.data.load("digits")
tr, va, te = kit.data.split(len(digits), (0.6, 0.2, 0.2), seed=seed, stratify=digits.y)
X = torch.tensor(digits.X / 16.0, dtype=torch.float32)
y = torch.tensor(digits.y, dtype=torch.long)
train, val, test = (X[tr], y[tr]), (X[va], y[va]), (X[te], y[te])
print(f"{len(tr)} train / {len(va)} validation / {len(te)} test images of 8×8 pixels")
# %% [markdown] id="c04"
# ## The network and the loop
# An MLP is a stack of `Linear → ReLU` layers ending in one logit per class; the loss is the
# cross-entropy of the softmax. `fit` runs the loop: shuffle, forward, loss, `backward()`,
# optimizer step — and after every epoch evaluates on the validation set and calls its callbacks
# (progress bar, live plot, early stopping, checkpoints).
# %%
def make_model(dropout=0.0, width=hidden, depth=1):
    torch.manual_seed(seed)  # every model below starts from the same initial weights
    return MLP(MLPConfig(64, 10, hidden=(width,) * depth, dropout=dropout))

print(make_model(), f"\n{n_params(make_model()):,} parameters")
# %% [markdown] id="c06"
# ## Four optimizers
# All four start from the minibatch gradient $g_t = \nabla_w L$ at step $t$ and the learning rate $\eta$
# (the updates below are exactly what `torch.optim` computes; `tests/test_lesson03.py` steps them by hand
# and compares with torch to $10^{-6}$):
# * **SGD**: $w_t = w_{t-1} - \eta\, g_t$.
# * **Momentum**: $v_t = \beta v_{t-1} + g_t,\; w_t = w_{t-1} - \eta\, v_t$ ($v_0 = 0$, $\beta = 0.9$) — a heavy
#   ball that keeps its speed.
# * **RMSProp**: a running mean of squared gradients gives every weight its own step size:
#   $s_t = \alpha s_{t-1} + (1-\alpha)\, g_t^2,\; w_t = w_{t-1} - \eta\, g_t / (\sqrt{s_t} + \epsilon)$
#   ($s_0 = 0$, $\alpha = 0.99$, $\epsilon = 10^{-8}$; all operations elementwise, no bias correction).
# * **Adam**: momentum and RMSProp scaling together, with both running means bias-corrected (they start at 0,
#   so early on they underestimate):
#   $m_t = \beta_1 m_{t-1} + (1-\beta_1)\, g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2,$
#   $\hat m_t = m_t / (1-\beta_1^t),\quad \hat v_t = v_t / (1-\beta_2^t),\quad
#   w_t = w_{t-1} - \eta\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)$
#   ($m_0 = v_0 = 0$, $\beta_1 = 0.9$, $\beta_2 = 0.999$, $\epsilon = 10^{-8}$). At $t = 1$ the correction turns
#   $m_1 = 0.1\,g_1$ back into $g_1$, so the first step has size about $\eta$ for every weight.
#
# The Adam run shows the live plot (it updates while training in JupyterLab).
# %%
from IPython.display import Markdown, display

optimizers = {"sgd": 0.1, "momentum": 0.05, "rmsprop": 1e-3, "adam": 1e-3}
runs, models = {}, {}
for name, lr in optimizers.items():
    models[name] = make_model()
    runs[name] = fit(models[name], train, val, loss_fn=F.cross_entropy, metrics={"acc": accuracy}, optimizer=name,
                     lr=lr, epochs=epochs, batch_size=batch_size, device=dev, seed=seed, live=(name == "adam"))
viz.show(viz.compare_curves({n: h["val_loss"] for n, h in runs.items()}, title="validation loss by optimizer",
                            yaxis="validation cross-entropy", log_y=True))
final_acc = {n: h["val_acc"][-1] for n, h in runs.items()}
final_loss = {n: h["val_loss"][-1] for n, h in runs.items()}
# the best optimizer by the run's own numbers: highest final validation accuracy, ties broken by validation loss
best_opt = max(runs, key=lambda n: (final_acc[n], -final_loss[n]))
display(Markdown("| optimizer | lr | final validation accuracy | final validation loss |\n|---|---|---|---|\n" +
                 "\n".join(f"| {n}{' (best)' if n == best_opt else ''} | {optimizers[n]:g} | {final_acc[n]:.4f} | "
                           f"{final_loss[n]:.4f} |" for n in runs) +
                 f"\n\nAfter {epochs} epochs **{best_opt}** has the highest validation accuracy (ties broken by the "
                 "lower validation loss): it is the one we test at the end. Each optimizer has one hand-picked "
                 "learning rate here, so this ranks these four settings, not the algorithms in general."))
# %% [markdown] id="c08"
# ## Overfitting, and four cures
# With only a few training images and a wide network, training loss keeps falling while validation
# loss turns back up: the network memorises. We compare
# * **L2** — adds $\frac{\lambda}{2}\lVert w\rVert^2$ to the loss, whose gradient is $\lambda w$ (for a penalty written
#   $\lambda\lVert w\rVert^2$ it would be $2\lambda w$). Here it comes through Adam's `weight_decay=λ`, which adds
#   $\lambda w$ to each gradient **before** Adam's moments see it — *coupled* L2:
#   $g_t \leftarrow g_t + \lambda w_{t-1}$, then the Adam update above. Adam then divides by $\sqrt{\hat v_t}$, so a
#   weight with large gradients is barely decayed and one with tiny gradients is decayed a lot.
#   **AdamW** (`optimizer="adamw"`) *decouples* the decay: Adam runs on the plain $g_t$ and the weights shrink
#   separately, $w_t = (1 - \eta\lambda)\, w_{t-1} - \eta\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)$ — every weight
#   by the same factor. For plain SGD (no momentum) the two are the same update; for Adam they are not.
# * **L1** — adds $\lambda\sum|w|$, whose subgradient $\lambda\,\mathrm{sign}(w)$ pushes small weights as hard as
#   large ones towards zero. Whether they *reach* zero is measured below.
# * **dropout** — randomly zeroes hidden units during training (never at evaluation),
# * **early stopping** — keeps the weights of the best validation epoch and stops when it stops improving.
# %%
from kit.models.mlp import weight_sparsity

small = (train[0][:overfit_train], train[1][:overfit_train])
reg_epochs = 20 if smoke else 150
common = dict(loss_fn=F.cross_entropy, optimizer="adam", lr=1e-3, epochs=reg_epochs, batch_size=32, device=dev, seed=seed,
              progress=False)
early = EarlyStopping("val_loss", patience=10)
reg_setups = {"none": ({}, {}), "L2": ({}, {"weight_decay": 1e-2}), "L1": ({}, {"penalty": l1_penalty(1e-5)}),
              "dropout": ({"dropout": 0.5}, {}), "early stopping": ({}, {"callbacks": [early]})}
reg, reg_models = {}, {}
for k, (model_kw, fit_kw) in reg_setups.items():
    reg_models[k] = make_model(width=512, depth=2, **model_kw)
    reg[k] = fit(reg_models[k], small, val, **fit_kw, **common)
h = reg["none"]
viz.show(viz.compare_curves({"train loss": h["train_loss"], "validation loss": h["val_loss"]},
                            title=f"no regularization, {overfit_train} training images: the gap is overfitting", log_y=True))
viz.show(viz.compare_curves({k: v["val_loss"] for k, v in reg.items()}, title="validation loss with each cure", log_y=True))
# %% [markdown] id="c10"
# **Comparing like with like.** Early stopping hands back the weights of its *best* validation epoch, while the
# other runs end with their *last* epoch's weights; putting its best next to their last would flatter it. So the
# table gives every run both numbers — its best validation loss over all epochs (what each would give if it were
# stopped at the right moment) and the loss of the weights it ends with (for early stopping the restored best
# epoch) — and, because those best epochs were *chosen* on the validation set, the **test** loss of the weights
# each run ends with, which no choice has seen. The bar chart shows the test loss.
# %%
best_val = {k: min(v["val_loss"]) for k, v in reg.items()}
last_val = {k: v["val_loss"][-1] for k, v in reg.items()}
last_val["early stopping"] = best_val["early stopping"]  # its best weights were restored


def test_loss(model):
    model.eval()
    with torch.inference_mode():
        return F.cross_entropy(model(test[0].to(dev)).cpu(), test[1]).item()


end_test = {k: test_loss(m) for k, m in reg_models.items()}
display(Markdown("| run | best val loss (epoch) | val loss of the weights it ends with | test loss of those weights |\n"
                 "|---|---|---|---|\n" + "\n".join(
                     f"| {k} | {best_val[k]:.4f} ({int(min(range(len(reg[k])), key=lambda i: reg[k]['val_loss'][i])) + 1}) "
                     f"| {last_val[k]:.4f} | {end_test[k]:.4f} |" for k in reg)))
viz.show(viz.bar(end_test, title="test loss of the weights each run ends with (lower is better)"))
print("early stopping stopped at epoch", early.stopped_epoch, "and restored epoch", early.best_epoch)
best_reg = min(end_test, key=end_test.get)
n_es = len(reg["early stopping"])
same_path = reg["early stopping"]["val_loss"] == reg["none"]["val_loss"][:n_es]
display(Markdown(
    f"By the test loss of the weights each run ends with, **{best_reg}** does best ({end_test[best_reg]:.4f}; "
    f"no regularization: {end_test['none']:.4f}). By best validation loss over all epochs: no regularization "
    f"{best_val['none']:.4f}, early stopping {best_val['early stopping']:.4f}. " +
    (f"For its {n_es} epochs the early-stopping run followed the unregularized run's path exactly (same seed, same "
     "initial weights, same batches): early stopping *is* that run, cut short and rolled back to its best epoch — "
     "it chooses a checkpoint, it does not find better weights." if same_path else
     f"The early-stopping run did not follow the unregularized run's path exactly over its {n_es} epochs.")))
# %% [markdown] id="c12"
# **Does L1 make weights exactly zero?** Its subgradient pushes every weight towards 0 by a fixed amount, but a
# gradient step lands on 0.0 only by accident: a weight near zero overshoots and flips sign, back and forth. We
# count the weight matrices' entries that are exactly 0.0 and those within $10^{-3}$ of it.
# %%
sparsity = {k: weight_sparsity(reg_models[k], tol=1e-3) for k in ("none", "L1")}
display(Markdown("| run | weights | exactly 0.0 | \\|w\\| < 1e-3 |\n|---|---|---|---|\n" + "\n".join(
    f"| {k} | {s['n_weights']:,} | {s['exact_zero']:.2%} | {s['below_tol']:.2%} |" for k, s in sparsity.items()) +
    f"\n\nWith L1 (λ = 1e-5, Adam, {reg_epochs} epochs) {sparsity['L1']['exact_zero']:.2%} of the weights are exactly "
    f"zero (without: {sparsity['none']['exact_zero']:.2%}) and {sparsity['L1']['below_tol']:.2%} are below 1e-3 "
    f"(without: {sparsity['none']['below_tol']:.2%}). " +
    ("Subgradient steps shrink weights towards zero but do not set them to it" if sparsity["L1"]["exact_zero"] < 0.01
     else "Some weights did land exactly on 0.0") +
    "; exact zeros need a proximal step (soft-thresholding: set to 0 any weight the step would carry across zero) "
    "or pruning after training."))
# %% [markdown] id="c14"
# ## Test accuracy of the best optimizer run
# The optimizer was chosen on the validation set above; the test set was not used for any choice, so this is an
# honest estimate.
# %%
from kit.metrics import classification_report

model = models[best_opt]
model.eval()
with torch.inference_mode():
    pred = model(test[0].to(dev)).argmax(1).cpu()
rep = classification_report(test[1], pred)
print(f"{best_opt}:", {k: round(v, 4) for k, v in rep.items()})
# %%
kit.save_metrics({"val_acc_" + k: v for k, v in final_acc.items()} |
                 {"final_val_loss_" + k.replace(" ", "_"): v for k, v in last_val.items()} |
                 {"overfit_gap": last_val["none"] - best_val["none"], "early_stop_epoch": early.stopped_epoch or reg_epochs,
                  "test_acc": rep["accuracy"], "test_f1": rep["f1"]} |
                 {"best_val_loss_" + k.replace(" ", "_"): v for k, v in best_val.items()} |
                 {"test_loss_" + k.replace(" ", "_"): v for k, v in end_test.items()} |
                 {"l1_exact_zero": sparsity["L1"]["exact_zero"], "l1_below_1e-3": sparsity["L1"]["below_tol"],
                  "none_below_1e-3": sparsity["none"]["below_tol"]},
                 timing={"adam_seconds": sum(runs["adam"]["seconds"])},
                 params={"device": str(dev), "best_optimizer": best_opt})
# %% [markdown] id="c17"
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("03.3", 2)` shows the next hint.
# Tensors are float64; all operations on them are elementwise.
#
# **Exercise 03.1 (warm-up: counting parameters).** Write `mlp_params(sizes)`: the number of trainable
# parameters of an MLP whose layer widths are `sizes = [n_in, h_1, …, n_out]` (a `Linear` layer between each
# consecutive pair, as in `MLP`). Work it out from the sizes; do not build a model.
# %% tags=["solution"]
def mlp_params(sizes):
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
# %%
from kit.exercises import check, hint
check("03.1", mlp_params)
# %% [markdown] id="c20"
# **Exercise 03.2 (momentum).** Write `momentum_step(w, g, v, lr, beta)`: one step of SGD with momentum as
# `torch.optim.SGD(momentum=beta)` takes it (the rule above), returning the new `(w, v)`.
# %% tags=["solution"]
def momentum_step(w, g, v, lr, beta):
    v = beta * v + g
    return w - lr * v, v
# %%
check("03.2", momentum_step)
# %% [markdown] id="c23"
# **Exercise 03.3 (implement: Adam).** Write `adam_step(w, g, m, v, t, lr, b1, b2, eps)`: step `t`
# ($t = 1, 2, \dots$) of Adam from the moments `m`, `v` of step $t-1$, with bias correction and $\epsilon$ added
# to $\sqrt{\hat v_t}$ as above. Return the new `(w, m, v)` (the *uncorrected* moments, to feed the next step).
# %% tags=["solution"]
def adam_step(w, g, m, v, t, lr, b1, b2, eps):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    return w - lr * m_hat / (v_hat.sqrt() + eps), m, v
# %%
check("03.3", adam_step)
# %% [markdown] id="c26"
# **Exercise 03.4 (coupled or decoupled decay).** Write `adamw_step(w, g, m, v, t, lr, b1, b2, eps, wd)`: one
# step of AdamW as `torch.optim.AdamW(weight_decay=wd)` takes it — the weights shrink by $(1-\eta\lambda)$
# *outside* Adam's moments, which see only the plain gradient. Return `(w, m, v)`. (Adding `wd * w` to the
# gradient instead is `torch.optim.Adam(weight_decay=wd)`: a different optimizer, and the check will say so.)
# %% tags=["solution"]
def adamw_step(w, g, m, v, t, lr, b1, b2, eps, wd):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    return w * (1 - lr * wd) - lr * m_hat / (v_hat.sqrt() + eps), m, v
# %%
check("03.4", adamw_step)
