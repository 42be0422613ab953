"""Time-to-98 %: lesson 04's default CNN recipe on the embedded MNIST split, median of 3 runs.

Each run trains exactly like ``notebooks/04_cnn_digits`` with its defaults (3 500 training images,
1 000 fixed test images, 3 conv blocks of width 16/32/64 with batch norm, dropout 0.25 before the
linear layer, AdamW + one-cycle over 30 epochs, random affine augmentation, batch 128) with a different seed, evaluates the test set after
every epoch *outside* the clock, and reports the training seconds until test accuracy first reached
98 % (and the final accuracy). Prints a table; nothing is asserted.

    python benchmarks/time_to_98.py [--runs 3] [--epochs 30] [--threads 2] [--target 0.98]

Wall-clock numbers depend on everything else the machine is doing: the table states the thread count,
the load average and the process CPU time so that numbers from a busy machine can be read honestly.
On a busy machine, ``OMP_WAIT_POLICY=PASSIVE`` keeps idle OpenMP threads from spinning.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def one_run(seed: int, epochs: int, target: float, data, split, dev) -> dict:
    import torch

    from kit.data.augment import augment
    from kit.device import seed_everything
    from kit.models.base import accuracy_of
    from kit.models.cnn import CNN, CNNConfig
    import torch.nn.functional as F

    from kit.train import Callback, accuracy, fit

    tr, va, te = split
    X = torch.tensor(data.X, dtype=torch.float32).view(-1, 1, 28, 28)
    y = torch.tensor(data.y, dtype=torch.long)
    Xte, yte = X[te].to(dev), y[te].to(dev)

    class TestEvery(Callback):  # runs after the epoch's seconds were logged: not on the clock
        def __init__(self):
            self.acc, self.cpu, self.c0 = [], [], time.process_time()

        def on_epoch_end(self, trainer, row):
            self.cpu.append(time.process_time() - self.c0)
            m = trainer.model
            self.acc.append(accuracy_of(m.eval(), Xte, yte))
            self.c0 = time.process_time()

    seed_everything(seed)
    torch.manual_seed(seed)
    model = CNN(CNNConfig(channels=(16, 32, 64), dropout=0.25))
    cb = TestEvery()
    hist = fit(model, (X[tr], y[tr]), (X[va], y[va]), loss_fn=F.cross_entropy, metrics={"acc": accuracy},
               epochs=epochs, batch_size=128, optimizer="adamw", lr=3e-3, weight_decay=5e-4, scheduler="onecycle", augment=augment, device=dev, seed=seed, progress=False,
               callbacks=[cb])
    secs = list(hist["seconds"])
    hit = next((i for i, a in enumerate(cb.acc) if a >= target), None)
    return {"seed": seed, "epoch": None if hit is None else hit + 1,
            "seconds": None if hit is None else sum(secs[:hit + 1]),
            "cpu": None if hit is None else sum(cb.cpu[:hit + 1]),
            "final_acc": cb.acc[-1], "total_seconds": sum(secs), "total_cpu": sum(cb.cpu)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("KIT_THREADS") or 2))
    ap.add_argument("--target", type=float, default=0.98)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import torch

    import kit.data
    from kit.data.vision_datasets import vision_split
    from kit.device import pick_device, set_threads

    threads = set_threads(args.threads)
    dev = pick_device(args.device)
    data = kit.data.load("mnist_5k", verbose=False)
    split = vision_split(data, seed=0, test_size=1000, val_size=500)
    load_before = os.getloadavg()[0]
    rows = [one_run(seed, args.epochs, args.target, data, split, dev) for seed in range(args.runs)]
    load_after = os.getloadavg()[0]

    fmt = lambda v, spec: "—" if v is None else format(v, spec)  # noqa: E731
    print(f"time to {args.target:.0%} test accuracy — lesson 04 defaults ({args.epochs} epochs one-cycle), "
          f"{len(split[0])} train / {len(split[2])} test images (embedded MNIST, fixed split)")
    print(f"device {dev}, {threads} torch threads, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}; load average {load_before:.1f} → {load_after:.1f}; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    print()
    print(f"| run | seed | epoch reached | seconds to {args.target:.0%} | CPU s to {args.target:.0%} | final test acc "
          f"| total training s | total CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(rows):
        print(f"| {i + 1} | {r['seed']} | {fmt(r['epoch'], 'd')} | {fmt(r['seconds'], '.1f')} | {fmt(r['cpu'], '.1f')} "
              f"| {r['final_acc']:.3f} | {r['total_seconds']:.1f} | {r['total_cpu']:.1f} |")
    reached = [r["seconds"] for r in rows if r["seconds"] is not None]
    med = statistics.median(reached) if len(reached) == len(rows) else None
    print(f"| **median** | | | **{fmt(med, '.1f')}** | | {statistics.median(r['final_acc'] for r in rows):.3f} "
          f"| {statistics.median(r['total_seconds'] for r in rows):.1f} | |")
    if med is None:
        print(f"\n{len(rows) - len(reached)} of {len(rows)} runs never reached {args.target:.0%}: no median time.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
