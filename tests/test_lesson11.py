"""Lesson 11's exercises: right answers pass on fresh inputs, typical mistakes fail naming the case."""
import pytest
import torch
import torch.nn.functional as F

from kit.exercises import verdict
from kit.techniques import compress as C


def dequantize(q, scale, zero_point):
    return (q.double() - zero_point) * scale


def quantize_int8(w):
    scale = w.abs().max().item() / 127 or 1.0
    return torch.clamp(torch.round(w / scale), -127, 127).to(torch.int8), scale


def prune_mask(w, sparsity):
    k = round(sparsity * w.numel())
    mask = torch.ones(w.numel(), dtype=torch.bool)
    if k > 0:
        mask[w.abs().flatten().argsort()[:k]] = False
    return mask.reshape(w.shape)


def soft_target_loss(s, t, T):
    log_ps, log_pt = torch.log_softmax(s / T, -1), torch.log_softmax(t / T, -1)
    return T * T * (log_pt.exp() * (log_pt - log_ps)).sum(-1)


@pytest.mark.parametrize("id,fn", [("11.1", dequantize), ("11.2", quantize_int8), ("11.3", prune_mask),
                                   ("11.4", soft_target_loss)])
def test_right_answers_pass_on_fresh_inputs(id, fn):
    for _ in range(5):
        assert verdict(id, fn) is None


def test_prune_mask_as_floats_passes():
    assert verdict("11.3", lambda w, s: prune_mask(w, s).float()) is None


def test_dequantize_in_integer_arithmetic_wraps_and_fails():
    msg = verdict("11.1", lambda q, s, z: (q - z) * s)
    assert msg and any(c in msg for c in ("zero point 3", "uint8", "extremes"))  # -128 - 3 wraps already


def test_dequantize_adding_the_zero_point_fails():
    msg = verdict("11.1", lambda q, s, z: (q.double() + z) * s)
    assert msg and "zero point 3" in msg


def test_quantize_without_int8_dtype_fails():
    msg = verdict("11.2", lambda w: (quantize_int8(w)[0].float(), quantize_int8(w)[1]))
    assert msg and "random weights" in msg and "int8" in msg


def test_quantize_scale_from_max_not_abs_max_fails():
    def wrong(w):
        scale = w.max().item() / 127 or 1.0
        return torch.clamp(torch.round(w / scale), -127, 127).to(torch.int8), scale
    msg = verdict("11.2", wrong)
    assert msg and ("negative" in msg or "random weights" in msg or "one weight" in msg)


def test_quantize_dividing_by_zero_fails_on_all_zeros():
    def wrong(w):
        scale = w.abs().max().item() / 127
        return torch.clamp(torch.round(w / scale), -127, 127).to(torch.int8), scale
    msg = verdict("11.2", wrong)
    assert msg and "all zeros" in msg


def test_quantize_by_255_fails():
    def wrong(w):  # the range of uint8 used for a symmetric int8
        scale = 2 * w.abs().max().item() / 255 or 1.0
        return torch.clamp(torch.round(w / scale), -127, 127).to(torch.int8), scale
    msg = verdict("11.2", wrong)
    assert msg and "random weights" in msg


def test_prune_by_signed_value_fails():
    def wrong(w, s):  # removes the most negative weights instead of the smallest |w|
        k = round(s * w.numel())
        mask = torch.ones(w.numel(), dtype=torch.bool)
        if k:
            mask[w.flatten().argsort()[:k]] = False
        return mask.reshape(w.shape)
    msg = verdict("11.3", wrong)
    assert msg and "random weights" in msg


def test_prune_mask_inverted_fails():
    msg = verdict("11.3", lambda w, s: ~prune_mask(w, s))
    assert msg and "random weights" in msg and "keeps" in msg


def test_prune_per_row_fails():
    def wrong(w, s):  # ranks inside each row instead of over the whole tensor
        if w.ndim == 1:
            return prune_mask(w, s)
        return torch.stack([prune_mask(row, s) for row in w])
    msg = verdict("11.3", wrong)
    assert msg and "random weights" in msg


def test_soft_target_without_T_squared_fails():
    msg = verdict("11.4", lambda s, t, T: soft_target_loss(s, t, T) / (T * T))
    assert msg and "T = 4" in msg


def test_soft_target_batch_mean_fails():
    msg = verdict("11.4", lambda s, t, T: soft_target_loss(s, t, T).mean())
    assert msg and "T = 4" in msg


def test_soft_target_kl_the_wrong_way_round_fails():
    msg = verdict("11.4", lambda s, t, T: soft_target_loss(t, s, T))
    assert msg and "T = 4" in msg


def test_soft_target_through_probabilities_is_not_finite_for_huge_logits():
    def naive(s, t, T):
        ps, pt = torch.softmax(s / T, -1), torch.softmax(t / T, -1)
        return T * T * (pt * (pt.log() - ps.log())).sum(-1)
    msg = verdict("11.4", naive)
    assert msg and "huge logits" in msg


def test_soft_target_matches_kits_distillation_loss():
    """The notebook's statement: C.distillation_loss averages this term over the batch (α = 1: no hard labels)."""
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(16, 10, generator=g) * 3, torch.randn(16, 10, generator=g) * 3
    y = torch.randint(10, (16,), generator=g)
    for T in (1.0, 4.0):
        assert torch.allclose(C.distillation_loss(T, alpha=1.0)(s, y, t), soft_target_loss(s, t, T).mean(), atol=1e-5)
        both = C.distillation_loss(T, alpha=0.7)(s, y, t)
        assert torch.allclose(both, 0.7 * soft_target_loss(s, t, T).mean() + 0.3 * F.cross_entropy(s, y), atol=1e-5)


def test_prune_mask_matches_torch_prune():
    """The notebook's statement: the mask is what torch.nn.utils.prune.l1_unstructured stores."""
    from torch.nn.utils import prune
    torch.manual_seed(0)
    layer = torch.nn.Linear(20, 10)
    w = layer.weight.detach().clone()
    prune.l1_unstructured(layer, "weight", amount=0.37)
    assert torch.equal(layer.weight_mask.bool(), prune_mask(w, 0.37))


def test_dequantized_int8_is_within_half_a_step():
    """The notebook's statement: dequantize(quantize_int8(w)) is within s/2 of w."""
    w = torch.randn(200) * 0.1
    q, s = quantize_int8(w)
    assert (dequantize(q, s, 0) - w).abs().max() <= s / 2 + 1e-9
