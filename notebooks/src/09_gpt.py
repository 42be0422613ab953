# %% [markdown] id="c00"
# # 09 — GPT: a decoder-only Transformer, trained against the clock
#
# **Goals.** Build a GPT the way nanoGPT does — token and position embeddings, pre-LayerNorm blocks of
# causal self-attention (`F.scaled_dot_product_attention(is_causal=True)`) and an MLP, a weight-tied
# output layer — and train it on Shakespeare's characters with the tools of real LLM training: Muon and
# AdamW (fused), learning-rate warm-up then cosine decay, bf16 autocast and optional `torch.compile` on a GPU.
# The run has a **time budget**: we watch the validation loss against training *seconds*, and measure
# throughput (tokens/s) and, on a GPU, the **model FLOPs utilisation**. Then generate text with
# temperature, top-k and top-p, and make generation fast with a **KV cache** — checking that it produces
# exactly the same tokens. A **speedrun** section shows which changes (the Muon optimizer, batch, context, schedule)
# made this laptop run learn faster per second, and why.
#
# **Data.** Tiny Shakespeare (1.1 MB, Karpathy's char-rnn), shipped with kit, so the lesson trains on the
# same text online and offline.
# %% tags=["parameters"]
seed = 0              # random seed
device = "auto"       # "auto", "cpu", "cuda" or "mps"
smoke = False         # tiny run for tests (a fixed number of steps)
preset = "cpu"        # model size: "cpu" (0.23 M parameters, minutes on a laptop) or "gpu" (10.7 M: on a GPU set train_seconds to 0)
train_seconds = 180.0 # training-time budget in seconds, or 0 to train a fixed number of steps (deterministic)
steps = 0             # steps of a fixed-steps run (0: the preset default)
lr = 0.0              # peak learning rate (0: the preset default)
compile = False       # torch.compile the model (worth it on a GPU for long runs)
temperature = 0.8     # sampling temperature of the final samples
top_k = 0             # sample only among the k most likely characters (0: off)
top_p = 0.95          # nucleus sampling: smallest set holding this much probability (1: off)
sample_chars = 500    # characters per generated sample
# %%
import kit
from kit.params import Bool, Choice, Float, Int, validate

validate(globals(), preset=Choice("cpu", "gpu"),
         train_seconds=Float(0, 36_000), steps=Int(0, 10_000_000), lr=Float(0, 1), compile=Bool(),
         temperature=Float(0, 10), top_k=Int(0, 10_000), top_p=Float(0, 1, lo_open=True),
         sample_chars=Int(1, 100_000))
dev = kit.setup(seed, device)
size = "smoke" if smoke else preset
if smoke:
    train_seconds, sample_chars = 0.0, min(sample_chars, 200)
# %%
import math
import time

import torch

import kit.viz as viz
import kit.viz.lm as vl
from kit.models import gpt
from kit.models.gpt import GPT
from kit.text import char_corpus, perplexity, unigram_entropy
from kit.train import preset, train_gpt, warmup_cosine

corpus, vocab, train_ids, val_ids = char_corpus("tinyshakespeare", 0.1)  # lesson 07's steps: load, vocabulary, split
text = corpus.text
print(f"{len(text):,} characters, {len(vocab)} distinct; train {len(train_ids):,} / validation {len(val_ids):,}")
unigram = unigram_entropy(train_ids, len(vocab), eval_ids=val_ids)
print(f"bars: uniform guess {math.log(len(vocab)):.3f} nats/char, unigram model {unigram:.3f}")
# %% [markdown] id="c04"
# ## Tokens: characters or subwords?
# This lesson's tokens are **characters**: a tiny vocabulary, every text representable, but long
# sequences — a context of `block_size` tokens sees only `block_size` characters, and the model must
# spend its capacity learning to spell. Real LLMs use **subword** tokens, learned by *byte-pair
# encoding* (BPE): start from the 256 bytes and repeatedly merge the most frequent adjacent pair into a
# new token, until the vocabulary has the size you asked for. Frequent words become one token, rare ones
# stay in pieces. The trade-off, measured on this text (BPE trained with the `tokenizers` library on the
# training part, counted on the validation part):
# * a bigger vocabulary → **fewer tokens per character**, so the same window covers more text and
#   training sees more text per step;
# * but the embedding (and tied output) matrix has $V \times d$ parameters ($d$ = `n_embd`, the model width) and every next-token
#   prediction is a softmax over $V$ classes, each seen less often in training.
#
# (Losses per token are not comparable across tokenizers: compare nats per **character**, i.e. the loss
# per token × tokens per character.)
# %%
from kit.data.tokenizers import tokens_per_char, train_bpe

