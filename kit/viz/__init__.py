"""Figures (plotly, static: they render in HTML reports) and live/interactive displays."""
from kit.viz.figures import bar, compare_curves, heatmap, learning_curves, loss_surface, scatter_fit, tradeoff
from kit.viz.show import LiveFigure, bundle, in_notebook, show, source
from kit.viz.widgets import slider_plot

__all__ = ["LiveFigure", "bar", "bundle", "compare_curves", "heatmap", "in_notebook", "learning_curves",
           "loss_surface", "scatter_fit", "show", "slider_plot", "source", "tradeoff"]
