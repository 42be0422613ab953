"""The lesson catalog: one declaration per lesson, and everything that lists lessons reads it."""
from __future__ import annotations

from pathlib import Path

import pytest

from kit.exercises import exercises
from kit.lessons import catalog
from kit.lessons.catalog import LESSONS, lesson_of

ROOT = Path(__file__).resolve().parents[1]


def test_every_notebook_source_is_a_declared_lesson_and_back():
    sources = sorted(p.stem for p in (ROOT / "notebooks" / "src").glob("[0-9][0-9]_*.py"))
    assert sources == [e.stem for e in LESSONS.values()]
    assert all(nb.exists() for nb in catalog.notebooks())
    assert lesson_of("04_cnn_digits") is LESSONS["04"] and lesson_of("runs/04_cnn_digits") is LESSONS["04"]
    assert lesson_of("my_notebook") is None and lesson_of("99_nothing") is None


@pytest.mark.parametrize("n", list(LESSONS))
def test_entry_is_complete(n):
    e = LESSONS[n]
    assert e.title and e.goal and e.teaches and e.data and callable(e.smoke_bar), n
    assert any(h.bar is not None for h in e.metrics), f"lesson {n} has no headline with a bar"
    assert all(b < n for b in e.builds_on), f"lesson {n} builds on a later lesson: {e.builds_on}"
    assert 0 < e.budget.smoke_s <= 180 and 0 < e.budget.default_s <= 300 and 0 < e.budget.default_gb <= 2
    assert 3 <= len(exercises(n)) <= 5, f"lesson {n} has {len(exercises(n))} exercises"


def test_readme_lesson_table_is_generated_from_the_catalog():
    readme = (ROOT / "README.md").read_text()
    assert catalog.readme_with_table(readme) == readme, (
        "README.md's lesson table differs from the catalog: run `python -m kit.lessons.catalog --readme`")


def test_a_lesson_file_without_its_entry_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "lesson98.py").write_text("x = 1\n")
    monkeypatch.setattr(catalog, "EXERCISES", tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(catalog, "import_module", lambda name: __import__(name.rsplit(".", 1)[1]))
    with pytest.raises(catalog.CatalogError, match="lesson98.py declares no LESSON"):
        catalog._collect()
