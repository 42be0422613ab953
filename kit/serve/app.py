"""The service: FastAPI over an ONNX Runtime session, with strict input checks and Prometheus metrics.

    app = create_app("model.onnx", max_batch_rows=256, max_body_bytes=1_000_000, batching=True)
    with ThreadServer(app) as srv:            # uvicorn in a background thread, on 127.0.0.1, a free port
        httpx.post(srv.url + "/predict", json={"inputs": [[0.0] * 64]})
    with ServerProcess("model.onnx") as srv:  # the same service as a separate process (python -m kit.serve)
        ...

``POST /predict`` takes ``{"inputs": [[x₀, …, x_{d−1}], …]}`` (a batch of rows of the model's input width) and
answers ``{"predictions": [...], "confidence": [...]}``. Bad input gets a 4xx with ``{"error": "..."}`` and the
service keeps serving: malformed or too deeply nested JSON (400), a body that does not arrive within
``read_timeout`` (408), a body over ``max_body_bytes`` or a batch over ``max_batch_rows`` (413), wrong shape, wrong
type, NaN/inf, an empty batch or values whose model output overflows to inf/NaN (422). Any other failure is a 500,
counted as one in ``/metrics``. The server closes connections idle for ``keep_alive`` seconds (also before their
first request) or whose request headers take over ``read_timeout``, and answers 503 beyond ``limit_concurrency``
open connections.
"""

import asyncio
import atexit
import functools
import ipaddress
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np

from kit.techniques.onnx_runtime import ort_session

__all__ = ["create_app", "ThreadServer", "ServerProcess", "serve", "run_app", "BadInput", "parse_batch", "ort_session",
           "network_warning"]


