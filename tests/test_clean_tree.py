"""A lesson leaves nothing in the folder it runs in, except ``metrics.json`` (issue 26).

JupyterLab and ``papermill --cwd notebooks`` run a lesson with ``notebooks/`` as its working directory, and a
workshop runs it in a student's folder: a file a lesson writes relative to its working directory lands next
to the sources (``notebooks/teacher.onnx``, ``notebooks/ddp/``). Lessons write such files into
``kit.results.scratch_dir`` instead. Here each lesson that writes files runs with its smoke parameters in a
COPY of ``notebooks/`` (so this test never dirties the repository), and the copy must hold the same files,
unchanged, afterwards: only ``metrics.json``, the run's record, may appear.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kit.lessons.execute import STALL_TIMEOUT, run_notebook
from kit.lessons.run import list_notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
TIMEOUT = 240  # seconds per cell, as in test_notebooks.py
ALLOWED = {"metrics.json"}  # kit.save_metrics's record (kit run keeps it in the run folder; gitignored in notebooks/)

# Which lessons run here: those whose source writes a file, found statically by WRITES below (cheap: running
# all nineteen lessons' smoke parameters takes several minutes on two cores; KIT_CLEAN_TREE_ALL=1 runs every
# lesson anyway). The kit functions lessons call write nothing relative to the working directory unless handed
# a path (export.to_onnx, distributed.launch, bpe.save, GPT.save_pretrained: all matched by WRITES at the call);
# kit.data caches under data/ or ~/.cache/kit, kit.save_metrics writes metrics.json. A one-off run of every
# lesson in a copy of notebooks/ found no other lesson writing there. test_writers_are_listed keeps the list
# complete: a lesson that starts writing files must be added to WRITERS, and so to this test.
WRITES = re.compile(r"""\.save\(|save_pretrained\(|to_onnx\(|torch\.save\(|np\.save[zt]?\(|\.write_(text|bytes)\("""
                    r"""|open\([^)]*['"][wax]b?\+?['"]|\.mkdir\(|makedirs\(|savefig\(|\.to_(csv|json|parquet|pickle)\("""
                    r"""|write_(html|image)\(|\blaunch\(|json\.dump\(|shutil\.(copy|move)""")
WRITERS = ["11_compression_deployment", "12_distributed", "15_tokenization_pretrained_gpt", "18_serving_monitoring"]
KNOWN: dict[str, str] = {}  # lesson → a path its source still writes into the working directory (expected to fail)


def _writes(stem: str) -> list[str]:
    src = (NOTEBOOKS / "src" / f"{stem}.py").read_text()
    return [line.strip() for line in src.splitlines() if WRITES.search(line) and not line.lstrip().startswith("#")]


def test_writers_are_listed():
    found = sorted(nb.stem for nb in list_notebooks() if _writes(nb.stem))
    assert found == sorted(WRITERS), (f"lessons whose source writes files: {found}; tests/test_clean_tree.py runs "
                                      f"{sorted(WRITERS)}: add the new ones to WRITERS")


def _lessons() -> list:
    stems = [nb.stem for nb in list_notebooks()] if os.environ.get("KIT_CLEAN_TREE_ALL") == "1" else WRITERS
    params = []
    for stem in stems:
        known = KNOWN.get(stem)
        marks = [pytest.mark.xfail(reason=f"{stem} still writes {known} into its working directory", strict=False)] \
            if known and known in (NOTEBOOKS / "src" / f"{stem}.py").read_text() else []
        params.append(pytest.param(stem, id=stem, marks=marks))
    return params


def _git_status(*extra: str) -> str | None:
    """``git status --porcelain --untracked-files=all notebooks/``, or None outside a git checkout."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return None
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", *extra, "--", "notebooks/"],
                         cwd=ROOT, capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else None


def _new_files() -> set[str] | None:
    """Files in notebooks/ that git does not track, ignored ones (``notebooks/*.pt``, metrics.json) included."""
    status = _git_status("--ignored")
    return None if status is None else {l for l in status.splitlines() if l[:2] in ("??", "!!")}


def _copy_notebooks(dest: Path) -> Path:
    """notebooks/ as git sees it (tracked and new files, not ignored run leftovers), else all but run leftovers."""
    tracked = None
    if _git_status() is not None:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "notebooks/"],
                             cwd=ROOT, capture_output=True)
        tracked = [p for p in out.stdout.decode().split("\0") if p] if out.returncode == 0 else None
    if tracked:
        for rel in tracked:
            if (ROOT / rel).is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, dest / rel)
    else:
        shutil.copytree(NOTEBOOKS, dest / "notebooks",
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", *ALLOWED))
    return dest / "notebooks"


def _snapshot(folder: Path) -> dict[str, tuple]:
    """Every file and folder under ``folder``: relative path → (size, mtime) for files, "dir" for folders."""
    snap = {}
    for p in folder.rglob("*"):
        rel = p.relative_to(folder).as_posix()
        snap[rel] = ("dir",) if p.is_dir() and not p.is_symlink() else (p.lstat().st_size, p.lstat().st_mtime_ns)
    return snap


@pytest.fixture(scope="module")
def git_before():
    """The checkout's ``git status notebooks/`` before the lessons run; afterwards no file may have appeared there.

    (Only new files are compared: someone editing or committing tracked files meanwhile is not this test's doing.)
    """
    before, files = _git_status(), _new_files()
    yield before
    if files is not None:
        assert _new_files() == files, "running the lessons left files in the checkout's notebooks/"


@pytest.mark.notebook
@pytest.mark.parametrize("stem", _lessons())
def test_lesson_leaves_its_working_directory_clean(stem, tmp_path, git_before):
    cwd = _copy_notebooks(tmp_path / "copy")
    nb = cwd / f"{stem}.ipynb"
    before = _snapshot(cwd)
    out = tmp_path / "out"
    out.mkdir()
    run_notebook(nb, out / nb.name, {"smoke": True, "seed": 0}, cwd=cwd, timeout=TIMEOUT, stall_timeout=STALL_TIMEOUT)
    after = _snapshot(cwd)
    assert (cwd / "metrics.json").is_file(), f"{stem} wrote no metrics.json in its working directory"
    new = sorted(set(after) - set(before) - ALLOWED)
    changed = sorted(k for k in set(after) & set(before) if after[k] != before[k] and before[k] != ("dir",))
    gone = sorted(set(before) - set(after))
    assert not new and not changed and not gone, (
        f"{stem} left files in its working directory (write them into kit.results.scratch_dir): "
        f"new {new}, changed {changed}, removed {gone}")
    if git_before == "":  # a clean checkout (CI, a fresh clone) stays clean
        assert _git_status() == "", f"`git status --porcelain notebooks/` is not empty after {stem}"


def test_scratch_dir_is_fresh_and_removed_when_the_process_exits(tmp_path):
    from kit.results import scratch_dir
    a, b = scratch_dir("11"), scratch_dir("11")
    assert a != b and a.is_dir() and not any(a.iterdir()) and a.name.startswith("kit-11-")
    assert scratch_dir("../x y").parent == a.parent, "the name never leaves the temporary folder"
    code = ("from kit.results import scratch_dir; a = scratch_dir('t'); k = scratch_dir('t', keep=True); "
            "(a / 'f').write_text('x'); (k / 'f').write_text('x'); print(a); print(k)")
    env = dict(os.environ, TMPDIR=str(tmp_path))
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                           check=True).stdout.split()
    removed, kept = map(Path, lines)
    assert removed.parent == tmp_path and not removed.exists(), "the scratch folder outlived its process"
    assert (kept / "f").read_text() == "x", "keep=True keeps it"
