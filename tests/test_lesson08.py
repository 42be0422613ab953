"""Lesson 08: its exercises accept right answers on fresh inputs and name the case a typical mistake fails;
position codes are not drowned by the token vectors at initialisation; the per-head attention statistics."""
import math
import re

import pytest
import torch
import torch.nn.functional as F

from kit.exercises import exercises, verdict
from kit.models import n_params
from kit.models.transformer import (MultiHeadAttention, TransformerClassifier, TransformerConfig,
                                    attention_head_stats, position_to_token_ratio)


# ------------------------------------------------------------------ right answers (as a learner writes them)
def mha_param_count(d, n_head):
    return 4 * d * d + 4 * d


def sincos_positions(T, d):
    pos = torch.arange(T, dtype=torch.float32)[:, None]
    ang = pos / 10000 ** (torch.arange(0, d, 2) / d)
    return torch.cat([ang.sin(), ang.cos()], -1)


def causal_attention(q, k, v):
    T = q.shape[-2]
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s, -1) @ v


def padded_attention(q, k, v, lengths):
    T = q.shape[1]
    real = torch.arange(T)[None] < lengths[:, None]
    s = (q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])).masked_fill(~real[:, None, :], float("-inf"))
    return (torch.softmax(s, -1) @ v) * real[..., None]


RIGHT = {"08.1": mha_param_count, "08.2": sincos_positions, "08.3": causal_attention, "08.4": padded_attention}


def test_four_exercises_with_levelled_hints():
    ex = exercises("08")
    assert [e.id for e in ex] == ["08.1", "08.2", "08.3", "08.4"]
    assert all(2 <= len(e.hints) <= 3 for e in ex) and all(e.kind == "function" for e in ex)


@pytest.mark.parametrize("id", sorted(RIGHT))
def test_right_answers_pass_on_fresh_inputs(id):
    for _ in range(5):
        assert verdict(id, RIGHT[id]) is None


def test_param_count_reference_is_kits_module():
    for d, h in [(64, 4), (32, 1), (48, 6)]:
        assert n_params(MultiHeadAttention(d, h)) == mha_param_count(d, h)


def _fails_on(id, fn, case):
    why = verdict(id, fn)
    assert why is not None, f"{id}: a wrong answer passed"
    assert re.search(re.escape(case), why), why
    return why


def test_param_count_mistakes():
    _fails_on("08.1", lambda d, h: 4 * d * d, "heads")                   # forgets the biases
    _fails_on("08.1", lambda d, h: 3 * (d * d + d), "heads")             # forgets W_O
    _fails_on("08.1", lambda d, h: 4 * h * (d * d + d), "heads")         # heads add parameters


def test_sincos_mistakes():
    def interleaved(T, d):  # the other layout (kit's sinusoidal_positions)
        from kit.models.transformer import sinusoidal_positions
        return sinusoidal_positions(T, d)

    def wrong_exponent(T, d):
        ang = torch.arange(T, dtype=torch.float64)[:, None] / 10000 ** (torch.arange(d // 2) / d)
        return torch.cat([ang.sin(), ang.cos()], -1)

    def swapped(T, d):
        return sincos_positions(T, d).roll(d // 2, -1)

    _fails_on("08.2", interleaved, "positions, d =")
    _fails_on("08.2", wrong_exponent, "positions, d =")
    _fails_on("08.2", swapped, "positions, d =")


def test_causal_attention_mistakes():
    def no_mask(q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1) @ v

    def hides_diagonal(q, k, v):
        T = q.shape[-2]
        s = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(torch.ones(T, T, dtype=torch.bool).triu(),
                                                                           float("-inf"))
        return torch.nan_to_num(torch.softmax(s, -1)) @ v

    def scale_by_d(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1 / q.shape[-1])

    def scale_by_dv(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1 / math.sqrt(v.shape[-1]))

    def naive_softmax(q, k, v):
        T = q.shape[-2]
        s = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1),
                                                                           float("-inf"))
        e = s.exp()
        return e / e.sum(-1, keepdim=True) @ v

    _fails_on("08.3", no_mask, "heads, T =")
    _fails_on("08.3", hides_diagonal, "heads, T =")
    _fails_on("08.3", scale_by_d, "heads, T =")
    _fails_on("08.3", scale_by_dv, "values wider than keys")
    _fails_on("08.3", naive_softmax, "extreme logits")


def test_padded_attention_mistakes():
    def keeps_padding_rows(q, k, v, lengths):
        real = torch.arange(q.shape[1])[None] < lengths[:, None]
        s = (q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])).masked_fill(~real[:, None, :], float("-inf"))
        return torch.softmax(s, -1) @ v

    def off_by_one(q, k, v, lengths):
        return padded_attention(q, k, v, lengths + 1) * (torch.arange(q.shape[1])[None] < lengths[:, None])[..., None]

    def masks_with_zero(q, k, v, lengths):  # multiplies scores by the mask: padding still gets e^0
        real = torch.arange(q.shape[1])[None] < lengths[:, None]
        s = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]) * real[:, None, :]
        return (torch.softmax(s, -1) @ v) * real[..., None]

    _fails_on("08.4", keeps_padding_rows, "lengths")
    _fails_on("08.4", off_by_one, "lengths")
    _fails_on("08.4", masks_with_zero, "lengths")


