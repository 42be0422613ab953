"""A run folder: what one execution of a notebook leaves behind, written by :func:`kit.lessons.run.execute` and read
by the report pages. The one model of it; the files and their JSON keys are the on-disk format:

* ``params.json`` — the parameters given (written first, by :func:`begin`);
* ``<notebook>.ipynb`` and ``<notebook>.html`` — the executed notebook and its page;
* ``metrics.json`` — written by the notebook itself (:func:`kit.results.save_metrics`):
  ``{"metrics": …, "timing": …, "params": …}`` (:class:`Results`);
* ``run.json`` — what ran and how it ended, written last: it marks the folder complete (:class:`RunRecord`).

Reading never raises on a missing, partial, old or corrupt file: :meth:`RunFolder.read` gives ``None`` for a folder
without a readable ``run.json``, and :class:`Results` says in ``problem`` why a run has no metrics.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

RUN_JSON, METRICS_JSON, PARAMS_JSON = "run.json", "metrics.json", "params.json"
STATUSES = ("ok", "failed", "unknown")  # "unknown": no run.json yet (a page made while the run finishes)


def _atomic_write(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _dict(v) -> dict:
    return v if isinstance(v, dict) else {}


def judged(run) -> dict:
    """What a run's headlines are judged on: its ``metrics`` plus its wall-clock ``timing`` (latencies, throughput:
    kept out of ``metrics``, which must be the same for the same seed); a name in both is the metric's.

    ``run``: a :class:`RunFolder`, its :class:`Results`, or a ``metrics.json`` document."""
    if isinstance(run, dict):
        metrics, timing = run.get("metrics"), run.get("timing")
    else:
        metrics, timing = run.metrics, run.timing
    return {**_dict(timing), **_dict(metrics)}


@dataclass
class RunRecord:
    """``run.json``: what ran, how it ended and why (written last: it marks a run folder complete)."""
    notebook: str
    status: str  # "ok" or "failed"
    seconds: float | None
    parameters: dict
    all_parameters: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    finished: str = ""
    reason: str | None = None  # one line, when the run failed
    attempts: int = 1  # 2 when a stalled kernel was replaced

    def write(self, folder: Path) -> Path:
        return _atomic_write(Path(folder) / RUN_JSON, json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, folder: Path) -> RunRecord | None:
        """The record of a run folder, or ``None`` when there is none, or it is unreadable or names no notebook.
        Keys it lacks (an older or partial record) or holds with the wrong type take their defaults."""
        try:
            data = json.loads((Path(folder) / RUN_JSON).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("notebook"), str) or not data["notebook"]:
            return None
        status = data.get("status")
        attempts = data.get("attempts")
        reason = data.get("reason")
        return cls(notebook=data["notebook"], status=status if status in STATUSES else "unknown",
                   seconds=data.get("seconds") if _is_number(data.get("seconds")) else None,
                   parameters=_dict(data.get("parameters")), all_parameters=_dict(data.get("all_parameters")),
                   env=_dict(data.get("env")), finished=str(data.get("finished") or ""),
                   reason=None if reason is None else str(reason),
                   attempts=attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 1)


@dataclass
class Results:
    """``metrics.json``, as the notebook wrote it: ``metrics`` (the same for the same seed), ``timing``
    (wall-clock numbers), ``params`` (the values it checked) and the whole document (``doc``). Where there are
    none, ``problem`` says why ("no metrics.json", "metrics.json is not valid JSON: …"); else it is ``None``."""
    metrics: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    doc: dict = field(default_factory=dict)
    problem: str | None = None

    @classmethod
    def from_doc(cls, doc) -> Results:
        """From a ``metrics.json`` document already read; anything but an object is a problem, not an error."""
        if not isinstance(doc, dict):
            return cls(problem=f"{METRICS_JSON} holds {type(doc).__name__}, not an object")
        return cls(metrics=_dict(doc.get("metrics")), timing=_dict(doc.get("timing")), params=_dict(doc.get("params")),
                   doc=doc)

    @classmethod
    def read(cls, folder: Path) -> Results:
        path = Path(folder) / METRICS_JSON
        try:
            text = path.read_text()
        except FileNotFoundError:
            return cls(problem=f"no {METRICS_JSON}")
        except OSError as e:
            return cls(problem=f"{METRICS_JSON} unreadable: {e.strerror or e}")
        try:
            doc = json.loads(text)
        except ValueError as e:
            return cls(problem=f"{METRICS_JSON} is not valid JSON: {e}")
        return cls.from_doc(doc)

    @property
    def judged(self) -> dict:
        return judged(self)


@dataclass
class RunFolder:
    """One run folder read whole: its ``run.json`` (``record``) and ``metrics.json`` (``results``).

    ``name`` is how a report names the run: the folder's path relative to the report's root."""
    path: Path
    record: RunRecord
    results: Results = field(default_factory=Results)
    name: str = ""

    def __post_init__(self):
        self.path = Path(self.path)
        self.name = self.name or self.path.name

    @classmethod
    def read(cls, folder: Path, root: Path | None = None) -> RunFolder | None:
        """The run in ``folder`` (``None`` when it has no readable ``run.json``), named relative to ``root``."""
        folder = Path(folder)
        record = RunRecord.read(folder)
        if record is None:
            return None
        name = folder.name
        if root is not None:
            try:
                rel = folder.relative_to(root).as_posix()
                name = folder.name if rel == "." else rel
            except ValueError:
                pass
        return cls(folder, record, Results.read(folder), name)

    @classmethod
    def of_notebook(cls, ipynb: Path, nb=None) -> RunFolder:
        """An executed notebook as a run, for its own page: made while ``execute`` finishes, before ``run.json``
        exists, so the status is "ok" when it saved metrics (else "unknown") and the time and parameters are
        papermill's (from the notebook's metadata, where ``nb`` is given)."""
        ipynb = Path(ipynb)
        results = Results.read(ipynb.parent)
        pm = _dict(nb.metadata.get("papermill", {}) if nb is not None else {})
        seconds = pm.get("duration")
        record = RunRecord(notebook=ipynb.name, status="ok" if results.doc else "unknown",
                           seconds=seconds if _is_number(seconds) else None, parameters=_dict(pm.get("parameters")))
        return cls(ipynb.parent, record, results)

    def write(self) -> Path:
        """Write ``run.json`` (last: the folder is then complete); ``metrics.json`` is the notebook's to write."""
        self.path.mkdir(parents=True, exist_ok=True)
        return self.record.write(self.path)

    # --- what a report reads
    @property
    def stem(self) -> str:
        """The notebook's name without ``.ipynb`` (``"04_cnn_digits"``)."""
        return Path(self.record.notebook).stem

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def ok(self) -> bool:
        return self.record.status == "ok"

    @property
    def seconds(self) -> float | None:
        return self.record.seconds

    @property
    def reason(self) -> str | None:
        return self.record.reason

    @property
    def finished(self) -> str:
        return self.record.finished

    @property
    def overrides(self) -> dict:
        """The parameters given (the rest were the notebook's defaults)."""
        return self.record.parameters

    @property
    def params(self) -> dict:
        """Every parameter's value (the overrides only, for a record older than ``all_parameters``)."""
        return self.record.all_parameters or self.record.parameters

    @property
    def metrics(self) -> dict:
        return self.results.metrics

    @property
    def timing(self) -> dict:
        return self.results.timing

    @property
    def judged(self) -> dict:
        """Metrics plus timing: what headlines are judged on (:func:`judged`)."""
        return self.results.judged

    @property
    def notebook_path(self) -> Path:
        """The executed notebook."""
        return self.path / Path(self.record.notebook).name

    @property
    def html_path(self) -> Path | None:
        """The executed notebook's page, where there is one."""
        page = self.path / Path(self.record.notebook).with_suffix(".html").name
        return page if page.exists() else None

    def href(self, root: Path) -> str | None:
        """The page's address relative to ``root`` (where a report on ``root`` links it), or ``None``."""
        page = self.html_path
        if page is None:
            return None
        try:
            return page.relative_to(root).as_posix()
        except ValueError:
            return page.as_uri()


