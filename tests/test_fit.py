"""``kit.train.fit``'s options: every one keyword-only and explicit, one meaning in every kind of run, and
refused where it would mean nothing."""
from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

from kit.models import MLP, MLPConfig
from kit.train import Callback, Checkpoint, Trainer, accuracy, fit, warmup_cosine


def _data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=g)
    return X, (X[:, 0] > 0).long()


class _RecordingSGD(torch.optim.SGD):
    """SGD that remembers the learning rate of every step it takes."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.lrs = []

    def step(self, closure=None):
        self.lrs.append(self.param_groups[0]["lr"])
        return super().step(closure)


def _lrs(budget: dict, **schedule) -> list[float]:
    """The learning rate of each optimizer step: 40 rows in batches of 8 (5 steps an epoch) for epoch runs,
    a batch function of 8 rows for steps runs."""
    X, y = _data()
    torch.manual_seed(0)
    m = MLP(MLPConfig(2, 2, hidden=(4,)))
    opt = _RecordingSGD(m.parameters(), lr=0.1)
    if "epochs" in budget:
        train, size = (X, y), dict(batch_size=8)
    else:
        def train(step, gen):
            i = torch.randint(len(X), (8,), generator=gen)
            return X[i], y[i]
        size = {}
    fit(m, train, loss_fn=F.cross_entropy, optimizer=opt, device="cpu", progress=False, **size, **budget,
        **schedule)
    return opt.lrs


@pytest.mark.parametrize("schedule", [dict(scheduler="cosine"), dict(scheduler="cosine", warmup=3, min_lr=1e-3),
                                      dict(scheduler="cosine", min_lr=0.01), dict(warmup=4),
                                      dict(scheduler="onecycle"), dict()])
def test_a_schedule_gives_the_same_rates_counted_in_epochs_or_in_steps(schedule):
    by_epochs, by_steps = _lrs(dict(epochs=4), **schedule), _lrs(dict(steps=20), **schedule)
    assert len(by_epochs) == len(by_steps) == 20
    assert by_epochs == by_steps  # exactly
    if schedule.get("scheduler") == "cosine":
        w, lo = schedule.get("warmup", 0), schedule.get("min_lr", 0.0)
        assert by_steps == [warmup_cosine(k / 20, k, 0.1, lo, w) for k in range(20)]
        assert by_steps[0] == (0.1 / w if w else 0.1) and by_steps[-1] > lo
    if schedule == dict(warmup=4):  # a linear warm-up, then the constant rate
        assert by_steps[:4] == [0.1 * (k + 1) / 4 for k in range(4)] and set(by_steps[4:]) == {by_steps[3]}


def test_cosine_in_an_epoch_run_is_torchs_cosine_annealing_to_zero():
    """With the defaults (min_lr=0, no warm-up) an epoch run's cosine is what CosineAnnealingLR gave it before
    (to the last few bits: torch's recursive form rounds differently)."""
    lrs = _lrs(dict(epochs=4), scheduler="cosine")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)
    ref = []
    for _ in range(20):
        ref.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx(ref, rel=1e-12, abs=1e-15)


class _StopAfter(Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, trainer, row):
        trainer.stop = row["epoch"] >= self.epochs


def test_a_resumed_cosine_epoch_run_continues_its_schedule(tmp_path):
    X, y = _data(80)
    kw = dict(loss_fn=F.cross_entropy, batch_size=16, scheduler="cosine", warmup=3, min_lr=1e-3, lr=0.05,
              device="cpu", progress=False, seed=0)
    torch.manual_seed(0)
    full = MLP(MLPConfig(2, 2, hidden=(8,)))
    h_full = fit(full, (X, y), (X, y), epochs=4, **kw)
    torch.manual_seed(0)
    part = MLP(MLPConfig(2, 2, hidden=(8,)))
    fit(part, (X, y), (X, y), epochs=4, callbacks=[Checkpoint(tmp_path / "c.pt"), _StopAfter(2)], **kw)  # killed
    again = MLP(MLPConfig(2, 2, hidden=(8,)))
    h = fit(again, (X, y), (X, y), epochs=4, resume=str(tmp_path / "c.pt"), **kw)
    assert h["lr"] == h_full["lr"] and h["val_loss"] == h_full["val_loss"]
    for a, b in zip(full.parameters(), again.parameters()):
        assert torch.equal(a, b)


def test_options_are_keyword_only_and_an_unknown_one_is_a_type_error():
    X, y = _data()
    m = MLP(MLPConfig(2, 2))
    with pytest.raises(TypeError, match="warmpu"):
        fit(m, (X, y), loss_fn=F.cross_entropy, warmpu=3, progress=False)
    with pytest.raises(TypeError, match="loss_fn"):  # the task is never assumed
        fit(m, (X, y), progress=False)
    with pytest.raises(TypeError):
        fit(m, (X, y), None, F.cross_entropy)
    sig = inspect.signature(fit).parameters
    assert all(p.kind == p.KEYWORD_ONLY for name, p in sig.items() if name not in ("model", "train", "val"))
    assert not any(p.kind == p.VAR_KEYWORD for p in sig.values())


def test_fit_and_trainer_take_the_same_options_with_the_same_defaults():
    f = {k: p.default for k, p in inspect.signature(fit).parameters.items() if p.kind == p.KEYWORD_ONLY}
    t = {k: p.default for k, p in inspect.signature(Trainer).parameters.items() if p.kind == p.KEYWORD_ONLY}
    assert f.pop("resume") is None and f == t


