"""The run folder (kit.lessons.runfolder): one model, written by ``execute`` and read by the report pages; reading
never raises on missing, partial, old or corrupt files; the index's summary and its cards mark a run the same way."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kit.lessons import headlines as hl
from kit.lessons.runfolder import Results, RunFolder, RunRecord, begin, collect, judged


def _write(folder: Path, run: dict | str | None = None, metrics: dict | str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, doc in (("run.json", run), ("metrics.json", metrics)):
        if doc is not None:
            (folder / name).write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return folder


RUN = {"notebook": "x.ipynb", "status": "ok", "seconds": 1.5, "parameters": {"seed": 1}}


def test_a_record_round_trips_and_begin_clears_the_last_runs_files(tmp_path):
    rec = RunRecord("x.ipynb", "failed", 2.0, {"lr": 0.1}, {"lr": 0.1, "seed": 0}, {"python": "3"}, "2026-01-01",
                    "cell [2] raised ValueError: no", 2)
    RunFolder(tmp_path / "a", rec).write()
    assert RunRecord.read(tmp_path / "a") == rec
    assert json.loads((tmp_path / "a" / "run.json").read_text())["reason"] == rec.reason  # the on-disk keys
    _write(tmp_path / "a", metrics={"metrics": {"m": 1}})
    begin(tmp_path / "a", {"lr": 0.2})
    assert not (tmp_path / "a" / "run.json").exists() and not (tmp_path / "a" / "metrics.json").exists()
    assert json.loads((tmp_path / "a" / "params.json").read_text()) == {"lr": 0.2}


@pytest.mark.parametrize("metrics, problem", [
    (None, "no metrics.json"),
    ("{not json", "metrics.json is not valid JSON"),
    ("[1, 2]", "metrics.json holds list, not an object"),
    ("", "metrics.json is not valid JSON"),
])
def test_missing_or_corrupt_metrics_are_a_problem_not_an_error(tmp_path, metrics, problem):
    run = RunFolder.read(_write(tmp_path / "r", RUN, metrics))
    assert run.results.problem.startswith(problem)
    assert run.metrics == {} and run.timing == {} and run.judged == {} and run.status == "ok"


def test_metrics_of_the_wrong_shape_read_as_none(tmp_path):
    run = RunFolder.read(_write(tmp_path / "r", RUN, {"metrics": None, "timing": [1], "curves": {"a": [1, 2]}}))
    assert run.metrics == {} and run.timing == {} and run.results.problem is None
    assert run.results.doc["curves"] == {"a": [1, 2]}


def test_old_partial_or_corrupt_records(tmp_path):
    old = RunFolder.read(_write(tmp_path / "old", {"notebook": "x.ipynb", "status": "ok", "parameters": {"a": 1}}))
    assert old.seconds is None and old.params == {"a": 1} and old.overrides == {"a": 1} and old.record.attempts == 1
    odd = RunFolder.read(_write(tmp_path / "odd", {"notebook": "x.ipynb", "status": "weird", "seconds": "12",
                                                   "parameters": None, "attempts": "2"}))
    assert odd.status == "unknown" and odd.seconds is None and odd.overrides == {} and odd.record.attempts == 1
    for bad in ("{", "[]", json.dumps({"status": "ok"}), json.dumps({"notebook": 3})):
        assert RunFolder.read(_write(tmp_path / "bad", bad)) is None
    assert RunFolder.read(tmp_path / "nothing-here") is None
    assert [r.name for r in collect(tmp_path)] == ["odd", "old"]


def test_an_index_over_broken_folders_says_what_is_wrong(tmp_path):
    from kit.lessons.report import build_comparison, build_index
    _write(tmp_path / "a", RUN, "{oops")
    _write(tmp_path / "b", RUN, {"metrics": {"m": 1.0}})
    _write(tmp_path / "c", "not json at all", {"metrics": {"m": 2.0}})
    page = build_index(tmp_path).read_text()
    assert "metrics.json is not valid JSON" in page and "m=1" in page and "<td>c</td>" not in page
    assert "1 of 2 runs finished" in build_comparison(tmp_path, notebook="x").read_text()


def test_judged_is_metrics_over_timing_for_folders_results_and_documents(tmp_path):
    doc = {"metrics": {"a": 1, "x": 1}, "timing": {"t": 2, "x": 2}}
    run = RunFolder.read(_write(tmp_path / "r", RUN, doc))
    assert judged(doc) == judged(run) == judged(Results.from_doc(doc)) == run.judged == {"a": 1, "x": 1, "t": 2}


def _plain_lesson():
    """A lesson whose bars are all plain numbers or booleans (values that meet or miss them are easy to make)."""
    for lesson in hl.LESSONS.values():
        barred = [h for h in lesson.metrics if h.bar is not None]
        if len(barred) >= 2 and all(not isinstance(h.bar, str) for h in barred):
            return lesson, barred
    pytest.skip("no lesson with two plain bars")


def _meeting(h, meet: bool):
    if isinstance(h.bar, bool) or h.direction == "equal":
        return h.bar if meet else (not h.bar if isinstance(h.bar, bool) else h.bar + 1)
    up = h.direction == "higher"
    return h.bar if meet else (h.bar - abs(h.bar) - 1 if up else h.bar + abs(h.bar) + 1)


def _summary(page: str) -> tuple[int, int, int]:
    text = re.sub(r"<[^>]+>", "", re.search(r"<p class='summary'>(.*?)</p>", page).group(1))
    m = re.search(r"(\d+) met every bar\s*.\s*(\d+) missed a bar\s*.\s*(\d+) not judged", text)
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


@pytest.mark.parametrize("meet", [True, False])
def test_the_index_summary_and_the_card_judge_a_headline_kept_in_timing_alike(tmp_path, meet):
    """A barred headline saved in ``timing`` (as lesson 09 saves val_loss_60s): the card and the summary agree."""
    from kit.lessons.report import build_index, judge_run
    lesson, barred = _plain_lesson()
    first, rest = barred[0], barred[1:]
    doc = {"metrics": {h.key: _meeting(h, True) for h in rest}, "timing": {first.key: _meeting(first, meet)}}
    _write(tmp_path / lesson.stem, {**RUN, "notebook": f"{lesson.stem}.ipynb"}, doc)
    page = build_index(tmp_path).read_text()
    card = re.search(rf'<section class="kit-headline (\w+)" id="lesson-{lesson.number}">', page).group(1)
    met, missed, _ = _summary(page)
    assert card == ("pass" if meet else "fail")
    assert (met, missed) == ((1, 0) if meet else (0, 1))
    assert judge_run(lesson, RunFolder.read(tmp_path / lesson.stem))[1] is meet


def test_the_harness_imports_no_torch_and_no_catalog():
    """``kit.lessons.run`` (which ``kit grade``'s sandboxed job imports, under its CPU and memory limits) and the
    run-folder model stay light: a lesson page's catalog (kit.exercises, torch) is imported only to make a page."""
    import subprocess
    import sys
    code = ("import sys, kit.lessons.run, kit.lessons.runfolder, kit.lessons.sweep, kit.lessons.grade_job; "
            "print(sorted(m for m in ('torch', 'kit.lessons.headlines', 'kit.exercises') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
