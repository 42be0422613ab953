# %% [md]
# # 07 — Recurrent language models: RNN and LSTM on characters

**Goals.** Build a character-level language model that reads text one character at a time and
predicts the next one. Write the recurrence $h_t = \tanh(W_x x_t + W_h h_{t-1} + b)$ yourself (kit's
`RNNCell`), see why its gradients vanish or explode through time, train it with **truncated
backpropagation through time** and **gradient clipping**, compare it with an LSTM, measure
**perplexity**, and sample new text at different **temperatures**.

**Data.** Tiny Shakespeare (1.1 MB, Karpathy's char-rnn), shipped with kit, so the lesson trains on the
same text online and offline.
# %% [code] parameters
seed = 0            # random seed
device = "auto"     # "auto", "cpu", "cuda" or "mps"
smoke = False       # tiny run for tests
steps = 2000        # LSTM training steps
rnn_steps = 1000    # training steps for kit's plain RNN (a Python loop over time, so fewer)
hidden = 256        # recurrent state size
block_size = 64     # truncated-BPTT length: characters per chunk
batch_size = 32     # parallel text streams per step
lr = 3e-3           # AdamW learning rate (cosine schedule)
clip = 1.0          # gradient clipping: largest global gradient norm, 0 turns clipping off
temperature = 0.8   # sampling temperature for the final samples
# %% [code]
import kit
from kit.params import Float, Int, validate

validate(globals(), steps=Int(1, 1_000_000),
         rnn_steps=Int(1, 1_000_000), hidden=Int(1, 8192), block_size=Int(2, 4096), batch_size=Int(1, 4096),
         lr=Float(0, 10, lo_open=True), clip=Float(0, 1e6), temperature=Float(0, 10, lo_open=True))
dev = kit.setup(seed, device)
eval_tokens = 20_000  # validation characters per evaluation during training
if smoke:
    steps, rnn_steps, hidden, block_size = min(steps, 100), min(rnn_steps, 80), min(hidden, 128), min(block_size, 64)
    eval_tokens = 10_000
# %% [code]
import math

import torch
import torch.nn.functional as F

import kit.data
import kit.viz as viz
import kit.viz.text as vt
from kit.models.rnn import CharRNN, RNNCell, RNNConfig, hidden_grad_norms
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
# %% [md]
# ## The task and the bar to beat
# A language model gives a probability to every possible next character; its loss is the
# cross-entropy $-\log p(\text{true next character})$ averaged over the text, in nats per character.
# **Perplexity** $= e^{\text{loss}}$ is "how many characters the model is hesitating between":
# a model that guesses uniformly over the $V$ characters has loss $\log V$ and perplexity $V$.
#
# A model that ignores context and just predicts character frequencies (the *unigram* model) sets
# the bar: anything that reads the context must do better than its cross-entropy.
# %% [code]
uniform_loss = math.log(len(vocab))
unigram = unigram_entropy(train_ids, len(vocab), eval_ids=val_ids)
print(f"uniform guess: loss {uniform_loss:.3f} nats, perplexity {perplexity(uniform_loss):.1f}")
print(f"unigram model: loss {unigram:.3f} nats, perplexity {perplexity(unigram):.1f}")
# %% [md]
# ## The recurrence, in code
# A recurrent network keeps a state $h_t$ that summarises everything read so far. Each step mixes the
# new input with the old state through two weight matrices and a tanh:
# $$h_t = \tanh(W_x x_t + W_h h_{t-1} + b).$$
# Here is kit's cell — one step, and the loop over time (`unroll`). The input term $W_x x_t + b$ does
# not depend on $h$, so it is computed for all time steps at once; only $W_h h$ stays in the loop.
# %% [code]
viz.source(RNNCell.forward, RNNCell.unroll)
# %% [code]
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
# %% [md]
# ## Why plain RNNs forget: gradients through time
# Backpropagation from a loss at the last step $T$ to an earlier state multiplies, once per step,
# by the Jacobian $\partial h_{t+1}/\partial h_t = \operatorname{diag}(\tanh')\,W_h$. Over $T-t$ steps that
# is a product of $T-t$ matrices: if $W_h$ shrinks vectors the gradient **vanishes** exponentially, if
# it stretches them it **explodes**. Below, $W_h$ is a random orthogonal matrix times a *scale*
# (all its singular values equal the scale); the curve is $\lVert \partial L/\partial h_t \rVert$ against $t$.
# %% [code]
scales = [0.5, 1.0, 1.5, 3.0]
norms = {f"scale {s}": hidden_grad_norms(s, steps=60, hidden=64, seed=seed) for s in scales}
norms["scale 1.0, no tanh"] = hidden_grad_norms(1.0, steps=60, hidden=64, nonlinearity="linear", seed=seed)
viz.show(vt.grad_norms_through_time(norms, title="‖∂L/∂hₜ‖ with the loss at step 60: vanishing (scale ≤ 1) and exploding (scale 3)"))
vanish_ratio = norms["scale 0.5"][0] / norms["scale 0.5"][-1]
explode_ratio = norms["scale 3.0"][0] / norms["scale 3.0"][-1]
print(f"gradient at t=1 relative to t=60: scale 0.5 → {vanish_ratio:.1e}, scale 3.0 → {explode_ratio:.1e}")
# %% [md]
# Two cures, both used below:
# * **Gradient clipping** stops the explosions: if the global gradient norm exceeds a threshold
#   $c$, rescale it to $c$ (same direction, smaller step): $g \leftarrow g \cdot \min(1, c/\lVert g\rVert)$.
# * **Gating** (the LSTM) fights the vanishing: a separate cell state is updated *additively*,
#   $c_t = f_t \odot c_{t-1} + i_t \odot \tilde c_t$, so the gradient can flow through many steps when the
#   forget gate $f_t$ stays near 1.
#
# ## Truncated backpropagation through time
# The text is cut into `batch_size` long streams read side by side; each training step takes the next
# `block_size` characters of every stream. The state is carried from one chunk to the next (the model
# keeps its memory), but it is **detached**: gradients only flow back `block_size` steps.
# %% [code]
chunks = stream_batches(train_ids, batch_size, block_size)
(x0, y0), (x1, _) = next(chunks), next(chunks)
for b in range(2):
    print(f"stream {b}: chunk 0 = {vocab.decode(x0[b])!r}\n          chunk 1 = {vocab.decode(x1[b])!r}")
print(f"targets are the inputs shifted by one: {vocab.decode(x0[0, :20])!r} → {vocab.decode(y0[0, :20])!r}")
# %% [md]
# ## Training kit's RNN and an LSTM
# Both models are `embedding → recurrence → linear head`; `kit.text.train_lm` runs the loop (AdamW with
# a cosine schedule, clipping, truncated BPTT, periodic validation). The RNN steps through time in a
# Python loop; the LSTM uses PyTorch's fused `nn.LSTM` — much faster per character.
# %% [code]
viz.source(train_lm)
# %% [code]
def make(cell):
    torch.manual_seed(seed)  # same initial embedding and head for both
    return CharRNN(RNNConfig(len(vocab), n_embd=64, hidden=hidden, cell=cell))

common = dict(block_size=block_size, batch_size=batch_size, lr=lr, clip_grad=clip or None, device=dev,
              seed=seed, eval_tokens=eval_tokens)
rnn = make("rnn")
print(f"RNN: {n_params(rnn):,} parameters")
rnn_run = train_lm(rnn, train_ids, val_ids, steps=rnn_steps, eval_every=max(1, rnn_steps // 10),
                   title="kit RNN", **common)
lstm = make("lstm")
print(f"LSTM: {n_params(lstm):,} parameters")
lstm_run = train_lm(lstm, train_ids, val_ids, steps=steps, eval_every=max(1, steps // 10), live=True,
                    title="LSTM", **common)
# %% [code]
viz.show(vt.lm_curves({"kit RNN (validation)": rnn_run.history, "LSTM (validation)": lstm_run.history},
                      title="validation loss", baselines={"unigram": unigram, "uniform": uniform_loss}))
fig = viz.compare_curves({"RNN": rnn_run.history["grad_norm"], "LSTM": lstm_run.history["grad_norm"]},
                         title="mean gradient norm before clipping (per evaluation period)", yaxis="‖g‖",
                         xaxis="evaluation period", log_y=True)
if clip:
    fig.add_hline(y=clip, line_dash="dot", annotation_text=f"clip at {clip}")
viz.show(fig);
# %% [md]
# ## Perplexity on the whole validation text
# %% [code]
eval_max = 20_000 if smoke else None  # the full validation text in a real run
val_loss_rnn = evaluate_lm(rnn, val_ids, block_size, device=dev, max_tokens=eval_max)
val_loss_lstm = evaluate_lm(lstm, val_ids, block_size, device=dev, max_tokens=eval_max)
table = {"uniform": uniform_loss, "unigram": unigram, "kit RNN": val_loss_rnn, "LSTM": val_loss_lstm}
for name, loss in table.items():
    print(f"{name:>8}: {loss:.3f} nats/char   perplexity {perplexity(loss):6.2f}")
viz.show(viz.bar({k: perplexity(v) for k, v in table.items()}, title="validation perplexity (lower is better)",
                 yaxis="perplexity"))
print(f"training speed: RNN {rnn_run.tokens_per_s:,.0f} chars/s, LSTM {lstm_run.tokens_per_s:,.0f} chars/s")
# %% [md]
# ## Sampling with temperature
# To generate, feed a prompt, then repeatedly sample the next character from
# $\operatorname{softmax}(\text{logits}/\tau)$ and feed it back. The **temperature** $\tau$ reshapes the
# distribution: $\tau<1$ sharpens it (safer, more repetitive), $\tau>1$ flattens it (more surprising,
# more mistakes), $\tau\to0$ is greedy. Move the slider to see the next-character distribution after
# the prompt change.
# %% [code]
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
# %% [code]
gen = torch.Generator(device=dev).manual_seed(seed)
samples = {}
for tau in (0.5, temperature, 1.5):
    out = generate(lstm, vocab.encode(prompt), 300, temperature=tau, generator=gen)
    samples[f"LSTM, temperature {tau}"] = vocab.decode(out)
out = generate(rnn, vocab.encode(prompt), 300, temperature=temperature, generator=gen)
samples[f"kit RNN, temperature {temperature}"] = vocab.decode(out)
vt.text_samples(samples, title=f"samples after the prompt {prompt!r}")
# %% [code]
kit.save_metrics({"val_loss": val_loss_lstm, "perplexity": perplexity(val_loss_lstm),
                  "val_loss_lstm": val_loss_lstm, "perplexity_lstm": perplexity(val_loss_lstm),
                  "val_loss_rnn": val_loss_rnn, "perplexity_rnn": perplexity(val_loss_rnn),
                  "unigram_val_loss": unigram, "uniform_loss": uniform_loss, "vocab_size": len(vocab),
                  "grad_ratio_scale_0.5": vanish_ratio, "grad_ratio_scale_3": explode_ratio,
                  "rnn_vs_hand": rnn_vs_hand},
                 timing={"tokens_per_s_lstm": lstm_run.tokens_per_s, "tokens_per_s_rnn": rnn_run.tokens_per_s,
                         "seconds_lstm": lstm_run.seconds, "seconds_rnn": rnn_run.seconds},
                 params={"device": str(dev), "data": corpus.source})
# %% [md]
# ## Exercises
# **Exercise 1.** A model that gives every one of the $V$ characters the same probability: what is its
# cross-entropy (in nats) on any text? Write it using `len(vocab)`.
# %% [code] solution
answer_1 = math.log(len(vocab))
# %% [code]
from kit.checks import expect_close
_uniform = F.cross_entropy(torch.zeros(len(val_ids[:1000]), len(vocab)), val_ids[:1000]).item()
expect_close("Exercise 1", answer_1, _uniform, hint="p = 1/V for every character, and the loss is −log p.")
# %% [md]
# **Exercise 2.** A scalar RNN has $w_x = 0.5$, $w_h = -1$, $b = 0.1$ and starts from $h_0 = 0$.
# Compute $h_2$ by hand for the inputs $x_1 = 1$, $x_2 = 2$ (use `math.tanh`).
# %% [code] solution
answer_2 = math.tanh(0.5 * 2 + (-1) * math.tanh(0.5 * 1 + 0.1) + 0.1)
# %% [code]
_cell = RNNCell(1, 1).double()
with torch.no_grad():
    _cell.in_x.weight.fill_(0.5); _cell.in_x.bias.fill_(0.1); _cell.in_h.weight.fill_(-1.0)
_h2 = _cell.unroll(torch.tensor([[[1.0], [2.0]]], dtype=torch.float64))[1].item()
expect_close("Exercise 2", answer_2, _h2, atol=1e-9, hint="h₁ = tanh(0.5·1 + 0.1); then h₂ = tanh(0.5·2 − h₁ + 0.1).")
