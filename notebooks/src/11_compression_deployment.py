# %% [markdown] id="c00"
# # 11 — Compression and deployment: quantization, pruning, distillation, ONNX
#
# **Goals.** Make a trained network smaller and faster and measure what it costs: post-training int8
# quantization (dynamic and static) and quantization-aware training with `torch.ao.quantization`,
# magnitude pruning with `torch.nn.utils.prune` (a 0–90 % sparsity sweep, then fine-tuning), and knowledge
# distillation from a big teacher into a small student (soft targets at temperature T, loss KL·T²).
# Every variant gets one measured row — **size on disk, CPU latency (median of repeated runs), test
# accuracy** — in one table and one plot. Then export to **ONNX**, run the file with **ONNX Runtime**,
# check that it computes what PyTorch computes (max |difference| ≤ 1e-4) and compare latency.
#
# **Data.** scikit-learn's 1 797 real 8×8 handwritten digits (UCI).
# %% tags=["parameters"]
seed = 0            # random seed
device = "auto"     # "auto", "cpu", "cuda" or "mps" (training only: quantized kernels and ONNX Runtime run on the CPU)
smoke = False       # tiny run for tests
epochs = 30         # teacher training epochs
hidden = 512        # teacher width (two hidden layers)
student_hidden = 32 # student width (one hidden layer)
temperature = 4.0   # distillation temperature T
alpha = 0.7         # weight of the soft-target term in the distillation loss
repeats = 100       # timed calls per latency measurement (the median is reported)
export_gpt = True   # also export lesson 09's GPT to ONNX and check it
threads = 1         # CPU threads for torch (0: all usable cores); these models are tiny, one thread is fastest
# %%
import kit
from kit.params import Bool, Float, Int, validate

validate(globals(), epochs=Int(1, 10_000),
         hidden=Int(8, 8192), student_hidden=Int(1, 8192), temperature=Float(0, 100, lo_open=True),
         alpha=Float(0, 1), repeats=Int(5, 100_000), export_gpt=Bool(), threads=Int(0, 1024))
dev = kit.setup(seed, device, threads=threads or None)
if smoke:
    epochs, hidden, repeats, export_gpt = min(epochs, 8), min(hidden, 128), min(repeats, 20), False
# %%
import time

import pandas as pd
import torch
import torch.nn.functional as F

import kit.data
import kit.viz as viz
from kit.techniques import compress as C
from kit.techniques import export as E
from kit.models import MLP, MLPConfig, n_params
from kit.train import accuracy, fit

digits = kit.data.load("digits")
tr, va, te = kit.data.split(len(digits), (0.6, 0.2, 0.2), seed=seed, stratify=digits.y)
X = torch.tensor(digits.X / 16.0, dtype=torch.float32)
y = torch.tensor(digits.y, dtype=torch.long)
train, val, test = (X[tr], y[tr]), (X[va], y[va]), (X[te], y[te])
print(f"{len(tr)} train / {len(va)} validation / {len(te)} test images")
# %% [markdown] id="c04"
# ## The model to compress
# A deliberately over-sized teacher: two hidden layers of `hidden` units. It is trained on `device`;
# everything after that runs on the CPU, where int8 kernels (fbgemm/x86 or qnnpack/ARM) and ONNX Runtime live.
# %%
torch.manual_seed(seed)
teacher = MLP(MLPConfig(64, 10, hidden=(hidden, hidden)))
t0 = time.perf_counter()
hist = fit(teacher, train, val, loss_fn=F.cross_entropy, metrics={"acc": accuracy}, optimizer="adam", lr=1e-3, epochs=epochs,
           batch_size=64, device=dev, seed=seed)
