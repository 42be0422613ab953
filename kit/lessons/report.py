"""Self-contained HTML reports: executed notebooks → HTML, and an index over run folders."""
from __future__ import annotations

import html
import json
from dataclasses import asdict
from pathlib import Path

TEMPLATES = Path(__file__).parent / "templates"


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
    body = _add_head(body, _VIEWPORT + f"<style>{_MATH_STYLE}{_HEADLINE_STYLE}</style>")
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


_VIEWPORT = '<meta name="viewport" content="width=device-width, initial-scale=1">'
_MATH_STYLE = """math{font-size:1.08em;font-family:"STIX Two Math","Latin Modern Math","Cambria Math",math}math[display=block]{margin:.6em 0;overflow-x:auto;overflow-y:hidden}
code.tex-error{color:#b00}"""


def _add_head(page: str, extra: str) -> str:
    i = page.find("</head>")
    return page[:i] + extra + page[i:] if i >= 0 else extra + page


def _after_tag(page: str, tag: str, extra: str) -> str:
    import re
    m = re.search(rf"<{tag}\b[^>]*>", page)
    return page[:m.end()] + extra + page[m.end():] if m else extra + page


def page_headline(ipynb: Path, nb=None) -> str:
    """The headline block that heads a lesson's page ("" for a notebook that is not a lesson)."""
    from kit.lessons.headlines import lesson_of
    ipynb = Path(ipynb)
    lesson = lesson_of(ipynb.stem)
    if lesson is None:
        return ""
    doc = _read_json(ipynb.parent / "metrics.json")
    pm = (nb.metadata.get("papermill", {}) if nb is not None else {}) or {}
    run = {"status": "ok" if doc else "unknown", "seconds": pm.get("duration"), "overrides": pm.get("parameters") or {},
           "metrics": doc.get("metrics", {}), "timing": doc.get("timing", {}), "page": None, "reason": None}
    return headline_block(lesson, run, title=_title(nb) if nb is not None else lesson.title, heading="h2")


def _title(nb) -> str:
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


def judged(run: dict) -> dict:
    """What headlines are judged on: a run's ``metrics`` plus its wall-clock ``timing`` (latencies, throughput:
    kept out of ``metrics``, which must be the same for the same seed)."""
    return {**(run.get("timing") or {}), **(run.get("metrics") or {})}


def headline(metrics: dict, k: int = 4, notebook: str | None = None) -> str:
    """One line of a run's metrics: a lesson's declared headlines with ✓/✗ against their bars (when
    ``notebook`` names a lesson), else the first ``k`` numbers."""
    from kit.lessons.headlines import judge_all, lesson_of
    lesson = lesson_of(notebook) if notebook else None
    if lesson is not None and metrics.get("metrics"):
        mark = {True: "✓ ", False: "✗ ", None: ""}
        return ", ".join(f"{mark[j['ok']]}{h.key}={j['text']}" + (f" ({j['bar_text']})" if j["bar_text"] else "")
                         for h, j in judge_all(lesson, judged(metrics)))
    items = [(n, v) for n, v in metrics.get("metrics", {}).items() if _is_number(v)]
    return ", ".join(f"{n}={v:.4g}" for n, v in items[:k])


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def collect_runs(runs_dir: Path) -> list[dict]:
    """Every run folder (one with a ``run.json``) under ``runs_dir``, at any depth, in path order."""
    runs_dir = Path(runs_dir)
    runs = []
    from kit.lessons.run import RunRecord
    for run_json in sorted(runs_dir.rglob("run.json")):
        if ".ipynb_checkpoints" in run_json.parts:
            continue
        folder = run_json.parent
        rec = RunRecord.read(folder)
        if rec is None:
            continue
        run = asdict(rec)
        doc = _read_json(folder / "metrics.json")
        page = folder / Path(rec.notebook).with_suffix(".html").name
        name = folder.relative_to(runs_dir).as_posix()
        runs.append({"name": folder.name if name == "." else name, "folder": folder,
                     "notebook": Path(rec.notebook).stem, "status": rec.status,
                     "seconds": rec.seconds, "overrides": rec.parameters,
                     "params": rec.all_parameters or rec.parameters, "doc": doc,
                     "metrics": doc.get("metrics", {}), "timing": doc.get("timing", {}),
                     "page": page.relative_to(runs_dir).as_posix() if page.exists() else None, "run": run})
    return runs


