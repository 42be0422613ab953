# %% [markdown] id="c00"
# # 14 — Recommender systems: matrix factorization, explicit and implicit
#
# **Goals.** Predict ratings with **matrix factorization** — $\hat r_{ui} = \mu + b_u + b_i + p_u\cdot q_i$,
# user and item biases plus $k$ learned factors, with L2 regularization — trained by `kit.train.fit`, and
# compare it with the global mean and a biases-only model by RMSE. On synthetic data whose true factors
# are known, check that the model **recovers** them. Then turn to **implicit feedback** ("liked it" with
# no "disliked"): Bayesian personalized ranking (BPR) with sampled negatives, scored by the ranking metrics
# recommenders are judged by — precision@k, recall@k and NDCG@k — against a popularity baseline.
#
# **Data.** MovieLens ml-latest-small (100 836 ratings of 9 742 movies by 610 users; checksummed download)
# when online; offline, synthetic low-rank ratings (500 users × 300 items, rank 4) with known true factors.
# %% tags=["parameters"]
seed = 0            # random seed
device = "auto"     # "auto", "cpu", "cuda" or "mps"
smoke = False       # tiny run for tests
factors = 8         # k: factors per user and item
l2 = 0.05           # λ: L2 strength on the factors and biases used by each rating
epochs = 30         # training epochs (explicit and implicit models)
like_threshold = 4.0  # implicit feedback: a rating ≥ this counts as a positive ("liked")
top_k = 10          # length of the recommendation lists scored by precision / recall / NDCG
threads = 1         # CPU threads (0: all usable cores); one is fastest for these small models
# %%
import kit
from kit.params import Float, Int, validate

validate(globals(), factors=Int(1, 1024), l2=Float(0, 100),
         epochs=Int(1, 10_000), like_threshold=Float(0, 10), top_k=Int(1, 1000), threads=Int(0, 1024))
dev = kit.setup(seed, device, threads=threads or None)
if smoke:
    epochs = min(epochs, 12)
# %%
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
# %%
per_user = np.bincount(r.users, minlength=r.n_users)
per_item = np.bincount(r.items, minlength=r.n_items)
from plotly.subplots import make_subplots
fig = make_subplots(rows=1, cols=2, subplot_titles=["ratings per user", "ratings per item (sorted): the long tail"])
fig.add_histogram(x=per_user, nbinsx=50, name="users", row=1, col=1)
fig.add_scatter(y=np.sort(per_item)[::-1], mode="lines", name="items", row=1, col=2)
fig.update_yaxes(type="log", row=1, col=2)
fig.update_layout(template="plotly_white", height=340, showlegend=False)
viz.show(fig)
# %% [markdown] id="c05"
# ## Explicit ratings: matrix factorization
# Each user $u$ and item $i$ get a vector of $k$ factors; their dot product says how well they match.
# Biases absorb what is not about matching: some users rate everything high, some items everyone likes.
# The objective over the observed ratings $\mathcal K$ is
# $$\frac{1}{|\mathcal K|}\sum_{(u,i)\in\mathcal K}\Big[(r_{ui}-\hat r_{ui})^2 + \lambda\big(\lVert p_u\rVert^2+\lVert q_i\rVert^2+b_u^2+b_i^2\big)\Big],$$
# minimized by `fit` on minibatches of (user, item) pairs: given the ratings, the model returns this loss
# itself (the λ term only while training). Ratings are split at random: 80 % train, 10 % validation, 10 % test.
# %%
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
                            title="validation RMSE per epoch, with and without L2"))
test_rmse = {"global mean": mf.rmse(torch.full_like(test[1], mu), test[1])}
test_rmse |= {n: mf.rmse(predict(m, test[0]), test[1]) for n, m in models.items()}
viz.show(viz.bar(test_rmse, title="test RMSE (lower is better)", yaxis="RMSE"))
from IPython.display import Markdown, display
curve0, curve_l2 = mf.val_rmse(hists["MF, λ = 0"]), mf.val_rmse(hists[f"MF, λ = {l2:g}"])
e0 = int(np.argmin(curve0))
rise0 = curve0[-1] - curve0[e0]
if e0 < len(curve0) - 1 and rise0 > 0:
    l2_says = (f"**Without L2** the validation RMSE is lowest after epoch {e0 + 1} ({curve0[e0]:.4f}) and then turns "
               f"back up, to {curve0[-1]:.4f} after epoch {len(curve0)} (+{rise0:.4f}): the factors fit the training "
               f"ratings' noise. ")
else:
    l2_says = (f"**Without L2** the validation RMSE is still falling at the last epoch ({curve0[-1]:.4f}): in "
               f"{len(curve0)} epochs it has not started to overfit. ")
l2_says += (f"With λ = {l2:g} it ends at {curve_l2[-1]:.4f}; on the test set {test_rmse['MF, λ = 0']:.4f} without L2 "
            f"vs {test_rmse[f'MF, λ = {l2:g}']:.4f} with it.")
