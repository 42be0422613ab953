"""kit.exercises: checks against kit's own reference on fresh inputs, levelled hints, no leaked answers;
and every lesson's exercises follow the rules (3–5, one to implement, check cells that hold no answer)."""
from __future__ import annotations

import ast

import nbformat
import pytest
import torch

import kit.exercises as kx
from kit.checks import ExerciseError
from kit.lessons.run import list_notebooks
from kit.lessons.student import check_names

NOTEBOOKS = list_notebooks()


@pytest.fixture
def scratch():
    """Exercises registered under lesson 'T9' for one test, removed afterwards."""
    yield
    for k in [k for k in kx._REGISTRY if k.startswith("T9.")]:
        del kx._REGISTRY[k]


def _cases(rng):
    yield kx.Case("random vector", (torch.tensor(rng.normal(size=5)),))
    yield kx.Case("all zeros", (torch.zeros(3, dtype=torch.float64),))


def test_function_exercise_names_the_first_failing_case(scratch):
    kx.function("T9.1", "double it", reference=lambda x: 2 * x, cases=_cases, hints=("h1", "h2", "h3"))
    assert kx.verdict("T9.1", lambda x: x + x) is None
    assert kx.verdict("T9.1", lambda x: x * x).startswith("on the case 'random vector' its result is off by")
    assert kx.verdict("T9.1", lambda x: 2 * x + (x == 0)).startswith("on the case 'all zeros'")
    assert kx.verdict("T9.1", lambda x: x[:2] * 2) == "on the case 'random vector' its result has shape (2,), expected (5,)"
    assert kx.verdict("T9.1", lambda x: 1 / 0) == "on the case 'random vector' your function raised ZeroDivisionError: division by zero"
    assert kx.verdict("T9.1", lambda x: None) == "on the case 'random vector' its result is None — did you forget to return it?"
    assert kx.verdict("T9.1", 3.0) == "your answer should be a function, got float"

    def stub(x):
        raise NotImplementedError
    assert kx.verdict("T9.1", stub) == "no answer yet — write the function's body"
    assert kx.verdict("T9.1", None).startswith("no answer yet")


def test_a_learner_function_that_changes_its_input_does_not_change_the_reference(scratch):
    kx.function("T9.1", "double it", reference=lambda x: 2 * x, cases=_cases, hints=("h",))

    def in_place(x):
        x.mul_(2)
        return x
    assert kx.verdict("T9.1", in_place) is None


def test_inputs_are_fresh_at_every_check(scratch):
    seen = []
    kx.function("T9.1", "id", reference=lambda x: x, cases=_cases, hints=("h",))
    kx.verdict("T9.1", lambda x: seen.append(x.clone()) or x)
    kx.verdict("T9.1", lambda x: seen.append(x.clone()) or x)
    assert not torch.equal(seen[0], seen[2]), "each check draws new random inputs"


def test_check_prints_or_raises_with_levelled_hints(scratch, capsys, monkeypatch):
    kx.function("T9.1", "double it", reference=lambda x: 2 * x, cases=_cases, hints=("first", "second", "third"))
    monkeypatch.delenv("KIT_HINTS", raising=False)
    assert kx.check("T9.1", lambda x: 2 * x)
    assert "✓ T9.1: correct — double it" in capsys.readouterr().out
    with pytest.raises(ExerciseError) as err:
        kx.check("T9.1", lambda x: x)
    msg = str(err.value)
    assert msg.startswith("T9.1: not yet — on the case 'random vector'")
    assert "Hint 1: first" in msg and "second" not in msg and "hint('T9.1', 2)" in msg
    monkeypatch.setenv("KIT_HINTS", "2")
    with pytest.raises(ExerciseError, match="Hint 1: first Hint 2: second \\(more: hint\\('T9.1', 3\\)\\)"):
        kx.check("T9.1", None)
    assert kx.hint("T9.1", 3).endswith("Hint 3: third")


def test_value_and_property_exercises(scratch):
    kx.value("T9.1", "a number", expected=lambda: torch.tensor([0.25, 0.5]), hints=("h",))
    assert kx.verdict("T9.1", [0.25, 0.5]) is None
    assert "off by 0.25" in kx.verdict("T9.1", [0.25, 0.75])
    kx.prop("T9.2", "an even number", test=lambda a: None if a % 2 == 0 else f"{a} is odd", hints=("h",))
    assert kx.verdict("T9.2", 4) is None and kx.verdict("T9.2", 3) == "3 is odd"


def test_bad_ids_and_duplicates_are_clear_errors(scratch):
    with pytest.raises(ValueError, match="no exercise '77.9'"):
        kx.check("77.9", 1)
    kx.prop("T9.1", "x", test=lambda a: None, hints=("h",))
    with pytest.raises(ValueError, match="defined twice"):
        kx.prop("T9.1", "x", test=lambda a: None, hints=("h",))


def test_compare_structures():
    assert kx.compare((torch.tensor(1.0, requires_grad=True) * 1, 2.0), (1.0, 2.0)) is None
    assert kx.compare({"w": torch.ones(2)}, {"w": torch.ones(2), "b": 0.0}) == "the result lacks the key(s) ['b']"
    assert "NaN" in kx.compare(torch.tensor([float("nan")]), torch.tensor([1.0]))
    assert kx.compare(torch.tensor([float("inf")]), torch.tensor([float("inf")])) is None
    assert "numeric" in kx.compare("abc", 1.0)


