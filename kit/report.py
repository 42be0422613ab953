"""Self-contained HTML reports: executed notebooks → HTML, and an index over run folders."""
from __future__ import annotations

import html
import json
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


def _headline(metrics: dict, k: int = 4) -> str:
    items = [(n, v) for n, v in metrics.get("metrics", {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return ", ".join(f"{n}={v:.4g}" for n, v in items[:k])


def build_index(runs_dir: Path, title: str = "kit — notebook runs") -> Path:
    """``index.html`` linking each run's HTML, with status, wall time and headline metrics."""
    runs_dir = Path(runs_dir)
    rows = []
    for run_json in sorted(runs_dir.glob("*/run.json")):
        run = json.loads(run_json.read_text())
        folder = run_json.parent
        metrics_path = folder / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
        page = folder / Path(run["notebook"]).with_suffix(".html").name
        link = f'<a href="{html.escape(str(page.relative_to(runs_dir)))}">{html.escape(folder.name)}</a>' if page.exists() else html.escape(folder.name)
        params = ", ".join(f"{k}={v}" for k, v in run.get("parameters", {}).items()) or "defaults"
        rows.append(f"<tr><td>{link}</td><td class='{run['status']}'>{run['status']}</td><td>{run['seconds']:.1f}</td>"
                    f"<td>{html.escape(params)}</td><td>{html.escape(_headline(metrics))}</td></tr>")
    page = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:left}}.ok{{color:green}}.failed{{color:#b00}}</style>
</head><body><h1>{html.escape(title)}</h1>
<table><tr><th>run</th><th>status</th><th>seconds</th><th>parameters</th><th>headline metrics</th></tr>
{''.join(rows)}</table></body></html>"""
    out = runs_dir / "index.html"
    out.write_text(page, encoding="utf-8")
    return out
