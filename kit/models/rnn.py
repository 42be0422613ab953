"""Character-level recurrent language models: kit's own RNN cell (the recurrence in plain sight) and an LSTM.

    h_t = tanh(W_x x_t + W_h h_{t-1} + b)          (RNNCell)
    logits_t = W_out h_t                            (a linear head over the vocabulary)

    LSTM (:func:`lstm_step`, PyTorch's layout: the four gates stacked i, f, g, o):
    i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)   input gate
    f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)   forget gate
    g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg) candidate cell
    o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)   output gate
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t,   h_t = o_t ⊙ tanh(c_t)

Both models follow :mod:`kit.text`'s recurrent protocol: ``recurrent = True`` and
``forward(idx (B, T), state=None) -> (logits (B, T, V), state)``, so ``kit.text.train_lm`` trains
them with truncated backpropagation through time and ``kit.text.generate`` samples from them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class RNNConfig:
    vocab_size: int
    n_embd: int = 64          # character embedding size
    hidden: int = 256         # recurrent state size
    n_layer: int = 1
    cell: str = "lstm"        # "rnn" (kit's RNNCell, a Python loop over time) or "lstm" (nn.LSTM, fused)
    dropout: float = 0.0      # between stacked layers and before the head


class RNNCell(nn.Module):
    """One step of the Elman RNN: ``h_t = tanh(W_x x_t + W_h h_{t-1} + b)``.

    ``W_x`` (``in_x``, with the bias ``b``) and ``W_h`` (``in_h``, no bias) are ``nn.Linear`` layers.
    ``nonlinearity="linear"`` drops the tanh (used to show exploding/vanishing gradients cleanly).
    """

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh"):
        super().__init__()
        if nonlinearity not in ("tanh", "linear"):
            raise ValueError(f"parameter 'nonlinearity' must be 'tanh' or 'linear', got {nonlinearity!r}")
        self.input_size, self.hidden_size, self.nonlinearity = input_size, hidden_size, nonlinearity
        self.in_x = nn.Linear(input_size, hidden_size)               # W_x, b
        self.in_h = nn.Linear(hidden_size, hidden_size, bias=False)  # W_h
        bound = 1 / math.sqrt(hidden_size)  # the same initialisation as torch.nn.RNN
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def act(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z) if self.nonlinearity == "tanh" else z

    def forward(self, x_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One time step: ``x_t`` (B, input_size), ``h`` (B, hidden) → the new ``h`` (B, hidden)."""
        return self.act(self.in_x(x_t) + self.in_h(h))

    def unroll(self, x: torch.Tensor, h: torch.Tensor | None = None, keep: list | None = None):
        """Run over a sequence ``x`` (B, T, input_size) from ``h`` (zeros if ``None``).

        Returns ``(outputs (B, T, hidden), h_T)``. ``W_x x_t + b`` is computed for all steps in one
        matrix product; only ``W_h h`` is inside the loop. If ``keep`` is a list, every ``h_t`` is
        appended to it (still in the graph: call ``retain_grad()`` on them to study gradients).
        """
        B, T, _ = x.shape
        if h is None:
            h = x.new_zeros(B, self.hidden_size)
        zx = self.in_x(x)  # (B, T, hidden)
        outs = []
        for t in range(T):
            h = self.act(zx[:, t] + self.in_h(h))
            outs.append(h)
            if keep is not None:
                keep.append(h)
        return torch.stack(outs, 1), h


def lstm_step(x_t: torch.Tensor, h: torch.Tensor, c: torch.Tensor, W_ih: torch.Tensor, W_hh: torch.Tensor,
              b_ih: torch.Tensor, b_hh: torch.Tensor):
    """One LSTM step, every gate written out. ``x_t`` (B, D), ``h`` and ``c`` (B, H) → the new ``(h, c)``.

    The weights have ``nn.LSTM``'s layout (``weight_ih_l0`` (4H, D), ``weight_hh_l0`` (4H, H), two biases
    (4H,)): the rows are the gates' blocks in the order input i, forget f, candidate g, output o.
    """
    z = x_t @ W_ih.T + b_ih + h @ W_hh.T + b_hh  # (B, 4H): all four gates' pre-activations at once
    zi, zf, zg, zo = z.chunk(4, dim=-1)
    i = torch.sigmoid(zi)      # input gate: how much of the candidate to write
    f = torch.sigmoid(zf)      # forget gate: how much of the old cell to keep
    g = torch.tanh(zg)         # candidate values
    o = torch.sigmoid(zo)      # output gate: how much of the cell to show
    c = f * c + i * g          # the additive cell update
    h = o * torch.tanh(c)
    return h, c


