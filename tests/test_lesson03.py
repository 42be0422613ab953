"""Lesson 03: the optimizer formulas the lesson writes out match torch.optim step by step; L2's factor; L1's
(non-)zeros; the exercises reject typical mistakes and accept right answers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from kit.exercises import verdict
from kit.exercises.lesson03 import _adam_step, _adamw_step, _momentum_step, _rmsprop_step
from kit.models.mlp import MLP, MLPConfig, l1_penalty, weight_sparsity
from kit.models import n_params
from kit.train.optim import make_optimizer


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    X, y = torch.randn(32, 5, generator=g, dtype=torch.float64), torch.randn(32, generator=g, dtype=torch.float64)
    w0 = torch.randn(5, generator=g, dtype=torch.float64)
    return X, y, w0


def _loss(X, y, w):
    return ((torch.tanh(X @ w) - y) ** 2).mean()  # not quadratic: the gradient changes shape as w moves


def _grad(X, y, w):
    w = w.clone().requires_grad_(True)
    _loss(X, y, w).backward()
    return w.grad


def _torch_path(opt_cls, steps, **kw):
    X, y, w0 = _problem()
    w = w0.clone().requires_grad_(True)
    opt = opt_cls([w], **kw)
    path = []
    for _ in range(steps):
        opt.zero_grad()
        _loss(X, y, w).backward()
        opt.step()
        path.append(w.detach().clone())
    return path


@pytest.mark.parametrize("lr,betas", [(1e-2, (0.9, 0.999)), (0.1, (0.8, 0.99))])
def test_adam_formulas_match_torch(lr, betas):
    X, y, w = _problem()
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    for t, want in enumerate(_torch_path(torch.optim.Adam, 30, lr=lr, betas=betas, eps=1e-8), start=1):
        w, m, v = _adam_step(w, _grad(X, y, w), m, v, t, lr, *betas, 1e-8)
        assert torch.allclose(w, want, atol=1e-6, rtol=0), t


def test_adamw_formulas_match_torch():
    X, y, w = _problem()
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    for t, want in enumerate(_torch_path(torch.optim.AdamW, 30, lr=0.05, weight_decay=0.1), start=1):
        w, m, v = _adamw_step(w, _grad(X, y, w), m, v, t, 0.05, 0.9, 0.999, 1e-8, 0.1)
        assert torch.allclose(w, want, atol=1e-6, rtol=0), t


def test_rmsprop_and_momentum_formulas_match_torch():
    X, y, w = _problem()
    s = torch.zeros_like(w)
    for want in _torch_path(torch.optim.RMSprop, 30, lr=1e-2):  # torch's defaults: α = 0.99, ε = 1e-8
        w, s = _rmsprop_step(w, _grad(X, y, w), s, 1e-2)
        assert torch.allclose(w, want, atol=1e-6, rtol=0)
    X, y, w = _problem()
    v = torch.zeros_like(w)
    for want in _torch_path(torch.optim.SGD, 30, lr=0.05, momentum=0.9):
        w, v = _momentum_step(w, _grad(X, y, w), v, 0.05, 0.9)
        assert torch.allclose(w, want, atol=1e-6, rtol=0)


def test_bias_correction_makes_the_first_adam_step_lr_sized():
    g = torch.tensor([1e-3, 1.0, 1e3], dtype=torch.float64)
    w1, m1, _ = _adam_step(torch.zeros(3, dtype=torch.float64), g, torch.zeros(3, dtype=torch.float64),
                           torch.zeros(3, dtype=torch.float64), 1, 0.01, 0.9, 0.999, 1e-8)
    assert torch.allclose(w1, torch.full((3,), -0.01, dtype=torch.float64), rtol=1e-4)  # ≈ −η·sign(g), any scale
    assert torch.allclose(m1, 0.1 * g)  # uncorrected: a tenth of the gradient


def test_l2_factor_and_coupled_decay():
    """(λ/2)‖w‖² has gradient λw (λ‖w‖²: 2λw), and torch's weight_decay=λ — what fit(weight_decay=λ) builds —
    is exactly gradient descent on loss + (λ/2)‖w‖² for SGD and for Adam (coupled L2). AdamW is not."""
    lam = 0.3
    w = torch.randn(7, dtype=torch.float64, requires_grad=True)
    (lam / 2 * (w ** 2).sum()).backward()
    assert torch.allclose(w.grad, lam * w.detach())
    w.grad = None
    (lam * (w ** 2).sum()).backward()
    assert torch.allclose(w.grad, 2 * lam * w.detach())

    X, y, w0 = _problem(1)
    for name in ("sgd", "momentum", "adam", "rmsprop"):
        a, b = w0.clone().requires_grad_(True), w0.clone().requires_grad_(True)
        opt_a = make_optimizer(name, [a], lr=0.05, weight_decay=lam)
        opt_b = make_optimizer(name, [b], lr=0.05)
        for _ in range(20):
            for opt, p, extra in ((opt_a, a, 0.0), (opt_b, b, lam / 2 * (b ** 2).sum())):
                opt.zero_grad()
                (_loss(X, y, p) + extra).backward()
                opt.step()
        assert torch.allclose(a, b, atol=1e-10), name
    c = w0.clone().requires_grad_(True)
    opt_c = make_optimizer("adamw", [c], lr=0.05, weight_decay=lam)
    for _ in range(20):
        opt_c.zero_grad()
        _loss(X, y, c).backward()
        opt_c.step()
    assert (c - a).abs().max() > 1e-3  # decoupled decay goes elsewhere


def test_weight_sparsity_counts_matrices_only():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.0, 1e-4, -5e-4, 1.0]] * 3))
        model[2].weight.fill_(2.0)
        model[0].bias.zero_()  # biases are not counted
    s = weight_sparsity(model, tol=1e-3)
    assert s["n_weights"] == 12 + 6
    assert s["exact_zero"] == pytest.approx(3 / 18) and s["below_tol"] == pytest.approx(9 / 18)


def test_l1_with_adam_shrinks_weights_but_makes_no_exact_zeros():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest on a busy machine
    try:
        torch.manual_seed(0)
        X = torch.randn(256, 20)
        y = X[:, :3].sum(1, keepdim=True) + torch.randn(256, 1)  # only 3 of 20 inputs matter
        res = {}
        for name, strength in (("none", 0.0), ("L1", 0.3)):
            torch.manual_seed(1)
            model = nn.Sequential(nn.Linear(20, 1))
            opt, pen = torch.optim.Adam(model.parameters(), lr=3e-3), l1_penalty(strength)
            for _ in range(600):
                opt.zero_grad()
                (((model(X) - y) ** 2).mean() + pen(model)).backward()
                opt.step()
            res[name] = weight_sparsity(model, tol=1e-2)
    finally:
        torch.set_num_threads(threads)
    # measured: L1 puts 17 of 20 weights below 1e-2 (none: 2 of 20), and not one at exactly 0.0
    assert res["L1"]["exact_zero"] == 0.0
    assert res["L1"]["below_tol"] >= 0.8 and res["none"]["below_tol"] <= 0.2


# ------------------------------------------------------------------------------------------ exercises

def _ok(id, fn, times=4):
    for _ in range(times):
        assert verdict(id, fn) is None, verdict(id, fn)


def _fails(id, fn, *words):
    why = verdict(id, fn)
    assert why is not None and "on the case '" in why, why
    for w in words:
        assert w in why, why


def test_03_1_mlp_params():
    _ok("03.1", lambda s: sum(a * b + b for a, b in zip(s[:-1], s[1:])))
    _ok("03.1", lambda s: n_params(MLP(MLPConfig(s[0], s[-1], hidden=tuple(s[1:-1])))), times=1)
    _fails("03.1", lambda s: sum(a * b for a, b in zip(s[:-1], s[1:])), "the lesson's MLP")  # biases forgotten
    _fails("03.1", lambda s: sum(a * b + a for a, b in zip(s[:-1], s[1:])))                  # one bias per input


def test_03_2_momentum():
    _ok("03.2", _momentum_step)

    def ema(w, g, v, lr, beta):  # v = βv + (1 − β)g: another convention, not torch's
        v = beta * v + (1 - beta) * g
        return w - lr * v, v
    _fails("03.2", ema)

    def old_velocity(w, g, v, lr, beta):  # steps with the previous velocity
        return w - lr * v, beta * v + g
    _fails("03.2", old_velocity)


def test_03_3_adam():
    _ok("03.3", _adam_step)

    def no_correction(w, g, m, v, t, lr, b1, b2, eps):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        return w - lr * m / (v.sqrt() + eps), m, v
    _fails("03.3", no_correction, "t = 1")

    def eps_inside(w, g, m, v, t, lr, b1, b2, eps):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        return w - lr * (m / (1 - b1 ** t)) / (v / (1 - b2 ** t) + eps).sqrt(), m, v
    _fails("03.3", eps_inside)  # caught on "tiny gradients" at the latest

    def returns_corrected(w, g, m, v, t, lr, b1, b2, eps):
        m, v = (b1 * m + (1 - b1) * g) / (1 - b1 ** t), (b2 * v + (1 - b2) * g * g) / (1 - b2 ** t)
        return w - lr * m / (v.sqrt() + eps), m, v
    _fails("03.3", returns_corrected)


def test_03_4_adamw():
    _ok("03.4", _adamw_step)

    def coupled(w, g, m, v, t, lr, b1, b2, eps, wd):  # torch.optim.Adam(weight_decay=wd): L2 through the moments
        return _adam_step(w, g + wd * w, m, v, t, lr, b1, b2, eps)
    _fails("03.4", coupled, "t = 1")

    def decay_without_lr(w, g, m, v, t, lr, b1, b2, eps, wd):
        return _adam_step(w * (1 - wd), g, m, v, t, lr, b1, b2, eps)
    _fails("03.4", decay_without_lr)


def test_plain_sgd_coupled_and_decoupled_decay_agree():
    """The lesson: for plain SGD (no momentum) adding λw to g equals shrinking w by (1 − ηλ) then stepping."""
    X, y, w0 = _problem(2)
    a = w0.clone().requires_grad_(True)
    opt = torch.optim.SGD([a], lr=0.1, weight_decay=0.2)
    w = w0.clone()
    for _ in range(10):
        opt.zero_grad()
        _loss(X, y, a).backward()
        opt.step()
        w = (1 - 0.1 * 0.2) * w - 0.1 * _grad(X, y, w)
        assert torch.allclose(a.detach(), w, atol=1e-12)
