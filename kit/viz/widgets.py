"""Interactive controls that also leave a static figure behind for headless runs and reports."""
from __future__ import annotations

from typing import Callable

from kit.viz.show import bundle, in_notebook, show


def slider_plot(make_fig: Callable, **sliders):
    """Sliders (ipywidgets) above a figure ``make_fig(**values)`` that is redrawn when they move.

    The figure is rendered once with the sliders' initial values into a normal display output,
    so it shows in reports; in JupyterLab moving a slider updates that output in place.
    Returns ``(box, handle)``.
    """
    import ipywidgets as w
    from IPython.display import display

    values = {k: s.value for k, s in sliders.items()}
    box = w.HBox(list(sliders.values()))
    if in_notebook():
        display(box)
    handle = show(make_fig(**values))

    def on_change(change):
        for k, s in sliders.items():
            values[k] = s.value
        handle.update(bundle(make_fig(**values)), raw=True)

    for s in sliders.values():
        s.observe(on_change, names="value")
    return box, handle
