# %% [markdown] id="c00"
# # 13 — Privacy: federated learning and differential privacy
#
# **Goals.** Two ways to learn from data you should not collect or expose.
# **Federated averaging (FedAvg)**: simulated clients train on their own data and send only weights,
# which a server averages — with IID clients and with label-skewed (non-IID, Dirichlet α) clients,
# against ordinary centralized training. **Differential privacy with DP-SGD**: clip each example's
# gradient, add Gaussian noise, and let a privacy accountant (Opacus, RDP) state the guarantee as
# (ε, δ); see accuracy fall as the noise grows and ε shrinks, and watch per-sample clipping at work.
#
# **Data.** scikit-learn's 1 797 real 8×8 handwritten digits (UCI).
# %% tags=["parameters"]
seed = 0             # random seed
device = "auto"      # "auto", "cpu", "cuda" or "mps" (these small models train on the CPU)
smoke = False        # tiny run for tests
n_clients = 10       # simulated federated clients
rounds = 30          # FedAvg communication rounds
local_epochs = 2     # epochs each client trains per round
dirichlet_alpha = 0.1  # label skew of the non-IID split (smaller: each client sees fewer classes)
dp_epochs = 15       # DP-SGD epochs
max_grad_norm = 1.0  # DP-SGD clipping norm C
delta = 1e-5         # δ of the (ε, δ) guarantee (should be ≪ 1 / number of training examples)
threads = 1          # CPU threads (0: all usable cores); one is fastest for these small models
# %%
import kit
from kit.params import Float, Int, validate

validate(globals(), n_clients=Int(2, 200), rounds=Int(1, 10_000),
         local_epochs=Int(1, 1000), dirichlet_alpha=Float(0, 1e6, lo_open=True), dp_epochs=Int(1, 10_000),
         max_grad_norm=Float(0, 1e6, lo_open=True), delta=Float(0, 1, lo_open=True, hi_open=True), threads=Int(0, 1024))
dev = kit.setup(seed, device, threads=threads or None)
noise_multipliers = [0.5, 1.0, 2.0, 4.0]
if smoke:
    rounds, dp_epochs, noise_multipliers = min(rounds, 6), min(dp_epochs, 4), [0.5, 2.0]
# %%
import numpy as np
import torch
import torch.nn.functional as F

import kit.data
import kit.viz as viz
from kit.techniques import privacy as P
from kit.models.mlp import MLP, MLPConfig
from kit.train import accuracy, fit

digits = kit.data.load("digits")
tr, va, te = kit.data.split(len(digits), (0.7, 0.1, 0.2), seed=seed, stratify=digits.y)
tr = np.sort(np.concatenate([tr, va]))  # no model selection below: validation rows join the training set
X = torch.tensor(digits.X / 16.0, dtype=torch.float32)
y = torch.tensor(digits.y, dtype=torch.long)
train, test = (X[tr], y[tr]), (X[te], y[te])
print(f"{len(tr)} training / {len(te)} test images")

def make_model():
    torch.manual_seed(seed)  # every run starts from the same weights
    return MLP(MLPConfig(64, 10, hidden=(64,)))
# %% [markdown] id="c04"
# ## Part 1 — Federated averaging
# The data stay on the clients (phones, hospitals). Each round the server sends the current weights to
# the clients; each trains for a few epochs on its own data and sends back its weights; the server
# averages them, weighting client $k$ by its data size $n_k$:
# $w \leftarrow \sum_k \frac{n_k}{n} w_k$. With one local step of full-batch gradient descent this is
# exactly centralized gradient descent; with several local epochs, clients **drift** toward their own data —
# harmless when every client looks like the whole (IID), harmful when they do not (non-IID).
# %%
splits = {"IID": P.iid_split(len(tr), n_clients, seed),
          f"non-IID (Dirichlet α={dirichlet_alpha:g})": P.dirichlet_split(train[1].numpy(), n_clients, dirichlet_alpha, seed)}
for name, parts in splits.items():
    counts = P.label_counts(train[1].numpy(), parts, 10)
    viz.show(viz.heatmap(counts, x=[str(c) for c in range(10)], y=[f"client {k}" for k in range(n_clients)],
                         title=f"{name}: examples of each digit (columns) per client (rows)"))
