# %% [md]
# # 00 — Setup: your environment, tensors, and how this kit works

**Goals.** Check that the environment works; pick a device; create your first tensors and take a first
gradient; learn how every lesson is organised (a *parameters* cell, calls into `kit`, a `metrics.json`).

Every lesson starts with a cell tagged `parameters`. Change values there in JupyterLab, or inject them
from the command line (`kit run 00 -p seed 1`), and the notebook re-runs with them. `smoke=True` makes
every lesson tiny: it is what the automated tests use.
# %% [code] parameters
seed = 0          # random seed: same seed on CPU → same numbers
device = "auto"   # "auto" picks cuda, then mps, then cpu
smoke = False     # True: tiny sizes for automated tests
n = 5             # size of the first tensors
# %% [md]
# The next cell checks the parameters: a wrong type or value stops here, with one message that names
# the parameter — before any work is done.
# %% [code]
import kit
from kit.params import Int, validate

validate(globals(), n=Int(1, 10_000))
dev = kit.setup(seed, device)
# %% [md]
# ## Versions
# These are the versions this notebook ran with (they also go into `metrics.json`).
# %% [code]
import platform

import numpy as np
import plotly
import sklearn
import torch

versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "plotly": plotly.__version__, "kit": kit.__version__}
versions
# %% [md]
# ## Tensors
# A tensor is an n-dimensional array that lives on a device and can record the operations applied to it.
# %% [code]
a = torch.arange(n, dtype=torch.float32, device=dev)
b = torch.ones(n, device=dev)
print("a =", a, "\nb =", b, "\na·b =", (a @ b).item(), "\nshape of outer product:", torch.outer(a, b).shape)
# %% [md]
# ## A first gradient
# For $f(x) = \sum_i x_i^2$ the gradient is $\nabla f = 2x$. Autograd computes it by recording the
# operations and applying the chain rule backwards; a finite-difference check confirms it numerically.
# %% [code]
from kit.checks import autograd_grad, finite_difference_grad, max_abs_diff

x = torch.linspace(-1, 1, n, dtype=torch.float64)
f = lambda t: (t ** 2).sum()
g_auto = autograd_grad(f, x)
g_fd = finite_difference_grad(f, x)
print("autograd:", g_auto.numpy().round(4), "\nexact 2x:", (2 * x).numpy().round(4))
grad_error = max(max_abs_diff(g_auto, 2 * x), max_abs_diff(g_fd, 2 * x))
print(f"largest disagreement with 2x: {grad_error:.2e}")
# %% [md]
# ## A first plot
# Figures in this kit are interactive plotly figures: hover, zoom, and toggle traces in the legend.
# %% [code]
import kit.viz as viz

xs = torch.linspace(-3, 3, 61)
fig = viz.compare_curves({"f(x) = x²": (xs ** 2).tolist(), "f'(x) = 2x": (2 * xs).tolist()},
                         title="a function and its derivative", yaxis="value", xaxis="sample")
viz.show(fig)
# %% [md]
# ## Results
# Each lesson writes its key numbers to `metrics.json` next to its output; reports and tests read them.
# %% [code]
kit.save_metrics({"grad_error": grad_error, "dot": float((a @ b).item())},
                 params={"device": str(dev)}, timing={})
# %% [md]
# ## Exercises
# **Exercise 1.** Create a 3×3 matrix with 2 on the diagonal and 0 elsewhere.
# %% [code] solution
answer_1 = 2 * torch.eye(3)
# %% [code]
from kit.checks import expect_close
expect_close("Exercise 1", answer_1, np.diag([2.0, 2.0, 2.0]), hint="Try torch.eye.")
# %% [md]
# **Exercise 2.** Use autograd to compute the derivative of $g(x) = x^3$ at $x = 2$ (expected: $3x^2 = 12$).
# %% [code] solution
t = torch.tensor(2.0, requires_grad=True)
(t ** 3).backward()
answer_2 = t.grad
# %% [code]
expect_close("Exercise 2", answer_2, 12.0, hint="Make a tensor with requires_grad=True, compute t**3, call .backward(), read .grad.")
