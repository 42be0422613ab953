"""Checked exercises: kit holds each exercise's reference, checks a learner's answer at check time, and hints in levels.

A lesson's check cell is only ``check("02.3", softmax_ce_grad)``: it never holds the answer and never computes
it from notebook variables. The expected value is computed here, when the check runs:

* a **value** exercise compares a learner's number/array with kit's own computation;
* a **function** exercise ("implement") calls the learner's function and kit's reference on fresh random inputs
  and edge cases (drawn anew at every check) and names the first case that differs;
* a **property** exercise (e.g. "find a learning rate that diverges") runs kit's own test of the answer.

A first failure nudges with hint 1; ``hint("02.3", 2)`` (or ``kit check --hints 2``, which sets ``KIT_HINTS``)
shows more. Hints never give the answer. Each lesson's exercises live in ``kit/exercises/lessonNN.py`` and are
loaded on first use.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Callable, Iterable

from kit.checks import ExerciseError

__all__ = ["Exercise", "ExerciseError", "check", "hint", "exercises", "value", "function", "prop", "compare", "randn",
           "find_leaks", "Case", "Outcome", "call"]

_REGISTRY: dict[str, "Exercise"] = {}


@dataclass
class Case:
    """One input to a function exercise: a label that names it in a failure message, and the arguments."""
    label: str
    args: tuple
    kwargs: dict = field(default_factory=dict)


@dataclass
class Outcome:
    """What a learner's function did on one case: returned ``value``, or raised (exception type name, message)."""
    value: Any = None
    raised: tuple[str, str] | None = None


def call(fn, case: Case) -> Outcome:
    """Call ``fn`` on copies of ``case``'s arguments (so it cannot change kit's inputs)."""
    try:
        return Outcome(fn(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs)))
    except Exception as e:  # noqa: BLE001 - the learner's code: what it raised is part of the outcome
        return Outcome(raised=(type(e).__name__, str(e)))


@dataclass
class Exercise:
    """One exercise. A *function* exercise is judged in two halves that may run in different processes:
    ``calls(rng)`` draws the inputs the learner's function is called on, and ``assess(cases, outcomes)`` judges what
    it returned (``outcomes`` may be a lazy iterable, consumed in order) (kit's references live only there). *value* and *property* exercises are judged on the answer itself
    by ``test(answer)``. ``kit grade`` runs the calls in a sandbox and ``assess`` in its own process; :func:`check`
    runs both here — the same cases and the same comparison.
    """
    id: str                      # "02.3": lesson 02, exercise 3
    title: str
    kind: str                    # "value" | "function" | "property"
    hints: tuple[str, ...]
    calls: Callable[[Any], Iterable[Case]] | None = None  # function: the inputs, from a numpy Generator
    assess: Callable[[list, list], str | None] | None = None  # function: None when right, else why not
    test: Callable[[Any], str | None] | None = None  # value/property: None when right, else why not
    probe: Callable[[], Any] | None = None  # value exercises: the expected value (for the no-leak test)
    reference: Callable | None = None  # function exercises made by function(): kit's own solution (grader side only)

    @property
    def lesson(self) -> str:
        return self.id.split(".")[0]

    def arity(self) -> Case:
        """One case (seed 0), to find candidate functions in the no-leak test."""
        import numpy as np
        return next(iter(self.calls(np.random.default_rng(0))))

    def judge(self, answer) -> str | None:
        """``None`` if ``answer`` is right, else why not — everything in this process (interactive checks)."""
        if self.kind != "function":
            return self.test(answer)
        if not callable(answer):
            return not_a_function(answer)
        import numpy as np
        cases = list(self.calls(np.random.default_rng()))
        return self.assess(cases, (call(answer, c) for c in cases))  # lazily: no call after the first failing case


def not_a_function(answer) -> str:
    return f"your answer should be a function, got {type(answer).__name__}"


def raised_message(outcome: Outcome, where: str) -> str | None:
    """The verdict on a case where the learner's function raised (``None`` if it did not)."""
    if outcome.raised is None:
        return None
    name, msg = outcome.raised
    if name == "NotImplementedError":
        return "no answer yet — write the function's body"
    return f"{where} your function raised {name}: {msg}"


def _register(ex: Exercise) -> Exercise:
    if ex.id in _REGISTRY:
        raise ValueError(f"exercise {ex.id} is defined twice")
    if not 1 <= len(ex.hints):
        raise ValueError(f"exercise {ex.id} needs at least one hint")
    _REGISTRY[ex.id] = ex
    return ex


