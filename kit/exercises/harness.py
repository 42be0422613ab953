"""``kit.exercises`` as a notebook sees it while ``kit grade`` runs it in its sandbox.

There it is this module, not kit's exercise registry: the sandbox holds no reference solution, no expected value
and no verdict. ``check(id, answer)`` only calls the learner's answer on the inputs the grader drew for exercise
``id`` (``$KIT_GRADE_JOB/inputs/<id>.npz``) and writes what came back to ``$KIT_GRADE_JOB/answers/<id>.npz``
(:mod:`kit.exercises.wire`, no pickle). The grader judges those outputs in its own process. Printing a ✓, patching
this module or forging the answers file gains nothing: passing needs the right outputs for inputs drawn at
grading time.
"""
from __future__ import annotations

import os
from pathlib import Path

from kit.checks import ExerciseError  # noqa: F401 - the same names a lesson imports from kit.exercises
from kit.exercises import wire

__all__ = ["check", "hint", "record", "ExerciseError"]


def _job() -> Path:
    return Path(os.environ.get("KIT_GRADE_JOB", "."))


def record(id: str, answer) -> dict:
    """What the grader needs to judge ``answer``: its outputs on the grading inputs (or the value itself)."""
    if answer is None or answer is ...:
        return {"blank": True}
    try:
        task = wire.load(_job() / "inputs", f"{id}.npz")
    except FileNotFoundError:
        return {"error": f"no grading inputs for exercise {id}"}
    if task["kind"] != "function":
        return {"value": answer}
    if not callable(answer):
        return {"not_callable": type(answer).__name__}
    return {"outcomes": [_call(answer, args, kwargs) for _label, args, kwargs in task["cases"]]}


def _call(fn, args, kwargs) -> dict:
    import copy
    try:
        return {"value": fn(*copy.deepcopy(args), **copy.deepcopy(kwargs))}
    except Exception as e:  # noqa: BLE001 - the learner's code: what it raised is its outcome
        return {"raised": (type(e).__name__, str(e)[:2000])}


def check(id: str, answer) -> None:
    """Record ``answer``'s outputs for the grader; no verdict here (the grade book has it)."""
    rec = record(id, answer)
    answers = _job() / "answers"
    answers.mkdir(exist_ok=True)
    try:
        wire.save(answers / f"{id}.npz", rec)
    except Exception as e:  # noqa: BLE001 - e.g. a value too odd to write: the grader says so
        wire.save(answers / f"{id}.npz", {"error": f"its outputs could not be written ({type(e).__name__})"})
    print(f"{id}: answer recorded for grading")


def hint(id: str, level: int | None = None) -> str:
    text = f"(hints for {id} are shown when you check the notebook yourself)"
    print(text)
    return text
