"""A small static SVG of a lesson's key figure, for the report index (no plotly.js, no image export tool).

The executed notebook keeps every figure's plotly JSON (``kit.viz.show``); :func:`key_figure` picks the
lesson's key figure from it and :func:`svg_thumbnail` draws its lines, markers, bars and heatmaps in a few
kilobytes of SVG: a glance at the curve's shape, not a replacement for the figure on the lesson's page.
"""
from __future__ import annotations

import base64
import html
import math
import re

PLOTLY_MIME = "application/vnd.plotly.v1+json"
PALETTE = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880"]
MAX_POINTS, MAX_CELLS, MAX_HEATMAPS = 160, 32, 16


def figures(nb) -> list[dict]:
    """The plotly figures of an executed notebook, in order, up to the exercises."""
    out = []
    for cell in nb.cells:
        if cell.cell_type == "markdown" and re.match(r"\s*#+\s*Exercises", cell.source):
            break
        for o in cell.get("outputs", []):
            fig = o.get("data", {}).get(PLOTLY_MIME)
            if isinstance(fig, dict) and fig.get("data"):
                out.append(fig)
    return out


def title_of(fig: dict) -> str:
    t = (fig.get("layout") or {}).get("title")
    return (t.get("text") if isinstance(t, dict) else t) or ""


def key_figure(nb, hint: str | None = None) -> dict | None:
    """The figure whose title contains ``hint`` (the last such), else the last figure before the exercises."""
    figs = figures(nb)
    if hint:
        named = [f for f in figs if hint.lower() in title_of(f).lower()]
        figs = named or figs
    return figs[-1] if figs else None


def _array(v):
    """A plotly array: a list, or plotly's typed-array form ``{"dtype", "bdata", "shape"}``."""
    if isinstance(v, dict) and "bdata" in v:
        import numpy as np
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v.get("dtype", "f8")))
        if v.get("shape"):
            a = a.reshape([int(s) for s in str(v["shape"]).split(",")])
        return a.tolist()
    return list(v) if isinstance(v, (list, tuple)) else None


def _num(v) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _stride(n: int, limit: int) -> int:
    return max(1, math.ceil(n / limit))


class _Axis:
    def __init__(self, spec: dict | None):
        spec = spec or {}
        self.log = spec.get("type") == "log"
        self.domain = spec.get("domain") or [0, 1]
        self.fixed = spec.get("range") if isinstance(spec.get("range"), list) else None
        self.cats: dict = {}
        self.lo, self.hi = math.inf, -math.inf

    def value(self, v):
        if isinstance(v, str) and _num(v) is None:
            return float(self.cats.setdefault(v, len(self.cats)))
        f = _num(v)
        if f is None or (self.log and f <= 0):
            return None
        return math.log10(f) if self.log else f

    def see(self, f):
        if f is not None:
            self.lo, self.hi = min(self.lo, f), max(self.hi, f)

    def span(self):
        if self.fixed and all(_num(x) is not None for x in self.fixed):
            lo, hi = float(self.fixed[0]), float(self.fixed[1])
        else:
            lo, hi = self.lo, self.hi
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return 0.0, 1.0
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        return lo, hi


def _color(trace, i):
    for src in (trace.get("line"), trace.get("marker")):
        c = (src or {}).get("color")
        if isinstance(c, str):
            return c
    return PALETTE[i % len(PALETTE)]