bpe_text = corpus.text[:len(train_ids)] if not smoke else corpus.text[:200_000]  # the training part (smoke: less)
val_text = text[len(train_ids):]
d_model = preset(size)[0].n_embd
window = preset(size)[0].block_size
tok_rows = [{"tokenizer": "characters (this lesson)", "vocab": len(vocab), "tokens_per_char": 1.0}]
bpe = {}
for V in ((512, 1024) if smoke else (512, 1024, 4096)):
    bpe[V] = train_bpe(bpe_text, V)
    tok_rows.append({"tokenizer": f"byte-level BPE, {V} tokens", "vocab": bpe[V].get_vocab_size(),
                     "tokens_per_char": tokens_per_char(bpe[V], val_text)})
for r in tok_rows:
    r["chars_per_window"] = window / r["tokens_per_char"]
    r["embedding_params"] = r["vocab"] * d_model
print(f"{'tokenizer':28} {'vocab':>6} {'tokens/char':>12} {f'chars in {window} tokens':>18} {f'V×d (d={d_model})':>14}")
for r in tok_rows:
    print(f"{r['tokenizer']:28} {r['vocab']:6,} {r['tokens_per_char']:12.3f} {r['chars_per_window']:18.0f} "
          f"{r['embedding_params']:14,}")
V_show = max(bpe)
line = next(ln for ln in val_text.split("\n")[1:] if len(ln) >= 30)  # a full line of the validation text
pieces = [bpe[V_show].decode([i]) for i in bpe[V_show].encode(line).ids]
print(f"\n{line!r}: {len(line)} characters → {len(pieces)} BPE-{V_show} tokens: {pieces}")
# %% [markdown] id="c06"
# ## The model
# A GPT reads a window of `block_size` characters and predicts, at **every** position, the next one.
#
# * **Embeddings**: a token embedding plus a *learned* position embedding per position.
# * **Blocks** (pre-LN, as in GPT-2): `x = x + attention(LayerNorm(x))`, then `x = x + MLP(LayerNorm(x))`.
#   The residual stream `x` passes through untouched; each sub-layer adds to it. Normalising *before*
#   each sub-layer (rather than after, as the original Transformer and BERT do) keeps deep stacks stable
#   without careful warm-up.
# * **Causal self-attention**: each head compares the query of position $t$ with the keys of
#   positions $\le t$ — $\operatorname{softmax}(QK^\top/\sqrt{d_h} + M)V$ with $M_{ts}=-\infty$ for $s>t$, where
#   $d_h$ = `n_embd / n_head` is the **head size** (each head works in its own $d_h$ dimensions of the width $d$).
#   `F.scaled_dot_product_attention(..., is_causal=True)` does this in one fused kernel (flash attention
#   on GPUs) without ever storing the $T\times T$ matrix.
# * **Output**: a final LayerNorm and a linear layer to the vocabulary whose weight **is** the token
#   embedding matrix (*weight tying*: one matrix for "which vector means this character" both ways).
# %%
cfg, tc = preset(size, vocab_size=len(vocab))
if lr:
    tc.lr, tc.min_lr = lr, lr / 10
if steps:
    tc.steps = steps
