"""Lesson 09's exercises (right answers pass on fresh inputs, typical mistakes fail naming the case) and teaching fixes."""
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kit.exercises import exercises, verdict
from kit.models.gpt import GPT, GPTConfig, flops_per_token


def temperature_probs(logits, temperature):
    return torch.softmax(logits / temperature, dim=-1)


def top_k_filter(probs, k):
    kth = probs.sort(dim=-1, descending=True).values.gather(-1, (k - 1)[:, None])
    kept = probs * (probs >= kth)
    return kept / kept.sum(dim=-1, keepdim=True)


def gpt_n_params(vocab_size, block_size, n_layer, n_embd):
    d = n_embd
    return vocab_size * d + block_size * d + n_layer * (12 * d * d + 2 * d) + d


def top_p_filter(probs, p):
    bigger = probs.unsqueeze(-2) > probs.unsqueeze(-1)
    mass_above = (probs.unsqueeze(-2) * bigger).sum(dim=-1)
    kept = torch.where(mass_above < p[:, None], probs, torch.zeros_like(probs))
    return kept / kept.sum(dim=-1, keepdim=True)


def attend_with_cache(q, k_new, v_new, k_cache, v_cache):
    k, v = torch.cat([k_cache, k_new], 2), torch.cat([v_cache, v_new], 2)
    P, T = k_cache.shape[2], q.shape[2]
    mask = torch.ones(T, P + T, dtype=torch.bool).tril(diagonal=P)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), k, v


RIGHT = [("09.1", temperature_probs), ("09.2", top_k_filter), ("09.3", gpt_n_params), ("09.4", top_p_filter),
         ("09.5", attend_with_cache)]


def test_five_exercises_in_order():
    assert [e.id for e in exercises("09")] == [i for i, _ in RIGHT]


@pytest.mark.parametrize("id,fn", RIGHT)
def test_right_answers_pass_on_fresh_inputs(id, fn):
    for _ in range(100):
        assert verdict(id, fn) is None


def fails_every_time(id, fn, *words, n=100):
    """``fn`` fails exercise ``id`` on ``n`` fresh draws, each time naming a case that holds every word."""
    for _ in range(n):
        msg = verdict(id, fn)
        assert msg and msg.startswith("on the case '") and all(w in msg for w in words), msg


# ------------------------------------------------------------------ 09.1
def test_temperature_multiplied_fails():
    fails_every_time("09.1", lambda z, t: torch.softmax(z * t, -1), "τ = 0.7")


def test_temperature_naive_softmax_overflows():
    fails_every_time("09.1", lambda z, t: (z / t).exp() / (z / t).exp().sum(-1, keepdim=True), "huge logits")


def test_temperature_softmax_over_wrong_axis_fails():
    fails_every_time("09.1", lambda z, t: torch.softmax(z / t, 0), "batch")


# ------------------------------------------------------------------ 09.2
def test_top_k_one_liner_around_kits_sampler_fails():
    """The old 09.2 was softmax(filter_logits(log p, top_k=k)) away; kit's sampler takes one k per batch."""
    from kit.text import filter_logits
    fails_every_time("09.2", lambda p, k: torch.softmax(filter_logits(p.log(), top_k=k), -1), "random probabilities")
    for pick in (lambda k: int(k[0]), lambda k: int(k.max()), lambda k: int(k.min())):  # one k for the whole batch
        fails_every_time("09.2", lambda p, k: torch.softmax(filter_logits(p.log(), top_k=pick(k)), -1),
                         "random probabilities")


def test_top_k_without_renormalising_fails():
    def wrong(p, k):
        kth = p.sort(-1, descending=True).values.gather(-1, (k - 1)[:, None])
        return p * (p >= kth)
    fails_every_time("09.2", wrong, "random probabilities")


def test_top_k_that_breaks_ties_fails():
    def wrong(p, k):  # exactly k tokens per row, even when the k-th is tied
        order = p.argsort(-1, descending=True)
        rank = torch.empty_like(order).scatter_(-1, order, torch.arange(p.shape[-1]).expand_as(order))
        kept = p * (rank < k[:, None])
        return kept / kept.sum(-1, keepdim=True)
    fails_every_time("09.2", wrong, "ties")


def test_top_k_off_by_one_fails():
    def wrong(p, k):  # the (k+1)-th largest as the threshold
        kth = p.sort(-1, descending=True).values.gather(-1, k.clamp_max(p.shape[-1] - 1)[:, None])
        kept = p * (p >= kth)
        return kept / kept.sum(-1, keepdim=True)
    fails_every_time("09.2", wrong, "random probabilities")


