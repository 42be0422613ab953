"""Lesson 07: its exercises accept right answers on fresh inputs and name the case a typical mistake fails;
kit's LSTM step equals nn.LSTM; the RNN and the LSTM train for the same number of steps."""
import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from kit.exercises import exercises, verdict
from kit.models.rnn import lstm_step, lstm_unroll

SRC = Path(__file__).resolve().parents[1] / "notebooks" / "src" / "07_rnn_language_model.py"


# ------------------------------------------------------------------ right answers (as a learner writes them)
def uniform_model_loss(V):
    return math.log(V)


def perplexity_from_logprobs(logp):
    return math.exp(-float(logp.mean()))


def rnn_step(x, h, W_xh, W_hh, b):
    return torch.tanh(x @ W_xh.T + h @ W_hh.T + b)


def lstm_step_cat(x, h, c, W, b):
    z = torch.cat([h, x], dim=-1) @ W.T + b
    i, f, g, o = z.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


RIGHT = {"07.1": uniform_model_loss, "07.2": perplexity_from_logprobs, "07.3": rnn_step, "07.4": lstm_step_cat}


def test_four_exercises_with_levelled_hints():
    ex = exercises("07")
    assert [e.id for e in ex] == ["07.1", "07.2", "07.3", "07.4"]
    assert all(2 <= len(e.hints) <= 3 for e in ex)
    assert sum(e.kind == "function" for e in ex) == 4


@pytest.mark.parametrize("id", sorted(RIGHT))
def test_right_answers_pass_on_fresh_inputs(id):
    for _ in range(5):
        assert verdict(id, RIGHT[id]) is None


def _fails_on(id, fn, case):
    why = verdict(id, fn)
    assert why is not None, f"{id}: a wrong answer passed"
    assert re.search(re.escape(case), why), why
    return why


def test_uniform_loss_mistakes():
    _fails_on("07.1", lambda V: math.log2(V), "V = ")           # bits, not nats
    _fails_on("07.1", lambda V: 1 / V, "V = ")                  # the probability, not the loss


def test_perplexity_mistakes():
    _fails_on("07.2", lambda logp: torch.exp(logp.mean()), "random log-probabilities")   # sign
    _fails_on("07.2", lambda logp: torch.exp(-logp.sum()), "random log-probabilities")   # sum, not mean
    _fails_on("07.2", lambda logp: torch.exp(-logp).mean(), "random log-probabilities")  # mean of exps


def test_rnn_step_mistakes():
    _fails_on("07.3", lambda x, h, W_xh, W_hh, b: x @ W_xh.T + h @ W_hh.T + b, "batch of")      # no tanh
    _fails_on("07.3", lambda x, h, W_xh, W_hh, b: torch.tanh(x @ W_xh.T + b), "batch of")        # forgets h
    # W without the transpose: raises on the first case (shapes differ), named in the message
    why = _fails_on("07.3", lambda x, h, W_xh, W_hh, b: torch.tanh(x @ W_xh + h @ W_hh + b), "batch of")
    assert "raised" in why


def test_lstm_step_mistakes():
    def no_tanh_on_c(x, h, c, W, b):
        i, f, g, o = (torch.cat([h, x], -1) @ W.T + b).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * c, c

    def _cat_order(x, h, c, W, b):
        i, f, g, o = (torch.cat([x, h], -1) @ W.T + b).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def swapped_gates(x, h, c, W, b):  # reads the blocks as i, f, o, g (another library's order)
        i, f, o, g = (torch.cat([h, x], -1) @ W.T + b).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def ignores_forget(x, h, c, W, b):
        i, f, g, o = (torch.cat([h, x], -1) @ W.T + b).chunk(4, -1)
        c = c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    _fails_on("07.4", no_tanh_on_c, "batch of")
    _fails_on("07.4", _cat_order, "batch of")
    _fails_on("07.4", swapped_gates, "batch of")
    _fails_on("07.4", ignores_forget, "batch of")
    # a step that is only right when nothing saturates is caught by the saturated case
    def leaky_input(x, h, c, W, b):
        i, f, g, o = (torch.cat([h, x], -1) @ W.T + b).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.tanh(g) * torch.sigmoid(i).clamp(min=1e-3)
        return torch.sigmoid(o) * torch.tanh(c), c
    _fails_on("07.4", leaky_input, "saturated gates: forget open, input shut")


# ------------------------------------------------------------------ the teaching fixes
def test_kit_lstm_step_equals_nn_lstm():
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 7, batch_first=True)
    x = torch.randn(3, 11, 5)
    h0, c0 = torch.randn(1, 3, 7), torch.randn(1, 3, 7)
    ref, (hT, cT) = lstm(x, (h0, c0))
    ours, (h, c) = lstm_unroll(lstm, x, (h0, c0))
    assert (ours - ref).abs().max() < 1e-6 and (h - hT).abs().max() < 1e-6 and (c - cT).abs().max() < 1e-6
    lstm = lstm.double()
    x = x.double()
    ref, (hT, cT) = lstm(x)
    ours, (h, c) = lstm_unroll(lstm, x)
    assert (ours - ref).abs().max() < 1e-12 and (c - cT).abs().max() < 1e-12
    # one step by hand with nn.LSTMCell's weights too
    cell = nn.LSTMCell(5, 7).double()
    hc = (torch.randn(3, 7, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64))
    want = cell(x[:, 0], hc)
    got = lstm_step(x[:, 0], *hc, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    assert all((g - w).abs().max() < 1e-12 for g, w in zip(got, want))


def test_lstm_unroll_refuses_what_it_cannot_copy():
    with pytest.raises(ValueError):
        lstm_unroll(nn.LSTM(3, 4, num_layers=2, batch_first=True), torch.zeros(1, 2, 3))


def test_rnn_and_lstm_train_for_the_same_number_of_steps():
    src = SRC.read_text()
    assert "rnn_steps" not in src
    calls = re.findall(r"train_lm\((\w+), train_ids, val_ids, steps=(\w+)", src)
    assert [m for m, _ in calls] == ["rnn", "lstm"] and len({s for _, s in calls}) == 1, calls


def test_cell_path_jacobian_is_the_forget_gate():
    """The lesson's claim: with h_{t−1} and x_t fixed, ∂c_t/∂c_{t−1} = diag(f_t)."""
    torch.manual_seed(1)
    D, H = 3, 5
    W_ih, W_hh = torch.randn(4 * H, D, dtype=torch.float64), torch.randn(4 * H, H, dtype=torch.float64)
    b_ih, b_hh = torch.randn(4 * H, dtype=torch.float64), torch.randn(4 * H, dtype=torch.float64)
    x, h, c = torch.randn(1, D, dtype=torch.float64), torch.randn(1, H, dtype=torch.float64), torch.randn(1, H, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda c: lstm_step(x, h, c, W_ih, W_hh, b_ih, b_hh)[1], c)[0, :, 0, :]
    f = torch.sigmoid((x @ W_ih.T + b_ih + h @ W_hh.T + b_hh)[0, H:2 * H])
    assert torch.allclose(J, torch.diag(f), atol=1e-12)
