"""Lesson 06: Grad-CAM hooks the rectified block output; the exercises accept right answers and reject mistakes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import kit.techniques.explain as E
from kit.exercises import verdict
from kit.models.cnn import CNN, CNNConfig


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = CNN(CNNConfig(channels=(4, 8, 8)))
    m.train()
    with torch.no_grad():  # give batch norm non-trivial running statistics, then explain in eval mode
        for _ in range(3):
            m(torch.rand(16, 1, 28, 28))
        for bn in (b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)):
            bn.weight.uniform_(-1.5, 1.5)  # some negative scales: BN can flip a channel's sign
            bn.bias.uniform_(-0.5, 0.5)
    m.eval()
    return m


def test_grad_cam_hooks_the_rectified_block_output(model):
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    layer = E.default_cam_layer(model)
    last_block = model.features[-1]
    assert layer is model.activation_layers()[-1] and isinstance(layer, torch.nn.ReLU)
    assert layer is last_block[2]  # Conv → BatchNorm → ReLU → MaxPool: the ReLU, after batch norm
    A, dA = E.cam_inputs(model, x)
    with torch.no_grad():
        before = model.features[:-1](x)
        want = last_block[:3](before)                # conv → BN → ReLU of the last block
        raw_conv = last_block[0](before)
    assert torch.all(A >= 0)
    assert torch.allclose(A, want)
    assert (raw_conv < 0).float().mean() > 0.1       # what the conv hook used to weigh: signed, pre-BN values
    assert A.shape == dA.shape == (5, 8, 7, 7)
    # grad_cam is exactly the exercise's formula on these activations, upsampled
    cam = E.grad_cam(model, x, upsample=False)
    ref = F.relu((dA.mean((2, 3), keepdim=True) * A).sum(1))
    assert torch.allclose(cam, ref)
    # the gradient is the real one: a finite difference on one activation through the rest of the network
    t = model(x).argmax(1)
    rest = torch.nn.Sequential(last_block[3], model.head)
    a = A[:1].clone().requires_grad_(True)
    rest(a)[0, t[0]].backward()
    assert torch.allclose(a.grad, dA[:1], atol=1e-6)


def test_grad_cam_falls_back_to_the_last_conv_without_activation_layers():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.Flatten(), torch.nn.Linear(3 * 6 * 6, 2))
    net.conv_layers = lambda: [net[0]]
    assert E.default_cam_layer(net) is net[0]
    assert E.grad_cam(net, torch.rand(2, 1, 8, 8), upsample=False).shape == (2, 6, 6)


# ------------------------------------------------------------------------------------------ exercises


def cam_right(A, dA):
    return torch.relu((dA.mean((1, 2))[:, None, None] * A).sum(0))


def ig_right(grad_fn, x, baseline, steps):
    total = torch.zeros_like(x)
    for i in range(steps + 1):
        total = total + (0.5 if i in (0, steps) else 1.0) / steps * grad_fn(baseline + i / steps * (x - baseline))
    return (x - baseline) * total


def occ_right(score_fn, x, patch, fill=0.0):
    base, out = float(score_fn(x)), torch.zeros_like(x)
    for i in range(0, x.shape[0], patch):
        for j in range(0, x.shape[1], patch):
            c = x.clone()
            c[i:i + patch, j:j + patch] = fill
            out[i:i + patch, j:j + patch] = base - float(score_fn(c))
    return out


@pytest.mark.parametrize("rep", range(3))
def test_right_answers_pass_on_fresh_inputs(rep):
    assert verdict("06.1", cam_right) is None
    assert verdict("06.2", ig_right) is None
    assert verdict("06.3", occ_right) is None


def test_grad_cam_mistakes_fail():
    assert "case '" in verdict("06.1", lambda A, dA: (dA.mean((1, 2))[:, None, None] * A).sum(0))  # no ReLU
    assert "case '" in verdict("06.1", lambda A, dA: torch.relu((dA * A).sum(0)))  # pointwise, not a channel weight
    assert "case '" in verdict("06.1", lambda A, dA: torch.relu((dA.sum((1, 2))[:, None, None] * A).sum(0)))  # sum, not mean


def test_integrated_gradients_mistakes_fail():
    def left_riemann(grad_fn, x, baseline, steps):
        return (x - baseline) * sum(grad_fn(baseline + i / steps * (x - baseline)) for i in range(steps)) / steps
    msg = verdict("06.2", left_riemann)
    assert msg and "case '" in msg

    def no_difference(grad_fn, x, baseline, steps):  # forgets the (x − baseline) factor
        return ig_right(grad_fn, x, baseline, steps) / (x - baseline)
    assert "linear score" in verdict("06.2", no_difference)


def test_integrated_gradients_completeness():
    """The lesson's claims: exact for a quadratic score with the trapezoid rule; the gap shrinks with steps."""
    g = torch.Generator().manual_seed(0)
    c, w = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    x, x0 = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    f = lambda z: (c * z ** 2).sum() + w @ z
    ig = ig_right(lambda z: 2 * c * z + w, x, x0, 3)
    assert ig.sum().item() == pytest.approx((f(x) - f(x0)).item(), abs=1e-12)
    cube = lambda z: (c * z ** 3).sum()
    gaps = [abs(ig_right(lambda z: 3 * c * z ** 2, x, x0, s).sum() - (cube(x) - cube(x0))).item() for s in (2, 8, 32)]
    assert gaps[0] > gaps[1] > gaps[2]


def test_occlusion_mistakes_fail():
    def no_edges(score_fn, x, patch, fill=0.0):  # only whole patches
        out = occ_right(score_fn, x, patch, fill)
        h, w = (x.shape[0] // patch) * patch, (x.shape[1] // patch) * patch
        out[h:], out[:, w:] = 0, 0
        return out
    assert "do not divide" in verdict("06.3", no_edges)

    def wrong_sign(score_fn, x, patch, fill=0.0):
        return -occ_right(score_fn, x, patch, fill)
    assert "case '" in verdict("06.3", wrong_sign)

    def ignores_fill(score_fn, x, patch, fill=0.0):
        return occ_right(score_fn, x, patch)
    assert "grey" in verdict("06.3", ignores_fill)
