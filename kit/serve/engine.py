"""Continuous batching: the decode steps of every running request go through the model together.

    with Engine(model, tok, max_batch=8) as eng:
        outs = eng.generate(["Once upon a time", …], Sampling(max_tokens=32))   # all prompts as one batched run
        seq = eng.submit(prompt_ids, Sampling(temperature=0.7, seed=1), on_event)  # a stream of events

A background thread loops: admit waiting requests into free rows (each prefilled alone, its first token sampled
at once: the time to first token), then run **one decode step for all running rows** (``model(ids (B, 1),
cache=SlotKVCache)``: each row its own length and position) and hand each row's token to its request. A request
that finishes (end-of-sequence, a stop string, ``max_tokens``, a cancel) leaves at once and its row is refilled at
the next step: nobody waits for the longest request of a batch (static batching's cost). A 135 M model's decode step
reads every weight once whatever the batch, so 8 rows cost little more than 1.

Bounded: at most ``max_batch`` running and ``max_queue`` waiting requests (:class:`QueueFull` beyond); a failing
step fails the requests in it, never the loop.
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import threading
import time
from dataclasses import dataclass
from typing import Callable

import torch

from kit.models.gpt import GPT, SlotKVCache
from kit.models.llm import StopStrings, check_sampling
from kit.models.sampling import sample_next

__all__ = ["Engine", "Sampling", "Sequence", "Completion", "QueueFull"]


class QueueFull(RuntimeError):
    """The engine's waiting queue is full: try again later (HTTP 429)."""


@dataclass(frozen=True)
class Sampling:
    """How one request is decoded. ``temperature=0``: greedy; ``stop``: strings that end the text (not included)."""
    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_at_eos: bool = True

    def check(self) -> None:
        check_sampling(self.max_tokens, self.temperature, None, self.top_p)


