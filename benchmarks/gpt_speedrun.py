"""GPT speedrun ablation: what lowers lesson 09's validation loss per second of training on tiny-shakespeare.

Each change alone on top of lesson 09's former CPU preset (``cpu_adamw``), then the changes cumulatively (in the
order listed; the first four make today's ``cpu`` preset), trained for ``--seconds`` (the cosine follows the
budget, as in the lesson) or for ``--steps`` (per-step quality, which machine load cannot change). Reports
validation loss at 60 s and at the end (median and mean over ``--seeds``) and tokens/s.

    python benchmarks/gpt_speedrun.py [--seconds 180 | --steps 3000] [--seeds 0,1,2]
                                      [--only "baseline,muon + batch32 + ctx128 + min_lr"] [--threads 2] [--write]

``--write`` merges each variant, as soon as it is measured, into kit/data/embedded/gpt_speedrun.json (with its loss curves;
shown by lesson 09) and the table in benchmarks/RESULTS.md (the kept, hand-measured section): ``--only`` re-measures
some rows and keeps the others. A full run is 16 variants × seeds × seconds:
about 160 minutes at the defaults, on a quiet machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# the starting point: lesson 09's CPU preset before issue 19 (AdamW, learned positions, GELU, tied head)
BASELINE = "cpu_adamw"
# name → (model changes, training changes, why it might help)
CHANGES = {   # kept (lesson 09's cpu preset now), in this order, then tried and not kept
    "muon": ({}, {"optimizer": "muon"}, "Muon: orthogonalised updates for the blocks' matrices, larger useful steps"),
    "batch32": ({}, {"batch_size": 32}, "32 windows per step: Muon's per-step cost shared by twice the tokens"),
    "ctx128": ({"block_size": 128}, {}, "128 characters of context: a lower reachable loss, attention still cheap"),
    "min_lr": ({}, {"min_lr": 8e-5}, "the cosine decays to lr/100, not lr/10: the last steps settle further"),
    "rope": ({"pos": "rope"}, {}, "rotary positions: attention sees relative offsets; no position table to learn"),
    "qk_norm": ({"qk_norm": True}, {}, "RMS-normalised queries and keys: bounded logits tolerate a higher lr"),
    "relu2": ({"activation": "relu2"}, {}, "ReLU²: cheaper than GELU, sparse, trains as well or better"),
    "untied": ({"tie_weights": False}, {}, "separate output layer: input and output roles need not share a matrix"),
}


def run_one(model_kw: dict, train_kw: dict, seed: int, seconds: float | None, steps: int | None, data) -> dict:
    import torch

    from kit.models.gpt import GPT
    from kit.train import train_gpt
    from kit.train.config import preset
    vocab_size, train_ids, val_ids = data
    cfg, tc = preset(BASELINE, vocab_size=vocab_size)
    cfg, tc = replace(cfg, **model_kw), replace(tc, **train_kw)
    if steps:
        tc.steps, tc.eval_every = steps, max(1, steps // 4)
    torch.manual_seed(seed)
    run = train_gpt(GPT(cfg), train_ids, val_ids, tc, seconds=seconds, eval_marks=(60.0,) if seconds else (),
                    eval_every_s=30.0, device="cpu", seed=seed, progress=False)
    h = run.history
    return {"seed": seed, "val_60": run.val_loss_at(60.0) if seconds else None, "val_end": run.final_val_loss,
            "tokens_per_s": run.tokens_per_s, "steps": run.steps,
            "seconds": [round(float(x), 2) for x in h["seconds"]], "val_loss": [round(float(x), 4) for x in h["val_loss"]]}


def variants(only: set[str]) -> list[tuple[str, dict, dict]]:
    out = [("baseline (lesson 09's CPU preset before)", {}, {})]
    for name, (m, t, _) in CHANGES.items():
        out.append((f"+ {name} alone", m, t))
    cum_m, cum_t, names = {}, {}, []
    for name, (m, t, _) in CHANGES.items():
        cum_m, cum_t = cum_m | m, cum_t | t
        names.append(name)
        if len(names) > 1:
            out.append(("+ " + " + ".join(names), dict(cum_m), dict(cum_t)))
    if only:   # exact names first ("muon", "muon + batch32", "baseline"), else substrings
        short = lambda n: "baseline" if n.startswith("baseline") else n.removeprefix("+ ").removesuffix(" alone")
        exact = [v for v in out if short(v[0]) in only]
        out = exact if len(exact) == len(only) else [v for v in out if any(o in v[0] for o in only)]
    return out


COLS = ("| variant | val loss at 60 s: median (mean) | val loss at end: median (mean) | tokens/s | steps | seeds | measured |\n"
        "|---|---|---|---|---|---|---|")


def table_line(row: dict) -> str:
    """One row of the table: median (mean) over the row's seeds."""
    rs = row["runs"]
    vals = lambda k: None if any(r[k] is None for r in rs) else [r[k] for r in rs]  # noqa: E731
    fmt = lambda v, f: "—" if v is None else format(v, f)  # noqa: E731
    both = lambda k: (f"{fmt(statistics.median(vals(k)), '.3f')} ({fmt(statistics.mean(vals(k)), '.3f')})"  # noqa: E731
                      if vals(k) else "—")
    return (f"| {row['variant']} | {both('val_60')} | {both('val_end')} | "
            f"{fmt(statistics.mean(r['tokens_per_s'] for r in rs), ',.0f')} | "
            f"{fmt(statistics.mean(r['steps'] for r in rs), ',.0f')} | {len(rs)} | {row.get('measured', '')[:16]} |")