train_seconds = time.perf_counter() - t0
teacher = teacher.cpu().eval()
print(f"teacher: {n_params(teacher):,} parameters, validation accuracy {hist['val_acc'][-1]:.4f}")
# %% [markdown] id="c06"
# ## Measuring honestly
# One function measures every variant the same way: **size** is the bytes of `torch.save(state_dict)`
# (and of that file gzip-compressed, which is where pruning's zeros pay off), **latency** is the median of
# `repeats` timed calls on one thread after a warm-up (the median ignores calls slowed by other
# processes), once for a single request (batch 1) and once for a batch of 256, and **accuracy** is on the
# held-out test set.
# %%
viz.source(C.latency_ms, C.measure)
rows = [C.measure("fp32 teacher", teacher, *test, repeats=repeats)]
pd.DataFrame(rows)
# %% [markdown] id="c08"
# ## Quantization: int8 instead of float32
# An int8 tensor stores $q = \mathrm{round}(w/s) + z$ with one float **scale** $s$ and integer
# **zero point** $z$ per tensor (or per output channel): 4× fewer bytes, and integer matrix products.
# Three ways to get there:
# * **dynamic** (post-training) — weights converted once; activations quantized on the fly per batch.
#   No data needed; best when weight loading dominates (Linear/LSTM layers, small batches).
# * **static** (post-training) — `Linear→ReLU` pairs are fused, observers record the activation ranges
#   on a few hundred **calibration** inputs, then every layer runs in int8 end to end.
# * **quantization-aware training (QAT)** — fine-tune with *fake quantization* in the forward pass
#   (round in the forward, straight-through gradient in the backward) so the weights adapt to the rounding.
#
# First the arithmetic by hand for one weight matrix, then the library.
# %%
w = teacher.net[0].weight.detach()
scale = w.abs().max().item() / 127                     # symmetric: zero point 0, the largest |w| maps to ±127
q = torch.clamp(torch.round(w / scale), -128, 127)
by_hand = q * scale
with C.quiet_quantization():  # quantized tensors are deprecated in favour of torchao; still the reference here
    lib = torch.quantize_per_tensor(w, scale, 0, torch.qint8)
print(f"scale {scale:.3g}; max |w − dequant(q)| = {(w - by_hand).abs().max():.2e} (≤ scale/2 = {scale / 2:.2e}); "
      f"same integers as torch: {torch.equal(q.to(torch.int8), lib.int_repr())}")
