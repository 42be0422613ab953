"""Lesson 15's figures: what a bigger BPE vocabulary buys — shorter sequences, and the loss per byte."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kit.viz.figures import TEMPLATE

__all__ = ["vocab_tradeoff", "bpb_vs_seconds"]


def vocab_tradeoff(rows: list[dict], title: str = "vocabulary size: sequence length and loss per byte"):
    """Two panels against the vocabulary size: tokens per byte, and validation bits per byte.

    ``rows``: one dict per vocabulary with ``vocab``, ``tokens_per_byte`` and ``bits_per_byte``."""
    v = [r["vocab"] for r in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("tokens per byte (validation text)",
                                                        "validation loss: bits per byte"))
    fig.add_scatter(x=v, y=[r["tokens_per_byte"] for r in rows], mode="lines+markers+text", name="tokens / byte",
                    text=[f"{r['tokens_per_byte']:.3f}" for r in rows], textposition="top center", row=1, col=1)
    fig.add_scatter(x=v, y=[r["bits_per_byte"] for r in rows], mode="lines+markers+text", name="bits / byte",
                    text=[f"{r['bits_per_byte']:.3f}" for r in rows], textposition="top center", row=1, col=2)
    fig.update_xaxes(type="log", title_text="vocabulary size", tickvals=v)
    fig.update_layout(title=title, template=TEMPLATE, height=380, showlegend=False)
    return fig


def bpb_vs_seconds(curves: dict[str, dict], title: str = "validation bits per byte against training time"):
    """One line per vocabulary: ``{label: {"seconds": [...], "bits_per_byte": [...]}}``."""
    fig = go.Figure()
    for name, d in curves.items():
        fig.add_scatter(x=d["seconds"], y=d["bits_per_byte"], name=name, mode="lines+markers")
    fig.update_layout(title=title, template=TEMPLATE, xaxis_title="training seconds (evaluation not counted)",
                      yaxis_title="bits per byte", height=380)
    return fig
