"""What ``kit grade`` runs inside its sandbox: the rebuilt notebook, with the lesson's smoke parameters.

``python -m kit.lessons.grade_job /job`` reads ``/job/job.json`` (notebook, parameters, cell time limit), executes the
notebook into ``/job/run/`` past failing cells, and writes ``/job/run/status.json`` with the run's one-line failure
(kernel died, a cell over its time limit), if any. The verdicts are not made here: each check cell records the answer's
outputs (:mod:`kit.exercises.harness`) and the grader judges them outside.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main(job: str = "/job") -> int:
    from kit.lessons.run import execute, failure_message
    job = Path(job)
    spec = json.loads((job / "job.json").read_text())
    error = None
    try:
        execute(job / spec["notebook"], job / "run", spec["parameters"], timeout=spec["timeout"], html=False,
                progress=False, stall_timeout=spec.get("stall"), allow_errors=True)
    except Exception as e:  # noqa: BLE001 - one line for the grade book, never a traceback
        error = failure_message(e) or f"{type(e).__name__}: {e}"
    (job / "run").mkdir(exist_ok=True)
    (job / "run" / "status.json").write_text(json.dumps({"error": error}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
