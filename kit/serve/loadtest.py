"""A load test with async clients: ``concurrency`` clients, each sending its next request when the last is
answered, until ``n_requests`` are done or ``max_seconds`` have passed (loopback only).

    res = load_test(url, payloads, concurrency=16, n_requests=400, max_seconds=5)
    res["rps"], res["latencies_ms"]
"""
from __future__ import annotations

import asyncio
import socket
import threading
import time

import numpy as np

__all__ = ["load_test", "sweep_concurrency", "send_all", "summary", "client", "run_coroutine"]


def client(url: str, connections: int = 1, timeout: float = 30.0):
    """An ``httpx.AsyncClient`` with TCP_NODELAY: without it, a request's headers and body leave in two packets
    and Nagle's algorithm meets the server's delayed ACK — about 40 ms lost on every request."""
    import httpx
    transport = httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return httpx.AsyncClient(base_url=url, transport=transport, timeout=timeout)


def run_coroutine(coro):
    """Run a coroutine to completion, also from inside a running event loop (a Jupyter kernel has one)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    out = {}

    def target():
        try:
            out["value"] = asyncio.run(coro)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            out["error"] = e
    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


async def _load(url: str, payloads: list[bytes], concurrency: int, n_requests: int, max_seconds: float) -> dict:
    latencies, statuses, sent = [], [], 0
    headers = {"content-type": "application/json"}
    # one client (one kept-alive connection) per simulated user: a single pool shared by many concurrent
    # requests spends more time managing itself than sending
    clients = [client(url) for _ in range(concurrency)]
    t0 = time.perf_counter()
    stop_at = t0 + max_seconds

    async def worker(http):
        nonlocal sent
        async with http:
            while sent < n_requests and time.perf_counter() < stop_at:
                body = payloads[sent % len(payloads)]
                sent += 1
                s = time.perf_counter()
                r = await http.post("/predict", content=body, headers=headers)
                latencies.append((time.perf_counter() - s) * 1000)
                statuses.append(r.status_code)
    await asyncio.gather(*(worker(c) for c in clients))
    wall = time.perf_counter() - t0
    lat = np.array(latencies)
    return {"concurrency": concurrency, "requests": len(lat), "seconds": wall, "rps": len(lat) / wall,
            "ok": int(sum(s == 200 for s in statuses)), "latencies_ms": lat, **summary(lat)}


def summary(latencies_ms) -> dict:
    """p50, p95, p99 (numpy's linear-interpolation percentiles) and the mean of latencies in ms."""
    lat = np.asarray(latencies_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(lat, [50, 95, 99]) if len(lat) else (np.nan,) * 3
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "mean_ms": float(lat.mean()) if len(lat) else np.nan}


def load_test(url: str, payloads: list[bytes], concurrency: int, n_requests: int, max_seconds: float) -> dict:
    """One load level: throughput (``rps``), latency percentiles, every latency, and how many answered 200."""
    return run_coroutine(_load(url, payloads, concurrency, n_requests, max_seconds))


def sweep_concurrency(url: str, payloads: list[bytes], levels, n_requests: int, max_seconds: float,
                      warmup: int = 20) -> list[dict]:
    """``load_test`` at each concurrency level (after ``warmup`` requests that are not counted)."""
    load_test(url, payloads, 1, warmup, max_seconds)
    return [load_test(url, payloads, c, n_requests, max_seconds) for c in levels]


async def _send(url: str, bodies: list[bytes], raw: bool) -> list:
    out = []
    async with client(url) as http:
        for body in bodies:
            r = await http.post("/predict", content=body, headers={"content-type": "application/json"})
            out.append(r if raw else (r.status_code, r.json()))
    return out


def send_all(url: str, bodies: list[bytes]) -> list[tuple[int, dict]]:
    """Send each body in turn (one client, in order); ``[(status, json), …]``."""
    return run_coroutine(_send(url, bodies, raw=False))