class BadInput(ValueError):
    def __init__(self, status: int, message: str, reason: str):
        super().__init__(message)
        self.status, self.reason = status, reason


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def parse_batch(body: bytes, width: int, max_rows: int) -> np.ndarray:
    """The request body as a float32 array of shape (n, width), or :class:`BadInput` saying what is wrong."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadInput(400, f"malformed JSON: {e}", "malformed_json") from None
    except RecursionError:  # [[[[…]]]] deeper than the parser's recursion limit
        raise BadInput(400, "malformed JSON: nested too deeply", "malformed_json") from None
    if not isinstance(doc, dict) or "inputs" not in doc:
        raise BadInput(422, 'the body must be a JSON object {"inputs": [[...], ...]}', "wrong_type")
    rows = doc["inputs"]
    if not isinstance(rows, list):
        raise BadInput(422, f'"inputs" must be a list of rows, got {type(rows).__name__}', "wrong_type")
    if not rows:
        raise BadInput(422, "empty batch: send at least one row", "empty_batch")
    if len(rows) > max_rows:
        raise BadInput(413, f"batch of {len(rows)} rows is over the cap of {max_rows}", "batch_too_large")
    if (b"true" in body or b"false" in body or b"null" in body) and \
            any(isinstance(v, bool) or v is None for r in rows if isinstance(r, list) for v in r):
        raise BadInput(422, "inputs must be numbers (found true/false/null)", "wrong_type")
    if any(isinstance(v, list) for r in rows if isinstance(r, list) for v in r):
        raise BadInput(422, f"wrong shape: each row must be a flat list of {width} numbers (found nested lists)",
                       "wrong_shape")
    try:
        X = np.array(rows)
    except ValueError:
        raise BadInput(422, f"rows of different lengths: every row must hold {width} numbers", "wrong_shape") from None
    if X.dtype.kind not in "iuf":
        raise BadInput(422, "inputs must be numbers (found strings, objects or nested lists of different depth)",
                       "wrong_type")
    if X.ndim != 2 or X.shape[1] != width:
        raise BadInput(422, f"wrong shape {list(X.shape)}: expected [n, {width}]", "wrong_shape")
    if not np.isfinite(X).all() or (X.dtype.kind == "f" and np.abs(X).max() > np.finfo(np.float32).max):
        raise BadInput(422, "inputs hold NaN or infinity (or numbers too large for float32)", "not_finite")
    return X.astype(np.float32)


def _metrics(registry):
    from prometheus_client import Counter, Histogram
    return {
        "requests": Counter("kit_requests", "HTTP requests by endpoint and status", ["endpoint", "status"],
                            registry=registry),
        "rejected": Counter("kit_rejected", "rejected /predict requests by reason", ["reason"], registry=registry),
        "latency": Histogram("kit_predict_latency_seconds", "time spent answering /predict", registry=registry,
                             buckets=(.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5)),
        "batch": Histogram("kit_model_batch_rows", "rows per model call", registry=registry,
                           buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512)),
        "classes": Counter("kit_predicted_class", "predictions by class", ["cls"], registry=registry),
        "input_mean": Histogram("kit_input_mean", "mean of each input row", registry=registry,
                                buckets=tuple(np.round(np.linspace(0, 1, 11), 2))),
        "input_std": Histogram("kit_input_std", "standard deviation of each input row", registry=registry,
                               buckets=tuple(np.round(np.linspace(0, 1, 11), 2))),
        "confidence": Histogram("kit_confidence", "top predicted probability", registry=registry,
                                buckets=(.2, .4, .6, .8, .9, .95, .99, 1)),
    }


def create_app(model, *, max_batch_rows: int = 256, max_body_bytes: int = 1_000_000, batching: bool = False,
               max_batch: int = 64, max_wait_ms: float = 2.0, threads: int = 1, read_timeout: float = 10.0):
    """The FastAPI app serving ``model`` (a path to an .onnx file, or an ONNX Runtime session)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import CollectorRegistry, generate_latest, CONTENT_TYPE_LATEST

    from kit.serve.batching import MicroBatcher

    if isinstance(model, (str, Path)):
        if not Path(model).is_file():
            raise FileNotFoundError(f"no model file {model}")
        sess = ort_session(model, threads=threads)
    else:
        sess = model
    inp = sess.get_inputs()[0]
    width = inp.shape[-1]
    if not isinstance(width, int) or len(inp.shape) != 2:
        raise ValueError(f"the model's input must be (batch, features) with a fixed width, got {inp.shape}")
    name = inp.name
    registry = CollectorRegistry()
    M = _metrics(registry)

    def run(X: np.ndarray) -> np.ndarray:
        M["batch"].observe(len(X))
        return sess.run(None, {name: X})[0]

    batcher = MicroBatcher(run, max_batch, max_wait_ms) if batching else None

    @asynccontextmanager
    async def lifespan(app):
        if batcher:
            batcher.start()
        yield
        if batcher:
            await batcher.stop()

    app = FastAPI(title="kit serve", lifespan=lifespan)
    app.state.batcher, app.state.registry, app.state.width = batcher, registry, width
    app.state.read_timeout = read_timeout

    def reject(status: int, reason: str, message: str):
        M["rejected"].labels(reason).inc()
        M["requests"].labels("/predict", str(status)).inc()
        return JSONResponse({"error": message}, status_code=status)

    async def read_body(request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
            raise BadInput(413, f"body of {length} bytes is over the cap of {max_body_bytes}", "body_too_large")

        async def collect():
            chunks, size = [], 0
            async for chunk in request.stream():  # chunked bodies have no length: count while reading
                size += len(chunk)
                if size > max_body_bytes:
                    raise BadInput(413, f"body over the cap of {max_body_bytes} bytes", "body_too_large")
                chunks.append(chunk)
            return b"".join(chunks)
        try:  # a body sent slowly (or never) must not hold the connection forever
            return await asyncio.wait_for(collect(), read_timeout)
        except asyncio.TimeoutError:
            raise BadInput(408, f"the body did not arrive within {read_timeout:g} s", "read_timeout") from None

    async def answer(request):
        t0 = time.perf_counter()
        X = parse_batch(await read_body(request), width, max_batch_rows)
        logits = np.asarray(await batcher.submit(X) if batcher else run(X), dtype=np.float64)
        if not np.isfinite(logits).all():  # finite inputs near float32's max can overflow inside the model
            raise BadInput(422, "the model's output overflowed to inf/NaN: input values too large for this model",
                           "output_not_finite")
        probs = _softmax(logits)
        pred, conf = probs.argmax(1), probs.max(1)
        response = JSONResponse({"predictions": pred.tolist(), "confidence": np.round(conf, 6).tolist()})
        for c, k in zip(*np.unique(pred, return_counts=True)):
            M["classes"].labels(str(int(c))).inc(int(k))
        X64 = X.astype(np.float64)  # float32 sums of values near its max would overflow to inf
        for hist, values in ((M["input_mean"], X64.mean(1)), (M["input_std"], X64.std(1)), (M["confidence"], conf)):
            for v in values[np.isfinite(values)]:  # a histogram's sum must never absorb inf/NaN
                hist.observe(float(v))
        M["latency"].observe(time.perf_counter() - t0)
        M["requests"].labels("/predict", "200").inc()
        return response

    @app.post("/predict")
    async def predict(request: Request):
        try:
            return await answer(request)
        except BadInput as e:
            return reject(e.status, e.reason, str(e))
        except Exception:  # noqa: BLE001 - counted as the 500 it is, logged, and the service keeps serving
            logging.getLogger("uvicorn.error").exception("kit serve: /predict failed")
            M["requests"].labels("/predict", "500").inc()
            return JSONResponse({"error": "internal error while predicting (see the server's log)"}, status_code=500)

    @app.get("/health")
    async def health():
        M["requests"].labels("/health", "200").inc()
        return {"status": "ok", "input_width": width, "batching": bool(batcher)}

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _loopback_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so; without it every keep-alive
    # response waits ~40 ms (Nagle's algorithm meets the client's delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def network_warning(host: str) -> str | None:
    """A warning when ``host`` is not loopback: the service then answers anyone on the network, unauthenticated."""
    try:
        local = ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = host == "localhost"
    return None if local else (f"kit serve: warning: --host {host or repr(host)} makes the service reachable from the "
                               "network, without authentication (127.0.0.1: this machine only)")


@functools.cache
def _protocol(read_timeout: float):
    """uvicorn's h11 protocol with the deadlines it lacks: it closes a connection idle for ``timeout_keep_alive``
    seconds (uvicorn's own timer starts only after a first response) or whose request headers are still arriving
    ``read_timeout`` seconds after their first byte (a slow sender holds no socket forever)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        _timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._deadline(self.timeout_keep_alive, idle=True)

        def data_received(self, data):
            if self._idle and self.cycle is self._waiting:  # first bytes of a request: its headers' deadline
                self._deadline(read_timeout, idle=False)
            super().data_received(data)

        def on_response_complete(self):
            self._deadline(self.timeout_keep_alive, idle=True)  # before super(), which may start a pipelined request
            super().on_response_complete()

        def connection_lost(self, exc):
            if self._timer is not None:
                self._timer.cancel()
            super().connection_lost(exc)

        def _deadline(self, seconds: float, idle: bool):
            if self._timer is not None:
                self._timer.cancel()
            self._idle, self._waiting = idle, self.cycle
            self._timer = self.loop.call_later(seconds, self._expire)

        def _expire(self):
            if self.cycle is self._waiting and not self.transport.is_closing():  # no request began since
                self.transport.close()

    return Protocol


def _config(app, keep_alive: float, limit_concurrency: int | None):
    import uvicorn
    read_timeout = getattr(getattr(app, "state", None), "read_timeout", 10.0)  # create_app's
    return uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2,
                          http=_protocol(read_timeout), ws="none", timeout_keep_alive=keep_alive,
                          limit_concurrency=limit_concurrency)


class ThreadServer:
    """uvicorn serving ``app`` in a daemon thread; ``stop()`` (or leaving the ``with``) ends it and joins the thread.

    ``port=0`` takes a free port (``.url`` tells which). Registered with ``atexit`` so an interpreter that exits
    mid-lesson still stops it. ``keep_alive``: seconds before an idle connection is closed; beyond
    ``limit_concurrency`` open connections requests get 503.
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0, *,
                 keep_alive: float = 5.0, limit_concurrency: int | None = 512):
        import uvicorn
        self.sock = _loopback_socket(host, port)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn.Server(_config(app, keep_alive, limit_concurrency))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name=f"kit-serve-{self.port}")
        self.timeout = timeout

    def start(self) -> "ThreadServer":
        self.thread.start()
        t0 = time.perf_counter()
        while not self.server.started:
            if not self.thread.is_alive() or time.perf_counter() - t0 > self.timeout:
                self.stop()
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(self.timeout)
        self.sock.close()
        atexit.unregister(self.stop)

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class ServerProcess:
    """``python -m kit.serve MODEL --port 0 …`` as a child process; ``.url`` once it listens. Always stopped:
    ``with``, ``stop()`` and ``atexit`` terminate it (then kill it if it does not end within ``timeout``)."""

    def __init__(self, model, host: str = "127.0.0.1", port: int = 0, *, batching: bool = False, max_batch: int = 64,
                 max_wait_ms: float = 2.0, max_rows: int = 256, max_body: int = 1_000_000, timeout: float = 60.0,
                 extra: tuple = ()):
        self.cmd = [sys.executable, "-m", "kit.serve", str(model), "--host", host, "--port", str(port),
                    "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--max-rows", str(max_rows),
                    "--max-body", str(max_body), "--parent-pid", str(os.getpid()), *extra]
        if batching:
            self.cmd.append("--batching")
        self.timeout, self.proc, self.url = timeout, None, None

    def start(self) -> "ServerProcess":
        import queue
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        atexit.register(self.stop)
        lines: queue.Queue = queue.Queue()
        self.output: list[str] = []

        def read(stream):  # drains the pipe for the server's whole life, so it never blocks on a full pipe
            for line in stream:
                self.output.append(line)
                lines.put(line)
            lines.put(None)
        threading.Thread(target=read, args=(self.proc.stdout,), daemon=True, name="kit-serve-output").start()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < self.timeout:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].split()[0]
                return self
        self.stop()
        raise RuntimeError("kit serve did not start: " + "".join(self.output[-5:]).strip())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(self.timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        atexit.unregister(self.stop)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _watch_parent(pid: int, server) -> None:
    """End the server when process ``pid`` is gone (a notebook kernel killed outright cannot run atexit)."""
    def loop():
        while not server.should_exit:
            try:
                os.kill(pid, 0)
            except OSError:
                server.should_exit = True
                return
            if os.getppid() != pid:
                server.should_exit = True
                return
            time.sleep(0.5)
    threading.Thread(target=loop, daemon=True, name="kit-serve-parent-watch").start()


def serve(model, host: str = "127.0.0.1", port: int = 8000, parent_pid: int | None = None, *,
          keep_alive: float = 5.0, limit_concurrency: int | None = 512, **kw) -> None:
    """Serve ``model`` until interrupted (Ctrl-C or SIGTERM); prints ``listening on URL`` once it accepts requests.
    With ``parent_pid`` it also stops when that process ends; ``kw`` go to :func:`create_app`."""
    run_app(create_app(model, **kw), f"{Path(str(model)).name} listening on {{url}} (POST /predict, GET /health, "
            "GET /metrics)", host, port, parent_pid, keep_alive=keep_alive, limit_concurrency=limit_concurrency)


def run_app(app, banner: str, host: str = "127.0.0.1", port: int = 8000, parent_pid: int | None = None, *,
            keep_alive: float = 5.0, limit_concurrency: int | None = 512) -> None:
    """Serve ``app`` in this thread until interrupted; prints ``kit serve: <banner>`` (``{url}`` filled in) once it
    accepts requests. With ``parent_pid`` it also stops when that process ends."""
    import uvicorn
    sock = _loopback_socket(host, port)
    url = f"http://{host}:{sock.getsockname()[1]}"

    class _Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            print("kit serve: " + banner.replace("{url}", url), flush=True)

    server = _Server(_config(app, keep_alive, limit_concurrency))
    if parent_pid:
        _watch_parent(parent_pid, server)
    server.run(sockets=[sock])
