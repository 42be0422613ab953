"""Write a notebook's key results to ``metrics.json`` (reports and tests read numbers, not text), and give a
lesson a scratch folder for the files it makes on the way (:func:`scratch_dir`)."""
from __future__ import annotations

import atexit
import json
import math
import os
import re
import shutil
import tempfile
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


def scratch_dir(name: str, *, keep: bool = False) -> Path:
    """A fresh, empty folder for a lesson's intermediate files: exported models, checkpoints, logs.

    A lesson's working directory is not its own: from JupyterLab, or ``papermill --cwd notebooks``, it is
    the folder of the sources (or a workshop's student folder), and anything written there shows up as
    untracked files. Only ``metrics.json`` (the run's record, which ``kit run`` keeps in the run folder) is
    written there; everything else goes here. The folder is ``tempfile.mkdtemp(prefix=f"kit-{name}-")``
    under the system's temporary directory (``$TMPDIR``), so two kernels never share one, and it is removed
    when this process (the kernel) exits, unless ``keep``: while the kernel runs, its files can be opened.
    Files written here are real files, so sizes measured on them are sizes on disk.
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-.") or "lesson"
    folder = Path(tempfile.mkdtemp(prefix=f"kit-{safe}-"))
    if not keep:
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder
