# %% [md]
# # 03 — MLPs, the training loop, optimizers and regularization

**Goals.** Train a multi-layer perceptron on handwritten digits with `kit.train.fit` — one loop with a
progress bar and a live plot. Compare SGD, momentum, RMSProp and Adam on one plot; then make a network
overfit on purpose and tame it with L2, L1, dropout and early stopping.

**Data.** scikit-learn's 1 797 real 8×8 handwritten digits (UCI).
# %% [code] parameters
seed = 0            # random seed
device = "auto"     # "auto", "cpu", "cuda" or "mps"
smoke = False       # tiny run for tests
epochs = 40         # epochs for the optimizer comparison
hidden = 128        # hidden units per layer
batch_size = 64     # minibatch size
overfit_train = 200 # training examples in the overfitting demo
# %% [code]
import kit
from kit.params import Int, validate

validate(globals(), epochs=Int(1, 10_000),
         hidden=Int(1, 100_000), batch_size=Int(1, 100_000), overfit_train=Int(20, 1_500))
dev = kit.setup(seed, device)
if smoke:
    epochs = min(epochs, 6)
# %% [code]
import torch
import torch.nn.functional as F

import kit.data
import kit.viz as viz
from kit.models import MLP, MLPConfig, l1_penalty, n_params
from kit.train import EarlyStopping, fit

digits = kit.data.load("digits")
tr, va, te = kit.data.split(len(digits), (0.6, 0.2, 0.2), seed=seed, stratify=digits.y)
X = torch.tensor(digits.X / 16.0, dtype=torch.float32)
y = torch.tensor(digits.y, dtype=torch.long)
train, val, test = (X[tr], y[tr]), (X[va], y[va]), (X[te], y[te])
print(f"{len(tr)} train / {len(va)} validation / {len(te)} test images of 8×8 pixels")
# %% [md]
# ## The network and the loop
# An MLP is a stack of `Linear → ReLU` layers ending in one logit per class; the loss is the
# cross-entropy of the softmax. `fit` runs the loop: shuffle, forward, loss, `backward()`,
# optimizer step — and after every epoch evaluates on the validation set and calls its callbacks
# (progress bar, live plot, early stopping, checkpoints).
# %% [code]
def make_model(dropout=0.0, width=hidden, depth=1):
    torch.manual_seed(seed)  # every model below starts from the same initial weights
    return MLP(MLPConfig(64, 10, hidden=(width,) * depth, dropout=dropout))

print(make_model(), f"\n{n_params(make_model()):,} parameters")
# %% [md]
# ## Four optimizers
# * **SGD**: $w \leftarrow w - \eta g$.
# * **Momentum**: $v \leftarrow \beta v + g,\; w \leftarrow w - \eta v$ — a heavy ball that keeps its speed.
# * **RMSProp**: divides the step by a running RMS of recent gradients, so every weight gets its own scale.
# * **Adam**: momentum plus RMSProp scaling, with bias correction of both running averages.
#
# The Adam run shows the live plot (it updates while training in JupyterLab).
# %% [code]
optimizers = {"sgd": 0.1, "momentum": 0.05, "rmsprop": 1e-3, "adam": 1e-3}
runs = {}
for name, lr in optimizers.items():
    runs[name] = fit(make_model(), train, val, optimizer=name, lr=lr, epochs=epochs, batch_size=batch_size,
                     device=dev, seed=seed, live=(name == "adam"))
viz.show(viz.compare_curves({n: h["val_loss"] for n, h in runs.items()}, title="validation loss by optimizer",
                            yaxis="validation cross-entropy", log_y=True))
