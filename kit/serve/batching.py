"""Dynamic micro-batching: requests that arrive close together share one model call.

A request waits in a queue. The worker takes the first waiting request and every request already queued, then
keeps collecting until the batch holds ``max_batch`` rows or ``max_wait_ms`` have passed since it took that first
request; it runs the model once on the concatenated rows (in a worker thread, so the server reads the next
requests meanwhile) and hands each request its slice of the result. One model call per batch
instead of one per request: throughput rises under load, at the price of up to ``max_wait_ms`` extra latency.
"""
from __future__ import annotations

import asyncio
import time
from typing import Callable

import numpy as np

__all__ = ["MicroBatcher"]


class MicroBatcher:
    """``await batcher.submit(x)`` → the model's output rows for ``x``; ``run(X)`` is called on merged batches."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], max_batch: int = 64, max_wait_ms: float = 2.0):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch must be ≥ 1 and max_wait_ms ≥ 0, got {max_batch}, {max_wait_ms}")
        self.run, self.max_batch, self.max_wait = run, int(max_batch), max_wait_ms / 1000
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.batch_sizes: list[int] = []

    def start(self) -> None:
        from concurrent.futures import ThreadPoolExecutor
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="kit-serve-model")
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._worker())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
            self.task = None
        if getattr(self, "pool", None) is not None:
            self.pool.shutdown(wait=True)
            self.pool = None

    async def submit(self, x: np.ndarray) -> np.ndarray:
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((x, fut))
        return await fut

    async def _worker(self) -> None:
        while True:
            items = [await self.queue.get()]
            rows = len(items[0][0])
            deadline = time.perf_counter() + self.max_wait
            while rows < self.max_batch:
                if not self.queue.empty():  # requests already waiting join at once, even with max_wait 0
                    item = self.queue.get_nowait()
                else:
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self.queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                if rows + len(item[0]) > self.max_batch:
                    await self._run(items)  # it would overflow: run what we have, start the next batch with it
                    items, rows = [item], len(item[0])
                    deadline = time.perf_counter() + self.max_wait
                    continue
                items.append(item)
                rows += len(item[0])
            await self._run(items)

    async def _run(self, items) -> None:
        X = np.concatenate([x for x, _ in items]) if len(items) > 1 else items[0][0]
        self.batch_sizes.append(len(X))
        try:
            # in a worker thread (ONNX Runtime releases the GIL): the event loop keeps reading new requests
            # meanwhile, and they form the next batch
            out = await asyncio.get_running_loop().run_in_executor(self.pool, self.run, X)
        except Exception as e:  # noqa: BLE001 - every waiting request gets the error, the worker lives on
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(e)
            return
        i = 0
        for x, fut in items:
            if not fut.done():
                fut.set_result(out[i:i + len(x)])
            i += len(x)