# %%
viz.source(P.average_states)
fed = {}
for name, parts in splits.items():
    clients = [(train[0][p], train[1][p]) for p in parts]
    fed[name] = P.fedavg(make_model, clients, test, rounds=rounds, local_epochs=local_epochs, lr=0.05,
                         batch_size=16, seed=seed)
    print(f"{name}: test accuracy {fed[name]['test_acc'][-1]:.4f} after {rounds} rounds ({fed[name]['seconds']:.1f} s)")
central_model = make_model()
central = fit(central_model, train, test, loss_fn=F.cross_entropy, metrics={"acc": accuracy}, optimizer="sgd", lr=0.05,
              epochs=rounds * local_epochs, batch_size=16, device="cpu", seed=seed, progress=False)
curves = {k: v["test_acc"] for k, v in fed.items()}
curves["centralized (same epochs)"] = central["val_acc"][local_epochs - 1::local_epochs]
viz.show(viz.compare_curves(curves, title="FedAvg vs centralized training", xaxis="round (centralized: epochs / local_epochs)",
                            yaxis="test accuracy"))
# %% [markdown] id="c07"
# Federated learning by itself is not a privacy *guarantee*: weights can leak training data. It is
# combined with secure aggregation (the server sees only the sum) and with differential privacy — next.
#
# ## Part 2 — Differential privacy with DP-SGD
# A training algorithm is **(ε, δ)-differentially private** if adding or removing any one person's
# example changes the probability of any outcome by at most a factor $e^\varepsilon$ (plus a small δ).
# DP-SGD gets there in two moves per step:
# 1. **clip** each example's gradient to norm ≤ C — no single example can push the model further than C;
# 2. **add noise** $\mathcal N(0, \sigma^2C^2)$ to the sum of the clipped gradients (σ is the *noise multiplier*).
#
# An **accountant** (Rényi-DP here) adds up the privacy loss of all the noisy steps, using the Poisson
# sampling rate $q=B/n$: fewer steps, smaller $q$ and more noise σ give a smaller ε.
#
# **A caveat about this lesson's ε: it is not a guarantee for these runs.** Opacus runs here with
# `secure_mode=False`, and its noise comes from a generator seeded with the lesson's public `seed` (so the runs
# are reproducible; kit also hides Opacus's "Secure RNG turned off" warning). Anyone who knows the seed can
# regenerate exactly the noise that was added and subtract it, which leaves the clipped, *noise-free* gradients:
# the guarantee is void. The ε computed below is what the *algorithm* guarantees when its noise is secret — it
# says nothing about the models trained in this notebook. Real use needs `secure_mode=True` (noise from a
# cryptographically secure generator, never seeded) and a seed that is not published.
#
# ### Per-sample clipping, by hand
# Ordinary backprop returns only the *sum* of the gradients in a batch. `torch.func` gives each example's
# own gradient: `vmap` (vectorize over the batch) of `grad` (the gradient of one example's loss).
# %%
viz.source(P.per_sample_grads, P.clip_per_sample)
probe = make_model()
g = P.per_sample_grads(probe, train[0][:256], train[1][:256])
clipped, before, after = P.clip_per_sample(g, max_grad_norm)
import plotly.graph_objects as go
fig = go.Figure()
fig.add_histogram(x=before.numpy(), name="before clipping", opacity=0.6, nbinsx=40)
fig.add_histogram(x=after.numpy(), name=f"after clipping (C = {max_grad_norm:g})", opacity=0.6, nbinsx=40)
fig.update_layout(title="per-example gradient norms (256 training images, initial model)", barmode="overlay",
                  template="plotly_white", xaxis_title="‖gradient of one example‖", height=380)
viz.show(fig)
print(f"norms before: median {before.median():.3f}, max {before.max():.3f}; after: max {after.max():.4f} "
      f"({(before > max_grad_norm).float().mean():.0%} of the examples were clipped)")
# %% [markdown] id="c09"
# Opacus computes the same per-sample gradients with hooks on each layer (`GradSampleModule`): check.
# %%
from opacus import GradSampleModule
with P.quiet_opacus():  # its note about backward hooks on inputs that need no gradient
    gsm = GradSampleModule(make_model(), loss_reduction="mean")
    torch.nn.functional.cross_entropy(gsm(train[0][:256]), train[1][:256]).backward()
