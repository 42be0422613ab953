"""Lesson 13: the exercises reject plausible mistakes; the lesson says its ε is no guarantee for seeded runs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kit.exercises import verdict


# ------------------------------------------------------------------ right answers (reference style)
def fedavg_round(g, clients, sizes, server_lr=1.0):
    n = sum(sizes)
    return {k: g[k] + server_lr * sum(s / n * (c[k] - g[k]) for c, s in zip(clients, sizes)) for k in g}


def clip(grads, C):
    norms = grads.norm(dim=1, keepdim=True)
    return grads * torch.clamp(C / norms.clamp_min(1e-12), max=1.0)


def noisy_mean(grads, C, sigma):
    return (clip(grads, C).sum(0) + sigma * C * torch.randn(grads.shape[1], dtype=grads.dtype)) / len(grads)


def attack(m, o):
    m, o = np.asarray(m, float), np.asarray(o, float)
    return max([0.5] + [0.5 * ((m <= t).mean() + (o > t).mean()) for t in np.concatenate([m, o])])


@pytest.mark.parametrize("ex,fn", [("13.1", fedavg_round), ("13.2", clip), ("13.3", noisy_mean), ("13.4", attack)])
def test_right_answers_pass_on_fresh_inputs(ex, fn):
    for _ in range(4):
        assert verdict(ex, fn) is None


def test_fedavg_wrong_answers():
    unweighted = lambda g, cs, sz, server_lr=1.0: fedavg_round(g, cs, [1] * len(cs), server_lr)  # noqa: E731
    assert "on the case '" in verdict("13.1", unweighted)
    ignores_lr = lambda g, cs, sz, server_lr=1.0: fedavg_round(g, cs, sz, 1.0)  # noqa: E731
    assert "server_lr" in verdict("13.1", ignores_lr)
    lr_on_weights = lambda g, cs, sz, server_lr=1.0: {k: server_lr * v for k, v in fedavg_round(g, cs, sz).items()}  # noqa: E731
    assert "server_lr" in verdict("13.1", lr_on_weights)


def test_clip_wrong_answers():
    elementwise = lambda g, C: g.clamp(-C, C)  # noqa: E731 - clamps each number: changes the direction
    assert "on the case '" in verdict("13.2", elementwise)
    always = lambda g, C: g / g.norm(dim=1, keepdim=True) * C  # noqa: E731 - also scales small rows up
    assert "on the case '" in verdict("13.2", always)
    nan_zero = lambda g, C: g / g.norm(dim=1, keepdim=True) * g.norm(dim=1, keepdim=True).clamp(max=C)  # noqa: E731
    assert "a row of zeros" in verdict("13.2", nan_zero)
    whole = lambda g, C: g * min(1.0, C / g.norm().item())  # noqa: E731 - one norm for the whole batch
    assert "on the case '" in verdict("13.2", whole)


def test_noisy_mean_wrong_answers():
    unclipped = lambda g, C, s: (g.sum(0) + s * C * torch.randn(g.shape[1], dtype=g.dtype)) / len(g)  # noqa: E731
    assert "CLIPPED" in verdict("13.3", unclipped)
    per_example = lambda g, C, s: (clip(g, C) + s * C * torch.randn_like(g)).mean(0)  # noqa: E731 - noise √n too big
    assert "standard deviation" in verdict("13.3", per_example)
    not_divided = lambda g, C, s: clip(g, C).mean(0) + s * C * torch.randn(g.shape[1], dtype=g.dtype)  # noqa: E731
    assert "standard deviation" in verdict("13.3", not_divided)
    sigma_only = lambda g, C, s: (clip(g, C).sum(0) + s * torch.randn(g.shape[1], dtype=g.dtype)) / len(g)  # noqa: E731
    assert "standard deviation" in verdict("13.3", sigma_only)
    shared = lambda g, C, s: (clip(g, C).sum(0) + s * C * torch.randn(1, dtype=g.dtype)) / len(g)  # noqa: E731
    assert "correlated" in verdict("13.3", shared)
    assert "no answer yet" in verdict("13.3", lambda g, C, s: (_ for _ in ()).throw(NotImplementedError))


def test_attack_wrong_answers():
    plain = lambda m, o: max((np.sum(np.asarray(m) <= t) + np.sum(np.asarray(o) > t)) / (len(m) + len(o))  # noqa: E731
                             for t in np.concatenate([m, o]))  # accuracy over all examples, not balanced
    assert "on the case '" in verdict("13.4", plain)
    members_only = lambda m, o: max([0.5] + [(np.asarray(m) <= t).mean() for t in np.concatenate([m, o])])  # noqa: E731
    assert "on the case '" in verdict("13.4", members_only)
    reversed_rule = lambda m, o: attack(o, m)  # noqa: E731 - "member" when the loss is HIGH
    assert "on the case '" in verdict("13.4", reversed_rule)


def test_lesson_says_the_seeded_epsilon_is_no_guarantee():
    src = (Path(__file__).parents[1] / "notebooks" / "src" / "13_privacy.py").read_text()
    assert "secure_mode=False" in src and "not a guarantee for these runs" in src and "secure_mode=True" in src
    import inspect

    from kit.techniques import privacy as P
    code = inspect.getsource(P.train_dp)
    assert "secure_mode=False" in code and "manual_seed(seed" in code  # what the caveat describes is what runs
