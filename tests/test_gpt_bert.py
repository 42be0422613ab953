"""GPT (lesson 09) and BERT/MiniLM (lesson 10): KV-cache equivalence, training loop, pretrained parity."""
from __future__ import annotations

import math

import pytest
import torch

from kit.models.gpt import GPT, GPTConfig, KVCache, NaiveGPT, flops_per_token, mfu, peak_flops
from kit.train import train_gpt, warmup_cosine
from kit.train.config import PRESETS, TrainConfig, preset


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one thread is fastest (and two threads crawl on a busy 2-core machine)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny_gpt(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = GPTConfig(**({"vocab_size": 23, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 32} | kw))
    return GPT(cfg).eval()


# ---------------------------------------------------------------- GPT: the model
def test_weight_tying_and_parameter_count():
    m = tiny_gpt()
    assert m.lm_head.weight is m.wte.weight
    c = m.cfg
    per_block = 12 * c.n_embd ** 2 + 2 * c.n_embd  # attn 4d², MLP 8d², two LayerNorm gains (no biases)
    expected = c.vocab_size * c.n_embd + c.n_layer * per_block + c.n_embd
    assert m.n_params() == expected
    assert m.n_params(non_embedding=False) == expected + c.block_size * c.n_embd


def test_causal_no_peeking_at_the_future():
    m = tiny_gpt()
    x = torch.randint(23, (1, 12))
    y = x.clone()
    y[0, 8:] = (y[0, 8:] + 1) % 23
    with torch.no_grad():
        a, b = m(x), m(y)
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_cache_logits_equal_full_forward_in_chunks():
    m = tiny_gpt()
    x = torch.randint(23, (3, 16))
    with torch.no_grad():
        full = m(x)
        cache = KVCache(m.cfg, 3, "cpu")
        parts = [m(x[:, :5], cache=cache), m(x[:, 5:6], cache=cache), m(x[:, 6:7], cache=cache),
                 m(x[:, 7:16], cache=cache)]
    assert cache.length == 16
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="block_size"):
        m(x[:, :1], cache=cache)


@pytest.mark.parametrize("kw", [dict(temperature=0.0), dict(temperature=1.0), dict(temperature=0.8, top_k=5),
                                dict(temperature=1.2, top_p=0.9), dict(temperature=0.7, top_k=10, top_p=0.8)],
                         ids=["greedy", "sample", "top_k", "top_p", "top_k+top_p"])
def test_kv_cache_generates_the_same_tokens(kw):
    """Greedy and seeded sampling: with the cache, without it, and kit.text.generate all agree —
    also past block_size (the window slides) and for a prompt longer than the window."""
    from kit.text import generate
    m = tiny_gpt()
    for prompt in (torch.randint(23, (2, 3)), torch.randint(23, (1, 20))):
        outs = []
        for way in ("cache", "no-cache", "kit.text"):
            g = torch.Generator().manual_seed(7)
            if way == "kit.text":
                outs.append(generate(m, prompt, 30, generator=g, block_size=m.cfg.block_size, **kw))
            else:
                outs.append(m.generate(prompt, 30, generator=g, use_cache=(way == "cache"), **kw))
        assert outs[0].shape == (prompt.shape[0], prompt.shape[1] + 30)
        assert torch.equal(outs[0][:, :prompt.shape[1]], prompt)
        assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


def test_generate_1d_prompt_and_seed_reproducible():
    m = tiny_gpt()
    p = torch.tensor([1, 2, 3])
    a = m.generate(p, 10, generator=torch.Generator().manual_seed(3))
    b = m.generate(p, 10, generator=torch.Generator().manual_seed(3))
    assert a.shape == (13,) and torch.equal(a, b)


