"""Training throughput (tokens/s) of kit's GPT against a naive baseline, on the same model configuration.

* **kit**: ``kit.models.gpt.GPT`` — fused ``F.scaled_dot_product_attention(is_causal=True)``, AdamW with the
  fused kernel, bf16 autocast on CUDA (and ``torch.compile`` with ``--compile``);
* **naive**: ``kit.models.gpt.NaiveGPT`` — the same weights with hand-written attention (explicit ``QKᵀ``,
  ``masked_fill``, softmax, ``@ V``), plain ``torch.optim.Adam(foreach=False)``, float32, no compile.

Each measurement: ``--warmup`` untimed steps, then ``--steps`` timed steps on random windows of a random token
stream; the table shows the median of ``--repeats`` measurements and the ratio kit / naive.

One row per context length (``--blocks``): the preset's own, then longer ones with the same number of
tokens per step (batch × block fixed), so the linear layers cost the same and only attention grows
(``O(T²)``). That is where a fused kernel pays: at the CPU preset's 64 tokens most of a step is the
linear layers' matrix products, identical in both implementations, so the ratio there is bounded
(Amdahl) well below what long contexts show.

    python benchmarks/gpt_throughput.py [--preset cpu|gpu|smoke|gpt2] [--blocks 64,256,512] [--device auto]
                                        [--threads N] [--repeats 5] [--compile] [--kit-only]

``--preset gpt2`` is GPT-2 small's shape (124 M parameters, 1 024 positions, 50 304 tokens, batch 16): the size at
which nanoGPT reports its MFU, and the one that can fill a data-centre GPU. On CUDA the table adds MFU against the
GPU's dense bf16 peak (``kit.models.gpt.peak_flops``).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(kind: str, cfg, batch_size: int, steps: int, warmup: int, device, compile: bool = False) -> float:
    """Tokens per second of ``steps`` training steps (after ``warmup`` untimed ones)."""
    import contextlib

    import torch

    from kit.data.batches import lm_batches
    from kit.models.gpt import GPT, NaiveGPT
    from kit.train.optim import make_optimizer

    torch.manual_seed(0)
    if kind == "kit":
        model = GPT(cfg).to(device)
        opt = make_optimizer("adamw", model.parameters(), 1e-3, 0.1, betas=(0.9, 0.99), decay_matrices_only=True,
                             fused=True)  # what kit.train.train_gpt uses
        fwd = torch.compile(model) if compile else model
        amp = torch.autocast(device.type, dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    else:
        model = NaiveGPT(cfg).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=False)
        fwd, amp = model, contextlib.nullcontext()
    ids = torch.randint(cfg.vocab_size, (200_000,), generator=torch.Generator().manual_seed(0)).to(device)
    gen = torch.Generator().manual_seed(0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step():
        x, y = lm_batches(ids, cfg.block_size, batch_size, gen)
        with amp:
            _, loss = fwd(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    model.train()
    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps * batch_size * cfg.block_size / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default=None, help="model size: cpu (default on CPU), gpu (default on CUDA), smoke")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: KIT_THREADS or all cores)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    ap.add_argument("--blocks", default=None,
                    help="comma-separated context lengths (default: the preset's, then 256 and 512 on CPU)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default 20 CPU / 50 GPU)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="torch.compile kit's model (GPU)")
    ap.add_argument("--kit-only", action="store_true", help="skip the naive baseline (slow at GPT-2 size)")
    args = ap.parse_args(argv)

    import torch

    from kit.device import pick_device, set_threads
    from kit.models.gpt import GPT, GPTConfig, mfu
    from kit.train.config import preset

    device = pick_device(args.device)
    threads = set_threads(args.threads)
    name = args.preset or ("gpu" if device.type == "cuda" else "cpu")
    if name == "gpt2":  # GPT-2 small, vocabulary padded to a multiple of 64 as nanoGPT does
        cfg, bs0 = GPTConfig(vocab_size=50304, block_size=1024, n_layer=12, n_head=12, n_embd=768), 16
    else:
        cfg, tc = preset(name, vocab_size=65)
        bs0 = tc.batch_size
    bs = args.batch_size or bs0
    steps = args.steps or (50 if device.type == "cuda" else 20)
    n = GPT(cfg).n_params()
    tokens = bs * cfg.block_size
    blocks = ([int(b) for b in args.blocks.split(",")] if args.blocks
              else [cfg.block_size] + [b for b in (256, 512) if b > cfg.block_size and device.type != "cuda"])
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {threads} threads"
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"GPT training throughput — preset {name!r}: {n / 1e6:.2f} M parameters, n_layer={cfg.n_layer}, "
          f"n_embd={cfg.n_embd}, {tokens} tokens per step; {dev_name}{load}; "
          f"median of {args.repeats} × {steps} steps")
    cuda = device.type == "cuda"
    print(f"{'block × batch':<14} {'implementation':<58} {'tokens/s':>10} {'min–max':>17} {'ratio':>6}"
          + (f" {'MFU':>6}" if cuda else ""))
    labels = {"kit": "kit GPT (SDPA is_causal, fused AdamW" + (", bf16" if device.type == "cuda" else "")
                     + (", compile" if args.compile else "") + ")",
              "naive": "naive (QKᵀ + masked_fill + softmax, Adam foreach=False)"}
    for block in blocks:
        c, b = replace(cfg, block_size=block), max(1, tokens // block)
        runs = {"kit": []} if args.kit_only else {"kit": [], "naive": []}
        for _ in range(args.repeats):  # interleaved, so a change in machine load hits both alike
            for kind in runs:
                runs[kind].append(measure(kind, c, b, steps, args.warmup, device, args.compile and kind == "kit"))
        med = {k: statistics.median(v) for k, v in runs.items()}
        for k in runs if args.kit_only else ("naive", "kit"):
            lo, hi = min(runs[k]), max(runs[k])
            ratio = f"{med[k] / med['naive']:>5.2f}×" if "naive" in med else f"{'–':>6}"
            util = mfu(med[k], c, n, device) if cuda and k == "kit" else None
            print(f"{f'{block} × {b}':<14} {labels[k]:<58} {med[k]:>10,.0f} {f'{lo:,.0f}–{hi:,.0f}':>17} {ratio}"
                  + (f" {util:>6.1%}" if util is not None else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
