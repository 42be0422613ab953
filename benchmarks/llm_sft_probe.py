"""Can LoRA instruction-tune SmolLM2-135M-Instruct on 2 CPU cores within a lesson's budget? Measure before building.

1. The base model's greedy exact match on held-out instructions of each task of :mod:`kit.data.instructions`,
   asked through its own chat template (a system message states the answer format).
2. LoRA (r = ``--rank`` on every attention and MLP matrix) trained for ``--seconds`` on the training instructions
   of every task but ``--heldout-task``, the loss on the answer and its ``<|im_end|>`` only
   (:mod:`kit.data.chat_sft`), AdamW ``--lr``, batches of ``--batch``: training tokens/s, steps, peak RSS.
3. Exact match again, per task — the held-out task shows whether the format or the skill was learned.

    python benchmarks/llm_sft_probe.py [--seconds 90] [--n-test 20] [--heldout-task upper]
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
    ap.add_argument("--seconds", type=float, default=90)
    ap.add_argument("--n-test", type=int, default=20, help="held-out instructions per task")
    ap.add_argument("--heldout-task", default="upper")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch", type=int, default=8)
    a = ap.parse_args()

    import torch

    from kit.data.chat_sft import pad_batch, sft_example
    from kit.data.instructions import TASKS, exact_match, train_test_instructions
    from kit.models.llm import complete, load_llm
    from kit.models.lora import apply_lora, trainable_parameters

    torch.manual_seed(0)
    model, tok = load_llm()
    train, test = train_test_instructions(4000, a.n_test * len(TASKS), seed=0)
    train = [e for e in train if e.task != a.heldout_task]

    def msgs(e):
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": e.instruction}]

    def evaluate(m) -> dict:
        m.eval()
        out = {}
        t0 = time.perf_counter()
        for task in TASKS:
            es = [e for e in test if e.task == task]
            replies = [complete(m, tok, tok.apply_chat_template(msgs(e)), temperature=0, max_new_tokens=16)
                       for e in es]
            out[task] = exact_match(replies, [e.answer for e in es])
            out[f"{task}_example"] = f"{es[0].instruction!r} → {replies[0]!r} (want {es[0].answer!r})"
        out["eval_s"] = round(time.perf_counter() - t0, 1)
        return out

    before = evaluate(model)
    print("before:", before, flush=True)
    apply_lora(model, targets=["c_attn", "c_proj", "c_fc"], r=a.rank, alpha=2 * a.rank)
    n_train, n_all = trainable_parameters(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a.lr, weight_decay=0.0)
    model.train()
    steps = tokens = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < a.seconds:
        batch = [train[(steps * a.batch + i) % len(train)] for i in range(a.batch)]
        x, y = pad_batch([sft_example(tok, msgs(e), e.answer) for e in batch], pad_id=tok.eos_token_id)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        tokens += int(x.numel())
        if steps % 10 == 0:
            print(f"step {steps} loss {loss.item():.3f} {tokens / (time.perf_counter() - t0):.0f} tokens/s", flush=True)
    train_s = time.perf_counter() - t0
    after = evaluate(model)
    print("after:", after)
    print(f"trainable {n_train:,} of {n_all:,} ({100 * n_train / n_all:.2f} %); {steps} steps in {train_s:.0f} s, "
          f"{tokens / train_s:.0f} training tokens/s; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
          f"held-out task: {a.heldout_task}; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