def test_find_leaks_sees_values_functions_and_kit_modules(scratch):
    import types
    kx.function("T9.1", "double it", reference=lambda x: 2 * x, cases=_cases, hints=("h",))
    kx.value("T9.2", "a number", expected=lambda: 0.123456, hints=("h",))
    fake_kit = types.ModuleType("kit.fake")
    exec("def twice(x):\n    return x * 2\ndef _private(x):\n    return 2 * x", fake_kit.__dict__)
    ns = {"doubler": lambda x: x * 2, "other": lambda x: x, "lib": fake_kit, "v": 0.123456, "w": 0.5,
          "t": torch.tensor(0.123456), "_hidden": 0.123456}
    leaks = kx.find_leaks(ns, "T9")
    assert sorted(leaks) == ["doubler passes T9.1", "lib._private passes T9.1", "lib.twice passes T9.1",
                             "t holds the answer to T9.2", "v holds the answer to T9.2"]


def _pair_cases(rng):
    yield kx.Case("random (3, 4)", (kx.randn(rng, 3, 4), kx.randn(rng, 3, 4)))
    yield kx.Case("random (5, 2)", (kx.randn(rng, 5, 2), kx.randn(rng, 5, 2)))


def _samples(rng):
    yield kx.Case("30 and 40 draws", (kx.randn(rng, 30), kx.randn(rng, 40, loc=0.5)))


def test_find_leaks_sees_thin_wrappers_of_kit_functions_methods_and_libraries(scratch):
    """Planted one-liners: a result summed, indexed or keyed, arguments swapped, a method of a kit object, scipy."""
    import types
    kx.function("T9.3", "a − 2b summed over the last axis", reference=lambda a, b: (a - 2 * b).sum(-1),
                cases=_pair_cases, hints=("h",))
    kx.function("T9.4", "the two-sample KS statistic", reference=lambda a, b: float(
        __import__("scipy.stats").stats.ks_2samp(a.numpy(), b.numpy()).statistic), cases=_samples, hints=("h",))
    lib = types.ModuleType("kit.fake")
    exec("def terms(a, b):\n    return a - 2 * b\n"
         "def swapped(b, a):\n    return (a - 2 * b).sum(-1)\n"
         "def pair(a, b, scale=1.0):\n    return (a - 2 * b).sum(-1) * scale, None\n"
         "def _named(a, b):\n    return {'other': 0, 'loss': (a - 2 * b).sum(-1)}\n"
         "def keywords(*, b, a=None):\n    return {'g': (a - 2 * b).sum(-1)}\n"
         "class Thing:\n    def combine(self, a, b):\n        return (a - 2 * b).sum(-1)\n", lib.__dict__)
    lib.Thing.__module__ = "kit.fake"
    leaks = kx.find_leaks({"lib": lib, "thing": lib.Thing(), "unrelated": lambda a, b: a + b}, "T9")
    for wrapper in ["lib.terms(…).sum(-1) passes T9.3", "lib.swapped with arguments reordered (1, 0) passes T9.3",
                    "lib.pair(…)[0] passes T9.3", "lib._named(…)['loss'] passes T9.3", "thing.combine passes T9.3",
                    "lib.keywords(…)['g'] with a=, b= passes T9.3"]:
        assert wrapper in leaks, (wrapper, leaks)
    assert any(l.startswith("scipy.stats.ks_2samp") and l.endswith("T9.4") for l in leaks), leaks
    assert not any("unrelated" in l for l in leaks)


# ------------------------------------------------------------------------------- every lesson's exercises


def _code(nb):
    return [c for c in nbformat.read(str(nb), as_version=4).cells if c.cell_type == "code"]


def _is_check_statement(stmt) -> bool:
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return True
    call = stmt.value if isinstance(stmt, ast.Expr) else None
    return isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "check" \
        and len(call.args) == 2 and not call.keywords and isinstance(call.args[0], ast.Constant) \
        and isinstance(call.args[1], ast.Name)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_lesson_has_3_to_5_checked_exercises_one_to_implement(nb):
    lesson = nb.stem[:2]
    registered = kx.exercises(lesson)
    assert 3 <= len(registered) <= 5, f"{nb.stem}: {len(registered)} exercises in kit/exercises/lesson{lesson}.py"
    assert any(e.kind == "function" for e in registered), f"{nb.stem}: no exercise where the learner implements a function"
    assert all(len(e.hints) >= 2 for e in registered), f"{nb.stem}: every exercise has hints in levels (2 or more)"
    cells = _code(nb)
    checked = [name for c in cells for name in check_names(c.source)]
    assert checked == [e.id for e in registered], f"{nb.stem}: check cells {checked} ≠ kit's exercises"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_check_cells_hold_no_answer(nb):
    """A check cell is imports and ``check("NN.k", name)`` only: no value, no computation from notebook variables."""
    cells = _code(nb)
    for i, c in enumerate(cells):
        if check_names(c.source):
            body = ast.parse(c.source).body
            assert all(_is_check_statement(s) for s in body), f"{nb.stem}: check cell holds more than checks:\n{c.source}"
            assert "solution" in cells[i - 1].metadata.get("tags", []), f"{nb.stem}: a solution cell precedes each check"
    assert not any("expect_close" in c.source or "expect_true" in c.source for c in cells)
