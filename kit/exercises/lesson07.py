"""Lesson 07 exercises: recurrent language models (loss of a uniform guess, perplexity, the RNN and LSTM steps)."""
from __future__ import annotations

import math

import torch

from kit.exercises import Case, function, randn as _t
from kit.models.rnn import lstm_step as _kit_lstm_step
from kit.exercises.declare import Budget, Headline, LessonEntry


# ------------------------------------------------------------------ 07.1 the uniform model's loss
def _uniform_cases(rng):
    V = int(rng.integers(2, 500))
    yield Case(f"V = {V} characters", (V,))
    yield Case("V = 65 (tiny-shakespeare's alphabet)", (65,))
    yield Case("V = 2 (a coin)", (2,))
    yield Case("V = 1 (only one possible character)", (1,))
    yield Case("V = 50 000 (a word vocabulary)", (50_000,))


function("07.1", "the cross-entropy (nats per character) of a model that guesses uniformly over V characters",
         reference=lambda V: math.log(V), cases=_uniform_cases, atol=1e-9,
         hints=("Every character gets the same probability p; the loss of one character is −log p.",
                "With V characters, p = 1/V whatever the text says. Use the natural log (nats), not log₂."))


# ------------------------------------------------------------------ 07.2 perplexity from log-probabilities
def _logp(rng, n, V):
    logits = rng.normal(size=(n, V)) * 2
    logp = logits - logits.max(1, keepdims=True)
    logp -= torch.logsumexp(torch.tensor(logp), 1, keepdim=True).numpy()
    return torch.tensor(logp[range(n), rng.integers(0, V, n)], dtype=torch.float64)


def _perplexity_cases(rng):
    n = int(rng.integers(5, 300))
    yield Case(f"{n} random log-probabilities", (_logp(rng, n, 30),))
    yield Case("a uniform guess over 65 characters", (torch.full((40,), -math.log(65), dtype=torch.float64),))
    yield Case("a perfect model (every log p = 0)", (torch.zeros(10, dtype=torch.float64),))
    yield Case("a single character", (_logp(rng, 1, 10),))
    yield Case("one very surprising character among sure ones",
               (torch.tensor([0.0, 0.0, 0.0, -12.0], dtype=torch.float64),))


function("07.2", "perplexity from the log-probabilities the model gave to the true characters",
         reference=lambda logp: torch.exp(-logp.mean()), cases=_perplexity_cases, atol=1e-9, rtol=1e-9,
         hints=("Perplexity is e raised to the loss, and the loss is a mean over the characters.",
                "The loss of one character is −log p(true character): mind the sign, and average before "
                "exponentiating (the mean, not the sum)."))


# ------------------------------------------------------------------ 07.3 one RNN step
def _rnn_ref(x, h, W_xh, W_hh, b):
    return torch.tanh(x @ W_xh.T + h @ W_hh.T + b)


def _rnn_args(rng, B, D, H, scale=1.0, zero_h=False):
    h = torch.zeros(B, H, dtype=torch.float64) if zero_h else _t(rng, B, H).tanh()
    return (_t(rng, B, D), h, _t(rng, H, D, scale=scale / math.sqrt(D)), _t(rng, H, H, scale=scale / math.sqrt(H)),
            _t(rng, H, scale=0.1))


def _rnn_cases(rng):
    B, D, H = int(rng.integers(2, 9)), int(rng.integers(2, 12)), int(rng.integers(2, 12))
    if D == H:
        D += 1
    yield Case(f"a batch of {B}, input size {D}, hidden size {H}", _rnn_args(rng, B, D, H))
    yield Case("the first step (h = 0)", _rnn_args(rng, 3, 5, 4, zero_h=True))
    yield Case("square weights (input size = hidden size = 6)", _rnn_args(rng, 4, 6, 6))
    yield Case("one example", _rnn_args(rng, 1, 3, 7))
    yield Case("large weights (a saturated tanh)", _rnn_args(rng, 3, 4, 5, scale=50.0))


function("07.3", "one step of the RNN: h_t = tanh(W_xh x_t + W_hh h_{t−1} + b) on a batch",
         reference=_rnn_ref, cases=_rnn_cases, atol=1e-10,
         hints=("Rows are examples: x is (B, D) and h is (B, H), while W_xh is (H, D) like an nn.Linear weight.",
                "For a batch of row vectors, W x becomes x @ Wᵀ. Add both products and the bias, then squash."))


