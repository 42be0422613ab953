"""Figures for the language lessons: loss-vs-step curves, gradient norms through time, next-token
distributions, attention maps and position codes (plotly, static: they render in HTML reports)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kit.viz.figures import TEMPLATE


def lm_curves(runs, title: str = "language model", baselines: dict[str, float] | None = None,
              key: str = "val_loss", log_y: bool = False):
    """Loss (nats/token) against training step.

    ``runs``: one :class:`kit.train.History` from ``kit.text.train_lm`` (train and validation curves)
    or ``{name: history}`` (``key`` of each, e.g. several models' validation loss).
    ``baselines``: horizontal reference lines, e.g. ``{"unigram": 3.3}``.
    """
    fig = go.Figure()
    if hasattr(runs, "data") or (isinstance(runs, dict) and "step" in runs):
        data = runs.data if hasattr(runs, "data") else runs
        for k in ("train_loss", "val_loss"):
            if data.get(k):
                fig.add_scatter(x=data["step"], y=data[k], name=k.replace("_", " "), mode="lines+markers")
    else:
        for name, h in runs.items():
            data = h.data if hasattr(h, "data") else h
            fig.add_scatter(x=data["step"], y=data[key], name=name, mode="lines+markers")
    for name, y in (baselines or {}).items():
        fig.add_hline(y=y, line_dash="dot", annotation_text=name, annotation_position="top right")
    fig.update_layout(title=title, template=TEMPLATE, xaxis_title="training step",
                      yaxis_title="cross-entropy (nats / token)", height=380)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def grad_norms_through_time(curves: dict[str, list[float]], title: str = "‖∂L/∂hₜ‖ through time"):
    """One line per recurrent-weight scale: gradient norm at each time step (log scale)."""
    fig = go.Figure()
    for name, ys in curves.items():
        T = len(ys)
        fig.add_scatter(x=list(range(1, T + 1)), y=ys, name=name, mode="lines")
    fig.update_layout(title=title, template=TEMPLATE, xaxis_title="time step t (the loss is at the last step)",
                      yaxis_title="‖∂L/∂hₜ‖", height=400)
    fig.update_yaxes(type="log", exponentformat="power")
    return fig


def _show_char(c: str) -> str:
    return {"\n": "⏎", " ": "␣", "\t": "⇥"}.get(c, c)


def next_token_bars(probs, labels: list[str], title: str = "next-character distribution", top: int = 20):
    """Bar chart of the ``top`` most likely next tokens; ``probs`` (V,) sums to 1."""
    p = np.asarray(probs, dtype=float)
    order = np.argsort(-p, kind="stable")[:top]
    names = [_show_char(labels[i]) for i in order]
    fig = go.Figure(go.Bar(x=names, y=p[order], text=[f"{v:.2f}" for v in p[order]], textposition="outside"))
    fig.update_layout(title=title, template=TEMPLATE, yaxis_title="probability", yaxis_range=[0, 1.05],
                      xaxis_type="category", height=360)
    return fig


def attention_map(weights, tokens: list[str], title: str = "attention", query_tokens: list[str] | None = None):
    """Heatmap of one head's attention weights: row = query token, column = key token it attends to."""
    w = np.asarray(weights, dtype=float)
    q = query_tokens or tokens
    # plotly needs unique category labels: number repeated tokens
    def uniq(ts):
        return [f"{t} ·{i}" for i, t in enumerate(ts)]
    fig = go.Figure(go.Heatmap(z=w, x=uniq(tokens), y=uniq(q), colorscale="Blues", zmin=0, zmax=float(max(w.max(), 1e-9)),
                               colorbar=dict(title="weight"),
                               hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title_text="query (attends from)")
    fig.update_xaxes(title_text="key (attends to)", tickangle=-60)
    side = max(360, 18 * len(tokens) + 160)
    fig.update_layout(title=title, template=TEMPLATE, height=side, width=side + 140)
    return fig


def position_codes(pe, title: str = "sinusoidal position codes"):
    """The (position × dimension) matrix of position codes, and the similarity of positions' codes."""
    pe = np.asarray(pe, dtype=float)
    sim = pe @ pe.T
    fig = make_subplots(rows=1, cols=2, subplot_titles=["PE[position, dimension]", "PE·PEᵀ (position similarity)"])
    fig.add_trace(go.Heatmap(z=pe, colorscale="RdBu", zmid=0, showscale=False), row=1, col=1)
    fig.add_trace(go.Heatmap(z=sim, colorscale="Viridis", showscale=False), row=1, col=2)
    fig.update_xaxes(title_text="dimension", row=1, col=1)
    fig.update_xaxes(title_text="position", row=1, col=2)
    fig.update_yaxes(title_text="position", autorange="reversed")
    fig.update_layout(title=title, template=TEMPLATE, height=380)
    return fig


def text_samples(samples: dict[str, str], title: str = "samples") -> None:
    """Display generated texts side by side (monospace, line breaks kept) — one labelled box each."""
    import html

    from IPython.display import HTML, display
    boxes = "".join(
        f"<div style='flex:1;min-width:260px;margin:4px'><b>{html.escape(k)}</b>"
        f"<pre style='white-space:pre-wrap;font-size:12px;border:1px solid #ddd;padding:6px'>{html.escape(v)}</pre></div>"
        for k, v in samples.items())
    display(HTML(f"<div><b>{html.escape(title)}</b><div style='display:flex;flex-wrap:wrap'>{boxes}</div></div>"))
