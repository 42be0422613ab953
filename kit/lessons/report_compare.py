"""The comparison page of one notebook's runs (a sweep): each metric against each swept parameter, the runs'
learning curves overlaid, and a sortable table of every run. plotly.js is inlined once: the page works offline."""
from __future__ import annotations

import json
from pathlib import Path

from kit.lessons.htmlpage import Markup, esc, fmt, is_number, link, page, table, td, tr
from kit.lessons.runfolder import RunFolder, collect

REPLICATE = "seed"  # swept alongside other parameters, seeds are replicates: averaged, spread shown


def _key(v):
    return json.dumps(v, sort_keys=True, default=str)


def _varying(runs: list[RunFolder], field: str) -> tuple[list[str], list[str]]:
    """Keys of each run's ``field`` (``"params"``, or ``"metrics"``: numeric scalars only) that vary across runs,
    and those that don't."""
    names: list[str] = []
    for r in runs:
        for k, v in getattr(r, field).items():
            if k not in names and (field == "params" or is_number(v)):
                names.append(k)
    vary = [k for k in names if len({_key(getattr(r, field).get(k)) for r in runs}) > 1]
    return vary, [k for k in names if k not in vary]


def curves_of(run: RunFolder) -> dict:
    """Learning curves a notebook saved: a ``curves`` dict (name → list of numbers, or ``{"x": …, "y": …}``)
    in ``metrics``, ``timing`` or at the top of ``metrics.json``."""
    out = {}
    for src in (run.metrics, run.timing, run.results.doc):
        c = src.get("curves")
        if isinstance(c, dict):
            for name, v in c.items():
                if isinstance(v, dict) and isinstance(v.get("y"), list):
                    out.setdefault(name, (v.get("x") or list(range(len(v["y"]))), v["y"]))
                elif isinstance(v, list) and all(is_number(x) for x in v):
                    out.setdefault(name, (list(range(len(v))), v))
    return out


def _numeric_axis(values) -> dict:
    if values and all(is_number(v) for v in values):
        pos = [v for v in values if v > 0]
        if len(pos) == len(values) and max(pos) / min(pos) >= 20:
            return {"type": "log"}
        return {}
    return {"type": "category"}


def _fig_html(fig) -> Markup:
    return Markup(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))


def _metric_vs_param(runs: list[RunFolder], param, others, metrics, replicate: str | None = None):
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
        label = ", ".join(f"{o}={r.params.get(o)}" for o in others) or (f"mean over {replicate}s" if replicate else param)
        groups.setdefault(label, []).append(r)
    xs = [r.params.get(param) for r in runs]
    numeric = all(is_number(x) for x in xs)
    for gi, (label, members) in enumerate(groups.items()):
        by_x: dict = {}
        for r in members:
            by_x.setdefault(_key(r.params.get(param)), (r.params.get(param), []))[1].append(r)
        points = sorted(by_x.values(), key=lambda p: p[0] if numeric else str(p[0]))
        color = qualitative.Plotly[gi % len(qualitative.Plotly)]
        for mi, m in enumerate(metrics):
            x, y, lo, hi, text = [], [], [], [], []
            for xv, rs in points:
                vals = [r.metrics.get(m) for r in rs if is_number(r.metrics.get(m))]
                if not vals:
                    continue
                x.append(xv if numeric else str(xv))
                y.append(mean(vals))
                lo.append(y[-1] - min(vals))
                hi.append(max(vals) - y[-1])
                text.append(rs[0].name if len(rs) == 1 else f"mean of {len(vals)} {replicate or 'run'}s")
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