# ------------------------------------------------------------------ 07.4 one LSTM step, textbook layout
def _lstm_ref(x, h, c, W, b):
    """[h; x] convention: W (4H, H + D) multiplies the concatenation of h_{t−1} and x_t; gates i, f, g, o."""
    H = h.shape[-1]
    return _kit_lstm_step(x, h, c, W[:, H:], W[:, :H], b, torch.zeros_like(b))


def _lstm_args(rng, B, D, H, zero_state=False, bias=None):
    if zero_state:
        h, c = torch.zeros(B, H, dtype=torch.float64), torch.zeros(B, H, dtype=torch.float64)
    else:
        h, c = _t(rng, B, H).tanh(), _t(rng, B, H)
    b = _t(rng, 4 * H, scale=0.5) if bias is None else bias
    return (_t(rng, B, D), h, c, _t(rng, 4 * H, H + D, scale=1 / math.sqrt(H + D)), b)


def _saturated_bias(H, i, f, g, o):
    return torch.cat([torch.full((H,), float(v), dtype=torch.float64) for v in (i, f, g, o)])


def _lstm_cases(rng):
    B, D, H = int(rng.integers(2, 7)), int(rng.integers(2, 10)), int(rng.integers(2, 8))
    if D == H:
        D += 1
    yield Case(f"a batch of {B}, input size {D}, hidden size {H}", _lstm_args(rng, B, D, H))
    yield Case("the first step (h = c = 0)", _lstm_args(rng, 3, 4, 5, zero_state=True))
    yield Case("saturated gates: forget open, input shut (c_t = c_{t−1})",
               _lstm_args(rng, 3, 4, 5, bias=_saturated_bias(5, -40, 40, 0, 40)))
    yield Case("saturated gates: forget shut, input open, output shut",
               _lstm_args(rng, 2, 3, 4, bias=_saturated_bias(4, 40, -40, 0, -40)))
    yield Case("one example, hidden size 1", _lstm_args(rng, 1, 3, 1))


function("07.4", "one LSTM step with W acting on the concatenation [h_{t−1}; x_t], gates in the order i, f, g, o",
         reference=_lstm_ref, cases=_lstm_cases, atol=1e-10,
         hints=("Compute all four gates' pre-activations with one product: concatenate h and x along the "
                "feature axis (h first), then split the 4H results into four blocks of H.",
                "Three gates use the sigmoid, the candidate g uses tanh. Return a pair (h_t, c_t).",
                "c_t mixes the old cell and the candidate with the forget and input gates; h_t is the output gate "
                "times a squashed c_t — check the saturated cases: a shut input gate leaves c unchanged."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    # smoke run (100 steps each): both models must clearly beat the context-free unigram model,
    # and the gradient-through-time demo must show vanishing and exploding gradients; kit's RNN cell
    # equals a hand-written loop and kit's LSTM step equals torch.nn.LSTM
    return (m["val_loss_lstm"] < m["unigram_val_loss"] - 0.5
            and m["val_loss_rnn"] < m["unigram_val_loss"] - 0.4
            and abs(m["perplexity"] - 2.718281828 ** m["val_loss"]) < 1e-6 * m["perplexity"]
            and m["grad_ratio_scale_0.5"] < 1e-6 and m["grad_ratio_scale_3"] > 1e2
            and m["rnn_vs_hand"] < 1e-12 and m["lstm_vs_torch"] < 1e-12)


LESSON = LessonEntry(
    number='07', name='rnn_language_model', title='RNN and LSTM language models',
    goal='Character-level RNN and LSTM that beat the unigram model; gradients vanishing and exploding through time.',
    teaches="character-level language models: kit's own RNN cell h_t = tanh(W_x x_t + W_h h_{t−1} + b) (checked "
            "against a hand-written loop) and an LSTM with every gate written out (kit's step = `nn.LSTM`), both "
            'trained for the same steps; vanishing/exploding ‖∂L/∂h_t‖ through time; truncated BPTT, gradient '
            'clipping, perplexity vs the unigram bar; sampling with a temperature slider',
    data='tiny-shakespeare, shipped with kit (356 kB, xz; sha256 of the real file checked)',
    metrics=(
        Headline('val_loss_lstm', 'LSTM validation loss (nats/char)', 'unigram_val_loss-0.5', 'lower'),
        Headline('val_loss_rnn', 'RNN validation loss (nats/char)', 'unigram_val_loss-0.4', 'lower'),
        Headline('lstm_vs_torch', "kit's LSTM step vs nn.LSTM", 1e-12, 'lower'),
    ),
    smoke_bar=smoke_bar,
    figure='validation loss',
    budget=Budget(smoke_s=30),  # a smoke run took 17 s on a quiet 2-core machine
)
