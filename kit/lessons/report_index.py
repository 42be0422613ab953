"""``index.html`` over a folder of runs: a card per lesson (its headlines against their bars, run time, key-figure
thumbnail), a summary of the cards' marks, links to comparison pages, and a sortable table of every run."""
from __future__ import annotations

from pathlib import Path

from kit.lessons.headlines import LESSONS, judge_all, lesson_of
from kit.lessons.htmlpage import Markup, esc, join, link, mark, page, table, td, tr
from kit.lessons.report_compare import build_comparison
from kit.lessons.report_headline import HEADLINE_STYLE, headline, headline_block, judge_run
from kit.lessons.report_page import notebook_title
from kit.lessons.runfolder import RunFolder, collect

INDEX_STYLE = """.lessons{display:flex;flex-direction:column;gap:.2em}.lessons .kit-headline{display:flex;gap:1em;align-items:flex-start;margin:.4em 0;max-width:none}
.lessons .thumb{flex:0 0 240px}.lessons .thumb svg{width:240px;height:auto;display:block}.lessons .info{flex:1;min-width:0}
.summary{font-size:15px}.summary .mark{margin-left:.6em}
@media (max-width:640px){body{margin:.6em}.lessons .kit-headline{flex-direction:column}.lessons .thumb,.lessons .thumb svg{width:100%}
table.sortable{display:block;overflow-x:auto}.kit-headline td.b{white-space:normal}}"""


def lesson_runs(runs: list[RunFolder]) -> dict[str, RunFolder]:
    """The run of each lesson among ``runs``: a folder named after the lesson's notebook (as ``kit run`` and
    ``run-all`` make them); with several, the last finished."""
    found: dict = {}
    for r in runs:
        lesson = lesson_of(r.stem)
        if lesson and r.path.name == r.stem:
            prev = found.get(lesson.number)
            if prev is None or r.finished >= prev.finished:
                found[lesson.number] = r
    return found


def _read_notebook(run: RunFolder):
    import nbformat
    try:
        return nbformat.read(str(run.notebook_path), as_version=4)
    except Exception:  # noqa: BLE001 - a missing or broken notebook costs its title and thumbnail, not the index
        return None


def _thumbnail(run: RunFolder, nb, href: str | None) -> str:
    """The lesson's key figure as a small inline SVG (from the executed notebook), or ""."""
    from kit.lessons.thumbnail import key_figure, svg_thumbnail
    if nb is None:
        return ""
    try:
        lesson = lesson_of(run.stem)
        svg = svg_thumbnail(key_figure(nb, lesson.figure if lesson else None))
    except Exception:  # noqa: BLE001 - no thumbnail is no reason to lose the index
        return ""
    if not svg:
        return ""
    return f'<a class="thumb" href="{esc(href)}">{svg}</a>' if href else f'<div class="thumb">{svg}</div>'


def _run_headline(r: RunFolder) -> Markup:
    """The runs table's last column: a lesson's headlines marked, else the first metrics, else why there are none."""
    lesson = lesson_of(r.stem)
    if lesson and r.metrics:
        return join((mark(j["ok"]) + f" {h.key}={j['text']}" for h, j in judge_all(lesson, r.judged)), " · ")
    return esc(headline(r.results.doc) or r.reason or (r.results.problem if r.ok else "") or "")


def _lesson_cards(runs_dir: Path, found: dict[str, RunFolder]) -> Markup:
    numbers = sorted(set(LESSONS) | set(found))
    cards, tally = [], {True: 0, False: 0, None: 0}
    for n in numbers:
        run = found.get(n)
        lesson = LESSONS.get(n) or lesson_of(run.stem)
        nb = _read_notebook(run) if run is not None else None
        href = run.href(runs_dir) if run is not None else None
        if run is not None:
            tally[judge_run(lesson, run)[1]] += 1  # the card's own mark (headline_block judges the same way)
        title = (notebook_title(nb) if nb is not None else "") or lesson.title
        cards.append(headline_block(lesson, run, title=title, href=href,
                                    thumb=_thumbnail(run, nb, href) if run is not None else ""))
    missing = len(numbers) - len(found)
    return Markup(f"<p class='summary'>{len(found)} of {len(numbers)} lessons ran:{mark(True)} {tally[True]} met every bar"
                  f"{mark(False)} {tally[False]} missed a bar{mark(None)} {tally[None] + missing} not judged or not run."
                  " Bars are the goals of a run with default parameters.</p>"
                  f"<div class='lessons'>{''.join(cards)}</div><h2>all runs</h2>")


def _comparisons(runs_dir: Path, runs: list[RunFolder]) -> Markup:
    """A comparison page for each notebook with two or more finished runs, and a list of links to them."""
    by_nb: dict[str, int] = {}
    for r in runs:
        if r.ok and r.metrics:
            by_nb[r.stem] = by_nb.get(r.stem, 0) + 1
    links = []
    for stem, n in by_nb.items():
        if n >= 2:
            out = build_comparison(runs_dir, notebook=stem, runs=runs)
            links.append(f"<li>{link(out.name, f'compare the {n} runs of {stem}')}</li>")
    return Markup(f"<ul>{''.join(links)}</ul>") if links else Markup("")


def build_index(runs_dir: Path, title: str = "kit — notebook runs", compare: bool = True) -> Path:
    """``index.html`` over the run folders under ``runs_dir`` (any depth).

    When lessons ran (``kit run`` / ``run-all`` folders named after the notebook), the page opens with every
    lesson in order: title, one-line goal, headline metrics with ✓/✗ against their bars, run time and a
    thumbnail of the key figure ("—" for a lesson or a metric that is missing). Then a sortable table of every
    run, lessons or not (sweeps, other notebooks), with status, wall time, parameters and headline metrics.
    With ``compare``, each notebook with two or more finished runs also gets a comparison page
    ``compare-<notebook>.html`` (:func:`kit.lessons.report_compare.build_comparison`), linked from the index.
    """
    runs_dir = Path(runs_dir)
    runs = collect(runs_dir)
    rows = [tr(td(link(r.href(runs_dir), r.name)), r.stem, td(r.status, cls=r.status), r.seconds,
               ", ".join(f"{k}={v}" for k, v in r.overrides.items()) or "defaults", td(_run_headline(r)))
            for r in runs]
    found = lesson_runs(runs)
    body = (_lesson_cards(runs_dir, found) if found else Markup("")) + (_comparisons(runs_dir, runs) if compare else "")
    if rows:
        body += table(["run", "notebook", "status", "seconds", "parameters", "headline metrics"], rows)
    else:
        body += Markup(f"<p class='note'>no runs (folders with a run.json) under {esc(runs_dir)}</p>")
    out = runs_dir / "index.html"
    runs_dir.mkdir(parents=True, exist_ok=True)
    out.write_text(page(title, body, style=HEADLINE_STYLE + INDEX_STYLE), encoding="utf-8")
    return out


__all__ = ["build_index", "lesson_runs"]
