# %% [markdown] id="c00"
# # 08 — The Transformer from scratch, and a sentence classifier
#
# **Goals.** Write scaled dot-product attention, $\operatorname{softmax}(QK^\top/\sqrt d)\,V$, in a few
# lines and check it against PyTorch's fused `F.scaled_dot_product_attention` (with and without a causal
# mask). Build multi-head attention, sinusoidal and learned position codes and a Transformer encoder
# block; train a small encoder to classify sentences; compare it with a bag-of-words logistic
# regression, so the accuracy number means something; and explore what its attention heads look at.
#
# **Data.** `text_sources`: the TREC question-classification set (6 question types) when online;
# offline, real sentences from the documentation of Python, NumPy, scikit-learn and PyTorch, labelled by
# the software they document.
# %% tags=["parameters"]
seed = 0            # random seed
device = "auto"     # "auto", "cpu", "cuda" or "mps"
smoke = False       # tiny run for tests
n_embd = 64        # width of token vectors
n_head = 4         # attention heads per layer
n_layer = 2        # Transformer blocks
epochs = 15         # training epochs
batch_size = 64     # minibatch size
lr = 3e-3           # AdamW peak learning rate (one-cycle schedule)
dropout = 0.1       # dropout in attention and MLP
max_len = 48        # longest sentence in tokens (longer ones are cut)
vocab_size = 8000   # largest word vocabulary (built from the training sentences)
# %%
import kit
from kit.params import Float, Int, validate

validate(globals(), n_embd=Int(2, 4096), n_head=Int(1, 64),
         n_layer=Int(1, 48), epochs=Int(1, 10_000), batch_size=Int(1, 100_000), lr=Float(0, 10, lo_open=True),
         dropout=Float(0, 1, hi_open=True), max_len=Int(2, 4096), vocab_size=Int(10, 1_000_000))
if n_embd % n_head:
    raise kit.params.ParameterError(f"parameter 'n_head' must divide n_embd={n_embd}, got {n_head}")
dev = kit.setup(seed, device)
if smoke:
    epochs, n_embd, n_layer, max_len = min(epochs, 2), min(n_embd, 32), 1, min(max_len, 32)
    lr = max(lr, 3e-3)  # few epochs: a larger step
    n_head = min(n_head, 4) if n_embd % min(n_head, 4) == 0 else 1
# %%
import math

import numpy as np
import torch
import torch.nn.functional as F

import kit.data
import kit.viz as viz
import kit.viz.text as vt
from kit.models import n_params
from kit.models.transformer import (MultiHeadAttention, TransformerClassifier, TransformerConfig, attention,
                                    attention_head_stats, position_to_token_ratio, sinusoidal_positions)
from kit.text import WordVocab, pad_batch, words
# %% [markdown] id="c04"
# ## Attention, written out
# Every token produces a **query** $q$, a **key** $k$ and a **value** $v$. The output at a position is an
# average of all values, weighted by how well its query matches each key:
# $$\operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\Big(\frac{QK^\top}{\sqrt d}\Big)\,V .$$
# Dividing by $\sqrt d$ keeps the scores' spread independent of the dimension (dot products of
# random $d$-dimensional vectors have variance $d$), so the softmax does not saturate. A **mask** hides
# some keys (padding, or the future in a causal language model) by setting their scores to $-\infty$.
# %%
viz.source(attention)
# %%
g = torch.Generator().manual_seed(seed)
diffs = {}
for dtype in (torch.float64, torch.float32):
    q, k, v = (torch.randn(2, 4, 9, 16, generator=g, dtype=dtype) for _ in range(3))
    for causal in (False, True):
        ours = attention(q, k, v, causal=causal)
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        diffs[(str(dtype).split(".")[1], causal)] = (ours - ref).abs().max().item()
for (dt, causal), d in diffs.items():
    print(f"{dt:>7}, causal={causal!s:>5}: max |ours − F.scaled_dot_product_attention| = {d:.1e}")
