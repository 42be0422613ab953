"""Figures for image models (plotly, static): image grids, filters, feature maps, attribution overlays,
predicted probabilities. Images are arrays/tensors ``(H, W)`` or ``(1, H, W)``; row 0 is drawn at the top."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kit.viz.figures import TEMPLATE

GREY = "gray_r"  # ink dark on white paper, like the digits were written
HEAT = [[0.0, "rgba(255,255,255,0)"], [0.15, "rgba(255,210,0,0.35)"], [0.5, "rgba(255,120,0,0.75)"],
        [1.0, "rgba(190,0,0,0.95)"]]  # transparent where irrelevant, through yellow to red
PHOTO = [[0.0, "rgb(255,255,255)"], [1.0, "rgb(110,110,110)"]]  # the digit in light grey under a heat map


def _np2d(img) -> np.ndarray:
    if hasattr(img, "detach"):
        img = img.detach().cpu().numpy()
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 3 and img.shape[0] == 1:
        img = img[0]
    if img.ndim == 1:  # flat square image
        side = int(round(img.size ** 0.5))
        img = img.reshape(side, side)
    if img.ndim != 2:
        raise ValueError(f"expected one grey image (H, W), got shape {img.shape}")
    return img


def _u8(img, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """``[lo, hi]`` → 0…255 bytes: a picture needs no more, and plotly stores one byte per pixel
    (float32 would take four), which keeps notebooks and reports small."""
    a = _np2d(img)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip(np.rint((a - lo) * scale), 0, 255).astype(np.uint8)


# one shared colour axis per palette: each trace refers to it instead of repeating the colour scale
_PALETTES = {"ink": ("coloraxis", GREY), "photo": ("coloraxis2", PHOTO), "heat": ("coloraxis3", HEAT),
             "act": ("coloraxis4", "Viridis")}


def _palettes(fig, *names) -> None:
    for name in names:
        axis, scale = _PALETTES[name]
        fig.update_layout({axis: dict(colorscale=scale, cmin=0, cmax=255, showscale=False)})


def _image_axes(fig, rows: int, cols: int) -> None:
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed")
    for i in range(1, rows * cols + 1):  # square pixels in every panel
        suffix = "" if i == 1 else str(i)
        fig.update_layout({f"yaxis{suffix}": dict(scaleanchor=f"x{suffix}", scaleratio=1)})


def image_grid(images, titles=None, cols: int = 8, title: str = "", colorscale=GREY, zmin=None, zmax=None,
               zmid=None, panel_px: int = 90, showscale: bool = False, quantize: bool = True):
    """A grid of grey images (``(N, H, W)`` or a list), one panel each, with optional titles.

    ``quantize``: store ``[zmin, zmax]`` (default: the images' range) as bytes 0…255 (hover shows those)."""
    imgs = [_np2d(im) for im in images]
    if quantize and zmid is None:
        lo = float(min(im.min() for im in imgs)) if zmin is None else zmin
        hi = float(max(im.max() for im in imgs)) if zmax is None else zmax
        imgs, zmin, zmax = [_u8(im, lo, hi) for im in imgs], 0, 255
    n = len(imgs)
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[str(t) for t in titles] if titles is not None else None,
                        horizontal_spacing=0.02, vertical_spacing=0.08 if titles is not None else 0.02)
    for i, im in enumerate(imgs):
        fig.add_trace(go.Heatmap(z=im, coloraxis="coloraxis", hovertemplate="x=%{x} y=%{y} value=%{z}<extra></extra>"),
                      row=i // cols + 1, col=i % cols + 1)
    if zmid is not None and zmin is None:
        lim = float(max(np.abs(im - zmid).max() for im in imgs))
        zmin, zmax = zmid - lim, zmid + lim
    fig.update_layout(coloraxis=dict(colorscale=colorscale, cmin=zmin, cmax=zmax, showscale=showscale))
    _image_axes(fig, rows, cols)
    fig.update_annotations(font_size=11)
    fig.update_layout(title=title, template=TEMPLATE, height=60 + rows * panel_px * (1.25 if titles is not None else 1),
                      width=max(320, 40 + cols * panel_px), margin=dict(t=60, b=10, l=10, r=10))
    return fig


def filters(weight, title: str = "first-layer filters", cols: int = 8):
    """Convolution kernels ``(out, in, k, k)`` of the first layer (input channel 0), red/blue around 0:
    red = the filter responds to ink there, blue = to paper."""
    w = weight.detach().cpu().numpy() if hasattr(weight, "detach") else np.asarray(weight)
    lim = float(np.abs(w).max()) or 1.0
    return image_grid(w[:, 0], titles=[f"#{i}" for i in range(len(w))], cols=cols, title=title, colorscale="RdBu_r",
                      zmin=-lim, zmax=lim, panel_px=70, quantize=False)


def feature_maps(maps, image=None, n: int = 8, title: str = "feature maps (first channels of each conv layer)",
                 names=None):
    """One row per layer: the input image (if given) then the first ``n`` channels of each layer's output
    for one image; ``maps`` is a list of ``(C, h, w)`` tensors."""
    rows = len(maps)
    cols = n + (image is not None)
    names = names or [f"conv {i + 1}" for i in range(rows)]
    titles = []
    for r, m in enumerate(maps):
        row = ([f"{names[r]}: input"] if image is not None else [])
        row += [f"{names[r]} ch {c}" if c == 0 else f"ch {c}" for c in range(min(n, len(m)))]
        titles += row + [""] * (cols - len(row))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.01, vertical_spacing=0.06)
    for r, m in enumerate(maps):
        c0 = 1
        if image is not None:
            fig.add_trace(go.Heatmap(z=_u8(image), coloraxis="coloraxis"), row=r + 1, col=1)
            c0 = 2
        for c in range(min(n, len(m))):
            a = _np2d(m[c])  # each map on its own scale: 0 = its minimum, 255 = its maximum
            fig.add_trace(go.Heatmap(z=_u8(a, float(a.min()), float(a.max())), coloraxis="coloraxis4",
                                     hovertemplate="relative activation %{z}/255<extra></extra>"),
                          row=r + 1, col=c0 + c)
    _image_axes(fig, rows, cols)
    _palettes(fig, "ink", "act")
    fig.update_annotations(font_size=10)
    fig.update_layout(title=title, template=TEMPLATE, height=80 + rows * 120, margin=dict(t=70, b=10, l=10, r=10))
    return fig


