"""Smoke-run bar of lesson 20_llm_quantization: what metrics.json must show with smoke=True."""
import math


def check(m: dict) -> bool:
    # the smoke run reads SmolLM2's GGUF file (shipped with the install) but lets a small random Llama stand in for the
    # model. kit's Q8_0/Q4_0/Q4_1 bytes equal gguf's on 4 real matrices × 3 formats, and the file's own blocks come
    # back byte for byte (a wrong rounding rule, nibble order or scale fails here)
    gguf_ok = (m["quant_matches_gguf"] is True and m["quant_checked"] == 12 and m["file_requantises_exactly"] is True)
    # every format was scored, with the bits per weight of its layout; the weights' error grows as the bits shrink
    # (a format that quantised nothing, or the wrong matrices, has error 0 or out of order); Q8_0 and int8 keep the
    # stand-in's bits per byte within 0.5 % (smoke: +0.00 %); the stand-in is random, so bits per byte is near a
    # uniform guess over its vocabulary's bytes (5.04 of at most 8 per byte) and finite
    fmts = ("file", "Q8_0", "Q4_1", "Q4_0", "RTN3", "RTN2", "int8")
    bpb, bpw, err = m["llm_quant_bpb"], m["llm_quant_bits_per_weight"], m["llm_quant_weight_rel_error"]
    scored = all(k in bpb and math.isfinite(bpb[k]) and 0 < bpb[k] < 20 for k in fmts)
    layout = [bpw[k] for k in ("Q8_0", "Q4_1", "Q4_0", "RTN3", "RTN2")] == [8.5, 5.0, 4.5, 4.0, 3.0] \
        and 8.0 < bpw["int8"] < 8.5
    ordered = 0 < err["Q8_0"] < err["Q4_1"] < err["Q4_0"] < err["RTN3"] < err["RTN2"] and 0 < err["int8"] < err["Q4_0"]
    cheap = abs(m["llm_quant_q8_0_rel_cost"]) <= 0.005 and abs(m["llm_quant_int8_rel_cost"]) <= 0.005
    # int8 weights: each decode step reads about a quarter of float32's bytes (embedding rows aside)
    streamed = 0 < m["llm_decode_bytes_per_token_int8"] < 0.3 * m["llm_decode_bytes_per_token_fp32"]
    return gguf_ok and scored and layout and ordered and cheap and streamed
