"""SmolLM2-135M-Instruct re-quantised: bits per weight vs bits per byte on held-out text, and int8 weight-only decode.

The reference is **the shipped file dequantised to float32** — already Q4_1 (its matrices) and Q8_0 (its embedding):
no unquantised SmolLM2 can be had offline, so "F32" here means "exactly what the file holds". Every matrix of the
model (the linear layers and the tied embedding) is then pushed through each format of
:mod:`kit.techniques.llm_quant` (``fake_quantize``: quantise, dequantise) and scored by bits per byte on the last
``--bytes`` bytes of tiny-shakespeare's last 10 % (the validation text of lesson 15), windows of ``--window`` tokens.
The file's Q4_1 matrices come back unchanged through kit's Q4_1 (every block of the file uses levels 0 and 15); the
tied embedding, Q8_0 in the file, does not.

Decode: kit's ``prefill_decode_speed`` (greedy, batch 1, ``--new`` tokens after a ``--prompt``-token prompt), float32
vs :func:`~kit.techniques.llm_quant.int8_weight_only` (int8 weights, bfloat16 activations), alternating, best of
``--repeats`` (on a shared machine other processes only slow a run down).

    python benchmarks/llm_quant.py [--bytes 4000] [--window 512] [--prompt 64] [--new 32] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="SmolLM2-135M-Instruct")
    ap.add_argument("--bytes", type=int, default=4000)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--formats", default="F32,Q8_0,Q4_1,Q4_0,RTN3,RTN2")
    a = ap.parse_args()

    import torch

    from kit.data import load
    from kit.models.llm import load_llm, prefill_decode_speed, text_bits_per_byte
    from kit.techniques.llm_quant import BITS_PER_WEIGHT, int8_weight_only, requantize, weight_bytes

    model, tok = load_llm(a.model)
    text = load("tinyshakespeare").text
    val = text[int(len(text) * 0.9):]
    sample = val.encode()[-a.bytes:].decode("utf-8", errors="ignore")
    bos = tok.special_tokens.get("<|endoftext|>", tok.bos_token_id)
    print(f"{a.model}; {platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}; "
          f"load average {os.getloadavg()[0]:.1f}; {len(sample.encode())} bytes of held-out Shakespeare, "
          f"windows of {a.window} tokens\n")
    print("| format | bits per weight | bits per byte | Δ vs file (%) |\n|---|---|---|---|")
    ref = None
    for fmt in a.formats.split(","):
        m = model if fmt == "F32" else requantize(model, fmt)
        bpb = text_bits_per_byte(m, tok, sample, window=a.window, bos_id=bos)["bits_per_byte"]
        ref = bpb if ref is None else ref
        print(f"| {fmt} | {BITS_PER_WEIGHT[fmt]} | {bpb:.4f} | {100 * (bpb / ref - 1):+.2f} |", flush=True)
        del m

    q8 = int8_weight_only(model)
    bpb8 = text_bits_per_byte(q8, tok, sample, window=a.window, bos_id=bos)["bits_per_byte"]
    print(f"| int8 weight-only (per-row scales, bf16 activations) | 8 | {bpb8:.4f} | {100 * (bpb8 / ref - 1):+.2f} |")
    prompt = tok.encode(val[:4000], allowed_special=())[:a.prompt]   # real text: greedy choices are not near-ties
    best = {"fp32": 0.0, "int8": 0.0}
    toks = {}
    for _ in range(a.repeats):
        for name, m in (("fp32", model), ("int8", q8)):
            r = prefill_decode_speed(m, prompt, n_new=a.new)
            best[name] = max(best[name], r["decode_tokens_per_s"])
            toks[name] = r["tokens"]
    same = sum(x == y for x, y in zip(toks["fp32"], toks["int8"]))
    print(f"\n| decode, batch 1 | tokens/s | weight bytes (MB) |\n|---|---|---|\n"
          f"| float32 | {best['fp32']:.1f} | {weight_bytes(model) / 1e6:.0f} |\n"
          f"| int8 weight-only | {best['int8']:.1f} | {weight_bytes(q8) / 1e6:.0f} |\n"
          f"\nint8 / float32: {best['int8'] / best['fp32']:.2f}×; greedy tokens equal for the first "
          f"{next((i for i, (x, y) in enumerate(zip(toks['fp32'], toks['int8'])) if x != y), len(toks['fp32']))} "
          f"of {len(toks['fp32'])} ({same} equal in all); load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t0:.0f} s)")
