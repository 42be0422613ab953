"""Exercise inputs and a learner's outputs as data, written and read without pickle: one ``.npz`` file.

The file holds a JSON tree (as bytes) and the arrays it refers to; it is read with ``np.load(allow_pickle=False)``,
so reading a file written by untrusted code can give wrong *values* but never runs code. Supported: ``None``, bools,
numbers, strings, tuples, lists, dicts (any encodable keys), numpy arrays and scalars, torch tensors and
:class:`~kit.exercises.inputs.InputFunction`. Anything else is written as ``Unsupported(type name)``, so a
learner's odd return value becomes a clear "must be numeric, got …" instead of a crash.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

MAX_DEPTH = 40
MAX_BYTES = 256 * 2 ** 20  # a file larger than this is not read


class WireError(ValueError):
    """A file that is not a well-formed record of this module (truncated, forged, too large)."""


def unsupported(type_name: str):
    """An object standing for a value of a type the wire cannot carry; its type is named ``type_name``."""
    name = str(type_name)[:80] or "object"
    return type(name, (), {"__repr__": lambda self: f"<{name}>"})()


class _Writer:
    def __init__(self):
        self.arrays: dict[str, object] = {}
        self._seen: dict[int, str] = {}  # the same array object is stored once

    def _array(self, a, key_of) -> str:
        key = self._seen.get(id(key_of))
        if key is None:
            key = self._seen[id(key_of)] = f"a{len(self.arrays)}"
            self.arrays[key] = a
        return key

    def tree(self, x, depth=0):
        import numpy as np
        if depth > MAX_DEPTH:
            return {"__unsupported__": "deeply nested value"}
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, (int, float)) and type(x) in (int, float):
            return x if isinstance(x, int) else {"__float__": repr(x)}  # repr keeps inf/nan and every digit
        if isinstance(x, np.generic) and x.dtype != object:
            return {"__npscalar__": self._array(np.asarray(x), x)}
        if isinstance(x, np.ndarray) and x.dtype != object:
            return {"__ndarray__": self._array(x, x)}
        torch = _torch()
        if torch is not None and isinstance(x, torch.Tensor):
            t = x.detach().cpu()
            dtype = str(t.dtype).removeprefix("torch.")
            if t.dtype == torch.bfloat16:
                t = t.float()
            return {"__tensor__": self._array(t.resolve_conj().resolve_neg().numpy(), x), "dtype": dtype}
        if isinstance(x, tuple):
            return {"__tuple__": [self.tree(v, depth + 1) for v in x]}
        if isinstance(x, list):
            return [self.tree(v, depth + 1) for v in x]
        if isinstance(x, dict):
            return {"__dict__": [[self.tree(k, depth + 1), self.tree(v, depth + 1)] for k, v in x.items()]}
        from kit.exercises.inputs import InputFunction
        if isinstance(x, InputFunction):
            return {"__fn__": x.kind, "label": x.label, "params": self.tree(x.params, depth + 1)}
        return {"__unsupported__": type(x).__name__}


def _torch():
    import sys
    return sys.modules.get("torch")  # a tensor can only exist if torch was imported


def _read_tree(node, arrays, depth=0):
    import numpy as np
    if depth > MAX_DEPTH + 2:
        raise WireError("nested too deeply")
    if node is None or isinstance(node, (bool, int, str)):
        return node
    if isinstance(node, list):
        return [_read_tree(v, arrays, depth + 1) for v in node]
    if not isinstance(node, dict) or len(node) == 0:
        raise WireError("unexpected node")
    tag = next(iter(node))
    if tag == "__float__":
        return float(node[tag])
    if tag == "__npscalar__":
        return arrays[node[tag]][()]
    if tag == "__ndarray__":
        return np.array(arrays[node[tag]])
    if tag == "__tensor__":
        import torch
        t = torch.from_numpy(np.array(arrays[node[tag]]))
        dtype = getattr(torch, str(node.get("dtype", "")), None)
        return t.to(dtype) if isinstance(dtype, torch.dtype) else t
    if tag == "__tuple__":
        return tuple(_read_tree(v, arrays, depth + 1) for v in node[tag])
    if tag == "__dict__":
        return {_read_tree(k, arrays, depth + 1): _read_tree(v, arrays, depth + 1) for k, v in node[tag]}
    if tag == "__fn__":
        from kit.exercises.inputs import InputFunction
        return InputFunction(str(node[tag]), str(node.get("label", "")), **_read_tree(node["params"], arrays, depth + 1))
    if tag == "__unsupported__":
        return unsupported(node[tag])
    raise WireError(f"unknown tag {str(tag)[:40]!r}")


def dumps(obj) -> bytes:
    """``obj`` as the bytes of one ``.npz`` file."""
    import numpy as np
    w = _Writer()
    tree = json.dumps(w.tree(obj), allow_nan=False).encode()
    buf = io.BytesIO()
    np.savez(buf, __tree__=np.frombuffer(tree, dtype=np.uint8), **w.arrays)
    return buf.getvalue()


def loads(data: bytes):
    """The object :func:`dumps` wrote; :class:`WireError` for anything else. Never unpickles."""
    import numpy as np
    if len(data) > MAX_BYTES:
        raise WireError(f"larger than {MAX_BYTES // 2 ** 20} MB")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        tree = json.loads(bytes(arrays.pop("__tree__")).decode())
        return _read_tree(tree, arrays)
    except WireError:
        raise
    except (Exception, RecursionError) as e:  # noqa: BLE001 - whatever a forged file makes numpy/json raise
        raise WireError(f"not readable ({type(e).__name__})") from None


def save(path: Path, obj) -> None:
    """Write ``obj`` to ``path`` atomically (a reader sees the old file or the whole new one)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(dumps(obj))
    os.replace(tmp, path)


def read_untrusted(folder: Path, relpath: str, limit: int = MAX_BYTES) -> bytes:
    """The bytes of ``folder/relpath``, a regular file that untrusted code may have written: no component may be a
    symlink (each is opened with ``O_NOFOLLOW`` below the trusted ``folder``), no FIFO or device is opened for
    reading, at most ``limit`` bytes. FileNotFoundError if it is not there, :class:`WireError` otherwise."""
    import stat
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fds = [os.open(folder, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        parts = [p for p in Path(relpath).parts if p not in ("", ".")]
        if any(p == ".." for p in parts) or Path(relpath).is_absolute():
            raise WireError("not a path inside the folder")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            fds.append(os.open(part, flags | (0 if last else os.O_DIRECTORY), dir_fd=fds[-1]))
        st = os.fstat(fds[-1])
        if not stat.S_ISREG(st.st_mode):
            raise WireError("not a regular file")
        if st.st_size > limit:
            raise WireError(f"larger than {limit // 2 ** 20} MB")
        chunks, left = [], limit
        while left > 0:
            chunk = os.read(fds[-1], min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise WireError(f"not readable ({type(e).__name__})") from None
    finally:
        for fd in fds:
            os.close(fd)


def load(folder: Path, relpath: str):
    """Read ``folder/relpath``, written by :func:`save` — possibly by untrusted code — safely."""
    return loads(read_untrusted(folder, relpath))
