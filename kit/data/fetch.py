"""Checksummed, atomic, lock-protected fetching of real data files into the cache.

Order for one file: valid cache → ``KIT_DATA_MIRROR`` folder → download (unless ``KIT_OFFLINE=1``).
A file is only ever used after its sha256 matched; it reaches its final name by an atomic rename.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock


class DataError(RuntimeError):
    """A dataset could not be provided (bad name, missing or corrupt file)."""


class DataUnavailable(DataError):
    """No real copy could be obtained (offline, no mirror, no cache)."""


class ChecksumError(DataError):
    """A file's sha256 does not match the registry."""


@dataclass(frozen=True)
class Source:
    """One real file: where it lives online, its sha256, and its path inside a mirror folder."""
    url: str
    sha256: str
    filename: str
    mirror_path: str = ""  # relative path inside KIT_DATA_MIRROR; defaults to <dataset>/<filename>


def cache_dir() -> Path:
    """``KIT_DATA_DIR``, else ``data/`` of a source checkout, else ``~/.cache/kit``."""
    env = os.environ.get("KIT_DATA_DIR")
    if env:
        return Path(env)
    repo_data = Path(__file__).resolve().parents[2] / "data"
    if repo_data.is_dir() and os.access(repo_data, os.W_OK):
        return repo_data
    return Path.home() / ".cache" / "kit"


def offline() -> bool:
    return os.environ.get("KIT_OFFLINE", "").lower() in ("1", "true", "yes")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _verified(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_file(path) == sha256


def _install(tmp: Path, dest: Path, sha256: str, origin: str) -> None:
    """Verify ``tmp`` and atomically rename it to ``dest``; remove it if it is wrong."""
    got = sha256_file(tmp)
    if got != sha256:
        tmp.unlink(missing_ok=True)
        raise ChecksumError(f"{origin}: sha256 {got[:12]}… does not match expected {sha256[:12]}…")
    os.replace(tmp, dest)


def _tmp_beside(dest: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    os.close(fd)
    return Path(name)


def _from_mirror(src: Source, dataset: str, dest: Path) -> bool:
    mirror = os.environ.get("KIT_DATA_MIRROR")
    if not mirror:
        return False
    path = Path(mirror) / (src.mirror_path or f"{dataset}/{src.filename}")
    if not path.is_file():
        return False
    tmp = _tmp_beside(dest)
    shutil.copyfile(path, tmp)
    _install(tmp, dest, src.sha256, f"mirror file {path}")
    return True


def _download(src: Source, dest: Path, timeout: float = 30.0) -> None:
    tmp = _tmp_beside(dest)
    try:
        req = urllib.request.Request(src.url, headers={"User-Agent": "kit-teaching-kit"})
        with urllib.request.urlopen(req, timeout=timeout) as r, open(tmp, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or None
            from tqdm.auto import tqdm
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {src.filename}",
                      disable=total is not None and total < (1 << 20)) as bar:
                while block := r.read(1 << 16):
                    f.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        tmp.unlink(missing_ok=True)
        raise DataUnavailable(f"cannot download {src.url}: {e}") from e
    _install(tmp, dest, src.sha256, f"download {src.url}")


def fetch(src: Source, dataset: str, retries: int = 1) -> tuple[Path, str]:
    """Return ``(path, origin)`` of a verified local copy of ``src``; origin is cache/mirror/download."""
    folder = cache_dir() / dataset
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / src.filename
    with FileLock(str(dest) + ".lock", timeout=900):
        if dest.exists():
            if _verified(dest, src.sha256):
                return dest, "cache"
            print(f"data: cached {dest} failed its sha256 check (partial or corrupt); fetching it again")
            dest.unlink()
        if _from_mirror(src, dataset, dest):
            return dest, "mirror"
        if offline():
            raise DataUnavailable(f"{src.filename}: not cached, no mirror copy, and KIT_OFFLINE is set")
        for attempt in range(retries + 1):
            try:
                _download(src, dest)
                return dest, "download"
            except ChecksumError:
                if attempt == retries:
                    raise
    raise AssertionError("unreachable")


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar archive, refusing members that would land outside ``dest`` or are links."""
    dest = dest.resolve()
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            target = (dest / m.name).resolve()
            if not target.is_relative_to(dest) or m.issym() or m.islnk() or m.isdev():
                raise DataError(f"refusing unsafe archive member {m.name!r} in {archive.name}")
        tar.extractall(dest, filter="data")