display(Markdown(l2_says))
# %%
# The number of factors $k$ is a hyperparameter: train one model per $k$, **choose the $k$ with the lowest
# validation RMSE** (of the trained model, after its last epoch), and only then look at the test set, once, for
# the chosen model — which is the model used for the rest of the lesson.
# %%
k_grid = (1, 2, 4, 8, 16, 32) if not smoke else (2, factors)
k_sweep, k_models = {}, {}
for k in sorted(set(k_grid) | {factors}):
    if k == factors:  # already trained above
        k_models[k], h = models[f"MF, λ = {l2:g}"], hists[f"MF, λ = {l2:g}"]
    else:
        k_models[k], h = train_mf(k, l2)
    k_sweep[k] = mf.val_rmse(h)[-1]
chosen_k = min(k_sweep, key=k_sweep.get)
best = k_models[chosen_k]
rmse_chosen = mf.rmse(predict(best, test[0]), test[1])
viz.show(viz.compare_curves({"validation RMSE after training": list(k_sweep.values())},
                            xaxis=f"k ({', '.join(map(str, k_sweep))})", yaxis="RMSE", title="number of factors k"))
print("validation RMSE per k:", {k: round(v, 4) for k, v in k_sweep.items()})
print(f"chosen on validation: k = {chosen_k}; its test RMSE {rmse_chosen:.4f} "
      f"(the lesson's k = {factors}: {test_rmse[f'MF, λ = {l2:g}']:.4f})")
# %% [markdown] id="c09"
# ### Ranking quality of the rating predictions
# Within each user's held-out ratings, does the predicted order match the true one? NDCG@k
# (`sklearn.metrics.ndcg_score`) with the ratings as graded relevance: 1 = perfect order. With graded
# relevance every item earns something, so even a **random order** scores far above 0: it is the baseline
# to beat, not 0.
# %%
pred_test = predict(best, test[0]).numpy()
ndcg_explicit = mf.per_user_ndcg(r.users[te], r.ratings[te], pred_test, k=top_k)
ndcg_bias = mf.per_user_ndcg(r.users[te], r.ratings[te], predict(models["biases only"], test[0]).numpy(), k=top_k)
rng_random = np.random.default_rng(seed + 1)  # the random-order baseline: mean over 5 random orders
ndcg_random = float(np.mean([mf.per_user_ndcg(r.users[te], r.ratings[te], rng_random.random(len(te)), k=top_k)
                             for _ in range(5)]))
print(f"NDCG@{top_k} over users' held-out ratings: MF (k = {chosen_k}) {ndcg_explicit:.4f}, biases only {ndcg_bias:.4f}, "
      f"random order {ndcg_random:.4f}")
# %% [markdown] id="c11"
# ## Did it recover the truth? (synthetic data)
# The synthetic ratings are $\mu + b_u + b_i + p_u\cdot q_i$ plus noise of standard deviation σ, with the
# true parameters kept. So we can ask more than "is the test RMSE low":
# * the test RMSE cannot go below σ (the noise is unpredictable); how close does it get?
# * how well do predictions correlate with the **noise-free** true ratings — on held-out pairs, and on
#   pairs nobody rated at all?
# * do the learned item factors span the same space as the true ones? (principal angles between the
#   column spaces of $Q_\text{learned}$ and $Q_\text{true}$: 0° = same space; factors are only identifiable
#   up to an invertible $k\times k$ transform, so compare spaces, not columns.)
# %%
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
# %%
if synthetic:
    ct, cu = recovery["corr_truth_test"], recovery["corr_truth_unobserved"]
    display(Markdown(
        f"Correlation with the noise-free ratings: {ct:.3f} on held-out pairs, {cu:.3f} on pairs nobody rated. "
        + (f"Recovery is better on held-out pairs: people rate what they chose to watch, which they tend to like "
           f"(the synthetic users do too, with selection strength {r.truth['selection']:g}), so the observed ratings are "
           f"not a random sample of the matrix — the classic *missing-not-at-random* problem of recommender data."
           if ct > cu else
           "Here recovery is no worse on pairs nobody rated: in this run the choice of what to rate did not bias it.")))
