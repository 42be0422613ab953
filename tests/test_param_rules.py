"""validation_rules reads a notebook's rules without running any of its code (issue 25, item 4)."""
import ast

import nbformat
import pytest

from kit import params as P
from kit.lessons.run import LessonError, list_notebooks, parse_cell, validation_rules


def _eval_rules(path):
    """The rules as the former eval-based reader built them (trusted lesson notebooks only)."""
    cells = nbformat.read(str(path), as_version=4).cells
    idx = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    cell = next(c for c in cells[idx + 1:] if c.cell_type == "code")
    scope = {"__builtins__": {}, **{n: getattr(P, n) for n in ("Int", "Float", "Bool", "Choice", "Str")}}
    out = {}
    for node in ast.walk(parse_cell(cell.source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "validate":
            for kw in node.keywords:
                out[kw.arg] = eval(compile(ast.Expression(kw.value), "<t>", "eval"), scope)  # noqa: S307
    return out


@pytest.mark.parametrize("nb", list_notebooks(), ids=lambda p: p.stem)
def test_lesson_rules_are_the_same_as_with_eval(nb):
    rules, expected = validation_rules(nb), _eval_rules(nb)
    assert expected and set(expected) <= set(rules)
    for name, rule in expected.items():
        assert repr(rules[name]) == repr(rule), name  # same class, same fields, same field types


def _notebook(tmp_path, rule_src):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("seed = 0\nlr = 0.1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(f"from kit.params import validate, Float\nvalidate(globals(), lr={rule_src})")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("src,rule", [
    ("Float(0, 1, lo_open=True)", P.Float(0, 1, lo_open=True)),
    ("Float(-1.5, 1e6, hi_open=False)", P.Float(-1.5, 1e6)),
    ("Int(hi=None)", P.Int()),
    ("Choice('a', 'b')", P.Choice("a", "b")),
    ("Bool()", P.Bool()),
    ("Str()", P.Str()),
])
def test_literal_rules_are_built(tmp_path, src, rule):
    assert validation_rules(_notebook(tmp_path, src))["lr"] == rule


HOSTILE = [
    "Float(().__class__.__base__.__subclasses__())",
    "().__class__.__base__.__subclasses__()[0]",
    "(lambda: Float())()",
    "Float(lambda: 0)",
    "__import__('os').system('touch {marker}')",
    "Float(__import__('os').system('touch {marker}'))",
    "Float(0, Int(1))",
    "Float(0, len('x'))",
    "Eval('1')",
    "open('{marker}', 'w')",
    "P.Float(0, 1)",
    "Float.__init__.__globals__['os'].system('touch {marker}')",
    "Float(0).__class__",
    "Float(0, 10**10**10)",
    "Float(0, 2 ** 64)",
    "Float(*[0, 1])",
    "Float(**{{'lo': 0}})",
    "Float(lo=x)",
    "Float(0, 1, 2, 3, 4, 5)",
    "Float(bogus=1)",
    "Choice({{1, 2}})",
    "Float(b'0')",
    "Float(0, [f'{{__import__(\"os\").system(\"touch {marker}\")}}'])",
    "[Float() for _ in ()]",
    "Float() if 1 else Int()",
    "Float",
    "0",
]


@pytest.mark.parametrize("src", HOSTILE)
def test_hostile_rules_are_refused_and_never_run(tmp_path, src):
    marker = tmp_path / "pwned"
    path = _notebook(tmp_path, src.format(marker=marker))
    with pytest.raises(LessonError, match=r"x\.ipynb: the rule of parameter 'lr' is not a literal"):
        validation_rules(path)
    assert not marker.exists()
