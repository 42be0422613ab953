"""Every lesson executed by papermill (smoke parameters), asserting on its metrics.json."""
from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from kit.params import ParameterError
from kit.lessons.catalog import lesson_of, notebooks
from kit.lessons.run import execute

NOTEBOOKS = notebooks()
TIMEOUT = 240  # seconds per cell (smoke cells take < 60 s; a lost kernel reply is retried after this)

def bar(stem: str):
    """A lesson's smoke-run bar: its catalog entry's ``smoke_bar(m: dict) -> bool``."""
    entry = lesson_of(stem)
    return entry.smoke_bar if entry else None


CLEAN_CLONE_CANARY = "07_rnn_language_model"  # always run in the clean-clone pass: the embedded path end to end


def _mirror_changes_the_data() -> bool:
    """True when some dataset in ../shared/data loads other data from the mirror than its embedded default (or
    cannot be compared): then the clean-clone pass must run every lesson again without the mirror."""
    import tempfile

    import numpy as np

    from kit import data
    from tests.conftest import SHARED_DATA
    if not SHARED_DATA.is_dir():
        return False
    old = {k: os.environ.get(k) for k in ("KIT_DATA_MIRROR", "KIT_DATA_DIR")}
    try:
        with tempfile.TemporaryDirectory() as cache:
            os.environ.update(KIT_DATA_MIRROR=str(SHARED_DATA), KIT_DATA_DIR=cache)
            for name in sorted(p.name for p in SHARED_DATA.iterdir() if p.is_dir()):
                try:
                    real, embedded = data.load(name, "real", verbose=False), data.load(name, "embedded", verbose=False)
                except Exception:  # noqa: BLE001 - not comparable: assume it differs
                    return True
                fields = [f for f in ("text", "X", "y", "ratings") if hasattr(real, f)]
                if not fields or any(not np.array_equal(np.asarray(getattr(real, f)), np.asarray(getattr(embedded, f)))
                                     for f in fields):
                    return True
        return False
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def test_every_notebook_has_expectations():
    assert NOTEBOOKS, "no notebooks found"
    missing = [nb.stem for nb in NOTEBOOKS if bar(nb.stem) is None]
    assert not missing, f"add metric expectations for {missing}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_one_parameters_cell(nb):
    doc = nbformat.read(str(nb), as_version=4)
    code = [c for c in doc.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{nb.name} has outputs: strip them"
    tagged = [c for c in doc.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{nb.name} needs exactly one cell tagged 'parameters', has {len(tagged)}"
    for name in ("seed", "smoke", "device"):
        assert f"\n{name} =" in "\n" + tagged[0].source, f"{nb.name}: parameters cell lacks {name!r}"


def _solutions_run(nb: str, out: str) -> tuple[dict | None, str | None]:
    """In a child process: the lesson with its solutions (smoke, seed 0) → ``(metrics.json's content, None)``, or
    ``(None, the one-line failure)`` (an exception object may not survive the trip back)."""
    try:
        return execute(nb, out, {"smoke": True, "seed": 0}, timeout=TIMEOUT, html=False, progress=False).metrics, None
    except Exception as e:  # noqa: BLE001 - reported by the test in the parent
        return None, f"{type(e).__name__}: {e}"


def _run_student_copy(nb, tmp_path):
    """The learner's copy with every answer blank, plus a last cell that looks for leaked answers."""
    from kit.lessons.student import add_leak_probe, exercise_results, leaks_reported, student_notebook
    copy = tmp_path / "student" / nb.name
    copy.parent.mkdir(parents=True)
    nbformat.write(add_leak_probe(student_notebook(nbformat.read(str(nb), as_version=4)), nb.stem[:2]), str(copy))
    res = execute(copy, tmp_path / "b", {"smoke": True, "seed": 0}, timeout=TIMEOUT, html=False, progress=False,
                  allow_errors=True)
    executed = nbformat.read(str(res.notebook), as_version=4)
    results, other = exercise_results(executed)
    assert results and not other, f"errors outside the check cells of a blank copy: {other}"
    assert all(not r.ok and "no answer yet" in r.message for r in results), \
        [(r.name, r.message) for r in results if r.ok or "no answer yet" not in r.message]
    leaks = leaks_reported(executed)
    assert leaks == [], f"a learner could pass by copying: {leaks}"
    _assert_left_clean(tmp_path / "b", copy.name)
    return res


RUN_FILES = {"metrics.json", "params.json", "run.json"}  # what a run (html=False) writes besides the notebook


def _assert_left_clean(folder: Path, notebook: str):
    """A lesson runs with its run folder as working directory (as JupyterLab runs it in ``notebooks/`` or a student's
    folder): a file it writes relative to it would land next to the learner's notebooks. Lessons write such files
    into ``kit.results.scratch_dir``; only the run's own files may be there (issue 26)."""
    stray = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                   if p.relative_to(folder).parts[0] not in RUN_FILES | {notebook})
    assert not stray, f"the lesson left files in its working directory (write them into kit.results.scratch_dir): {stray}"


@pytest.mark.notebook
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_smoke_and_deterministic(nb, tmp_path):
    """The lesson with its solutions (every check passes), then the learner's blank copy with the same seed.

    Both meet the lesson's bar with identical metrics (determinism); in the blank copy every check says
    "no answer yet", nothing else fails, and no variable in the kernel would pass an exercise if copied.
    """
    if os.environ.get("KIT_TEST_ONE_RUN") == "1":  # .ci/run's clean-clone pass: one run, as a new user's clone
        if nb.stem != CLEAN_CLONE_CANARY and not _mirror_changes_the_data():
            pytest.skip("every dataset in ../shared/data loads the same data as its embedded default, so this lesson "
                        f"ran as a clean clone runs it in the first pass (lesson {CLEAN_CLONE_CANARY} still runs here)")
        m = _run_student_copy(nb, tmp_path).metrics["metrics"]
        assert bar(nb.stem)(m), f"{nb.stem} metrics below the bar: {json.dumps(m, indent=1)}"
        return
    # The two runs go side by side (a kernel each, the solutions' in a child process): much of a smoke run is kernel
    # start, imports and data loading, which then overlap; the arithmetic, and so the metrics, is the same.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        solutions = pool.submit(_solutions_run, str(nb), str(tmp_path / "a"))
        second = _run_student_copy(nb, tmp_path)
        first, failure = solutions.result()
    assert failure is None, f"{nb.stem} with its solutions failed: {failure}"
    _assert_left_clean(tmp_path / "a", nb.name)
    assert first, f"{nb.name} wrote no metrics.json"
    m = first["metrics"]
    assert bar(nb.stem)(m), f"{nb.stem} metrics below the bar: {json.dumps(m, indent=1)}"
    assert second.metrics["metrics"] == m, "same seed on CPU must give identical metrics"


BAD = [({"seed": "zero"}, "seed-type"), ({"seed": -1}, "seed-range")]  # every notebook: wrong type, out of range
BAD_FIRST = [({"smoke": "yes"}, "smoke-type"), ({"device": "tpu"}, "device-choice")]  # shared cell: first lesson
KERNEL_CHECKED = {NOTEBOOKS[0].stem, "09_gpt"}  # bad parameters also sent to a real kernel (the rest: statically)


@pytest.mark.parametrize("nb,bad", [(nb, b) for nb in NOTEBOOKS for b, _ in BAD]
                         + [(NOTEBOOKS[0], b) for b, _ in BAD_FIRST],
                         ids=[f"{nb.stem}-{i}" for nb in NOTEBOOKS for _, i in BAD]
                         + [f"{NOTEBOOKS[0].stem}-{i}" for _, i in BAD_FIRST])
def test_bad_parameter_is_refused_with_its_name_by_the_declared_rules(nb, bad):
    """kit run/sweep/check refuse before anything starts: the notebook's own rules (read with ast) name it."""
    from kit.lessons.run import check_parameters
    name = next(iter(bad))
    with pytest.raises(ParameterError) as err:
        check_parameters(nb, bad)
    assert repr(name) in str(err.value)


@pytest.mark.notebook
@pytest.mark.parametrize("nb,bad", [(nb, b) for nb in NOTEBOOKS if nb.stem in KERNEL_CHECKED for b, _ in BAD]
                         + [(NOTEBOOKS[0], b) for b, _ in BAD_FIRST],
                         ids=[f"{nb.stem}-{i}" for nb in NOTEBOOKS if nb.stem in KERNEL_CHECKED for _, i in BAD]
                         + [f"{NOTEBOOKS[0].stem}-{i}" for _, i in BAD_FIRST])
def test_bad_parameter_fails_with_its_name(nb, bad, tmp_path):
    """The same rules run inside the notebook's validation cell (a few lessons: each costs a kernel start)."""
    name = next(iter(bad))
    with pytest.raises(pm.PapermillExecutionError) as err:
        execute(nb, tmp_path, bad, timeout=120, html=False, progress=False)
    assert err.value.ename == "ParameterError"
    assert repr(name) in err.value.evalue
    assert not (tmp_path / "metrics.json").exists(), "no work may happen after a bad parameter"


def test_lesson_specific_bad_parameter(tmp_path):
    nb = next(n for n in NOTEBOOKS if n.stem == "01_linear_regression")
    with pytest.raises(pm.PapermillExecutionError) as err:
        execute(nb, tmp_path, {"lr": -0.5}, timeout=120, html=False, progress=False)
    assert "'lr'" in err.value.evalue and "> 0" in err.value.evalue


def test_unknown_parameter_fails_before_execution(tmp_path):
    with pytest.raises(ParameterError, match="unknown parameter 'learning_rate'"):
        execute(NOTEBOOKS[0], tmp_path, {"learning_rate": 1}, html=False, progress=False)
    assert not any(tmp_path.iterdir()), "nothing may be executed"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_matches_its_source(nb):
    """notebooks/src/NN_name.py is the editable source; `python tools/nbbuild.py` rebuilds the .ipynb."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from nbbuild import SRC, build
    src = SRC / f"{nb.stem}.py"
    assert src.exists(), f"missing source {src}"
    built = build(src)
    committed = nbformat.read(str(nb), as_version=4)
    assert [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in committed.cells] == \
           [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in built.cells], \
           f"{nb.name} differs from {src.name}: run `python tools/nbbuild.py {nb.stem}`"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_parameter_is_declared_once_with_a_rule(nb):
    """Each parameter of the parameters cell has exactly one rule, readable before the notebook runs."""
    from kit.lessons.run import notebook_parameters, validation_rules
    declared, rules = notebook_parameters(nb), validation_rules(nb)
    assert set(declared) == set(rules), f"{nb.stem}: parameters without a rule: {sorted(set(declared) - set(rules))}"


def test_a_rule_that_cannot_be_read_is_an_error_not_skipped(tmp_path):
    from kit.lessons.run import LessonError, validation_rules
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("seed = 0\nlr = 0.1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("from kit.params import validate\nLIMIT = 3\nvalidate(globals(), lr=make_rule(LIMIT))")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(LessonError, match="x.ipynb: the rule of parameter 'lr' is not a literal"):
        validation_rules(path)


def test_the_lesson_template_follows_the_rules(tmp_path):
    """tools/lesson_template.py (what tools/new_lesson.py copies) builds, and declares each parameter once."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from nbbuild import build
    from kit.lessons.run import notebook_parameters, validation_rules
    nb = build(Path(__file__).resolve().parents[1] / "tools" / "lesson_template.py")
    path = tmp_path / "99_template.ipynb"
    nbformat.write(nb, path)
    assert len([c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]) == 1
    assert set(notebook_parameters(path)) == set(validation_rules(path)) >= {"seed", "device", "smoke"}
