# %% [markdown] id="c00"
# # 07 — Recurrent language models: RNN and LSTM on characters
#
# **Goals.** Build a character-level language model that reads text one character at a time and
# predicts the next one. Write the recurrence $h_t = \tanh(W_x x_t + W_h h_{t-1} + b)$ yourself (kit's
# `RNNCell`), see why its gradients vanish or explode through time, write the LSTM's gates out and check
# them against PyTorch's `nn.LSTM`, train both with **truncated backpropagation through time** and
# **gradient clipping** for the same number of steps, measure
# **perplexity**, and sample new text at different **temperatures**.
#
# **Data.** Tiny Shakespeare (1.1 MB, Karpathy's char-rnn), shipped with kit, so the lesson trains on the
# same text online and offline.
# %% tags=["parameters"]
seed = 0            # random seed
device = "auto"     # "auto", "cpu", "cuda" or "mps"
smoke = False       # tiny run for tests
steps = 1500        # training steps, the same for kit's RNN and the LSTM
hidden = 256        # recurrent state size
block_size = 64     # truncated-BPTT length: characters per chunk
batch_size = 32     # parallel text streams per step
lr = 3e-3           # AdamW learning rate (cosine schedule)
clip = 1.0          # gradient clipping: largest global gradient norm, 0 turns clipping off
temperature = 0.8   # sampling temperature for the final samples
# %%
import kit
from kit.params import Float, Int, validate

validate(globals(), steps=Int(1, 1_000_000), hidden=Int(1, 8192), block_size=Int(2, 4096), batch_size=Int(1, 4096),
         lr=Float(0, 10, lo_open=True), clip=Float(0, 1e6), temperature=Float(0, 10, lo_open=True))
dev = kit.setup(seed, device)
eval_tokens = 20_000  # validation characters per evaluation during training
if smoke:
    steps, hidden, block_size = min(steps, 100), min(hidden, 128), min(block_size, 32)
    eval_tokens = 4_000  # the ten evaluations during training are a large share of a smoke run's time
# %%
import math

import torch

import kit.data
import kit.viz as viz
import kit.viz.text as vt
from kit.models.rnn import CharRNN, RNNCell, RNNConfig, hidden_grad_norms, lstm_unroll
from kit.models.rnn import lstm_step as kit_lstm_step
from kit.models import n_params
from kit.text import (CharVocab, evaluate_lm, generate, perplexity, split_ids, stream_batches, train_lm,
                      unigram_entropy)

corpus = kit.data.load("tinyshakespeare")
text = corpus.text
vocab = CharVocab.from_text(text)
ids = vocab.encode(text)
train_ids, val_ids = split_ids(ids, 0.1)
print(f"{len(text):,} characters, {len(vocab)} distinct: {vocab}")
print(f"train {len(train_ids):,} / validation {len(val_ids):,} characters (the last 10%, not shuffled)")
print("-" * 60 + "\n" + text[:400] + "\n" + "-" * 60)
# %% [markdown] id="c04"
# ## The task and the bar to beat
# A language model gives a probability to every possible next character; its loss is the
# cross-entropy $-\log p(\text{true next character})$ averaged over the text, in nats per character.
# **Perplexity** $= e^{\text{loss}}$ is "how many characters the model is hesitating between":
# a model that guesses uniformly over the $V$ characters has loss $\log V$ and perplexity $V$.
#
# A model that ignores context and just predicts character frequencies (the *unigram* model) sets
# the bar: anything that reads the context must do better than its cross-entropy.
# %%
uniform_loss = math.log(len(vocab))
unigram = unigram_entropy(train_ids, len(vocab), eval_ids=val_ids)
print(f"uniform guess: loss {uniform_loss:.3f} nats, perplexity {perplexity(uniform_loss):.1f}")
print(f"unigram model: loss {unigram:.3f} nats, perplexity {perplexity(unigram):.1f}")
# %% [markdown] id="c06"
# ## The recurrence, in code
# A recurrent network keeps a state $h_t$ that summarises everything read so far. Each step mixes the
# new input with the old state through two weight matrices and a tanh:
# $$h_t = \tanh(W_x x_t + W_h h_{t-1} + b).$$
# Here is kit's cell — one step, and the loop over time (`unroll`). The input term $W_x x_t + b$ does
# not depend on $h$, so it is computed for all time steps at once; only $W_h h$ stays in the loop.
# %%
viz.source(RNNCell.forward, RNNCell.unroll)
# %%
# The same numbers, written by hand for a tiny cell: the loop is all there is to it.
torch.manual_seed(seed)
cell = RNNCell(3, 4).double()
x = torch.randn(2, 5, 3, dtype=torch.float64)
h = torch.zeros(2, 4, dtype=torch.float64)
for t in range(5):
    h = torch.tanh(x[:, t] @ cell.in_x.weight.T + h @ cell.in_h.weight.T + cell.in_x.bias)