def _fmt(v) -> str:
    if _is_number(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    return str(v)


def _cell(v, cls: str = "") -> str:
    sort = f' data-v="{html.escape(repr(v))}"' if _is_number(v) else ""
    klass = f' class="{cls}"' if cls else ""
    return f"<td{klass}{sort}>{html.escape(_fmt(v)) if v is not None else ''}</td>"


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:14px}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}th{background:#f4f4f4;cursor:pointer;user-select:none}
th[data-dir=asc]::after{content:" ▲"}th[data-dir=desc]::after{content:" ▼"}td[data-v]{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:green}.failed{color:#b00}.note{color:#666}code{background:#f4f4f4;padding:1px 4px}"""

# Click a column header to sort (numbers numerically, again to reverse).
_SORT_JS = """<script>
document.querySelectorAll("table.sortable th").forEach((th, i) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], asc = th.dataset.dir !== "asc";
  th.closest("tr").querySelectorAll("th").forEach(h => delete h.dataset.dir);
  th.dataset.dir = asc ? "asc" : "desc";
  const val = tr => { const c = tr.cells[i]; return c && c.dataset.v !== undefined ? parseFloat(c.dataset.v) : (c ? c.textContent.trim() : ""); };
  [...body.rows].sort((a, b) => {
    const x = val(a), y = val(b);
    const r = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
    return asc ? r : -r;
  }).forEach(r => body.appendChild(r));
}));
</script>"""


def _page(title: str, body: str, head: str = "") -> str:
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8">{_VIEWPORT}<title>{html.escape(title)}</title>
<style>{_STYLE}</style>{head}</head><body><h1>{html.escape(title)}</h1>
{body}
{_SORT_JS}</body></html>"""


_HEADLINE_STYLE = """.kit-headline{font-family:system-ui,sans-serif;border:1px solid #ddd;border-left:6px solid #999;
border-radius:6px;padding:.6em 1em;margin:1em 0;background:#fcfcfc;color:#222;max-width:60em}
.kit-headline.pass{border-left-color:#2a8a3e}.kit-headline.fail{border-left-color:#c0392b}
.kit-headline h2,.kit-headline h3{margin:.1em 0 .3em;font-size:1.15em;line-height:1.3}.kit-headline .goal{margin:.2em 0 .5em;color:#444}
.kit-headline table.hl{border-collapse:collapse;font-size:14px;margin:.2em 0;width:auto}
.kit-headline table.hl td{border:0;border-top:1px solid #eee;padding:3px 10px 3px 0;text-align:left;vertical-align:top}
.kit-headline td.v{font-variant-numeric:tabular-nums;white-space:nowrap;font-weight:600}.kit-headline td.b{color:#666;white-space:nowrap}
.mark{font-weight:700}.mark.yes{color:#2a8a3e}.mark.no{color:#c0392b}.mark.none{color:#888}
.kit-headline .meta{color:#666;font-size:13px;margin:.4em 0 0}"""


def _mark(ok) -> str:
    if ok is True:
        return '<span class="mark yes" title="bar met">✓</span>'
    if ok is False:
        return '<span class="mark no" title="bar missed">✗</span>'
    return '<span class="mark none" title="not judged">—</span>'


def _seconds(s) -> str:
    if not _is_number(s):
        return "—"
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def _machine_note(timing: dict, below: float = 0.9) -> str:
    """A sentence when the run's machine trained slower than the throughput its time-budget bars assume
    (``timing``: ``tokens_per_s`` and ``reference_tokens_per_s``, as lesson 09 saves them); the bars stay judged."""
    got, ref = timing.get("tokens_per_s"), timing.get("reference_tokens_per_s")
    if not (_is_number(got) and _is_number(ref)) or ref <= 0 or got >= below * ref:
        return ""
    return (f" · this machine trained at {got:,.0f} tokens/s, {got / ref:.0%} of the {ref:,.0f} tokens/s the "
            f"time-budget bars assume (a busy or slower machine; the bars are judged as they are)")


def headline_block(lesson, run: dict | None, title: str | None = None, heading: str = "h3", thumb: str = "") -> str:
    """One lesson's block: ✓/✗ overall, number and title, goal, each headline metric with its bar and mark,
    run time, status and non-default parameters. ``run`` is a :func:`collect_runs` entry (or ``None``: not run)."""
    from kit.lessons.headlines import judge_all, verdict
    results = judge_all(lesson, judged(run or {})) if run else []
    ok = verdict(results) if run and run.get("status") == "ok" else (False if run else None)
    klass = {True: "pass", False: "fail"}.get(ok, "none")
    import re
    name = html.escape(re.sub(rf"^{lesson.number}\s*[—:.-]?\s*", "", title or lesson.title) or lesson.title)
    if run and run.get("page"):
        name = f'<a href="{html.escape(run["page"])}">{name}</a>'
    rows = "".join(f"<tr><td>{_mark(r['ok'])}</td><td>{html.escape(h.label)}</td><td class='v'>{html.escape(r['text'])}</td>"
                   f"<td class='b'>{html.escape(r['bar_text'])}</td></tr>" for h, r in results)
    if run is None:
        meta = "not run"
    else:
        params = ", ".join(f"{k}={v}" for k, v in (run.get("overrides") or {}).items())
        meta = f"ran in {_seconds(run.get('seconds'))} · {html.escape(str(run.get('status')))}"
        if run.get("reason"):
            meta += f": {html.escape(str(run['reason']))}"
        meta += f" · parameters: {html.escape(params)}" if params else " · default parameters"
        if "smoke" in (run.get("overrides") or {}):
            meta += " (the bars are those of a default run)"
        meta += _machine_note(run.get("timing") or {})
    table = f"<table class='hl'>{rows}</table>" if rows else ""
    return (f'<section class="kit-headline {klass}" id="lesson-{lesson.number}">{thumb}<div class="info">'
            f'<{heading}>{_mark(ok)} {lesson.number} · {name}</{heading}>'
            f'<p class="goal">{html.escape(lesson.goal)}</p>{table}<p class="meta">{meta}</p></div></section>')


def _thumbnail(run: dict) -> str:
    """The lesson's key figure as a small inline SVG (from the executed notebook), or ""."""
    from kit.lessons.headlines import lesson_of
    from kit.lessons.thumbnail import key_figure, svg_thumbnail
    nb_path = run["folder"] / Path(run["run"]["notebook"]).name
    try:
        import nbformat
        nb = nbformat.read(str(nb_path), as_version=4)
        lesson = lesson_of(run["notebook"])
        svg = svg_thumbnail(key_figure(nb, lesson.figure if lesson else None))
    except Exception:  # noqa: BLE001 - no thumbnail is no reason to lose the index
        return ""
    if not svg:
        return ""
    return f'<a class="thumb" href="{html.escape(run["page"])}">{svg}</a>' if run.get("page") else f'<div class="thumb">{svg}</div>'


def lesson_runs(runs: list[dict]) -> dict:
    """The run of each lesson among ``runs``: a folder named after the lesson's notebook (as ``kit run`` and
    ``run-all`` make them); with several, the last finished."""
    from kit.lessons.headlines import lesson_of
    found: dict = {}
    for r in runs:
        lesson = lesson_of(r["notebook"])
        if lesson and r["folder"].name == r["notebook"]:
            prev = found.get(lesson.number)
            if prev is None or (r["run"].get("finished") or "") >= (prev["run"].get("finished") or ""):
                found[lesson.number] = r
    return found


def _lesson_title(run: dict | None, lesson) -> str:
    if run is not None:
        from kit.lessons.run import notebook_info
        try:
            return notebook_info(run["folder"] / Path(run["run"]["notebook"]).name)["title"]
        except Exception:  # noqa: BLE001
            pass
    return lesson.title


_INDEX_STYLE = """.lessons{display:flex;flex-direction:column;gap:.2em}.lessons .kit-headline{display:flex;gap:1em;align-items:flex-start;margin:.4em 0;max-width:none}
.lessons .thumb{flex:0 0 240px}.lessons .thumb svg{width:240px;height:auto;display:block}.lessons .info{flex:1;min-width:0}
.summary{font-size:15px}.summary .mark{margin-left:.6em}
@media (max-width:640px){body{margin:.6em}.lessons .kit-headline{flex-direction:column}.lessons .thumb,.lessons .thumb svg{width:100%}
table.sortable{display:block;overflow-x:auto}.kit-headline td.b{white-space:normal}}"""


def build_index(runs_dir: Path, title: str = "kit — notebook runs", compare: bool = True) -> Path:
    """``index.html`` over the run folders under ``runs_dir`` (any depth).

    When lessons ran (``kit run`` / ``run-all`` folders named after the notebook), the page opens with every
    lesson 00–18 in order: title, one-line goal, headline metrics with ✓/✗ against their bars, run time and a
    thumbnail of the key figure ("—" for a lesson or a metric that is missing). Then a sortable table of every
    run, lessons or not (sweeps, other notebooks), with status, wall time, parameters and headline metrics.
    With ``compare``, each notebook with two or more finished runs also gets a comparison page
    ``compare-<notebook>.html`` (see :func:`build_comparison`), linked from the index.
    """
    from kit.lessons.headlines import LESSONS, judge_all, lesson_of, verdict
    runs_dir = Path(runs_dir)
    runs = collect_runs(runs_dir)
    rows = []
    for r in runs:
        link = f'<a href="{html.escape(r["page"])}">{html.escape(r["name"])}</a>' if r["page"] else html.escape(r["name"])
        params = ", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "defaults"
        lesson = lesson_of(r["notebook"])
        if lesson and r["metrics"]:
            head = " · ".join(f"{_mark(j['ok'])} {html.escape(h.key)}={html.escape(j['text'])}"
                              for h, j in judge_all(lesson, judged(r)))
        else:
            head = html.escape(headline(r["doc"]) or r["run"].get("reason") or "")
        rows.append(f"<tr><td>{link}</td><td>{html.escape(r['notebook'])}</td>"
                    f"<td class='{html.escape(r['status'])}'>{html.escape(r['status'])}</td>{_cell(r['seconds'])}"
                    f"<td>{html.escape(params)}</td><td>{head}</td></tr>")
    links = []
    if compare:
        by_nb: dict[str, int] = {}
        for r in runs:
            if r["status"] == "ok" and r["metrics"]:
                by_nb[r["notebook"]] = by_nb.get(r["notebook"], 0) + 1
        for stem, n in by_nb.items():
            if n >= 2:
                page = build_comparison(runs_dir, notebook=stem)
                links.append(f'<li><a href="{html.escape(page.name)}">compare the {n} runs of {html.escape(stem)}</a></li>')
    found = lesson_runs(runs)
    lessons = ""
    if found:
        numbers = sorted(set(LESSONS) | set(found))
        cards, tally = [], {True: 0, False: 0, None: 0}
        for n in numbers:
            lesson, run = LESSONS.get(n) or lesson_of(found[n]["notebook"]), found.get(n)
            if run is not None:
                ok = verdict(judge_all(lesson, run["metrics"])) if run["status"] == "ok" else False
                tally[ok] += 1
            cards.append(headline_block(lesson, run, title=_lesson_title(run, lesson),
                                        thumb=_thumbnail(run) if run else ""))
        missing = len(numbers) - len(found)
        lessons = (f"<p class='summary'>{len(found)} of {len(numbers)} lessons ran:{_mark(True)} {tally[True]} met every bar"
                   f"{_mark(False)} {tally[False]} missed a bar{_mark(None)} {tally[None] + missing} not judged or not run."
                   " Bars are the goals of a run with default parameters.</p>"
                   f"<div class='lessons'>{''.join(cards)}</div><h2>all runs</h2>")
    body = lessons + (f"<ul>{''.join(links)}</ul>" if links else "") + \
        ("<table class='sortable'><thead><tr><th>run</th><th>notebook</th><th>status</th><th>seconds</th>"
         "<th>parameters</th><th>headline metrics</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
         if rows else f"<p class='note'>no runs (folders with a run.json) under {html.escape(str(runs_dir))}</p>")
    out = runs_dir / "index.html"
    runs_dir.mkdir(parents=True, exist_ok=True)
    out.write_text(_page(title, body, head=f"<style>{_HEADLINE_STYLE}{_INDEX_STYLE}</style>"), encoding="utf-8")
    return out


# ------------------------------------------------------------------------------------- comparison


def _key(v):
    return json.dumps(v, sort_keys=True, default=str)


def _varying(runs: list[dict], field: str) -> tuple[list[str], list[str]]:
    """Keys of ``run[field]`` (numeric scalars for metrics) that vary across runs, and those that don't."""
    names: list[str] = []
    for r in runs:
        for k, v in r[field].items():
            if k not in names and (field == "params" or _is_number(v)):
                names.append(k)
    vary = [k for k in names if len({_key(r[field].get(k)) for r in runs}) > 1]
    return vary, [k for k in names if k not in vary]


def curves_of(run: dict) -> dict:
    """Learning curves a notebook saved: a ``curves`` dict (name → list of numbers, or ``{"x": …, "y": …}``)
    in ``metrics``, ``timing`` or at the top of ``metrics.json``."""
    out = {}
    for src in (run["metrics"], run["timing"], run["doc"]):
        c = src.get("curves") if isinstance(src, dict) else None
        if isinstance(c, dict):
            for name, v in c.items():
                if isinstance(v, dict) and isinstance(v.get("y"), list):
                    out.setdefault(name, (v.get("x") or list(range(len(v["y"]))), v["y"]))
                elif isinstance(v, list) and all(_is_number(x) for x in v):
                    out.setdefault(name, (list(range(len(v))), v))
    return out


def _numeric_axis(values) -> dict:
    if values and all(_is_number(v) for v in values):
        pos = [v for v in values if v > 0]
        if len(pos) == len(values) and max(pos) / min(pos) >= 20:
            return {"type": "log"}
        return {}
    return {"type": "category"}


def _fig_html(fig) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})


REPLICATE = "seed"  # swept alongside other parameters, seeds are replicates: averaged, spread shown


def _metric_vs_param(runs, param, others, metrics, replicate: str | None = None):
    """One subplot per metric, ``param`` on x, one line per combination of the other swept parameters.

    With ``replicate`` (the seed), runs that differ only in it are one point: the mean, with an error bar
    from the smallest to the largest value.
    """
    import math
    from statistics import mean

    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=metrics, horizontal_spacing=0.08,
                        vertical_spacing=min(0.12, 0.5 / rows))
    groups: dict[str, list] = {}
    for r in runs:
        label = ", ".join(f"{o}={r['params'].get(o)}" for o in others) or (f"mean over {replicate}s" if replicate else param)
        groups.setdefault(label, []).append(r)
    xs = [r["params"].get(param) for r in runs]
    numeric = all(_is_number(x) for x in xs)
    for gi, (label, members) in enumerate(groups.items()):
        by_x: dict = {}
        for r in members:
            by_x.setdefault(_key(r["params"].get(param)), (r["params"].get(param), []))[1].append(r)
        points = sorted(by_x.values(), key=lambda p: p[0] if numeric else str(p[0]))
        color = qualitative.Plotly[gi % len(qualitative.Plotly)]
        for mi, m in enumerate(metrics):
            x, y, lo, hi, text = [], [], [], [], []
            for xv, rs in points:
                vals = [r["metrics"].get(m) for r in rs if _is_number(r["metrics"].get(m))]
                if not vals:
                    continue
                x.append(xv if numeric else str(xv))
                y.append(mean(vals))
                lo.append(y[-1] - min(vals))
                hi.append(max(vals) - y[-1])
                text.append(rs[0]["name"] if len(rs) == 1 else f"mean of {len(vals)} {replicate or 'run'}s")
            spread = replicate and any(lo + hi)
            fig.add_trace(go.Scatter(x=x, y=y, text=text, mode="lines+markers", name=label, legendgroup=label,
                                     showlegend=mi == 0, line={"color": color},
                                     error_y={"type": "data", "array": hi, "arrayminus": lo, "visible": True} if spread else None,
                                     hovertemplate=f"%{{text}}<br>{param}=%{{x}}<br>{m}=%{{y:.5g}}<extra></extra>"),
                          row=mi // cols + 1, col=mi % cols + 1)
    fig.update_xaxes(title_text=param, **_numeric_axis(xs))
    legend = " / ".join(others) + (f" (mean over {replicate}s; bars: min–max)" if replicate and others else
                                   "bars: min–max" if replicate else "")
    fig.update_layout(height=max(320, 280 * rows), template="plotly_white",
                      margin={"t": 40, "l": 50, "r": 20, "b": 40}, legend={"title": {"text": legend}})
    return fig


def _curve_figure(runs, name, color_by=()):
    """Each run's curve ``name``; runs that differ only outside ``color_by`` (e.g. seeds) share a colour."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    fig = go.Figure()
    ys, colors = [], {}
    for r in runs:
        c = curves_of(r).get(name)
        if c:
            group = _key([r["params"].get(k) for k in color_by])
            color = colors.setdefault(group, qualitative.Plotly[len(colors) % len(qualitative.Plotly)])
            fig.add_trace(go.Scatter(x=c[0], y=c[1], mode="lines", name=r["name"], line={"color": color}))
            ys += [y for y in c[1] if _is_number(y)]
    if ys and min(ys) > 0 and max(ys) / min(ys) >= 100:
        fig.update_yaxes(type="log")
    fig.update_layout(title=f"{name} (one line per run)", template="plotly_white", height=420,
                      xaxis_title="step", yaxis_title=name)
    return fig


def build_comparison(runs_dir: Path, notebook: str | None = None, out: Path | None = None,
                     title: str | None = None) -> Path:
    """One HTML page comparing runs of one notebook: each metric against each swept parameter, the runs'
    learning curves overlaid (where ``metrics.json`` has ``curves``), and a sortable table of every run.

    plotly.js is inlined once (no CDN): the page works offline.
    """
    from plotly.offline import get_plotlyjs
    runs_dir = Path(runs_dir)
    runs = collect_runs(runs_dir)
    if notebook is None:
        stems = sorted({r["notebook"] for r in runs})
        notebook = stems[0] if len(stems) == 1 else None
        if notebook is None:
            raise ValueError(f"runs of several notebooks under {runs_dir} ({', '.join(stems)}): name one")
    runs = [r for r in runs if r["notebook"] == notebook]
    ok = [r for r in runs if r["status"] == "ok" and r["metrics"]]
    swept, fixed = _varying(ok, "params")
    varying_metrics, constant_metrics = _varying(ok, "metrics")
    title = title or f"{notebook}: {len(runs)} runs compared"
    sweep = _read_json(runs_dir / "sweep.json")
    order = list(sweep.get("grid", {}))  # a sweep's own parameter order first
    swept.sort(key=lambda k: order.index(k) if k in order else len(order))
    parts = []
    if sweep.get("command"):
        parts.append(f"<p>sweep: <code>{html.escape(sweep['command'])}</code></p>")
    fixed_text = ", ".join(f"{k}={ok[0]['params'].get(k)}" for k in fixed) if ok else ""
    parts.append(f"<p>{len(ok)} of {len(runs)} runs finished. Swept: <b>{html.escape(', '.join(swept) or 'nothing')}</b>."
                 f" Fixed: {html.escape(fixed_text)}.</p>")
    if constant_metrics:
        same = ", ".join(f"{m}={_fmt(ok[0]['metrics'].get(m))}" for m in constant_metrics)
        parts.append(f"<p class='note'>the same in every run: {html.escape(same)}</p>")
    figs = []
    plotted = varying_metrics or constant_metrics
    replicate = REPLICATE if REPLICATE in swept and len(swept) > 1 else None
    for p in swept:
        if plotted and p != replicate:
            others = [o for o in swept if o not in (p, replicate)]
            figs.append(f"<h2>metrics vs {html.escape(p)}</h2>" +
                        _fig_html(_metric_vs_param(ok, p, others, plotted, replicate)))
    curve_names = list(dict.fromkeys(n for r in ok for n in curves_of(r)))
    if curve_names:
        figs.append("<h2>learning curves</h2>" + "".join(
            _fig_html(_curve_figure(ok, n, [k for k in swept if k != replicate])) for n in curve_names))
    parts += figs
    metric_cols = varying_metrics + constant_metrics
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["run", "status", "seconds"] + swept + metric_cols)
    rows = []
    for r in runs:
        link = f'<a href="{html.escape(r["page"])}">{html.escape(r["name"])}</a>' if r["page"] else html.escape(r["name"])
        rows.append(f"<tr><td>{link}</td><td class='{html.escape(r['status'])}'>{html.escape(r['status'])}</td>"
                    + _cell(r["seconds"]) + "".join(_cell(r["params"].get(p)) for p in swept)
                    + "".join(_cell(r["metrics"].get(m)) for m in metric_cols) + "</tr>")
    parts.append(f"<h2>all runs</h2><p class='note'>click a column to sort</p><table class='sortable' id='runs'>"
                 f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    page = _page(title, "\n".join(parts), head=f'<script type="text/javascript">{get_plotlyjs()}</script>')
    out = Path(out) if out else runs_dir / f"compare-{notebook}.html"
    out.write_text(page, encoding="utf-8")
    return out
