"""Privacy-preserving training: federated averaging (FedAvg) and DP-SGD with Opacus.

* Federated learning, simulated: :func:`iid_split`, :func:`dirichlet_split` (label skew) cut a data set
  into clients; :func:`fedavg` trains with local ``kit.train.fit`` runs and weighted averaging of weights.
* Differential privacy: :func:`per_sample_grads` (``torch.func``: ``vmap`` of ``grad``) and
  :func:`clip_per_sample` show what DP-SGD does to each example's gradient; :func:`train_dp` trains with
  Opacus (``PrivacyEngine.make_private``: per-sample clipping, Gaussian noise, Poisson sampling, and a
  privacy accountant); :func:`epsilon_for` asks the accountant alone.
"""
from __future__ import annotations

import copy
import time
import warnings
from contextlib import contextmanager
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kit.models.base import accuracy_of

__all__ = ["iid_split", "dirichlet_split", "label_counts", "average_states", "fedavg", "per_sample_grads",
           "clip_per_sample", "train_dp", "epsilon_for", "model_accuracy", "quiet_opacus"]


def model_accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """``accuracy(model(X), y)`` in evaluation mode (the model is left in it)."""
    return accuracy_of(model.eval(), X, y)


# ---------------------------------------------------------------- federated learning
def iid_split(n: int, n_clients: int, seed: int = 0) -> list[np.ndarray]:
    """Shuffle ``n`` indices and deal them into ``n_clients`` near-equal parts (every client sees all labels)."""
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(p) for p in np.array_split(order, n_clients)]


def dirichlet_split(y, n_clients: int, alpha: float, seed: int = 0, min_size: int = 2) -> list[np.ndarray]:
    """Label-skewed (non-IID) clients: for each class, its examples are divided among the clients in
    proportions drawn from ``Dirichlet(alpha)``. Small ``alpha`` (0.1–0.5): most clients see few classes;
    large ``alpha``: close to IID. Redrawn until every client has at least ``min_size`` examples."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    for _ in range(1000):
        parts: list[list[int]] = [[] for _ in range(n_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(y == c))
            cuts = (np.cumsum(rng.dirichlet([alpha] * n_clients)) * len(idx)).astype(int)[:-1]
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.array(p, dtype=np.int64)) for p in parts]
    raise ValueError(f"could not give every one of {n_clients} clients {min_size} examples with alpha={alpha}")


def label_counts(y, splits: list[np.ndarray], n_classes: int | None = None) -> np.ndarray:
    """``counts[k, c]``: examples of class ``c`` held by client ``k``."""
    y = np.asarray(y)
    n_classes = n_classes or int(y.max()) + 1
    return np.stack([np.bincount(y[s], minlength=n_classes) for s in splits])


def average_states(states: list[dict], weights: list[float]) -> dict:
    """The weighted average of state_dicts: FedAvg's server step (weights ∝ clients' data sizes)."""
    w = torch.tensor(weights, dtype=torch.float64)
    w = w / w.sum()
    return {k: sum(wi * s[k].double() for wi, s in zip(w, states)).to(states[0][k].dtype) for k in states[0]}


def fedavg(make_model: Callable[[], nn.Module], clients: list[tuple[torch.Tensor, torch.Tensor]],
           test: tuple[torch.Tensor, torch.Tensor], rounds: int = 20, local_epochs: int = 1, lr: float = 0.05,
           batch_size: int = 16, fraction: float = 1.0, seed: int = 0, optimizer: str = "sgd") -> dict:
    """Federated averaging (McMahan et al., 2017).

    Each round the server sends the global weights to a random ``fraction`` of clients; each trains
    ``local_epochs`` on its own data only (``kit.train.fit``); the server averages the returned weights,
    weighted by the clients' data sizes. Data never leaves a client — only weights travel.
    Returns ``{"test_acc": [after each round], "model": global model, "seconds": …}``.
    """
    from kit.train import fit
    rng = np.random.default_rng(seed)
    global_model = make_model()
    sizes = [len(c[0]) for c in clients]
    m = max(1, round(fraction * len(clients)))
    accs, t0 = [], time.perf_counter()
    for r in range(rounds):
        chosen = np.sort(rng.choice(len(clients), size=m, replace=False))
        states = []
        for k in chosen:
            local = copy.deepcopy(global_model)
            fit(local, clients[k], loss_fn=F.cross_entropy, epochs=local_epochs, batch_size=batch_size,
                optimizer=optimizer, lr=lr, device="cpu", seed=seed * 100_003 + r * 1009 + int(k), progress=False)
            states.append(local.state_dict())
        global_model.load_state_dict(average_states(states, [sizes[k] for k in chosen]))
        accs.append(model_accuracy(global_model, *test))
    return {"test_acc": accs, "model": global_model, "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------- differential privacy
def per_sample_grads(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                     loss_fn: Callable = F.cross_entropy) -> dict[str, torch.Tensor]:
    """``{name: (N, *param.shape)}``: each example's own gradient, by ``torch.func.vmap(grad(loss))``."""
    from torch.func import functional_call, grad, vmap
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def loss_one(p, x, t):
        out = functional_call(model, (p, buffers), (x.unsqueeze(0),))
        return loss_fn(out, t.unsqueeze(0))
    return vmap(grad(loss_one), in_dims=(None, 0, 0))(params, X, y)


