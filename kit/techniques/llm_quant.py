"""Quantising a real LLM's weights: GGUF's block formats written out, and int8 weight-only matmuls for decoding.

llama.cpp stores weights in **blocks of 32** consecutive weights of a row, each block with its own float16 scale:

* ``Q8_0``: ``d = max|w| / 127``, ``q = round(w / d)`` as int8 — 2 + 32 bytes per block, 8.5 bits per weight;
* ``Q4_0``: ``d = w* / -8`` where ``w*`` is the weight of largest magnitude (sign kept), ``q = trunc(w / d + 8.5)``
  clipped to 0…15, so ``w ≈ d · (q − 8)`` — 2 + 16 bytes, 4.5 bits per weight;
* ``Q4_1``: ``d = (max − min) / 15``, ``m = min``, ``q = trunc((w − m) / d + 0.5)`` clipped to 0…15, ``w ≈ d·q + m``
  — 2 + 2 + 16 bytes, 5 bits per weight.

4-bit values are packed two per byte: byte ``j`` holds weight ``j`` in its low nibble and weight ``j + 16`` in its high
nibble. :func:`quantize` and :func:`dequantize` write exactly the bytes of ``gguf.quants`` (llama.cpp's reference
arithmetic, float32 with ``1/d`` precomputed; tested bit for bit). ``RTN3`` and ``RTN2`` are **not GGUF formats**:
kit's own round-to-nearest 3- and 2-bit blocks with a scale and a minimum (Q4_1's rule with 7 or 3 levels), to show
where quality falls off a cliff; llama.cpp's Q3_K/Q2_K do better with super-blocks and fitted scales.

:class:`Int8Linear` stores a linear layer's weight as int8 with one scale per output row and multiplies with torch's
CPU kernel ``aten._weight_int8pack_mm`` (the one gpt-fast uses) on bfloat16 activations: a batch-1 decode step streams
a quarter of float32's bytes.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BLOCK", "BITS_PER_WEIGHT", "GGUF_FORMATS", "quantize", "dequantize", "fake_quantize", "requantize",
           "Int8Linear", "int8_weight_only", "weight_bytes", "snapshot", "restore", "weight_change", "decode_bytes_per_token",
           "tradeoff_figure"]

BLOCK = 32
GGUF_FORMATS = ("Q8_0", "Q4_1", "Q4_0")
BITS_PER_WEIGHT = {"F32": 32.0, "F16": 16.0, "Q8_0": 8.5, "Q4_1": 5.0, "Q4_0": 4.5, "RTN3": 4.0, "RTN2": 3.0}
_RTN_LEVELS = {"RTN3": 7, "RTN2": 3}


def _blocks(w: torch.Tensor) -> torch.Tensor:
    w = torch.as_tensor(w, dtype=torch.float32)
    if w.shape[-1] % BLOCK:
        raise ValueError(f"a row of {w.shape[-1]} weights is not a whole number of {BLOCK}-weight blocks")
    return w.reshape(-1, BLOCK)


def _inverse(d: torch.Tensor) -> torch.Tensor:
    return torch.where(d == 0, torch.zeros_like(d), 1 / d)


def _half_bytes(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float16).view(torch.uint8).reshape(-1, 2)


def _pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    return q[:, :16] | (q[:, 16:] << 4)


def quantize(w, fmt: str) -> np.ndarray:
    """``w`` (rows a multiple of 32 long) → the GGUF bytes of ``fmt``, one row of bytes per block (``uint8``)."""
    b = _blocks(w)
    if fmt == "Q8_0":
        d = b.abs().amax(1, keepdim=True) / 127
        x = b * _inverse(d)
        q = (x.sign() * (x.abs() + 0.5).floor()).to(torch.int8).view(torch.uint8)   # round half away from zero
        out = torch.cat([_half_bytes(d), q], 1)
    elif fmt == "Q4_0":
        extreme = b.gather(1, b.abs().argmax(1, keepdim=True))
        d = extreme / -8
        q = torch.trunc(b * _inverse(d) + 8.5).clamp(0, 15).to(torch.uint8)
        out = torch.cat([_half_bytes(d), _pack_nibbles(q)], 1)
    elif fmt == "Q4_1":
        lo, hi = b.amin(1, keepdim=True), b.amax(1, keepdim=True)
        d = (hi - lo) / 15
        q = torch.trunc((b - lo) * _inverse(d) + 0.5).clamp(0, 15).to(torch.uint8)
        out = torch.cat([_half_bytes(d), _half_bytes(lo), _pack_nibbles(q)], 1)
    else:
        raise ValueError(f"unknown GGUF format {fmt!r}; kit writes {', '.join(GGUF_FORMATS)}")
    return out.numpy()


def _half(col: torch.Tensor) -> torch.Tensor:
    return col.contiguous().view(torch.float16).float()


def dequantize(data, fmt: str, shape=None) -> torch.Tensor:
    """GGUF bytes of ``fmt`` (one row per block) → float32 weights (``shape`` if given)."""
    a = torch.as_tensor(np.ascontiguousarray(data, dtype=np.uint8)).reshape(-1, {"Q8_0": 34, "Q4_0": 18, "Q4_1": 20}[fmt])
    if fmt == "Q8_0":
        w = _half(a[:, :2]) * a[:, 2:].view(torch.int8).float()
    else:
        nib = a[:, -16:]
        q = torch.cat([nib & 15, nib >> 4], 1).float()
        w = _half(a[:, :2]) * (q - 8) if fmt == "Q4_0" else _half(a[:, :2]) * q + _half(a[:, 2:4])
    return w.reshape(shape) if shape is not None else w


def _rtn(w: torch.Tensor, levels: int) -> torch.Tensor:
    b = _blocks(w)
    lo, hi = b.amin(1, keepdim=True), b.amax(1, keepdim=True)
    d = ((hi - lo) / levels).half().float()
    lo = lo.half().float()
    q = torch.round((b - lo) * _inverse(d)).clamp(0, levels)
    return (d * q + lo).reshape(w.shape)


def fake_quantize(w: torch.Tensor, fmt: str) -> torch.Tensor:
    """``w`` after a round trip through ``fmt`` (float32, same shape): what a model stored in ``fmt`` computes with."""
    if fmt in ("F32", "F16"):
        return w.float() if fmt == "F32" else w.half().float()
    if fmt in _RTN_LEVELS:
        return _rtn(w.float(), _RTN_LEVELS[fmt])
    return dequantize(quantize(w.detach().float(), fmt), fmt, w.shape)


def requantize(model: nn.Module, fmt: str, out: nn.Module | None = None, rows: int = 4096) -> nn.Module:
    """A copy of ``model`` whose matrices (every 2-D weight whose rows are whole blocks: the linear layers and the
    token embedding) went through ``fmt``; norms and biases stay float32, as in llama.cpp's files.

    ``out``: a model of the same architecture to write into instead of a new copy (comparing formats one after
    another then holds two models, not one per format); matrices are processed ``rows`` rows at a time (blocks lie
    within a row, so the result is the same) to keep the temporaries small."""
    if fmt not in BITS_PER_WEIGHT:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(BITS_PER_WEIGHT)}")
    if out is None:
        out = copy.deepcopy(model)
    src, dst = dict(model.named_parameters()), dict(out.named_parameters())
    if src.keys() != dst.keys() or any(src[k].shape != dst[k].shape for k in src):
        raise ValueError("out must have the same parameters (names and shapes) as model")
    with torch.no_grad():
        for name, p in dst.items():
            w = src[name]
            if p.dim() == 2 and p.shape[1] % BLOCK == 0:
                for i in range(0, p.shape[0], rows):
                    p[i:i + rows].copy_(fake_quantize(w[i:i + rows], fmt))
            elif p is not w:
                p.copy_(w)
    return out


class Int8Linear(nn.Module):
    """A linear layer whose weight is int8 with one float scale per output row: ``y = (x · qᵀ) · scale + b``.

    On the CPU it runs ``aten._weight_int8pack_mm`` on bfloat16 activations (int8 weights read once, no float copy);
    elsewhere it dequantises to the activations' dtype."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(1).clamp(min=1e-12) / 127
        q = torch.empty(w.shape, dtype=torch.int8)
        for i in range(0, w.shape[0], 4096):     # a few rows at a time: no float temporaries of the whole matrix
            q[i:i + 4096] = torch.round(w[i:i + 4096] / scale[i:i + 4096, None]).to(torch.int8)
        self.register_buffer("qweight", q)
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":
            y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, x.shape[-1]).to(torch.bfloat16), self.qweight,
                                                   self.scale).reshape(*x.shape[:-1], -1).to(x.dtype)
        else:
            y = F.linear(x, self.qweight.to(x.dtype) * self.scale.to(x.dtype)[:, None])
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights, per-row scales"


