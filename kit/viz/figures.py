"""Static plotly figures used across lessons."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

TEMPLATE = "plotly_white"


def learning_curves(history, keys: list[str] | None = None, title: str = "training"):
    """Loss curves on the left, other metrics (e.g. accuracy) on the right, per epoch."""
    data = history.data if hasattr(history, "data") else history
    epochs = data.get("epoch", list(range(1, len(next(iter(data.values()), [])) + 1)))
    keys = keys or [k for k in data if k not in ("epoch", "lr", "seconds")]
    losses = [k for k in keys if k.endswith("loss")]
    others = [k for k in keys if not k.endswith("loss")]
    fig = make_subplots(rows=1, cols=2 if others else 1, subplot_titles=["loss"] + (["metrics"] if others else []))
    for k in losses:
        fig.add_scatter(x=epochs, y=data[k], name=k, mode="lines", row=1, col=1)
    for k in others:
        fig.add_scatter(x=epochs, y=data[k], name=k, mode="lines", row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=title, template=TEMPLATE, height=350, margin=dict(t=60, b=40))
    return fig


def compare_curves(curves: dict[str, list[float]], title: str, yaxis: str = "loss", log_y: bool = False,
                   xaxis: str = "epoch"):
    """One line per named curve (e.g. one per optimizer)."""
    fig = go.Figure()
    for name, ys in curves.items():
        fig.add_scatter(x=list(range(1, len(ys) + 1)), y=ys, name=name, mode="lines")
    fig.update_layout(title=title, template=TEMPLATE, xaxis_title=xaxis, yaxis_title=yaxis, height=380)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def tradeoff(points: dict[str, tuple[float, float]], title: str, xaxis: str, yaxis: str, x_percent: bool = False,
             y_percent: bool = False):
    """One labelled marker per named run at ``(x, y)``: e.g. what a fine-tune forgot against what it learned."""
    fig = go.Figure()
    for name, (x, y) in points.items():
        fig.add_scatter(x=[x], y=[y], name=name, mode="markers+text", text=[name], textposition="top center",
                        marker=dict(size=12))
    fig.update_layout(title=title, template=TEMPLATE, xaxis_title=xaxis, yaxis_title=yaxis, height=400,
                      showlegend=False)
    fig.update_xaxes(tickformat=".1%" if x_percent else None)
    fig.update_yaxes(tickformat=".0%" if y_percent else None)
    return fig


def bar(values: dict[str, float], title: str, yaxis: str = ""):
    fig = go.Figure(go.Bar(x=list(values), y=list(values.values()),
                           text=[f"{v:.3g}" for v in values.values()], textposition="auto"))
    fig.update_layout(title=title, template=TEMPLATE, yaxis_title=yaxis, height=350)
    return fig


def scatter_fit(x, y, x_line, y_line, title: str, xaxis: str, yaxis: str):
    fig = go.Figure()
    fig.add_scatter(x=x, y=y, mode="markers", name="data", marker=dict(size=4, opacity=0.5))
    fig.add_scatter(x=x_line, y=y_line, mode="lines", name="fit")
    fig.update_layout(title=title, template=TEMPLATE, xaxis_title=xaxis, yaxis_title=yaxis, height=380)
    return fig


def loss_surface(w0, w1, Z, path=None, title: str = "loss surface", labels=("w0", "w1")):
    """Contour of a 2-D loss surface ``Z[i, j] = L(w0[j], w1[i])`` with an optional optimisation path."""
    fig = go.Figure(go.Contour(x=w0, y=w1, z=Z, contours_coloring="heatmap", ncontours=30,
                               colorbar=dict(title="loss"), line_smoothing=0.8))
    if path is not None:
        path = np.asarray(path)
        fig.add_scatter(x=path[:, 0], y=path[:, 1], mode="lines+markers", name="gradient descent",
                        marker=dict(size=4, color="white"), line=dict(color="white"))
    fig.update_layout(title=title, template=TEMPLATE, xaxis_title=labels[0], yaxis_title=labels[1], height=450)
    return fig


def heatmap(z, x=None, y=None, title: str = "", text_auto: bool = True, colorscale="Blues"):
    import plotly.express as px
    fig = px.imshow(z, x=x, y=y, text_auto=text_auto, color_continuous_scale=colorscale, aspect="auto")
    fig.update_layout(title=title, template=TEMPLATE, height=420)
    return fig
