"""An OpenAI-compatible server for kit's causal LMs, over the continuous-batching :class:`~kit.serve.engine.Engine`.

    with LLMServer(model, tok, name="SmolLM2-135M-Instruct") as srv:       # uvicorn in a thread, 127.0.0.1
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="none")
        for chunk in client.chat.completions.create(model="SmolLM2-135M-Instruct", stream=True,
                                                    messages=[{"role": "user", "content": "Hi"}]):
            print(chunk.choices[0].delta.content or "", end="")

Routes: ``POST /v1/chat/completions`` and ``POST /v1/completions`` (``stream`` as server-sent events, ``max_tokens``,
``temperature``, ``top_p``, ``stop``, ``seed``, ``n``, ``stream_options.include_usage``), ``GET /v1/models``,
``GET /health``, ``GET /metrics`` (Prometheus text), ``GET /`` (a chat page, no CDN). A bad request gets OpenAI's
error shape ``{"error": {"message", "type", "param", "code"}}`` with a 4xx: 400 for malformed JSON, wrong types,
bad values, a prompt longer than the context or ``max_tokens`` over the cap; 404 for an unknown model; 413 for a body
over the cap; 429 when the engine's queue is full. A client that disconnects mid-answer frees its row at the next step.

``GET /`` is a chat page (``static/chat.html``: one file, no CDN) that streams answers and has a Stop button;
:func:`kit.viz.chat.chat_widget` is the same in JupyterLab and leaves a static transcript in reports.
"""

import asyncio
import html
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

from kit.serve.engine import Engine, QueueFull, Sampling

__all__ = ["create_llm_app", "LLMServer", "RequestError", "parse_request", "sse"]

STATIC = Path(__file__).parent / "static"


class RequestError(ValueError):
    """A request the server refuses: HTTP ``status``, OpenAI's error ``type``, the offending ``param``, a ``code``."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.param, self.code, self.type = status, param, code, type

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": self.type, "param": self.param, "code": self.code}}


def sse(payload) -> str:
    """One server-sent event carrying ``payload`` (a dict as JSON, or a string such as ``[DONE]``)."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return f"data: {data}\n\n"


# ---------------------------------------------------------------- reading a request
def _number(body: dict, key: str, default, lo: float, hi: float, integer: bool = False):
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        kind = "an integer" if integer else "a number"
        raise RequestError(f"'{key}' must be {kind}, got {type(value).__name__}", key)
    if not lo <= value <= hi:
        raise RequestError(f"'{key}' must be between {lo:g} and {hi:g}, got {value}", key)
    return value


def _messages(value) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise RequestError("'messages' must be a non-empty list of {\"role\", \"content\"} objects", "messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m:
            raise RequestError(f"messages[{i}] must be an object with a 'role' and a 'content'", "messages")
        role, content = m["role"], m.get("content")
        if role not in ("system", "user", "assistant"):
            raise RequestError(f"messages[{i}].role must be 'system', 'user' or 'assistant', got {role!r}", "messages")
        if isinstance(content, list):   # [{"type": "text", "text": …}, …]: the text parts joined
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise RequestError(f"messages[{i}].content: only text parts are supported", "messages")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise RequestError(f"messages[{i}].content must be a string, got {type(content).__name__}", "messages")
        out.append({"role": role, "content": content})
    return out


def _stop(value) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and 0 < len(s) <= 256
                                                                for s in stops):
        raise RequestError("'stop' must be a string of 1–256 characters or a list of at most 4 of them", "stop")
    return tuple(stops)


