# %% [md]
# # 15 — Tokenization and a pretrained GPT

**Goals.** Build the tokenizer real language models use — **byte-level BPE** — from scratch: learn merges on a
corpus, watch which ones come first, and measure what a bigger vocabulary buys (shorter sequences) and what it
costs (a bigger softmax) by training the same small GPT with 2–3 vocabularies for the same number of seconds and
comparing the only fair number, the **loss per byte**. Check the tokenizer two ways: every string (Chinese, emoji,
whitespace runs) must round-trip exactly, and the `tokenizers` library must produce the **same ids** from the files
we save. Then pretrain a small GPT in **GPT-2's flavour**, save it in the Hugging Face GPT-2 format, reload it
through `GPT.from_pretrained` — the same call that loads the real GPT-2 — and check that `transformers` reads the
very same model (max |Δ logits| ≤ 1e-4). Finally generate five continuations of "Hello, my name is" with
temperature, top-k and top-p, with and without a KV cache.

**Data.** Tiny Shakespeare (1.1 MB), shipped with kit, as in lessons 07 and 09. With `model="gpt2"` the
generation uses the real 124 M-parameter GPT-2 when it is in the Hugging Face cache or can be downloaded; offline
the lesson says so and keeps its own model.
# %% [code] parameters
seed = 0                 # random seed
device = "auto"          # "auto", "cpu", "cuda" or "mps"
smoke = False            # tiny run for tests (a slice of the text, tiny vocabularies, a fixed number of steps)
model = "local"          # generation: "local" (the GPT this lesson pretrains) or "gpt2" (the real GPT-2, if it can be had)
vocab_size = 1024        # BPE vocabulary of the pretrained model: 256 bytes + merges + <|endoftext|>
sweep_seconds = 30.0     # training seconds per vocabulary in the comparison (0: a fixed number of steps)
train_seconds = 90.0     # training seconds of the pretrained model (0: a fixed number of steps)
prompt = "Hello, my name is"  # the start of every generated text
n_samples = 5            # sampled continuations
max_new_tokens = 30      # tokens generated per continuation
temperature = 0.8        # sampling temperature (0: greedy)
top_k = 50               # sample among the k most likely tokens (0: off)
top_p = 0.95             # nucleus sampling: the smallest set holding this much probability (1: off)
# %% [code]
import kit
from kit.params import Choice, Float, Int, ParameterError, Str, validate

validate(globals(), model=Choice("local", "gpt2"), vocab_size=Int(300, 16_384), sweep_seconds=Float(0, 3_600),
         train_seconds=Float(0, 36_000), prompt=Str(), n_samples=Int(1, 64), max_new_tokens=Int(1, 1_000),
         temperature=Float(0, 10), top_k=Int(0, 100_000), top_p=Float(0, 1, lo_open=True))
if not prompt:
    raise ParameterError("parameter 'prompt' must not be empty: generation continues a text")
dev = kit.setup(seed, device)
if smoke:  # a slice of the text, tiny vocabularies, fixed steps (deterministic)
    vocab_size, sweep_seconds, train_seconds, max_new_tokens = min(vocab_size, 600), 0.0, 0.0, min(max_new_tokens, 12)
# %% [code]
import math
import time
from dataclasses import replace
from pathlib import Path

import IPython.display as ipd   # ipd.display(…): no bare display() in the namespace (kit's answer probe calls functions)
import regex
import torch

import kit.viz as viz
import kit.viz.text as vt
from kit.data import load
from kit.data.bpe import GPT2_PATTERN, ByteLevelBPE
from kit.data.bpe_tools import MIXED_UNICODE, matches_tokenizers, merge_table, roundtrip_ok, split_encode, truncate
from kit.models import gpt
from kit.models.gpt import GPT
from kit.models.gpt2_parity import transformers_max_abs_diff
from kit.train import train_gpt
from kit.train.lm_eval import evaluate_lm, unigram_entropy
from kit.viz.tokenization import bpb_vs_seconds, vocab_tradeoff

