"""Judging a run against its lesson's headlines: the value, the bar and ✓ / ✗ (what the bars mean:
:mod:`kit.exercises.declare`; which lesson declares which: :mod:`kit.lessons.catalog`).

:func:`judge` turns one headline and a run's metrics into the value, the bar and ✓ / ✗ — or "—" when the
metric (or the lesson's run) is missing, never an error. A non-finite value (NaN or ±inf, as a float or as the
string ``kit.save_metrics`` writes for it), or a bar whose metric is non-finite, is ✗: a run that diverged.
"""
from __future__ import annotations

import math
import re

from kit.exercises.declare import Headline, LessonEntry
from kit.lessons.catalog import LESSONS, lesson_of

__all__ = ["Headline", "LessonEntry", "LESSONS", "lesson_of", "judge", "judge_all", "verdict", "fmt", "bar_metric",
           "bar_value", "MISSING"]

MISSING = "—"


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not (isinstance(v, float) and math.isnan(v))


def _non_finite(v) -> bool:
    """NaN or ±inf: a float, or the string ``kit.save_metrics`` writes for one (``"nan"``, ``"inf"``, ``"-inf"``)."""
    if isinstance(v, str):
        return v.strip().lower() in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity")
    return isinstance(v, float) and not math.isfinite(v)


# a metric name (it may hold "-" before a digit, as in "l1_below_1e-3"), then optionally +, - or * and a number;
# the name is the shortest prefix that leaves such a tail, unless the whole bar names a metric of the run
_REF = re.compile(r"^\s*([A-Za-z_](?:[\w.]|-(?=\d))*?)\s*(?:([-+*])\s*(\d[\d.]*(?:[eE][-+]?\d+)?))?\s*$")


def bar_metric(bar, metrics: dict | None = None) -> str | None:
    """The name of the metric a bar refers to (``None`` for a number, a bool or no bar)."""
    return _parse(bar, metrics or {})[0] if isinstance(bar, str) else None


def _parse(bar: str, metrics: dict):
    if bar.strip() in metrics:
        return bar.strip(), None, None
    m = _REF.match(bar)
    if not m:
        raise ValueError(f"bad bar {bar!r}: a metric name, optionally followed by +, - or * and a number")
    return m.group(1), m.group(2), m.group(3)


def bar_value(bar, metrics: dict):
    """The bar as a value: a number or bool as it is, a metric reference resolved; ``None`` when it
    names a metric the run lacks, NaN when that metric is not finite."""
    if not isinstance(bar, str):
        return bar
    name, op, k = _parse(bar, metrics)
    ref = metrics.get(name)
    if _non_finite(ref):
        return math.nan
    if op is None:
        return ref
    if not _is_number(ref):
        return None
    return {"+": ref + float(k), "-": ref - float(k), "*": ref * float(k)}[op]


def judge(h: Headline, metrics: dict | None) -> dict:
    """``{"value", "bar", "ok", "text", "bar_text"}`` for one headline. ``ok`` is True / False, or ``None``
    when there is no bar, or the metric or the bar's metric is missing (``text`` is then "—"). A non-finite
    value or bar is ✗."""
    metrics = metrics or {}
    value = metrics.get(h.key)
    bar = bar_value(h.bar, metrics)
    out = {"value": value, "bar": bar, "ok": None, "text": fmt(value, h.unit), "bar_text": ""}
    if h.bar is None:
        return out
    direction = "equal" if isinstance(h.bar, bool) else h.direction
    sign = {"higher": "≥", "lower": "≤", "equal": "="}[direction]
    shown = fmt(bar, h.unit) if bar is not None else MISSING
    out["bar_text"] = f"{sign} {shown}" + (f" ({h.bar})" if isinstance(h.bar, str) else "")
    if value is None or bar is None:
        return out
    if _non_finite(value) or _non_finite(bar):
        out["ok"] = False  # the run diverged (or its baseline did): a broken run, never "not judged"
    elif direction == "equal" or isinstance(value, bool) or isinstance(bar, bool):
        # True == 1 in Python; a bool bar wants a bool
        same_kind = isinstance(value, bool) == isinstance(bar, bool)
        out["ok"] = bool(same_kind and value == bar)
    elif _is_number(value) and _is_number(bar):
        out["ok"] = bool(value >= bar if direction == "higher" else value <= bar)
    return out


def fmt(v, unit: str = "") -> str:
    """A metric value for people: ``—`` when missing, percentages for ``unit="%"``, 4 significant digits."""
    if v is None:
        return MISSING
    if isinstance(v, bool):
        return "yes" if v else "no"
    if _is_number(v):
        if unit == "%":
            return f"{100 * v:.1f} %"
        if isinstance(v, int):
            s = f"{v:,}"
        elif v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            s = f"{v:.1e}".replace("e-0", "e-").replace("e+0", "e")
        else:
            s = f"{v:.4g}"
        return f"{s} {unit}".strip()
    if isinstance(v, float):  # nan
        return "nan"
    return str(v)[:40]


def judge_all(lesson: LessonEntry | None, metrics: dict | None) -> list[tuple[Headline, dict]]:
    return [(h, judge(h, metrics)) for h in (lesson.metrics if lesson else ())]


def verdict(results: list[tuple[Headline, dict]]) -> bool | None:
    """False when a barred headline is missed; True when every barred headline is met; None otherwise
    (no bars, or a barred metric missing and none missed)."""
    judged = [r["ok"] for h, r in results if h.bar is not None]
    if False in judged:
        return False
    return True if judged and all(judged) else None
