def check(m):
    # smoke run (a 120 k-character slice, vocabularies 257 / 300 / 600, a few dozen steps): the tokenizer is exact
    # and identical to `tokenizers`, the GPT-2-format checkpoint is the model transformers loads, the KV cache
    # changes nothing, more merges mean fewer tokens per byte, and even these short runs learn something (a
    # uniform guess over bytes is 8 bits per byte)
    tpb = [m[f"vocab{v}_tokens_per_byte"] for v in (257, 300, 600)]
    lesson = (m["bpe_roundtrip_ok"] is True and m["bpe_matches_tokenizers"] is True
              and m["gpt2_parity_max_abs_diff"] <= 1e-4 and m["reload_max_abs_diff"] <= 1e-5
              and m["kv_cache_same"] is True and tpb[0] == 1.0 and tpb[0] > tpb[1] > tpb[2]
              and m["val_bits_per_byte"] < 6.0 and all(m[f"vocab{v}_bits_per_byte"] < 7.0 for v in (257, 300, 600)))
    # the real LLM (SmolLM2-135M-Instruct, shipped with the install; transformers is not loaded in smoke): its
    # 134.5 M parameters loaded, kit's tokenizer gives the ids of Hugging Face's tokenizers library, and it scores
    # the validation bytes far better than the unigram model of the lesson's tokens (smoke: 1.67 vs 3.56 bits per
    # byte) — a broken install or loader fails here
    llm = (m.get("llm_n_params") is not None and round(m["llm_n_params"] / 1e5) == 1345
           and m["llm_tokenizer_matches"] is True and m["llm_parity_max_abs_diff"] is None
           and m["llm_bits_per_byte"] < m["llm_unigram_bits_per_byte_same_bytes"] - 1.0)
    return lesson and llm
