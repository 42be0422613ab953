"""Lesson 02: the weighted, stable binary cross-entropy exercise rejects typical mistakes and library one-liners."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kit.exercises import verdict


def right(z, y, w):
    losses = -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z))
    return (w * losses).sum() / w.sum()


def test_02_2_weighted_bce_right_answers_pass():
    for _ in range(20):
        assert verdict("02.2", right) is None
        assert verdict("02.2", lambda z, y, w: (w * F.binary_cross_entropy_with_logits(z, y, reduction="none")).sum()
                       / w.sum()) is None


def test_02_2_mistakes_and_one_liners_fail_naming_the_case():
    def unstable(z, y, w):
        p = torch.sigmoid(z)
        return -(w * (y * torch.log(p) + (1 - y) * torch.log(1 - p))).sum() / w.sum()

    def mean_not_weighted_mean(z, y, w):
        return (w * F.binary_cross_entropy_with_logits(z, y, reduction="none")).mean()

    for _ in range(20):
        assert "confident" in verdict("02.2", unstable) or "weight 0" in verdict("02.2", unstable)
        assert "on the case" in verdict("02.2", mean_not_weighted_mean)
        assert "on the case" in verdict("02.2", lambda z, y, w: F.binary_cross_entropy_with_logits(z, y, w))
        assert "on the case" in verdict("02.2", lambda z, y, w: F.binary_cross_entropy_with_logits(z, y))
    assert "no answer yet" in verdict("02.2", None)