outs, h_T = cell.unroll(x)
rnn_vs_hand = (h_T - h).abs().max().item()
print(f"kit RNNCell vs hand-written loop: max difference {rnn_vs_hand:.1e}")
assert rnn_vs_hand < 1e-12
# %% [markdown] id="c09"
# ## Why plain RNNs forget: gradients through time
# Backpropagation from a loss at the last step $T$ to an earlier state multiplies, once per step,
# by the Jacobian $\partial h_{t+1}/\partial h_t = \operatorname{diag}(\tanh')\,W_h$. Over $T-t$ steps that
# is a product of $T-t$ matrices: if $W_h$ shrinks vectors the gradient **vanishes** exponentially, if
# it stretches them it **explodes**. Below, $W_h$ is a random orthogonal matrix times a *scale*
# (all its singular values equal the scale); the curve is $\lVert \partial L/\partial h_t \rVert$ against $t$.
# %%
scales = [0.5, 1.0, 1.5, 3.0]
norms = {f"scale {s}": hidden_grad_norms(s, steps=60, hidden=64, seed=seed) for s in scales}
norms["scale 1.0, no tanh"] = hidden_grad_norms(1.0, steps=60, hidden=64, nonlinearity="linear", seed=seed)
viz.show(vt.grad_norms_through_time(norms, title="‖∂L/∂hₜ‖ with the loss at step 60: vanishing (scale ≤ 1) and exploding (scale 3)"))
vanish_ratio = norms["scale 0.5"][0] / norms["scale 0.5"][-1]
explode_ratio = norms["scale 3.0"][0] / norms["scale 3.0"][-1]
print(f"gradient at t=1 relative to t=60: scale 0.5 → {vanish_ratio:.1e}, scale 3.0 → {explode_ratio:.1e}")
# %% [markdown] id="c11"
# Two cures, both used below:
# * **Gradient clipping** stops the explosions: if the global gradient norm exceeds a threshold
#   $c$, rescale it to $c$ (same direction, smaller step): $g \leftarrow g \cdot \min(1, c/\lVert g\rVert)$.
# * **Gating** (the LSTM) fights the vanishing: a separate cell state is updated *additively*,
#   so the gradient can flow through many steps when the forget gate stays near 1.
#
# ## The LSTM, gate by gate
# An LSTM carries two vectors, the output $h_t$ and the cell $c_t$. From the input $x_t$ and the previous
# output $h_{t-1}$ it computes four gates ($\sigma$ is the logistic sigmoid, $\odot$ the element-wise product):
# $$\begin{aligned}
# i_t &= \sigma(W_{ii} x_t + W_{hi} h_{t-1} + b_i) &&\text{input gate: how much of the candidate to write}\\
# f_t &= \sigma(W_{if} x_t + W_{hf} h_{t-1} + b_f) &&\text{forget gate: how much of the old cell to keep}\\
# g_t &= \tanh(W_{ig} x_t + W_{hg} h_{t-1} + b_g) &&\text{candidate values}\\
# o_t &= \sigma(W_{io} x_t + W_{ho} h_{t-1} + b_o) &&\text{output gate: how much of the cell to show}\\
# c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
# h_t &= o_t \odot \tanh(c_t).
# \end{aligned}$$
# Along the cell's own path, $\partial c_t/\partial c_{t-1} = \operatorname{diag}(f_t)$: backpropagating from
# $c_t$ to $c_{t-1}$ multiplies by the forget gate only — no weight matrix, no $\tanh'$ — which is why the
# cell can carry a gradient across many steps while $f_t$ stays near 1. kit's `lstm_step` is these six lines,
# with the four $W_{i\cdot}$ (and $W_{h\cdot}$) stacked in one matrix as `nn.LSTM` stores them (order i, f, g, o);
# run over a sequence with `nn.LSTM`'s own weights, it gives the same numbers as PyTorch's fused LSTM:
# %%
viz.source(kit_lstm_step)
torch.manual_seed(seed)
torch_lstm = torch.nn.LSTM(3, 4, batch_first=True).double()
x = torch.randn(2, 9, 3, dtype=torch.float64)
ours, (h_ours, c_ours) = lstm_unroll(torch_lstm, x)
with torch.no_grad():
    ref, (h_ref, c_ref) = torch_lstm(x)
