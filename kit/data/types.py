"""Small containers for loaded data, and a seeded stratified split."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Tabular:
    """Features ``X`` (n × d float32) and targets ``y``; ``source`` says where they came from."""
    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    target_name: str
    source: str
    description: str = ""
    classes: list[str] = field(default_factory=list)

    def __len__(self):
        return len(self.X)


@dataclass
class Text:
    text: str
    source: str
    description: str = ""


def split(n: int, fractions=(0.7, 0.15, 0.15), seed: int = 0, stratify: np.ndarray | None = None):
    """Index arrays for train/val/test; stratified by ``stratify`` labels when given."""
    from sklearn.model_selection import train_test_split
    if abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    idx = np.arange(n)
    test = fractions[2]
    rest, te = train_test_split(idx, test_size=test, random_state=seed,
                                stratify=None if stratify is None else stratify)
    val = fractions[1] / (fractions[0] + fractions[1])
    tr, va = train_test_split(rest, test_size=val, random_state=seed + 1,
                              stratify=None if stratify is None else stratify[rest])
    return tr, va, te
