"""Lesson 16: its exercises (wrong answers fail, naming the case), the instruction set, the prompt-masked SFT
batches and loss, the memory meter, and the formulas the notebook shows."""
import pytest
import torch
import torch.nn.functional as F

from kit.data import instructions as ins
from kit.exercises import verdict
from kit.models import lora
from kit.models.gpt import GPT, GPTConfig
from kit.train import sft
from kit.train.memory import MemoryMeter, state_bytes


# ---------------------------------------------------------------- exercises: right answers pass, wrong ones fail
def _count(shapes, r):
    return sum(r * (i + o) for o, i in shapes)


def _lora_fwd(x, W, b, A, B, alpha, r):
    h = x @ W.T + alpha / r * (x @ A.T @ B.T)
    return h if b is None else h + b


def _mask(ids, prompt_len, length):
    t = torch.arange(ids.shape[1])[None]
    return torch.where((t >= prompt_len[:, None]) & (t < length[:, None]), ids, torch.full_like(ids, -100))


def _loss(logits, ids, prompt_len, length):
    lab = _mask(ids, prompt_len, length)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), lab[:, 1:].reshape(-1))


@pytest.mark.parametrize("ex, fn", [("16.1", _count), ("16.2", _lora_fwd), ("16.3", _mask), ("16.4", _loss)])
def test_right_answers_pass_on_fresh_inputs(ex, fn):
    for _ in range(5):
        assert verdict(ex, fn) is None


def _mask_by_pad_id(ids, prompt_len, length):  # finds padding by its id: wrong when the id also occurs in text
    lab = ids.clone()
    lab[ids == ids[0, -1]] = -100
    for b, p in enumerate(prompt_len.tolist()):
        lab[b, :p] = -100
    return lab


def _mask_prompt_only(ids, prompt_len, length):
    t = torch.arange(ids.shape[1])[None]
    return torch.where(t >= prompt_len[:, None], ids, torch.full_like(ids, -100))


def _mask_off_by_one(ids, prompt_len, length):
    t = torch.arange(ids.shape[1])[None]
    return torch.where((t > prompt_len[:, None]) & (t < length[:, None]), ids, torch.full_like(ids, -100))


def _mask_in_place(ids, prompt_len, length):
    lab = _mask(ids, prompt_len, length)
    ids.copy_(lab)
    return ids


WRONG = [
    ("16.1", lambda shapes, r: sum(r * o * i for o, i in shapes), "random layers"),           # r·in·out
    ("16.1", lambda shapes, r: sum(o * i for o, i in shapes), "random layers"),               # full fine-tuning
    ("16.1", lambda shapes, r: sum(r * (i + o) for o, i in shapes[:1]), "random layers"),     # one layer only
    ("16.2", lambda x, W, b, A, B, alpha, r: x @ W.T + b + alpha * (x @ A.T @ B.T), "x of shape"),   # no /r
    ("16.2", lambda x, W, b, A, B, alpha, r: x @ W.T + b + (x @ A.T @ B.T), "x of shape"),           # no scale
    ("16.2", lambda x, W, b, A, B, alpha, r: x @ W.T + b + alpha / r * (x @ B @ A), "x of shape"),    # B A swapped
    ("16.2", lambda x, W, b, A, B, alpha, r: x @ W.T + b + alpha / r * (x @ A.T @ B.T), "no bias"),  # b=None
    ("16.3", _mask_prompt_only, "padded batch"),
    ("16.3", _mask_off_by_one, "padded batch"),
    ("16.4", lambda lg, ids, p, L: F.cross_entropy(lg.reshape(-1, lg.shape[-1]), _mask(ids, p, L).reshape(-1)),
     "sequences"),                                                                                   # no shift
    ("16.4", lambda lg, ids, p, L: F.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]), ids[:, 1:].reshape(-1)),
     "sequences"),                                                                                   # no mask
    ("16.4", lambda lg, ids, p, L: torch.stack([F.cross_entropy(lg[b, :-1], _mask(ids, p, L)[b, 1:])
                                                for b in range(len(p))]).mean(),
     ("sequences", "answers of 1 and 5")),  # mean of means: the random case may have near-equal answer lengths
]


@pytest.mark.parametrize("ex, fn, case", WRONG)
def test_wrong_answers_fail_naming_the_case(ex, fn, case):
    why = verdict(ex, fn)
    assert why is not None and "on the case '" in why, why
    assert any(c in why for c in ((case,) if isinstance(case, str) else case)), why


def test_mask_by_padding_id_and_in_place_fail():
    for _ in range(3):
        why = verdict("16.3", _mask_by_pad_id)
        assert why is not None and "on the case '" in why
    assert verdict("16.3", _mask_in_place) is None or "on the case" in verdict("16.3", _mask_in_place)


