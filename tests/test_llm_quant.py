"""kit.techniques.llm_quant: GGUF's Q8_0/Q4_0/Q4_1 bit for bit against gguf.quants; int8 weight-only layers."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import quants as gq  # noqa: E402

from kit.models.gpt import GPT, GPTConfig  # noqa: E402
from kit.techniques import llm_quant as Q  # noqa: E402

BYTES = {"Q8_0": 34, "Q4_0": 18, "Q4_1": 20}


def _weights(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((6, 96)) * rng.uniform(0.01, 3)).astype(np.float32)
    w[0, :32] = 0                                   # an all-zero block (d = 0)
    w[1, 32:64] = 1.5                               # a constant block (max = min)
    w[2, :32] = -np.abs(w[2, :32])                  # the extreme weight negative
    w[3, :32] = rng.integers(-8, 8, 32) * 0.25      # values exactly on a grid: ties at .5
    w[4, 64:] *= 1e-6                               # tiny magnitudes
    w[5, 5] = 40.0                                  # one outlier in a block
    return w


@pytest.mark.parametrize("fmt", Q.GGUF_FORMATS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quantize_and_dequantize_match_gguf_bit_for_bit(fmt, seed):
    w = _weights(seed)
    ref = gq.quantize(w, T[fmt]).reshape(-1, BYTES[fmt])
    mine = Q.quantize(torch.from_numpy(w), fmt)
    assert mine.dtype == np.uint8 and np.array_equal(mine, ref)
    assert np.array_equal(Q.dequantize(mine, fmt, w.shape).numpy(), gq.dequantize(ref.reshape(6, -1), T[fmt]))


def test_bits_per_weight_are_the_block_sizes():
    for fmt in Q.GGUF_FORMATS:
        assert Q.BITS_PER_WEIGHT[fmt] == 8 * BYTES[fmt] / 32 == 8 * gguf.GGML_QUANT_SIZES[T[fmt]][1] / 32


def test_error_grows_as_bits_shrink_and_q4_1_requantises_losslessly():
    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(0))
    err = {f: (Q.fake_quantize(w, f) - w).abs().mean().item() for f in ("F16", "Q8_0", "Q4_1", "Q4_0", "RTN3", "RTN2")}
    assert err["F16"] < err["Q8_0"] < err["Q4_1"] < err["Q4_0"] < err["RTN3"] < err["RTN2"]
    once = Q.fake_quantize(w, "Q4_1")          # weights already on Q4_1's levels (as SmolLM2's file holds them)
    twice = Q.fake_quantize(once, "Q4_1")
    assert torch.equal(twice, once)            # every block uses levels 0 and 15: the same d, m and levels again


def test_bad_shapes_and_formats_say_what_is_wrong():
    with pytest.raises(ValueError, match="blocks"):
        Q.quantize(torch.randn(4, 33), "Q8_0")
    with pytest.raises(ValueError, match="unknown GGUF format"):
        Q.quantize(torch.randn(4, 32), "Q3_K")
    with pytest.raises(ValueError, match="unknown format"):
        Q.requantize(nn.Linear(32, 4), "int3")


def _tiny_llama() -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=96, block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=64, n_inner=96,
                    norm="rmsnorm", pos="rope", activation="swiglu")
    return GPT(cfg).eval()


def test_requantize_changes_matrices_only_and_q8_0_keeps_the_logits():
    m = _tiny_llama()
    q = Q.requantize(m, "Q8_0")
    assert torch.equal(q.ln_f.weight, m.ln_f.weight) and not torch.equal(q.wte.weight, m.wte.weight)
    assert torch.equal(q.wte.weight, Q.fake_quantize(m.wte.weight, "Q8_0"))
    x = torch.randint(0, 96, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, lo, q2 = m(x), q(x), Q.requantize(m, "RTN2")(x)
    assert (lo - ref).abs().max() < 0.05 * ref.abs().max()
    assert (q2 - ref).abs().mean() > 5 * (lo - ref).abs().mean()


def test_int8_linear_matches_the_float_layer_within_its_rounding():
    lin = nn.Linear(64, 48, bias=True)
    x = torch.randn(3, 5, 64)
    q = Q.Int8Linear(lin)
    assert q.qweight.dtype == torch.int8 and q.qweight.shape == (48, 64)
    with torch.no_grad():
        ref, y = lin(x), q(x)
    assert y.shape == ref.shape and y.dtype == ref.dtype
    w_err = (q.qweight.float() * q.scale.float()[:, None] - lin.weight).abs().max()
    assert w_err <= lin.weight.abs().max() / 127                    # half a step of the coarsest row, and then some
    assert (y - ref).abs().max() < 0.02 * ref.abs().max()


def test_int8_weight_only_model_is_a_quarter_of_the_bytes_and_decodes_the_same():
    m = _tiny_llama()
    q = Q.int8_weight_only(m)
    assert not any(isinstance(mod, nn.Linear) for mod in q.modules())
    assert isinstance(m.lm_head, nn.Linear)                          # the original is untouched
    lin_bytes = sum(mod.weight.numel() * 4 for mod in m.modules() if isinstance(mod, nn.Linear) and mod is not m.lm_head)
    assert Q.weight_bytes(m) - Q.weight_bytes(q) > 0.7 * lin_bytes
    x = torch.randint(0, 96, (1, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref, y = m(x), q(x)
    assert F.cosine_similarity(ref.flatten(), y.flatten(), dim=0) > 0.999
    assert (ref.argmax(-1) == y.argmax(-1)).float().mean() > 0.9
