"""kit.serve: the HTTP service (predict, health, Prometheus metrics), every class of bad input, micro-batching,
clean shutdown, the ``kit serve`` verb's errors, and the drift statistics. Loopback only, a tiny model."""
from __future__ import annotations

import asyncio
import json
import socket
import threading

import httpx
import numpy as np
import pytest
import torch

from kit.lessons.cli import main
from kit.serve import app as service
from kit.serve import loadtest, monitor
from kit.serve.batching import MicroBatcher
from kit.techniques.export import to_onnx

W = 16  # input width of the test model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(W, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    path, _ = to_onnx(net, torch.zeros(2, W), tmp_path_factory.mktemp("m") / "tiny.onnx", dynamo=False)
    return path


@pytest.fixture(scope="module")
def server(model_path):
    with service.ThreadServer(service.create_app(model_path, max_batch_rows=32, max_body_bytes=20_000)) as srv:
        yield srv


def _post(url, content: bytes):
    return httpx.post(url + "/predict", content=content, headers={"content-type": "application/json"})


def test_predict_matches_onnx_runtime_and_health_answers(server, model_path):
    X = np.random.default_rng(0).random((5, W)).astype(np.float32)
    r = httpx.post(server.url + "/predict", json={"inputs": X.tolist()})
    assert r.status_code == 200, r.text
    logits = service.ort_session(model_path).run(None, {"x": X})[0]
    assert r.json()["predictions"] == logits.argmax(1).tolist()
    p = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(r.json()["confidence"], (p / p.sum(1, keepdims=True)).max(1), atol=1e-5)
    assert httpx.get(server.url + "/health").json() == {"status": "ok", "input_width": W, "batching": False}
    assert server.url.startswith("http://127.0.0.1:")