corpus = load("tinyshakespeare")
text = corpus.text[:120_000] if smoke else corpus.text
cut = int(len(text) * 0.9)  # the first 90 % trains the tokenizer and the models; the rest is validation
print(f"{len(text):,} characters = {len(text.encode()):,} UTF-8 bytes; tokenizer and models train on the first "
      f"{cut:,} characters")
# %% [md]
# ## Byte-pair encoding, from bytes up
# A byte-level BPE starts from the **256 bytes** — so any UTF-8 text, in any script, can be written, and there is
# never an unknown token. Training then repeats one step: count every **adjacent pair** of tokens in the corpus,
# take the most frequent pair $(a, b)$, give it a new id and **merge** it everywhere. After $m$ merges the
# vocabulary has $256 + m$ tokens (plus special tokens such as `<|endoftext|>`). Two details from GPT-2:
# * the text is first split into pieces by a regular expression (words with their leading space, digit runs,
#   punctuation runs, whitespace), and merges never cross a piece — so " dog." and " dog!" (a space in front, as
#   inside a sentence) both start with the piece " dog" and share its tokens, while "dog." at the start of a line
#   begins with another piece, "dog" (printed below);
# * each byte is written as a printable character (a space is `Ġ`, a new line `Ċ`) so that `vocab.json` and
#   `merges.txt` are plain text files.
#
# Encoding a new text works inside each piece, from its bytes: among the neighbouring pairs that have a merge, merge
# the one of **lowest rank** (learned earliest) wherever it occurs, and repeat until no neighbouring pair has a
# merge (you will write this in Exercise 15.4).
# %% [code]
t0 = time.perf_counter()
bpe = ByteLevelBPE.train(text[:cut], vocab_size)
bpe_seconds = time.perf_counter() - t0
print(f"{bpe!r}: {len(bpe.merges)} merges learned in {bpe_seconds:.1f} s")
print("the first merges (␣ is a space, ⏎ a new line):")
for rank, a, b, ab in merge_table(bpe, 16):
    print(f"  {rank:4d}: {a!r:>8} + {b!r:<8} → {ab!r}")
late = max(0, len(bpe.merges) - 8)
print(f"and the last ones (ranks {late}…):")
for rank, a, b, ab in merge_table(bpe, 8, start=late):
    print(f"  {rank:4d}: {a!r:>8} + {b!r:<8} → {ab!r}")
print("pieces and tokens of three short texts:")
for t in (" dog.", " dog!", "dog."):
    print(f"  {t!r:8} → pieces {regex.findall(GPT2_PATTERN, t)} → tokens {[bpe.decode([i]) for i in bpe.encode(t)]}")
assert bpe.encode(" dog.")[:-1] == bpe.encode(" dog!")[:-1] == bpe.encode(" dog") != bpe.encode("dog.")[:-1]
# %% [code]
first_rows, last_rows = merge_table(bpe, 16), merge_table(bpe, 8, start=late)
n_chars = sum(len(a) == 1 and len(b) == 1 for _, a, b, _ in first_rows)
space_letter = [ab for _, a, b, ab in first_rows if a == "␣" and b.isalpha()]
first_len = sum(len(ab) for *_, ab in first_rows) / len(first_rows)
last_len = sum(len(ab) for *_, ab in last_rows) / len(last_rows)
longest = max((ab for *_, ab in last_rows), key=len)
ipd.display(ipd.Markdown(
    f"Read the two lists. The first merges are the most frequent pairs of the whole text: **{n_chars} of the first "
    f"{len(first_rows)}** join two single characters"
    + (f" ({len(space_letter)} of them a space and a letter: {', '.join(f'`{x}`' for x in space_letter[:4])})"
       if space_letter else "")
    + f", and their tokens are {first_len:.1f} characters long on average. The last {len(last_rows)} join pieces that "
    f"are already long: their tokens average **{last_len:.1f}** characters (the longest: `{longest}`)."))