def test_mean_of_sequence_means_fails_on_the_uneven_case():
    def mean_of_means(lg, ids, p, L):
        lab = _mask(ids, p, L)
        return torch.stack([F.cross_entropy(lg[b, :-1], lab[b, 1:]) for b in range(len(p))]).mean()
    # the first random case may have near-equal answer lengths; the fixed 1-vs-5-token case always catches it
    why = verdict("16.4", mean_of_means)
    assert why is not None and "on the case '" in why


# ---------------------------------------------------------------- the formulas the notebook shows
def test_lora_formula_count_and_merge():
    torch.manual_seed(0)
    base = torch.nn.Linear(12, 7)
    layer = lora.LoRALinear(base, r=3, alpha=6.0)
    torch.nn.init.normal_(layer.lora_B)
    x = torch.randn(5, 12)
    want = x @ base.weight.T + base.bias + (6.0 / 3) * (x @ layer.lora_A.T @ layer.lora_B.T)
    assert torch.allclose(layer(x), want, atol=1e-6)                       # h = Wx + b + (α/r) B A x
    assert lora.trainable_parameters(layer)[0] == 3 * (12 + 7)             # r (d_in + d_out)
    with torch.no_grad():
        layer.merge()
    assert torch.allclose(layer(x), want, atol=1e-5)                       # W' = W + (α/r) B A
    assert verdict("16.1", _count) is None and _count([(7, 12)], 3) == 3 * 19


def test_training_flops_per_token_as_the_notebook_counts_them():
    # linear_train_flops: 6·d_in·d_out for a trained layer, 4·d_in·d_out for a frozen one (forward and the input's
    # gradient, no weight gradient), and 6·r·(d_in + d_out) more for LoRA's A and B — checked with torch's FLOP counter
    from torch.utils.flop_counter import FlopCounterMode
    T, d_in, d_out, r = 10, 96, 288, 8      # the lesson's GPT: c_attn maps n_embd = 96 to 3·96

    def flops(layer):
        x = torch.randn(T, d_in, requires_grad=True)   # as inside a network: the input's gradient is needed
        with FlopCounterMode(display=False) as counter:
            layer(x).sum().backward()
        return counter.get_total_flops()

    torch.manual_seed(0)
    assert flops(torch.nn.Linear(d_in, d_out)) == T * 6 * d_in * d_out
    assert flops(torch.nn.Linear(d_in, d_out).requires_grad_(False)) == T * 4 * d_in * d_out
    wrapped = lora.LoRALinear(torch.nn.Linear(d_in, d_out), r=r, alpha=16.0)
    assert flops(wrapped) == T * (4 * d_in * d_out + 6 * r * (d_in + d_out))
    assert 6 * r * (d_in + d_out) == 18_432 and 2 * d_in * d_out == 55_296   # what LoRA adds and skips on c_attn


# ---------------------------------------------------------------- the instruction set
def test_instruction_answers_are_right_and_heldout_is_disjoint():
    train, test = ins.train_test_instructions(500, 100, seed=3)
    assert len(train) == 500 and len(test) == 100 and len({e.instruction for e in test}) == 100
    assert not {e.instruction for e in train} & {e.instruction for e in test}
    test_words = {e.instruction.split()[-1] for e in test if e.task in ("reverse", "upper", "count")}
    train_words = {e.instruction.split()[-1] for e in train if e.task in ("reverse", "upper", "count")}
    assert test_words and not test_words & train_words
    for e in train + test:
        words = e.instruction.split()
        if e.task == "add":
            assert int(e.answer) == int(words[1]) + int(words[3])
        elif e.task == "reverse":
            assert e.answer == words[-1][::-1]
        elif e.task == "upper":
            assert e.answer == words[-1].upper()
        elif e.task == "count":
            assert int(e.answer) == len(words[-1])
        else:
            y, m, d = words[1].split("-")
            assert e.answer == f"{d}/{m}/{y}"
    assert {e.task for e in test} == set(ins.TASKS)
    assert ins.train_test_instructions(500, 100, seed=3) == (train, test)   # deterministic
    assert ins.exact_match(["68", " 5", "x"], ["68", "5", "y"]) == pytest.approx(2 / 3)


