"""Interactive controls that also leave a static figure behind for headless runs and reports."""
from __future__ import annotations

from typing import Callable

from kit.viz.show import PLOTLY_MIME, bundle, show

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def slider_plot(make_fig: Callable, **controls):
    """Controls (ipywidgets value widgets) above a figure ``make_fig(**values)`` redrawn when they move.

    In JupyterLab the controls and the figure live in one widget (an ``Output`` widget holds the
    figure, so updates from the controls' callbacks render). The same display message also carries the
    initial figure as static HTML, which is what HTML reports show (``kit.lessons.report`` drops the widget
    view there). Returns ``(box, output)``.
    """
    import ipywidgets as w
    from IPython.display import display

    values = {k: c.value for k, c in controls.items()}
    fig = make_fig(**values)
    out = w.Output()
    box = w.VBox([w.HBox(list(controls.values())), out])
    with out:
        show(fig)
    static = {k: v for k, v in bundle(fig).items() if k != PLOTLY_MIME}
    display({**static, **box._repr_mimebundle_()}, raw=True)

    def redraw(change):
        for k, c in controls.items():
            values[k] = c.value
        new = make_fig(**values)
        with out:
            out.clear_output(wait=True)
            show(new)

    for c in controls.values():
        c.observe(redraw, names="value")
    return box, out