def overlay_traces(image, heat, opacity: float = 1.0):
    """Two heatmaps: the image (light grey ink) and, on top, the attribution map scaled to its own
    maximum (transparent → yellow → red). They use the colour axes ``coloraxis2``/``coloraxis3`` (set by :func:`overlay` and
    :func:`explanation_grid`)."""
    h = _np2d(heat)
    return [go.Heatmap(z=_u8(image), coloraxis="coloraxis2", hoverinfo="skip"),
            go.Heatmap(z=_u8(h, 0.0, float(h.max()) or 1.0), coloraxis="coloraxis3", opacity=opacity,
                       hovertemplate="x=%{x} y=%{y} relevance %{z}/255<extra></extra>")]


def overlay(image, heat, title: str = "", opacity: float = 1.0):
    """One image with its attribution map on top (red = most relevant)."""
    fig = go.Figure(overlay_traces(image, heat, opacity))
    _image_axes(fig, 1, 1)
    _palettes(fig, "photo", "heat")
    fig.update_layout(title=dict(text=title, font_size=14), template=TEMPLATE, height=400, width=440,
                      margin=dict(t=70, b=10, l=10, r=10))
    return fig


def explanation_grid(images, maps: dict, row_titles=None, title: str = "what each method points at",
                     opacity: float = 1.0):
    """Rows = images, columns = the input then one overlay per method in ``maps`` (``{name: (N, H, W)}``)."""
    methods = list(maps)
    n, cols = len(images), 1 + len(methods)
    titles = []
    for i in range(n):
        first = row_titles[i] if row_titles is not None else "input"
        titles += [first] + (methods if i == 0 else [""] * len(methods))
    fig = make_subplots(rows=n, cols=cols, subplot_titles=titles, horizontal_spacing=0.01, vertical_spacing=0.04)
    for i in range(n):
        fig.add_trace(go.Heatmap(z=_u8(images[i]), coloraxis="coloraxis"), row=i + 1, col=1)
        for j, m in enumerate(methods):
            for tr in overlay_traces(images[i], maps[m][i], opacity):
                fig.add_trace(tr, row=i + 1, col=j + 2)
    _image_axes(fig, n, cols)
    _palettes(fig, "ink", "photo", "heat")
    fig.update_annotations(font_size=11)
    fig.update_layout(title=title, template=TEMPLATE, height=80 + n * 140, width=80 + cols * 140,
                      margin=dict(t=70, b=10, l=10, r=10))
    return fig


def probabilities(probs, classes=None, true: int | None = None, title: str = "predicted probabilities"):
    """A bar per class; the predicted class is dark, the true class (if different) red."""
    p = probs.detach().cpu().numpy() if hasattr(probs, "detach") else np.asarray(probs)
    classes = [str(c) for c in (classes or range(len(p)))]
    pred = int(np.argmax(p))
    colors = ["#1f3b73" if i == pred else ("#d62728" if true is not None and i == true else "#9ecae1")
              for i in range(len(p))]
    fig = go.Figure(go.Bar(x=classes, y=np.round(p, 3), marker_color=colors, text=[f"{v:.2f}" for v in p],
                           textposition="outside"))
    fig.update_layout(title=title, template=TEMPLATE, yaxis=dict(range=[0, 1.12], title="probability"), height=320)
    return fig


def image_and_probabilities(image, probs, classes=None, true: int | None = None, title: str = ""):
    """The image (left) and the model's probability for each class (right) — for a picker widget."""
    p = probs.detach().cpu().numpy() if hasattr(probs, "detach") else np.asarray(probs)
    classes = [str(c) for c in (classes or range(len(p)))]
    pred = int(np.argmax(p))
    fig = make_subplots(rows=1, cols=2, column_widths=[0.35, 0.65], horizontal_spacing=0.08,
                        subplot_titles=["image", "predicted probabilities"])
    fig.add_trace(go.Heatmap(z=_u8(image), coloraxis="coloraxis"), row=1, col=1)
    _palettes(fig, "ink")
    fig.update_layout(showlegend=False)
    colors = ["#1f3b73" if i == pred else ("#d62728" if true is not None and i == true else "#9ecae1")
              for i in range(len(p))]
    fig.add_trace(go.Bar(x=classes, y=np.round(p, 3), marker_color=colors, text=[f"{v:.2f}" for v in p],
                         textposition="outside", showlegend=False), row=1, col=2)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain", row=1, col=1)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed",
                     scaleanchor="x", scaleratio=1, row=1, col=1)
    fig.update_yaxes(range=[0, 1.15], row=1, col=2)
    fig.update_layout(title=title, template=TEMPLATE, height=340, margin=dict(t=70, b=30, l=10, r=10))
    return fig


__all__ = ["explanation_grid", "feature_maps", "filters", "image_and_probabilities", "image_grid", "overlay",
           "overlay_traces", "probabilities"]
