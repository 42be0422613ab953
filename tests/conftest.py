"""Test setup: no network (only loopback), offline data, a temporary data cache.

Real public files in ``../shared/data`` (when that folder exists) are used as the data mirror, so the
real loading path is exercised; ``KIT_TEST_SHARED=0`` ignores them and tests exactly what a new user's
clone has (CI runs the notebook smoke tests once that way). Tests that need the real files skip then.
"""
from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()

USE_SHARED = SHARED_DATA.is_dir() and os.environ.get("KIT_TEST_SHARED", "1") != "0"

os.environ.setdefault("KIT_OFFLINE", "1")
if USE_SHARED:
    os.environ.setdefault("KIT_DATA_MIRROR", str(SHARED_DATA))
else:
    os.environ.pop("KIT_DATA_MIRROR", None)
os.environ.setdefault("KIT_THREADS", "2")
# Idle OpenMP threads sleep instead of spinning: under load, spinning threads slow everything badly.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


def _loopback(address) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


class NetworkBlocked(OSError):
    pass


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
        raise NetworkBlocked(f"tests may not use the network (tried to connect to {address})")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
        raise NetworkBlocked(f"tests may not use the network (tried to connect to {address})")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def no_network():
    """Any socket connection outside loopback fails for the whole test session."""
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    yield
    socket.socket.connect = _real_connect
    socket.socket.connect_ex = _real_connect_ex


@pytest.fixture(autouse=True, scope="session")
def data_cache(tmp_path_factory):
    """Keep the repository's data/ untouched: tests cache into a temporary folder."""
    d = tmp_path_factory.mktemp("kit-data")
    old = os.environ.get("KIT_DATA_DIR")
    os.environ["KIT_DATA_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("KIT_DATA_DIR", None)
    else:
        os.environ["KIT_DATA_DIR"] = old


@pytest.fixture(scope="session")
def lab_folder(tmp_path_factory) -> Path:
    """A copy of notebooks/ (without src/) for JupyterLab to serve; tests may add notebooks to it."""
    import shutil
    folder = tmp_path_factory.mktemp("lab") / "notebooks"
    shutil.copytree(ROOT / "notebooks", folder, ignore=shutil.ignore_patterns("src"))
    return folder


@pytest.fixture(scope="session")
def jupyterlab(lab_folder):
    """``(base_url, token)`` of one JupyterLab on 127.0.0.1 serving :func:`lab_folder`, shared by the browser tests."""
    import subprocess
    import time
    import urllib.request
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "kit-browser-test"
    from kit.lessons.cli import lab_command     # the command `kit lab` runs
    proc = subprocess.Popen(lab_command(port, lab_folder), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "JUPYTER_TOKEN": token, "KIT_OFFLINE": "1",
                                 "JUPYTER_CONFIG_DIR": str(lab_folder.parent / "cfg")})
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1)
                break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail("JupyterLab did not start")
        yield base, token
    finally:
        proc.terminate()
        proc.wait(timeout=30)
