"""Figures and widgets for the GPT and BERT lessons (09, 10): loss against training seconds, the
next-token distribution after temperature / top-k / top-p, a sampling widget that leaves static text
in reports, and similarity heatmaps."""
from __future__ import annotations

import html
from typing import Callable

import numpy as np
import plotly.graph_objects as go

from kit.viz.figures import TEMPLATE


def loss_vs_seconds(runs, title: str = "validation loss against training time", marks: dict | None = None,
                    bars: dict | None = None, key: str = "val_loss", y_range: tuple | None = None):
    """Loss (nats/token) against seconds of training (evaluation excluded).

    ``runs``: ``{name: history}`` (each with ``seconds`` and ``key``) or one history (train and val).
    ``marks``: vertical lines ``{label: seconds}``; ``bars``: horizontal lines ``{label: loss}``;
    ``y_range``: ``(low, high)`` of the loss axis (e.g. to zoom past the first, untrained point)."""
    fig = go.Figure()
    if hasattr(runs, "data"):
        runs = {"validation": runs}
    for name, h in runs.items():
        d = h.data if hasattr(h, "data") else h
        fig.add_scatter(x=d["seconds"], y=d[key], name=name, mode="lines+markers")
        if len(runs) == 1 and d.get("train_loss"):
            xs = [s for s, v in zip(d["seconds"], d["train_loss"]) if v == v]
            ys = [v for v in d["train_loss"] if v == v]
            fig.add_scatter(x=xs, y=ys, name="training (mean since last point)", mode="lines", line_dash="dot")
    for label, s in (marks or {}).items():
        fig.add_vline(x=s, line_dash="dash", line_color="grey", annotation_text=label)
    positions = ["top right", "bottom right", "top left", "bottom left"]
    for i, (label, y) in enumerate((bars or {}).items()):
        fig.add_hline(y=y, line_dash="dot", line_color="firebrick", annotation_text=label,
                      annotation_position=positions[i % 4])
    fig.update_layout(title=title, template=TEMPLATE, xaxis_title="training seconds (evaluation not counted)",
                      yaxis_title="cross-entropy (nats / token)", height=400)
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    return fig


def _show_char(c: str) -> str:
    return {"\n": "⏎", " ": "␣", "\t": "⇥"}.get(c, c)


def sampling_distribution(logits, labels: list[str], temperature: float, top_k: int | None, top_p: float | None,
                          title: str = "", top: int = 25):
    """Bars: the next-token probabilities after temperature only (grey) and after top-k/top-p filtering
    (blue: the tokens that can still be sampled, renormalised)."""
    import torch

    from kit.text import filter_logits
    z = torch.as_tensor(logits, dtype=torch.float32) / max(temperature, 1e-6)
    p_temp = z.softmax(-1).numpy()
    p_filt = filter_logits(z, top_k or None, top_p if top_p and top_p < 1 else None).softmax(-1).numpy()
    order = np.argsort(-p_temp, kind="stable")[:top]
    names = [_show_char(labels[i]) for i in order]
    kept = int((p_filt > 0).sum())
    fig = go.Figure()
    fig.add_bar(x=names, y=p_temp[order], name=f"temperature {temperature:g}", marker_color="lightgrey")
    fig.add_bar(x=names, y=p_filt[order], name=f"after top-k/top-p: {kept} candidates", marker_color="steelblue")
    fig.update_layout(title=title or "next-token distribution", template=TEMPLATE, barmode="overlay",
                      yaxis_title="probability", yaxis_range=[0, 1.02], xaxis_type="category", height=360,
                      legend=dict(orientation="h", y=1.02, yanchor="bottom"))
    return fig


def _sample_html(text: str, caption: str) -> str:
    return (f"<div><b>{html.escape(caption)}</b><pre style='white-space:pre-wrap;font-size:12px;"
            f"border:1px solid #ddd;padding:6px;max-width:900px'>{html.escape(text)}</pre></div>")


def sampling_widget(make_text: Callable[..., str], **controls):
    """Controls (ipywidgets value widgets) above a generated text ``make_text(**values)``, regenerated
    when they move. Like :func:`kit.viz.slider_plot`, the display message also carries the first text as
    static HTML, so an executed notebook and its HTML report show a sample. Returns ``(box, output)``."""
    import ipywidgets as w
    from IPython.display import HTML, display

    def caption(values):
        return "sample with " + ", ".join(f"{k}={v}" for k, v in values.items())

    values = {k: c.value for k, c in controls.items()}
    first = _sample_html(make_text(**values), caption(values))
    out = w.Output()
    box = w.VBox([w.HBox(list(controls.values())), out])
    with out:
        display(HTML(first))
    display({"text/html": first, "text/plain": "<sampling widget>", **box._repr_mimebundle_()}, raw=True)

    def redraw(change):
        for k, c in controls.items():
            values[k] = c.value
        new = _sample_html(make_text(**values), caption(values))
        with out:
            out.clear_output(wait=True)
            display(HTML(new))

    for c in controls.values():
        c.observe(redraw, names="value")
    return box, out


def similarity_heatmap(sim, labels: list[str], title: str = "cosine similarity of sentence embeddings"):
    """Square heatmap of pairwise cosine similarities with the values written in the cells."""
    s = np.asarray(sim, dtype=float)
    short = [(t if len(t) <= 38 else t[:36] + "…") for t in labels]
    uniq = [f"{i + 1}. {t}" for i, t in enumerate(short)]
    fig = go.Figure(go.Heatmap(z=s, x=[str(i + 1) for i in range(len(labels))], y=uniq, colorscale="Blues",
                               zmin=min(0.0, float(s.min())), zmax=1.0, text=np.round(s, 2),
                               texttemplate="%{text}", colorbar=dict(title="cos")))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=title, template=TEMPLATE, height=120 + 34 * len(labels), xaxis_title="sentence #")
    return fig


def neighbours_table(query: str, hits: list[tuple[str, float, str]], title: str = "") -> None:
    """Display the nearest neighbours of a query: ``hits`` = ``[(text, cosine, label), …]``."""
    from IPython.display import HTML, display
    rows = "".join(f"<tr><td>{i + 1}</td><td>{c:.3f}</td><td>{html.escape(lab)}</td><td>{html.escape(t)}</td></tr>"
                   for i, (t, c, lab) in enumerate(hits))
    display(HTML(f"<div><b>{html.escape(title or 'nearest neighbours of')}</b> <i>{html.escape(query)}</i>"
                 f"<table><tr><th>#</th><th>cosine</th><th>label</th><th>sentence</th></tr>{rows}</table></div>"))