def _heat_rgb(t):
    """A number in [0, 1] → a colour from dark blue through teal to yellow (viridis-like)."""
    stops = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
    t = min(max(t, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(t), len(stops) - 2)
    a, b, f = stops[i], stops[i + 1], t - i
    return tuple(round(a[k] + (b[k] - a[k]) * f) for k in range(3))


def _png_uri(pixels) -> str:
    """Rows of (r, g, b) → a ``data:`` URI of an 8-bit RGB PNG (zlib only: a heatmap in ~1 kB, not 500 rects)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    h, w = len(pixels), len(pixels[0])
    raw = b"".join(b"\x00" + bytes(c for p in row for c in p) for row in pixels)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


def svg_thumbnail(fig: dict | None, width: int = 240, height: int = 150) -> str | None:
    """An inline ``<svg>`` of ``fig`` (plotly JSON), or ``None`` when nothing in it can be drawn."""
    if not fig:
        return None
    layout = fig.get("layout") or {}
    traces = [t for t in fig.get("data") or [] if isinstance(t, dict) and t.get("visible", True) not in (False, "legendonly")]
    axes: dict[str, _Axis] = {}

    def axis(ref: str, kind: str) -> _Axis:
        name = kind + "axis" + ref[1:]
        if name not in axes:
            axes[name] = _Axis(layout.get(name))
        return axes[name]

    shapes = []  # (kind, trace, x axis, y axis, payload)
    for i, t in enumerate(traces):
        kind = t.get("type", "scatter")
        xa, ya = axis(t.get("xaxis", "x"), "x"), axis(t.get("yaxis", "y"), "y")
        if kind in ("scatter", "scattergl"):
            ys = _array(t.get("y"))
            if not ys:
                continue
            xs = _array(t.get("x")) or list(range(len(ys)))
            s = _stride(len(ys), MAX_POINTS)
            pts = [(xa.value(x), ya.value(y)) for x, y in list(zip(xs, ys))[::s]]
            for x, y in pts:
                if x is not None and y is not None:
                    xa.see(x), ya.see(y)
            mode = t.get("mode") or ("lines" if len(ys) > 20 else "lines+markers")
            shapes.append(("scatter", i, xa, ya, (pts, mode, _color(t, i))))
        elif kind in ("bar", "histogram"):
            if kind == "histogram":
                import numpy as np
                vals = [v for v in (_array(t.get("x")) or []) if _num(v) is not None]
                if not vals:
                    continue
                counts, edges = np.histogram(vals, bins=min(30, max(5, len(vals) // 10)))
                xs, ys = ((edges[:-1] + edges[1:]) / 2).tolist(), counts.tolist()
            else:
                xs, ys = _array(t.get("x")), _array(t.get("y"))
                if t.get("orientation") == "h":
                    xs, ys = ys, xs  # drawn as vertical bars: a thumbnail keeps the shape, not the axes
                if not ys:
                    continue
                xs = xs or list(range(len(ys)))
            s = _stride(len(ys), MAX_POINTS)
            pts = [(xa.value(x), ya.value(y)) for x, y in list(zip(xs, ys))[::s]]
            for x, y in pts:
                if x is not None and y is not None:
                    xa.see(x - 0.6), xa.see(x + 0.6), ya.see(y), ya.see(0.0 if not ya.log else None)
            shapes.append(("bar", i, xa, ya, (pts, _color(t, i))))
        elif kind in ("heatmap", "contour", "surface", "image"):
            if sum(s[0] == "heat" for s in shapes) >= MAX_HEATMAPS:
                continue
            z = _array(t.get("z"))
            if not z or not isinstance(z[0], list):
                continue
            rows, cols = len(z), len(z[0])
            if kind == "image" or (cols and isinstance(z[0][0], list)):  # RGB(A) pixels: their brightness
                z = [[sum(p[:3]) / 3 if isinstance(p, list) else _num(p) for p in r] for r in z]
            sr, sc = _stride(rows, MAX_CELLS), _stride(cols, MAX_CELLS)
            grid = [[_num(v) for v in r[::sc]] for r in z[::sr]]
            flat = [v for r in grid for v in r if v is not None]
            if not flat:
                continue
            xa.see(0), xa.see(len(grid[0])), ya.see(0), ya.see(len(grid))
            rev = kind == "image" or (layout.get("yaxis" + t.get("yaxis", "y")[1:]) or {}).get("autorange") == "reversed"
            shapes.append(("heat", i, xa, ya, (grid, min(flat), max(flat), rev, kind == "image")))
    if not shapes:
        return None
    pad = 6
    parts = []
    for kind, i, xa, ya, payload in shapes:
        x0 = pad + xa.domain[0] * (width - 2 * pad)
        x1 = pad + xa.domain[1] * (width - 2 * pad)
        y1 = height - pad - ya.domain[0] * (height - 2 * pad)
        y0 = height - pad - ya.domain[1] * (height - 2 * pad)
        (xl, xh), (yl, yh) = xa.span(), ya.span()

        def px(x):
            return x0 + (x - xl) / (xh - xl) * (x1 - x0)

        def py(y):
            return y1 - (min(max(y, yl), yh) - yl) / (yh - yl) * (y1 - y0)

        if kind == "scatter":
            pts, mode, color = payload
            good = [(px(x), py(y)) for x, y in pts if x is not None and y is not None]
            if "lines" in mode and len(good) > 1:
                d = " ".join(f"{x:.1f},{y:.1f}" for x, y in good)
                parts.append(f'<polyline points="{d}" fill="none" stroke="{html.escape(color)}" stroke-width="1.5"/>')
            if "markers" in mode or "lines" not in mode:
                r = 1.6 if len(good) > 40 else 2.5
                parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{html.escape(color)}"/>' for x, y in good)
        elif kind == "bar":
            pts, color = payload
            good = [(x, y) for x, y in pts if x is not None and y is not None]
            if not good:
                continue
            w = max(1.0, (x1 - x0) / max(len(good) * 1.3, 1) / 1.2)
            base = py(max(yl, 0.0) if not ya.log else yl)
            for x, y in good:
                top = py(y)
                parts.append(f'<rect x="{px(x) - w / 2:.1f}" y="{min(top, base):.1f}" width="{w:.1f}" '
                             f'height="{abs(base - top):.1f}" fill="{html.escape(color)}"/>')
        else:
            grid, lo, hi, rev, gray = payload
            pixels = []
            for row in (grid if rev else grid[::-1]):
                line = []
                for v in row:
                    t = 0.0 if v is None else ((v - lo) / (hi - lo) if hi > lo else 0.5)
                    line.append((round(255 * t),) * 3 if gray else _heat_rgb(t))
                pixels.append(line)
            parts.append(f'<image x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" '
                         f'preserveAspectRatio="none" style="image-rendering:pixelated" href="{_png_uri(pixels)}"/>')
    frame = "".join(
        f'<rect x="{pad + a.domain[0] * (width - 2 * pad):.1f}" y="{height - pad - b.domain[1] * (height - 2 * pad):.1f}" '
        f'width="{(a.domain[1] - a.domain[0]) * (width - 2 * pad):.1f}" height="{(b.domain[1] - b.domain[0]) * (height - 2 * pad):.1f}" '
        f'fill="#fafafa" stroke="#ddd"/>'
        for a, b in {(s[2], s[3]) for s in shapes})
    label = html.escape(re.sub(r"<[^>]+>", " ", title_of(fig)).strip() or "figure")
    return (f'<svg class="thumb" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{label}" xmlns="http://www.w3.org/2000/svg"><title>{label}</title>{frame}{"".join(parts)}</svg>')
