"""Figures of lesson 18: a load test (throughput and latency percentiles against concurrency) and a monitoring
dashboard (load, drift per window, accuracy as delayed labels arrive). Plain data in, plotly figures out."""
from __future__ import annotations

from plotly.subplots import make_subplots

from kit.viz.figures import TEMPLATE

__all__ = ["load_figure", "dashboard"]

_COLORS = {"batching off": "#636efa", "batching on": "#ef553b"}
_DASH = {"p50_ms": "solid", "p95_ms": "dash", "p99_ms": "dot"}


def _add_load(fig, sweeps: dict[str, list[dict]], row_tp, col_tp, row_lat, col_lat):
    for mode, rows in sweeps.items():
        c = [r["concurrency"] for r in rows]
        color = _COLORS.get(mode)
        fig.add_scatter(x=c, y=[r["rps"] for r in rows], mode="lines+markers", name=f"{mode}: requests/s",
                        line=dict(color=color), row=row_tp, col=col_tp)
        for key, dash in _DASH.items():
            fig.add_scatter(x=c, y=[r[key] for r in rows], mode="lines+markers", name=f"{mode}: {key[:3]}",
                            line=dict(color=color, dash=dash), row=row_lat, col=col_lat)
    fig.update_xaxes(type="log", title_text="concurrent clients", row=row_tp, col=col_tp)
    fig.update_xaxes(type="log", title_text="concurrent clients", row=row_lat, col=col_lat)
    fig.update_yaxes(title_text="requests / s", row=row_tp, col=col_tp)
    fig.update_yaxes(type="log", title_text="latency (ms)", row=row_lat, col=col_lat)


def load_figure(sweeps: dict[str, list[dict]], title: str = "load test"):
    """``sweeps``: {mode: [{concurrency, rps, p50_ms, p95_ms, p99_ms}, …]} → throughput and latency panels."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["throughput", "latency percentiles"])
    _add_load(fig, sweeps, 1, 1, 1, 2)
    fig.update_layout(title=title, template=TEMPLATE, height=400)
    return fig


def dashboard(sweeps: dict[str, list[dict]], windows: list[dict], timeline: list[dict], psi_threshold: float,
              label_delay: int, title: str = "serving dashboard"):
    """Four panels: throughput, latency, the largest PSI of every monitored window (alerts marked) and, over a
    timeline of windows, the largest PSI next to the accuracy known once each window's labels arrived.

    ``windows``: [{name, psi_max, alert}]; ``timeline``: [{window, psi_max, alert, accuracy}].
    """
    fig = make_subplots(rows=2, cols=2, specs=[[{}, {}], [{}, {"secondary_y": True}]],
                        subplot_titles=["throughput", "latency percentiles", "drift per window (largest PSI)",
                                        f"timeline: drift now, accuracy {label_delay} windows later"])
    _add_load(fig, sweeps, 1, 1, 1, 2)
    names = [w["name"] for w in windows]
    fig.add_bar(x=names, y=[w["psi_max"] for w in windows], name="largest PSI",
                marker_color=["#ef553b" if w["alert"] else "#00cc96" for w in windows], row=2, col=1)
    fig.add_hline(y=psi_threshold, line_dash="dash", line_color="gray", row=2, col=1)
    fig.update_yaxes(type="log", title_text="PSI (red: alert)", row=2, col=1)
    t = [w["window"] for w in timeline]
    fig.add_scatter(x=t, y=[w["psi_max"] for w in timeline], mode="lines+markers", name="largest PSI (live)",
                    line=dict(color="#ab63fa"), row=2, col=2)
    alerts = [w for w in timeline if w["alert"]]
    fig.add_scatter(x=[w["window"] for w in alerts], y=[w["psi_max"] for w in alerts], mode="markers",
                    marker=dict(symbol="x", size=11, color="#ef553b"), name="alert", row=2, col=2)
    # accuracy of window k is known at window k + label_delay, when its labels arrive
    known = [(w["window"] + label_delay, w["accuracy"]) for w in timeline]
    fig.add_scatter(x=[k for k, _ in known], y=[a for _, a in known], mode="lines+markers",
                    name="accuracy (when labels arrive)", line=dict(color="#19d3f3"), row=2, col=2, secondary_y=True)
    fig.update_yaxes(type="log", title_text="PSI", row=2, col=2)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=2, col=2, secondary_y=True)
    fig.update_xaxes(title_text="window (time)", row=2, col=2)
    fig.update_layout(title=title, template=TEMPLATE, height=760, legend=dict(font=dict(size=10)))
    return fig