attn_diff_f64 = max(d for (dt, _), d in diffs.items() if dt == "float64")
attn_diff_f32 = max(d for (dt, _), d in diffs.items() if dt == "float32")
assert attn_diff_f64 < 1e-6 and attn_diff_f32 < 1e-5
# %% [markdown] id="c07"
# What the weights look like for one sentence, with random projections (an untrained head) and a
# causal mask: row $i$ is query $i$'s distribution over the keys; everything above the diagonal —
# the future — is exactly zero, and each row sums to 1.
# %%
toy = "the model reads every word of the sentence at once".split()
torch.manual_seed(seed)
emb = torch.randn(len(toy), 16)
_, w_toy = attention(emb @ torch.randn(16, 16), emb @ torch.randn(16, 16), emb, causal=True, return_weights=True)
viz.show(vt.attention_map(w_toy, toy, title="causal attention weights of a random head"));
# %% [markdown] id="c09"
# ## Multi-head attention and position codes
# One attention can only form one weighted average per position. **Multi-head attention** splits the
# $d$ dimensions into $h$ heads of size $d/h$, runs attention in each (each head has its own $W_Q, W_K,
# W_V$ slice and can look for something different), concatenates the results and mixes them with $W_O$.
# kit's module uses the fused kernel for speed and the written-out `attention` when we ask for the weights
# — the two agree:
# %%
viz.source(MultiHeadAttention.forward)
torch.manual_seed(seed)
mha = MultiHeadAttention(32, 4).double().eval()
xx = torch.randn(3, 7, 32, dtype=torch.float64)
mha_diff = (mha(xx, causal=True) - mha(xx, causal=True, return_weights=True)[0]).abs().max().item()
print(f"fused vs written-out multi-head attention: {mha_diff:.1e}")
# %% [markdown] id="c11"
# Attention itself ignores order: permute the input tokens and the outputs are permuted the same way
# (it treats a sentence as a *set*). Word order has to be added to the token vectors. **Sinusoidal**
# codes use sines and cosines of geometrically spaced frequencies (no parameters; nearby positions get
# similar codes); **learned** codes are one trainable vector per position. We train with both below.
# %%
perm = torch.randperm(7)
perm_diff = (mha(xx)[:, perm] - mha(xx[:, perm])).abs().max().item()
print(f"attention(permuted input) vs permuted attention(input): {perm_diff:.1e}  → order-blind")
viz.show(vt.position_codes(sinusoidal_positions(max_len, n_embd), title=f"sinusoidal position codes (d={n_embd})"));
# %% [markdown] id="c13"
# ## The data
# %%
ds = kit.data.load("text_sources")
labels = np.asarray(ds.labels)
print(ds.description)
print({c: n for c, n in ds.counts().items()})
rng = np.random.default_rng(seed)
for i, c in enumerate(ds.classes):
    j = rng.choice(np.flatnonzero(labels == i))
    print(f"  [{c}] {ds.texts[j]}")
tr, va, te = kit.data.split(len(ds), (0.7, 0.15, 0.15), seed=seed, stratify=labels)
texts = np.array(ds.texts, dtype=object)
chance = np.bincount(labels[te]).max() / len(te)
print(f"{len(tr)} train / {len(va)} validation / {len(te)} test sentences; always guessing the largest class: {chance:.3f}")
# %% [markdown] id="c15"
# ## A baseline that ignores order: bag of words
# Count words and word pairs (TF-IDF weighted) and fit a logistic regression. It is fast and strong on
# short texts; the Transformer has to earn its complexity against this number.
# %%
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

bow = TfidfVectorizer(ngram_range=(1, 2), min_df=2, token_pattern=None, tokenizer=words, lowercase=False)
Xb_tr = bow.fit_transform(texts[tr])
logreg = LogisticRegression(C=10, max_iter=3000).fit(Xb_tr, labels[tr])
bow_val_acc = float((logreg.predict(bow.transform(texts[va])) == labels[va]).mean())
bow_test_acc = float((logreg.predict(bow.transform(texts[te])) == labels[te]).mean())
print(f"bag-of-words logistic regression: validation {bow_val_acc:.3f}, test {bow_test_acc:.3f} ({Xb_tr.shape[1]:,} features)")
# %% [markdown] id="c17"
# ## Tokens for the Transformer
# Words and punctuation, lower-cased; the vocabulary comes from the training sentences only (words seen
# at least twice); unknown words map to `<unk>`, and sentences are padded with `<pad>` (id 0), which
# attention masks out and the classifier's average ignores.
# %%
vocab = WordVocab.from_texts(texts[tr], max_size=vocab_size, min_freq=2)