# ------------------------------------------------------------------------------------------ comparing


def _numeric(x):
    import numpy as np
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.dtype.is_complex:
            return np.asarray(x)
        return np.asarray(x.double() if x.is_floating_point() else x.long())
    return np.asarray(x)


def compare(got, want, atol: float = 1e-6, rtol: float = 1e-5, what: str = "the result") -> str | None:
    """``None`` if ``got`` matches ``want`` (numbers, arrays, tensors, or tuples/lists/dicts of them), else why not."""
    import numpy as np
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{what} should be a dict with keys {sorted(want)}, got {type(got).__name__}"
        missing = [k for k in want if k not in got]
        if missing:
            return f"{what} lacks the key(s) {missing}"
        for k in want:
            msg = compare(got[k], want[k], atol, rtol, f"{what}[{k!r}]")
            if msg:
                return msg
        return None
    structured = isinstance(want, (tuple, list)) and \
        any(hasattr(w, "shape") or isinstance(w, (tuple, list, dict)) for w in want)
    if structured or (isinstance(want, (tuple, list)) and isinstance(got, (tuple, list))):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            return f"{what} should be {len(want)} values (a tuple), got " + \
                (f"{len(got)}" if isinstance(got, (tuple, list)) else type(got).__name__)
        for i, (g, w) in enumerate(zip(got, want)):
            msg = compare(g, w, atol, rtol, f"{what}[{i}]")
            if msg:
                return msg
        return None
    if got is None:
        return f"{what} is None — did you forget to return it?"
    if isinstance(want, str):
        return None if got == want else f"{what} is {got!r}, expected a different string"
    try:
        g, w = _numeric(got), _numeric(want)
        g = g.astype(np.float64) if g.dtype != object else g
        w = w.astype(np.float64)
    except (TypeError, ValueError):
        return f"{what} must be numeric (a number, array or tensor), got {type(got).__name__}"
    if g.dtype == object:
        return f"{what} must be numeric (a number, array or tensor), got {type(got).__name__}"
    if g.shape != w.shape:
        if g.size == w.size == 1:
            g, w = g.reshape(()), w.reshape(())
        else:
            return f"{what} has shape {tuple(g.shape)}, expected {tuple(w.shape)}"
    nan_g, nan_w = np.isnan(g), np.isnan(w)
    if (nan_g != nan_w).any():
        return f"{what} has NaN where it should not" if nan_g.any() and not nan_w.any() else \
            f"{what} should be NaN at some positions"
    same_inf = np.isinf(w) & (g == w)
    ok = np.isclose(g, w, atol=atol, rtol=rtol) | nan_w | same_inf
    if not ok.all():
        diff = np.where(ok, 0.0, np.abs(np.nan_to_num(g - w, nan=np.inf)))
        i = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.ndim else ()
        where = f" at index {tuple(int(j) for j in i)}" if diff.ndim else ""
        return f"{what} is off by {float(diff[i] if diff.ndim else diff):.3g}{where} (tolerance {atol:g} + {rtol:g}·|expected|)"
    return None


# ---------------------------------------------------------------------------------------- defining


def randn(rng, *shape, scale: float = 1.0, loc: float = 0.0, dtype=None):
    """A fresh normal tensor ``loc + scale·N(0, 1)`` of ``shape`` from a numpy ``rng`` (float64 unless ``dtype``):
    the inputs exercises' cases are drawn from."""
    import torch
    return torch.tensor(loc + rng.normal(size=shape) * scale, dtype=dtype or torch.float64)


def value(id: str, title: str, expected: Callable[[], Any], hints: Iterable[str], atol: float = 1e-6,
          rtol: float = 1e-5) -> Exercise:
    """An exercise whose answer is a value; ``expected()`` computes it inside kit when the check runs."""
    def test(answer):
        return compare(answer, expected(), atol, rtol, "your answer")
    return _register(Exercise(id, title, "value", tuple(hints), test=test, probe=expected))


