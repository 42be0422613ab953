"""The data layer: mirror, checksums, atomic re-fetch, offline fallback, locking, safe extraction."""
from __future__ import annotations

import hashlib
import http.server
import io
import multiprocessing as mp
import socket
import tarfile
import threading
import urllib.request

import pytest

import kit.data as data
from kit.data import DataError, DataUnavailable, Dataset, Source, Text, register
from tests.conftest import SHARED_DATA, USE_SHARED

PAYLOAD = b"to be, or not to be\n" * 500
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _register_fake(name: str, url: str = "http://127.0.0.1:9/none.txt", sha: str = SHA) -> Dataset:
    return register(Dataset(
        name=name, description="test corpus", sources=[Source(url, sha, "corpus.txt")],
        load_real=lambda paths: Text(paths[0].read_text(), source=""),
        embedded=lambda: Text("embedded text", source=""), embedded_note="a tiny embedded text"))


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    m = tmp_path / "mirror"
    (m / "fake").mkdir(parents=True)
    (m / "fake" / "corpus.txt").write_bytes(PAYLOAD)
    monkeypatch.setenv("KIT_DATA_MIRROR", str(m))
    monkeypatch.setenv("KIT_DATA_DIR", str(tmp_path / "cache"))
    _register_fake("fake")
    return m


def test_mirror_hit_then_cache(mirror, tmp_path, capsys):
    t = data.load("fake")
    assert t.text == PAYLOAD.decode() and "mirror" in t.source
    assert (tmp_path / "cache" / "fake" / "corpus.txt").read_bytes() == PAYLOAD
    assert "data: fake ← real data (mirror" in capsys.readouterr().out
    assert "cache" in data.load("fake").source


def test_corrupt_cache_is_detected_removed_and_refetched(mirror, tmp_path, capsys):
    data.load("fake")
    cached = tmp_path / "cache" / "fake" / "corpus.txt"
    cached.write_bytes(PAYLOAD[:100])  # truncated / partial file
    t = data.load("fake")
    assert t.text == PAYLOAD.decode() and "mirror" in t.source
    assert "failed its sha256 check" in capsys.readouterr().out
    assert cached.read_bytes() == PAYLOAD


def test_bad_mirror_file_is_never_used(mirror, tmp_path):
    (mirror / "fake" / "corpus.txt").write_bytes(b"tampered")
    with pytest.raises(data.ChecksumError, match="does not match"):
        data.load("fake")
    folder = tmp_path / "cache" / "fake"
    assert not (folder / "corpus.txt").exists()
    assert not list(folder.glob("*.part")), "no half-written file may stay behind"


def test_offline_falls_back_to_embedded_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KIT_DATA_MIRROR", raising=False)
    monkeypatch.setenv("KIT_DATA_DIR", str(tmp_path))
    _register_fake("fake_offline")
    t = data.load("fake_offline")
    assert t.text == "embedded text" and t.source.startswith("embedded default")
    out = capsys.readouterr().out
    assert "embedded default: a tiny embedded text" in out and "real data unavailable" in out
    with pytest.raises(DataUnavailable):
        data.load("fake_offline", source="real")


def test_network_is_blocked_during_tests():
    with pytest.raises(OSError, match="may not use the network"):
        socket.create_connection(("93.184.216.34", 80), timeout=1)
    with pytest.raises(OSError):
        urllib.request.urlopen("http://example.com", timeout=1)


@pytest.fixture
def http_server(tmp_path):
    """A loopback HTTP server serving ``tmp_path/www`` (the real download path, no internet)."""
    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(www), **k)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_download_verified_and_corrupt_download_refused(http_server, tmp_path, monkeypatch):
    www, base = http_server
    monkeypatch.delenv("KIT_DATA_MIRROR", raising=False)
    monkeypatch.setenv("KIT_OFFLINE", "0")
    monkeypatch.setenv("KIT_DATA_DIR", str(tmp_path / "cache"))
    (www / "corpus.txt").write_bytes(PAYLOAD)
    _register_fake("fake_http", url=f"{base}/corpus.txt")
    t = data.load("fake_http")
    assert "download" in t.source and t.text == PAYLOAD.decode()
    # A server that serves a different file: checksum mismatch → retried, then a clear error, nothing kept.
    (www / "bad.txt").write_bytes(b"not the real file")
    _register_fake("fake_http_bad", url=f"{base}/bad.txt")
    with pytest.raises(data.ChecksumError):
        data.load("fake_http_bad")
    assert not any((tmp_path / "cache" / "fake_http_bad").glob("corpus.txt*[!k]"))


def _load_in_process(args):
    mirror, cache = args
    import os
    os.environ["KIT_DATA_MIRROR"], os.environ["KIT_DATA_DIR"], os.environ["KIT_OFFLINE"] = mirror, cache, "1"
    import kit.data as d
    from tests.test_data import _register_fake
    _register_fake("fake")
    t = d.load("fake", verbose=False)
    origin = "mirror" if "(mirror" in t.source else "cache" if "(cache" in t.source else t.source
    return origin, hashlib.sha256(t.text.encode()).hexdigest()


def test_concurrent_processes_one_fetch_all_verified(mirror, tmp_path):
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.map(_load_in_process, [(str(mirror), str(tmp_path / "cache"))] * 4)
    origins = sorted(o for o, _ in results)
    assert {h for _, h in results} == {SHA}
    assert origins == ["cache", "cache", "cache", "mirror"], f"exactly one process fetches, got {origins}"


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(DataError, match="unknown dataset 'mnsit'; known datasets: .*mnist_5k"):
        data.load("mnsit")


def test_safe_extract_refuses_path_traversal(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(DataError, match="unsafe archive member"):
        data.safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


@pytest.mark.skipif(not USE_SHARED, reason="needs the real file in ../shared/data (absent, or KIT_TEST_SHARED=0)")
def test_real_tinyshakespeare_through_the_mirror(monkeypatch, tmp_path):
    monkeypatch.setenv("KIT_DATA_MIRROR", str(SHARED_DATA))
    monkeypatch.setenv("KIT_DATA_DIR", str(tmp_path))
    t = data.load("tinyshakespeare", source="real")
    assert t.text.startswith("First Citizen:") and len(t.text) == 1115394
    assert t.text == data.load("tinyshakespeare", source="embedded").text, "the embedded copy is the real file"


def test_embedded_tinyshakespeare_is_the_real_file():
    import hashlib
    text = data.load("tinyshakespeare", source="embedded").text
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == \
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"  # sha256 of char-rnn's input.txt


def test_embedded_defaults_are_real_or_documented():
    houses = data.load("houses", source="embedded")
    assert houses.X.shape == (1000, 4) and "synthetic" in houses.source
    mnist = data.load("mnist_5k")
    assert mnist.X.shape == (5000, 784) and set(mnist.y.tolist()) == set(range(10))
    assert len(data.load("tinyshakespeare", source="embedded").text) > 100_000
