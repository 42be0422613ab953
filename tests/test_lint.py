"""ruff passes on the code (rules in pyproject.toml's [tool.ruff]), and every notebook source is valid Python."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ["kit", "tools", "notebooks/src", "tests", "benchmarks"]
SOURCES = [*sorted((ROOT / "notebooks" / "src").glob("*.py")), ROOT / "tools" / "lesson_template.py"]


def test_ruff_passes():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", *CHECKED],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"ruff check {' '.join(CHECKED)}:\n{r.stdout}{r.stderr}"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_notebook_source_is_python(src):
    """jupytext's percent format: markdown cells are comments, so the whole source parses."""
    ast.parse(src.read_text(), str(src))
