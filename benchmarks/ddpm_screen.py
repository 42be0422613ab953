"""Lesson 17's DDPM variants, judged as the lesson judges them (RESULTS.md: "Lesson 17's DDPM").

Trains one DDPM variant on lesson 17's 3 500 training digits for a fixed number of steps, samples 50 of each digit
with each sampler and guidance scale, and prints one line: confident fraction (judge p ≥ 0.9), match (judged as
the digit asked for), class coverage (bits) and Fréchet distance to 500 held-out digits (the floor is ≈ 76.5).
Sample quality after a fixed number of steps does not depend on machine load, so screens can share the cores.

    python benchmarks/ddpm_screen.py '{"pred": "v", "film": true, "p_uncond": 0.1, "T": 50, "ws": [1.5],
                                       "samplers": ["ddim10", "ddpm"]}'

Keys (defaults): width 16, T 100, steps 1200, lr 2e-3, bs 64, film false, pred "eps", p_uncond 0, ws [1.0]
(guidance scales), samplers ["ddim25", "ddpm"] ("ddimK": DDIM with K steps; "ddpm": T steps, x̂₀ clipped), seed 0.
The judge (lesson 17's CNN, 8 epochs) is cached in $TMPDIR/judge17.pt. Takes ~5 min per variant at 1 thread.
"""
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    import torch

    import kit
    import kit.data
    import kit.data.augment
    from kit.data.vision_datasets import vision_split
    from kit.models import diffusion as D
    from kit.models.base import accuracy
    from kit.models.cnn import CNN, CNNConfig
    from kit.techniques import judge as J
    from kit.train import fit

    argv = sys.argv[1:] if argv is None else argv
    o = dict(width=16, T=100, steps=1200, lr=2e-3, bs=64, film=False, pred="eps", p_uncond=0.0, ws=[1.0],
             samplers=["ddim25", "ddpm"], seed=0)
    o.update(json.loads(argv[0]) if argv else {})
    kit.setup(o["seed"], "cpu", threads=int(os.environ.get("KIT_THREADS", 1)), quiet=True)
    data = kit.data.load("mnist_5k")
    tr, va, te = vision_split(data, seed=0, test_size=1000, val_size=500)
    X, y = torch.tensor(data.X, dtype=torch.float32).view(-1, 1, 28, 28), torch.tensor(data.y)
    cache = Path(tempfile.gettempdir()) / "judge17.pt"
    judge = CNN(CNNConfig(channels=(16, 32, 64), dropout=0.25))
    if cache.exists():
        judge.load_state_dict(torch.load(cache, weights_only=True))
    else:
        torch.manual_seed(0)
        aug = kit.data.augment.random_affine(max_rotate=10, max_shift=0.1, scale=(0.9, 1.1))
        fit(judge, (X[tr], y[tr]), (X[va], y[va]), loss_fn=torch.nn.functional.cross_entropy, metrics={"acc": accuracy},
            epochs=8, batch_size=128, optimizer="adamw", lr=3e-3, weight_decay=5e-4, scheduler="onecycle", augment=aug,
            seed=0, progress=False)
        torch.save(judge.state_dict(), cache.with_suffix(".tmp"))
        os.replace(cache.with_suffix(".tmp"), cache)
    judge.eval()
    _, feats_real = J.judge_outputs(judge, X[te[:500]])

    torch.manual_seed(o["seed"])
    m = D.DDPM(D.DDPMConfig(T=o["T"], width=o["width"], n_classes=10, film=o["film"], pred=o["pred"],
                            p_uncond=o["p_uncond"]))
    t0 = time.perf_counter()
    fit(m, (X[tr], y[tr]), steps=o["steps"], loss_fn=None, batch_size=o["bs"], optimizer="adamw", lr=o["lr"],
        scheduler="cosine", warmup=max(1, o["steps"] // 20), seed=o["seed"], progress=False)
    res = {"train_s": round(time.perf_counter() - t0, 1)}
    m.eval()
    ye = torch.arange(10).repeat(50)
    for w in o["ws"]:
        for sm in o["samplers"]:
            g = torch.Generator().manual_seed(3)
            t0 = time.perf_counter()
            imgs = (D.ddim_sample(m, ye, steps=int(sm[4:]), generator=g, guidance=w) if sm.startswith("ddim")
                    else D.ddpm_sample(m, ye, generator=g, guidance=w))
            p, f = J.judge_outputs(judge, imgs)
            res[f"{sm} w={w}"] = {"confident": round(J.confident_fraction(p), 3),
                                  "match": round(accuracy(p, ye), 3),
                                  "coverage": round(J.class_coverage(p), 2),
                                  "fd": round(J.frechet_distance(f, feats_real), 1),
                                  "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(o), json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