def encode(idx):
    return pad_batch([vocab.encode(t) for t in texts[idx]], pad_id=vocab.pad_id, max_len=max_len)[0]

y = torch.tensor(labels)
X_tr, X_va, X_te = encode(tr), encode(va), encode(te)
print(vocab)
print(f"padded to {X_tr.shape[1]} tokens; {(X_tr == vocab.unk_id).float().sum() / (X_tr != 0).sum():.1%} of training tokens are <unk>")
print("example:", texts[tr[0]], "\n   →", X_tr[0].tolist())
# %% [markdown] id="c19"
# ## The classifier
# `embedding (× √d) + positions → n_layer × [x + MHA(LN(x)); x + MLP(LN(x))] → LN → mean over real
# tokens → linear`, trained with `kit.train.fit` (AdamW, one-cycle schedule, gradient clipping).
#
# **Scales.** Token vectors and position codes are *added*, so their sizes matter: if one is much larger,
# the other is a faint signal the first layer must dig out. A sinusoidal code has coordinates of
# root-mean-square $1/\sqrt2$ (norm $\sqrt{d/2}$). kit draws the token table from $\mathcal N(0, 1/d)$ and
# multiplies by $\sqrt d$ (as in the original Transformer), so a token vector has coordinates of standard
# deviation 1 (norm about $\sqrt d$); learned position vectors start with the sinusoids' RMS, $1/\sqrt2$, so
# both kinds of positions start at the same scale and the comparison below is about *fixed vs learned*,
# not about loudness. (Drawing tokens from $\mathcal N(0, 1)$ before the $\times\sqrt d$ would make the
# sinusoidal codes $1/\sqrt{2d}$ of the tokens' size.) The ratio of the mean norms, measured on the two
# models before training:
# %%
from kit.train import accuracy, fit

def make(positions):
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=len(vocab), n_classes=len(ds.classes), max_len=max_len, n_embd=n_embd,
                            n_head=n_head, n_layer=n_layer, dropout=dropout, positions=positions,
                            pad_id=vocab.pad_id)
    return TransformerClassifier(cfg)

train_kw = dict(loss_fn=F.cross_entropy, metrics={"acc": accuracy}, epochs=epochs, batch_size=batch_size,
                optimizer="adamw", lr=lr, weight_decay=0.01, scheduler="onecycle", clip_grad=1.0, device=dev, seed=seed)
model = make("sinusoidal")
model_learned = make("learned")
init_ratio = {p: position_to_token_ratio(m.encoder) for p, m in (("sinusoidal", model), ("learned", model_learned))}
for p, r in init_ratio.items():
    print(f"{p:>10} positions: ‖position code‖ / ‖token vector × √d‖ = {r:.2f} at initialisation")
print(model, f"\n{n_params(model):,} parameters")
hist = fit(model, (X_tr, y[tr]), (X_va, y[va]), live=True, **train_kw)
hist_learned = fit(model_learned, (X_tr, y[tr]), (X_va, y[va]), progress=False, **train_kw)
viz.show(viz.compare_curves({"sinusoidal positions": hist["val_acc"], "learned positions": hist_learned["val_acc"]},
                            title=f"validation accuracy (bag of words: {bow_val_acc:.3f})", yaxis="accuracy"))
train_seconds = sum(hist["seconds"])
tokens_per_s = float((X_tr != vocab.pad_id).sum()) * epochs / train_seconds
# %% [markdown] id="c21"
# ## Test accuracy
# %%
from kit.metrics import classification_report, confusion

@torch.no_grad()
def predict(m, X):
    m.eval()
    return torch.cat([m(X[i:i + 512].to(dev)).argmax(1).cpu() for i in range(0, len(X), 512)])

pred = predict(model, X_te)
rep = classification_report(y[te], pred)
test_acc_learned = classification_report(y[te], predict(model_learned, X_te))["accuracy"]
results = {"chance (largest class)": chance, "bag of words + logistic regression": bow_test_acc,
           "Transformer, sinusoidal": rep["accuracy"], "Transformer, learned positions": test_acc_learned}
