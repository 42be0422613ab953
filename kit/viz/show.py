"""Show plotly figures so they render live in JupyterLab *and* in nbconvert HTML reports.

Each figure is displayed as a bundle: the plotly mimetype (JupyterLab's renderer) plus ``text/html``
without plotly.js (the report template inlines plotly.js once per page; see ``kit.lessons.report``).
"""
from __future__ import annotations

import time
from typing import Callable

PLOTLY_MIME = "application/vnd.plotly.v1+json"


def bundle(fig) -> dict:
    """The display bundle for one figure."""
    html = fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})
    title = fig.layout.title.text if fig.layout.title and fig.layout.title.text else "figure"
    return {PLOTLY_MIME: fig.to_plotly_json(), "text/html": html, "text/plain": f"<plotly figure: {title}>"}


def show(fig) -> None:
    """Display ``fig`` (returns nothing, so a trailing ``viz.show(fig)`` prints no handle)."""
    from IPython.display import display
    display(bundle(fig), raw=True)


def in_notebook() -> bool:
    try:
        from IPython import get_ipython
        shell = get_ipython()
        return shell is not None and hasattr(shell, "kernel")
    except ImportError:  # pragma: no cover
        return False


class LiveFigure:
    """A figure re-drawn from ``make_fig()`` into one output, at most every ``every_s`` seconds.

    Works live in JupyterLab (display updates) and leaves the last static figure in the output,
    so a headless papermill run and its HTML report show the final curves.
    """

    def __init__(self, make_fig: Callable, every_s: float = 1.0):
        self.make_fig, self.every_s = make_fig, every_s
        self.handle, self.last = None, time.monotonic()  # first drawn after every_s (or when forced)

    def update(self, force: bool = False) -> None:
        if not in_notebook():
            return
        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return
        fig = self.make_fig()
        if self.handle is None:
            from IPython.display import display
            self.handle = display(bundle(fig), raw=True, display_id=True)
        else:
            self.handle.update(bundle(fig), raw=True)
        self.last = now


def source(*fns) -> None:
    """Show the source of kit functions in the notebook (the code a lesson is about)."""
    import inspect
    from IPython.display import Markdown, display
    display(Markdown("\n\n".join(f"```python\n{inspect.getsource(f).rstrip()}\n```" for f in fns)))
