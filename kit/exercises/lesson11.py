"""Lesson 11 exercises: compression — int8 (de)quantization, magnitude pruning, the distillation loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kit.exercises import Case, compare, function, randn
from kit.exercises.declare import Budget, Headline, LessonEntry


def _t(rng, *shape, scale=1.0):
    return randn(rng, *shape, scale=scale, dtype=torch.float32)


# ------------------------------------------------------------------ 11.1 dequantize
def _dequantize(q, scale, zero_point):
    return (q.double() - zero_point) * scale


def _dequant_cases(rng):
    q = torch.tensor(rng.integers(-128, 128, size=(int(rng.integers(3, 9)), 5)), dtype=torch.int8)
    yield Case(f"int8 {tuple(q.shape)}, zero point 0, scale 0.02", (q, 0.02, 0))
    yield Case("int8, zero point 3", (torch.tensor([-128, -1, 0, 3, 127], dtype=torch.int8), 0.5, 3))
    yield Case("uint8 [0, 255] with zero point 128 (asymmetric)",
               (torch.tensor([0, 1, 127, 128, 200, 255], dtype=torch.uint8), 0.1, 128))
    yield Case("int8 extremes with zero point −128", (torch.tensor([-128, 127], dtype=torch.int8), 1.0, -128))


function("11.1", "dequantize: from stored integers back to real numbers",
         reference=_dequantize, cases=_dequant_cases, atol=1e-6, rtol=1e-6,
         hints=("Invert q = round(w / s) + z.",
                "Subtract the zero point, then multiply by the scale.",
                "Integer tensors wrap around: 127 − (−128) does not fit in int8, and 0 − 128 does not fit in uint8. "
                "Convert to a float type before any arithmetic."))


# ------------------------------------------------------------------ 11.2 quantize (symmetric int8)
def _quantize(w):
    m = w.abs().max().item()
    scale = m / 127 if m > 0 else 1.0
    return torch.clamp(torch.round(w / scale), -127, 127).to(torch.int8), scale


def _quant_cases(rng):
    n, d = int(rng.integers(3, 20)), int(rng.integers(2, 12))
    yield Case(f"random weights ({n}×{d})", (_t(rng, n, d, scale=0.1),))
    yield Case("one weight", (torch.tensor([-0.37]),))
    w = _t(rng, 50, scale=0.01)
    w[int(rng.integers(50))] = 40.0
    yield Case("a huge outlier (40) among small weights", (w,))
    yield Case("all zeros", (torch.zeros(4, 3),))
    yield Case("the largest |w| is negative", (torch.tensor([0.5, -2.0, 1.0, 0.004]),))


def _same_quant(got, want):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"its result should be (q, scale), got {type(got).__name__}"
    q, scale = got
    if not isinstance(q, torch.Tensor) or q.dtype != torch.int8:
        return f"q should be an int8 tensor, got {getattr(q, 'dtype', type(q).__name__)}"
    msg = compare(scale, want[1], 1e-12, 1e-6, "the scale")
    return msg or compare(q, want[0], 0, 0, "q")


function("11.2", "symmetric int8 quantization of a weight tensor → (q, scale)",
         reference=_quantize, cases=_quant_cases, same=_same_quant,
         hints=("Symmetric means zero point 0 and a range centred on 0: the largest |w| must land on ±127.",
                "One scale for the whole tensor, from its largest absolute value; then divide, round, clamp to "
                "[−127, 127] and store as torch.int8.",
                "An all-zero tensor has no largest |w|: use scale 1.0 there instead of dividing by zero."))


# ------------------------------------------------------------------ 11.3 magnitude pruning mask
def _prune_mask(w, sparsity):
    k = round(sparsity * w.numel())
    mask = torch.ones(w.numel(), dtype=torch.bool)
    if k:
        mask[torch.topk(w.abs().flatten(), k, largest=False).indices] = False
    return mask.view(w.shape)


def _ranked_whole(w, sparsity):
    """Whether the right mask differs from ranking by signed value and from ranking row by row: the random case
    is drawn again where it does not (1 in 450 draws ranked row by row alike, so that mistake could pass)."""
    want = _prune_mask(w, sparsity)
    k = round(sparsity * w.numel())
    signed = torch.ones(w.numel(), dtype=torch.bool)
    signed[w.flatten().argsort()[:k]] = False
    per_row = torch.stack([_prune_mask(row, sparsity) for row in w])
    return not torch.equal(signed.view(w.shape), want) and not torch.equal(per_row, want)


def _prune_cases(rng):
    n, d = int(rng.integers(4, 20)), int(rng.integers(3, 12))
    w = _t(rng, n, d)
    while not _ranked_whole(w, 0.3):
        w = _t(rng, n, d)
    yield Case(f"random weights ({n}×{d}), sparsity 0.3", (w, 0.3))
    yield Case("sparsity 0 (keep everything)", (_t(rng, 5, 4), 0.0))
    yield Case("sparsity 1 (remove everything)", (_t(rng, 5, 4), 1.0))
    yield Case("sparsity 0.9 of 100 weights", (_t(rng, 100), 0.9))
    yield Case("large negative weights must stay", (torch.tensor([-5.0, 0.1, -0.2, 3.0, 0.05, -4.0]), 0.5))


def _same_mask(got, want):
    if not isinstance(got, torch.Tensor):
        return f"the mask should be a tensor, got {type(got).__name__}"
    if got.shape != want.shape:
        return f"the mask has shape {tuple(got.shape)}, expected {tuple(want.shape)} (the weights' shape)"
    g = got.bool() if got.dtype == torch.bool else got != 0
    if not torch.equal(g, want):
        kept, should = int(g.sum()), int(want.sum())
        if kept != should:
            return f"the mask keeps {kept} weights, expected {should}"
        return "the mask keeps the right number of weights, but not the largest |w|"
    return None


function("11.3", "a magnitude-pruning mask for a given sparsity",
         reference=_prune_mask, cases=_prune_cases, same=_same_mask,
         hints=("Rank the weights by magnitude |w|, over the whole tensor, whatever its shape.",
                "Remove exactly round(sparsity · number of weights) of them: the smallest in magnitude. torch.topk has "
                "largest=False.",
                "Build the mask flat, then reshape it to the weights' shape; sparsity 0 must keep everything."))


# ------------------------------------------------------------------ 11.4 the soft-target loss
def _soft_target(student_logits, teacher_logits, T):
    log_ps = F.log_softmax(student_logits / T, -1)
    log_pt = F.log_softmax(teacher_logits / T, -1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(-1) * T * T


def _soft_cases(rng):
    n, k = int(rng.integers(2, 20)), int(rng.integers(3, 12))
    yield Case(f"random logits ({n} examples, {k} classes), T = 4", (_t(rng, n, k, scale=3), _t(rng, n, k, scale=3), 4.0))
    yield Case("T = 1", (_t(rng, 5, 10, scale=2), _t(rng, 5, 10, scale=2), 1.0))
    z = _t(rng, 3, 6)
    yield Case("student = teacher (loss 0)", (z, z.clone(), 2.0))
    yield Case("a single example, T = 10", (_t(rng, 1, 10), _t(rng, 1, 10), 10.0))
    yield Case("huge logits (±200), T = 2", (torch.tensor([[200.0, -200.0, 0.0]]), torch.tensor([[-200.0, 200.0, 0.0]]), 2.0))


function("11.4", "the distillation soft-target loss T²·KL(teacher ‖ student), per example",
         reference=_soft_target, cases=_soft_cases, atol=1e-3, rtol=1e-4,
         hints=("Both distributions are softened the same way: softmax of the logits divided by T.",
                "KL(p_t ‖ p_s) = Σ p_t (log p_t − log p_s) over the classes: one number per example. Take the logs "
                "with log_softmax, so logits of ±200 stay finite.",
                "Multiply by T²: the softened gradients shrink as 1/T², and the factor puts them back on the scale "
                "of the hard-label loss."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    return (m["acc_teacher"] > 0.9
            # int8 keeps accuracy and is ~4× smaller on disk
            and min(m["acc_int8_dynamic"], m["acc_int8_static"], m["acc_int8_qat"]) > m["acc_teacher"] - 0.03
            and m["size_kb_int8_dynamic"] < 0.4 * m["size_kb_fp32"] and m["size_kb_int8_static"] < 0.4 * m["size_kb_fp32"]
            # pruning: harmless at 50 %, fine-tuning recovers at 90 %
            and m["prune_sweep_acc_50"] > m["acc_teacher"] - 0.03
            and m["acc_pruned90_finetuned"] >= m["acc_pruned90"] and abs(m["sparsity_finetuned"] - 0.9) < 1e-3
            # the student is far smaller and still good
            and m["student_params"] < m["teacher_params"] / 10 and m["acc_student_distilled"] > 0.85
            # ONNX Runtime computes what PyTorch computes
            and m["onnx_max_abs_diff"] <= m["onnx_tolerance"] <= 1e-4 and m["acc_onnx"] == m["acc_teacher"])


LESSON = LessonEntry(
    number='11', name='compression_deployment', title='Compression and deployment',
    goal='int8 quantization, pruning and distillation measured; ONNX Runtime checked against PyTorch.',
    teaches='int8 post-training quantization (dynamic, static) and QAT with `torch.ao.quantization`; magnitude '
            'pruning with `torch.nn.utils.prune` (0–90 % sweep, fine-tuning); knowledge distillation (soft targets '
            'at temperature T, KL·T²); one measured table and plot of size on disk, CPU latency (median) and '
            'accuracy per variant; ONNX export run by ONNX Runtime and checked against PyTorch (max abs diff ≤ '
            "1e-4), lesson 09's GPT too",
    data='8×8 digits (scikit-learn, real)',
    metrics=(
        Headline('acc_int8_static', 'int8 (static) accuracy', 'acc_teacher-0.03', unit='%'),
        Headline('size_kb_int8_static', 'int8 (static) size (kB)', 'size_kb_fp32*0.4', 'lower'),
        Headline('onnx_max_abs_diff', 'ONNX Runtime vs PyTorch', 0.0001, 'lower'),
    ),
    smoke_bar=smoke_bar,
    budget=Budget(smoke_s=30),  # a smoke run took 20 s on a quiet 2-core machine
)
