"""Start lesson NN: ``python tools/new_lesson.py 15 tokenization`` writes notebooks/src/15_tokenization.py from
tools/lesson_template.py and tests/bars/15_tokenization.py (its smoke bar), then builds the notebook."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(number: str, name: str) -> int:
    if not (number.isdigit() and len(number) == 2 and name.isidentifier()):
        print("usage: python tools/new_lesson.py NN name   (two digits, then a Python-style name)", file=sys.stderr)
        return 2
    stem = f"{number}_{name}"
    src = ROOT / "notebooks" / "src" / f"{stem}.py"
    bar = ROOT / "tests" / "bars" / f"{stem}.py"
    if src.exists() or bar.exists():
        print(f"{src.name} or its bar exists already", file=sys.stderr)
        return 2
    src.write_text((ROOT / "tools" / "lesson_template.py").read_text().replace("# # NN —", f"# # {number} —")
                   .replace("NN.", f"{number}.").replace("lessonNN", f"lesson{number}"))
    exercises = ROOT / "kit" / "exercises" / f"lesson{number}.py"
    if not exercises.exists():
        exercises.write_text(f'"""Lesson {number} exercises."""\nfrom kit.exercises import Case, function\n\n\n'
                             "def _cases(rng):\n    yield Case('a random number', (float(rng.normal()),))\n\n\n"
                             f"function('{number}.1', 'the key piece', reference=lambda x: x, cases=_cases,\n"
                             "         hints=('a first nudge', 'a stronger one'))\n")
    bar.write_text('"""Smoke-run bar of lesson ' + stem + ': what metrics.json must show with smoke=True."""\n\n\n'
                   "def check(m: dict) -> bool:\n    return m[\"val_acc\"] > 0.0  # set the real bar\n")
    sys.path.insert(0, str(ROOT / "tools"))
    from nbbuild import main as build
    build([stem])
    print(f"edit {src.relative_to(ROOT)}, {bar.relative_to(ROOT)} and kit/exercises/lesson{number}.py; run: .venv/bin/kit run {number} -p smoke True")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]) if len(sys.argv) == 3 else main("", ""))
