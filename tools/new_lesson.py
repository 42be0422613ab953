"""Start lesson NN: ``python tools/new_lesson.py 22 my_topic``.

Writes what is missing of the lesson's two files — ``notebooks/src/NN_name.py`` (from tools/lesson_template.py) and
``kit/exercises/lessonNN.py`` (a first exercise and the lesson's catalog entry, ``LESSON = LessonEntry(...)``) —
then builds ``notebooks/NN_name.ipynb`` and rewrites README's lesson table from the catalog. It never overwrites a
file: run it again after a half-made start and it completes what is missing (idempotent).
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

EXERCISES = '''"""Lesson {n} exercises: {title}."""
from __future__ import annotations

from kit.exercises import Case, function
from kit.exercises.declare import Budget, Headline, LessonEntry


# ------------------------------------------------------------------------------------------ {n}.1


def _cases(rng):
    yield Case("a random number", (float(rng.normal()),))
    yield Case("zero", (0.0,))


function("{n}.1", "the key piece", reference=lambda x: x, cases=_cases,
         hints=("a first nudge", "a stronger one"))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    return m["val_acc"] >= 0.0  # set the real bar: one a broken run misses


LESSON = LessonEntry(
    number="{n}", name="{name}", title="{title}",
    goal="One line: what the learner builds and the number it is judged by.",
    teaches="what it teaches, for README's lesson table",
    data="the data it uses (offline default)",
    metrics=(Headline("val_acc", "validation accuracy", None, unit="%"),),
    smoke_bar=smoke_bar,
    budget=Budget(smoke_s=30),
)
'''


def main(number: str, name: str) -> int:
    if not (number.isdigit() and len(number) == 2 and name.isidentifier()):
        print("usage: python tools/new_lesson.py NN name   (two digits, then a Python-style name)", file=sys.stderr)
        return 2
    stem, title = f"{number}_{name}", name.replace("_", " ").capitalize()
    others = [p for p in (ROOT / "notebooks" / "src").glob(f"{number}_*.py") if p.stem != stem]
    if others:
        print(f"lesson {number} is {others[0].stem} already", file=sys.stderr)
        return 2
    src, exercises = ROOT / "notebooks" / "src" / f"{stem}.py", ROOT / "kit" / "exercises" / f"lesson{number}.py"
    if not src.exists():
        src.write_text((ROOT / "tools" / "lesson_template.py").read_text().replace("# # NN —", f"# # {number} —")
                       .replace("NN.", f"{number}.").replace("lessonNN", f"lesson{number}"))
        print("wrote", src.relative_to(ROOT))
    if not exercises.exists():
        exercises.write_text(EXERCISES.format(n=number, name=name, title=title))
        print("wrote", exercises.relative_to(ROOT))
    sys.path.insert(0, str(ROOT / "tools"))
    from nbbuild import main as build
    build([stem])
    # a fresh interpreter reads the catalog with the new entry
    subprocess.run([sys.executable, "-m", "kit.lessons.catalog", "--readme"], cwd=ROOT, check=True)
    print(f"edit {src.relative_to(ROOT)} and {exercises.relative_to(ROOT)} (its LESSON entry and its smoke_bar), "
          f"then: python tools/nbbuild.py {stem} && .venv/bin/kit run {number} -p smoke True")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]) if len(sys.argv) == 3 else main("", ""))
