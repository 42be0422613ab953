"""LoRA from scratch against the `peft` library: same outputs and gradients; merge/unmerge; only A, B train."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from kit.models.lora import LoRALinear, apply_lora, merge_lora, trainable_parameters, unmerge_lora


class Tiny(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.q = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.out = nn.Linear(d, 4)

    def forward(self, x):
        return self.out(torch.tanh(self.q(x)) + self.v(x))


def _pair(r=4, alpha=8, rslora=False):
    torch.manual_seed(0)
    base = Tiny().double()
    ours = apply_lora(copy.deepcopy(base), ["q", "v"], r=r, alpha=alpha, rslora=rslora)
    peft = pytest.importorskip("peft")
    theirs = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=["q", "v"],
                                                                      lora_dropout=0.0, use_rslora=rslora))
    g = torch.Generator().manual_seed(1)
    for name in ("q", "v"):
        layer = getattr(theirs.base_model.model, name)
        with torch.no_grad():  # the same initialisation in both; B non-zero so the update shows
            layer.lora_B["default"].weight.copy_(torch.randn(layer.lora_B["default"].weight.shape, generator=g,
                                                             dtype=torch.float64))
            getattr(ours, name).lora_A.copy_(layer.lora_A["default"].weight)
            getattr(ours, name).lora_B.copy_(layer.lora_B["default"].weight)
    return ours, theirs


def test_same_outputs_and_gradients_as_peft():
    ours, theirs = _pair()
    x = torch.randn(8, 16, dtype=torch.float64)
    y_ours, y_theirs = ours(x), theirs(x)
    assert (y_ours - y_theirs).abs().max() < 1e-12
    y_ours.pow(2).sum().backward()
    y_theirs.pow(2).sum().backward()
    for name in ("q", "v"):
        peft_layer = getattr(theirs.base_model.model, name)
        assert torch.allclose(getattr(ours, name).lora_A.grad, peft_layer.lora_A["default"].weight.grad, atol=1e-10)
        assert torch.allclose(getattr(ours, name).lora_B.grad, peft_layer.lora_B["default"].weight.grad, atol=1e-10)
    n_ours = trainable_parameters(ours)
    n_peft = sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    assert n_ours[0] == n_peft == 2 * (4 * 16 + 16 * 4)


def test_rslora_scale_matches_peft():
    ours, theirs = _pair(r=9, alpha=6, rslora=True)
    x = torch.randn(5, 16, dtype=torch.float64)
    assert (ours(x) - theirs(x)).abs().max() < 1e-12 and ours.q.scaling == 6 / 3


def test_starts_as_the_base_model_and_merge_unmerge_keep_outputs():
    torch.manual_seed(0)
    base = Tiny()
    x = torch.randn(5, 16)
    model = apply_lora(copy.deepcopy(base), ["q", "v"], r=2, alpha=4)
    assert torch.equal(model(x), base(x)), "B = 0: the wrapped model starts exactly as the pretrained one"
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.normal_()
    y = model(x)
    merge_lora(model)
    assert (model(x) - y).abs().max() <= 1e-5
    unmerge_lora(model)
    assert (model(x) - y).abs().max() <= 1e-5 and torch.allclose(model.q.base.weight, base.q.weight, atol=1e-6)


def test_only_the_low_rank_factors_train():
    torch.manual_seed(0)
    model = apply_lora(Tiny(), ["q", "v"], r=2, alpha=4, train=["out"])
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable, total = trainable_parameters(model)
    assert trainable == 2 * (2 * 16 + 16 * 2) + (16 * 4 + 4)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, target = torch.randn(32, 16), torch.randn(32, 4)
    losses = []
    for _ in range(50):
        loss = (model(x) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="matches no nn.Linear layer; the model's are named \\['out', 'q', 'v'\\]"):
        apply_lora(Tiny(), ["c_attn"])
    with pytest.raises(ValueError, match="'r'"):
        LoRALinear(nn.Linear(2, 2), r=0)
    with pytest.raises(TypeError, match="wraps nn.Linear"):
        LoRALinear(nn.Conv1d(2, 2, 1))
