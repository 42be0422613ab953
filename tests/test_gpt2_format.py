"""GPT-2 checkpoints: kit's GPT loads what `transformers` writes (same logits), and writes what it loads."""
from __future__ import annotations

import pytest
import torch

from kit.models.gpt import GPT, GPTConfig

transformers = pytest.importorskip("transformers")


def _hf_tiny(tmp_path, safe=True, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=97, n_positions=32, n_embd=48, n_layer=2, n_head=4)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # non-trivial biases and LayerNorms, so a transposed or dropped tensor shows
        for n, p in hf.named_parameters():
            if n.endswith("bias") or "ln_" in n:
                p.add_(0.1 * torch.randn_like(p))
    hf.save_pretrained(tmp_path, safe_serialization=safe)
    return hf


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "pytorch_model.bin"])
def test_logits_match_transformers(tmp_path, safe):
    hf = _hf_tiny(tmp_path, safe)
    ours = GPT.from_pretrained(tmp_path)
    assert ours.cfg.bias and ours.cfg.activation == "gelu_tanh" and ours.cfg.block_size == 32
    idx = torch.randint(0, 97, (3, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (ours(idx) - hf(idx).logits).abs().max().item()
    assert diff <= 1e-4, diff


def test_greedy_generation_matches_transformers(tmp_path):
    hf = _hf_tiny(tmp_path)
    ours = GPT.from_pretrained(tmp_path)
    prompt = torch.tensor([[5, 17, 42]])
    theirs = hf.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(prompt, 12, temperature=0), theirs)


@pytest.mark.parametrize("cfg", [GPTConfig(vocab_size=61, block_size=16, n_layer=2, n_head=2, n_embd=32),
                                 GPTConfig(vocab_size=61, block_size=16, n_layer=1, n_head=2, n_embd=32, bias=True,
                                           activation="gelu_tanh")], ids=["kit-default", "gpt2-like"])
def test_saved_in_gpt2_format_transformers_loads_the_same_model(tmp_path, cfg):
    torch.manual_seed(0)
    ours = GPT(cfg).eval()
    ours.save_pretrained(tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    again = GPT.from_pretrained(tmp_path)
    idx = torch.randint(0, 61, (2, 16))
    with torch.no_grad():
        assert (hf(idx).logits - ours(idx)).abs().max() <= 1e-5
        assert (again(idx) - ours(idx)).abs().max() <= 1e-6


def test_saved_end_of_text_token_is_the_vocabularys_own(tmp_path):
    m = GPT(GPTConfig(vocab_size=61, block_size=16, n_layer=1, n_head=2, n_embd=32))
    m.save_pretrained(tmp_path / "none")   # a character vocabulary without one: not GPT-2's 50256
    assert transformers.GPT2Config.from_pretrained(tmp_path / "none").eos_token_id is None
    m.save_pretrained(tmp_path / "eos", eos_token_id=60)
    c = transformers.GPT2Config.from_pretrained(tmp_path / "eos")
    assert c.eos_token_id == c.bos_token_id == 60
    with pytest.raises(ValueError, match="eos_token_id must be a token id in"):
        m.save_pretrained(tmp_path / "bad", eos_token_id=61)
    assert not list(tmp_path.glob("*/.*.tmp"))


def test_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        GPT.from_pretrained(tmp_path)
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="could not get the checkpoint 'kit-test/no-such-model'"):
        GPT.from_pretrained("kit-test/no-such-model")
    # a folder named like the real GPT-2 is checked against its published sha256
    _hf_tiny(tmp_path / "gpt2")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="does not match the published sha256 of 'gpt2'"):
        GPT.from_pretrained("gpt2")
    with pytest.raises(ValueError, match="activation"):
        GPTConfig(activation="relu")
