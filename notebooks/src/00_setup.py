# %% [markdown] id="c00"
# # 00 — Setup: your environment, tensors, and how this kit works
#
# **Goals.** Check that the environment works; pick a device; create your first tensors and take a first
# gradient; learn how every lesson is organised (a *parameters* cell, calls into `kit`, a `metrics.json`).
#
# Every lesson starts with a cell tagged `parameters`. Change values there in JupyterLab, or inject them
# from the command line (`kit run 00 -p seed 1`), and the notebook re-runs with them. `smoke=True` makes
# every lesson tiny: it is what the automated tests use.
# %% tags=["parameters"]
seed = 0          # random seed: same seed on CPU → same numbers
device = "auto"   # "auto" picks cuda, then mps, then cpu
smoke = False     # True: tiny sizes for automated tests
n = 5             # size of the first tensors
# %% [markdown] id="c02"
# The next cell checks the parameters: a wrong type or value stops here, with one message that names
# the parameter — before any work is done.
# %%
import kit
from kit.params import Int, validate

validate(globals(), n=Int(1, 10_000))
dev = kit.setup(seed, device)
# %% [markdown] id="c04"
# ## Versions
# These are the versions this notebook ran with (they also go into `metrics.json`).
# %%
import platform

import numpy as np
import plotly
import sklearn
import torch

versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "plotly": plotly.__version__, "kit": kit.__version__}
versions
# %% [markdown] id="c06"
# ## Tensors
# A tensor is an n-dimensional array that lives on a device and can record the operations applied to it.
# %%
a = torch.arange(n, dtype=torch.float32, device=dev)
b = torch.ones(n, device=dev)
print("a =", a, "\nb =", b, "\na·b =", (a @ b).item(), "\nshape of outer product:", torch.outer(a, b).shape)
# %% [markdown] id="c08"
# ## A first gradient
# For $f(x) = \sum_i x_i^2$ the gradient is $\nabla f = 2x$. Autograd computes it by recording the
# operations and applying the chain rule backwards; a finite-difference check confirms it numerically.
# %%
from kit.checks import autograd_grad, finite_difference_grad, max_abs_diff

x = torch.linspace(-1, 1, n, dtype=torch.float64)
f = lambda t: (t ** 2).sum()
g_auto = autograd_grad(f, x)
g_fd = finite_difference_grad(f, x)
print("autograd:", g_auto.numpy().round(4), "\nexact 2x:", (2 * x).numpy().round(4))
grad_error = max(max_abs_diff(g_auto, 2 * x), max_abs_diff(g_fd, 2 * x))
print(f"largest disagreement with 2x: {grad_error:.2e}")
# %% [markdown] id="c10"
# ## A first plot
# Figures in this kit are interactive plotly figures: hover, zoom, and toggle traces in the legend.
# %%
import kit.viz as viz

xs = torch.linspace(-3, 3, 61)
fig = viz.compare_curves({"f(x) = x²": (xs ** 2).tolist(), "f'(x) = 2x": (2 * xs).tolist()},
                         title="a function and its derivative", yaxis="value", xaxis="sample")
viz.show(fig)
# %% [markdown] id="c12"
# ## Results
# Each lesson writes its key numbers to `metrics.json` next to its output; reports and tests read them.
# %%
kit.save_metrics({"grad_error": grad_error, "dot": float((a @ b).item())},
                 params={"device": str(dev)}, timing={})
# %% [markdown] id="c14"
# ## Exercises
# Each lesson ends with exercises. You write the code in the cell marked `# YOUR CODE HERE`; the cell after it
# checks your answer against kit's own reference **on fresh random inputs and edge cases**, every time it runs.
# A failure names the first case that differs and gives a first hint; `hint("00.3", 2)` shows the next one
# (from the command line: `kit check NOTEBOOK --hints 2`).
#
# **Exercise 00.1 (warm-up).** Write `scaled_identity(n, c)`: an $n\times n$ float tensor with `c` on the
# diagonal and 0 elsewhere.
# %% tags=["solution"]
def scaled_identity(n, c):
    return c * torch.eye(n)
# %%
from kit.exercises import check, hint
check("00.1", scaled_identity)
# %% [markdown] id="c17"
# **Exercise 00.2 (broadcasting).** Write `pairwise_sq_dists(A, B)` for points `A` of shape $(m, d)$ and `B` of
# shape $(k, d)$: the $(m, k)$ tensor of squared distances $\lVert a_i - b_j\rVert^2$ — without a Python loop.
# %% tags=["solution"]
def pairwise_sq_dists(A, B):
    return ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)
# %%
check("00.2", pairwise_sq_dists)
# %% [markdown] id="c20"
# **Exercise 00.3 (autograd).** Write `tangent_line(f, x0)` that returns the slope and intercept of the
# tangent to a scalar function `f` (written with torch operations) at the number `x0`, using autograd — not a
# formula for the derivative, since `f` can be any function.
# %% tags=["solution"]
def tangent_line(f, x0):
    x = torch.tensor(float(x0), dtype=torch.float64, requires_grad=True)
    y = f(x)
    y.backward()
    slope = x.grad.item()
    return slope, y.item() - slope * x0
# %%
check("00.3", tangent_line)