# ------------------------------------------------------------------ the teaching fixes
@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
@pytest.mark.parametrize("d", [32, 64, 256])
def test_position_codes_are_not_drowned_by_token_vectors_at_init(positions, d):
    torch.manual_seed(0)
    m = TransformerClassifier(TransformerConfig(vocab_size=500, n_classes=3, max_len=48, n_embd=d, n_head=4,
                                                positions=positions))
    r = position_to_token_ratio(m.encoder)
    # before the fix (N(0, 1) tokens × √d): 1/√(2d) for sinusoidal (0.088 at d = 64), 0.02/√d for learned (0.0025)
    assert 0.6 < r < 0.8, r
    assert m.encoder.embed.weight[0].abs().max() == 0  # the padding row stays zero


def test_attention_head_stats_reads_known_patterns():
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=20, n_classes=2, max_len=10, n_embd=8, n_head=2, n_layer=1, dropout=0.0)
    m = TransformerClassifier(cfg).eval()
    ids = torch.randint(1, 20, (64, 10))
    ids[:, 7:] = 0
    ids[::2, 5:] = 0
    with torch.no_grad():  # head 0 attends evenly (zero queries), head 1 is left as it is
        m.encoder.blocks[0].attn.qkv.weight[:4] = 0
        m.encoder.blocks[0].attn.qkv.bias[:4] = 0
    st = attention_head_stats(m, ids, pad_id=0, min_count=3)
    assert [(s["layer"], s["head"]) for s in st] == [(0, 0), (0, 1)]
    even = st[0]
    assert abs(even["evenness"] - 1) < 1e-6
    assert abs(even["neighbours"] - even["neighbours_uniform"]) < 1e-6
    assert all(abs(lift - 1) < 1e-6 for _, lift, _ in even["lift"])
    assert st[1]["evenness"] < 1


@pytest.mark.parametrize("d", [16, 64, 128])
def test_the_scales_the_lesson_states(d):
    """Sinusoidal codes have norm √(d/2); with the old N(0, 1) × √d tokens the ratio was 1/√(2d) (0.088 at d = 64)."""
    from kit.models.transformer import sinusoidal_positions
    pe = sinusoidal_positions(48, d)
    assert torch.allclose(pe.norm(dim=1), torch.full((48,), math.sqrt(d / 2)), atol=1e-5)
    torch.manual_seed(0)
    m = TransformerClassifier(TransformerConfig(vocab_size=4000, n_classes=3, max_len=48, n_embd=d, n_head=4))
    tok = m.encoder.token_vectors(torch.arange(1, 4000))
    assert abs(tok.pow(2).mean().sqrt().item() - 1) < 0.02       # coordinates of std 1 after × √d
    with torch.no_grad():
        torch.nn.init.normal_(m.encoder.embed.weight, std=1.0)  # the old initialisation
    assert abs(position_to_token_ratio(m.encoder) * math.sqrt(2 * d) - 1) < 0.03
    m = TransformerClassifier(TransformerConfig(vocab_size=4000, n_classes=3, max_len=48, n_embd=d, n_head=4,
                                                positions="learned"))
    with torch.no_grad():
        torch.nn.init.normal_(m.encoder.embed.weight, std=1.0)
        torch.nn.init.normal_(m.encoder.pos.pe.weight, std=0.02)  # the old learned codes
    assert abs(position_to_token_ratio(m.encoder) * math.sqrt(d) / 0.02 - 1) < 0.15  # 48 random rows: a few % noise