# %% [markdown] id="c14"
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
# near the top). Two baselines: a **random order** (the mean of 3 random rankings: what NDCG@k is worth by
# chance) and **popularity**, the most popular items for everyone.
# %%
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
random_runs = [mf.ranking_metrics(rng_random.random((r.n_users, r.n_items)), train_pos, test_pos, top_k) for _ in range(3)]
ranking = {"random order": {k: float(np.mean([m[k] for m in random_runs])) if k != "users" else v
                            for k, v in random_runs[0].items()},
           "popularity": mf.ranking_metrics(np.tile(popularity, (r.n_users, 1)), train_pos, test_pos, top_k),
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
nd = {n: m[f"ndcg@{top_k}"] for n, m in ranking.items()}
display(Markdown(f"NDCG@{top_k}: random order {nd['random order']:.4f}, popularity {nd['popularity']:.4f} "
                 f"({nd['popularity'] / nd['random order']:.1f}× random), BPR-MF {nd['BPR-MF']:.4f} "
                 f"({nd['BPR-MF'] / nd['random order']:.1f}× random, {nd['BPR-MF'] / nd['popularity']:.2f}× popularity)."))
# %% [markdown] id="c16"
# ## Recommendations for one user
# %%
u = int(np.argmax([len(p) for p in test_pos]))
s = bpr.scores()[u].numpy().copy()
s[train_pos[u]] = -np.inf
top = np.argsort(-s, kind="stable")[:top_k]
print(f"user {u} liked (training): {[r.item_names[i] for i in train_pos[u][:8]]} …")
print(f"top {top_k} recommended: {[r.item_names[i] + (' ✓' if i in set(test_pos[u]) else '') for i in top]}")
print("(✓ = a held-out positive)")
# %%
metrics = {"rmse_global_mean": test_rmse["global mean"], "rmse_biases": test_rmse["biases only"],
           "rmse_mf_no_l2": test_rmse["MF, λ = 0"], "rmse_mf": test_rmse[f"MF, λ = {l2:g}"],
           "ndcg_explicit": ndcg_explicit, "ndcg_explicit_biases": ndcg_bias, "ndcg_explicit_random": ndcg_random,
           "chosen_k": chosen_k, "rmse_mf_chosen_k": rmse_chosen, "synthetic": synthetic,
           "val_rmse_no_l2_min": float(curve0[e0]), "val_rmse_no_l2_final": float(curve0[-1]),
           "n_ratings": len(r), "n_users": r.n_users, "n_items": r.n_items}
for name, key in [("random order", "random"), ("popularity", "pop"), ("BPR-MF", "bpr")]:
    metrics |= {f"{key}_{k.replace('@', '_at_')}": v for k, v in ranking[name].items() if k != "users"}
metrics |= {f"recovery_{k}": v for k, v in recovery.items()}
metrics |= {f"k_sweep_val_rmse_{k}": v for k, v in k_sweep.items()}
kit.save_metrics(metrics, timing={"mf_seconds": sum(hists[f"MF, λ = {l2:g}"]["seconds"]), "bpr_seconds": sum(h_bpr["seconds"])},
                 params={"device": str(dev), "data": r.source})
# %% [markdown] id="c19"
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("14.2", 2)` shows the next hint.
#
# **Exercise 14.1 (implement: the model's prediction).** Write `mf_predict(mu, b_u, b_i, P, Q, users, items)`:
# the predicted ratings $\hat r = \mu + b_u + b_i + p_u\cdot q_i$ for the pairs `(users[n], items[n])`, as a
# tensor of shape `(N,)`. `b_u` has one bias per user, `b_i` one per item, `P` is `(n_users, k)`, `Q` is
# `(n_items, k)`, `users` and `items` are integer index tensors of the same length (indices may repeat).
# %% tags=["solution"]
def mf_predict(mu, b_u, b_i, P, Q, users, items):
    return mu + b_u[users] + b_i[items] + (P[users] * Q[items]).sum(dim=1)
# %%
from kit.exercises import check, hint
check("14.1", mf_predict)
# %% [markdown] id="c22"
# **Exercise 14.2 (implement: the BPR loss, stably).** Write `bpr_loss(pos_scores, neg_scores)`: the mean over
# the pairs of $-\log\sigma(x_{ui} - x_{uj})$, where `pos_scores[n]` is the score of a user's positive item and
# `neg_scores[n]` that of a sampled item. It must stay finite and exact when the difference is ±1000 (a negative
# ranked far above the positive costs about 1000, not `inf`).
# %% tags=["solution"]
def bpr_loss(pos_scores, neg_scores):
    return F.softplus(neg_scores - pos_scores).mean()
# %%
check("14.2", bpr_loss)
# %% [markdown] id="c25"
# **Exercise 14.3 (implement: NDCG@k).** Write `ndcg_at_k(relevance, k)`: `relevance` lists the relevance grades
# (numbers ≥ 0) of a recommendation list **in the order the model ranked it**, best first. With
# $\mathrm{DCG@k} = \sum_{i=1}^{k} \mathrm{rel}_i / \log_2(i + 1)$, return $\mathrm{DCG@k}$ divided by the DCG@k of
# the ideal order (the same grades sorted from high to low) — and 0.0 when nothing in the list is relevant. `k`
# may exceed the list's length.
# %% tags=["solution"]
def ndcg_at_k(relevance, k):
    rel = np.asarray(relevance, dtype=float)
    def dcg(values):
        top = values[:k]
        return float(np.sum(top / np.log2(np.arange(2, len(top) + 2))))
    ideal = dcg(np.sort(rel)[::-1])
    return dcg(rel) / ideal if ideal > 0 else 0.0
# %%
check("14.3", ndcg_at_k)