# ---------------------------------------------------------------- prompt-masked batches and loss
class _FixedLogits(torch.nn.Module):
    """A 'model' whose logits do not depend on its input, to see what the loss reads."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(logits)

    def forward(self, x, select=None):
        logits = self.logits[:, :x.shape[1]]
        return logits if select is None else logits[select]


def test_sft_batch_masks_prompt_and_padding():
    pairs = [([1, 2, 3], [4, 5]), ([6], [7, 8, 9, 2])]
    x, y = sft.sft_batch(pairs, pad_id=0)
    assert x.tolist() == [[1, 2, 3, 4], [6, 7, 8, 9]]
    assert y.tolist() == [[-100, -100, 4, 5], [7, 8, 9, 2]]
    x, y = sft.sft_batch([([1, 2, 3, 4], [5]), ([6], [7])], pad_id=0)
    assert x.tolist() == [[1, 2, 3, 4], [6, 7, 0, 0]] and y.tolist() == [[-100, -100, -100, 5], [7, -100, -100, -100]]
    with pytest.raises(ValueError, match="block_size"):
        sft.sft_batch(pairs, block_size=3)


def test_masked_loss_ignores_prompt_targets_and_is_the_token_mean():
    torch.manual_seed(0)
    V = 11
    pairs = [([1, 2, 3, 4], [5, 6]), ([7, 8], [9, 10, 3, 2])]
    x, y = sft.sft_batch(pairs, pad_id=0)
    m = sft.MaskedLM(_FixedLogits(torch.randn(2, x.shape[1], V)))
    loss = m(x, y)
    # the notebook's formula: mean over answer tokens of −log p(next token)
    logp = m.model.logits.log_softmax(-1)
    terms = [-logp[b, t, y[b, t]] for b in range(2) for t in range(x.shape[1]) if y[b, t] != -100]
    assert len(terms) == 2 + 4 and torch.allclose(loss, torch.stack(terms).mean())
    # changing a prompt token (its target) leaves the loss unchanged; changing an answer token does not
    x2, y2 = sft.sft_batch([([1, 9, 9, 4], [5, 6]), ([3, 8], [9, 10, 3, 2])], pad_id=0)
    assert torch.equal(m(x2, y2), loss)
    x3, y3 = sft.sft_batch([([1, 2, 3, 4], [5, 7]), ([7, 8], [9, 10, 3, 2])], pad_id=0)
    assert not torch.equal(m(x3, y3), loss)
    # and the padding id does not matter
    x4, y4 = sft.sft_batch(pairs, pad_id=5)
    assert torch.equal(m(x4, y4), loss)


def test_masked_loss_equals_exercise_reference_on_a_gpt():
    torch.manual_seed(1)
    gpt = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=1, n_head=2, n_embd=16))
    pairs = [([1, 2, 3], [4, 5, 6]), ([7, 8, 9, 10, 11], [12])]
    x, y = sft.sft_batch(pairs, pad_id=0)
    ids = torch.tensor([[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]])
    logits = gpt(ids)
    want = _loss(logits, ids, torch.tensor([3, 5]), torch.tensor([6, 6]))
    assert torch.allclose(sft.MaskedLM(gpt)(x, y), want, atol=1e-6)


def test_sft_train_changes_only_lora_and_generation_batches_agree():
    torch.manual_seed(2)
    gpt = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=1, n_head=2, n_embd=16))
    frozen = {n: p.detach().clone() for n, p in gpt.named_parameters()}
    lora.apply_lora(gpt, ["c_attn", "c_proj", "c_fc"], r=2, alpha=4)
    pairs = [([1, 2, 3], [4, 5, 0]), ([7, 8], [9, 0])]
    hist = sft.sft_train(gpt, pairs, steps=20, batch_size=4, lr=1e-2, progress=False, device="cpu")
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    for n, p in gpt.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, frozen[n.replace(".base", "")]), n
    itos = [chr(ord("a") + i) for i in range(13)]
    enc = lambda s: [itos.index(c) for c in s]
    dec = lambda ids: "".join(itos[i] for i in ids)
    prompts = ["bcd", "hi", "bcd", "jkl"]
    together = sft.generate_answers(gpt, enc, dec, prompts, 4, end="a")
    alone = [sft.generate_answers(gpt, enc, dec, [p], 4, end="a")[0] for p in prompts]
    assert together == alone and all("a" not in r for r in together)


# ---------------------------------------------------------------- the memory meter
def test_memory_meter_counts_gradients_and_adam_state_of_trained_weights_only():
    from kit.train import fit
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 4))
    X, Y = torch.randn(64, 20), torch.randint(0, 4, (64,))
    full = MemoryMeter()
    fit(net, (X, Y), loss_fn=F.cross_entropy, epochs=1, batch_size=16, optimizer="adamw", progress=False, device="cpu",
        callbacks=[full])
    n = sum(p.numel() for p in net.parameters())
    assert full.parts["gradients"] == 4 * n and full.parts["optimizer"] == 2 * 4 * n
    assert full.parts["activations"] > 0 and full.peak_bytes == sum(full.parts.values())
    net2 = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 4))
    lora.apply_lora(net2, ["0", "2"], r=2)
    small = MemoryMeter()
    fit(net2, (X, Y), loss_fn=F.cross_entropy, epochs=1, batch_size=16, optimizer="adamw", progress=False,
        device="cpu", callbacks=[small])
    k = lora.trainable_parameters(net2)[0]
    assert k == 2 * (20 + 30) + 2 * (30 + 4)
    assert small.parts["gradients"] == 4 * k and small.parts["optimizer"] == 2 * 4 * k
    assert state_bytes(net2)["weights"] == 4 * sum(p.numel() for p in net2.parameters())
    assert "lower bound" in small.what
    assert small.parts["weights"] > full.parts["weights"] and small.parts["gradients"] < full.parts["gradients"]