def test_no_classification_default():
    X, y = _data()
    h = fit(MLP(MLPConfig(2, 2)), (X, y), (X, y), loss_fn=F.cross_entropy, epochs=1, device="cpu", progress=False)
    assert "val_loss" in h.data and "val_acc" not in h.data  # metrics only when asked for
    h = fit(MLP(MLPConfig(2, 2)), (X, y), (X, y), loss_fn=F.cross_entropy, metrics={"acc": accuracy}, epochs=1,
            device="cpu", progress=False)
    assert 0 <= h["val_acc"][0] <= 1


def test_grad_norm_is_logged_when_asked_in_every_kind_of_run():
    X, y = _data()
    kw = dict(loss_fn=F.cross_entropy, device="cpu", progress=False)
    assert "grad_norm" in fit(MLP(MLPConfig(2, 2)), (X, y), epochs=2, grad_norm=True, **kw).data
    assert "grad_norm" in fit(MLP(MLPConfig(2, 2)), (X, y), steps=3, grad_norm=True, **kw).data
    assert "grad_norm" not in fit(MLP(MLPConfig(2, 2)), (X, y), steps=3, clip_grad=1.0, **kw).data


def _batches(step, gen):
    X, y = _data()
    return X[:8], y[:8]


@pytest.mark.parametrize("options, message", [
    (dict(epochs=2, scheduler="onecycle", warmup=3), "'warmup' is for scheduler=None or 'cosine'"),
    (dict(epochs=2, min_lr=1e-4), "'min_lr' is where scheduler='cosine' ends"),
    (dict(steps=5, scheduler="onecycle", min_lr=1e-4), "'min_lr' is where scheduler='cosine' ends"),
    (dict(seconds=1.0, scheduler="onecycle"), "a seconds run does not know"),
    (dict(seconds=1.0, scheduler=lambda opt, n: None), "a seconds run does not know"),
    (dict(epochs=2, scheduler="linear"), "parameter 'scheduler' must be one of"),
    (dict(epochs=2, warmup=-1), "'warmup' must be >= 0"),
    (dict(epochs=2, loss_fn=None, metrics={"acc": accuracy}), "metrics need a loss_fn"),
    (dict(epochs=2, val=None, metrics={"acc": accuracy}), "metrics are computed on the validation data"),
    (dict(epochs=2, val=lambda m: 0.0, metrics={"acc": accuracy}), "metrics are computed on the validation data"),
    (dict(steps=2, train=_batches, batch_size=8), "'batch_size' applies to \\(X, y\\) tensors"),
    (dict(steps=2, train=_batches, augment=lambda xb, g: xb), "'augment' applies to \\(X, y\\) tensors"),
    (dict(epochs=2, eval_every=5), "'eval_every' is for steps and seconds runs: this epoch run"),
    (dict(epochs=2, eval_at_start=True), "'eval_at_start' is for steps and seconds runs"),
    (dict(steps=2, eval_every_s=1.0), "'eval_every_s' is for seconds runs: this step run"),
    (dict(steps=2, eval_marks=(1.0,)), "'eval_marks' is for seconds runs"),
    (dict(epochs=2, optimizer="adam", momentum=0.8), "'momentum' is for optimizer='momentum'"),
    (dict(epochs=2, optimizer="sgd", betas=(0.9, 0.9)), "'betas' is for optimizer='adam' or 'adamw'"),
    (dict(epochs=2, optimizer="adam", fused=True), "'fused' is for optimizer='adamw'"),
    (dict(epochs=2, optimizer="instance", weight_decay=0.1), "'weight_decay' builds a named optimizer"),
    (dict(epochs=2, optimizer="instance", lr=0.1), "'lr' with an Optimizer is only the peak of a schedule"),
    (dict(steps=2, resume="x.pt"), "'resume' continues an epoch run"),
])
def test_an_option_that_would_mean_nothing_is_refused(options, message):
    X, y = _data()
    m = MLP(MLPConfig(2, 2))
    options = {"loss_fn": F.cross_entropy, "train": (X, y), "val": (X, y), **options}
    if options.get("optimizer") == "instance":
        options["optimizer"] = torch.optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=message):
        fit(m, options.pop("train"), options.pop("val"), device="cpu", progress=False, **options)


def test_an_optimizer_instance_keeps_its_own_rate_unless_a_schedule_peaks_elsewhere():
    X, y = _data()
    m = MLP(MLPConfig(2, 2))
    h = fit(m, (X, y), loss_fn=F.cross_entropy, optimizer=torch.optim.SGD(m.parameters(), lr=0.05), epochs=1,
            device="cpu", progress=False)
    assert h["lr"] == [0.05]
    opt = _RecordingSGD(m.parameters(), lr=0.05)
    fit(m, (X, y), loss_fn=F.cross_entropy, optimizer=opt, batch_size=8, epochs=1, scheduler="cosine", device="cpu",
        progress=False)
    assert opt.lrs[0] == 0.05  # the cosine's peak: the optimizer's own rate


def test_training_configs_live_beside_the_engine():
    import kit.models.gpt as gpt
    from kit.train.config import PRESETS, TrainConfig, preset
    assert not hasattr(gpt, "TrainConfig") and not hasattr(gpt, "PRESETS") and not hasattr(gpt, "preset")
    cfg, tc = preset("smoke", vocab_size=65)
    assert isinstance(cfg, gpt.GPTConfig) and isinstance(tc, TrainConfig) and set(PRESETS) >= {"smoke", "cpu", "gpu"}
