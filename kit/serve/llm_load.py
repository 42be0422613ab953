"""Load tests of an OpenAI-compatible streaming server, measured from the client's side.

* :func:`closed_loop` — ``concurrency`` clients, each sending its next request when its last answer ends;
* :func:`open_loop` — requests sent at Poisson arrival times at a set rate, whether or not earlier ones are done.

A closed loop slows its senders down when the server slows (its clients wait), so it never shows a queue building up:
the latency it reports omits the time requests *would* have waited (coordinated omission). An open loop keeps
sending at the offered rate, so past the server's capacity latency grows with time — the knee of the latency vs
offered-load curve is the capacity. Each request is timed from its **scheduled** send time.

Every streamed request gives a :class:`StreamTiming`: time to first token, the gaps between tokens (inter-token
latency), tokens and total time. :func:`summary` turns a list of them into p50/p99 and aggregate tokens/s.
"""
import asyncio
import json
import time
from dataclasses import dataclass, field

import numpy as np

from kit.serve.loadtest import run_coroutine

__all__ = ["StreamTiming", "stream_once", "closed_loop", "open_loop", "summary"]


@dataclass
class StreamTiming:
    """One streamed request: seconds from its scheduled start to the first token and to the end, the gap before
    each later token, the tokens generated (from the usage chunk), the HTTP status and any error."""
    ttft: float = float("nan")
    total: float = float("nan")
    gaps: list = field(default_factory=list)
    tokens: int = 0
    status: int = 0
    error: str | None = None
    text: str = ""


async def stream_once(http, url: str, body: dict, scheduled: float | None = None) -> StreamTiming:
    """POST ``body`` (``stream`` and ``stream_options.include_usage`` set here) to ``url`` and time its events."""
    t0 = scheduled if scheduled is not None else time.perf_counter()
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    out, last, pieces = StreamTiming(), None, []
    try:
        async with http.stream("POST", url, json=body) as r:
            out.status = r.status_code
            if r.status_code != 200:
                out.error = (await r.aread()).decode(errors="replace")[:300]
                return out
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    out.error = chunk["error"].get("message", "error")
                    continue
                if chunk.get("usage"):
                    out.tokens = chunk["usage"]["completion_tokens"]
                for c in chunk.get("choices", []):
                    piece = c.get("delta", {}).get("content") if "delta" in c else c.get("text")
                    if piece:
                        now = time.perf_counter()
                        if last is None:
                            out.ttft = now - t0
                        else:
                            out.gaps.append(now - last)
                        last = now
                        pieces.append(piece)
    except Exception as e:  # noqa: BLE001 - a failed request is a result of the test, not its end
        out.error = f"{type(e).__name__}: {e}"
    out.total = time.perf_counter() - t0
    out.text = "".join(pieces)
    return out


def _client(connections: int, timeout: float):
    import httpx
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(limits=limits, timeout=timeout)


def closed_loop(url: str, bodies: list[dict], concurrency: int, timeout: float = 120.0) -> dict:
    """Send every body in ``bodies`` with ``concurrency`` clients in a closed loop; :func:`summary` of the run."""
    async def main():
        todo = list(reversed(bodies))
        results: list[StreamTiming] = []
        async with _client(concurrency, timeout) as http:
            async def worker():
                while todo:
                    results.append(await stream_once(http, url, todo.pop()))
            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return results, time.perf_counter() - t0
    results, wall = run_coroutine(main())
    return summary(results, wall)


def open_loop(url: str, bodies: list[dict], rate: float, seed: int = 0, timeout: float = 120.0) -> dict:
    """Send ``bodies`` at Poisson arrival times of ``rate`` requests per second (exponential gaps, fixed by
    ``seed``), each timed from its scheduled time; :func:`summary` of the run, plus the offered rate."""
    gaps = np.random.default_rng(seed).exponential(1 / rate, len(bodies))

    async def main():
        async with _client(len(bodies), timeout) as http:
            t0 = time.perf_counter()
            starts = t0 + np.cumsum(gaps) - gaps[0]

            async def one(body, at):
                await asyncio.sleep(max(0.0, at - time.perf_counter()))
                return await stream_once(http, url, body, scheduled=at)
            results = await asyncio.gather(*(one(b, s) for b, s in zip(bodies, starts)))
            return list(results), time.perf_counter() - t0
    results, wall = run_coroutine(main())
    return {**summary(results, wall), "offered_rps": rate}


def summary(results: list[StreamTiming], wall_s: float) -> dict:
    """Requests, failures, aggregate tokens/s over the wall time, and TTFT / inter-token / total latency p50 and p99
    in milliseconds (over the successful requests)."""
    ok = [r for r in results if r.error is None and r.status == 200]
    ttft = np.array([r.ttft for r in ok if np.isfinite(r.ttft)]) * 1e3
    gaps = np.array([g for r in ok for g in r.gaps]) * 1e3
    total = np.array([r.total for r in ok]) * 1e3

    def pct(a, q):
        return round(float(np.percentile(a, q)), 1) if len(a) else float("nan")
    tokens = sum(r.tokens for r in ok)
    return {"requests": len(results), "failed": len(results) - len(ok), "tokens": tokens, "wall_s": round(wall_s, 2),
            "tokens_per_s": round(tokens / wall_s, 1) if wall_s > 0 else float("nan"),
            "ttft_p50_ms": pct(ttft, 50), "ttft_p99_ms": pct(ttft, 99), "itl_p50_ms": pct(gaps, 50),
            "itl_p99_ms": pct(gaps, 99), "latency_p50_ms": pct(total, 50), "latency_p99_ms": pct(total, 99)}