# ------------------------------------------------------------------ 09.3
def test_n_params_without_position_table_fails():
    fails_every_time("09.3", lambda V, T, L, d: V * d + L * (12 * d * d + 2 * d) + d, "vocab 65, block 64", n=5)


def test_n_params_counting_untied_output_fails():
    fails_every_time("09.3", lambda V, T, L, d: 2 * V * d + T * d + L * (12 * d * d + 2 * d) + d, "vocab 65", n=5)


def test_n_params_forgetting_final_layernorm_fails_on_no_layers():
    fails_every_time("09.3", lambda V, T, L, d: V * d + T * d + L * (12 * d * d + 2 * d) + (d if L else 0),
                     "no layers", n=5)


# ------------------------------------------------------------------ 09.4
def test_top_p_one_liner_around_kits_sampler_fails():
    from kit.text import filter_logits
    fails_every_time("09.4", lambda p, q: torch.softmax(filter_logits(p.log(), top_p=q), -1), "random probabilities")
    fails_every_time("09.4", lambda p, q: torch.softmax(filter_logits(p.log(), top_p=float(q[0])), -1),
                     "random probabilities")


def test_top_p_cumsum_including_itself_fails():
    def wrong(p, top):  # drops the token that crosses p (keeps only tokens whose own cumsum < p)
        s, order = p.sort(-1, descending=True)
        keep_sorted = s.cumsum(-1) < top[:, None]
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        kept = p * keep
        return kept / kept.sum(-1, keepdim=True).clamp_min(1e-300)
    fails_every_time("09.4", wrong, "random probabilities")


def test_top_p_sorted_cumsum_breaks_ties_and_fails():
    def wrong(p, top):  # the former sampler's rule: ties split by the sort
        s, order = p.sort(-1, descending=True)
        drop_sorted = (s.cumsum(-1) - s) >= top[:, None]
        keep = ~torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        kept = p * keep
        return kept / kept.sum(-1, keepdim=True)
    fails_every_time("09.4", wrong, "ties")


# ------------------------------------------------------------------ 09.5
def test_kv_cache_reference_is_full_causal_attention():
    """kit's reference for 09.5 gives the last T rows of causal attention over all P + T tokens, and feeding the
    tokens one at a time through a growing cache gives full causal attention."""
    from kit.exercises.lesson09 import _attend_with_cache
    g = torch.Generator().manual_seed(0)
    for P, T in ((0, 5), (4, 1), (3, 3), (7, 2)):
        q, k, v = (torch.randn(2, 3, P + T, 8, generator=g, dtype=torch.float64) for _ in range(3))
        full = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y, kc, vc = _attend_with_cache(q[:, :, P:], k[:, :, P:], v[:, :, P:], k[:, :, :P], v[:, :, :P])
        assert torch.allclose(y, full[:, :, P:], atol=1e-12) and torch.equal(kc, k) and torch.equal(vc, v)
    kc = vc = k[:, :, :0]
    steps = []
    for t in range(k.shape[2]):
        y, kc, vc = _attend_with_cache(q[:, :, t:t + 1], k[:, :, t:t + 1], v[:, :, t:t + 1], kc, vc)
        steps.append(y)
    assert torch.allclose(torch.cat(steps, 2), F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-12)


def test_kv_cache_without_mask_fails():
    def wrong(q, k_new, v_new, k_cache, v_cache):
        k, v = torch.cat([k_cache, k_new], 2), torch.cat([v_cache, v_new], 2)
        return F.scaled_dot_product_attention(q, k, v), k, v
    fails_every_time("09.5", wrong, "empty cache")


def test_kv_cache_mask_not_offset_fails():
    def wrong(q, k_new, v_new, k_cache, v_cache):  # a plain lower triangle: forgets the P cached positions
        k, v = torch.cat([k_cache, k_new], 2), torch.cat([v_cache, v_new], 2)
        mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril()
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), k, v
    fails_every_time("09.5", wrong, "one new token after")


def test_kv_cache_new_tokens_first_fails():
    def wrong(q, k_new, v_new, k_cache, v_cache):  # the right output, but the cache grows in the wrong order
        y = attend_with_cache(q, k_new, v_new, k_cache, v_cache)[0]
        return y, torch.cat([k_new, k_cache], 2), torch.cat([v_new, v_cache], 2)
    fails_every_time("09.5", wrong, "one new token after")


