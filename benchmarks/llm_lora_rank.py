"""LoRA's rank on a real LLM: r ∈ {1, 2, 4, 8, 32} with the update scaled by α/r (LoRA) or α/√r (rsLoRA).

Lesson 19's instruction tuning of SmolLM2-135M-Instruct (its chat template, answer-only loss, "upper" held out), at a
fixed α, learning rate and budget, once per rank and scaling: the training loss (mean of the logged windows of the
second half of the run — one window of a few short answers is noise) and greedy exact match on held-out instructions of the trained tasks. Each run starts from a fresh copy of the
model with the same seed, so only the rank and the scale differ.

    python benchmarks/llm_lora_rank.py [--steps 30] [--alpha 8] [--ranks 1 2 4 8 32]
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SYSTEM = "Answer with the result only."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=8.0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 8, 32])
    ap.add_argument("--n-test", type=int, default=16, help="held-out instructions per task")
    a = ap.parse_args()

    import numpy as np
    import torch

    from kit.data.instructions import TASKS, exact_match, train_test_instructions
    from kit.models.llm import load_llm
    from kit.models.lora import apply_lora, trainable_parameters
    from kit.train.sft import chat_pair, generate_answers, sft_train

    base, tok = load_llm()
    train, test = train_test_instructions(4000, a.n_test * len(TASKS), seed=0)
    train = [e for e in train if e.task != "upper"]
    test = [e for e in test if e.task != "upper"]

    def msgs(e):
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": e.instruction}]

    pairs = [chat_pair(tok, msgs(e), e.answer) for e in train]
    prompts = [tok.apply_chat_template(msgs(e)) for e in test]
    print("| r | scale | α/r or α/√r | trainable | train loss, 2nd half | held-out exact match | seconds |")
    print("|---|---|---|---|---|---|---|")
    for r in a.ranks:
        for rs in ((False,) if r == 1 else (False, True)):   # at r = 1 the two scales are the same
            torch.manual_seed(0)
            model = apply_lora(copy.deepcopy(base), ["c_attn", "c_proj", "c_fc"], r=r, alpha=a.alpha, rslora=rs)
            n, total = trainable_parameters(model)
            t0 = time.perf_counter()
            hist = sft_train(model, pairs, steps=a.steps, batch_size=a.batch, lr=a.lr, pad_id=tok.eos_token_id,
                             seed=0, progress=False)
            seconds = time.perf_counter() - t0
            replies = generate_answers(model, tok.encode, tok.decode, prompts, max_new_tokens=12, end="<|im_end|>")
            em = float(np.mean([exact_match([x for x, e in zip(replies, test) if e.task == t],
                                            [e.answer for e in test if e.task == t]) for t in TASKS if t != "upper"]))
            scale = a.alpha / (r ** 0.5 if rs else r)
            print(f"| {r} | {'α/√r (rsLoRA)' if rs else 'α/r'} | {scale:.2f} | {100 * n / total:.2f} % | "
                  f"{np.mean(hist['train_loss'][len(hist['train_loss']) // 2:]):.3f} | {em:.1%} | {seconds:.0f} |", flush=True)
            del model
    print(f"\nα {a.alpha:g}, lr {a.lr:g}, {a.steps} steps of {a.batch}; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
