"""Lesson 04: its exercises accept right answers on fresh inputs and reject a learner's typical mistakes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kit.exercises import verdict


def out_size(n, kernel, stride=1, padding=0, dilation=1):
    return (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_params(c_in, c_out, kernel, bias=True):
    return c_out * (c_in * kernel ** 2 + int(bias))


def xcorr(x, k):
    return x.unfold(0, k.shape[0], 1).unfold(1, k.shape[1], 1).mul(k).sum((-2, -1))


def pool(x, size):
    h, w = x.shape[-2] // size, x.shape[-1] // size
    x = x[..., : h * size, : w * size]
    return x.reshape(*x.shape[:-2], h, size, w, size).amax(dim=(-3, -1))


def rf(layers):
    r, j = 1, 1
    for k, s in layers:
        r, j = r + (k - 1) * j, j * s
    return r


@pytest.mark.parametrize("rep", range(3))
def test_right_answers_pass_on_fresh_inputs(rep):
    for i, fn in enumerate([out_size, conv_params, xcorr, pool, rf], 1):
        assert verdict(f"04.{i}", fn) is None, i


def test_references_match_torch():
    """The formulas the lesson shows, checked against torch's own layers."""
    g = torch.Generator().manual_seed(0)
    for n, k, s, p, d in [(28, 3, 1, 1, 1), (7, 2, 2, 0, 1), (31, 5, 3, 2, 2), (10, 10, 1, 0, 1)]:
        conv = torch.nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
        assert conv(torch.zeros(1, 1, n, n)).shape[-1] == out_size(n, k, s, p, d)
    for c_in, c_out, k, b in [(1, 16, 3, True), (16, 32, 3, False), (64, 32, 1, True)]:
        assert sum(q.numel() for q in torch.nn.Conv2d(c_in, c_out, k, bias=b).parameters()) == conv_params(c_in, c_out, k, b)
    # receptive field of the lesson's stack: the input pixels with a non-zero gradient from one output pixel
    layers = [(3, 1), (2, 2)] * 3
    net = torch.nn.Sequential(*[torch.nn.Conv2d(1, 1, k, s) if k == 3 else torch.nn.AvgPool2d(k, s) for k, s in layers])
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Conv2d):
                m.weight.fill_(1.0)
    x = torch.rand(1, 1, 64, 64, generator=g, requires_grad=True)
    out = net(x)
    out[0, 0, out.shape[-2] // 2, out.shape[-1] // 2].backward()
    rows = (x.grad[0, 0].abs().sum(1) > 0).sum().item()
    assert rows == rf(layers) == 22


def test_output_size_mistakes_fail_naming_the_case():
    def no_dilation(n, kernel, stride=1, padding=0, dilation=1):
        return (n + 2 * padding - kernel) // stride + 1
    assert "dilation" in verdict("04.1", no_dilation)

    def rounds(n, kernel, stride=1, padding=0, dilation=1):
        return round((n + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1
    assert "case '" in verdict("04.1", rounds)

    def one_side_padding(n, kernel, stride=1, padding=0, dilation=1):
        return (n + padding - dilation * (kernel - 1) - 1) // stride + 1
    assert "padding" in verdict("04.1", one_side_padding)


def test_conv_params_mistakes_fail():
    assert "c_in=" in verdict("04.2", lambda c_in, c_out, kernel, bias=True: c_out * kernel ** 2 + c_out)
    assert "without bias" in verdict("04.2", lambda c_in, c_out, kernel, bias=True: c_out * (c_in * kernel ** 2 + 1))


def test_conv2d_mistakes_fail_naming_the_case():
    def flips(x, k):  # true convolution: the kernel flipped
        return xcorr(x, k.flip(0, 1))
    assert "asymmetric" in verdict("04.3", flips) or "case '" in verdict("04.3", flips)
    assert "case '" in verdict("04.3", flips)

    def same_padding(x, k):
        return F.conv2d(x[None, None], k[None, None], padding="same")[0, 0]
    assert "shape" in verdict("04.3", same_padding)


def test_max_pool_mistakes_fail_naming_the_case():
    def zero_start(x, size):
        return pool(x, size).clamp(min=0)  # a running max started at 0
    assert "case '" in verdict("04.4", zero_start)  # random maps have negative blocks too

    def ceil_mode(x, size):
        return F.max_pool2d(x[None], size, ceil_mode=True)[0] if x.dim() == 3 else \
            F.max_pool2d(x[None, None], size, ceil_mode=True)[0, 0]
    assert "odd" in verdict("04.4", ceil_mode)


def test_receptive_field_mistakes_fail():
    assert "lesson's CNN" in verdict("04.5", lambda layers: 1 + sum(k - 1 for k, s in layers))  # strides ignored
    assert "case '" in verdict("04.5", lambda layers: sum(k for k, s in layers))
