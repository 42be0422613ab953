"""Unit tests of kit: parameters, device, formulas vs autograd/finite differences, the training loop."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from kit.checks import autograd_grad, finite_difference_grad, gradient_check
from kit.models import MLP, MLPConfig, l1_penalty, linear, logistic
from kit.params import Bool, Choice, Float, Int, ParameterError, validate
from kit.train import Checkpoint, EarlyStopping, accuracy, fit, load_checkpoint


# ---------------------------------------------------------------- parameters
def test_validate_accepts_good_values_and_coerces_ints_to_float():
    out = validate({"lr": 1, "seed": 3, "smoke": True, "device": "cpu"},
                   lr=Float(0, lo_open=True), seed=Int(0), smoke=Bool(), device=Choice("auto", "cpu"))
    assert out == {"lr": 1.0, "seed": 3, "smoke": True, "device": "cpu"}


@pytest.mark.parametrize("ns,rule,msg", [
    ({"lr": "fast"}, Float(0), "parameter 'lr' must be a number >= 0, got 'fast' (str)"),
    ({"lr": 0.0}, Float(0, lo_open=True), "parameter 'lr' must be a number > 0, got 0.0"),
    ({"lr": float("nan")}, Float(0), "parameter 'lr' must be a number"),
    ({"lr": True}, Float(0), "parameter 'lr'"),
])
def test_validate_float_errors(ns, rule, msg):
    with pytest.raises(ParameterError) as e:
        validate(ns, lr=rule)
    assert msg in str(e.value)


def test_validate_int_bool_choice_and_missing():
    with pytest.raises(ParameterError, match="parameter 'epochs' must be an int >= 1 and <= 5, got 9"):
        validate({"epochs": 9}, epochs=Int(1, 5))
    with pytest.raises(ParameterError, match="'epochs' must be an int"):
        validate({"epochs": 2.5}, epochs=Int(1))
    with pytest.raises(ParameterError, match="'smoke' must be True or False"):
        validate({"smoke": 1}, smoke=Bool())
    with pytest.raises(ParameterError, match="'device' must be one of 'auto', 'cpu'"):
        validate({"device": "gpu"}, device=Choice("auto", "cpu"))
    with pytest.raises(ParameterError, match="'seed' is missing"):
        validate({}, seed=Int(0))


# ---------------------------------------------------------------- device
def test_device_auto_and_errors():
    from kit.device import pick_device, seed_everything
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="parameter 'device'"):
        pick_device("tpu")
    seed_everything(1)
    a = torch.rand(3)
    seed_everything(1)
    assert torch.equal(a, torch.rand(3))


def test_import_kit_is_cheap():
    code = "import sys, kit; assert 'torch' not in sys.modules, 'import kit must not import torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- formulas shown in lessons
def _problem(n=40, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = linear.add_bias(torch.randn(n, d, generator=g, dtype=torch.float64))
    w = torch.randn(d + 1, generator=g, dtype=torch.float64)
    return X, g, w


def test_mse_gradient_matches_autograd_and_finite_differences():
    X, g, w = _problem()
    y = torch.randn(len(X), generator=g, dtype=torch.float64)
    res = gradient_check(lambda v: linear.mse(X, y, v), w, linear.mse_grad(X, y, w))
    assert res["vs_autograd"] < 1e-12 and res["vs_finite_diff"] < 1e-7


def test_three_linear_regressions_agree():
    X, g, w_true = _problem(n=200)
    y = X @ w_true + 0.1 * torch.randn(len(X), generator=g, dtype=torch.float64)
    w_cf = linear.closed_form(X, y)
    w_h, losses, _ = linear.gd_by_hand(X, y, lr=0.2, steps=2000)
    w_a = torch.zeros(X.shape[1], dtype=X.dtype, requires_grad=True)  # lesson 01's autograd loop
    opt = torch.optim.SGD([w_a], lr=0.2)
    for _ in range(2000):
        opt.zero_grad()
        linear.mse(X, y, w_a).backward()
        opt.step()
    assert (w_h - w_cf).abs().max() < 1e-8 and (w_a - w_h).abs().max() < 1e-10
    assert losses[-1] < losses[0]


def test_bce_gradient_p_minus_y_is_right_and_the_wrong_one_is_not():
    X, g, w = _problem()
    y = (torch.rand(len(X), generator=g) > 0.5).double()
    loss = lambda v: logistic.bce(X, y, v)
    right = gradient_check(loss, w, logistic.bce_grad(X, y, w))
    wrong = gradient_check(loss, w, logistic.bce_grad(X, y, w, dz=logistic.dloss_dz_wrong))
    assert right["vs_finite_diff"] < 1e-6 and right["vs_autograd"] < 1e-12
    assert wrong["vs_finite_diff"] > 1e-2


def test_finite_differences_and_autograd_on_sum_of_squares():
    x = torch.linspace(-1, 1, 7, dtype=torch.float64)
    f = lambda t: (t ** 2).sum()
    assert torch.allclose(finite_difference_grad(f, x), 2 * x, atol=1e-8)
    assert torch.allclose(autograd_grad(f, x), 2 * x)


def test_l1_penalty_value():
    m = MLP(MLPConfig(4, 2, hidden=(3,)))
    expected = 0.5 * sum(p.abs().sum() for n, p in m.named_parameters() if n.endswith("weight"))
    assert torch.isclose(l1_penalty(0.5)(m), expected)


# ---------------------------------------------------------------- training loop
def _blobs(n=600, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centers = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    X = centers[y] + 0.7 * torch.randn(n, 2, generator=g)
    return (X[:400], y[:400]), (X[400:], y[400:])


def test_fit_learns_and_loss_goes_down():
    train, val = _blobs()
    torch.manual_seed(0)
    h = fit(MLP(MLPConfig(2, 3, hidden=(16,))), train, val, loss_fn=F.cross_entropy, metrics={"acc": accuracy},
            epochs=15, lr=1e-2, progress=False)
    assert h["train_loss"][-1] < 0.5 * h["train_loss"][0]
    assert h["val_acc"][-1] > 0.9 and h["val_loss"][-1] < 0.35


def test_fit_rejects_bad_arguments():
    train, val = _blobs()
    m = MLP(MLPConfig(2, 3))
    with pytest.raises(ValueError, match="'optimizer' must be one of"):
        fit(m, train, val, loss_fn=F.cross_entropy, optimizer="adagrad", progress=False)
    with pytest.raises(ValueError, match="'epochs' must be >= 1"):
        fit(m, train, val, loss_fn=F.cross_entropy, epochs=0, progress=False)
    with pytest.raises(ValueError, match="X has 400 rows but y has 3"):
        fit(m, (train[0], train[1][:3]), loss_fn=F.cross_entropy, progress=False)
    with pytest.raises(ValueError, match="'eval_batch_size' must be >= 1"):
        fit(m, train, val, loss_fn=F.cross_entropy, eval_batch_size=0, progress=False)


def test_evaluation_in_small_batches_gives_the_same_numbers():
    train, val = _blobs()
    runs = []
    for ebs in (4096, 7):  # all 200 validation rows at once, or 7 at a time (for models too big for one pass)
        torch.manual_seed(0)
        runs.append(fit(MLP(MLPConfig(2, 3, hidden=(16,))), train, val, loss_fn=F.cross_entropy,
                        metrics={"acc": accuracy}, epochs=3, lr=1e-2, progress=False, eval_batch_size=ebs))
    assert runs[0]["val_acc"] == runs[1]["val_acc"]
    assert runs[0]["val_loss"] == pytest.approx(runs[1]["val_loss"], rel=1e-6)


def test_early_stopping_stops_and_restores_best():
    train, val = _blobs()
    torch.manual_seed(0)
    m = MLP(MLPConfig(2, 3, hidden=(64,)))
    es = EarlyStopping("val_loss", patience=2, min_delta=10.0)  # nothing counts as improvement after epoch 1
    h = fit(m, train, val, loss_fn=F.cross_entropy, epochs=50, lr=1e-2, callbacks=[es], progress=False)
    assert len(h) == 3 and es.best_epoch == 1


def _train_with_checkpoint(path, epochs, resume=None, dropout=0.2):
    train, val = _blobs()
    torch.manual_seed(0)
    m = MLP(MLPConfig(2, 3, hidden=(32,), dropout=dropout))
    h = fit(m, train, val, loss_fn=F.cross_entropy, epochs=epochs, lr=1e-2,
            callbacks=[Checkpoint(path)], progress=False, seed=0, resume=resume)
    return m, h


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    ck_full, ck_part = tmp_path / "full.pt", tmp_path / "part.pt"
    m_full, h_full = _train_with_checkpoint(ck_full, epochs=6)
    # Interrupted after 3 of 6 epochs, then resumed from the checkpoint:
    train, val = _blobs()
    torch.manual_seed(0)
    m = MLP(MLPConfig(2, 3, hidden=(32,), dropout=0.2))
    fit(m, train, val, loss_fn=F.cross_entropy, epochs=3, lr=1e-2, callbacks=[Checkpoint(ck_part)], progress=False,
        seed=0)
    torch.manual_seed(123)  # a different process state: everything needed is in the checkpoint
    m2 = MLP(MLPConfig(2, 3, hidden=(32,), dropout=0.2))
    h2 = fit(m2, train, val, loss_fn=F.cross_entropy, epochs=6, lr=1e-2, callbacks=[Checkpoint(ck_part)],
             progress=False, seed=0, resume=str(ck_part))
    assert h2["val_loss"] == h_full["val_loss"]
    for a, b in zip(m_full.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    state = load_checkpoint(ck_part)  # weights_only=True
    assert state["epoch"] == 6


def test_checkpoint_load_refuses_pickled_code(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    p = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, p)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(p)


# ---------------------------------------------------------------- the one engine: steps, seconds, own losses
class _OwnLoss(torch.nn.Module):
    """A classifier that returns its loss given the labels (the way BERT, MF and BPR do)."""

    def __init__(self, kind="dict"):
        super().__init__()
        self.net, self.kind = MLP(MLPConfig(2, 3, hidden=(16,))), kind

    def forward(self, x, y=None):
        logits = self.net(x)
        if y is None:
            return logits
        loss = F.cross_entropy(logits, y)
        return {"dict": {"loss": loss, "acc": (logits.argmax(-1) == y).float().mean()},
                "tuple": (logits, loss), "tensor": loss}[self.kind]


@pytest.mark.parametrize("kind", ["dict", "tuple", "tensor"])
def test_fit_trains_a_model_that_returns_its_own_loss(kind):
    train, val = _blobs()
    torch.manual_seed(0)
    h = fit(_OwnLoss(kind), train, val, loss_fn=None, epochs=15, lr=1e-2, progress=False)
    assert h["val_loss"][-1] < 0.35
    if kind == "dict":
        assert h["val_acc"][-1] > 0.9


def test_fit_same_run_from_tensors_and_from_an_equivalent_loss_returning_model():
    """loss_fn on (X, y) and a model returning the same loss give the same weights (same batches)."""
    train, val = _blobs()
    torch.manual_seed(0)
    a = MLP(MLPConfig(2, 3, hidden=(16,)))
    b = _OwnLoss()
    b.net.load_state_dict(a.state_dict())
    fit(a, train, val, loss_fn=F.cross_entropy, epochs=3, progress=False, seed=4)
    fit(b, train, val, loss_fn=None, epochs=3, progress=False, seed=4)
    for p, q in zip(a.parameters(), b.net.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_fit_steps_with_a_batch_function_and_a_dataloader():
    train, val = _blobs()
    X, y = train

    def batch(step, gen):
        idx = torch.randint(len(X), (32,), generator=gen)
        return X[idx], y[idx]
    torch.manual_seed(0)
    h = fit(MLP(MLPConfig(2, 3, hidden=(16,))), batch, val, loss_fn=F.cross_entropy, metrics={"acc": accuracy},
            steps=200, eval_every=50, lr=1e-2, progress=False)
    assert h["step"] == [50, 100, 150, 200] and h["val_acc"][-1] > 0.9
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=32, shuffle=False)
    h = fit(MLP(MLPConfig(2, 3, hidden=(16,))), loader, val, loss_fn=F.cross_entropy, steps=30, eval_every=10,
            scheduler="cosine", warmup=5, min_lr=1e-4, lr=1e-2, progress=False)
    assert h["step"] == [10, 20, 30] and h["lr"][-1] == pytest.approx(1e-4 + 0.5 * (1 + math.cos(math.pi * 29 / 30)) * (1e-2 - 1e-4))


def test_fit_for_seconds_stops_in_time_and_evaluates_at_the_marks():
    train, val = _blobs()
    h = fit(MLP(MLPConfig(2, 3, hidden=(16,))), train, val, loss_fn=F.cross_entropy, seconds=1.0, eval_marks=(0.4,),
            eval_every_s=0.3, progress=False)
    assert h["seconds"][-1] <= 1.0 + 0.5 and any(s <= 0.4 for s in h["seconds"])  # a slow last step may overrun
    with pytest.raises(ValueError, match="one of 'epochs', 'steps' or 'seconds'"):
        fit(MLP(MLPConfig(2, 3)), train, loss_fn=F.cross_entropy, epochs=2, steps=3, progress=False)


def test_fp16_without_bf16_uses_a_grad_scaler(monkeypatch):
    """GPUs without bf16 (T4, V100) get fp16 autocast *with* loss scaling — for every model, one path."""
    import kit.train.amp as A
    monkeypatch.setattr(A, "amp_dtype", lambda device: torch.float16)
    p = A.Precision(torch.device("cpu"), amp=True)
    assert p.dtype == torch.float16 and p.scaler is not None
    assert A.Precision(torch.device("cpu")).dtype is None  # nothing on a CPU unless asked


@pytest.mark.parametrize("budget", [{"epochs": 2}, {"steps": 5}, {"seconds": 0.3}])
def test_fit_progress_bar_in_every_mode(budget, capsys):
    train, val = _blobs()
    h = fit(MLP(MLPConfig(2, 3, hidden=(8,))), train, val, loss_fn=F.cross_entropy, progress=True, **budget)
    assert len(h.data["train_loss"]) >= 1
