# %% [md]
# # 08 — The Transformer from scratch, and a sentence classifier

**Goals.** Write scaled dot-product attention, $\operatorname{softmax}(QK^\top/\sqrt d)\,V$, in a few
lines and check it against PyTorch's fused `F.scaled_dot_product_attention` (with and without a causal
mask). Build multi-head attention, sinusoidal and learned position codes and a Transformer encoder
block; train a small encoder to classify sentences; compare it with a bag-of-words logistic
regression, so the accuracy number means something; and explore what its attention heads look at.

**Data.** `text_sources`: the TREC question-classification set (6 question types) when online;
offline, real sentences from the documentation of Python, NumPy, scikit-learn and PyTorch, labelled by
the software they document.
# %% [code] parameters
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
# %% [code]
import kit
from kit.params import Float, Int, validate

validate(globals(), n_embd=Int(2, 4096), n_head=Int(1, 64),
         n_layer=Int(1, 48), epochs=Int(1, 10_000), batch_size=Int(1, 100_000), lr=Float(0, 10, lo_open=True),
         dropout=Float(0, 1, hi_open=True), max_len=Int(2, 4096), vocab_size=Int(10, 1_000_000))
if n_embd % n_head:
    raise kit.params.ParameterError(f"parameter 'n_head' must divide n_embd={n_embd}, got {n_head}")
dev = kit.setup(seed, device)
if smoke:
    epochs, n_embd, n_layer, max_len = min(epochs, 4), min(n_embd, 32), 1, min(max_len, 40)
    lr = max(lr, 3e-3)  # few epochs: a larger step
    n_head = min(n_head, 4) if n_embd % min(n_head, 4) == 0 else 1
# %% [code]
import math

import numpy as np
import torch
import torch.nn.functional as F

import kit.data
import kit.viz as viz
import kit.viz.text as vt
from kit.models import n_params
from kit.models.transformer import (MultiHeadAttention, TransformerClassifier, TransformerConfig, attention,
                                    sinusoidal_positions)
from kit.text import WordVocab, pad_batch, words
# %% [md]
# ## Attention, written out
# Every token produces a **query** $q$, a **key** $k$ and a **value** $v$. The output at a position is an
# average of all values, weighted by how well its query matches each key:
# $$\operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\Big(\frac{QK^\top}{\sqrt d}\Big)\,V .$$
# Dividing by $\sqrt d$ keeps the scores' spread independent of the dimension (dot products of
# random $d$-dimensional vectors have variance $d$), so the softmax does not saturate. A **mask** hides
# some keys (padding, or the future in a causal language model) by setting their scores to $-\infty$.
# %% [code]
viz.source(attention)
# %% [code]
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
# %% [md]
# What the weights look like for one sentence, with random projections (an untrained head) and a
# causal mask: row $i$ is query $i$'s distribution over the keys; everything above the diagonal —
# the future — is exactly zero, and each row sums to 1.
# %% [code]
toy = "the model reads every word of the sentence at once".split()
torch.manual_seed(seed)
emb = torch.randn(len(toy), 16)
_, w_toy = attention(emb @ torch.randn(16, 16), emb @ torch.randn(16, 16), emb, causal=True, return_weights=True)
viz.show(vt.attention_map(w_toy, toy, title="causal attention weights of a random head"));
# %% [md]
# ## Multi-head attention and position codes
# One attention can only form one weighted average per position. **Multi-head attention** splits the
# $d$ dimensions into $h$ heads of size $d/h$, runs attention in each (each head has its own $W_Q, W_K,
# W_V$ slice and can look for something different), concatenates the results and mixes them with $W_O$.
# kit's module uses the fused kernel for speed and the written-out `attention` when we ask for the weights
# — the two agree:
# %% [code]
viz.source(MultiHeadAttention.forward)
torch.manual_seed(seed)
mha = MultiHeadAttention(32, 4).double().eval()
xx = torch.randn(3, 7, 32, dtype=torch.float64)
mha_diff = (mha(xx, causal=True) - mha(xx, causal=True, return_weights=True)[0]).abs().max().item()
print(f"fused vs written-out multi-head attention: {mha_diff:.1e}")
# %% [md]
# Attention itself ignores order: permute the input tokens and the outputs are permuted the same way
# (it treats a sentence as a *set*). Word order has to be added to the token vectors. **Sinusoidal**
# codes use sines and cosines of geometrically spaced frequencies (no parameters; nearby positions get
# similar codes); **learned** codes are one trainable vector per position. We train with both below.
# %% [code]
perm = torch.randperm(7)
perm_diff = (mha(xx)[:, perm] - mha(xx[:, perm])).abs().max().item()
print(f"attention(permuted input) vs permuted attention(input): {perm_diff:.1e}  → order-blind")
viz.show(vt.position_codes(sinusoidal_positions(max_len, n_embd), title=f"sinusoidal position codes (d={n_embd})"));
# %% [md]
# ## The data
# %% [code]
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
# %% [md]
# ## A baseline that ignores order: bag of words
# Count words and word pairs (TF-IDF weighted) and fit a logistic regression. It is fast and strong on
# short texts; the Transformer has to earn its complexity against this number.
# %% [code]
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

