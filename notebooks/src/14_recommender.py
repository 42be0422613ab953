# %% [md]
# # 14 — Recommender systems: matrix factorization, explicit and implicit

**Goals.** Predict ratings with **matrix factorization** — $\hat r_{ui} = \mu + b_u + b_i + p_u\cdot q_i$,
user and item biases plus $k$ learned factors, with L2 regularization — trained by `kit.train.fit`, and
compare it with the global mean and a biases-only model by RMSE. On synthetic data whose true factors
are known, check that the model **recovers** them. Then turn to **implicit feedback** ("liked it" with
no "disliked"): Bayesian personalized ranking (BPR) with sampled negatives, scored by the ranking metrics
recommenders are judged by — precision@k, recall@k and NDCG@k — against a popularity baseline.

**Data.** MovieLens ml-latest-small (100 836 ratings of 9 742 movies by 610 users; checksummed download)
when online; offline, synthetic low-rank ratings (500 users × 300 items, rank 4) with known true factors.
# %% [code] parameters
seed = 0            # random seed
device = "auto"     # "auto", "cpu", "cuda" or "mps"
smoke = False       # tiny run for tests
factors = 8         # k: factors per user and item
l2 = 0.05           # λ: L2 strength on the factors and biases used by each rating
epochs = 30         # training epochs (explicit and implicit models)
like_threshold = 4.0  # implicit feedback: a rating ≥ this counts as a positive ("liked")
top_k = 10          # length of the recommendation lists scored by precision / recall / NDCG
threads = 1         # CPU threads (0: all usable cores); one is fastest for these small models
# %% [code]
import kit
from kit.params import Float, Int, validate

validate(globals(), factors=Int(1, 1024), l2=Float(0, 100),
         epochs=Int(1, 10_000), like_threshold=Float(0, 10), top_k=Int(1, 1000), threads=Int(0, 1024))
dev = kit.setup(seed, device, threads=threads or None)
if smoke:
    epochs = min(epochs, 12)
# %% [code]
import numpy as np
import torch
import torch.nn.functional as F

import kit.data
import kit.data.ratings  # registers "movielens"
import kit.viz as viz
from kit.models import mf
from kit.train import fit

r = kit.data.load("movielens")
synthetic = r.truth is not None
print(r.description)
print(f"density {len(r) / (r.n_users * r.n_items):.2%} of the user × item matrix is observed; "
      f"ratings from {r.ratings.min():.1f} to {r.ratings.max():.1f}, mean {r.ratings.mean():.2f}")
# %% [code]
per_user = np.bincount(r.users, minlength=r.n_users)
per_item = np.bincount(r.items, minlength=r.n_items)
from plotly.subplots import make_subplots
fig = make_subplots(rows=1, cols=2, subplot_titles=["ratings per user", "ratings per item (sorted): the long tail"])
fig.add_histogram(x=per_user, nbinsx=50, name="users", row=1, col=1)
fig.add_scatter(y=np.sort(per_item)[::-1], mode="lines", name="items", row=1, col=2)
fig.update_yaxes(type="log", row=1, col=2)
fig.update_layout(template="plotly_white", height=340, showlegend=False)
viz.show(fig)
# %% [md]
# ## Explicit ratings: matrix factorization
# Each user $u$ and item $i$ get a vector of $k$ factors; their dot product says how well they match.
# Biases absorb what is not about matching: some users rate everything high, some items everyone likes.
# The objective over the observed ratings $\mathcal K$ is
# $$\frac{1}{|\mathcal K|}\sum_{(u,i)\in\mathcal K}\Big[(r_{ui}-\hat r_{ui})^2 + \lambda\big(\lVert p_u\rVert^2+\lVert q_i\rVert^2+b_u^2+b_i^2\big)\Big],$$
# minimized by `fit` on minibatches of (user, item) pairs: given the ratings, the model returns this loss
# itself (the λ term only while training). Ratings are split at random: 80 % train, 10 % validation, 10 % test.
# %% [code]
viz.source(mf.MatrixFactorization.forward)
tr, va, te = kit.data.split(len(r), (0.8, 0.1, 0.1), seed=seed)
UI = torch.tensor(np.stack([r.users, r.items], 1))
R = torch.tensor(r.ratings)
train, val, test = (UI[tr], R[tr]), (UI[va], R[va]), (UI[te], R[te])
mu = R[tr].mean().item()

