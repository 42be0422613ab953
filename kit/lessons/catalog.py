"""The lesson catalog: every ``LESSON = LessonEntry(...)`` declared at the end of ``kit/exercises/lessonNN.py``.

The report index, ``kit list``, README's lesson table (between its ``lessons`` markers; ``python -m
kit.lessons.catalog --readme`` rewrites it), the tests' parametrisation and the student copies read this, so a
new lesson is its notebook source, its exercises file (with its entry) and its own tests — nothing else to edit.
"""
from __future__ import annotations

import re
import sys
from importlib import import_module
from pathlib import Path

from kit.exercises.declare import Budget, Headline, LessonEntry

__all__ = ["LESSONS", "LessonEntry", "Headline", "Budget", "lesson_of", "notebooks", "readme_table", "CatalogError"]

ROOT = Path(__file__).resolve().parents[2]
EXERCISES = ROOT / "kit" / "exercises"
NOTEBOOKS = ROOT / "notebooks"
README_START, README_END = "<!-- lessons: generated from the catalog (kit/lessons/catalog.py) -->", "<!-- /lessons -->"


class CatalogError(ValueError):
    """A lesson's declaration is missing or does not match its file."""


def _collect() -> dict[str, LessonEntry]:
    lessons = {}
    for path in sorted(EXERCISES.glob("lesson[0-9][0-9].py")):
        number, where = path.stem[-2:], f"kit/exercises/{path.name}"
        entry = getattr(import_module(f"kit.exercises.{path.stem}"), "LESSON", None)
        if not isinstance(entry, LessonEntry):
            raise CatalogError(f"{where} declares no LESSON = LessonEntry(...)")
        if entry.number != number:
            raise CatalogError(f"{where} declares lesson {entry.number}")
        lessons[number] = entry
    return lessons


LESSONS: dict[str, LessonEntry] = _collect()


def lesson_of(stem) -> LessonEntry | None:
    """The entry of a notebook stem (``"04_cnn_digits"``, or anything starting with the number); ``None`` for a
    notebook that is not a lesson."""
    m = re.match(r"(\d\d)_", Path(str(stem)).name)
    return LESSONS.get(m.group(1)) if m else None


def notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """The lessons' notebooks, in order."""
    return [Path(folder) / f"{e.stem}.ipynb" for e in LESSONS.values()]


def readme_table() -> str:
    """README's lesson table, from the catalog."""
    rows = ["| # | notebook | what it teaches | data (offline default) |", "|---|---|---|---|"]
    rows += [f"| {e.number} | `{e.stem}` | {e.teaches} | {e.data} |" for e in LESSONS.values()]
    return "\n".join(rows)


def readme_with_table(text: str) -> str:
    """``text`` (README.md) with the table between its markers replaced by :func:`readme_table`."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise CatalogError(f"README.md has no {README_START} … {README_END} markers")
    return text[:start + len(README_START)] + "\n" + readme_table() + "\n" + text[end:]


if __name__ == "__main__":
    if sys.argv[1:] != ["--readme"]:
        sys.exit("usage: python -m kit.lessons.catalog --readme   (rewrites README.md's lesson table)")
    readme = ROOT / "README.md"
    readme.write_text(readme_with_table(readme.read_text()))
    print(f"README.md: {len(LESSONS)} lessons")