lstm_vs_torch = max((ours - ref).abs().max().item(), (c_ours - c_ref).abs().max().item())
print(f"kit lstm_step over 9 steps vs torch.nn.LSTM (same weights): max difference {lstm_vs_torch:.1e}")
assert lstm_vs_torch < 1e-12
# %% [markdown] id="c13"
# ## Truncated backpropagation through time
# The text is cut into `batch_size` long streams read side by side; each training step takes the next
# `block_size` characters of every stream. The state is carried from one chunk to the next (the model
# keeps its memory), but it is **detached**: gradients only flow back `block_size` steps.
# %%
chunks = stream_batches(train_ids, batch_size, block_size)
(x0, y0), (x1, _) = next(chunks), next(chunks)
for b in range(2):
    print(f"stream {b}: chunk 0 = {vocab.decode(x0[b])!r}\n          chunk 1 = {vocab.decode(x1[b])!r}")
print(f"targets are the inputs shifted by one: {vocab.decode(x0[0, :20])!r} → {vocab.decode(y0[0, :20])!r}")
# %% [markdown] id="c15"
# ## Training kit's RNN and an LSTM
# Both models are `embedding → recurrence → linear head`; `kit.text.train_lm` runs the loop (AdamW with
# a cosine schedule, clipping, truncated BPTT, periodic validation). For a fair comparison both get the same
# number of steps, so they see the same characters in the same order; the LSTM has more parameters (four
# gates instead of one tanh layer; printed below) and its own speed per step (printed after training).
# The RNN steps through time in a Python loop; the LSTM uses PyTorch's fused `nn.LSTM`.
# %%
viz.source(train_lm)
# %%
def make(cell):
    torch.manual_seed(seed)  # same initial embedding and head for both
    return CharRNN(RNNConfig(len(vocab), n_embd=64, hidden=hidden, cell=cell))

common = dict(block_size=block_size, batch_size=batch_size, lr=lr, clip_grad=clip or None, device=dev,
              seed=seed, eval_tokens=eval_tokens)