def train_mf(k, lam, n_epochs=epochs):
    torch.manual_seed(seed)
    model = mf.MatrixFactorization(r.n_users, r.n_items, k=k, mu=mu, l2=lam)
    hist = fit(model, train, val, loss_fn=None, optimizer="adam", lr=0.01, epochs=n_epochs, batch_size=256,
               device=dev, seed=seed, progress=False)
    return model.cpu().eval(), hist

@torch.no_grad()
def predict(model, X):
    return model(X)

models, hists = {}, {}
for name, k, lam in [("biases only", 0, l2), ("MF, λ = 0", factors, 0.0), (f"MF, λ = {l2:g}", factors, l2)]:
    models[name], hists[name] = train_mf(k, lam)
viz.show(viz.compare_curves({n: mf.val_rmse(h) for n, h in hists.items()}, yaxis="validation RMSE",
                            title="without L2 the factors overfit: validation RMSE turns back up"))
test_rmse = {"global mean": mf.rmse(torch.full_like(test[1], mu), test[1])}
test_rmse |= {n: mf.rmse(predict(m, test[0]), test[1]) for n, m in models.items()}
viz.show(viz.bar(test_rmse, title="test RMSE (lower is better)", yaxis="RMSE"))
best = models[f"MF, λ = {l2:g}"]
# %% [code]
k_sweep = {}
if not smoke:  # how many factors? choose k on the validation set
    for k in (1, 2, 4, 8, 16, 32):
        _, h = train_mf(k, l2)
        k_sweep[k] = min(mf.val_rmse(h))
    viz.show(viz.compare_curves({"best validation RMSE": list(k_sweep.values())}, xaxis="k (1, 2, 4, 8, 16, 32)",
                                yaxis="RMSE", title="number of factors k"))
    print({k: round(v, 4) for k, v in k_sweep.items()})
# %% [md]
# ### Ranking quality of the rating predictions
# Within each user's held-out ratings, does the predicted order match the true one? NDCG@k
# (`sklearn.metrics.ndcg_score`) with the ratings as graded relevance: 1 = perfect order.
# %% [code]
pred_test = predict(best, test[0]).numpy()
ndcg_explicit = mf.per_user_ndcg(r.users[te], r.ratings[te], pred_test, k=top_k)
ndcg_bias = mf.per_user_ndcg(r.users[te], r.ratings[te], predict(models["biases only"], test[0]).numpy(), k=top_k)
print(f"NDCG@{top_k} over users' held-out ratings: MF {ndcg_explicit:.4f}, biases only {ndcg_bias:.4f}")
# %% [md]
# ## Did it recover the truth? (synthetic data)
# The synthetic ratings are $\mu + b_u + b_i + p_u\cdot q_i$ plus noise of standard deviation σ, with the
# true parameters kept. So we can ask more than "is the test RMSE low":
# * the test RMSE cannot go below σ (the noise is unpredictable); how close does it get?
# * how well do predictions correlate with the **noise-free** true ratings — on held-out pairs, and on
#   pairs nobody rated at all?
# * do the learned item factors span the same space as the true ones? (principal angles between the
#   column spaces of $Q_\text{learned}$ and $Q_\text{true}$: 0° = same space; factors are only identifiable
#   up to an invertible $k\times k$ transform, so compare spaces, not columns.)
# %% [code]
recovery = {}
if synthetic:
    from scipy.linalg import subspace_angles
    t = r.truth
    clean_test = r.true_ratings(r.users[te], r.items[te])
    full_true = r.true_ratings()
    full_pred = best.full_matrix().numpy()
    seen = np.zeros((r.n_users, r.n_items), bool)
    seen[r.users, r.items] = True
    angles = np.degrees(subspace_angles(best.Q.weight.detach().numpy(), t["Q"]))
    recovery = {"noise_sigma": t["noise"],
                "rmse_vs_truth_test": float(np.sqrt(np.mean((pred_test - clean_test) ** 2))),
                "corr_truth_test": float(np.corrcoef(pred_test, clean_test)[0, 1]),
                "corr_truth_unobserved": float(np.corrcoef(full_pred[~seen], full_true[~seen])[0, 1]),
                "corr_item_bias": float(np.corrcoef(best.bi.weight.detach().numpy().ravel(), t["bi"])[0, 1]),
                "max_subspace_angle_deg": float(angles.max())}
    print({k: round(v, 4) for k, v in recovery.items()})
    print("principal angles (degrees), learned vs true item factors:", np.round(np.sort(angles), 1))
    sample = np.random.default_rng(seed).choice(len(te), size=min(2000, len(te)), replace=False)
    viz.show(viz.scatter_fit(clean_test[sample], pred_test[sample], [clean_test.min(), clean_test.max()],
                             [clean_test.min(), clean_test.max()], xaxis="true noise-free rating",
                             yaxis="predicted rating", title="held-out pairs: prediction vs truth (line: y = x)"))