def parse_request(body, chat: bool, model_name: str, tok, max_tokens_cap: int, max_n: int = 4,
                  max_context: int = 2048) -> dict:
    """A request body → ``{"prompt_ids", "sampling" (one per choice), "stream", "include_usage"}``, or
    :class:`RequestError` saying in one sentence what is wrong. A prompt of more than 32 characters per token of
    ``max_context`` is refused before it is tokenised (tokenising megabytes would hold the server up)."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str):
        raise RequestError("'model' is required: a string (GET /v1/models lists them)", "model")
    if model != model_name:
        raise RequestError(f"the model '{model}' does not exist: this server serves '{model_name}'", "model", 404,
                           "model_not_found")
    if chat:
        prompt = tok.apply_chat_template(_messages(body.get("messages")), add_generation_prompt=True)
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise RequestError("'prompt' must be a non-empty string", "prompt")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(f"'stream' must be true or false, got {type(stream).__name__}", "stream")
    key = "max_completion_tokens" if chat and body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number(body, key, min(256, max_tokens_cap), 1, max_tokens_cap, integer=True)
    temperature = _number(body, "temperature", 1.0, 0, 2)
    top_p = _number(body, "top_p", 1.0, 0, 1)
    if top_p == 0:
        raise RequestError("'top_p' must be greater than 0", "top_p")
    seed = _number(body, "seed", None, -2**63, 2**63 - 1, integer=True)
    n = _number(body, "n", 1, 1, max_n, integer=True)
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError("'stream_options' must be an object", "stream_options")
    stop = _stop(body.get("stop"))
    if len(prompt) > 32 * max_context:
        raise RequestError(f"the prompt has {len(prompt)} characters, far more than this server's context of "
                           f"{max_context} tokens", "messages" if chat else "prompt", code="context_length_exceeded")
    ids = tok.encode(prompt)
    samplings = [Sampling(max_tokens=max_tokens, temperature=float(temperature), top_p=None if top_p == 1 else top_p,
                          seed=None if seed is None else seed + i, stop=stop) for i in range(n)]
    return {"prompt_ids": ids, "sampling": samplings, "stream": stream,
            "include_usage": bool(options.get("include_usage", False))}


# ---------------------------------------------------------------- the app
def _metrics(registry, engine: Engine):
    from prometheus_client import Counter, Gauge, Histogram
    latency = (.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)
    m = {
        "requests": Counter("kit_llm_requests", "requests by route and status", ["route", "status"],
                            registry=registry),
        "prompt_tokens": Counter("kit_llm_prompt_tokens", "prompt tokens of admitted requests", registry=registry),
        "completion_tokens": Counter("kit_llm_completion_tokens", "tokens generated", registry=registry),
        "finish": Counter("kit_llm_finished", "finished choices by reason", ["reason"], registry=registry),
        "ttft": Histogram("kit_llm_time_to_first_token_seconds", "request arrival → first token", registry=registry,
                          buckets=latency),
        "itl": Histogram("kit_llm_inter_token_seconds", "time between consecutive tokens of one answer",
                         registry=registry, buckets=(.005, .01, .02, .04, .08, .16, .32, .64, 1.28)),
        "answer_tokens": Histogram("kit_llm_answer_tokens", "tokens per answer", registry=registry,
                                   buckets=(1, 4, 16, 32, 64, 128, 256, 512, 1024)),
    }
    Gauge("kit_llm_running", "requests being decoded", registry=registry).set_function(
        lambda: engine.load["running"])
    Gauge("kit_llm_waiting", "requests waiting for a row", registry=registry).set_function(
        lambda: engine.load["waiting"])
    Gauge("kit_llm_mean_batch", "mean rows per decode step so far", registry=registry).set_function(
        lambda: engine.load["mean_batch"])
    return m


def create_llm_app(engine: Engine, model_name: str, *, max_tokens_cap: int = 1024, max_n: int = 4,
                   max_body_bytes: int = 1_000_000):
    """The FastAPI app over a started or unstarted ``engine`` (the app's lifespan starts and stops it)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    M = _metrics(registry, engine)
    tok = engine.tok
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app):
        engine.start()
        yield
        await asyncio.to_thread(engine.stop)

    app = FastAPI(title="kit serve (LLM)", lifespan=lifespan)
    app.state.engine = engine

    def error(e: RequestError, route: str):
        M["requests"].labels(route, str(e.status)).inc()
        return JSONResponse(e.body(), status_code=e.status)

    async def read_json(request: Request):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
            raise RequestError(f"the body is over the cap of {max_body_bytes} bytes", status=413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise RequestError(f"the body is over the cap of {max_body_bytes} bytes", status=413)
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError) as e:
            raise RequestError(f"the body is not valid JSON: {e}") from None
        except RecursionError:
            raise RequestError("the body is not valid JSON: nested too deeply") from None

    async def complete(request: Request, chat: bool):
        route = "/v1/chat/completions" if chat else "/v1/completions"
        t_arrival = time.perf_counter()
        try:
            body = await read_json(request)   # tokenised off the event loop: other clients' streams go on
            req = await asyncio.to_thread(parse_request, body, chat, model_name, tok, max_tokens_cap, max_n,
                                          engine.max_context)
            for s in req["sampling"]:
                engine.check(req["prompt_ids"], s)
        except RequestError as e:
            return error(e, route)
        except ValueError as e:   # the engine's checks: a prompt longer than the context, …
            return error(RequestError(str(e), "messages" if chat else "prompt",
                                      code="context_length_exceeded" if "context" in str(e) else None), route)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        last_token = {}

        def listener(i):
            def on_event(kind, data):
                now = time.perf_counter()
                if kind == "token":
                    if i in last_token:
                        M["itl"].observe(now - last_token[i])
                    else:
                        M["ttft"].observe(now - t_arrival)
                    last_token[i] = now
                loop.call_soon_threadsafe(events.put_nowait, (i, kind, data))
            return on_event

        seqs = []
        try:
            for i, s in enumerate(req["sampling"]):
                seqs.append(engine.submit(req["prompt_ids"], s, listener(i)))
        except (QueueFull, RuntimeError) as e:
            for s in seqs:
                s.cancel()
            return error(RequestError(f"the server is busy: {e}; retry later", status=429, code="rate_limit_exceeded",
                                      type="rate_limit_error"), route)
        M["prompt_tokens"].inc(len(req["prompt_ids"]))
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        head = {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion", "created": int(time.time()),
                "model": model_name}

        def finished(result):
            M["finish"].labels(result.finish_reason).inc()
            M["completion_tokens"].inc(len(result.token_ids))
            M["answer_tokens"].observe(len(result.token_ids))

        def usage(results):
            n_out = sum(len(r.token_ids) for r in results)
            return {"prompt_tokens": len(req["prompt_ids"]), "completion_tokens": n_out,
                    "total_tokens": len(req["prompt_ids"]) + n_out}

        def choice(i, text=None, reason=None, role=False):
            if chat:
                delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
                return {"index": i, "delta": delta, "logprobs": None, "finish_reason": reason}
            return {"index": i, "text": text or "", "logprobs": None, "finish_reason": reason}

        if req["stream"]:
            async def stream():
                results = {}
                try:
                    if chat:
                        for i in range(len(seqs)):
                            yield sse({**head, "choices": [choice(i, role=True)]})
                    while len(results) < len(seqs):
                        i, kind, data = await events.get()
                        if kind == "token":
                            if data:
                                yield sse({**head, "choices": [choice(i, data)]})
                            continue
                        results[i] = data
                        finished(data)
                        if data.finish_reason == "error":
                            yield sse(RequestError(f"generation failed: {data.error}", status=500,
                                                   type="server_error").body())
                            continue
                        yield sse({**head, "choices": [choice(i, reason=data.finish_reason)]})
                    if req["include_usage"]:
                        yield sse({**head, "choices": [], "usage": usage(results.values())})
                    yield sse("[DONE]")
                    M["requests"].labels(route, "200").inc()
                finally:   # the client went away (or the answer is complete): free the rows now
                    for s in seqs:
                        s.cancel()
            return StreamingResponse(stream(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

        try:
            results = {}
            while len(results) < len(seqs):
                try:
                    i, kind, data = await asyncio.wait_for(events.get(), 0.5)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return Response(status_code=499)
                    continue
                if kind == "done":
                    results[i] = data
                    finished(data)
        finally:
            for s in seqs:
                s.cancel()
        failed = [r for r in results.values() if r.finish_reason == "error"]
        if failed:
            M["requests"].labels(route, "500").inc()
            logging.getLogger("uvicorn.error").error("kit serve: generation failed: %s", failed[0].error)
            return JSONResponse(RequestError(f"generation failed: {failed[0].error}", status=500,
                                             type="server_error").body(), status_code=500)
        ordered = [results[i] for i in range(len(seqs))]
        if chat:
            choices = [{"index": i, "message": {"role": "assistant", "content": r.text}, "logprobs": None,
                        "finish_reason": r.finish_reason} for i, r in enumerate(ordered)]
        else:
            choices = [choice(i, r.text, r.finish_reason) for i, r in enumerate(ordered)]
        M["requests"].labels(route, "200").inc()
        return {**head, "object": "chat.completion" if chat else "text_completion", "choices": choices,
                "usage": usage(ordered)}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await complete(request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await complete(request, chat=False)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": created,
                                            "owned_by": "kit"}]}

    @app.get("/health")
    async def health():
        alive = engine.thread is not None and engine.thread.is_alive()
        return JSONResponse({"status": "ok" if alive else "engine stopped", "model": model_name, **engine.load},
                            status_code=200 if alive else 503)

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/")
    async def page():
        path = STATIC / "chat.html"
        if not path.is_file():
            return HTMLResponse("<p>kit serve: no chat page installed; POST /v1/chat/completions</p>")
        return HTMLResponse(path.read_text(encoding="utf-8").replace("{{MODEL}}", html.escape(model_name)))

    @app.exception_handler(Exception)
    async def on_error(request, exc):   # anything unforeseen: a 500 in OpenAI's shape, and the server goes on
        logging.getLogger("uvicorn.error").exception("kit serve: %s failed", request.url.path)
        return JSONResponse(RequestError("internal error (see the server's log)", status=500,
                                         type="server_error").body(), status_code=500)

    return app


class LLMServer:
    """``model`` behind the OpenAI-compatible routes, served by uvicorn in a daemon thread on 127.0.0.1 (a free
    port by default: ``.url``). A context manager; ``engine_kw`` go to :class:`~kit.serve.engine.Engine`
    (``max_batch``, ``max_queue``, ``max_context``)."""

    def __init__(self, model, tok, name: str = "model", host: str = "127.0.0.1", port: int = 0, *,
                 max_tokens_cap: int = 1024, **engine_kw):
        from kit.serve.app import ThreadServer
        self.engine = Engine(model, tok, **engine_kw)
        self.app = create_llm_app(self.engine, name, max_tokens_cap=max_tokens_cap)
        self.server = ThreadServer(self.app, host, port, keep_alive=30.0)
        self.url, self.name = self.server.url, name

    def start(self) -> "LLMServer":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.engine.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
