"""Functions that exercises pass *as inputs* to a learner's function (a score, its gradient, an f to differentiate).

They are data — a kind and its tensors — so that ``kit grade`` can send them into its sandbox (:mod:`kit.exercises.wire`)
and rebuild them there; they hold no exercise's answer.
"""
from __future__ import annotations

import torch


def _formulas():
    return {
        # lesson 00: f to differentiate
        "cube": lambda p, t: t ** 3,
        "sin": lambda p, t: torch.sin(t),
        "gauss": lambda p, t: torch.exp(-t ** 2),
        "log1p_square": lambda p, t: torch.log1p(t ** 2),
        # lesson 06: gradients of scores (integrated gradients) and scores (occlusion)
        "constant_gradient": lambda p, x: p["w"].clone(),
        "quadratic_gradient": lambda p, x: 2 * p["c"] * x + p["w"],
        "cubic_gradient": lambda p, x: 3 * p["c"] * x ** 2,
        "tanh_gradient": lambda p, x: p["w"] * (1 - torch.tanh(p["w"] @ x.flatten()) ** 2),
        "linear_score": lambda p, x: (p["W"] * x).sum(),
        "tanh_score": lambda p, x: torch.tanh((p["W"] * x).sum()) + x.max(),
    }


_FORMULAS = _formulas()


class InputFunction:
    """A named function with tensor parameters: ``InputFunction("cubic_gradient", c=c)(x)``."""

    def __init__(self, kind: str, label: str = "", **params):
        if kind not in _FORMULAS:
            raise ValueError(f"unknown input function {kind!r}")
        self.kind, self.label, self.params = kind, label or kind, params

    def __call__(self, x):
        return _FORMULAS[self.kind](self.params, x)

    def __repr__(self):
        return self.label