else:
    print("real data: no ground truth to compare with (run offline to see recovery)")
# %% [md]
# Recovery is better on held-out pairs than on pairs nobody rated: people rate what they chose to watch,
# which they tend to like (the synthetic users do too), so the observed ratings are not a random sample of
# the matrix — the classic *missing-not-at-random* problem of recommender data.
# %% [md]
# ## Implicit feedback: Bayesian personalized ranking
# Often there are no ratings — only clicks, plays, purchases: positives, and a sea of unknowns (not
# interested? never saw it?). Here a rating ≥ `like_threshold` is a positive and everything else is
# unknown. BPR does not predict a number; it learns to **rank**: for a user $u$, a positive item $i$ and
# a sampled item $j$, it maximizes $\log\sigma(x_{ui} - x_{uj})$ with $x_{ui} = p_u\cdot q_i + b_i$.
# Fresh negatives $j$ are drawn for every batch (`fit`'s `augment` hook, seeded).
#
# Evaluation: for each user, 20 % of the positives are held out; the model ranks every item the user
# has not got as a training positive, and we score the top `top_k` — **precision@k** (fraction of the list
# that is relevant), **recall@k** (fraction of the held-out positives found), **NDCG@k** (rewards hits
# near the top). The baseline recommends the most popular items to everyone.
# %% [code]
viz.source(mf.BPRMF.forward, mf.bpr_loss, mf.resample_negatives)
liked = r.ratings >= like_threshold
U, I = r.users[liked], r.items[liked]
rng = np.random.default_rng(seed)
held = np.zeros(len(U), bool)
for u in np.unique(U):
    idx = np.flatnonzero(U == u)
    n_out = int(round(0.2 * len(idx)))
    if len(idx) >= 3 and n_out:
        held[rng.choice(idx, n_out, replace=False)] = True
train_pos = [I[(U == u) & ~held] for u in range(r.n_users)]
test_pos = [I[(U == u) & held] for u in range(r.n_users)]
print(f"{liked.sum():,} positives ({liked.mean():.0%} of the ratings); {held.sum():,} held out")

triples = torch.tensor(np.stack([U[~held], I[~held], np.zeros((~held).sum(), np.int64)], 1))
torch.manual_seed(seed)
bpr = mf.BPRMF(r.n_users, r.n_items, k=factors, l2=0.01)
h_bpr = fit(bpr, (triples,), loss_fn=None, augment=mf.resample_negatives(r.n_items), optimizer="adam", lr=0.01, epochs=epochs, batch_size=256,
            device=dev, seed=seed, progress=False)
bpr = bpr.cpu().eval()
popularity = np.bincount(I[~held], minlength=r.n_items).astype(float)
ranking = {"popularity": mf.ranking_metrics(np.tile(popularity, (r.n_users, 1)), train_pos, test_pos, top_k),
           "BPR-MF": mf.ranking_metrics(bpr.scores().numpy(), train_pos, test_pos, top_k)}