ROW = [0.5] * W
BAD = {
    "malformed JSON": (b'{"inputs": [[0.1, ', 400, "malformed JSON"),
    "not UTF-8": (b"\xff\xfe\x00", 400, "malformed JSON"),
    "not an object": (b"[1, 2]", 422, "JSON object"),
    "no inputs key": (b'{"x": [[1]]}', 422, "JSON object"),
    "inputs not a list": (b'{"inputs": 3}', 422, "list of rows"),
    "wrong shape": (json.dumps({"inputs": [ROW[:-1]]}).encode(), 422, "wrong shape"),
    "3-D": (json.dumps({"inputs": [[ROW]]}).encode(), 422, "wrong shape"),
    "1-D": (json.dumps({"inputs": ROW}).encode(), 422, "wrong shape"),
    "ragged": (json.dumps({"inputs": [ROW, ROW[:3]]}).encode(), 422, "different lengths"),
    "strings": (json.dumps({"inputs": [["a"] * W]}).encode(), 422, "numbers"),
    "booleans": (json.dumps({"inputs": [[True] + ROW[1:]]}).encode(), 422, "true/false/null"),
    "null": (json.dumps({"inputs": [[None] + ROW[1:]]}).encode(), 422, "true/false/null"),
    "NaN": (b'{"inputs": [[NaN' + b", 0.5" * (W - 1) + b"]]}", 422, "NaN"),
    "Infinity": (b'{"inputs": [[-Infinity' + b", 0.5" * (W - 1) + b"]]}", 422, "NaN or infinity"),
    "1e400": (b'{"inputs": [[1e400' + b", 0.5" * (W - 1) + b"]]}", 422, "NaN or infinity"),
    "over float32": (b'{"inputs": [[1e39' + b", 0.5" * (W - 1) + b"]]}", 422, "too large for float32"),
    "empty batch": (b'{"inputs": []}', 422, "empty batch"),
    "deeply nested body": (b"[" * 5000 + b"]" * 5000, 400, "nested too deeply"),
    "deeply nested inputs": (b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "nested too deeply"),
    "nested rows": (b'{"inputs": ' + b"[" * 40 + b"0.5" + b"]" * 40 + b"}", 422, "wrong shape"),
    "batch over the cap": (json.dumps({"inputs": [ROW] * 33}).encode(), 413, "over the cap of 32"),
    "body over the cap": (b'{"inputs": [[' + b" " * 30_000 + b"0.5]]}", 413, "over the cap of 20000"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_input_gets_a_clear_4xx_and_the_service_keeps_serving(server, kind):
    body, status, words = BAD[kind]
    r = _post(server.url, body)
    assert r.status_code == status, (kind, r.status_code, r.text)
    assert words in r.json()["error"], r.json()
    ok = httpx.post(server.url + "/predict", json={"inputs": [ROW]})
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 1


def test_body_over_the_cap_without_a_length_header_is_refused_while_reading(server):
    def chunks():
        for _ in range(30):
            yield b" " * 1000
    r = httpx.post(server.url + "/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over the cap" in r.json()["error"]


def test_100_000_nested_lists_get_a_400_and_the_service_keeps_serving(model_path):
    deep = b"[" * 100_000 + b"]" * 100_000
    with service.ThreadServer(service.create_app(model_path)) as srv:
        for body in (deep, b'{"inputs": ' + deep + b"}"):
            r = _post(srv.url, body)
            assert r.status_code == 400 and r.json() == {"error": "malformed JSON: nested too deeply"}
        assert httpx.post(srv.url + "/predict", json={"inputs": [ROW]}).status_code == 200


def _samples(text: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_values_that_overflow_inside_the_model_get_a_422_and_metrics_stay_finite(model_path):
    big = float(np.finfo(np.float32).max) * 0.999  # finite in float32, but sums of 16 of them are not
    bodies = [[[big] * W], [[big, -big] * (W // 2)], [[-big] * W, ROW]]
    with service.ThreadServer(service.create_app(model_path)) as srv:
        for rows in bodies:
            out = service.ort_session(model_path).run(None, {"x": np.array(rows, dtype=np.float32)})[0]
            r = httpx.post(srv.url + "/predict", json={"inputs": rows})
            if np.isfinite(out).all():
                assert r.status_code == 200, r.text
            else:
                assert r.status_code == 422 and "overflowed to inf/NaN" in r.json()["error"], r.text
        assert any(not np.isfinite(service.ort_session(model_path).run(None, {"x": np.array(b, np.float32)})[0]).all()
                   for b in bodies)  # the test does exercise an overflow
        assert httpx.post(srv.url + "/predict", json={"inputs": [ROW]}).status_code == 200
        samples = _samples(httpx.get(srv.url + "/metrics").text)
    assert samples and all(np.isfinite(v) for v in samples.values()), samples
    counted = {dict(k[1])["status"]: v for k, v in samples.items() if k[0] == "kit_requests_total"}
    assert sum(counted.values()) == len(bodies) + 1 and "500" not in counted, counted


def test_an_internal_error_is_a_500_counted_as_500(model_path):
    class Broken:  # an ONNX Runtime session whose run fails
        def __init__(self):
            self.sess = service.ort_session(model_path)

        def get_inputs(self):
            return self.sess.get_inputs()

        def run(self, *a):
            raise RuntimeError("the model broke")
    with service.ThreadServer(service.create_app(Broken())) as srv:
        r = httpx.post(srv.url + "/predict", json={"inputs": [ROW]})
        assert r.status_code == 500 and "internal error" in r.json()["error"]
        assert httpx.get(srv.url + "/health").status_code == 200
        samples = _samples(httpx.get(srv.url + "/metrics").text)
    predict = {dict(k[1])["status"]: v for k, v in samples.items()
               if k[0] == "kit_requests_total" and dict(k[1])["endpoint"] == "/predict"}
    assert predict == {"500": 1.0}, predict


def _closed_by_server(sock: socket.socket, within: float, drip: bytes = b"") -> float | None:
    """Seconds until the server closes ``sock`` (sending ``drip`` every 0.1 s meanwhile), or None if it did not."""
    import select
    import time
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < within:
        try:
            if drip:
                sock.sendall(drip)
            if select.select([sock], [], [], 0.1)[0]:
                while True:  # read any response, then the end of the stream
                    if not sock.recv(65536):
                        return time.perf_counter() - t0
        except OSError:  # reset or broken pipe: closed as well
            return time.perf_counter() - t0
    return None


def test_idle_and_slow_connections_are_closed_and_idle_sockets_do_not_stop_the_server(model_path):
    app = service.create_app(model_path, read_timeout=0.5)
    with service.ThreadServer(app, keep_alive=0.5) as srv:
        def connect():
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=3)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s
        with connect() as idle:  # never sends a byte
            assert (_closed_by_server(idle, 3) or 9) < 2
        with connect() as slow:  # request headers dripping in, one line every 0.1 s, never finished
            slow.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
            assert (_closed_by_server(slow, 3, drip=b"X-a: b\r\n") or 9) < 2
        with connect() as after:  # idle after a response
            after.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (_closed_by_server(after, 3) or 9) < 2
        with connect() as body:  # headers complete, body never comes: 408
            body.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            body.settimeout(3)
            assert body.recv(65536).startswith(b"HTTP/1.1 408 ")
        sockets = [connect() for _ in range(50)]
        try:
            for _ in range(3):
                assert httpx.post(srv.url + "/predict", json={"inputs": [ROW]}).status_code == 200
        finally:
            for s in sockets:
                s.close()


def test_connections_over_the_limit_get_503_and_the_server_recovers(model_path):
    import time
    with service.ThreadServer(service.create_app(model_path), limit_concurrency=5) as srv:
        sockets = [socket.create_connection(("127.0.0.1", srv.port), timeout=3) for _ in range(8)]
        t0 = time.perf_counter()
        while (code := httpx.get(srv.url + "/health").status_code) != 503 and time.perf_counter() - t0 < 2:
            time.sleep(0.05)
        assert code == 503
        for s in sockets:
            s.close()
        t0 = time.perf_counter()
        while (code := httpx.get(srv.url + "/health").status_code) != 200 and time.perf_counter() - t0 < 2:
            time.sleep(0.05)
        assert code == 200


def test_metrics_endpoint_speaks_prometheus(model_path):
    with service.ThreadServer(service.create_app(model_path)) as srv:
        X = np.random.default_rng(1).random((6, W)).tolist()
        httpx.post(srv.url + "/predict", json={"inputs": X})
        _post(srv.url, b"{")
        text = httpx.get(srv.url + "/metrics").text
    assert 'kit_requests_total{endpoint="/predict",status="200"} 1.0' in text
    assert 'kit_requests_total{endpoint="/predict",status="400"} 1.0' in text
    assert 'kit_rejected_total{reason="malformed_json"} 1.0' in text
    assert "kit_predict_latency_seconds_count 1.0" in text and "kit_predict_latency_seconds_bucket{le=" in text
    assert sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("kit_predicted_class_total{")) == 6
    assert "kit_input_mean_count 6.0" in text and "kit_input_std_count 6.0" in text
    assert "kit_confidence_count 6.0" in text and "kit_model_batch_rows_count 1.0" in text


def test_micro_batching_merges_concurrent_requests_and_answers_the_same(model_path):
    rng = np.random.default_rng(2)
    rows = rng.random((40, W)).astype(np.float32)
    bodies = [json.dumps({"inputs": [r.tolist()]}).encode() for r in rows]
    app = service.create_app(model_path, batching=True, max_batch=8, max_wait_ms=20)
    with service.ThreadServer(app) as srv:
        res = loadtest.load_test(srv.url, bodies, concurrency=8, n_requests=40, max_seconds=20)
        got = loadtest.send_all(srv.url, bodies[:5])
    assert res["ok"] == 40
    sizes = app.state.batcher.batch_sizes
    assert sum(sizes[:-5]) == 40 and max(sizes) <= 8 and len(sizes) - 5 < 40, sizes  # some requests shared a call
    want = service.ort_session(model_path).run(None, {"x": rows[:5]})[0].argmax(1)
    assert [a["predictions"][0] for _, a in got] == want.tolist()


def test_micro_batcher_respects_max_batch_and_splits_results():
    calls = []

    def run(X):
        calls.append(len(X))
        return X * 2

    async def go():
        b = MicroBatcher(run, max_batch=4, max_wait_ms=50)
        b.start()
        outs = await asyncio.gather(*(b.submit(np.full((1, 2), i, dtype=np.float32)) for i in range(10)))
        await b.stop()
        return outs
    outs = asyncio.run(go())
    assert [float(o[0, 0]) for o in outs] == [2.0 * i for i in range(10)]
    assert calls == [4, 4, 2]
    with pytest.raises(ValueError):
        MicroBatcher(run, max_batch=0)


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_thread_server_shuts_down_cleanly(model_path):
    before = {t.name for t in threading.enumerate()}
    srv = service.ThreadServer(service.create_app(model_path, batching=True)).start()
    assert httpx.get(srv.url + "/health").status_code == 200
    srv.stop()
    assert not srv.running and _port_closed(srv.port)
    assert not [t for t in threading.enumerate() if t.name.startswith("kit-serve") and t.name not in before]


def test_server_process_serves_on_loopback_and_leaves_nothing_behind(model_path):
    with service.ServerProcess(model_path, timeout=30) as srv:
        assert srv.url.startswith("http://127.0.0.1:")
        assert httpx.post(srv.url + "/predict", json={"inputs": [ROW]}).status_code == 200
        pid, port = srv.proc.pid, int(srv.url.rsplit(":", 1)[1])
    assert not srv.running and srv.proc.returncode is not None
    assert _port_closed(port)
    with pytest.raises(ProcessLookupError):
        import os
        os.kill(pid, 0)


@pytest.mark.parametrize("args,needle", [(["missing.onnx"], "no model file missing.onnx"),
                                         (["README.md"], "is not an .onnx file"),
                                         (["MODEL", "--port", "70000"], "--port must be 0–65535"),
                                         (["MODEL", "--max-batch", "0"], "must be ≥ 1")])
def test_cli_serve_rejects_bad_input_with_one_line(args, needle, model_path, capsys, monkeypatch):
    monkeypatch.chdir(model_path.parents[2] if args[0] == "README.md" else model_path.parent)
    if args[0] == "README.md":
        (model_path.parents[2] / "README.md").write_text("not a model")
    args = [str(model_path) if a == "MODEL" else a for a in args]
    assert main(["serve", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and err.startswith("kit serve: ")


def test_cli_serve_defaults_to_loopback():
    import argparse

    from kit.serve.__main__ import add_arguments
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    args = ap.parse_args(["m.onnx"])
    assert args.host == "127.0.0.1" and args.timeout_keep_alive == 5 and args.limit_concurrency == 512


@pytest.mark.parametrize("host,warns", [("127.0.0.1", False), ("localhost", False), ("::1", False),
                                        ("0.0.0.0", True), ("::", True), ("192.168.1.5", True)])
def test_cli_serve_warns_once_when_not_loopback(host, warns, model_path, capsys, monkeypatch):
    served = {}
    monkeypatch.setattr(service, "serve", lambda model, host, port, **kw: served.update(host=host, **kw))
    assert main(["serve", str(model_path), "--host", host, "--timeout-keep-alive", "2"]) == 0
    assert served["host"] == host and served["keep_alive"] == 2  # still served, with the flags
    err = capsys.readouterr().err.strip()
    if warns:
        assert len(err.splitlines()) == 1 and "reachable from the network, without authentication" in err, err
    else:
        assert err == ""


# ---------------------------------------------------------------------------------------------- monitor


def test_psi_by_hand_and_its_edge_cases():
    e, a = np.array([50, 30, 20]), np.array([20, 30, 50])
    by_hand = (0.2 - 0.5) * np.log(0.2 / 0.5) + 0 + (0.5 - 0.2) * np.log(0.5 / 0.2)
    assert monitor._psi(e, a, 1e-4) == pytest.approx(by_hand, rel=1e-12)
    assert monitor._psi(e, e * 7, 1e-4) == pytest.approx(0.0, abs=1e-15)
    empty = monitor._psi(e, np.array([0, 50, 50]), 1e-4)
    assert np.isfinite(empty) and empty > 2
    from kit.exercises.lesson18 import _psi as reference
    rng = np.random.default_rng(3)
    for _ in range(5):
        x, y = rng.integers(0, 100, 8), rng.integers(1, 100, 8)
        assert monitor._psi(x + 1, y, 1e-4) == pytest.approx(reference(x + 1, y, 1e-4), rel=1e-12)


def test_quantile_bins_hold_equal_reference_mass_and_psi_of_samples():
    rng = np.random.default_rng(4)
    ref = rng.normal(size=5000)
    edges = monitor.quantile_edges(ref, 10)
    counts = monitor.histogram(ref, edges)
    assert len(counts) == 10 and counts.sum() == 5000 and np.all(np.abs(counts - 500) <= 1)
    assert monitor.psi_of_samples(ref, rng.normal(size=5000)) < 0.02
    assert monitor.psi_of_samples(ref, rng.normal(1.0, 1, size=5000)) > 0.5
    assert monitor.psi_of_classes([0, 1, 2, 2], [0, 1, 2, 2], n_classes=4) == pytest.approx(0.0)


def test_ks_test_is_scipys_and_the_drift_report_alerts_on_shift_only():
    from scipy import stats
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=300), rng.normal(0.5, 1, size=200)
    d, p = monitor.ks_test(a, b)
    r = stats.ks_2samp(a, b)
    assert d == pytest.approx(r.statistic) and p == pytest.approx(r.pvalue)

    def window(n, shift=0.0):
        X = np.clip(rng.random((n, 64)) * 0.6 + shift, 0, 1)
        logits = rng.normal(size=(n, 10)) + 3 * np.eye(10)[rng.integers(0, 10, n)]
        P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        return monitor.window_stats(X, P)
    ref = window(400)
    assert not monitor.drift_report(ref, window(400), n_classes=10)["alert"]
    shifted = monitor.drift_report(ref, window(400, shift=0.1), n_classes=10)
    assert shifted["alert"] and {r["statistic"] for r in shifted["table"] if r["alert"]} >= {"input_mean"}


def test_latency_summary_is_numpys_percentiles():
    lat = np.random.default_rng(6).lognormal(size=101)
    s = loadtest.summary(lat)
    assert s["p50_ms"] == pytest.approx(np.median(lat)) and s["p99_ms"] == pytest.approx(np.percentile(lat, 99))


def test_server_process_that_cannot_start_says_why_and_is_gone(tmp_path):
    bad = tmp_path / "garbage.onnx"
    bad.write_text("not an ONNX file")
    srv = service.ServerProcess(bad, timeout=30)
    with pytest.raises(RuntimeError, match="kit serve did not start: kit serve: cannot serve"):
        srv.start()
    assert not srv.running


def test_the_service_session_has_exports_settings_and_needs_no_torch(model_path):
    import subprocess
    import sys
    from kit.techniques import export
    assert service.ort_session is export.ort_session     # one helper, kit.techniques.onnx_runtime's
    a, b = service.ort_session(model_path), export.ort_session(model_path)
    X = np.random.default_rng(7).random((3, W)).astype(np.float32)
    np.testing.assert_array_equal(a.run(None, {"x": X})[0], b.run(None, {"x": X})[0])
    assert a.get_session_options().intra_op_num_threads == b.get_session_options().intra_op_num_threads == 1
    code = (f"import sys; from kit.serve.app import create_app; create_app({str(model_path)!r}); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