rnn = make("rnn")
print(f"RNN: {n_params(rnn):,} parameters")
rnn_run = train_lm(rnn, train_ids, val_ids, steps=steps, eval_every=max(1, steps // 10),
                   title="kit RNN", **common)
lstm = make("lstm")
print(f"LSTM: {n_params(lstm):,} parameters")
lstm_run = train_lm(lstm, train_ids, val_ids, steps=steps, eval_every=max(1, steps // 10), live=True,
                    title="LSTM", **common)
# %%
viz.show(vt.lm_curves({"kit RNN (validation)": rnn_run.history, "LSTM (validation)": lstm_run.history},
                      title="validation loss", baselines={"unigram": unigram, "uniform": uniform_loss}))
fig = viz.compare_curves({"RNN": rnn_run.history["grad_norm"], "LSTM": lstm_run.history["grad_norm"]},
                         title="mean gradient norm before clipping (per evaluation period)", yaxis="‖g‖",
                         xaxis="evaluation period", log_y=True)
if clip:
    fig.add_hline(y=clip, line_dash="dot", annotation_text=f"clip at {clip}")
viz.show(fig);
# %% [markdown] id="c19"
# ## Perplexity on the whole validation text
# %%
eval_max = 20_000 if smoke else None  # the full validation text in a real run
val_loss_rnn = evaluate_lm(rnn, val_ids, block_size, device=dev, max_tokens=eval_max)
val_loss_lstm = evaluate_lm(lstm, val_ids, block_size, device=dev, max_tokens=eval_max)
table = {"uniform": uniform_loss, "unigram": unigram, "kit RNN": val_loss_rnn, "LSTM": val_loss_lstm}
for name, loss in table.items():
    print(f"{name:>8}: {loss:.3f} nats/char   perplexity {perplexity(loss):6.2f}")
viz.show(viz.bar({k: perplexity(v) for k, v in table.items()}, title="validation perplexity (lower is better)",
                 yaxis="perplexity"))
print(f"training speed: RNN {rnn_run.tokens_per_s:,.0f} chars/s, LSTM {lstm_run.tokens_per_s:,.0f} chars/s")
from IPython.display import Markdown, display

better, worse = ("LSTM", "kit RNN") if val_loss_lstm < val_loss_rnn else ("kit RNN", "LSTM")
display(Markdown(
    f"**Same budget of steps.** After {steps:,} steps each ({steps * batch_size * block_size:,} training characters), "
    f"the {better} reaches validation perplexity {perplexity(min(val_loss_lstm, val_loss_rnn)):.2f} and the {worse} "
    f"{perplexity(max(val_loss_lstm, val_loss_rnn)):.2f} (unigram bar: {perplexity(unigram):.2f}). "
    f"The LSTM has {n_params(lstm):,} parameters, the RNN {n_params(rnn):,}; in wall-clock time the RNN took "
    f"{rnn_run.seconds:.0f} s and the LSTM {lstm_run.seconds:.0f} s on this machine."))
# %% [markdown] id="c21"
# ## Sampling with temperature
# To generate, feed a prompt, then repeatedly sample the next character from
# $\operatorname{softmax}(\text{logits}/\tau)$ and feed it back. The **temperature** $\tau$ reshapes the
# distribution: $\tau<1$ sharpens it (safer, more repetitive), $\tau>1$ flattens it (more surprising,
# more mistakes), $\tau\to0$ is greedy. Move the slider to see the next-character distribution after
# the prompt change.
# %%
import ipywidgets as w

val_text = text[len(train_ids):]
start = val_text.find("\n\n", 200) + 2  # a prompt from the validation text, starting at a paragraph
prompt = val_text[start: start + 60].rsplit(" ", 1)[0] + " "
with torch.no_grad():
    lstm.eval()
    last_logits = lstm(vocab.encode(prompt).to(dev)[None])[0][0, -1].float().cpu()

def next_char_fig(temperature):
    p = (last_logits / temperature).softmax(-1).numpy()
    return vt.next_token_bars(p, vocab.itos, title=f"next character after {prompt[-25:]!r} at temperature {temperature:.2f}")

viz.slider_plot(next_char_fig, temperature=w.FloatSlider(value=1.0, min=0.1, max=3.0, step=0.1, description="temperature"));
# %%
gen = torch.Generator(device=dev).manual_seed(seed)
samples = {}
for tau in (0.5, temperature, 1.5):
    out = generate(lstm, vocab.encode(prompt), 300, temperature=tau, generator=gen)
    samples[f"LSTM, temperature {tau}"] = vocab.decode(out)
out = generate(rnn, vocab.encode(prompt), 300, temperature=temperature, generator=gen)
samples[f"kit RNN, temperature {temperature}"] = vocab.decode(out)
vt.text_samples(samples, title=f"samples after the prompt {prompt!r}")
# %%
kit.save_metrics({"val_loss": val_loss_lstm, "perplexity": perplexity(val_loss_lstm),
                  "val_loss_lstm": val_loss_lstm, "perplexity_lstm": perplexity(val_loss_lstm),
                  "val_loss_rnn": val_loss_rnn, "perplexity_rnn": perplexity(val_loss_rnn),
                  "unigram_val_loss": unigram, "uniform_loss": uniform_loss, "vocab_size": len(vocab),
                  "grad_ratio_scale_0.5": vanish_ratio, "grad_ratio_scale_3": explode_ratio,
                  "rnn_vs_hand": rnn_vs_hand, "lstm_vs_torch": lstm_vs_torch, "steps_each": steps},
                 timing={"tokens_per_s_lstm": lstm_run.tokens_per_s, "tokens_per_s_rnn": rnn_run.tokens_per_s,
                         "seconds_lstm": lstm_run.seconds, "seconds_rnn": rnn_run.seconds},
                 params={"device": str(dev), "data": corpus.source})
# %% [markdown] id="c25"
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("07.3", 2)` shows the next hint.
#
# **Exercise 07.1 (warm-up).** Write `uniform_model_loss(V)`: the cross-entropy, in nats per character, of a
# model that gives each of $V$ characters the same probability, whatever the text.
# %% tags=["solution"]
def uniform_model_loss(V):
    return math.log(V)
# %%
from kit.exercises import check, hint
check("07.1", uniform_model_loss)
# %% [markdown] id="c28"
# **Exercise 07.2 (perplexity).** A model read $n$ characters and gave the true next character the
# probability $p_1, \dots, p_n$. Write `perplexity_from_logprobs(logp)`: given the tensor of
# $\log p_t$ (natural log, shape `(n,)`), return the perplexity of the model on those characters.
# %% tags=["solution"]
def perplexity_from_logprobs(logp):
    return torch.exp(-logp.mean())
# %%
check("07.2", perplexity_from_logprobs)
# %% [markdown] id="c31"
# **Exercise 07.3 (implement: the recurrence).** Write `rnn_step(x, h, W_xh, W_hh, b)`: one step
# $h_t = \tanh(W_{xh} x_t + W_{hh} h_{t-1} + b)$ for a batch. `x` is `(B, D)` and `h` is `(B, H)` (one row
# per example); `W_xh` is `(H, D)`, `W_hh` is `(H, H)` (the shapes of `nn.Linear` weights) and `b` is `(H,)`.
# %% tags=["solution"]
def rnn_step(x, h, W_xh, W_hh, b):
    return torch.tanh(x @ W_xh.T + h @ W_hh.T + b)
# %%
check("07.3", rnn_step)
# %% [markdown] id="c34"
# **Exercise 07.4 (implement: the LSTM step).** Many textbooks write the LSTM with one matrix acting on the
# concatenation $[h_{t-1}; x_t]$ (the previous output first): $z = W [h_{t-1}; x_t] + b$, with `W` of shape
# `(4H, H + D)` and `b` of shape `(4H,)`; the four blocks of $H$ rows of $z$ are the pre-activations of the
# gates $i, f, g, o$, in that order. Write `lstm_step(x, h, c, W, b)` returning the pair `(h_t, c_t)`, using
# the gate equations above. Kit checks it on fresh inputs, including the first step ($h = c = 0$) and
# saturated gates.
# %% tags=["solution"]
def lstm_step(x, h, c, W, b):
    z = torch.cat([h, x], dim=-1) @ W.T + b
    zi, zf, zg, zo = z.chunk(4, dim=-1)
    c = torch.sigmoid(zf) * c + torch.sigmoid(zi) * torch.tanh(zg)
    return torch.sigmoid(zo) * torch.tanh(c), c
# %%
check("07.4", lstm_step)
