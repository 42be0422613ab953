"""The GPT's speedrun options (issue 19): rotary positions, QK-norm, ReLU², an untied head, Muon + AdamW."""
from __future__ import annotations

import copy

import pytest
import torch

from kit.models.gpt import GPT, GPTConfig, KVCache, rope_tables, rotate
from kit.train import train_gpt
from kit.train.config import TrainConfig
from kit.train.optim import MuonAdamW, hidden_matrices

ALL = dict(pos="rope", qk_norm=True, activation="relu2", tie_weights=False)


def tiny(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(**({"vocab_size": 23, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 32} | kw))).eval()


def test_rope_scores_depend_only_on_the_offset():
    """q·k after rotation at positions (m, n) equals the same at (m+s, n+s)."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(16, generator=g), torch.randn(16, generator=g)
    cos, sin = rope_tables(64, 16)
    score = lambda m, n: (rotate(q, cos[m], sin[m]) * rotate(k, cos[n], sin[n])).sum()
    for m, n, s in [(3, 1, 10), (7, 7, 40), (0, 5, 20)]:
        torch.testing.assert_close(score(m, n), score(m + s, n + s), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(score(3, 1), score(3, 2))  # but they do depend on the offset


def test_rope_matches_transformers_llama():
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 3, 10, 8, generator=g), torch.randn(2, 3, 10, 8, generator=g)
    cos, sin = rope_tables(10, 8)
    ref_q, ref_k = llama.apply_rotary_pos_emb(q, k, torch.cat([cos, cos], -1)[None], torch.cat([sin, sin], -1)[None])
    torch.testing.assert_close(rotate(q, cos, sin), ref_q)
    torch.testing.assert_close(rotate(k, cos, sin), ref_k)


@pytest.mark.parametrize("kw", [dict(pos="rope"), dict(qk_norm=True), dict(activation="relu2"), ALL])
def test_cache_equals_full_forward_with_every_option(kw):
    m = tiny(**kw)
    x = torch.randint(23, (3, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = m(x)
        cache = KVCache(m.cfg, 3, "cpu")
        parts = torch.cat([m(x[:, :5], cache=cache), m(x[:, 5:6], cache=cache), m(x[:, 6:16], cache=cache)], 1)
    torch.testing.assert_close(parts, full, atol=1e-5, rtol=1e-5)
    p = x[:, :3]
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(m.generate(p, 20, generator=g1), m.generate(p, 20, generator=g2, use_cache=False))


def test_options_change_the_model_as_described():
    m = tiny(**ALL)
    assert m.wpe is None and m.lm_head.weight is not m.wte.weight
    tied = tiny()
    assert tied.lm_head.weight is tied.wte.weight
    h = torch.randn(4, 32)
    mlp = m.blocks[0].mlp
    torch.testing.assert_close(mlp(h), mlp.c_proj(torch.relu(mlp.c_fc(h)) ** 2))
    with pytest.raises(ValueError, match="pos"):
        GPTConfig(pos="alibi")
    with pytest.raises(ValueError, match="activation"):
        GPTConfig(activation="swish")
    with pytest.raises(ValueError, match="GPT-2's format"):
        m.save_pretrained("/nonexistent/never-written")


def test_muon_takes_the_hidden_matrices_and_matches_torch_muon():
    m = tiny(tie_weights=False)
    hidden, rest = hidden_matrices(m)
    assert {id(p) for p in hidden} == {id(b.attn.c_attn.weight) for b in m.blocks} | \
        {id(b.attn.c_proj.weight) for b in m.blocks} | {id(b.mlp.c_fc.weight) for b in m.blocks} | \
        {id(b.mlp.c_proj.weight) for b in m.blocks}
    assert len(hidden) + len(rest) == len(list(m.parameters()))
    ref = copy.deepcopy(m)
    opt = MuonAdamW(*hidden_matrices(m), lr=0.02, weight_decay=0.1)
    ref_h, ref_rest = hidden_matrices(ref)
    ref_muon = torch.optim.Muon(ref_h, lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    ref_adam = torch.optim.AdamW([{"params": [p for p in ref_rest if p.ndim >= 2], "weight_decay": 0.1},
                                  {"params": [p for p in ref_rest if p.ndim < 2], "weight_decay": 0.0}],
                                 lr=0.02, betas=(0.9, 0.99))
    x = torch.randint(23, (4, 16), generator=torch.Generator().manual_seed(4))
    for model, steps in ((m, [opt]), (ref, [ref_muon, ref_adam])):
        model.train()
        for _ in range(3):
            model(x[:, :-1], x[:, 1:])[1].backward()
            for o in steps:
                o.step()
                o.zero_grad()
    for a, b in zip(m.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)
    state = opt.state_dict()
    opt2 = MuonAdamW(*hidden_matrices(m), lr=0.02)
    opt2.load_state_dict(state)
    assert len(opt2.state) == len(opt.state) > 0


def test_train_gpt_with_muon_learns():
    ids = torch.arange(50).repeat(200) % 23
    tc = TrainConfig(batch_size=16, steps=40, eval_every=40, eval_tokens=2000, optimizer="muon", lr=3e-3)
    run = train_gpt(tiny(**ALL).train(), ids[:8000], ids[8000:], tc, device="cpu", progress=False)
    assert run.final_val_loss < 2.0, run.final_val_loss
    with pytest.raises(ValueError, match="optimizer"):
        train_gpt(tiny(), ids[:8000], ids[8000:], TrainConfig(steps=1, optimizer="lion"), device="cpu", progress=False)