torch.manual_seed(seed)
model = GPT(cfg).to(dev)
n_params = model.n_params()
print(cfg)
print(f"{n_params:,} parameters (+ {cfg.block_size * cfg.n_embd:,} in the position table); "
      f"tied: {model.lm_head.weight is model.wte.weight}")
viz.source(gpt.CausalSelfAttention.forward, gpt.Block.forward)
# %% [markdown] id="c08"
# **Causality, checked.** Changing the characters after position 20 must not change the predictions
# at positions ≤ 20 — otherwise the model could cheat by reading the answer.
# %%
model.eval()
x = train_ids[:cfg.block_size][None].to(dev)
x2 = x.clone()
x2[0, 21:] = (x2[0, 21:] + 1) % len(vocab)
with torch.no_grad():
    leak = (model(x)[0, :21] - model(x2)[0, :21]).abs().max().item()
    changed = (model(x)[0, 21:] - model(x2)[0, 21:]).abs().max().item()
print(f"max change of the logits at positions ≤ 20: {leak:.1e}; after: {changed:.2f}")
assert leak < 1e-4 < changed
# %% [markdown] id="c10"
# ## Training
# `kit.train.train_gpt` configures kit's one training engine, `kit.train.fit`, for speed:
# * **random windows** of the training text (`kit.text.lm_batches`): `x` and `y = x` shifted by one;
# * **AdamW** with the *fused* kernel (one kernel updates every parameter) and weight decay on
#   matrices (embeddings included), not on biases and LayerNorm gains — in the `cpu` preset only for the
#   embeddings and norms, while **Muon** updates the blocks' matrices (see *Speedrun* below);
# * **warm-up then cosine**: the learning rate rises linearly for `warmup` steps (Adam's statistics
#   are poor at first), then follows half a cosine down to `min_lr` over the run — here over the
#   *time budget*, since we train for a fixed number of seconds. A budget suits a small model on a
#   laptop; on a fast GPU the `gpu` preset would pass over this 1 MB text hundreds of times in three
#   minutes and overfit, so there train nanoGPT's recipe, a fixed number of steps (`train_seconds=0`);
# * on a GPU, **bf16 autocast** (matrix products in bfloat16 on the tensor cores, weights and the
#   loss in float32) and optionally **`torch.compile`** (fuses the element-wise operations);
# * every `eval_every_s` seconds the validation loss on a fixed slice of the validation text; the
#   evaluation time is **not** counted as training time.
# %%
viz.source(warmup_cosine)
rows = []
live = viz.LiveFigure(lambda: vl.loss_vs_seconds({"validation": {"seconds": [r["seconds"] for r in rows],
                                                                 "val_loss": [r["val_loss"] for r in rows]}},
                                                 title="validation loss (live)"), every_s=2.0)
def on_eval(row):
    rows.append(row)
    live.update()

budget = train_seconds or None
print(f"training {'for %.0f s' % budget if budget else '%d steps' % tc.steps}: batch {tc.batch_size} × "
      f"{cfg.block_size} characters, peak lr {tc.lr:g}")
run = train_gpt(model, train_ids, val_ids, tc, seconds=budget, eval_marks=(60.0,),
                eval_every_s=10.0, device=dev, compile=compile, seed=seed,
                on_eval=on_eval)
live.update(force=True)
print(f"{run.steps:,} steps, {run.tokens:,} tokens in {run.seconds:.1f} s of training → {run.tokens_per_s:,.0f} tokens/s")
# %%
h = run.history
val_loss = run.final_val_loss
val_60 = run.val_loss_at(60.0) if budget else None
# the CPU preset's bars were measured on tiny-shakespeare: draw them only when that is the text loaded
shakespeare = corpus.description.startswith("tiny-shakespeare")
bars = {"1.70 (tiny-shakespeare CPU bar at 60 s)": 1.70, "1.47 (tiny-shakespeare CPU bar at 180 s)": 1.47} \
    if size == "cpu" and shakespeare else {}