def lstm_unroll(lstm: nn.LSTM, x: torch.Tensor, state=None):
    """Run :func:`lstm_step` over ``x`` (B, T, D) with the weights of a one-layer, ``batch_first`` ``nn.LSTM``.

    Returns ``(outputs (B, T, H), (h_T, c_T))`` shaped like ``lstm(x, state)``: the same numbers, one
    step at a time in a Python loop (tests/test_language_models.py checks them against ``nn.LSTM``).
    """
    if lstm.num_layers != 1 or not lstm.batch_first or lstm.bidirectional or lstm.proj_size or not lstm.bias:
        raise ValueError("lstm_unroll needs a one-layer, batch_first, unidirectional nn.LSTM with biases and no projection")
    B, T, _ = x.shape
    if state is None:
        h = c = x.new_zeros(B, lstm.hidden_size)
    else:
        h, c = state[0][0], state[1][0]
    w = (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
    outs = []
    for t in range(T):
        h, c = lstm_step(x[:, t], h, c, *w)
        outs.append(h)
    return torch.stack(outs, 1), (h[None], c[None])


class CharRNN(nn.Module):
    """Embedding → recurrent layers (kit :class:`RNNCell` or ``nn.LSTM``) → linear head over characters.

    ``state`` is a ``(n_layer, B, hidden)`` tensor for the RNN and an ``(h, c)`` pair for the LSTM.
    """

    recurrent = True

    def __init__(self, cfg: RNNConfig):
        super().__init__()
        if cfg.cell not in ("rnn", "lstm"):
            raise ValueError(f"parameter 'cell' must be 'rnn' or 'lstm', got {cfg.cell!r}")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        if cfg.cell == "rnn":
            self.cells = nn.ModuleList(RNNCell(cfg.n_embd if i == 0 else cfg.hidden, cfg.hidden)
                                       for i in range(cfg.n_layer))
        else:
            self.lstm = nn.LSTM(cfg.n_embd, cfg.hidden, num_layers=cfg.n_layer, batch_first=True,
                                dropout=cfg.dropout if cfg.n_layer > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden, cfg.vocab_size)

    def forward(self, idx: torch.Tensor, state=None):
        """``idx`` (B, T) character ids → ``(logits (B, T, V), state)``."""
        x = self.embed(idx)
        if self.cfg.cell == "lstm":
            out, state = self.lstm(x, state)
        else:
            hs = []
            out = x
            for i, cell in enumerate(self.cells):
                out, h = cell.unroll(out, None if state is None else state[i])
                hs.append(h)
                if i + 1 < len(self.cells):
                    out = self.drop(out)
            state = torch.stack(hs)
        return self.head(self.drop(out)), state


def hidden_grad_norms(scale: float, steps: int = 60, hidden: int = 64, nonlinearity: str = "tanh",
                      seed: int = 0, input_scale: float = 1.0) -> list[float]:
    """‖∂L/∂h_t‖ for t = 1..steps in an RNN whose recurrent matrix is ``scale`` × a random orthogonal
    matrix (all its singular values equal ``scale``), with the loss on the last state only.

    Backpropagation multiplies by ``W_hᵀ diag(tanh')`` once per step back in time, so the norm shrinks
    roughly like ``scale^(T−t)`` (vanishing, scale < 1) or grows like it (exploding, scale > 1; the
    tanh's saturation, tanh' ≤ 1, pulls it down). Returns the norms in time order (last = 1 step back).
    """
    g = torch.Generator().manual_seed(seed)
    cell = RNNCell(hidden, hidden, nonlinearity).double()
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(hidden, hidden, generator=g, dtype=torch.float64))
        cell.in_h.weight.copy_(scale * q)
        cell.in_x.weight.copy_(torch.randn(hidden, hidden, generator=g, dtype=torch.float64) / math.sqrt(hidden))
        cell.in_x.bias.zero_()
    x = input_scale * torch.randn(1, steps, hidden, generator=g, dtype=torch.float64)
    v = torch.randn(hidden, generator=g, dtype=torch.float64)
    keep: list = []
    _, h_T = cell.unroll(x, keep=keep)
    for h in keep:
        h.retain_grad()
    (h_T[0] @ v).backward()
    return [h.grad.norm().item() for h in keep]