def int8_weight_only(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` (the output layer too, untied from the embedding) replaced by
    :class:`Int8Linear`; for inference. The float weights of the linear layers are not copied on the way (the int8
    layers are made from the original's, then the rest is deep-copied around them): the copy costs the int8 bytes
    and the other tensors, not a second float model."""
    swaps = [(mod, name, sub) for mod in list(model.modules()) for name, sub in list(mod.named_children())
             if isinstance(sub, nn.Linear)]
    int8 = [Int8Linear(sub) for _, _, sub in swaps]
    memo = {id(layer): layer for layer in int8}          # deepcopy keeps these layers as they are
    try:
        for (mod, name, _), layer in zip(swaps, int8):
            setattr(mod, name, layer)
        out = copy.deepcopy(model, memo)
    finally:
        for mod, name, sub in swaps:
            setattr(mod, name, sub)
    return out.eval()


def weight_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer (int8 weights count one byte each; a tied weight counts once)."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t is not None and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def _matrices(model: nn.Module):
    """``(name, weight)`` of every matrix whose rows are whole blocks (what :func:`requantize` touches)."""
    return [(k, p) for k, p in model.named_parameters() if p.dim() == 2 and p.shape[1] % BLOCK == 0]


def snapshot(model: nn.Module, formats=("Q4_1", "Q8_0"), rows: int = 4096) -> dict:
    """A lossless copy of ``model``'s matrices, each kept in the first of ``formats`` that gives it back **exactly**
    (float32 otherwise): ``{name: (fmt, data)}``. A model loaded from a GGUF file comes back from its own block bytes
    (SmolLM2: 98 MB instead of 538 MB of float32), so formats can be tried one after another on the model itself and
    undone with :func:`restore`, without a second float32 copy in memory."""
    out = {}
    with torch.no_grad():
        for name, p in _matrices(model):
            w, kept, per_row = p.detach(), None, p.shape[1] // BLOCK
            for fmt in formats:
                data = np.empty((w.shape[0] * per_row, {"Q8_0": 34, "Q4_0": 18, "Q4_1": 20}[fmt]), dtype=np.uint8)
                for i in range(0, w.shape[0], rows):
                    chunk = w[i:i + rows]
                    data[i * per_row:(i + len(chunk)) * per_row] = quantize(chunk, fmt)
                    if not torch.equal(dequantize(data[i * per_row:(i + len(chunk)) * per_row], fmt, chunk.shape), chunk):
                        break
                else:
                    kept = (fmt, data)
                    break
            out[name] = kept or ("F32", w.float().clone())
    return out


def _decoded(snap_entry, shape, rows: int):
    """Chunks ``(start_row, float32 weights)`` of a snapshot entry."""
    fmt, data = snap_entry
    per_row = shape[1] // BLOCK
    for i in range(0, shape[0], rows):
        n = min(rows, shape[0] - i)
        yield i, (data[i:i + n] if fmt == "F32" else dequantize(data[i * per_row:(i + n) * per_row], fmt, (n, shape[1])))


def restore(model: nn.Module, snap: dict, rows: int = 4096) -> nn.Module:
    """Write a :func:`snapshot`'s matrices back into ``model`` (in place), bit for bit."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, entry in snap.items():
            p = params[name]
            for i, w in _decoded(entry, p.shape, rows):
                p[i:i + len(w)].copy_(w)
    return model


def weight_change(model: nn.Module, snap: dict, rows: int = 4096) -> tuple[float, list[str]]:
    """How far ``model``'s matrices moved from a :func:`snapshot`: the relative error ‖W − W₀‖ / ‖W₀‖ over all of them
    together, and the names of the matrices that changed at all."""
    params = dict(model.named_parameters())
    num = den = 0.0
    changed = []
    with torch.no_grad():
        for name, entry in snap.items():
            p, moved = params[name], False
            for i, w in _decoded(entry, p.shape, rows):
                now = p[i:i + len(w)]
                num += float((now - w).pow(2).sum(dtype=torch.float64))
                den += float(w.pow(2).sum(dtype=torch.float64))
                moved = moved or not torch.equal(now, w)
            if moved:
                changed.append(name)
    return (num / den) ** 0.5 if den else 0.0, changed


def decode_bytes_per_token(model: nn.Module) -> int:
    """Bytes of weights one decode step reads for one token at batch 1: every linear layer's whole weight (and
    scales, for :class:`Int8Linear`) — the output layer too, tied or not — plus one row of the token embedding and
    every vector (norms, biases). A lower bound on the memory traffic (activations and the KV cache come on top)."""
    total, seen = 0, set()
    emb = [mod for mod in model.modules() if isinstance(mod, nn.Embedding)]
    for mod in model.modules():
        if isinstance(mod, nn.Linear):
            total += mod.weight.numel() * mod.weight.element_size()
            seen.add(mod.weight.data_ptr())
        elif isinstance(mod, Int8Linear):
            total += mod.qweight.numel() * mod.qweight.element_size() + mod.scale.numel() * mod.scale.element_size()
            seen.add(mod.scale.data_ptr())
    for e in emb:
        w = e.weight
        total += w.shape[1] * w.element_size()              # one row: the token being decoded
        seen.add(w.data_ptr())
    for t in list(model.parameters()) + list(model.buffers()):
        if t is not None and t.dim() <= 1 and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def tradeoff_figure(rows: list[dict], reference: float, title: str = "bits per weight against bits per byte"):
    """One marker per format (``rows``: ``{"format", "bits_per_weight", "bits_per_byte"}``), labelled, on a log
    y axis, with the reference model's bits per byte as a dashed line: where quality falls off a cliff."""
    import plotly.graph_objects as go
    from kit.viz.figures import TEMPLATE
    fig = go.Figure()
    fig.add_scatter(x=[r["bits_per_weight"] for r in rows], y=[r["bits_per_byte"] for r in rows],
                    mode="markers+text", text=[r["format"] for r in rows], textposition="top center",
                    marker=dict(size=11), name="re-quantised", showlegend=False)
    fig.add_hline(y=reference, line_dash="dash", annotation_text=f"the file: {reference:.3f}",
                  annotation_position="bottom right")
    fig.update_yaxes(type="log", title_text="bits per byte on held-out text (log; lower is better)")
    fig.update_xaxes(title_text="bits per weight (stored)", autorange="reversed")
    fig.update_layout(title=title, template=TEMPLATE, height=420)
    return fig