import plotly.graph_objects as go
fig = go.Figure()
for name, m in ranking.items():
    keys = [f"precision@{top_k}", f"recall@{top_k}", f"ndcg@{top_k}"]
    fig.add_bar(x=keys, y=[m[k] for k in keys], name=name)
fig.update_layout(title=f"top-{top_k} recommendations scored on held-out positives ({ranking['BPR-MF']['users']} users)",
                  barmode="group", template="plotly_white", height=380)
viz.show(fig)
print({n: {k: round(v, 4) for k, v in m.items()} for n, m in ranking.items()})
# %% [md]
# ## Recommendations for one user
# %% [code]
u = int(np.argmax([len(p) for p in test_pos]))
s = bpr.scores()[u].numpy().copy()
s[train_pos[u]] = -np.inf
top = np.argsort(-s, kind="stable")[:top_k]
print(f"user {u} liked (training): {[r.item_names[i] for i in train_pos[u][:8]]} …")
print(f"top {top_k} recommended: {[r.item_names[i] + (' ✓' if i in set(test_pos[u]) else '') for i in top]}")
print("(✓ = a held-out positive)")
# %% [code]
metrics = {"rmse_global_mean": test_rmse["global mean"], "rmse_biases": test_rmse["biases only"],
           "rmse_mf_no_l2": test_rmse["MF, λ = 0"], "rmse_mf": test_rmse[f"MF, λ = {l2:g}"],
           "ndcg_explicit": ndcg_explicit, "ndcg_explicit_biases": ndcg_bias, "synthetic": synthetic,
           "n_ratings": len(r), "n_users": r.n_users, "n_items": r.n_items}
for name, key in [("popularity", "pop"), ("BPR-MF", "bpr")]:
    metrics |= {f"{key}_{k.replace('@', '_at_')}": v for k, v in ranking[name].items() if k != "users"}
metrics |= {f"recovery_{k}": v for k, v in recovery.items()}
metrics |= {f"k_sweep_val_rmse_{k}": v for k, v in k_sweep.items()}
kit.save_metrics(metrics, timing={"mf_seconds": sum(hists[f"MF, λ = {l2:g}"]["seconds"]), "bpr_seconds": sum(h_bpr["seconds"])},
                 params={"device": str(dev), "data": r.source})
# %% [md]
# ## Exercises
# **Exercise 1.** With $\mu = 3.5$, $b_u = 0.2$, $b_i = -0.3$, $p_u = (1, 2)$ and $q_i = (0.5, -0.25)$, what
# rating does the model predict?
# %% [code] solution
answer_1 = 3.5 + 0.2 - 0.3 + (1 * 0.5 + 2 * -0.25)
# %% [code]
from kit.checks import expect_close
_m = mf.MatrixFactorization(1, 1, k=2, mu=3.5)
with torch.no_grad():
    _m.P.weight[:] = torch.tensor([[1.0, 2.0]]); _m.Q.weight[:] = torch.tensor([[0.5, -0.25]])
    _m.bu.weight[:] = 0.2; _m.bi.weight[:] = -0.3
expect_close("Exercise 1", answer_1, _m.eval()(torch.tensor([[0, 0]])).item(), atol=1e-5,
             hint="μ + b_u + b_i + p·q, and p·q = 1·0.5 + 2·(−0.25).")
# %% [md]
# **Exercise 2.** A top-3 list has relevances (1, 0, 1) — hits at ranks 1 and 3 — and the user has
# exactly two relevant items. With DCG = Σ rel / log₂(rank + 1), what is NDCG@3 = DCG / ideal DCG?
# %% [code] solution
import math
answer_2 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
# %% [code]
from sklearn.metrics import ndcg_score
expect_close("Exercise 2", answer_2, ndcg_score([[1, 0, 1]], [[3, 2, 1]], k=3), atol=1e-6,
             hint="Ideal order puts both relevant items at ranks 1 and 2.")