bow = TfidfVectorizer(ngram_range=(1, 2), min_df=2, token_pattern=None, tokenizer=words, lowercase=False)
Xb_tr = bow.fit_transform(texts[tr])
logreg = LogisticRegression(C=10, max_iter=3000).fit(Xb_tr, labels[tr])
bow_val_acc = float((logreg.predict(bow.transform(texts[va])) == labels[va]).mean())
bow_test_acc = float((logreg.predict(bow.transform(texts[te])) == labels[te]).mean())
print(f"bag-of-words logistic regression: validation {bow_val_acc:.3f}, test {bow_test_acc:.3f} ({Xb_tr.shape[1]:,} features)")
# %% [md]
# ## Tokens for the Transformer
# Words and punctuation, lower-cased; the vocabulary comes from the training sentences only (words seen
# at least twice); unknown words map to `<unk>`, and sentences are padded with `<pad>` (id 0), which
# attention masks out and the classifier's average ignores.
# %% [code]
vocab = WordVocab.from_texts(texts[tr], max_size=vocab_size, min_freq=2)

def encode(idx):
    return pad_batch([vocab.encode(t) for t in texts[idx]], pad_id=vocab.pad_id, max_len=max_len)[0]

y = torch.tensor(labels)
X_tr, X_va, X_te = encode(tr), encode(va), encode(te)
print(vocab)
print(f"padded to {X_tr.shape[1]} tokens; {(X_tr == vocab.unk_id).float().sum() / (X_tr != 0).sum():.1%} of training tokens are <unk>")
print("example:", texts[tr[0]], "\n   →", X_tr[0].tolist())
# %% [md]
# ## The classifier
# `embedding (× √d) + positions → n_layer × [x + MHA(LN(x)); x + MLP(LN(x))] → LN → mean over real
# tokens → linear`, trained with `kit.train.fit` (AdamW, one-cycle schedule, gradient clipping).
# %% [code]
from kit.train import fit

def make(positions):
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=len(vocab), n_classes=len(ds.classes), max_len=max_len, n_embd=n_embd,
                            n_head=n_head, n_layer=n_layer, dropout=dropout, positions=positions,
                            pad_id=vocab.pad_id)
    return TransformerClassifier(cfg)

train_kw = dict(epochs=epochs, batch_size=batch_size, optimizer="adamw", lr=lr, weight_decay=0.01,
                scheduler="onecycle", clip_grad=1.0, device=dev, seed=seed)
model = make("sinusoidal")
print(model, f"\n{n_params(model):,} parameters")
hist = fit(model, (X_tr, y[tr]), (X_va, y[va]), live=True, **train_kw)
model_learned = make("learned")
hist_learned = fit(model_learned, (X_tr, y[tr]), (X_va, y[va]), progress=False, **train_kw)
viz.show(viz.compare_curves({"sinusoidal positions": hist["val_acc"], "learned positions": hist_learned["val_acc"]},
                            title=f"validation accuracy (bag of words: {bow_val_acc:.3f})", yaxis="accuracy"))
train_seconds = sum(hist["seconds"])
tokens_per_s = float((X_tr != vocab.pad_id).sum()) * epochs / train_seconds
# %% [md]
# ## Test accuracy
# %% [code]
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
# %% [md]
# ## Attention-map explorer
# Pick a test sentence, a layer and a head: row $i$ shows where token $i$ looks. Some heads spread their
# attention evenly (averaging the sentence), some lock onto a few informative words (`tensor`, `array`,
# `estimator` …), some onto neighbours — position codes at work. In JupyterLab the controls redraw the
# figure; the report keeps the first one.
# %% [code]
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
# %% [code]
kit.save_metrics({"test_acc": rep["accuracy"], "test_f1": rep["f1"], "val_acc": hist["val_acc"][-1],
                  "val_loss": hist["val_loss"][-1], "test_acc_learned_positions": test_acc_learned,
                  "val_acc_learned_positions": hist_learned["val_acc"][-1], "bow_val_acc": bow_val_acc,
                  "bow_test_acc": bow_test_acc, "chance": chance, "n_classes": len(ds.classes),
                  "attn_diff_float64": attn_diff_f64, "attn_diff_float32": attn_diff_f32, "mha_diff": mha_diff},
                 timing={"train_seconds": train_seconds, "tokens_per_s": tokens_per_s,
                         "seconds_learned_positions": sum(hist_learned["seconds"])},
                 params={"device": str(dev), "data": ds.source})
# %% [md]
# ## Exercises
# **Exercise 1.** How many parameters does `MultiHeadAttention(64, 4)` have? ($W_Q, W_K, W_V, W_O$ are
# each $64\times64$ with a bias.) Does the number of heads change it?
# %% [code] solution
answer_1 = 4 * (64 * 64 + 64)
# %% [code]
from kit.checks import expect_close
expect_close("Exercise 1", answer_1, n_params(MultiHeadAttention(64, 4)),
             hint="Heads split the 64 dimensions; they do not add parameters.")
# %% [md]
# **Exercise 2.** One query $q = (1, 0)$ and two keys $k_1 = (2, 0)$, $k_2 = (0, 2)$ ($d = 2$). What
# weight does attention give to $k_1$? (Scores are $q\cdot k/\sqrt 2$, then a softmax.)
# %% [code] solution
answer_2 = 1 / (1 + math.exp(-2 / math.sqrt(2)))
# %% [code]
_, _w = attention(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.eye(2), return_weights=True)
expect_close("Exercise 2", answer_2, _w[0, 0].item(), atol=1e-6, hint="softmax([2/√2, 0])[0] = 1 / (1 + e^(−√2)).")