opacus_vs_func = max((p.grad_sample - g[n.removeprefix("_module.")]).abs().max().item() for n, p in gsm.named_parameters())
print(f"max |Opacus − torch.func| over all per-sample gradients: {opacus_vs_func:.2e}")
# %% [markdown] id="c11"
# ### Training with Opacus, for several noise multipliers
# `PrivacyEngine.make_private` wraps the model (per-sample gradients), the optimizer (clip, sum, add
# noise) and the data loader (Poisson sampling). This is why DP-SGD here does not go through `kit.train.fit`:
# its batches have a random size, which the accountant's guarantee assumes. σ = 0 is the same training
# with clipping but without noise (no privacy: ε = ∞).
# %%
viz.source(P.train_dp)
dp = {}
for sigma in [0.0] + noise_multipliers:
    dp[sigma] = P.train_dp(make_model(), train, test, noise_multiplier=sigma, max_grad_norm=max_grad_norm,
                           epochs=dp_epochs, batch_size=64, lr=0.5, delta=delta, seed=seed, accountant="rdp")
    print(f"σ = {sigma:<4g} ε = {dp[sigma]['epsilon']:8.3f} (δ = {delta:g})   test accuracy {dp[sigma]['test_acc'][-1]:.4f}")
print("(ε of the algorithm with secret noise; these runs used seeded noise, secure_mode=False: no guarantee)")
# %%
noisy = [s for s in noise_multipliers]
eps = [dp[s]["epsilon"] for s in noisy]
acc = [dp[s]["test_acc"][-1] for s in noisy]
fig = go.Figure()
fig.add_scatter(x=eps, y=acc, mode="lines+markers+text", text=[f"σ={s:g}" for s in noisy], textposition="top center",
                name="DP-SGD")
fig.add_hline(y=dp[0.0]["test_acc"][-1], line_dash="dash", annotation_text="no noise (ε = ∞)")
fig.update_layout(title=f"accuracy vs privacy budget ε (δ = {delta:g}, {dp_epochs} epochs, RDP accountant)",
                  xaxis_title="ε (smaller = more private)", yaxis_title="test accuracy", xaxis_type="log",
                  template="plotly_white", height=400)