def test_naive_attention_baseline_matches():
    m = tiny_gpt()
    torch.manual_seed(0)
    n = NaiveGPT(m.cfg).eval()
    n.load_state_dict(m.state_dict())
    x = torch.randint(23, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(n(x), m(x), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- GPT: training
def test_lr_schedule_warmup_then_cosine():
    def lr_at(progress, step):
        return warmup_cosine(progress, step, lr=1e-3, min_lr=1e-4, warmup=10)
    assert lr_at(0.0, 0) == pytest.approx(1e-4)
    assert lr_at(0.0, 9) == pytest.approx(1e-3)
    assert lr_at(0.5, 100) == pytest.approx(0.55e-3)
    assert lr_at(1.0, 100) == pytest.approx(1e-4)
    assert lr_at(2.0, 100) == pytest.approx(1e-4)


def _stream(n=20_000, seed=0):
    """A learnable stream: a fixed random 'text' repeated with noise-free structure (period 50)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(23, (50,), generator=g)
    return base.repeat(n // 50)


def test_train_steps_deterministic_and_learning():
    ids = _stream()
    tc = TrainConfig(batch_size=8, lr=3e-3, min_lr=3e-4, warmup=5, steps=40, eval_every=20, eval_tokens=2000)
    runs = []
    for _ in range(2):
        m = tiny_gpt()
        runs.append(train_gpt(m, ids[:15_000], ids[15_000:], tc, device="cpu", seed=1, progress=False))
    a, b = runs
    assert a.history["val_loss"] == b.history["val_loss"]
    assert a.history["step"] == [0, 20, 40] and a.steps == 40 and a.tokens == 40 * 8 * 16
    assert a.history["val_loss"][-1] < a.history["val_loss"][0] - 0.5
    assert a.tokens_per_s > 0


def test_train_time_budget_and_marks():
    ids = _stream()
    tc = TrainConfig(batch_size=4, steps=10**9, eval_tokens=500)
    run = train_gpt(tiny_gpt(), ids[:15_000], ids[15_000:], tc, seconds=1.5, eval_marks=(0.5,), eval_every_s=0.7,
                    device="cpu", progress=False)
    secs = run.history["seconds"]
    assert run.seconds <= 1.5 + 0.5 and secs[-1] == pytest.approx(run.seconds)  # stops before a step would overrun
    assert run.val_loss_at(0.5) is not None and any(0.3 < s <= 0.5 for s in secs)
    # the budget check predicts the next step from the last one, so a slow step may end a little past 1.5 s
    assert run.val_loss_at(run.seconds) == run.final_val_loss


def test_flops_and_mfu():
    cfg = GPTConfig(n_layer=4, n_embd=128, block_size=64)
    assert flops_per_token(cfg, 1000) == 6000 + 12 * 4 * 128 * 64
    assert peak_flops("cpu") is None and mfu(1e5, cfg, 1000, "cpu") is None


def test_presets():
    m, t = preset("cpu", vocab_size=65)
    assert m.vocab_size == 65 and PRESETS["cpu"][0].vocab_size == 65  # copies; defaults untouched
    m.n_layer = 99
    assert PRESETS["cpu"][0].n_layer != 99
    with pytest.raises(ValueError, match="'preset'"):
        preset("tpu")
    assert t.optimizer == "muon" and preset("cpu_adamw")[1].optimizer == "adamw"   # the speedrun's recipe and before
    assert GPT(preset("gpu", 65)[0]).n_params() > 10_000_000


def _gpu_train_and_cache_check(device: str, compile: bool):
    """Train briefly (bf16 autocast on CUDA, optionally compiled), then check the KV cache on the *trained* model:
    logits with the cache match a full forward pass within float tolerance, and greedy generation gives the same
    tokens. (An untrained model's near-tied logits can flip a greedy choice between two equally right kernels.)"""
    ids = _stream(50_000).to(device)
    tc = TrainConfig(batch_size=16, steps=30, eval_every=30, eval_tokens=2000)
    m = tiny_gpt().to(device)
    run = train_gpt(m, ids[:40_000], ids[40_000:], tc, device=device, compile=compile, progress=False)
    assert math.isfinite(run.final_val_loss) and run.final_val_loss < 3.0, run.final_val_loss
    m.eval()
    x = ids[40_000:40_032].view(2, 16)
    with torch.no_grad():
        full = m(x)
        cache = KVCache(m.cfg, 2, device)
        parts = torch.cat([m(x[:, :5], cache=cache), m(x[:, 5:6], cache=cache), m(x[:, 6:16], cache=cache)], 1)
    torch.testing.assert_close(parts, full, atol=1e-4, rtol=1e-4)
    p = x[:, :4]
    assert torch.equal(m.generate(p, 20, temperature=0), m.generate(p, 20, temperature=0, use_cache=False))


def test_train_then_cache_check_on_cpu():
    """The GPU test's own logic, run on the CPU so that CI exercises it."""
    _gpu_train_and_cache_check("cpu", compile=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.gpu
def test_gpu_bf16_compile_and_kv_cache():
    _gpu_train_and_cache_check("cuda", compile=True)


# ---------------------------------------------------------------- BERT: pretrained MiniLM
bert = pytest.importorskip("kit.models.bert")

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
             "Tensors are multi-dimensional arrays that live on a device.", "Short",
             "A much longer sentence, with punctuation; UPPER-case words like Transformer and naïve tokenization!"]


@pytest.fixture(scope="module")
def minilm():
    try:
        return bert.load_minilm()
    except FileNotFoundError as e:
        pytest.skip(str(e))


def test_every_parameter_mapped_from_the_checkpoint(minilm):
    model, _ = minilm
    info = model.load_info
    assert info["loaded"] == len(model.state_dict()) == 5 + 16 * model.cfg.n_layer
    assert set(info["unused"]) <= {"embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"}


def test_tokenizer_wordpiece(minilm):
    _, tok = minilm
    ids, mask = bert.tokenize(tok, ["Hello world!", "Tokenization"])
    assert ids[0, 0].item() == tok.token_to_id("[CLS]") and tok.id_to_token(int(ids[1, 2])).startswith("##")
    assert mask[0].sum() == 5 and mask.shape == ids.shape  # [CLS] hello world ! [SEP]


def _independent_embeddings(texts):
    """all-MiniLM-L6-v2 computed straight from the checkpoint's tensors with explicit matrix products
    (no kit.models.bert modules, no sentence-transformers): an independent reference."""
    from safetensors.torch import load_file
    d = bert.minilm_dir()
    W = load_file(str(d / "model.safetensors"))
    cfg = bert.BertConfig.from_json(d / "config.json")
    tok = bert.load_tokenizer(d)
    ids, mask = bert.tokenize(tok, texts)
    B, T = ids.shape
    H, nh = cfg.n_embd, cfg.n_head

    def ln(x, p):
        return torch.nn.functional.layer_norm(x, (H,), W[p + ".weight"], W[p + ".bias"], cfg.layer_norm_eps)

    def lin(x, p):
        return x @ W[p + ".weight"].T + W[p + ".bias"]

    x = W["embeddings.word_embeddings.weight"][ids] + W["embeddings.position_embeddings.weight"][:T] \
        + W["embeddings.token_type_embeddings.weight"][0]
    x = ln(x, "embeddings.LayerNorm")
    bias = (1.0 - mask[:, None, None, :].float()) * -1e9
    for i in range(cfg.n_layer):
        p = f"encoder.layer.{i}."
        q, k, v = (lin(x, p + f"attention.self.{n}").view(B, T, nh, H // nh).transpose(1, 2)
                   for n in ("query", "key", "value"))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(H // nh) + bias, -1)
        ctx = (a @ v).transpose(1, 2).reshape(B, T, H)
        x = ln(x + lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        h = lin(x, p + "intermediate.dense")
        h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
        x = ln(x + lin(h, p + "output.dense"), p + "output.LayerNorm")
    m = mask[..., None].float()
    e = (x * m).sum(1) / m.sum(1)
    return e / e.norm(dim=1, keepdim=True)


def test_minilm_matches_an_independent_computation(minilm):
    enc = bert.SentenceEncoder(*minilm)
    got = enc.encode(SENTENCES, batch_size=4)
    with torch.no_grad():
        ref = _independent_embeddings(SENTENCES)
    assert (got - ref).abs().max().item() < 1e-4
    assert torch.allclose(got.norm(dim=1), torch.ones(len(SENTENCES)), atol=1e-5)


def test_minilm_matches_sentence_transformers(minilm, monkeypatch):
    """Parity with the reference implementation, loaded offline from the same local files."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    st = pytest.importorskip("sentence_transformers")
    ref_model = st.SentenceTransformer(str(bert.minilm_dir()), device="cpu")
    ref = torch.as_tensor(ref_model.encode(SENTENCES, convert_to_numpy=True))
    got = bert.SentenceEncoder(*minilm).encode(SENTENCES)
    err = (got - ref).abs().max().item()
    assert err < 1e-4, f"max |ours - sentence-transformers| = {err:.2e}"
    # and the meaning is there: the two eating sentences are closer than eating vs baby
    sim = got @ got.T
    assert sim[0, 1] > sim[0, 2] + 0.3


def test_batching_and_padding_do_not_change_embeddings(minilm):
    enc = bert.SentenceEncoder(*minilm)
    one_by_one = torch.cat([enc.encode([s]) for s in SENTENCES])
    torch.testing.assert_close(enc.encode(SENTENCES, batch_size=64), one_by_one, atol=1e-5, rtol=1e-5)


def test_mask_tokens_bert_recipe():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 2000, (64, 40))
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones_like(ids)
    mask[:8, 30:] = 0
    ids[:8, 30:] = 0
    out, tgt = bert.mask_tokens(ids, mask, mask_id=103, vocab_size=30522, generator=g)
    chosen = tgt != -100
    assert not chosen[:, 0].any() and not chosen[:, -1].any() and not chosen[:8, 30:].any()
    frac = chosen.float().sum() / (mask.sum() - 128)
    assert 0.12 < frac < 0.18
    assert torch.equal(tgt[chosen], ids[chosen]) and torch.equal(out[~chosen], ids[~chosen])
    masked = (out[chosen] == 103).float().mean()
    assert 0.7 < masked < 0.9


def test_classifier_and_mlm_head_shapes(minilm):
    model, tok = minilm
    ids, mask = bert.tokenize(tok, SENTENCES[:3])
    clf = bert.BertClassifier(model, 4)
    assert clf(ids, mask).shape == (3, 4)
    head = bert.MLMHead(model)
    assert head.word_emb is model.emb.tok.weight
    assert head(model(ids, mask)).shape == (3, ids.shape[1], model.cfg.vocab_size)
