"""Continuous batching vs one request at a time: `kit serve`'s OpenAI-compatible server under load, over HTTP.

SmolLM2-135M-Instruct behind :class:`kit.serve.llm_app.LLMServer`, driven by streaming clients
(:mod:`kit.serve.llm_load`; every number is measured at the client, SSE parsing and HTTP included):

1. **closed loop** at 1, 2, 4 and 8 concurrent streams, once with ``max_batch=1`` (one request at a time: the others
   wait in the queue) and once with ``max_batch=8`` (continuous batching), side by side in one process: aggregate
   tokens/s, time to first token (TTFT) and inter-token latency (ITL) p50/p99;
2. **open loop**: Poisson arrivals at set rates (requests/s) against the batching server — latency vs offered load and
   its knee, which a closed loop hides (its clients stop sending while they wait: coordinated omission).

Requests are completions of real text (Tiny Shakespeare's validation split, a different window each), greedy, a fixed
``--tokens`` answer (end-of-sequence can still end one early; tokens are counted from each answer's usage).

    python benchmarks/llm_serving.py [--tokens 48] [--requests 16] [--rates 0.5 1 2 4] [--open-requests 24]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def bodies(tok, text: str, n: int, prompt_tokens: int, max_tokens: int, name: str) -> list[dict]:
    ids = tok.encode(text)
    step = max(1, (len(ids) - prompt_tokens) // max(n, 1))
    return [{"model": name, "prompt": tok.decode(ids[i * step:i * step + prompt_tokens]), "max_tokens": max_tokens,
             "temperature": 0} for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="SmolLM2-135M-Instruct")
    ap.add_argument("--tokens", type=int, default=48, help="max_tokens of each answer")
    ap.add_argument("--prompt", type=int, default=64, help="prompt tokens of each request")
    ap.add_argument("--requests", type=int, default=16, help="requests per closed-loop run")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--rates", type=float, nargs="+", default=[0.5, 1, 2, 4], help="open loop: requests per second")
    ap.add_argument("--open-requests", type=int, default=24, help="requests per open-loop rate")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the results here")
    a = ap.parse_args()

    import torch

    from kit.data import load
    from kit.models.llm import load_llm
    from kit.serve.llm_app import LLMServer
    from kit.serve.llm_load import closed_loop, open_loop

    if a.threads:
        torch.set_num_threads(a.threads)
    model, tok = load_llm(a.model)
    corpus = load("tinyshakespeare", verbose=False).text
    text = corpus[int(len(corpus) * 0.9):]          # the validation split (the last 10 %)
    out = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
                      f"{torch.__version__}, {torch.get_num_threads()} threads", "closed": [], "open": []}
    print(out["machine"], flush=True)
    reqs = bodies(tok, text, a.requests, a.prompt, a.tokens, a.model)
    print(f"closed loop: {a.requests} requests of {a.prompt} prompt tokens → ≤ {a.tokens} new tokens, greedy")
    print(f"{'streams':>7} {'max_batch':>9} {'tok/s':>7} {'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} {'ITL p99':>8}"
          f" {'failed':>6}")
    for level in a.levels:
        for max_batch in (1, 8):
            with LLMServer(model, tok, name=a.model, max_batch=max_batch, max_queue=64) as srv:
                closed_loop(srv.url + "/v1/completions", reqs[:2], 1)     # warm-up
                r = closed_loop(srv.url + "/v1/completions", reqs, level)
            r.update(streams=level, max_batch=max_batch)
            out["closed"].append(r)
            print(f"{level:>7} {max_batch:>9} {r['tokens_per_s']:>7.1f} {r['ttft_p50_ms']:>9.0f} {r['ttft_p99_ms']:>9.0f}"
                  f" {r['itl_p50_ms']:>8.0f} {r['itl_p99_ms']:>8.0f} {r['failed']:>6}", flush=True)
    one = next(r for r in out["closed"] if r["streams"] == max(a.levels) and r["max_batch"] == 1)
    cb = next(r for r in out["closed"] if r["streams"] == max(a.levels) and r["max_batch"] == 8)
    out["speedup_at_max_streams"] = round(cb["tokens_per_s"] / one["tokens_per_s"], 2)
    print(f"continuous batching at {max(a.levels)} streams: {out['speedup_at_max_streams']}× one-at-a-time's tokens/s")

    print(f"\nopen loop (Poisson arrivals, max_batch 8): {a.open_requests} requests per rate")
    print(f"{'offered/s':>9} {'done/s':>7} {'tok/s':>7} {'TTFT p50':>9} {'TTFT p99':>9} {'latency p50':>11}"
          f" {'latency p99':>11}")
    with LLMServer(model, tok, name=a.model, max_batch=8, max_queue=256) as srv:
        closed_loop(srv.url + "/v1/completions", reqs[:2], 1)
        for rate in a.rates:
            r = open_loop(srv.url + "/v1/completions", (reqs * 8)[:a.open_requests], rate, seed=0)
            r["completed_rps"] = round((r["requests"] - r["failed"]) / r["wall_s"], 2)
            out["open"].append(r)
            print(f"{rate:>9.2f} {r['completed_rps']:>7.2f} {r['tokens_per_s']:>7.1f} {r['ttft_p50_ms']:>9.0f}"
                  f" {r['ttft_p99_ms']:>9.0f} {r['latency_p50_ms']:>11.0f} {r['latency_p99_ms']:>11.0f}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t0:.0f} s)")
