"""Every exercise survives the trip through the grading sandbox's channel: inputs written and read back (no pickle),
kit's own solution called on them as the harness calls a learner's function, its outputs written and read back, and
judged in the grader: correct. And the channel's edge cases: forged, odd or hostile files are wrong answers, not crashes.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kit.exercises import exercises, harness, wire
from kit.lessons.catalog import LESSONS as CATALOG
from kit.lessons.grade import judge_record, rebuild


def _noisy_mean(grads, C, sigma):
    norms = grads.norm(dim=1, keepdim=True).clamp_min(1e-12)
    clipped = grads * torch.clamp(C / norms, max=1.0)
    return (clipped.sum(0) + torch.randn(grads.shape[1], dtype=grads.dtype) * sigma * C) / len(grads)


def _folds(y, k):
    order = np.argsort(y, kind="stable")
    f = np.empty(len(y), dtype=int)
    f[order] = np.arange(len(y)) % k
    return f


SOLUTIONS = {"13.3": _noisy_mean, "05.4": _folds}  # a randomised answer; a property, not a reference value
LESSONS = list(CATALOG)


@pytest.mark.parametrize("lesson", LESSONS)
def test_each_exercise_round_trips_through_the_channel_and_is_judged_correct(lesson):
    for ex in exercises(lesson):
        solution = SOLUTIONS.get(ex.id) or ex.reference
        assert ex.kind == "function" and solution is not None, ex.id
        cases = list(ex.calls(np.random.default_rng(0)))
        sent = wire.loads(wire.dumps({"kind": ex.kind, "cases": [(c.label, c.args, c.kwargs) for c in cases]}))
        outs = [harness._call(solution, args, kwargs) for _label, args, kwargs in sent["cases"]]
        assert judge_record(ex.id, cases, wire.loads(wire.dumps({"outcomes": outs}))) == (True, "correct"), ex.id


def test_forged_and_odd_records_are_wrong_answers_not_crashes():
    ex = exercises("00")[0]
    cases = list(ex.calls(np.random.default_rng(0)))
    n = len(cases)
    assert judge_record("00.1", cases, {"blank": True})[1].startswith("no answer yet")
    assert judge_record("00.1", cases, {"not_callable": "float"}) == (False, "your answer should be a function, got float")
    assert judge_record("00.1", cases, {"outcomes": []})[1] == "its recorded answer does not match the grading inputs"
    assert judge_record("00.1", cases, "✓ correct")[0] is False
    odd = wire.loads(wire.dumps({"outcomes": [{"value": object()}] * n}))
    ok, msg = judge_record("00.1", cases, odd)
    assert not ok and "must be numeric" in msg and "object" in msg
    raised = {"outcomes": [{"raised": ["NotImplementedError", ""]}] * n}
    assert judge_record("00.1", cases, raised)[1] == "no answer yet — write the function's body"
    assert judge_record("00.1", cases, {"outcomes": [{"raised": "x"}] * n})[0] is False


def test_rebuild_keeps_only_answer_cells_and_says_what_it_restored():
    import copy

    import nbformat

    from kit.lessons.run import find_notebook
    from kit.lessons.student import student_notebook
    lesson = nbformat.read(str(find_notebook("00")), as_version=4)
    theirs = student_notebook(lesson)
    answer = next(c for c in theirs.cells if "answer" in c.metadata.get("tags", []))
    answer.source = "def scaled_identity(n, c):\n    return c * torch.eye(n)"
    check = next(c for c in theirs.cells if 'check("00.2"' in c.source)
    check.source = "print('✓ 00.2: correct')"
    theirs.cells.append(nbformat.v4.new_code_cell("import kit.exercises.lesson00"))
    nb, flags = rebuild(lesson, copy.deepcopy(theirs))
    sources = [c.source for c in nb.cells]
    assert 'check("00.2", pairwise_sq_dists)' in sources and "print('✓ 00.2: correct')" not in sources
    assert "import kit.exercises.lesson00" not in sources and answer.source in sources
    assert any("restored" in f for f in flags) and any("added cell" in f for f in flags)
    answer.source = "from kit.exercises import get\nscaled_identity = get('00.1').reference"
    assert any("imports kit's exercise modules" in f for f in rebuild(lesson, theirs)[1])
