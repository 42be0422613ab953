"""Language-model building blocks: attention vs PyTorch's, the RNN recurrence, clipping, sampling, vocabularies."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kit.models.rnn import CharRNN, RNNCell, RNNConfig, hidden_grad_norms
from kit.models.transformer import (Block, LearnedPositions, MultiHeadAttention, SinusoidalPositions,
                                    TransformerClassifier, TransformerConfig, attention, causal_mask,
                                    sinusoidal_positions)
from kit.text import (CharVocab, WordVocab, evaluate_lm, filter_logits, generate, lm_batches, pad_batch,
                      perplexity, sample_next, split_ids, stream_batches, train_lm, unigram_entropy, words)


# ---------------------------------------------------------------- attention
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-6), (torch.float32, 1e-5)])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_torch_sdpa(dtype, tol, causal):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=g, dtype=dtype) for _ in range(3))
    ours = attention(q, k, v, causal=causal)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert (ours - ref).abs().max().item() < tol


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-6), (torch.float32, 1e-5)])
def test_attention_with_boolean_and_float_masks_matches_torch(dtype, tol):
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 2, 5, 4, generator=g, dtype=dtype)
    k, v = (torch.randn(2, 2, 6, 4, generator=g, dtype=dtype) for _ in range(2))
    mask = torch.rand(2, 1, 5, 6, generator=g) > 0.3
    mask[..., 0] = True  # every query sees at least one key
    assert (attention(q, k, v, mask=mask) - F.scaled_dot_product_attention(q, k, v, attn_mask=mask)).abs().max() < tol
    fmask = torch.randn(5, 6, generator=g, dtype=dtype)
    assert (attention(q, k, v, mask=fmask) - F.scaled_dot_product_attention(q, k, v, attn_mask=fmask)).abs().max() < tol


def test_attention_weights_are_a_causal_distribution():
    q = k = v = torch.randn(1, 5, 4, dtype=torch.float64)
    out, w = attention(q, k, v, causal=True, return_weights=True)
    assert torch.allclose(w.sum(-1), torch.ones(1, 5, dtype=torch.float64))
    assert (w[0].triu(1) == 0).all() and w[0, 0, 0] == 1
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool))


@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_written_out_equals_fused(causal):
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).double().eval()
    x = torch.randn(3, 6, 16, dtype=torch.float64)
    key_mask = torch.ones(3, 6, dtype=torch.bool)
    key_mask[1, 4:] = False
    fused = mha(x, key_mask, causal=causal)
    written, w = mha(x, key_mask, causal=causal, return_weights=True)
    assert (fused - written).abs().max() < 1e-10
    assert w.shape == (3, 4, 6, 6) and (w[1, :, :, 4:] == 0).all()


def test_multi_head_equals_torch_multihead_attention():
    torch.manual_seed(0)
    ours = MultiHeadAttention(8, 2).double()
    ref = torch.nn.MultiheadAttention(8, 2, batch_first=True).double()
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight)
        ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.proj.weight)
        ref.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    assert (ours(x) - ref(x, x, x, need_weights=False)[0]).abs().max() < 1e-10


def test_positions():
    pe = sinusoidal_positions(50, 16)
    assert pe.shape == (50, 16) and torch.allclose(pe[0, 0::2], torch.zeros(8)) and torch.allclose(pe[0, 1::2], torch.ones(8))
    assert math.isclose(pe[3, 2].item(), math.sin(3 / 10000 ** (2 / 16)), rel_tol=1e-5)
    x = torch.zeros(2, 7, 16)
    assert torch.equal(SinusoidalPositions(50, 16)(x)[0], pe[:7])
    assert sum(p.numel() for p in LearnedPositions(50, 16).parameters()) == 50 * 16


def test_transformer_classifier_ignores_padding_and_shapes():
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=30, n_classes=3, max_len=12, n_embd=16, n_head=2, n_layer=2, dropout=0.0)
    m = TransformerClassifier(cfg).eval()
    ids = torch.tensor([[5, 6, 7, 0, 0, 0]])
    longer = torch.tensor([[5, 6, 7, 0, 0, 0, 0, 0, 0]])
    assert m(ids).shape == (1, 3)
    assert torch.allclose(m(ids), m(longer), atol=1e-5), "extra padding must not change the prediction"
    maps = m.attention_maps(ids)
    assert len(maps) == 2 and maps[0].shape == (1, 2, 6, 6) and (maps[0][..., 3:] == 0).all()
    assert Block(16, 2)(torch.randn(2, 4, 16)).shape == (2, 4, 16)


# ---------------------------------------------------------------- RNN
def test_rnn_cell_equals_hand_unrolled_recurrence():
    torch.manual_seed(0)
    cell = RNNCell(3, 5).double()
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    h0 = torch.randn(2, 5, dtype=torch.float64)
    W_x, b, W_h = cell.in_x.weight, cell.in_x.bias, cell.in_h.weight
    h, hand = h0, []
    for t in range(4):
        h = torch.tanh(x[:, t] @ W_x.T + h @ W_h.T + b)
        hand.append(h)
    outs, h_T = cell.unroll(x, h0)
    assert (outs - torch.stack(hand, 1)).abs().max() < 1e-12 and torch.equal(h_T, outs[:, -1])
    assert (cell(x[:, 0], h0) - hand[0]).abs().max() < 1e-12


def test_rnn_cell_matches_torch_rnn():
    torch.manual_seed(0)
    cell = RNNCell(3, 4).double()
    ref = torch.nn.RNN(3, 4, batch_first=True).double()
    with torch.no_grad():
        ref.weight_ih_l0.copy_(cell.in_x.weight)
        ref.bias_ih_l0.copy_(cell.in_x.bias)
        ref.weight_hh_l0.copy_(cell.in_h.weight)
        ref.bias_hh_l0.zero_()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    assert (cell.unroll(x)[0] - ref(x)[0]).abs().max() < 1e-12


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_char_rnn_state_carries_over(cell):
    torch.manual_seed(0)
    m = CharRNN(RNNConfig(vocab_size=11, n_embd=8, hidden=16, n_layer=2, cell=cell)).eval()
    idx = torch.randint(11, (3, 10))
    full, _ = m(idx)
    a, s = m(idx[:, :4])
    b, _ = m(idx[:, 4:], s)
    assert full.shape == (3, 10, 11)
    assert torch.allclose(full, torch.cat([a, b], 1), atol=1e-6), "chunked run with carried state = one run"


def test_gradient_norms_vanish_and_explode():
    small, big = hidden_grad_norms(0.5, steps=30), hidden_grad_norms(3.0, steps=30)
    assert small[0] < 1e-6 * small[-1], "‖∂L/∂h_t‖ should vanish far back in time for a contracting W_h"
    assert big[0] > 1e2 * big[-1], "‖∂L/∂h_t‖ should explode far back in time for an expanding W_h"
    lin = hidden_grad_norms(1.0, steps=20, nonlinearity="linear")
    assert max(lin) / min(lin) < 1 + 1e-9, "an orthogonal linear recurrence preserves the gradient norm"


def test_gradient_clipping_rescales_to_max_norm():
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([3.0, 4.0, 0.0, 12.0])  # norm 13
    before = torch.nn.utils.clip_grad_norm_([p], max_norm=1.0)
    assert math.isclose(before.item(), 13.0, rel_tol=1e-6)
    assert math.isclose(p.grad.norm().item(), 1.0, rel_tol=1e-6)
    assert torch.allclose(p.grad, torch.tensor([3.0, 4.0, 0.0, 12.0]) / 13, atol=1e-7), "direction kept"
    p.grad = torch.tensor([0.3, 0.4, 0.0, 0.0])
    torch.nn.utils.clip_grad_norm_([p], max_norm=1.0)
    assert torch.allclose(p.grad, torch.tensor([0.3, 0.4, 0.0, 0.0])), "small gradients untouched"


def test_train_lm_clips_and_logs_grad_norm():
    torch.manual_seed(0)
    ids = torch.tensor([0, 1, 2, 3] * 200)
    m = CharRNN(RNNConfig(4, 8, 16, cell="rnn"))
    run = train_lm(m, ids[:600], ids[600:], steps=60, block_size=8, batch_size=4, lr=1e-2, eval_every=30,
                   clip_grad=0.5, device="cpu", progress=False)
    assert run.final_val_loss < 0.5, "a periodic sequence is easy to predict"
    assert run.history["step"] == [30.0, 60.0] and 0 < run.tokens <= 60 * 8 * 4 and run.tokens_per_s > 0
    assert all(g > 0 for g in run.history["grad_norm"])


def test_train_lm_is_deterministic_for_a_seed():
    def once():
        torch.manual_seed(0)
        m = CharRNN(RNNConfig(5, 8, 16, cell="lstm"))
        ids = torch.randint(5, (500,), generator=torch.Generator().manual_seed(1))
        return train_lm(m, ids, ids[:100], steps=10, block_size=8, batch_size=4, eval_every=5, device="cpu",
                        progress=False, stateful=False, seed=3).history.as_dict()
    a, b = once(), once()
    assert a.pop("seconds") and b.pop("seconds")  # wall-clock training time: the only thing that may differ
    assert a == b


# ---------------------------------------------------------------- sampling
def test_top_k_and_top_p_filtering():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2))[0].tolist() == [False, False, True, True]
    assert torch.isinf(filter_logits(logits, top_p=0.7))[0].tolist() == [False, False, True, True]
    assert torch.isinf(filter_logits(logits, top_p=0.85))[0].tolist() == [False, False, False, True]
    assert torch.isinf(filter_logits(logits, top_p=0.1))[0].tolist() == [False, True, True, True]
    assert not torch.isinf(filter_logits(logits, top_p=1.0)).any()


def test_sampling_respects_top_k_and_top_p():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 50, generator=g).repeat(4000, 1)
    top3 = set(torch.topk(logits[0], 3).indices.tolist())
    got = set(sample_next(logits, 1.0, top_k=3, generator=g).tolist())
    assert got == top3
    probs = logits[0].softmax(-1)
    order = probs.argsort(descending=True)
    n_keep = int((probs[order].cumsum(0) < 0.6).sum()) + 1
    got = set(sample_next(logits, 1.0, top_p=0.6, generator=g).tolist())
    assert got == set(order[:n_keep].tolist())


def test_temperature():
    logits = torch.tensor([[2.0, 1.0, 0.0]]).repeat(20000, 1)
    g = torch.Generator().manual_seed(0)
    assert sample_next(logits, 0.0).eq(0).all(), "temperature 0 is greedy"
    freq = lambda t: torch.bincount(sample_next(logits, t, generator=g), minlength=3).float() / 20000
    assert torch.allclose(freq(1.0), logits[0].softmax(-1), atol=0.015)
    assert freq(0.3)[0] > freq(1.0)[0] > freq(3.0)[0], "lower temperature is sharper"
    with pytest.raises(ValueError, match="temperature"):
        sample_next(logits, -1.0)


def test_generate_with_recurrent_and_window_models():
    torch.manual_seed(0)
    m = CharRNN(RNNConfig(7, 8, 16, cell="lstm"))
    out = generate(m, torch.tensor([1, 2]), 10, generator=torch.Generator().manual_seed(0))
    assert out.shape == (12,) and out[:2].tolist() == [1, 2]
    again = generate(m, torch.tensor([1, 2]), 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)

    class Bigram(torch.nn.Module):  # a non-recurrent model: always predicts token (last + 1) % 5
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, idx):
            return F.one_hot((idx + 1) % 5, 5).float() * 100, None

    assert generate(Bigram(), torch.tensor([[0]]), 6, temperature=0, block_size=3).tolist() == [[0, 1, 2, 3, 4, 0, 1]]


# ---------------------------------------------------------------- vocabularies, batches, numbers
def test_char_vocab_round_trip():
    text = "To be, or not to be: that is the question.\nÆsir ✓"
    v = CharVocab.from_text(text)
    ids = v.encode(text)
    assert ids.dtype == torch.long and len(v) == len(set(text))
    assert v.decode(ids) == text and v.decode(ids.tolist()) == text
    assert v.itos == sorted(set(text))
    with pytest.raises(KeyError, match="'Z'"):
        v.encode("Z")
    vu = CharVocab.from_text("abc", unk="?")
    assert vu.decode(vu.encode("abz")) == "ab?"


def test_word_vocab_and_padding():
    v = WordVocab.from_texts(["The cat sat.", "the dog sat!"], specials=["<cls>"])
    assert v.itos[:3] == ["<pad>", "<unk>", "<cls>"] and v.itos[3:5] == ["sat", "the"]
    assert v.encode("The bird sat") == [v.stoi["the"], v.unk_id, v.stoi["sat"]]
    assert words("Don't stop!") == ["don't", "stop", "!"]
    ids, mask = pad_batch([[3, 4, 5], [6]], max_len=2)
    assert ids.tolist() == [[3, 4], [6, 0]] and mask.tolist() == [[True, True], [True, False]]


def test_lm_batches_are_shifted_windows():
    ids = torch.arange(100)
    x, y = lm_batches(ids, 10, 6, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (6, 10) and torch.equal(y, x + 1)
    assert torch.equal(x, lm_batches(ids, 10, 6, torch.Generator().manual_seed(0))[0])
    chunks = list(stream_batches(torch.arange(41), batch_size=2, block_size=8))
    xs = torch.cat([c[0] for c in chunks], 1)
    assert torch.equal(xs, torch.arange(40).view(2, 20)) and torch.equal(chunks[0][1], chunks[0][0] + 1)
    tr, va = split_ids(ids, 0.1)
    assert len(tr) == 90 and va[0] == 90


def test_perplexity_and_unigram_entropy():
    assert perplexity(0.0) == 1.0 and math.isclose(perplexity(math.log(65)), 65)
    ids = torch.tensor([0, 1, 2, 3] * 10)
    assert math.isclose(unigram_entropy(ids), math.log(4))

    class Uniform(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, idx):
            return torch.zeros(*idx.shape, 4) + self.w

    loss = evaluate_lm(Uniform(), ids, block_size=5, batch_size=2)
    assert math.isclose(loss, math.log(4), rel_tol=1e-6) and math.isclose(perplexity(loss), 4, rel_tol=1e-6)


def test_trec_parser(tmp_path):
    from kit.data.text_datasets import TREC_NAMES, _trec_real
    a, b = tmp_path / "train.label", tmp_path / "test.label"
    a.write_bytes("DESC:manner How did serfdom develop in and then leave Russia ?\nHUM:ind Who was Caf\xe9 ?\n".encode("latin-1"))
    b.write_bytes(b"NUM:date When was Ozzy Osbourne born ?\n")
    d = _trec_real([a, b])
    assert d.texts[1] == "Who was Caf\xe9 ?" and [d.classes[i] for i in d.labels] == ["description", "human", "numeric"]
    assert d.classes == TREC_NAMES and d.labels.dtype == np.int64


def test_embedded_text_sources_is_real_balanced_and_deterministic():
    import kit.data
    d = kit.data.load("text_sources", source="embedded")
    assert d.classes == ["Python docs", "NumPy", "scikit-learn", "PyTorch"] and d.labels.dtype == np.int64
    assert len(d.texts) == len(d.labels) >= 4000 and len(set(d.texts)) == len(d.texts)
    assert min(d.counts().values()) >= 1000
    assert d.texts == kit.data.load("text_sources", source="embedded").texts


def test_char_corpus_is_lesson_07s_steps_in_one_call():
    from kit.text import char_corpus
    corpus, vocab, tr, va = char_corpus("tinyshakespeare", 0.1)
    text = corpus.text
    assert vocab.decode(torch.cat([tr, va])) == text            # every character, in order, round-trips
    assert len(va) == len(text) - int(0.9 * len(text))          # the last 10 %, not shuffled
    assert sorted(set(text)) == [vocab.itos[i] for i in range(len(vocab))]