# %%
q_dynamic = C.dynamic_int8(teacher)
q_static = C.static_int8(teacher, train[0])
print(q_static)
qat_model = C.qat_prepare(teacher)
fit(qat_model, train, val, loss_fn=F.cross_entropy, optimizer="adam", lr=1e-4, epochs=max(1, epochs // 10), batch_size=64,
    device="cpu", seed=seed, progress=False)
q_qat = C.qat_convert(qat_model)
for name, m in [("int8 dynamic", q_dynamic), ("int8 static", q_static), ("int8 QAT", q_qat)]:
    rows.append(C.measure(name, m, *test, repeats=repeats))
pd.DataFrame(rows)
# %% [markdown] id="c11"
# ## Pruning: zero the smallest weights
# `torch.nn.utils.prune.global_unstructured` ranks the weights of all layers together by |w| and masks the
# smallest fraction. The file does not shrink by itself (zeros are still stored as float32), but it
# compresses (gzip column), and sparse formats or sparse kernels can exploit it. After the sweep, a few
# epochs of **fine-tuning with the mask kept** let the remaining weights adapt to the missing ones; what
# that buys at 90 % is measured below.
# %%
sweep = [0.0, 0.3, 0.5, 0.7, 0.8, 0.9]
pruned = {a: C.prune_global(teacher, a) for a in sweep}
prune_acc = {a: C.accuracy_of(m, *test) for a, m in pruned.items()}
prune_gz = {a: C.gzip_bytes(m) / 1024 for a, m in pruned.items()}
finetuned = C.prune_global(teacher, 0.9, permanent=False)   # mask kept as a reparametrization while training
fit(finetuned, train, val, loss_fn=F.cross_entropy, optimizer="adam", lr=1e-3, epochs=max(2, epochs // 5), batch_size=64,
    device="cpu", seed=seed, progress=False)
finetuned = C.prune_global(finetuned, 0.0)                    # make the zeros permanent (prune.remove)
from plotly.subplots import make_subplots
fig = make_subplots(rows=1, cols=2, subplot_titles=["test accuracy", "gzipped file (kB)"])
fig.add_scatter(x=[100 * a for a in sweep], y=list(prune_acc.values()), mode="lines+markers", name="pruned", row=1, col=1)
fig.add_scatter(x=[90], y=[C.accuracy_of(finetuned, *test)], mode="markers", marker=dict(size=12, symbol="star"),
                name="90 % + fine-tuning", row=1, col=1)
fig.add_scatter(x=[100 * a for a in sweep], y=list(prune_gz.values()), mode="lines+markers", name="gzip size", row=1, col=2)
fig.update_xaxes(title_text="sparsity (%)")
fig.update_layout(title="magnitude pruning sweep", template="plotly_white", height=380)
viz.show(fig)
acc_ft90 = C.accuracy_of(finetuned, *test)
from IPython.display import Markdown, display
n_test = len(test[1])
worst_kept = max((a for a in sweep if prune_acc[a] >= prune_acc[0.0] - 0.01), default=0.0)
display(Markdown(
    f"Measured: the teacher has test accuracy {prune_acc[0.0]:.3f} unpruned; it stays within 1 point of that up to "
    f"**{worst_kept:.0%}** sparsity in this sweep ({', '.join(f'{a:.0%}: {v:.3f}' for a, v in prune_acc.items())}). "
    f"At 90 %, fine-tuning with the mask kept moves it from {prune_acc[0.9]:.3f} to **{acc_ft90:.3f}** "
    f"({(acc_ft90 - prune_acc[0.9]) * n_test:+.0f} of {n_test} test images); the gzipped file shrinks from "
    f"{prune_gz[0.0]:.0f} kB to {prune_gz[0.9]:.0f} kB."))
print(f"sparsity after fine-tuning: {C.sparsity(finetuned):.3f}")
for a in (0.5, 0.9):
    rows.append(C.measure(f"pruned {a:.0%}", pruned[a], *test, repeats=repeats))
rows.append(C.measure("pruned 90% + fine-tune", finetuned, *test, repeats=repeats))
# %% [markdown] id="c13"
# ## Knowledge distillation: a small student learns from the teacher
# The student is trained on the teacher's **soft targets** $\mathrm{softmax}(z_t/T)$: at temperature
# $T>1$ they say how much each wrong class resembles the right one ("dark knowledge"). The loss mixes
# $\alpha\,T^2\,\mathrm{KL}(p_t^T\,\|\,p_s^T) + (1-\alpha)\,\mathrm{CE}(z_s, y)$; the $T^2$ undoes the
# $1/T^2$ shrinking of the soft-target gradients. `C.Distillation` wraps the student and returns this
# loss, so `fit` batches inputs, labels and teacher logits together.
# %%
viz.source(C.distillation_loss)
with torch.inference_mode():
    soft_train, soft_val = teacher(train[0]), teacher(val[0])

def make_student():
    torch.manual_seed(seed)  # both students start from the same weights
    return MLP(MLPConfig(64, 10, hidden=(student_hidden,)))

s_epochs = 2 * epochs
scratch = make_student()
h_scratch = fit(scratch, train, val, loss_fn=F.cross_entropy, metrics={"acc": accuracy}, optimizer="adam", lr=3e-3,
                epochs=s_epochs, batch_size=64, device="cpu", seed=seed, progress=False)
student = make_student()
h_kd = fit(C.Distillation(student, temperature, alpha), (*train, soft_train), (*val, soft_val), loss_fn=None,
           optimizer="adam", lr=3e-3, epochs=s_epochs, batch_size=64, device="cpu", seed=seed, progress=False)
viz.show(viz.compare_curves({"student from labels": h_scratch["val_acc"], "student distilled": h_kd["val_acc"]},
                            title=f"{n_params(student):,}-parameter student vs {n_params(teacher):,}-parameter teacher",
                            yaxis="validation accuracy"))
rows.append(C.measure("student (labels only)", scratch.eval(), *test, repeats=repeats))
rows.append(C.measure("student (distilled)", student.eval(), *test, repeats=repeats))
acc_t, acc_s, acc_d = rows[0]["accuracy"], rows[-2]["accuracy"], rows[-1]["accuracy"]
gain = round((acc_d - acc_s) * n_test)
kd_verdict = (f"helped: {gain} more test image{'s' if gain != 1 else ''} right" if gain > 0 else
           f"hurt: {-gain} fewer test image{'s' if gain != -1 else ''} right" if gain < 0 else
           "made no difference on the test set")
display(Markdown(
    f"Measured: the {n_params(teacher):,}-parameter teacher gets {acc_t:.3f}; the {n_params(student):,}-parameter "
    f"student gets {acc_s:.3f} from labels alone and {acc_d:.3f} distilled (T = {temperature:g}, α = {alpha:g}) — "
    f"distillation {kd_verdict} out of {n_test}. Distillation pays off most when the student is much smaller than "
    f"what the task needs, or when the teacher labels extra unlabelled inputs; on these small, easy images a "
    f"{student_hidden}-unit student may already learn most of it from the labels."))
# %% [markdown] id="c15"
# ## Deployment: ONNX and ONNX Runtime
# `torch.onnx.export` writes the network as a framework-neutral graph (here with the torch.export-based
# exporter, `dynamo=True`, and a symbolic batch axis). ONNX Runtime executes it without PyTorch — in C++,
# C#, Java, JavaScript or on phones. First check that the file computes the same function, then time it.
# The `.onnx` files go into a scratch folder of this kernel's own (`kit.results.scratch_dir`, removed when the
# kernel stops), not next to the notebook; the size printed is the real file's.
# %%
from kit.results import scratch_dir

work = scratch_dir("11")
onnx_path, exporter = E.to_onnx(teacher, test[0][:2], work / "teacher.onnx")
info = E.onnx_summary(onnx_path)
print(f"exported with {exporter} → {onnx_path}: {info['bytes'] / 1024:.0f} kB on disk, opset {info['opset']}, "
      f"ops {info['ops']}, inputs {info['inputs']}")
sess = E.ort_session(onnx_path, threads=1)
onnx_diff = E.parity(teacher, sess, test[0])
TOL = 1e-4
assert onnx_diff <= TOL, f"ONNX Runtime differs from PyTorch by {onnx_diff:.2e} > {TOL}"
print(f"max |PyTorch − ONNX Runtime| over {len(test[0])} test images = {onnx_diff:.2e} ≤ {TOL} ✓")
rows.append(C.measure("ONNX Runtime fp32", E.ort_runner(sess), *test, size=info["bytes"], repeats=repeats))
# %% [markdown] id="c17"
# ## Everything in one table and one plot
# Sizes are exact; latencies are medians on this machine, at this moment (run it again to see the
# spread). With tiny matrices much of the time goes to Python and framework overhead rather than
# arithmetic, so whether int8 pays off can depend on the batch size: the speed-ups below are measured.
# %%
table = pd.DataFrame(rows).set_index("variant")
viz.show(C.tradeoff_figure(rows))
speedup = {name: {b: table.loc["fp32 teacher", f"latency_ms_{b}"] / table.loc[name, f"latency_ms_{b}"]
                  for b in ("b1", "b256")} for name in ("int8 dynamic", "int8 static", "int8 QAT", "ONNX Runtime fp32")}
def _says(x):
    return "faster" if x > 1.05 else "slower" if x < 1 / 1.05 else "about as fast"
display(Markdown("Measured speed-up over the fp32 teacher (latency ratio; > 1 is faster): " + "; ".join(
    f"{name}: {v['b1']:.2f}× at batch 1 ({_says(v['b1'])}), {v['b256']:.2f}× at batch 256 ({_says(v['b256'])})"
    for name, v in speedup.items()) + "."))
table.round({"accuracy": 4, "size_kb": 1, "size_gz_kb": 1, "latency_ms_b1": 4, "latency_ms_b256": 3})
# %% [markdown] id="c19"
# ## Bonus: lesson 09's GPT through the same pipeline
# A small (untrained) GPT from `kit.models.gpt` exported with a symbolic batch axis: causal attention,
# LayerNorm and GELU become standard ONNX operators, and ONNX Runtime gives the same logits.
# %%
gpt_diff = None
if export_gpt:
    from kit.models.gpt import GPT
    from kit.train import preset
    gcfg, _ = preset("smoke", vocab_size=65)
    torch.manual_seed(seed)
    gpt = GPT(gcfg).eval()
    tokens = torch.randint(0, 65, (4, gcfg.block_size), generator=torch.Generator().manual_seed(seed))
    gpath, _ = E.to_onnx(gpt, tokens[:2], work / "gpt.onnx", input_names=("tokens",))
    gpt_diff = E.parity(gpt, E.ort_session(gpath), tokens)
    assert gpt_diff <= TOL, f"GPT: ONNX Runtime differs by {gpt_diff:.2e}"
    print(f"GPT ({sum(p.numel() for p in gpt.parameters()):,} parameters): {E.onnx_summary(gpath)['ops']}\n"
          f"max |PyTorch − ONNX Runtime| = {gpt_diff:.2e} ✓")
else:
    print("skipped (export_gpt=False)")
# %%
acc = {r["variant"]: r["accuracy"] for r in rows}
key = {"fp32 teacher": "teacher", "int8 dynamic": "int8_dynamic", "int8 static": "int8_static", "int8 QAT": "int8_qat",
       "pruned 50%": "pruned50", "pruned 90%": "pruned90", "pruned 90% + fine-tune": "pruned90_finetuned",
       "student (labels only)": "student_scratch", "student (distilled)": "student_distilled",
       "ONNX Runtime fp32": "onnx"}
size = {r["variant"]: r["size_kb"] for r in rows}
kit.save_metrics({f"acc_{key[k]}": v for k, v in acc.items()} |
                 {f"prune_sweep_acc_{int(100 * a)}": v for a, v in prune_acc.items()} |
                 {"size_kb_fp32": size["fp32 teacher"], "size_kb_int8_dynamic": size["int8 dynamic"],
                  "size_kb_int8_static": size["int8 static"], "size_kb_student": size["student (distilled)"],
                  "sparsity_finetuned": C.sparsity(finetuned), "onnx_max_abs_diff": onnx_diff, "onnx_tolerance": TOL,
                  "gpt_onnx_max_abs_diff": gpt_diff, "teacher_params": n_params(teacher), "student_params": n_params(student)},
                 timing={"teacher_train_seconds": train_seconds} |
                        {f"latency_ms_b1_{key[r['variant']]}": r["latency_ms_b1"] for r in rows} |
                        {f"latency_ms_b256_{key[r['variant']]}": r["latency_ms_b256"] for r in rows} |
                        {f"size_gz_kb_{key[r['variant']]}": r["size_gz_kb"] for r in rows if r["size_gz_kb"] is not None},
                 params={"device": str(dev), "onnx_exporter": exporter, "quantized_engine": torch.backends.quantized.engine})
# %% [markdown] id="c22"
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("11.2", 2)` shows the next hint.
#
# **Exercise 11.1 (warm-up: dequantize).** Write `dequantize(q, scale, zero_point)`: the real numbers
# $w \approx (q - z)\,s$ that integer tensor `q` (int8 or uint8) stands for, as a float tensor.
# %% tags=["solution"]
def dequantize(q, scale, zero_point):
    return (q.double() - zero_point) * scale
# %%
from kit.exercises import check, hint
check("11.1", dequantize)
# %% [markdown] id="c25"
# **Exercise 11.2 (implement: symmetric int8).** Write `quantize_int8(w)` → `(q, scale)`: one scale for the whole
# tensor so that the largest $|w|$ maps to $\pm 127$, zero point 0, $q = \mathrm{round}(w/s)$ clamped to
# $[-127, 127]$ and stored as `torch.int8`. An all-zero tensor gets scale 1.0. Then `dequantize(q, scale, 0)` is
# within $s/2$ of `w` everywhere — and one huge outlier makes $s$ large for everybody.
# %% tags=["solution"]
def quantize_int8(w):
    scale = w.abs().max().item() / 127 or 1.0
    q = torch.clamp(torch.round(w / scale), -127, 127).to(torch.int8)
    return q, scale
# %%
check("11.2", quantize_int8)
# %% [markdown] id="c28"
# **Exercise 11.3 (implement: magnitude pruning).** Write `prune_mask(w, sparsity)`: a boolean tensor of `w`'s shape,
# `False` at the `round(sparsity * w.numel())` weights of smallest $|w|$ (ranked over the whole tensor) and `True`
# elsewhere — what `torch.nn.utils.prune.l1_unstructured` stores as `weight_mask`.
# %% tags=["solution"]
def prune_mask(w, sparsity):
    k = round(sparsity * w.numel())
    mask = torch.ones(w.numel(), dtype=torch.bool)
    if k > 0:
        smallest = w.abs().flatten().argsort()[:k]
        mask[smallest] = False
    return mask.reshape(w.shape)
# %%
check("11.3", prune_mask)
# %% [markdown] id="c31"
# **Exercise 11.4 (implement: the distillation term).** Write `soft_target_loss(student_logits, teacher_logits, T)`:
# for each example (row) the soft-target term $T^2\,\mathrm{KL}(p_t^T \,\|\, p_s^T)$ with
# $p^T = \mathrm{softmax}(z/T)$ — one number per example (shape `(n,)`, no mean). It must stay finite for logits of
# $\pm 200$. (`C.distillation_loss` averages this over the batch and mixes in the hard-label loss.)
# %% tags=["solution"]
def soft_target_loss(student_logits, teacher_logits, T):
    log_ps = torch.log_softmax(student_logits / T, dim=-1)
    log_pt = torch.log_softmax(teacher_logits / T, dim=-1)
    return T * T * (log_pt.exp() * (log_pt - log_ps)).sum(dim=-1)
# %%
check("11.4", soft_target_loss)