def write(row: dict, budget: str, threads: int) -> None:
    """Merge one measured variant into kit/data/embedded/gpt_speedrun.json (lesson 09 shows it; it ships with kit) and RESULTS.md's table.

    Rows measured at another budget are dropped; the rows keep the order of ``variants()``."""
    import json

    from run import KEPT  # benchmarks/run.py: the section it keeps
    out = Path(__file__).resolve().parents[1] / "kit" / "data" / "embedded" / "gpt_speedrun.json"
    old = json.loads(out.read_text()) if out.exists() else {}
    by_name = {r["variant"]: r for r in old.get("rows", []) if r.get("budget", budget) == budget}
    by_name[row["variant"]] = row
    order = [v[0] for v in variants(set())]
    rows = sorted(by_name.values(), key=lambda r: order.index(r["variant"]) if r["variant"] in order else len(order))
    head = (f"GPT speedrun ablation — from lesson 09's AdamW preset (cpu_adamw) on tiny-shakespeare, {budget}, "
            f"{threads} threads, a quiet machine; each row: median (mean) over its seeds, and when it was measured")
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"head": head, "rows": rows}, indent=1))
    os.replace(tmp, out)   # never half-written

    results = Path(__file__).parent / "RESULTS.md"
    text = results.read_text()
    block = f"### gpt_speedrun.py\n\n{head}\n\n{COLS}\n" + "\n".join(table_line(r) for r in rows) + "\n"
    head_line = "\n### gpt_speedrun.py\n"  # its own section only, not the screens headed "### gpt_speedrun.py — …"
    if head_line in text:
        a = text.index(head_line) + 1
        b = text.find("\n### ", a + 1)
        text = text[:a] + block + ("" if b < 0 else text[b:])
    else:
        text = text.rstrip() + ("\n\n" if KEPT in text else f"\n\n{KEPT}\n\n") + block
    results.write_text(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--steps", type=int, default=0, help="train a fixed number of steps instead of --seconds")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--only", default="", help="comma-separated variant names (e.g. baseline,muon + batch32) or substrings")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--lr", type=float, default=0.0, help="peak learning rate for every variant (0: the preset's)")
    ap.add_argument("--write", action="store_true", help="write the table into benchmarks/RESULTS.md")
    args = ap.parse_args(argv)

    from kit.device import set_threads
    from kit.text import char_corpus
    threads = set_threads(args.threads)
    corpus, vocab, train_ids, val_ids = char_corpus("tinyshakespeare", 0.1)
    data = (len(vocab), train_ids, val_ids)
    seeds = [int(s) for s in args.seeds.split(",")]
    seconds, steps = (None, args.steps) if args.steps else (args.seconds, None)
    budget = f"{steps} steps" if steps else f"{seconds:.0f} s of training"
    head = (f"GPT speedrun ablation — from lesson 09's AdamW preset (cpu_adamw) on {corpus.description.split(':')[0]}, {budget}, seeds {seeds}, "
            f"{threads} threads, load average {os.getloadavg()[0]:.1f} at the start ({time.strftime('%Y-%m-%d %H:%M')})")
    print(head, flush=True)
    print(COLS, flush=True)
    for name, m, t in variants({o.strip() for o in args.only.split(",") if o.strip()}):
        t = t | ({"lr": args.lr} if args.lr else {})
        rs = [run_one(m, t, s, seconds, steps, data) for s in seeds]
        row = {"variant": name, "model": m, "train": t, "budget": budget, "threads": threads,
               "measured": f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.1f} at the end",
               "runs": rs}
        print(table_line(row), flush=True)
        if args.write:   # after every variant: a long run that is stopped keeps what it measured
            write(row, budget, threads)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
