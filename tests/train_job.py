"""A small training job for the fault-tolerance test: ``python tests/train_job.py CKPT OUT EPOCHS [SLEEP]``."""
import json
import sys
import time

import torch
import torch.nn.functional as F

from kit.models import MLP, MLPConfig
from kit.train import Callback, Checkpoint, accuracy, fit


class Slow(Callback):
    def __init__(self, seconds):
        self.seconds = seconds

    def on_epoch_end(self, trainer, row):
        time.sleep(self.seconds)


def main(ckpt, out, epochs, sleep=0.0):
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (600,), generator=g)
    X = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])[y] + 0.8 * torch.randn(600, 2, generator=g)
    torch.manual_seed(0)
    model = MLP(MLPConfig(2, 3, hidden=(32, 32), dropout=0.3))
    h = fit(model, (X[:400], y[:400]), (X[400:], y[400:]), loss_fn=F.cross_entropy, metrics={"acc": accuracy},
            epochs=epochs, lr=1e-2, batch_size=32, seed=0, scheduler="onecycle",
            callbacks=[Checkpoint(ckpt), Slow(sleep)], progress=False, resume=ckpt)
    weights = float(sum(p.double().sum() for p in model.parameters()))
    with open(out, "w") as f:
        json.dump({"val_loss": h["val_loss"], "val_acc": h["val_acc"], "weights": weights}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else 0.0)
