"""Figures for model evaluation: ROC and PR curves with an operating point, confusion matrices."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kit.viz.figures import TEMPLATE


def operating_point(y_true, scores, threshold: float) -> dict:
    """Confusion counts, precision, recall, F1 and FPR of ``scores >= threshold``."""
    from kit.metrics import binary_at_threshold
    return binary_at_threshold(y_true, scores, threshold)


def roc_pr(y_true, scores, threshold: float | None = None, title: str = "ROC and precision–recall"):
    """ROC (left) and PR (right) curves with AUCs; a marker shows the operating point at ``threshold``."""
    from kit.metrics import pr, roc
    r, p = roc(y_true, scores), pr(y_true, scores)
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"ROC (AUC = {r['auc']:.3f})",
                                                        f"precision–recall (AP = {p['average_precision']:.3f})"])
    fig.add_scatter(x=r["fpr"], y=r["tpr"], mode="lines", name="ROC", row=1, col=1)
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="gray"), name="chance", row=1, col=1)
    fig.add_scatter(x=p["recall"], y=p["precision"], mode="lines", name="PR", row=1, col=2)
    if threshold is not None:
        op = operating_point(y_true, scores, threshold)
        fig.add_scatter(x=[op["fpr"]], y=[op["recall"]], mode="markers", marker=dict(size=12, color="red"),
                        name=f"threshold {threshold:.2f}", row=1, col=1)
        fig.add_scatter(x=[op["recall"]], y=[op["precision"]], mode="markers", marker=dict(size=12, color="red"),
                        showlegend=False, row=1, col=2)
        title = (f"threshold {threshold:.2f}: precision {op['precision']:.3f}, recall {op['recall']:.3f}, "
                 f"F1 {op['f1']:.3f}")
    fig.update_xaxes(title_text="false positive rate", row=1, col=1)
    fig.update_yaxes(title_text="true positive rate (recall)", row=1, col=1)
    fig.update_xaxes(title_text="recall", row=1, col=2)
    fig.update_yaxes(title_text="precision", row=1, col=2)
    fig.update_layout(title=title, template=TEMPLATE, height=420)
    return fig


def confusion_matrix(cm, labels, title: str = "confusion matrix (rows: true, columns: predicted)"):
    import plotly.express as px
    labels = [str(x) for x in labels]
    fig = px.imshow(np.asarray(cm), x=labels, y=labels, text_auto=True, color_continuous_scale="Blues",
                    labels=dict(x="predicted", y="true", color="count"))
    fig.update_layout(title=title, template=TEMPLATE, height=480)
    return fig


def per_class(report: dict, title: str = "per-class precision, recall and F1"):
    """Grouped bars from ``kit.metrics.per_class_report``."""
    fig = go.Figure()
    for k in ("precision", "recall", "f1"):
        fig.add_bar(x=report["labels"], y=report[k], name=k)
    fig.update_layout(title=title, template=TEMPLATE, barmode="group", height=380, yaxis_range=[0, 1.05])
    return fig


def fold_scores(results: dict[str, np.ndarray], title: str = "cross-validation scores per fold", yaxis="score"):
    fig = go.Figure()
    for name, scores in results.items():
        fig.add_scatter(x=list(range(1, len(scores) + 1)), y=scores, mode="lines+markers",
                        name=f"{name}: {np.mean(scores):.3f} ± {np.std(scores):.3f}")
    fig.update_layout(title=title, template=TEMPLATE, xaxis_title="fold", yaxis_title=yaxis, height=380)
    return fig