# the throughput the bars were set at: the cpu preset on a quiet 2-core machine (benchmarks/RESULTS.md, gpt_speedrun:
# mean of 3 seeds). A busier or slower machine sees fewer tokens in the same seconds, so its loss is higher.
ref_tokens_per_s = 56_875 if size == "cpu" else None
if ref_tokens_per_s and budget:
    share = run.tokens_per_s / ref_tokens_per_s
    print(f"this run trained at {run.tokens_per_s:,.0f} tokens/s, {share:.0%} of the {ref_tokens_per_s:,} tokens/s "
          f"the bars were set at")
    if share < 0.8:
        print(f"⚠ this machine delivered much less than the bars assume (other work on its cores, or fewer of "
              f"them: torch uses {torch.get_num_threads()} threads here): in {budget:.0f} s the model saw about "
              f"{1 - share:.0%} fewer tokens, so expect a higher loss at 60 s and at the end. The bars are still "
              f"judged; rerun on a quiet machine to compare with them.")
if size == "cpu" and not shakespeare:
    print(f"the CPU bars (1.70 / 1.47) were set on tiny-shakespeare; not drawn for {corpus.description!r}")
viz.show(vl.loss_vs_seconds(h, title=f"{size} GPT: loss against training time",
                            marks={"60 s": 60.0} if budget and budget > 60 else None,
                            bars=bars | {"unigram": unigram}, y_range=(min(h["val_loss"]) - 0.05, unigram + 0.25)))
print("training seconds  val loss")
for s, v in zip(h["seconds"], h["val_loss"]):
    print(f"{s:16.1f}  {v:.3f}")
if val_60 is not None:
    print(f"validation loss within 60 s: {val_60:.3f}; at the end ({run.seconds:.0f} s): {val_loss:.3f}")
# %% [markdown] id="c13"
# ## Throughput and model FLOPs utilisation
# Training a Transformer costs about $6N$ FLOPs per token for $N$ parameters (2 for the forward
# matrix products, 4 for the backward) plus the attention scores, $12\,L\,T\,d$ per token for $L$
# layers, context $T$ and model width $d$ (= `n_embd`, not the head size $d_h$: the heads together span $d$). **MFU** = (FLOPs per token × tokens/s) ÷ the hardware's peak: how
# much of the chip the model actually uses. The peak we compare with is the GPU's dense bf16 number;
# on a CPU there is no such single peak, so MFU is reported as not applicable.
# %%
fpt = gpt.flops_per_token(cfg, n_params)
util = gpt.mfu(run.tokens_per_s, cfg, n_params, dev)
att_flops = 12 * cfg.n_layer * cfg.block_size * cfg.n_embd
print(f"{fpt / 1e6:.2f} MFLOPs per training token → {fpt * run.tokens_per_s / 1e9:.1f} GFLOP/s achieved")
print(f"of which the attention scores (12·L·T·d = {att_flops / 1e6:.2f} M): {att_flops / fpt:.1%}; the weights "
      f"(6N): {6 * n_params / fpt:.1%}")
print(f"MFU: {util:.1%} of {gpt.peak_flops(dev) / 1e12:.0f} TFLOP/s bf16" if util is not None
      else f"MFU: not applicable on {dev.type} (no bf16 tensor-core peak known for it)")