def clip_per_sample(grads: dict[str, torch.Tensor], max_norm: float) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """DP-SGD's clipping: scale each example's whole gradient (all parameters together) to norm ≤ ``max_norm``.

    Returns ``(clipped grads, norms before, norms after)``; factor ``min(1, C / ‖g_i‖)``.
    """
    n = next(iter(grads.values())).shape[0]
    norms = torch.sqrt(sum(g.reshape(n, -1).pow(2).sum(1) for g in grads.values()))
    factor = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    clipped = {k: g * factor.view(-1, *([1] * (g.ndim - 1))) for k, g in grads.items()}
    after = torch.sqrt(sum(g.reshape(n, -1).pow(2).sum(1) for g in clipped.values()))
    return clipped, norms, after


@contextmanager
def quiet_opacus():
    """Hide Opacus's repeated notes (secure RNG off — fine for teaching, not for production; alpha range)."""
    with warnings.catch_warnings():
        _filters()
        yield


def _filters():
    warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG turned off.*")
    warnings.filterwarnings("ignore", message=".*Optimal order is the (largest|smallest) alpha.*")
    warnings.filterwarnings("ignore", message=".*[Ff]ull backward hook.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module="opacus")


def train_dp(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor], *,
             noise_multiplier: float, max_grad_norm: float = 1.0, epochs: int = 10, batch_size: int = 64,
             lr: float = 0.1, momentum: float = 0.0, delta: float = 1e-5, seed: int = 0,
             accountant: str = "rdp") -> dict:
    """DP-SGD with Opacus: ``PrivacyEngine(accountant).make_private(…)`` on a ``DataLoader``.

    Opacus replaces the loader by **Poisson sampling** (each example joins each batch independently with
    probability ``batch_size / n`` — the sampling the accountant's guarantee assumes), computes
    per-sample gradients, clips each to ``max_grad_norm``, sums them, adds ``N(0, (σ·C)²)`` noise and
    divides by the expected batch size. ``noise_multiplier=0`` trains the same way without noise (ε = ∞).
    Returns ``{"epsilon", "delta", "test_acc": [per epoch], "steps", "sample_rate", "model", "seconds"}``.
    """
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset
    X, y = train
    loader = DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    model.train()  # Opacus validates the model in training mode
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    with quiet_opacus():
        engine = PrivacyEngine(accountant=accountant, secure_mode=False)
        dp_model, dp_opt, dp_loader = engine.make_private(
            module=model, optimizer=opt, data_loader=loader, noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm, poisson_sampling=True,
            noise_generator=torch.Generator().manual_seed(seed + 1))
        accs, steps, t0 = [], 0, time.perf_counter()
        for _ in range(epochs):
            dp_model.train()
            for xb, yb in dp_loader:
                if len(xb) == 0:  # Poisson sampling can draw an empty batch
                    continue
                dp_opt.zero_grad(set_to_none=True)
                F.cross_entropy(dp_model(xb), yb).backward()
                dp_opt.step()
                steps += 1
            accs.append(model_accuracy(dp_model, *test))
        eps = engine.get_epsilon(delta) if noise_multiplier > 0 else float("inf")
    return {"epsilon": eps, "delta": delta, "test_acc": accs, "steps": steps,
            "sample_rate": 1 / len(dp_loader), "model": dp_model._module if hasattr(dp_model, "_module") else dp_model,
            "seconds": time.perf_counter() - t0, "accountant": accountant}


def epsilon_for(noise_multiplier: float, sample_rate: float, steps: int, delta: float = 1e-5,
                accountant: str = "rdp") -> float:
    """ε after ``steps`` noisy steps at Poisson rate ``sample_rate`` — the accountant alone, no training."""
    from opacus.accountants import create_accountant
    if noise_multiplier <= 0:
        return float("inf")
    acc = create_accountant(accountant)
    acc.history = [(noise_multiplier, sample_rate, steps)]
    with quiet_opacus():
        return float(acc.get_epsilon(delta))
