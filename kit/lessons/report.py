"""Self-contained HTML reports: executed notebooks → HTML, and an index over run folders."""
from __future__ import annotations

import html
import json
from dataclasses import asdict
from pathlib import Path

TEMPLATES = Path(__file__).parent / "templates"


def notebook_to_html(ipynb: Path) -> Path:
    """Convert an executed notebook to one HTML file with plotly.js inlined (works offline)."""
    import nbformat
    from nbconvert import HTMLExporter
    from plotly.offline import get_plotlyjs
    exporter = HTMLExporter(template_name="kit_report", extra_template_basedirs=[str(TEMPLATES)])
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    nb = nbformat.read(str(ipynb), as_version=4)
    drop_widget_views(nb)
    body, _ = exporter.from_notebook_node(nb, resources={"plotly_js": get_plotlyjs()})
    out = Path(ipynb).with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


def drop_widget_views(nb) -> None:
    """Widgets cannot run in a static page: where an output also carries a static view, keep that one."""
    from kit.viz.widgets import WIDGET_MIME
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_MIME in data and any(k.startswith("text/html") for k in data):
                del data[WIDGET_MIME]


def headline(metrics: dict, k: int = 4) -> str:
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
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style>{head}</head><body><h1>{html.escape(title)}</h1>
{body}
{_SORT_JS}</body></html>"""


def build_index(runs_dir: Path, title: str = "kit — notebook runs", compare: bool = True) -> Path:
    """``index.html`` linking each run's HTML, with status, wall time and headline metrics.

    Runs are found at any depth under ``runs_dir``. With ``compare``, each notebook with two or more
    finished runs also gets a comparison page ``compare-<notebook>.html`` (see :func:`build_comparison`),
    linked from the index.
    """
    runs_dir = Path(runs_dir)
    runs = collect_runs(runs_dir)
    rows = []
    for r in runs:
        link = f'<a href="{html.escape(r["page"])}">{html.escape(r["name"])}</a>' if r["page"] else html.escape(r["name"])
        params = ", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "defaults"
        rows.append(f"<tr><td>{link}</td><td>{html.escape(r['notebook'])}</td>"
                    f"<td class='{html.escape(r['status'])}'>{html.escape(r['status'])}</td>{_cell(r['seconds'])}"
                    f"<td>{html.escape(params)}</td>"
                    f"<td>{html.escape(headline(r['doc']) or r['run'].get('reason') or '')}</td></tr>")
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
    body = (f"<ul>{''.join(links)}</ul>" if links else "") + \
        ("<table class='sortable'><thead><tr><th>run</th><th>notebook</th><th>status</th><th>seconds</th>"
         "<th>parameters</th><th>headline metrics</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
         if rows else f"<p class='note'>no runs (folders with a run.json) under {html.escape(str(runs_dir))}</p>")
    out = runs_dir / "index.html"
    runs_dir.mkdir(parents=True, exist_ok=True)
    out.write_text(_page(title, body), encoding="utf-8")
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