viz.show(viz.bar(results, title="test accuracy", yaxis="accuracy"))
viz.show(viz.heatmap(confusion(y[te], pred), x=ds.classes, y=ds.classes,
                     title="Transformer confusion matrix (rows: true class, columns: predicted)"))
print({k: round(float(v), 4) for k, v in results.items()})
from IPython.display import Markdown, display

acc_s, acc_l = float(rep["accuracy"]), float(test_acc_learned)
gap = acc_s - acc_l
display(Markdown(
    f"**Sinusoidal vs learned positions (this run).** Test accuracy {acc_s:.3f} with sinusoidal codes, "
    f"{acc_l:.3f} with learned ones (validation {hist['val_acc'][-1]:.3f} vs {hist_learned['val_acc'][-1]:.3f}); "
    f"the gap of {abs(gap):.3f} is {abs(gap) * len(te):.0f} of the {len(te)} test sentences, in favour of "
    f"{'sinusoidal' if gap > 0 else 'learned' if gap < 0 else 'neither'} codes; for scale, the binomial standard error "
    f"of one accuracy measured on {len(te)} sentences is {math.sqrt(acc_s * (1 - acc_s) / len(te)):.3f}. "
    f"Bag of words: {bow_test_acc:.3f}."))
# %% [markdown] id="c23"
# ## What the heads look at, measured
# For every head of the trained (sinusoidal) model, over all test sentences: **evenness** — the entropy of
# a query's attention divided by its largest possible value, $\log L$ (1: spread evenly over the sentence;
# 0: all on one token); the weight on the query's **neighbours** (the tokens right before and after it)
# next to what even attention would give; and the words that receive the most attention relative to
# even attention (**lift** 2 = twice their share; words seen at least 5 times).
# %%
head_stats = attention_head_stats(model, X_te, vocab.pad_id)
for st in head_stats:
    top = ", ".join(f"{vocab.itos[t]!r} ×{lift:.1f}" for t, lift, _ in st["lift"][:5])
    print(f"layer {st['layer']} head {st['head']}: evenness {st['evenness']:.2f}, neighbours "
          f"{st['neighbours']:.2f} (even: {st['neighbours_uniform']:.2f}), self {st['self']:.2f}; most attended: {top}")
most_even = max(head_stats, key=lambda st: st["evenness"])
most_focused = min(head_stats, key=lambda st: st["evenness"])
most_local = max(head_stats, key=lambda st: st["neighbours"] / st["neighbours_uniform"])
display(Markdown(
    f"In this run the most even head is layer {most_even['layer']} head {most_even['head']} (evenness "
    f"{most_even['evenness']:.2f}), the most focused layer {most_focused['layer']} head {most_focused['head']} "
    f"({most_focused['evenness']:.2f}; its most attended words: "
    f"{', '.join(repr(vocab.itos[t]) for t, _, _ in most_focused['lift'][:5])}), and the one that looks most at "
    f"neighbours layer {most_local['layer']} head {most_local['head']} ({most_local['neighbours']:.2f} of its weight "
    f"vs {most_local['neighbours_uniform']:.2f} for even attention)."))
# %% [markdown] id="c25"
# ## Attention-map explorer
# Pick a test sentence, a layer and a head: row $i$ shows where token $i$ looks; compare with the
# numbers above. In JupyterLab the controls redraw the figure; the report keeps the first one.
# %%
import ipywidgets as w

lengths = (X_te != vocab.pad_id).sum(1)
picks = [i for i in range(len(te)) if 6 <= lengths[i] <= 18][:12] or list(range(min(12, len(te))))

def short(s, n=60):
    return s if len(s) <= n else s[: n - 1] + "…"

def attention_fig(sentence, layer, head):
    L = int(lengths[sentence])
    ids = X_te[sentence: sentence + 1, :L].to(dev)
    maps = model.attention_maps(ids)
    toks = [vocab.itos[i] for i in ids[0].tolist()]
    p = ds.classes[int(pred[sentence])]
    t = ds.classes[int(y[te][sentence])]
    return vt.attention_map(maps[layer][0, head].cpu(), toks,
                            title=f"layer {layer}, head {head} — predicted {p!r}, true {t!r}")