def begin(folder: Path, parameters: dict) -> Path:
    """Make ``folder`` ready for a run: no ``metrics.json`` or ``run.json`` left from an earlier one (a rerun that
    fails must not look finished), and ``params.json`` with the parameters given. Returns the folder (absolute)."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (METRICS_JSON, RUN_JSON):
        (folder / stale).unlink(missing_ok=True)
    (folder / PARAMS_JSON).write_text(json.dumps(parameters, indent=2, sort_keys=True))
    return folder


def discard_results(folder: Path) -> None:
    """Remove ``metrics.json`` (a run that starts over must not keep the first attempt's)."""
    (Path(folder) / METRICS_JSON).unlink(missing_ok=True)


def collect(root: Path) -> list[RunFolder]:
    """Every run folder (one with a readable ``run.json``) under ``root``, at any depth, in path order; JupyterLab's
    ``.ipynb_checkpoints`` skipped."""
    root = Path(root)
    runs = []
    for run_json in sorted(root.rglob(RUN_JSON)):
        if ".ipynb_checkpoints" in run_json.parts:
            continue
        run = RunFolder.read(run_json.parent, root)
        if run is not None:
            runs.append(run)
    return runs


__all__ = ["METRICS_JSON", "PARAMS_JSON", "RUN_JSON", "Results", "RunFolder", "RunRecord", "begin", "collect",
           "discard_results", "judged"]
