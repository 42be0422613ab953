"""Figures of lesson 17 (generative models): curves against a shared x axis, and a class × sample grid."""
from __future__ import annotations

import plotly.graph_objects as go

from kit.viz.figures import TEMPLATE


def lines(x, curves: dict, title: str, xaxis: str = "step", yaxis: str = "", log_x: bool = False, markers: bool = False):
    """One line per named curve, all against ``x``."""
    fig = go.Figure()
    for name, ys in curves.items():
        fig.add_scatter(x=list(x), y=list(ys), name=name, mode="lines+markers" if markers else "lines")
    fig.update_layout(title=title, template=TEMPLATE, xaxis_title=xaxis, yaxis_title=yaxis, height=380)
    if log_x:
        fig.update_xaxes(type="log")
    return fig


__all__ = ["lines"]
