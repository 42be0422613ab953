"""Lesson 09's exercises (right answers pass on fresh inputs, typical mistakes fail naming the case) and teaching fixes."""
import math

import pytest
import torch

from kit.exercises import verdict
from kit.models.gpt import GPT, GPTConfig, flops_per_token


def temperature_probs(logits, temperature):
    return torch.softmax(logits / temperature, dim=-1)


def top_k_filter(probs, k):
    k = min(k, probs.shape[-1])
    kth = probs.sort(dim=-1, descending=True).values[..., k - 1:k]
    kept = probs * (probs >= kth)
    return kept / kept.sum(dim=-1, keepdim=True)


def gpt_n_params(vocab_size, block_size, n_layer, n_embd):
    d = n_embd
    return vocab_size * d + block_size * d + n_layer * (12 * d * d + 2 * d) + d


def top_p_filter(probs, p):
    bigger = probs.unsqueeze(-2) > probs.unsqueeze(-1)
    mass_above = (probs.unsqueeze(-2) * bigger).sum(dim=-1)
    kept = torch.where(mass_above < p, probs, torch.zeros_like(probs))
    return kept / kept.sum(dim=-1, keepdim=True)


@pytest.mark.parametrize("id,fn", [("09.1", temperature_probs), ("09.2", top_k_filter), ("09.3", gpt_n_params),
                                   ("09.4", top_p_filter)])
def test_right_answers_pass_on_fresh_inputs(id, fn):
    for _ in range(5):
        assert verdict(id, fn) is None


def test_temperature_multiplied_fails():
    msg = verdict("09.1", lambda z, t: torch.softmax(z * t, -1))
    assert msg and "τ = 0.7" in msg


def test_temperature_naive_softmax_overflows():
    msg = verdict("09.1", lambda z, t: (z / t).exp() / (z / t).exp().sum(-1, keepdim=True))
    assert msg and "huge logits" in msg


def test_temperature_softmax_over_wrong_axis_fails():
    msg = verdict("09.1", lambda z, t: torch.softmax(z / t, 0))
    assert msg and "batch" in msg


def test_top_k_without_renormalising_fails():
    def wrong(p, k):
        kth = torch.topk(p, k, -1).values[..., -1:]
        return p * (p >= kth)
    msg = verdict("09.2", wrong)
    assert msg and "random probabilities" in msg


def test_top_k_that_breaks_ties_fails():
    def wrong(p, k):  # exactly k tokens, even when the k-th is tied
        idx = torch.topk(p, k, -1).indices
        kept = torch.zeros_like(p).scatter(-1, idx, p.gather(-1, idx))
        return kept / kept.sum(-1, keepdim=True)
    msg = verdict("09.2", wrong)
    assert msg and "ties" in msg


def test_n_params_without_position_table_fails():
    msg = verdict("09.3", lambda V, T, L, d: V * d + L * (12 * d * d + 2 * d) + d)
    assert msg and "vocab 65, block 64" in msg


def test_n_params_counting_untied_output_fails():
    msg = verdict("09.3", lambda V, T, L, d: 2 * V * d + T * d + L * (12 * d * d + 2 * d) + d)
    assert msg and "vocab 65" in msg


def test_n_params_forgetting_final_layernorm_fails_on_no_layers():
    msg = verdict("09.3", lambda V, T, L, d: V * d + T * d + L * (12 * d * d + 2 * d) + (d if L else 0))
    assert msg and "no layers" in msg


def test_top_p_cumsum_including_itself_fails():
    def wrong(p, top):  # drops the token that crosses p (keeps only tokens whose own cumsum < p)
        s, order = p.sort(-1, descending=True)
        keep_sorted = s.cumsum(-1) < top
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        kept = p * keep
        return kept / kept.sum(-1, keepdim=True).clamp_min(1e-300)
    msg = verdict("09.4", wrong)
    assert msg and "random probabilities" in msg


def test_top_p_sorted_cumsum_breaks_ties_and_fails():
    def wrong(p, top):  # kit's own filter_logits rule on probabilities: ties are split by the sort
        s, order = p.sort(-1, descending=True)
        drop_sorted = (s.cumsum(-1) - s) >= top
        keep = ~torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        kept = p * keep
        return kept / kept.sum(-1, keepdim=True)
    msg = verdict("09.4", wrong)
    assert msg and "ties" in msg


def test_filter_logits_is_not_an_answer():
    from kit.text import filter_logits
    assert verdict("09.2", lambda p, k: filter_logits(p, top_k=k)) is not None
    assert verdict("09.4", lambda p, q: filter_logits(p, top_p=q)) is not None


# ------------------------------------------------------------------ teaching fixes
def test_flops_per_token_is_what_its_docstring_says():
    """6·N plus 12·n_layer·T·n_embd, with no halving for the causal mask (the docstring says so)."""
    cfg = GPTConfig(vocab_size=65, block_size=64, n_layer=3, n_head=2, n_embd=32)
    N = GPT(cfg).n_params()
    assert flops_per_token(cfg, N) == 6 * N + 12 * 3 * 64 * 32
    assert flops_per_token(cfg, N, seq_len=16) == 6 * N + 12 * 3 * 16 * 32
    doc = flops_per_token.__doc__
    assert "12·n_layer·T·n_embd" in doc and "this count does not" in doc


def test_bpe_tokens_per_char_and_vocab():
    """The notebook's tokenizer table: a char vocabulary gives 1 token/char; BPE fewer, more so with a larger vocab."""
    from kit.data import load
    from kit.data.tokenizers import CharVocab, tokens_per_char, train_bpe
    text = load("tinyshakespeare").text[:120_000]
    train, val = text[:100_000], text[100_000:]
    assert tokens_per_char(CharVocab.from_text(text), val) == 1.0
    small, large = train_bpe(train, 300), train_bpe(train, 800)
    assert small.get_vocab_size() == 300 and large.get_vocab_size() == 800
    t_small, t_large = tokens_per_char(small, val), tokens_per_char(large, val)
    assert t_large < t_small < 1.0
    ids = large.encode(val).ids
    assert math.isclose(t_large, len(ids) / len(val)) and large.decode(ids) == val  # lossless
    assert train_bpe(train, 300).encode(val).ids == small.encode(val).ids  # deterministic
    with pytest.raises(ValueError):
        train_bpe(train, 100)
