# %% [markdown] id="c00"
# # NN — Title of the lesson
#
# **Goals.** One paragraph: what the learner will be able to do, and the number the lesson is judged by.
#
# **Data.** What it trains on (offline default first), from `kit.data.load`.
# %% tags=["parameters"]
seed = 0            # random seed
device = "auto"     # "auto", "cpu", "cuda" or "mps"
smoke = False       # tiny run for tests (well under 30 s on 2 CPU cores)
epochs = 20         # an example knob: every parameter gets a comment and a rule below
lr = 1e-3           # learning rate
# %%
import kit
from kit.params import Float, Int, validate

# seed, device and smoke are checked by validate itself; declare a rule for every other parameter
validate(globals(), epochs=Int(1, 10_000), lr=Float(0, 10, lo_open=True))
if smoke:
    epochs = min(epochs, 2)
dev = kit.setup(seed, device)
# %% [markdown] id="c03"
# ## The idea
# Narrative, the formula the lesson shows (checked numerically in tests/), then calls into kit.
# %%
import torch

import kit.data
import kit.viz as viz
from kit.models import MLP, MLPConfig
from kit.train import fit

digits = kit.data.load("digits")
# … build the model, train it with fit, plot with kit.viz …
# %%
# every number the markdown talks about comes from here; save_metrics records the validated parameters itself
kit.save_metrics({"val_acc": 0.0}, timing={})
# %% [markdown] id="c06"
# ## Exercises
# 3–5 of rising difficulty, defined in kit/exercises/lessonNN.py (kit's reference, fresh cases, hints in levels).
# **Exercise NN.1 (implement).** Write `key_piece(x)`, the lesson's key piece; kit checks it on fresh random inputs.
# %% tags=["solution"]
def key_piece(x):
    return x
# %%
from kit.exercises import check, hint
check("NN.1", key_piece)