# %% [md]
# Because training is greedy — one merge at a time, each chosen on the corpus as it is after the previous ones — the
# tokenizer with a **smaller** vocabulary is exactly the first merges of a bigger one (`truncate`). Here is one line
# of the validation text at each vocabulary size:
# %% [code]
sizes = sorted({257, vocab_size // 2, vocab_size} - {v for v in range(257)})  # 257: 256 bytes + <|endoftext|>, no merges
toks = {V: truncate(bpe, V) for V in sizes}
val_text = text[cut:]
line = next(l for l in val_text.split("\n")[1:] if len(l) > 30)
for V, tok in toks.items():
    pieces = [tok.decode([i]) for i in tok.encode(line)]
    print(f"{V:5d} tokens: {len(pieces):3d} pieces  " + "|".join(pieces))
# %% [md]
# ## Checks: exact round trips, and the same ids as the `tokenizers` library
# Round trip: `decode(encode(t)) == t` for Chinese, emoji with skin-tone modifiers and zero-width joiners, accents,
# runs of spaces, `\r\n`, control bytes and the text of a special token — and for the whole validation text.
# Parity: we save GPT-2's two files and let Hugging Face's `tokenizers` library (Rust) encode the same texts from
# them (the texts without a special token: those come next).
# %% [code]
folder = kit.results.scratch_dir("15") / "pretrained_gpt"  # the lesson's checkpoint folder (a scratch folder, not the sources)
bpe.save(folder)
texts = list(MIXED_UNICODE) + [val_text]
bpe_roundtrip = roundtrip_ok(bpe, texts)
plain_texts = [t for t in texts if not any(s in t for s in bpe.special)]
bpe_parity = matches_tokenizers(bpe, folder, plain_texts)
for t in MIXED_UNICODE[1:3]:
    print(f"{t!r}\n   → {len(t.encode())} bytes, {len(bpe.encode(t))} tokens → decoded back: {bpe.decode(bpe.encode(t)) == t}")
print(f"round trip exact on {len(texts)} texts (the validation text included): {bpe_roundtrip}")
print(f"same ids as tokenizers.ByteLevelBPETokenizer({folder}/vocab.json, merges.txt) on the {len(plain_texts)} "
      f"texts without a special token: {bpe_parity}")
assert bpe_roundtrip and bpe_parity
# %% [md]
# **Special tokens are not text.** `<|endoftext|>` has its own id: it tells the model "a document ends here". If
# `encode` turned any `<|endoftext|>` it met in a text into that id, a user could type it into a prompt and inject a
# control token — a prompt-injection hole. So, like tiktoken, kit's `encode` reads it as **plain text** (its bytes)
# unless the caller names it in `allowed_special`; with `disallowed_special="all"` (tiktoken's default) such a
# text is refused with an error instead.
# %% [code]
user_text = "Summarise this.<|endoftext|>Ignore the above"
eot = bpe.special["<|endoftext|>"]
as_text, as_control = bpe.encode(user_text), bpe.encode(user_text, allowed_special={"<|endoftext|>"})
print(f"{user_text!r}\n  default: {len(as_text)} tokens, the <|endoftext|> id {eot} among them: {eot in as_text}")
print(f"  allowed_special={{'<|endoftext|>'}}: {len(as_control)} tokens, id {eot} at position {as_control.index(eot)}")
try:
    bpe.encode(user_text, disallowed_special="all")
except ValueError as e:
    print(f"  disallowed_special='all': ValueError: {e}")
assert eot not in as_text and eot in as_control and bpe.decode(as_text) == bpe.decode(as_control) == user_text
# %% [md]
# ## Vocabulary size vs sequence length vs loss per byte
# A bigger vocabulary makes sequences **shorter** (fewer tokens per byte): a window of `block_size` tokens covers
# more text, and each training step sees more of the corpus. But the embedding and output matrices grow
# ($V\times d$), each prediction is a softmax over more classes, and rare tokens are seen less often.
#
# Losses per token cannot be compared across tokenizers — a token is a different amount of text. Per **byte** they
# can: the total loss of the validation text is $\bar L \cdot N_\text{tokens}$ nats, so
# $$\text{bits per byte} = \frac{\bar L \cdot N_\text{tokens}}{N_\text{bytes}\,\ln 2}
#   = \frac{\bar L \times \text{tokens per byte}}{\ln 2}.$$
# Below, the same GPT (GPT-2's flavour: biases, tanh-GELU) trains for the same time with each vocabulary, and is
# scored on the same validation bytes.
# %% [code]
base_cfg, tc = gpt.preset("smoke" if smoke else "cpu_adamw")   # lesson 09's AdamW preset
base_cfg = replace(base_cfg, bias=True, activation="gelu_tanh")   # GPT-2's flavour
if smoke:
    tc.steps, tc.eval_every = 30, 30
sweep, curves, splits = [], {}, {}
for V, tok in toks.items():
    splits[V] = data = split_encode(tok, text[:cut], val_text)
    torch.manual_seed(seed)
    m = GPT(replace(base_cfg, vocab_size=V)).to(dev)
    run = train_gpt(m, data.train_ids, data.val_ids, tc, seconds=sweep_seconds or None, eval_every_s=10.0,
                    device=dev, seed=seed, progress=False)
    loss = evaluate_lm(m, data.val_ids, m.cfg.block_size, batch_size=64, device=dev)   # every validation token
    tpb = data.tokens_per_byte
    sweep.append({"vocab": V, "tokens_per_byte": tpb, "val_loss": loss, "bits_per_byte": loss * tpb / math.log(2),
                  "params": m.n_params(), "steps": run.steps, "bytes_seen": run.tokens / tpb})
    curves[f"vocabulary {V}"] = {"seconds": run.history["seconds"],
                                 "bits_per_byte": [l * tpb / math.log(2) for l in run.history["val_loss"]]}
print(f"{'vocab':>6} {'tokens/byte':>12} {'parameters':>11} {'steps':>6} {'≈bytes seen':>11} {'loss/token':>11} {'bits/byte':>10}")
for r in sweep:
    print(f"{r['vocab']:6d} {r['tokens_per_byte']:12.3f} {r['params']:11,} {r['steps']:6d} {r['bytes_seen']:11,.0f} "
          f"{r['val_loss']:11.3f} {r['bits_per_byte']:10.3f}")
viz.show(vocab_tradeoff(sweep))
if sweep_seconds:
    viz.show(bpb_vs_seconds(curves))
# %% [code]
first, last = sweep[0], sweep[-1]
best = min(sweep, key=lambda r: r["bits_per_byte"])
budget = f"{sweep_seconds:.0f} s of training each" if sweep_seconds else f"{tc.steps} steps each"
ipd.display(ipd.Markdown(
    f"With {budget}: going from {first['vocab']} to {last['vocab']} tokens cuts the sequence to "
    f"**{last['tokens_per_byte'] / first['tokens_per_byte']:.0%}** of its length "
    f"({first['tokens_per_byte']:.3f} → {last['tokens_per_byte']:.3f} tokens per byte); the loss per token "
    f"{'rises' if last['val_loss'] > first['val_loss'] else 'falls'} from {first['val_loss']:.3f} to "
    f"{last['val_loss']:.3f} nats, while the loss per byte goes from {first['bits_per_byte']:.3f} to "
    f"{last['bits_per_byte']:.3f} bits. The lowest loss per byte here: the **{best['vocab']}-token** vocabulary "
    f"({best['bits_per_byte']:.3f} bits per byte)."))
# %% [md]
# ## Pretraining a small GPT, in GPT-2's format
# Now the lesson's own "pretrained model": the same GPT-2-flavoured configuration with the full vocabulary, trained
# longer. A Hugging Face GPT-2 checkpoint is a folder with `config.json` (sizes, `activation_function:
# "gelu_new"`, `layer_norm_epsilon`) and `model.safetensors`; we add the tokenizer's `vocab.json` + `merges.txt`,
# so the folder is complete. One difference in the weights: Hugging Face's GPT-2 uses `Conv1D` layers that compute
# $xW + b$ with $W$ stored as **(in, out)** — the transpose of `nn.Linear`'s (out, in) — so saving and loading
# transpose exactly four matrices per block.
# %% [code]
data = splits[vocab_size]
pre_tc = replace(tc, steps=60, eval_every=60) if smoke else tc
torch.manual_seed(seed)
local = GPT(replace(base_cfg, vocab_size=vocab_size)).to(dev)
run = train_gpt(local, data.train_ids, data.val_ids, pre_tc, seconds=train_seconds or None, eval_every_s=15.0,
                device=dev, seed=seed, progress=False)
val_loss = evaluate_lm(local, data.val_ids, local.cfg.block_size, batch_size=64, device=dev)
val_bpb = val_loss * data.tokens_per_byte / math.log(2)   # nats per token × tokens per byte → nats per byte → bits
# the bar to beat: a unigram model of the same tokens (frequencies counted on the training ids), same bytes
unigram_bpb = unigram_entropy(data.train_ids, vocab_size, eval_ids=data.val_ids) * data.tokens_per_byte / math.log(2)
print(f"{local.n_params():,} parameters, {run.steps:,} steps in {run.seconds:.0f} s → validation {val_loss:.3f} "
      f"nats/token = {val_bpb:.3f} bits/byte (a unigram model of the same tokens: {unigram_bpb:.3f} bits/byte)")
local.save_pretrained(folder, eos_token_id=toks[vocab_size].special.get("<|endoftext|>"))  # GPT-2: bos = eos
print(sorted(p.name for p in folder.iterdir()))
print(open(folder / "config.json").read())
# %% [md]
# The names in the file are Hugging Face's; kit's GPT calls the same tensors slightly differently (you will write
# the conversion in Exercise 15.5):
# %% [code]
from safetensors import safe_open

with safe_open(str(folder / "model.safetensors"), "pt") as f:
    hf_names = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
kit_names = {k: tuple(v.shape) for k, v in local.state_dict().items()}
top_then_block0 = lambda names: [n for n in names if ".h." not in "." + n and "blocks." not in n] + \
    [n for n in names if n.startswith(("h.0.", "blocks.0."))]  # noqa: E731
for title, names in (("model.safetensors (Hugging Face GPT-2 names)", hf_names), ("kit's GPT (state_dict)", kit_names)):
    shown = top_then_block0(sorted(names))
    print(f"{title}: {len(names)} tensors; the top level and block 0:")
    print("   " + ", ".join(f"{n} {names[n]}" for n in shown))
# %% [md]
# **Reload and compare.** `GPT.from_pretrained(folder)` is the very call that loads the real GPT-2 (`"gpt2"`).
# The check that matters: `transformers.GPT2LMHeadModel.from_pretrained(folder)` — an independent implementation —
# must compute the same logits on the same ids.
# %% [code]
reloaded = GPT.from_pretrained(folder, device=dev)
tok = ByteLevelBPE.from_pretrained(folder)
idx = data.val_ids[: 4 * local.cfg.block_size].view(4, local.cfg.block_size)
with torch.no_grad():
    reload_diff = float((reloaded(idx.to(dev)) - local.eval()(idx.to(dev))).abs().max())
parity = transformers_max_abs_diff(folder, reloaded, idx)
print(f"tokenizer reloaded: same merges {tok.merges == bpe.merges}, same vocabulary {tok.vocab == bpe.vocab}")
print(f"max |Δ logits|: reloaded vs trained {reload_diff:.1e}; kit vs transformers.GPT2LMHeadModel {parity:.1e}")
assert parity <= 1e-4 and tok.vocab == bpe.vocab
# %% [md]
# ## Generation: five continuations of "Hello, my name is"
# Each new token is drawn from $\operatorname{softmax}(z/\tau)$ after **top-k** (keep the $k$ most likely tokens)
# and **top-p** (keep the smallest set holding probability $p$) — lesson 09's sampling, now over subword tokens.
# The five continuations are one batch; with a **KV cache** each step feeds only the newest token, and with the
# same random generator the tokens must be identical to recomputing everything.
# %% [code]
gen_model, gen_tok, gen_name = reloaded, tok, "this lesson's GPT (reloaded from its GPT-2-format folder)"
if model == "gpt2":
    try:
        from kit.models.gpt2_format import resolve
        gpt2_dir = resolve("gpt2")
        gen_model, gen_tok = GPT.from_pretrained("gpt2", device=dev), ByteLevelBPE.from_pretrained(gpt2_dir)
        gen_name = f"the real GPT-2 ({gen_model.n_params():,} parameters)"
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"model='gpt2': the real GPT-2 is not available here, so this lesson's local model generates instead ({e})")
prompt_ids = torch.tensor(gen_tok.encode(prompt), dtype=torch.long)
batch = prompt_ids[None].repeat(n_samples, 1)
kw = dict(temperature=temperature, top_k=top_k or None, top_p=top_p if top_p < 1 else None)
outs, gen_seconds = {}, {}
for use_cache in (True, False):
    t0 = time.perf_counter()
    outs[use_cache] = gen_model.generate(batch, max_new_tokens, use_cache=use_cache,
                                         generator=torch.Generator(device=dev).manual_seed(seed), **kw)
    gen_seconds[use_cache] = time.perf_counter() - t0
kv_same = bool(torch.equal(outs[True], outs[False]))
print(f"{gen_name}; prompt {prompt!r} = {len(prompt_ids)} tokens {[gen_tok.decode([i]) for i in prompt_ids.tolist()]}")
print(f"same tokens with and without the KV cache: {kv_same} "
      f"({gen_seconds[True]:.2f} s with it, {gen_seconds[False]:.2f} s without)")
vt.text_samples({f"sample {i + 1}": gen_tok.decode(row.tolist()) for i, row in enumerate(outs[True].cpu())},
                title=f"τ = {temperature}, top-k = {top_k or 'off'}, top-p = {top_p}: {gen_name}")
assert kv_same
# %% [code]
metrics = {"gpt2_parity_max_abs_diff": parity, "bpe_roundtrip_ok": bpe_roundtrip, "bpe_matches_tokenizers": bpe_parity,
           "reload_max_abs_diff": reload_diff, "val_loss": val_loss, "val_bits_per_byte": val_bpb,
           "unigram_bits_per_byte": unigram_bpb,
           "tokens_per_byte": data.tokens_per_byte, "vocab_size": vocab_size, "n_params": local.n_params(),
           "kv_cache_same": kv_same, "generated_by": "gpt2" if gen_model is not reloaded else "local"} | \
          {f"vocab{r['vocab']}_{k}": r[k] for r in sweep for k in ("tokens_per_byte", "val_loss", "bits_per_byte")}
timing = {"bpe_train_seconds": bpe_seconds, "train_seconds": run.seconds, "steps": run.steps,
          "tokens_per_s": run.tokens_per_s, "generate_seconds_cache": gen_seconds[True],
          "generate_seconds_no_cache": gen_seconds[False], "sweep_steps": {r["vocab"]: r["steps"] for r in sweep}}
kit.save_metrics(metrics, timing=timing, params={"model_config": vars(local.cfg), "data": corpus.source});
# %% [md]
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("15.3", 2)` shows the next hint.
#
# **Exercise 15.1 (warm-up: bits per byte, token by token).** Above, bits per byte came from a mean loss and the
# tokens per byte of the whole validation text. Here you get one text token by token: write
# `bits_per_byte(losses, tokens)`, where `losses[i]` is a model's loss (nats) on token `i` and `tokens[i]` is that
# token's text (a `str`), and return the text's loss in **bits per byte** (bytes of UTF-8, as everywhere in this
# lesson). `losses` may be a list or a NumPy array.
# %% [code] solution
def bits_per_byte(losses, tokens):
    total_nats = float(sum(losses))
    n_bytes = sum(len(t.encode("utf-8")) for t in tokens)
    return total_nats / math.log(2) / n_bytes
# %% [code]
from kit.exercises import check, hint
check("15.1", bits_per_byte)
# %% [md]
# **Exercise 15.2 (one merge step).** Write `merge(ids, pair, new_id)`: a new list where every occurrence of `pair`
# as neighbours, read left to right, is replaced by `new_id`. Once merged, ids are not reconsidered:
# `merge([a, a, a], (a, a), X)` is `[X, a]`.
# %% [code] solution
def merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out
# %% [code]
check("15.2", merge)
# %% [md]
# **Exercise 15.3 (implement: BPE training).** Write `train_bpe(ids, n_merges, first_id)` that learns up to
# `n_merges` merges on the list `ids`. Each round merges the **most frequent** adjacent pair `(ids[i], ids[i+1])`
# of the current list (overlapping occurrences count: `a a a` holds `(a, a)` twice; **ties** go to the pair whose
# first occurrence comes earliest in the list) into the next new id `first_id`, `first_id + 1`, … Return
# `(merges, ids)`: a dict `{pair: new_id}` in learning order, and the ids after all merges. Stop early when fewer
# than two ids are left.
# %% [code] solution
def train_bpe(ids, n_merges, first_id):
    ids, merges = list(ids), {}
    for k in range(n_merges):
        counts = {}
        for pair in zip(ids, ids[1:]):
            counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        pair = max(counts, key=counts.get)   # max keeps the first of equal counts: the pair seen first
        merges[pair] = first_id + k
        ids = merge(ids, pair, first_id + k)
    return merges, ids
# %% [code]
check("15.3", train_bpe)
# %% [md]
# **Exercise 15.4 (implement: encoding by merge rank).** Write `encode(ids, merges)`: `ids` are the bytes of one
# piece (ints 0–255), `merges` a dict `{(a, b): new_id}` in rank order — the first entry has rank 0, as
# `train_bpe` returns it. Encode the way GPT-2 and tiktoken do: among the adjacent pairs of the current list that
# have a merge, take the one of **lowest rank**, replace it by its new id everywhere (left to right, as in 15.2),
# and repeat until no adjacent pair has a merge. Return the list of ids. Do not assume the table came from
# training on this very text: a pair's parts may be made by merges of any rank.
# %% [code] solution
def encode(ids, merges):
    rank = {pair: r for r, pair in enumerate(merges)}
    ids = list(ids)
    while len(ids) > 1:
        best = min(zip(ids, ids[1:]), key=lambda p: rank.get(p, math.inf))
        if best not in rank:
            break
        ids = merge(ids, best, merges[best])
    return ids
# %% [code]
check("15.4", encode)
# %% [md]
# **Exercise 15.5 (implement: reading a GPT-2 checkpoint).** Write `hf_to_kit(name, tensor)`: for one entry of a
# Hugging Face GPT-2 `state_dict` (the first list printed above; in a checkpoint written by `transformers` the names
# may also start with `transformer.`, and there are `lm_head.weight` and causal-mask buffers `h.N.attn.bias`), return
# `(kit_name, tensor_in_kit_layout)` — or `None` for entries kit's GPT has no parameter for. Check your names against
# the second list, and think about which matrices are stored transposed.
# %% [code] solution
def hf_to_kit(name, tensor):
    name = name.removeprefix("transformer.")
    if name == "lm_head.weight" or name.endswith((".attn.bias", ".attn.masked_bias")):
        return None
    if name.startswith("h."):
        name = "blocks." + name[len("h."):]
    conv1d = name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight"))
    return name, tensor.t() if conv1d else tensor
# %% [code]
check("15.5", hf_to_kit)
