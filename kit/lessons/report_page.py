"""An executed notebook's own page: one HTML file that works offline (nbconvert's ``kit_report`` template, plotly.js
inlined once, the maths as MathML), headed, for a lesson, by its headline block (:mod:`kit.lessons.report_headline`)."""
from __future__ import annotations

import re
from pathlib import Path

from kit.lessons.headlines import lesson_of
from kit.lessons.htmlpage import VIEWPORT
from kit.lessons.report_headline import HEADLINE_STYLE, headline_block
from kit.lessons.runfolder import RunFolder

TEMPLATES = Path(__file__).parent / "templates"

MATH_STYLE = """math{font-size:1.08em;font-family:"STIX Two Math","Latin Modern Math","Cambria Math",math}math[display=block]{margin:.6em 0;overflow-x:auto;overflow-y:hidden}
code.tex-error{color:#b00}"""


def notebook_to_html(ipynb: Path) -> Path:
    """Convert an executed notebook to one HTML file that works offline: plotly.js inlined once, the maths
    converted to MathML (:mod:`kit.lessons.texmath`), and, for a lesson, its headline block on top
    (goal, headline metrics against their bars, run time; :mod:`kit.lessons.headlines`)."""
    import nbformat
    from nbconvert import HTMLExporter
    from plotly.offline import get_plotlyjs

    from kit.lessons.texmath import MathStore
    exporter = HTMLExporter(template_name="kit_report", extra_template_basedirs=[str(TEMPLATES)])
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    ipynb = Path(ipynb)
    nb = nbformat.read(str(ipynb), as_version=4)
    drop_widget_views(nb)
    block = page_headline(ipynb, nb)
    maths = MathStore()
    protect_math(nb, maths)
    body, _ = exporter.from_notebook_node(nb, resources={"plotly_js": get_plotlyjs()})
    body = maths.restore(body)
    body = _add_head(body, VIEWPORT + f"<style>{MATH_STYLE}{HEADLINE_STYLE}</style>")
    if block:
        body = _after_tag(body, "main", block) if "<main>" in body else _after_tag(body, "body", block)
    out = ipynb.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


def protect_math(nb, maths) -> None:
    """Formulas in markdown cells and in markdown outputs (``display(Markdown(...))``) → placeholders."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = maths.protect(cell.source)
        for out in cell.get("outputs", []):
            md = out.get("data", {}).get("text/markdown")
            if md is not None:
                out["data"]["text/markdown"] = maths.protect(md if isinstance(md, str) else "".join(md))


def _add_head(page: str, extra: str) -> str:
    i = page.find("</head>")
    return page[:i] + extra + page[i:] if i >= 0 else extra + page


def _after_tag(page: str, tag: str, extra: str) -> str:
    m = re.search(rf"<{tag}\b[^>]*>", page)
    return page[:m.end()] + extra + page[m.end():] if m else extra + page


def page_headline(ipynb: Path, nb=None) -> str:
    """The headline block that heads a lesson's page ("" for a notebook that is not a lesson)."""
    ipynb = Path(ipynb)
    lesson = lesson_of(ipynb.stem)
    if lesson is None:
        return ""
    run = RunFolder.of_notebook(ipynb, nb)
    return headline_block(lesson, run, title=notebook_title(nb) if nb is not None else lesson.title, heading="h2")


def notebook_title(nb) -> str:
    """The first line of the first markdown cell, without its ``#`` ("" where there is none)."""
    for c in nb.cells:
        if c.cell_type == "markdown":
            for line in c.source.splitlines():
                if line.strip():
                    return line.lstrip("# ").strip()
    return ""


def drop_widget_views(nb) -> None:
    """Widgets cannot run in a static page: where an output also carries a static view, keep that one."""
    from kit.viz.widgets import WIDGET_MIME
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_MIME in data and any(k.startswith("text/html") for k in data):
                del data[WIDGET_MIME]


__all__ = ["drop_widget_views", "notebook_title", "notebook_to_html", "page_headline", "protect_math"]