viz.slider_plot(attention_fig,
                sentence=w.Dropdown(options=[(short(texts[te][i]), i) for i in picks], value=picks[0], description="sentence"),
                layer=w.IntSlider(value=n_layer - 1, min=0, max=n_layer - 1, description="layer"),
                head=w.IntSlider(value=0, min=0, max=n_head - 1, description="head"));
# %%
kit.save_metrics({"test_acc": rep["accuracy"], "test_f1": rep["f1"], "val_acc": hist["val_acc"][-1],
                  "val_loss": hist["val_loss"][-1], "test_acc_learned_positions": test_acc_learned,
                  "val_acc_learned_positions": hist_learned["val_acc"][-1], "bow_val_acc": bow_val_acc,
                  "bow_test_acc": bow_test_acc, "chance": chance, "n_classes": len(ds.classes),
                  "attn_diff_float64": attn_diff_f64, "attn_diff_float32": attn_diff_f32, "mha_diff": mha_diff,
                  "init_ratio_sinusoidal": init_ratio["sinusoidal"], "init_ratio_learned": init_ratio["learned"]},
                 timing={"train_seconds": train_seconds, "tokens_per_s": tokens_per_s,
                         "seconds_learned_positions": sum(hist_learned["seconds"])},
                 params={"device": str(dev), "data": ds.source})
# %% [markdown] id="c28"
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("08.3", 2)` shows the next hint.
#
# **Exercise 08.1 (warm-up).** Write `mha_param_count(d, n_head)`: the number of parameters of multi-head
# attention on $d$-dimensional tokens with `n_head` heads, where $W_Q, W_K, W_V$ and $W_O$ are linear layers
# with biases (as in kit's `MultiHeadAttention`).
# %% tags=["solution"]
def mha_param_count(d, n_head):
    return 4 * (d * d + d)
# %%
from kit.exercises import check, hint
check("08.1", mha_param_count)
# %% [markdown] id="c31"
# **Exercise 08.2 (position codes).** kit interleaves sines and cosines (even dimensions sines, odd
# dimensions cosines). Another common layout puts all the sines first: for $i = 0, \dots, d/2 - 1$,
# $$PE[p, i] = \sin(p\,\omega_i), \qquad PE[p, d/2 + i] = \cos(p\,\omega_i), \qquad \omega_i = 10000^{-2i/d}.$$
# Write `sincos_positions(T, d)` returning this `(T, d)` table for positions $p = 0, \dots, T-1$ ($d$ even).
# %% tags=["solution"]
def sincos_positions(T, d):
    angles = torch.arange(T, dtype=torch.float64)[:, None] * 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    return torch.cat([angles.sin(), angles.cos()], dim=1)
# %%
check("08.2", sincos_positions)
# %% [markdown] id="c34"
# **Exercise 08.3 (implement: causal attention).** Write `causal_attention(q, k, v)` for `q` and `k` of shape
# `(…, T, d)` and `v` of shape `(…, T, d_v)`: scaled dot-product attention in which query $i$ sees only keys
# $j \le i$. Kit compares it with PyTorch on fresh shapes, including sequence length 1, values wider than the
# keys and huge scores.
# %% tags=["solution"]
def causal_attention(q, k, v):
    T = q.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v
# %%
check("08.3", causal_attention)
# %% [markdown] id="c37"
# **Exercise 08.4 (implement: padding).** A batch of sentences of different lengths is padded to $T$ tokens.
# Write `padded_attention(q, k, v, lengths)`: `q`, `k`, `v` of shape `(B, T, d)` and `lengths` of shape `(B,)`
# (sentence $b$ has real tokens at positions $0, \dots, \text{lengths}[b]-1$). Each query attends (scaled,
# not causal) only to its sentence's real tokens, and the output at padding positions is all zeros.
# %% tags=["solution"]
def padded_attention(q, k, v, lengths):
    real = torch.arange(q.shape[1])[None, :] < lengths[:, None]  # (B, T)
    scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~real[:, None, :], float("-inf"))
    return (torch.softmax(scores, dim=-1) @ v) * real[..., None]
# %%
check("08.4", padded_attention)