# %% [markdown] id="c15"
# ## Speedrun: what lowers the loss per *second* on a laptop
# The `cpu` preset is the result of an ablation measured per second of training, not per step
# (`benchmarks/gpt_speedrun.py`: each change alone and together, on this text, on 2 CPU cores). What it keeps:
#
# * **Muon** (`torch.optim.Muon`) for the blocks' weight matrices, AdamW for embeddings, norms and the output
#   layer. Adam scales each number of the update separately; a matrix's update is then dominated by a few large
#   directions. Muon *orthogonalises* the momentum — a few Newton–Schulz iterations
#   $X \leftarrow aX + b\,(XX^\top)X + c\,(XX^\top)^2X$ push every singular value towards 1 — so every direction
#   of the matrix moves at a similar rate, and larger steps stay stable. The iterations cost time per step.
# * **A batch of 32 windows** instead of 16: each step has costs that do not grow with its tokens (the optimizer's
#   update, Muon's iterations), so twice the tokens per step spreads them thinner — the lines under the table print
#   the tokens/s the benchmark measured with and without it.
# * **A context of 128 characters** instead of 64: each prediction can condition on more of the line and the
#   speaker; the price is the attention scores, whose FLOPs grow with the context — their share of the work at 64
#   and at 128 characters is printed under the table, from the formula of the previous section.
#
# Tried and not kept: rotary positions, QK-norm, ReLU² and an untied output layer. Per second, a change must gain
# more per step than its extra work per step costs (compare the tokens/s column); the lines under the table give
# each change's gain or loss against the baseline, computed from the benchmark's file.
# The numbers below are the benchmark's (each change alone, then together; median of 3 seeds), then the path that
# found the preset (one seed each), all measured on a quiet 2-core machine — not in this run. The `gpu` preset
# keeps nanoGPT's AdamW recipe.
# %%
import pandas as pd
from IPython.display import display

import kit.data