@dataclass
class Completion:
    """A finished request: its text, new token ids, why it ended, and its timings (seconds)."""
    text: str
    token_ids: list[int]
    finish_reason: str          # "stop" (end-of-sequence or a stop string), "length", "cancelled" or "error"
    n_prompt_tokens: int
    ttft_s: float               # submit → first token
    total_s: float              # submit → last token
    error: str | None = None

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens after the first per second of decoding (0 for fewer than two tokens)."""
        n = len(self.token_ids) - 1
        return n / (self.total_s - self.ttft_s) if n > 0 and self.total_s > self.ttft_s else 0.0


class Sequence:
    """One request inside the engine. ``on_event(kind, data)`` is called from the engine's thread with
    ``("token", text_piece)`` per generated token (the piece may be ``""``: text held back until a character or a
    stop string is complete) and once ``("done", Completion)``. :meth:`cancel` makes it leave at the next step."""

    _ids = itertools.count()

    def __init__(self, prompt_ids: list[int], sampling: Sampling, tok, on_event: Callable | None):
        self.id = next(self._ids)
        self.prompt_ids, self.sampling, self.on_event = list(prompt_ids), sampling, on_event
        self.tokens: list[int] = []
        self.text: list[str] = []
        self.decoder, self.stops = tok.stream_decoder(), StopStrings(sampling.stop)
        self.generator = None
        if sampling.seed is not None:
            self.generator = torch.Generator().manual_seed(int(sampling.seed))
        self.cancelled = self.stopped_by_string = False
        self.result: Completion | None = None
        self.t_submit = time.perf_counter()
        self.t_first = self.t_last = None
        self._done = threading.Event()

    def cancel(self) -> None:
        self.cancelled = True

    def wait(self, timeout: float | None = None) -> Completion | None:
        self._done.wait(timeout)
        return self.result

    def _emit(self, kind, data) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, data)
            except Exception:  # noqa: BLE001 - a listener's failure (e.g. a closed event loop) ends only this request
                self.cancelled = True

    def _push(self, token: int, eos_id: int | None) -> str | None:
        """Take one sampled token; the finish reason if this request is now over, else None."""
        now = time.perf_counter()
        self.t_first = self.t_first or now
        self.t_last = now
        if self.sampling.stop_at_eos and eos_id is not None and token == eos_id:
            return "stop"
        self.tokens.append(token)
        piece, stopped = self.stops.feed(self.decoder.push(token))
        self.text.append(piece)
        self._emit("token", piece)
        if stopped:
            self.stopped_by_string = True
            return "stop"
        return "length" if len(self.tokens) >= self.sampling.max_tokens else None

    def _finish(self, reason: str, error: str | None = None) -> None:
        if reason in ("stop", "length") and not self.stopped_by_string:   # text held back is complete now
            tail, _ = self.stops.feed(self.decoder.flush())
            tail += self.stops.flush()
            if tail:
                self.text.append(tail)
                self._emit("token", tail)
        now = time.perf_counter()
        self.result = Completion("".join(self.text), self.tokens, reason, len(self.prompt_ids),
                                 (self.t_first or now) - self.t_submit, (self.t_last or now) - self.t_submit, error)
        self._emit("done", self.result)
        self._done.set()


class Engine:
    """A continuous-batching generation loop over ``model`` (kit's :class:`~kit.models.gpt.GPT`) in a background
    thread. ``max_batch``: rows decoded together; ``max_queue``: requests allowed to wait (then :class:`QueueFull`);
    ``max_context``: tokens per row (prompt + answer); the KV cache grows with the longest row, up to
    ``max_batch × max_context`` tokens."""

    def __init__(self, model: GPT, tok, max_batch: int = 8, max_queue: int = 64, max_context: int | None = None):
        if max_batch < 1 or max_queue < 0:
            raise ValueError(f"max_batch must be >= 1 and max_queue >= 0, got {max_batch} and {max_queue}")
        self.model, self.tok = model.eval(), tok
        self.max_batch, self.max_queue = max_batch, max_queue
        self.max_context = min(max_context or 2048, model.cfg.block_size)
        w = model.wte.weight
        self.device = w.device
        self.cache = SlotKVCache(model.cfg, max_batch, w.device, dtype=w.dtype, max_len=self.max_context)
        self.running: list[Sequence] = []          # row b of the cache holds running[b]
        self.waiting: collections.deque[Sequence] = collections.deque()
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None
        self.stopping = False
        self.steps = 0                             # decode steps run, and rows in them (mean batch = rows / steps)
        self.step_rows = 0

    # ------------------------------------------------------------ the public side
    def start(self) -> "Engine":
        if self.thread is None:
            self.stopping = False
            self.thread = threading.Thread(target=self._loop, daemon=True, name="kit-engine")
            self.thread.start()
        return self

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        if self.thread is not None:
            self.thread.join(30)
            self.thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def check(self, prompt_ids: list[int], sampling: Sampling) -> None:
        """Raise ValueError (one sentence) for a request this engine cannot run."""
        sampling.check()
        if not prompt_ids:
            raise ValueError("the prompt is empty: give at least one token of text")
        if len(prompt_ids) + 1 > self.max_context:
            raise ValueError(f"the prompt has {len(prompt_ids)} tokens; this server's context is {self.max_context} "
                             "tokens (prompt + answer)")

    def submit(self, prompt_ids: list[int], sampling: Sampling = Sampling(), on_event: Callable | None = None
               ) -> Sequence:
        """Queue one request; its events go to ``on_event`` (see :class:`Sequence`). ``max_tokens`` is cut to what
        the context leaves. Raises ValueError for a bad request, :class:`QueueFull` when the queue is full."""
        self.check(prompt_ids, sampling)
        room = self.max_context - len(prompt_ids)
        if sampling.max_tokens > room:
            sampling = dataclasses.replace(sampling, max_tokens=room)
        seq = Sequence(prompt_ids, sampling, self.tok, on_event)
        with self.cond:
            if self.stopping or self.thread is None:
                raise RuntimeError("the engine is not running: use it in a `with Engine(...)` block or call start()")
            if len(self.waiting) >= self.max_queue + self.max_batch - len(self.running):   # free rows take some
                raise QueueFull(f"{len(self.waiting)} requests are already waiting (the queue holds {self.max_queue})")
            self.waiting.append(seq)
            self.cond.notify_all()
        return seq

    def generate(self, prompts: list, sampling: Sampling = Sampling(), progress: bool = False) -> list[Completion]:
        """Run every prompt (text, or a list of ids) through the batch; their :class:`Completion`\\ s in order.
        Prompts are fed in as rows free up (the queue never overflows)."""
        ids = [self.tok.encode(p) if isinstance(p, str) else [int(i) for i in p] for p in prompts]
        for p in ids:
            self.check(p, sampling)
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(ids), desc="generating", leave=False)
        seqs, done = [], threading.Semaphore(0)

        def on_event(kind, data):
            if kind == "done":
                done.release()
                if bar is not None:
                    bar.update(1)
        in_flight = 0
        for p in ids:
            while in_flight >= self.max_batch + self.max_queue:
                done.acquire()
                in_flight -= 1
            seqs.append(self.submit(p, sampling, on_event))
            in_flight += 1
        out = [s.wait() for s in seqs]
        if bar is not None:
            bar.close()
        return out

    @property
    def load(self) -> dict:
        """Running and waiting requests now, and the mean rows per decode step so far."""
        return {"running": len(self.running), "waiting": len(self.waiting),
                "mean_batch": self.step_rows / self.steps if self.steps else 0.0}

    # ------------------------------------------------------------ the loop
    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.stopping and not self.waiting and not self.running:
                    self.cond.wait()
                if self.stopping:
                    break
            self._drop_cancelled()
            self._admit()
            if self.running:
                self._decode_step()
        for seq in self.running + list(self.waiting):
            seq._finish("cancelled", "the engine stopped")
        self.running, self.waiting = [], collections.deque()

    def _drop_cancelled(self) -> None:
        with self.cond:
            gone = [s for s in self.waiting if s.cancelled]
            for s in gone:
                self.waiting.remove(s)
        for s in gone:
            s._finish("cancelled")
        for b in reversed(range(len(self.running))):
            if self.running[b].cancelled:
                self._leave(b, "cancelled")

    def _leave(self, b: int, reason: str, error: str | None = None) -> None:
        """Row ``b``'s request is over: the last running row moves into its place."""
        seq = self.running[b]
        last = len(self.running) - 1
        if b != last:
            self.cache.move(last, b)
            self.running[b] = self.running[last]
        self.running.pop()
        seq._finish(reason, error)

    @torch.inference_mode()
    def _admit(self) -> None:
        """Prefill waiting requests into free rows, one at a time; each samples its first token."""
        while len(self.running) < self.max_batch:
            with self.cond:
                if not self.waiting:
                    return
                seq = self.waiting.popleft()
            b = len(self.running)
            try:
                row = self.cache.row(b, len(seq.prompt_ids))
                idx = torch.tensor([seq.prompt_ids], dtype=torch.long, device=self.device)
                logits = self.model(idx, cache=row, last_only=True)[:, -1].float()
                self.cache.set_length(b, row.length)
                token = self._sample(seq, logits)
            except Exception as e:  # noqa: BLE001 - this request fails; the others go on
                seq._finish("error", f"{type(e).__name__}: {e}")
                continue
            self.running.append(seq)
            reason = seq._push(token, self.tok.eos_token_id)
            if reason:
                self._leave(b, reason)

    @torch.inference_mode()
    def _decode_step(self) -> None:
        B = len(self.running)
        last = [s.tokens[-1] for s in self.running]
        idx = torch.tensor(last, dtype=torch.long, device=self.device)[:, None]
        try:
            logits = self.model(idx, cache=self.cache, last_only=True)[:, -1].float()
            tokens = [self._sample(s, logits[b:b + 1]) for b, s in enumerate(self.running)]
        except Exception as e:  # noqa: BLE001 - the rows of a failed step fail; the loop goes on
            for b in reversed(range(B)):
                self._leave(b, "error", f"{type(e).__name__}: {e}")
            return
        self.steps += 1
        self.step_rows += B
        finished = [(b, s._push(t, self.tok.eos_token_id)) for b, (s, t) in enumerate(zip(self.running, tokens))]
        for b, reason in reversed(finished):   # from the end: a move never touches a row still to be visited
            if reason:
                self._leave(b, reason)

    @staticmethod
    def _sample(seq: Sequence, logits: torch.Tensor) -> int:
        s = seq.sampling
        if s.temperature == 0:
            return int(logits.argmax(-1))
        return int(sample_next(logits, s.temperature, None, s.top_p, seq.generator))