def function(id: str, title: str, reference: Callable, cases: Callable[[Any], Iterable[Case]], hints: Iterable[str],
             atol: float = 1e-6, rtol: float = 1e-5, same: Callable[[Any, Any], str | None] | None = None) -> Exercise:
    """An "implement" exercise: the learner's function must agree with ``reference`` on every case.

    ``cases(rng)`` yields :class:`Case` objects from a fresh ``numpy.random.Generator`` (random inputs and edge
    cases: shapes, masks, extreme values); the learner's function gets copies, so it cannot change kit's inputs.
    ``same(got, want)`` replaces the numeric comparison where needed.
    """
    def assess(cases, outcomes):
        for case, got in zip(cases, outcomes):
            where = f"on the case '{case.label}'"
            if got.raised:
                return raised_message(got, where)
            want = reference(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
            msg = same(got.value, want) if same else compare(got.value, want, atol, rtol, "its result")
            if msg:
                return f"{where} {msg}"
        return None
    return _register(Exercise(id, title, "function", tuple(hints), calls=cases, assess=assess, reference=reference))


def prop(id: str, title: str, test: Callable, hints: Iterable[str],
         calls: Callable[[Any], Iterable[Case]] | None = None) -> Exercise:
    """An exercise judged by kit's own test. Without ``calls``: ``test(answer)`` → ``None`` or why not. With
    ``calls`` the answer is a function, called on ``calls(rng)``'s cases, and ``test(cases, outcomes)`` judges
    what it returned (e.g. a statistical test of a randomised function)."""
    if calls is not None:
        return _register(Exercise(id, title, "function", tuple(hints), calls=calls, assess=test))
    return _register(Exercise(id, title, "property", tuple(hints), test=test))


# ------------------------------------------------------------------------------------------ using


def _load(lesson: str) -> None:
    try:
        import_module(f"kit.exercises.lesson{lesson}")
    except ModuleNotFoundError as e:
        if e.name != f"kit.exercises.lesson{lesson}":
            raise


def get(id: str) -> Exercise:
    """The exercise ``id`` (e.g. ``"02.3"``), loading its lesson's module on first use."""
    if id not in _REGISTRY:
        _load(str(id).split(".")[0])
    if id not in _REGISTRY:
        raise ValueError(f"no exercise {id!r}: ids look like '02.3' (lesson 02, exercise 3)")
    return _REGISTRY[id]


def exercises(lesson: str) -> list[Exercise]:
    """A lesson's exercises in order (``lesson`` like ``"02"``)."""
    _load(lesson)
    return sorted((e for e in _REGISTRY.values() if e.lesson == lesson), key=lambda e: int(e.id.split(".")[1]))


def _hint_level() -> int:
    try:
        return max(1, int(os.environ.get("KIT_HINTS", "1")))
    except ValueError:
        return 1


def _hints(ex: Exercise, level: int) -> str:
    shown = ex.hints[:max(1, level)]
    more = "" if level >= len(ex.hints) else f" (more: hint('{ex.id}', {min(level + 1, len(ex.hints))}))"
    return " ".join(f"Hint {i + 1}: {h}" for i, h in enumerate(shown)) + more


def hint(id: str, level: int | None = None) -> str:
    """Print (and return) the hints of exercise ``id`` up to ``level`` (default: the next one)."""
    ex = get(id)
    text = _hints(ex, level or _hint_level())
    print(text)
    return text


def _is_blank(answer) -> bool:
    return answer is None or answer is ...


def verdict(id: str, answer) -> str | None:
    """``None`` if ``answer`` is right, else the reason (no hint, nothing printed)."""
    ex = get(id)
    if _is_blank(answer):
        return "no answer yet — replace the placeholder with your code"
    return ex.judge(answer)


def check(id: str, answer) -> bool:
    """Check a learner's answer to exercise ``id``; print ✓, or raise :class:`ExerciseError` with a hint.

    Under ``kit grade --no-sandbox`` (``KIT_GRADE_JOB`` set) it only records the answer's outputs for the grader.
    """
    if os.environ.get("KIT_GRADE_JOB"):
        from kit.exercises.harness import check as record_for_grader
        return record_for_grader(id, answer)
    ex = get(id)
    why = verdict(id, answer)
    if why:
        raise ExerciseError(f"{id}: {why if why.startswith('no answer yet') else 'not yet — ' + why}. "
                            f"{_hints(ex, _hint_level())}")
    extra = " (checked on fresh random inputs and edge cases)" if ex.kind == "function" else ""
    print(f"✓ {id}: correct — {ex.title}{extra}")
    return True


# ------------------------------------------------------------------------------------------ no leaks


def find_leaks(namespace: dict, lesson: str) -> list[str]:
    """Names (and thin wrappers of them) in a notebook's namespace that would pass one of ``lesson``'s exercises:
    see :mod:`kit.exercises.leaks`."""
    from kit.exercises.leaks import find_leaks as find
    return find(namespace, lesson)