def test_kv_cache_unscaled_scores_fail():
    def wrong(q, k_new, v_new, k_cache, v_cache):
        y, k, v = attend_with_cache(q * q.shape[-1] ** 0.5, k_new, v_new, k_cache, v_cache)
        return y, k, v
    fails_every_time("09.5", wrong, "empty cache")


def test_kv_cache_returning_the_old_cache_fails():
    fails_every_time("09.5", lambda q, k, v, kc, vc: (attend_with_cache(q, k, v, kc, vc)[0], kc, vc), "empty cache")


# ------------------------------------------------------------------ one rule for top-p: kit's sampler = 09.4
def test_kits_sampler_keeps_tied_tokens_together_like_the_exercise():
    """``filter_logits``'s top-p set is 09.4's reference set (random rows with injected ties; p away from the
    boundaries, where float32 and float64 sums may round differently); its top-k keeps ties with the k-th too."""
    from kit.exercises.lesson09 import _top_k, _top_p
    from kit.text import filter_logits
    rng = np.random.default_rng(0)
    for _ in range(500):
        V = int(rng.integers(3, 30))
        p = rng.dirichlet(np.ones(V) * 0.7)
        p[rng.integers(0, V, size=V // 2)] = p[int(rng.integers(0, V))]  # ties, at random ranks
        p = torch.tensor(p / p.sum())
        above = torch.stack([(p * (p > x)).sum() for x in p])
        q = float(rng.uniform(0.02, 1.0))
        if (above - q).abs().min() < 1e-6:
            continue
        want = _top_p(p[None], torch.tensor([q], dtype=torch.float64))[0] > 0
        assert torch.equal(filter_logits(p.log()[None].float(), top_p=q)[0].isfinite(), want)
        assert torch.equal(filter_logits(p.log(), top_p=q).isfinite(), want)
        k = int(rng.integers(1, V + 1))
        assert torch.equal(filter_logits(p.log(), top_k=k).isfinite(), _top_k(p[None], torch.tensor([k]))[0] > 0)
    z = torch.tensor([[2.0, 1.0, 1.0, 1.0, 0.0]])  # probabilities ≈ [0.45, 0.17, 0.17, 0.17, 0.06]
    assert filter_logits(z, top_p=0.5).isfinite().tolist() == [[True, True, True, True, False]]


def test_former_one_liners_are_not_answers():
    from kit.text import filter_logits
    assert verdict("09.2", lambda p, k: filter_logits(p, top_k=k)) is not None
    assert verdict("09.4", lambda p, q: filter_logits(p, top_p=q)) is not None


def test_hints_nudge_without_the_answer():
    hints = {e.id: " ".join(e.hints) for e in exercises("09")}
    assert "torch has a function" not in hints["09.1"]
    assert "topk" not in hints["09.2"] and "strictly greater" not in hints["09.4"]
    assert all(len(e.hints) >= 2 for e in exercises("09"))


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


def test_peak_bf16_lists_only_gpus_with_bf16():
    from kit.models.gpt import PEAK_BF16
    assert not {"V100", "T4", "P100"} & set(PEAK_BF16)
    assert list(PEAK_BF16).index("A100") < list(PEAK_BF16).index("A10")
    assert list(PEAK_BF16).index("L40S") < list(PEAK_BF16).index("L4")


ROOT = Path(__file__).resolve().parents[1]
SRC = (ROOT / "notebooks" / "src" / "09_gpt.py").read_text()


def test_reference_throughput_is_the_benchmarks_cpu_preset():
    """The lesson compares a run's tokens/s with the cpu preset's on a quiet machine: the speedrun's last row."""
    import json
    import statistics
    ref = int(re.search(r"ref_tokens_per_s = ([\d_]+) if size == \"cpu\"", SRC).group(1))
    rows = json.loads((ROOT / "kit" / "data" / "embedded" / "gpt_speedrun.json").read_text())["rows"]
    from kit.train.config import preset
    cfg, tc = preset("cpu")
    last = rows[-1]
    assert last["model"].get("block_size") == cfg.block_size and last["train"].get("batch_size") == tc.batch_size
    assert ref == round(statistics.mean(r["tokens_per_s"] for r in last["runs"]))  # RESULTS.md's tokens/s column
    assert '"reference_tokens_per_s": ref_tokens_per_s' in SRC


def test_symbols_head_size_and_width_are_distinct():
    assert r"\sqrt{d_h}" in SRC and r"\sqrt{d}" not in SRC
    assert "attention is still a small part" not in SRC and "less noisy direction" not in SRC
