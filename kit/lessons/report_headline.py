"""A run judged against its lesson's headline bars (:mod:`kit.lessons.headlines`), and the block that shows it: on top
of the lesson's own page and as its card on the index. :func:`judge_run` is the one place a run gets its ✓/✗."""
from __future__ import annotations

import re

from kit.lessons.headlines import judge_all, lesson_of, verdict
from kit.lessons.htmlpage import MARK_STYLE, Markup, esc, is_number, mark
from kit.lessons.runfolder import Results, RunFolder, judged

HEADLINE_STYLE = """.kit-headline{font-family:system-ui,sans-serif;border:1px solid #ddd;border-left:6px solid #999;
border-radius:6px;padding:.6em 1em;margin:1em 0;background:#fcfcfc;color:#222;max-width:60em}
.kit-headline.pass{border-left-color:#2a8a3e}.kit-headline.fail{border-left-color:#c0392b}
.kit-headline h2,.kit-headline h3{margin:.1em 0 .3em;font-size:1.15em;line-height:1.3}.kit-headline .goal{margin:.2em 0 .5em;color:#444}
.kit-headline table.hl{border-collapse:collapse;font-size:14px;margin:.2em 0;width:auto}
.kit-headline table.hl td{border:0;border-top:1px solid #eee;padding:3px 10px 3px 0;text-align:left;vertical-align:top}
.kit-headline td.v{font-variant-numeric:tabular-nums;white-space:nowrap;font-weight:600}.kit-headline td.b{color:#666;white-space:nowrap}
""" + MARK_STYLE + """
.kit-headline .meta{color:#666;font-size:13px;margin:.4em 0 0}"""


def judge_run(lesson, run: RunFolder | None) -> tuple[list, bool | None]:
    """``(results, ok)`` of a lesson's run: each headline judged on the run's metrics plus timing
    (:attr:`RunFolder.judged`), and the run's ✓/✗ — ``None`` when it did not run, ✗ when it did not end ok.
    The index's summary and every page and card take their marks from here."""
    if run is None:
        return [], None
    results = judge_all(lesson, run.judged)
    return results, verdict(results) if run.ok else False


def headline(doc: dict, k: int = 4, notebook: str | None = None) -> str:
    """One line of a run's ``metrics.json`` (``doc``): a lesson's declared headlines with ✓/✗ against their bars
    (when ``notebook`` names a lesson), else the first ``k`` numbers."""
    results = Results.from_doc(doc)
    lesson = lesson_of(notebook) if notebook else None
    if lesson is not None and results.metrics:
        tick = {True: "✓ ", False: "✗ ", None: ""}
        return ", ".join(f"{tick[j['ok']]}{h.key}={j['text']}" + (f" ({j['bar_text']})" if j["bar_text"] else "")
                         for h, j in judge_all(lesson, results.judged))
    items = [(n, v) for n, v in results.metrics.items() if is_number(v)]
    return ", ".join(f"{n}={v:.4g}" for n, v in items[:k])


def duration(s) -> str:
    if not is_number(s):
        return "—"
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def machine_note(timing: dict, below: float = 0.9) -> str:
    """A sentence when the run's machine trained slower than the throughput its time-budget bars assume
    (``timing``: ``tokens_per_s`` and ``reference_tokens_per_s``, as lesson 09 saves them); the bars stay judged."""
    got, ref = timing.get("tokens_per_s"), timing.get("reference_tokens_per_s")
    if not (is_number(got) and is_number(ref)) or ref <= 0 or got >= below * ref:
        return ""
    return (f" · this machine trained at {got:,.0f} tokens/s, {got / ref:.0%} of the {ref:,.0f} tokens/s the "
            f"time-budget bars assume (a busy or slower machine; the bars are judged as they are)")


def _meta(run: RunFolder | None) -> Markup:
    if run is None:
        return Markup("not run")
    params = ", ".join(f"{k}={v}" for k, v in run.overrides.items())
    meta = f"ran in {duration(run.seconds)} · {esc(run.status)}"
    if run.reason:
        meta += f": {esc(run.reason)}"
    elif run.ok and run.results.problem:
        meta += f": {esc(run.results.problem)}"
    meta += f" · parameters: {esc(params)}" if params else " · default parameters"
    if "smoke" in run.overrides:
        meta += " (the bars are those of a default run)"
    return Markup(meta + esc(machine_note(run.timing)))


def headline_block(lesson, run: RunFolder | None, title: str | None = None, heading: str = "h3", thumb: str = "",
                   href: str | None = None) -> str:
    """One lesson's block: ✓/✗ overall, number and title (linked to ``href``), goal, each headline metric with its
    bar and mark, run time, status and non-default parameters; ``run`` ``None``: not run."""
    results, ok = judge_run(lesson, run)
    klass = {True: "pass", False: "fail"}.get(ok, "none")
    name = esc(re.sub(rf"^{lesson.number}\s*[—:.-]?\s*", "", title or lesson.title) or lesson.title)
    if href:
        name = Markup(f'<a href="{esc(href)}">{name}</a>')
    rows = "".join(f"<tr><td>{mark(r['ok'])}</td><td>{esc(h.label)}</td><td class='v'>{esc(r['text'])}</td>"
                   f"<td class='b'>{esc(r['bar_text'])}</td></tr>" for h, r in results)
    table = f"<table class='hl'>{rows}</table>" if rows else ""
    return (f'<section class="kit-headline {klass}" id="lesson-{lesson.number}">{thumb}<div class="info">'
            f'<{heading}>{mark(ok)} {lesson.number} · {name}</{heading}>'
            f'<p class="goal">{esc(lesson.goal)}</p>{table}<p class="meta">{_meta(run)}</p></div></section>')


__all__ = ["HEADLINE_STYLE", "duration", "headline", "headline_block", "judge_run", "judged", "machine_note"]
