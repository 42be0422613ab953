"""Can LoRA instruction-tune SmolLM2-135M-Instruct on 2 CPU cores within a lesson's budget? Measure before building.

1. The base model's greedy exact match on held-out instructions of each task of :mod:`kit.data.instructions`,
   asked through its own chat template (a system message states the answer format).
2. LoRA (r = ``--rank`` on every attention and MLP matrix) trained with :func:`kit.train.sft.sft_train` for
   ``--steps`` steps of ``--batch`` instructions of every task but ``--heldout-task``, the loss on the answer and its
   ``<|im_end|>`` only (:func:`kit.train.sft.chat_pair`): training tokens/s, peak RSS.
3. Exact match again, per task — the held-out task shows whether the format or the skill was learned.

    python benchmarks/llm_sft_probe.py [--steps 45] [--n-test 10] [--heldout-task upper]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SYSTEM = "Reply with the answer only: no words, no punctuation, nothing else."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=45)
    ap.add_argument("--n-test", type=int, default=20, help="held-out instructions per task")
    ap.add_argument("--heldout-task", default="upper")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch", type=int, default=8)
    a = ap.parse_args()


    from kit.data.instructions import TASKS, exact_match, train_test_instructions
    from kit.models.llm import load_llm
    from kit.models.lora import apply_lora, trainable_parameters
    from kit.train.sft import chat_pair, generate_answers, sft_train

    model, tok = load_llm()
    train, test = train_test_instructions(4000, a.n_test * len(TASKS), seed=0)
    train = [e for e in train if e.task != a.heldout_task]

    def msgs(e):
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": e.instruction}]

    def evaluate(m) -> dict:
        t0 = time.perf_counter()
        replies = generate_answers(m, tok.encode, tok.decode, [tok.apply_chat_template(msgs(e)) for e in test],
                                   max_new_tokens=12, end="<|im_end|>")
        out = {}
        for task in TASKS:
            pairs = [(r, e) for r, e in zip(replies, test) if e.task == task]
            out[task] = exact_match([r for r, _ in pairs], [e.answer for _, e in pairs])
            out[f"{task}_example"] = f"{pairs[0][1].instruction!r} → {pairs[0][0]!r} (want {pairs[0][1].answer!r})"
        out["eval_s"] = round(time.perf_counter() - t0, 1)
        return out

    before = evaluate(model)
    print("before:", before, flush=True)
    apply_lora(model, targets=["c_attn", "c_proj", "c_fc"], r=a.rank, alpha=2 * a.rank)
    n_train, n_all = trainable_parameters(model)
    pairs = [chat_pair(tok, msgs(e), e.answer) for e in train]
    t0 = time.perf_counter()
    sft_train(model, pairs, steps=a.steps, batch_size=a.batch, lr=a.lr, pad_id=tok.eos_token_id, seed=0)
    train_s = time.perf_counter() - t0
    tokens = a.steps * a.batch * (sum(len(p) + len(q) for p, q in pairs) / len(pairs) - 1)
    after = evaluate(model)
    print("after:", after)
    print(f"trainable {n_train:,} of {n_all:,} ({100 * n_train / n_all:.2f} %); {a.steps} steps in {train_s:.0f} s, "
          f"≈ {tokens / train_s:.0f} training tokens/s (unpadded); peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; held-out task: {a.heldout_task}; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
