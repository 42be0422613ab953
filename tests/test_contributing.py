"""CONTRIBUTING.md's "Adding a lesson", end to end, in a temporary copy of the repository: ``tools/new_lesson.py``
writes the lesson's two files (and builds its notebook), is idempotent, completes a half-made lesson, and the
catalog, README's table, the tests' parametrisation, ``kit run`` and the report index all pick the lesson up with no
other edit."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kit.lessons.catalog import LESSONS

ROOT = Path(__file__).resolve().parents[1]


def _copy_repo(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split("\n")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    return dest


def _snapshot(repo: Path) -> dict[str, bytes]:
    return {str(p.relative_to(repo)): p.read_bytes() for p in repo.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and "runs" not in p.parts}


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs the git checkout")
def test_a_throwaway_lesson_end_to_end(tmp_path):
    repo = _copy_repo(tmp_path / "repo")
    env = {**os.environ, "PYTHONPATH": str(repo), "KIT_TEST_SHARED": "0"}

    def run(*args, **kw):
        r = subprocess.run([sys.executable, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300,
                           **kw)
        assert r.returncode == 0, f"{args}: {r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        return r.stdout

    n = f"{len(LESSONS):02d}"
    stem = f"{n}_throwaway"
    before = _snapshot(repo)
    run("tools/new_lesson.py", n, "throwaway")
    after = _snapshot(repo)
    added = sorted(set(after) - set(before))
    changed = sorted(k for k in before if before[k] != after[k])
    assert added == sorted([f"notebooks/src/{stem}.py", f"kit/exercises/lesson{n}.py", f"notebooks/{stem}.ipynb"])
    assert changed == ["README.md"] and f"| {n} | `{stem}` |" in after["README.md"].decode()

    run("tools/new_lesson.py", n, "throwaway")  # idempotent
    assert _snapshot(repo) == after
    (repo / "kit" / "exercises" / f"lesson{n}.py").unlink()  # a half-made lesson is completed, not refused
    run("tools/new_lesson.py", n, "throwaway")
    assert _snapshot(repo) == after

    collected = run("-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider",
                    "tests/test_notebooks.py", "tests/test_catalog.py")
    assert f"test_notebook_smoke_and_deterministic[{stem}]" in collected and f"test_entry_is_complete[{n}]" in collected
    run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_catalog.py", "-k", "readme or source")

    run("-m", "kit", "run", n, "-p", "smoke", "True", "--out", "runs", "-q")
    metrics = json.loads((repo / "runs" / stem / "metrics.json").read_text())["metrics"]
    assert metrics == {"val_acc": 0.0}
    run("-m", "kit", "report", "runs")
    index = (repo / "runs" / "index.html").read_text()
    card = index[index.index(f'id="lesson-{n}"'):]
    assert "One line: what the learner builds" in card[:2000] and "ran in" in card[:2000]
