"""Write a notebook's key results to ``metrics.json`` (reports and tests read numbers, not text)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np


def _plain(v):
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        v = v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def save_metrics(metrics: dict, timing: dict | None = None, params: dict | None = None,
                 path: str | os.PathLike = "metrics.json") -> Path:
    """Atomically write ``{"metrics": …, "timing": …, "params": …}``.

    ``metrics`` must be deterministic for a given seed on CPU (tests compare two runs);
    wall-clock numbers (seconds, tokens/s) go in ``timing``. ``params`` holds the values the notebook's
    ``kit.params.validate`` checked, plus any extra facts given here (e.g. which data was used).
    """
    from kit.params import validated
    path = Path(path)
    doc = {"metrics": _plain(metrics), "timing": _plain(timing or {}), "params": _plain({**validated(), **(params or {})})}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
    os.replace(tmp, path)
    print(f"metrics → {path.resolve()}")
    return path


def read_metrics(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())