viz.show(fig)
# %% [markdown] id="c14"
# The accountant alone answers "how much privacy would this training cost?" before training. Two
# accountants on the same schedule: RDP (Rényi DP) and PRV (privacy random variables, tighter).
# %%
q, steps = dp[noisy[0]]["sample_rate"], dp[noisy[0]]["steps"]
grid = [0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
eps_rdp = [P.epsilon_for(s, q, steps, delta, "rdp") for s in grid]
eps_prv = [P.epsilon_for(s, q, steps, delta, "prv") for s in grid]
fig = go.Figure()
fig.add_scatter(x=grid, y=eps_rdp, mode="lines+markers", name="RDP")
fig.add_scatter(x=grid, y=eps_prv, mode="lines+markers", name="PRV")
fig.update_layout(title=f"ε for {steps} steps at sampling rate q = {q:.3f}", xaxis_title="noise multiplier σ",
                  yaxis_title="ε", yaxis_type="log", template="plotly_white", height=380)
viz.show(fig)
assert all(a > b for a, b in zip(eps_rdp, eps_rdp[1:])), "ε must decrease as the noise grows"
# %%
non_iid = next(k for k in fed if k != "IID")
kit.save_metrics({"fedavg_iid_acc": fed["IID"]["test_acc"][-1], "fedavg_noniid_acc": fed[non_iid]["test_acc"][-1],
                  "centralized_acc": curves["centralized (same epochs)"][-1], "n_clients": n_clients, "rounds": rounds,
                  "noniid_max_class_share": float(max((c / c.sum()).max() for c in P.label_counts(train[1].numpy(), splits[non_iid], 10))),
                  "dp_noise_multipliers": noisy, "dp_epsilons": eps, "dp_accs": acc, "dp_delta": delta,
                  "dp_acc_no_noise": dp[0.0]["test_acc"][-1], "dp_steps": steps, "dp_sample_rate": q,
                  "dp_accountant": "rdp", "eps_rdp_grid": eps_rdp, "eps_prv_grid": eps_prv,
                  "clip_max_after": after.max().item(), "clip_fraction": (before > max_grad_norm).float().mean().item(),
                  "opacus_vs_func_max_diff": opacus_vs_func},
                 timing={"fedavg_iid_seconds": fed["IID"]["seconds"], "fedavg_noniid_seconds": fed[non_iid]["seconds"]} |
                        {f"dp_sigma{s:g}_seconds": r["seconds"] for s, r in dp.items()},
                 params={"device": str(dev)})
# %% [markdown] id="c17"
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("13.2", 2)` shows the next hint.
#
# **Exercise 13.1 (FedAvg's server step).** Many federated systems treat the averaged client update as a
# step the server takes with its own learning rate η: $w \leftarrow w + \eta\sum_k \frac{n_k}{n}(w_k - w)$, with
# $n = \sum_k n_k$ (η = 1 is the lesson's FedAvg). Write `fedavg_round(global_weights, client_weights, client_sizes,
# server_lr=1.0)`: `global_weights` is a state dict (name → tensor), `client_weights` a list of state dicts with
# the same keys, `client_sizes` their numbers of examples; return the new state dict.
# %% tags=["solution"]
def fedavg_round(global_weights, client_weights, client_sizes, server_lr=1.0):
    n = sum(client_sizes)
    new = {}
    for name, w in global_weights.items():
        step = torch.zeros_like(w)
        for state, size in zip(client_weights, client_sizes):
            step += size / n * (state[name] - w)
        new[name] = w + server_lr * step
    return new
# %%
from kit.exercises import check, hint
check("13.1", fedavg_round)
# %% [markdown] id="c20"
# **Exercise 13.2 (implement: per-example clipping).** Write `clip_per_example(grads, C)`: `grads` has one
# example's flattened gradient per row, shape `(n, d)`; return the same shape with every row $g_i$ scaled to
# norm at most $C$: $g_i \cdot \min(1, C/\lVert g_i\rVert)$. Rows with norm < C must come back unchanged, and a
# row of zeros must not become NaN.
# %% tags=["solution"]
def clip_per_example(grads, C):
    norms = torch.linalg.vector_norm(grads, dim=1, keepdim=True)
    scale = torch.clamp(C / torch.clamp(norms, min=1e-12), max=1.0)
    return grads * scale
# %%
check("13.2", clip_per_example)
# %% [markdown] id="c23"
# **Exercise 13.3 (implement: the noisy mean, checked by its statistics).** One DP-SGD step averages the
# clipped gradients of a batch of $n$ examples and adds Gaussian noise to their **sum**:
# $\tilde g = \frac1n\big(\sum_i \mathrm{clip}_C(g_i) + \mathcal N(0, \sigma^2C^2 I)\big)$. Write
# `noisy_clipped_mean(grads, C, sigma)` (grads of shape `(n, d)`, noise from `torch.randn`). The check calls
# it hundreds of times and tests its mean and the size of its noise.
# %% tags=["solution"]
def noisy_clipped_mean(grads, C, sigma):
    clipped = clip_per_example(grads, C)
    noise = torch.randn(grads.shape[1], dtype=grads.dtype) * sigma * C
    return (clipped.sum(dim=0) + noise) / grads.shape[0]
# %%
check("13.3", noisy_clipped_mean)
# %% [markdown] id="c26"
# **Exercise 13.4 (membership inference).** A trained model usually has a lower loss on its training examples
# (members) than on others. The simplest attack guesses "member" when an example's loss is $\le \tau$.
# Write `attack_accuracy(member_losses, nonmember_losses)`: the best **balanced accuracy**
# $\frac12\big(\text{fraction of members with loss} \le \tau + \text{fraction of non-members with loss} > \tau\big)$
# over all thresholds τ (a τ below every loss gives ½). Differential privacy bounds how far above ½ any such
# attack can get: with (ε, 0)-DP, its true-positive rate is at most $e^\varepsilon$ times its false-positive rate.
# %% tags=["solution"]
def attack_accuracy(member_losses, nonmember_losses):
    m, o = np.asarray(member_losses, dtype=float), np.asarray(nonmember_losses, dtype=float)
    best = 0.5
    for tau in np.concatenate([m, o]):
        best = max(best, 0.5 * (np.mean(m <= tau) + np.mean(o > tau)))
    return best
# %%
check("13.4", attack_accuracy)