bench = kit.data.shipped_results("gpt_speedrun")   # benchmarks/gpt_speedrun.py's results, shipped with kit
if bench is not None:
    med = lambda runs, k: float(pd.Series([r[k] for r in runs]).median())
    table = pd.DataFrame([{"variant": r["variant"], "seeds": len(r["runs"]),
                           "val loss at 60 s (median)": med(r["runs"], "val_60"),
                           "val loss at 180 s (median)": med(r["runs"], "val_end"),
                           "tokens/s": med(r["runs"], "tokens_per_s")} for r in bench["rows"]])
    print(bench["head"])
    display(table.set_index("variant").round({"val loss at 60 s (median)": 3, "val loss at 180 s (median)": 3,
                                              "tokens/s": 0}))
    base = table.iloc[0]   # the former preset: every change is measured against it
    for _, r in table.iloc[1:].iterrows():
        d60, d180 = (r[c] - base[c] for c in ("val loss at 60 s (median)", "val loss at 180 s (median)"))
        print(f"{r['variant']:<40} {d60:+.3f} at 60 s, {d180:+.3f} at 180 s against the baseline"
              f"{'  ← better at both' if round(d60, 3) < 0 and round(d180, 3) < 0 else ''}")
    tps = table.set_index("variant")["tokens/s"]
    for opt, b16, b32 in (("AdamW", table.iloc[0]["variant"], "+ batch32 alone"),
                          ("Muon", "+ muon alone", "+ muon + batch32")):
        if b16 in tps and b32 in tps:
            print(f"batch 32 instead of 16 with {opt}: {tps[b16]:,.0f} → {tps[b32]:,.0f} tokens/s "
                  f"({tps[b32] / tps[b16] - 1:+.0%})")
    curves = {}
    for r in bench["rows"]:   # the baseline and the changes together (each alone: the table), median seed's curve
        if r["variant"].endswith(" alone"):
            continue
        run_m = sorted(r["runs"], key=lambda x: x["val_end"])[len(r["runs"]) // 2]
        curves[r["variant"]] = {"seconds": run_m["seconds"], "val_loss": run_m["val_loss"]}
    lows = [min(c["val_loss"]) for c in curves.values()]
    viz.show(vl.loss_vs_seconds(curves, title="speedrun ablation (benchmark): validation loss against training time",
                                marks={"60 s": 60.0}, bars={"1.70 (bar at 60 s)": 1.70, "1.47 (bar at 180 s)": 1.47},
                                y_range=(min(lows) - 0.05, 2.2)))
else:
    print("no speedrun results ship with this kit: run `python benchmarks/gpt_speedrun.py --write` to measure them")
cpu_cfg = preset("cpu", vocab_size=len(vocab))[0]
cpu_n = GPT(cpu_cfg).n_params()
for T in (64, cpu_cfg.block_size):
    att_T = 12 * cpu_cfg.n_layer * T * cpu_cfg.n_embd
    print(f"cpu preset, context {T}: attention scores are {att_T / gpt.flops_per_token(cpu_cfg, cpu_n, seq_len=T):.1%} "
          f"of the training FLOPs per token")
steps_taken = kit.data.shipped_results("gpt_speedrun_path")
if steps_taken is not None:   # how the preset was found: one change at a time, one seed each
    print(steps_taken["about"])
    display(pd.DataFrame(steps_taken["rows"]).set_index("variant").rename(columns={
        "val_60": "val loss at 60 s", "val_180": "val loss at 180 s", "tokens_per_s": "tokens/s"}))
# %% [markdown] id="c17"
# ## Generation and the KV cache
# Generating one character needs the keys and values of **all** previous positions in every layer.
# Recomputing them at each step (no cache) costs a full forward pass over the window per character;
# a **KV cache** stores them, so each step only runs the newest character through the network.
# The attention outputs are the same numbers — so with the same random generator the generated
# characters must be *identical*. (With learned absolute positions the cache cannot slide: once the
# window is full, each step rebuilds it from the last `block_size` characters.)
# %%
model.eval()
start = text.find("\n\n", len(train_ids) + 300) + 2   # a paragraph (a speech) in the validation text
prompt_text = text[start: text.find("\n", start) + 1] or text[len(train_ids): len(train_ids) + 20]
prompt = vocab.encode(prompt_text).to(dev)
n_new = 3 * cfg.block_size // 2  # beyond the window, so the sliding case is checked too
same = {}
for name, kw in {"greedy": dict(temperature=0.0), "sampled": dict(temperature=1.0, top_k=20, top_p=0.95)}.items():
    a = model.generate(prompt, n_new, generator=torch.Generator(device=dev).manual_seed(seed), use_cache=True, **kw)
    b = model.generate(prompt, n_new, generator=torch.Generator(device=dev).manual_seed(seed), use_cache=False, **kw)
    same[name] = bool(torch.equal(a, b))
    print(f"{name}: identical with and without the cache: {same[name]}")
assert all(same.values())
# speed: a batch of 8 prompts, generating until the window is full (where the cache helps)
batch = prompt[None, -(cfg.block_size // 4):].repeat(8, 1)
gen_len = cfg.block_size - batch.shape[1]
speed = {}
for use_cache in (False, True):
    t0 = time.perf_counter()
    model.generate(batch, gen_len, temperature=0.0, use_cache=use_cache)
    speed["with cache" if use_cache else "no cache"] = 8 * gen_len / (time.perf_counter() - t0)
print({k: f"{v:,.0f} tokens/s" for k, v in speed.items()}, f"→ {speed['with cache'] / speed['no cache']:.1f}× faster")
# %% [markdown] id="c19"
# ## Sampling: temperature, top-k, top-p
# The next character is drawn from $\operatorname{softmax}(\text{logits}/\tau)$. **Temperature** $\tau$
# sharpens ($\tau<1$) or flattens ($\tau>1$) the distribution. **Top-k** keeps the $k$ most likely
# characters; **top-p** (nucleus) keeps the smallest set whose probabilities add up to $p$ — many
# candidates when the model is unsure, few when it is confident. Precisely: a character is kept when the total
# probability of the characters *more likely than it* is still below $p$. Characters of **equal** probability are
# kept or dropped together (in top-k too), so the set never depends on how a sort happens to order ties; kit's
# sampler and the exercises below use this one rule. Move the sliders: grey is the
# distribution after the temperature, blue what can still be sampled.
# %%
import ipywidgets as w

with torch.no_grad():
    last_logits = model(prompt[None, -cfg.block_size:])[0, -1].float().cpu()

def dist_fig(temperature, top_k, top_p):
    return vl.sampling_distribution(last_logits, vocab.itos, temperature, top_k, top_p,
                                    title=f"next character after {prompt_text[-30:]!r}")

sliders = lambda: dict(temperature=w.FloatSlider(value=temperature or 1.0, min=0.1, max=2.0, step=0.05, description="temperature"),
                       top_k=w.IntSlider(value=top_k, min=0, max=len(vocab), description="top-k (0 off)"),
                       top_p=w.FloatSlider(value=top_p, min=0.05, max=1.0, step=0.05, description="top-p"))
viz.slider_plot(dist_fig, **sliders());
# %%
def sample_text(temperature, top_k, top_p):
    g = torch.Generator(device=dev).manual_seed(seed)
    out = model.generate(prompt, sample_chars, temperature=temperature, top_k=top_k or None,
                         top_p=top_p if top_p < 1 else None, generator=g)
    return vocab.decode(out)

vl.sampling_widget(sample_text, **sliders());
# %%
samples = {f"τ = {tau}": sample_text(tau, top_k, top_p) for tau in (0.5, 1.0, 1.5)}
samples["greedy (τ = 0)"] = sample_text(0.0, 0, 1.0)
import kit.viz.text as vt
vt.text_samples(samples, title="samples (the prompt is the first line)")
# %%
metrics = {"val_loss": val_loss, "perplexity": perplexity(val_loss), "n_params": n_params,
           "unigram_val_loss": unigram, "kv_cache_same_greedy": same["greedy"],
           "kv_cache_same_sampled": same["sampled"], "causal_leak": leak, "vocab_size": len(vocab)} | \
          {f"bpe{V}_tokens_per_char": r["tokens_per_char"] for V, r in zip(bpe, tok_rows[1:])}
timing = {"tokens_per_s": run.tokens_per_s, "train_seconds": run.seconds, "steps": run.steps,
          "tokens": run.tokens, "flops_per_token": fpt, "mfu": util if util is not None else "not applicable (CPU)",
          "generate_tokens_per_s_cache": speed["with cache"], "generate_tokens_per_s_no_cache": speed["no cache"],
          "threads": torch.get_num_threads()}
if ref_tokens_per_s:  # the throughput the bars assume, beside this run's (a report can say why a bar was missed)
    timing |= {"reference_tokens_per_s": ref_tokens_per_s,
               "tokens_per_s_vs_reference": run.tokens_per_s / ref_tokens_per_s}
if budget:  # a time budget: the number of steps depends on the machine, so these are not bit-reproducible
    metrics |= {"val_loss_60s": val_60, "train_seconds_budget": budget}
    timing |= {"val_loss_curve": {"seconds": h["seconds"], "val_loss": h["val_loss"]}}
else:
    metrics |= {"steps": run.steps}
kit.save_metrics(metrics, timing=timing,
                 params={"preset": size, "model": vars(cfg), "train": vars(tc) | {"betas": list(tc.betas)}, "device": str(dev), "data": corpus.source});
# %% [markdown] id="c24"
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("09.4", 2)` shows the next hint.
#
# **Exercise 09.1 (warm-up: temperature).** Write `temperature_probs(logits, temperature)`: the next-token
# probabilities $\operatorname{softmax}(z/\tau)$ over the last dimension, for a vector of logits or a batch of rows
# (`temperature` > 0). It must stay exact for logits in the hundreds.
# %% tags=["solution"]
def temperature_probs(logits, temperature):
    z = logits / temperature
    z = z - z.max(dim=-1, keepdim=True).values
    e = z.exp()
    return e / e.sum(dim=-1, keepdim=True)
# %%
from kit.exercises import check, hint
check("09.1", temperature_probs)
# %% [markdown] id="c27"
# **Exercise 09.2 (implement: top-k, one k per request).** A server batches the next-token distributions of many
# requests, and each request brings its own $k$ (kit's sampler applies one $k$ to a whole batch). Write
# `top_k_filter(probs, k)`: `probs` holds one distribution per row `(B, V)`, `k` a `LongTensor` of `B` values
# ($1 \le k \le V$); in each row set every probability below that row's $k$-th largest to 0 and renormalise the rest so
# the row sums to 1. Tokens **tied** with the $k$-th largest are kept too.
# %% tags=["solution"]
def top_k_filter(probs, k):
    kth = probs.sort(dim=-1, descending=True).values.gather(-1, (k - 1)[:, None])
    kept = probs * (probs >= kth)
    return kept / kept.sum(dim=-1, keepdim=True)
# %%
check("09.2", top_k_filter)
# %% [markdown] id="c30"
# **Exercise 09.3 (count).** Write `gpt_n_params(vocab_size, block_size, n_layer, n_embd)`: the number of
# parameters of `GPT(GPTConfig(vocab_size, block_size, n_layer, n_head, n_embd))` (no biases, the default),
# **including** the position table. Each block has two LayerNorm gains, an attention with a $d\times 3d$ and a
# $d\times d$ matrix, an MLP $d\times 4d$ and $4d\times d$; the output matrix is the token embedding (tied).
# Why does `n_head` not appear?
# %% tags=["solution"]
def gpt_n_params(vocab_size, block_size, n_layer, n_embd):
    d = n_embd
    per_block = 2 * d + 3 * d * d + d * d + 4 * d * d + 4 * d * d
    return vocab_size * d + block_size * d + n_layer * per_block + d
# %%
check("09.3", gpt_n_params)
# %% [markdown] id="c33"
# **Exercise 09.4 (implement: nucleus sampling, one p per request).** Write `top_p_filter(probs, p)`: `probs` as in
# 09.2, `p` a tensor of `B` values in $(0, 1]$. In each row keep the smallest set of most likely tokens whose
# probabilities add up to at least that row's $p$ — a token is kept when the total probability of the tokens **more
# likely than it** is still below $p$ — set the others to 0 and renormalise. Tokens with equal probability are kept or
# dropped together (the sampler's rule above); with $p = 1$ nothing is removed, and the most likely token is always kept.
# %% tags=["solution"]
def top_p_filter(probs, p):
    bigger = probs.unsqueeze(-2) > probs.unsqueeze(-1)        # [b, i, j]: token j is more likely than token i
    mass_above = (probs.unsqueeze(-2) * bigger).sum(dim=-1)
    kept = torch.where(mass_above < p[:, None], probs, torch.zeros_like(probs))
    return kept / kept.sum(dim=-1, keepdim=True)
# %%
check("09.4", top_p_filter)
# %% [markdown] id="c36"
# **Exercise 09.5 (implement: one attention step with a KV cache).** This is what each layer does at every step of
# `generate(..., use_cache=True)`. Write `attend_with_cache(q, k_new, v_new, k_cache, v_cache)`: `q, k_new, v_new` are
# the queries, keys and values of $T$ new tokens, shape `(B, heads, T, d_h)`; `k_cache, v_cache` those of the $P$
# tokens before them, `(B, heads, P, d_h)` ($P$ may be 0). Return `(y, k, v)`: the attention output of the new tokens,
# `(B, heads, T, d_h)` — each new token attends to every cached token and to the new tokens up to itself,
# $\operatorname{softmax}(QK^\top/\sqrt{d_h} + M)V$ — and the grown cache `k, v`, `(B, heads, P + T, d_h)`, the cached
# tokens first. `y` must be the last $T$ rows of full causal attention over all $P + T$ tokens.
# %% tags=["solution"]
def attend_with_cache(q, k_new, v_new, k_cache, v_cache):
    k = torch.cat([k_cache, k_new], dim=2)
    v = torch.cat([v_cache, v_new], dim=2)
    P, T = k_cache.shape[2], q.shape[2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    future = torch.ones(T, P + T, dtype=torch.bool, device=q.device).triu(diagonal=P + 1)  # new token i: position P + i
    scores = scores.masked_fill(future, float("-inf"))
    return scores.softmax(dim=-1) @ v, k, v
# %%
check("09.5", attend_with_cache)