def _curve_figure(runs: list[RunFolder], name, color_by=()):
    """Each run's curve ``name``; runs that differ only outside ``color_by`` (e.g. seeds) share a colour."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    fig = go.Figure()
    ys, colors = [], {}
    for r in runs:
        c = curves_of(r).get(name)
        if c:
            group = _key([r.params.get(k) for k in color_by])
            color = colors.setdefault(group, qualitative.Plotly[len(colors) % len(qualitative.Plotly)])
            fig.add_trace(go.Scatter(x=c[0], y=c[1], mode="lines", name=r.name, line={"color": color}))
            ys += [y for y in c[1] if is_number(y)]
    if ys and min(ys) > 0 and max(ys) / min(ys) >= 100:
        fig.update_yaxes(type="log")
    fig.update_layout(title=f"{name} (one line per run)", template="plotly_white", height=420,
                      xaxis_title="step", yaxis_title=name)
    return fig


def _sweep_grid(runs_dir: Path) -> dict:
    """``sweep.json`` of a sweep's folder (its command and grid), ``{}`` where there is none or it is unreadable."""
    try:
        doc = json.loads((runs_dir / "sweep.json").read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def build_comparison(runs_dir: Path, notebook: str | None = None, out: Path | None = None,
                     title: str | None = None, runs: list[RunFolder] | None = None) -> Path:
    """One HTML page comparing runs of one notebook: each metric against each swept parameter, the runs'
    learning curves overlaid (where ``metrics.json`` has ``curves``), and a sortable table of every run.

    ``runs``: the run folders under ``runs_dir`` where already read (:func:`kit.lessons.runfolder.collect`).
    """
    from plotly.offline import get_plotlyjs
    runs_dir = Path(runs_dir)
    runs = collect(runs_dir) if runs is None else runs
    if notebook is None:
        stems = sorted({r.stem for r in runs})
        notebook = stems[0] if len(stems) == 1 else None
        if notebook is None:
            raise ValueError(f"runs of several notebooks under {runs_dir} ({', '.join(stems)}): name one")
    runs = [r for r in runs if r.stem == notebook]
    ok = [r for r in runs if r.ok and r.metrics]
    swept, fixed = _varying(ok, "params")
    varying_metrics, constant_metrics = _varying(ok, "metrics")
    title = title or f"{notebook}: {len(runs)} runs compared"
    sweep = _sweep_grid(runs_dir)
    order = list(sweep.get("grid") or {})  # a sweep's own parameter order first
    swept.sort(key=lambda k: order.index(k) if k in order else len(order))
    parts = []
    if sweep.get("command"):
        parts.append(f"<p>sweep: <code>{esc(sweep['command'])}</code></p>")
    fixed_text = ", ".join(f"{k}={ok[0].params.get(k)}" for k in fixed) if ok else ""
    parts.append(f"<p>{len(ok)} of {len(runs)} runs finished. Swept: <b>{esc(', '.join(swept) or 'nothing')}</b>."
                 f" Fixed: {esc(fixed_text)}.</p>")
    if constant_metrics:
        same = ", ".join(f"{m}={fmt(ok[0].metrics.get(m))}" for m in constant_metrics)
        parts.append(f"<p class='note'>the same in every run: {esc(same)}</p>")
    plotted = varying_metrics or constant_metrics
    replicate = REPLICATE if REPLICATE in swept and len(swept) > 1 else None
    for p in swept:
        if plotted and p != replicate:
            others = [o for o in swept if o not in (p, replicate)]
            parts.append(f"<h2>metrics vs {esc(p)}</h2>" + _fig_html(_metric_vs_param(ok, p, others, plotted, replicate)))
    curve_names = list(dict.fromkeys(n for r in ok for n in curves_of(r)))
    if curve_names:
        parts.append("<h2>learning curves</h2>" + "".join(
            _fig_html(_curve_figure(ok, n, [k for k in swept if k != replicate])) for n in curve_names))
    metric_cols = varying_metrics + constant_metrics
    rows = [tr(td(link(r.href(runs_dir), r.name)), td(r.status, cls=r.status), r.seconds,
               *(r.params.get(p) for p in swept), *(r.metrics.get(m) for m in metric_cols)) for r in runs]
    parts.append("<h2>all runs</h2><p class='note'>click a column to sort</p>"
                 + table(["run", "status", "seconds", *swept, *metric_cols], rows, id="runs"))
    html = page(title, Markup("\n".join(parts)), head=Markup(f'<script type="text/javascript">{get_plotlyjs()}</script>'))
    out = Path(out) if out else runs_dir / f"compare-{notebook}.html"
    out.write_text(html, encoding="utf-8")
    return out


__all__ = ["REPLICATE", "build_comparison", "curves_of"]
