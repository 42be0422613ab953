"""Validate a notebook's parameters at the edge: one clear error naming the parameter.

Used right after a notebook's ``parameters`` cell::

    from kit.params import Float, Int, validate
    validate(globals(), lr=Float(0, 10, lo_open=True), steps=Int(1, 10_000))

The parameters every lesson shares (``seed``, ``device``, ``smoke``: :func:`common_rules`) are checked
without being named. Each parameter is declared once — its default and comment in the ``parameters``
cell, its rule here — and ``kit.save_metrics`` records the validated values itself (:func:`validated`).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Mapping


class ParameterError(ValueError):
    """A notebook parameter has a wrong type or value."""


@dataclass(frozen=True)
class Rule:
    def check(self, name: str, value: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def fail(self, name: str, value: Any) -> ParameterError:
        return ParameterError(f"parameter {name!r} must be {self.describe()}, got {value!r} ({type(value).__name__})")


def _range_text(lo, hi, lo_open, hi_open) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi}")
    return (" " + " and ".join(parts)) if parts else ""


def _in_range(v, lo, hi, lo_open, hi_open) -> bool:
    if lo is not None and (v <= lo if lo_open else v < lo):
        return False
    if hi is not None and (v >= hi if hi_open else v > hi):
        return False
    return True


@dataclass(frozen=True)
class Int(Rule):
    lo: int | None = None
    hi: int | None = None

    def describe(self):
        return "an int" + _range_text(self.lo, self.hi, False, False)

    def check(self, name, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise self.fail(name, value)
        if not _in_range(value, self.lo, self.hi, False, False):
            raise self.fail(name, value)
        return int(value)


@dataclass(frozen=True)
class Float(Rule):
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def describe(self):
        return "a number" + _range_text(self.lo, self.hi, self.lo_open, self.hi_open)

    def check(self, name, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
            raise self.fail(name, value)
        if not _in_range(value, self.lo, self.hi, self.lo_open, self.hi_open):
            raise self.fail(name, value)
        return float(value)


@dataclass(frozen=True)
class Bool(Rule):
    def describe(self):
        return "True or False"

    def check(self, name, value):
        if not isinstance(value, bool):
            raise self.fail(name, value)
        return value


@dataclass(frozen=True)
class Choice(Rule):
    options: tuple = ()

    def __init__(self, *options):
        object.__setattr__(self, "options", tuple(options))

    def describe(self):
        return "one of " + ", ".join(repr(o) for o in self.options)

    def check(self, name, value):
        if value not in self.options:
            raise self.fail(name, value)
        return value


@dataclass(frozen=True)
class Str(Rule):
    def describe(self):
        return "a string"

    def check(self, name, value):
        if not isinstance(value, str):
            raise self.fail(name, value)
        return value


def common_rules() -> dict[str, Rule]:
    """The rules of the parameters every lesson has: ``seed``, ``device`` and ``smoke``."""
    from kit.device import DEVICES
    return {"seed": Int(0), "device": Choice(*DEVICES), "smoke": Bool()}


_VALIDATED: dict[str, Any] = {}


def validate(namespace: Mapping[str, Any], **rules: Rule) -> dict[str, Any]:
    """Check each named parameter in ``namespace`` against its rule (and ``seed``, ``device``, ``smoke``
    against :func:`common_rules` when present); return the checked values, which :func:`validated` and
    ``kit.save_metrics`` then report.

    Raises :class:`ParameterError` (a ``ValueError``) naming the first bad parameter.
    """
    rules = {**{k: r for k, r in common_rules().items() if k in namespace}, **rules}
    out = {}
    for name, rule in rules.items():
        if name not in namespace:
            raise ParameterError(f"parameter {name!r} is missing from the parameters cell")
        out[name] = rule.check(name, namespace[name])
    _VALIDATED.clear()
    _VALIDATED.update(out)
    return out


def validated() -> dict[str, Any]:
    """The parameter values the last :func:`validate` checked (what this run was asked to do)."""
    return dict(_VALIDATED)


def check_names(given: Mapping[str, Any], known: Mapping[str, Any]) -> None:
    """Fail on parameter names a notebook does not declare (used before execution)."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ParameterError(
            f"unknown parameter {unknown[0]!r}; this notebook takes: {', '.join(sorted(known))}")