final_acc = {n: h["val_acc"][-1] for n, h in runs.items()}
print({n: round(a, 4) for n, a in final_acc.items()})
# %% [md]
# ## Overfitting, and four cures
# With only a few training images and a wide network, training loss keeps falling while validation
# loss turns back up: the network memorises. We compare
# * **L2** — adds $\frac{\lambda}{2}\lVert w\rVert^2$, whose gradient is $\lambda w$ (here through Adam's `weight_decay`,
#   which adds $\lambda w$ to each gradient *before* Adam rescales it — coupled L2; AdamW instead shrinks the
#   weights directly, decoupled from the gradient's scaling),
# * **L1** — adds $\lambda\sum|w|$, whose (sub)gradient $\lambda\,\mathrm{sign}(w)$ pushes small weights as hard as
#   large ones towards zero; with SGD or Adam they end up near zero rather than exactly at it,
# * **dropout** — randomly zeroes hidden units during training (never at evaluation),
# * **early stopping** — keeps the weights of the best validation epoch and stops when it stops improving.
# %% [code]
small = (train[0][:overfit_train], train[1][:overfit_train])
reg_epochs = 20 if smoke else 150
common = dict(optimizer="adam", lr=1e-3, epochs=reg_epochs, batch_size=32, device=dev, seed=seed, progress=False)
early = EarlyStopping("val_loss", patience=10)
reg = {
    "none": fit(make_model(width=512, depth=2), small, val, **common),
    "L2": fit(make_model(width=512, depth=2), small, val, weight_decay=1e-2, **common),
    "L1": fit(make_model(width=512, depth=2), small, val, penalty=l1_penalty(1e-5), **common),
    "dropout": fit(make_model(dropout=0.5, width=512, depth=2), small, val, **common),
    "early stopping": fit(make_model(width=512, depth=2), small, val, callbacks=[early], **common),
}
h = reg["none"]
viz.show(viz.compare_curves({"train loss": h["train_loss"], "validation loss": h["val_loss"]},
                            title=f"no regularization, {overfit_train} training images: the gap is overfitting", log_y=True))
viz.show(viz.compare_curves({k: v["val_loss"] for k, v in reg.items()}, title="validation loss with each cure", log_y=True))
# %% [code]
best_val = {k: min(v["val_loss"]) for k, v in reg.items()}
last_val = {k: v["val_loss"][-1] for k, v in reg.items()}
last_val["early stopping"] = best_val["early stopping"]  # its best weights were restored
viz.show(viz.bar(last_val, title="final validation loss (lower is better)"))
print("early stopping stopped at epoch", early.stopped_epoch, "and restored epoch", early.best_epoch)
# %% [md]
# ## Test accuracy of the best optimizer run
# The test set was not used for any choice above, so this is an honest estimate.
# %% [code]
from kit.metrics import classification_report

model = make_model()
hist = fit(model, train, val, optimizer="adam", lr=1e-3, epochs=epochs, batch_size=batch_size, device=dev,
           seed=seed, progress=False)
model.eval()
with torch.inference_mode():
    pred = model(test[0].to(dev)).argmax(1).cpu()
rep = classification_report(test[1], pred)
print({k: round(v, 4) for k, v in rep.items()})
# %% [code]
kit.save_metrics({"val_acc_" + k: v for k, v in final_acc.items()} |
                 {"final_val_loss_" + k.replace(" ", "_"): v for k, v in last_val.items()} |
                 {"overfit_gap": last_val["none"] - best_val["none"], "early_stop_epoch": early.stopped_epoch or reg_epochs,
                  "test_acc": rep["accuracy"], "test_f1": rep["f1"]},
                 timing={"adam_seconds": sum(runs["adam"]["seconds"])},
                 params={"device": str(dev)})
# %% [md]
# ## Exercises
# **Exercise 1.** How many trainable parameters does `MLP(MLPConfig(64, 10, hidden=(32,)))` have?
# Work it out by hand (weights plus biases of each layer) and write the number.
# %% [code] solution
answer_1 = 64 * 32 + 32 + 32 * 10 + 10
# %% [code]
from kit.checks import expect_close
expect_close("Exercise 1", answer_1, n_params(MLP(MLPConfig(64, 10, hidden=(32,)))),
             hint="A Linear(a, b) layer has a·b weights and b biases.")
# %% [md]
# **Exercise 2.** One step of SGD with momentum ($\beta=0.9$, $\eta=0.1$) from $v=0$ on
# $f(w)=w^2$ at $w=1$: what is the new $w$? (Check yourself with `torch.optim.SGD`.)
# %% [code] solution
answer_2 = 1 - 0.1 * (0.9 * 0 + 2 * 1)
# %% [code]
_w = torch.tensor(1.0, requires_grad=True)
_opt = torch.optim.SGD([_w], lr=0.1, momentum=0.9)
(_w ** 2).backward(); _opt.step()
expect_close("Exercise 2", answer_2, _w.item(), hint="g = 2w = 2; v = βv + g = 2; w ← w − ηv.")
