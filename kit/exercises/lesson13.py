"""Lesson 13 exercises: federated averaging, per-example clipping, the noisy mean of DP-SGD, membership inference."""
from __future__ import annotations

import math

import numpy as np
import torch

from kit.exercises import Case, compare, function, prop, raised_message, randn as _t
from kit.exercises.declare import Budget, Headline, LessonEntry


# ------------------------------------------------------------------ 13.1 a FedAvg round with a server learning rate

def _fedavg_round(global_weights, client_weights, client_sizes, server_lr=1.0):
    n = float(sum(client_sizes))
    out = {}
    for k, w in global_weights.items():
        avg_delta = sum((s / n) * (cw[k] - w) for cw, s in zip(client_weights, client_sizes))
        out[k] = w + server_lr * avg_delta
    return out


def _state(rng, shapes, scale=1.0):
    return {k: _t(rng, *s, scale=scale) for k, s in shapes.items()}


def _fedavg_cases(rng):
    shapes = {"fc.weight": (3, 4), "fc.bias": (3,)}
    c = int(rng.integers(2, 7))
    g = _state(rng, shapes)
    sizes = [int(s) for s in rng.integers(1, 500, size=c)]
    yield Case(f"{c} clients of sizes {sizes}, server_lr = 1 (plain FedAvg)",
               (g, [_state(rng, shapes) for _ in range(c)], sizes, 1.0))
    yield Case("one client: the server adopts a server_lr share of its change",
               (g, [_state(rng, shapes)], [int(rng.integers(1, 100))], 0.5))
    yield Case("very unequal sizes (1 and 999), server_lr = 1",
               (g, [_state(rng, shapes), _state(rng, shapes)], [1, 999], 1.0))
    yield Case("server_lr = 0.3 (a damped server step)", (g, [_state(rng, shapes) for _ in range(3)], [10, 20, 30], 0.3))
    yield Case("server_lr = 1.5 (an extrapolating server step)",
               (g, [_state(rng, shapes) for _ in range(2)], [50, 50], 1.5))


function("13.1", "one FedAvg round with a server learning rate: w + η·Σ (n_k/n)(w_k − w)",
         reference=_fedavg_round, cases=_fedavg_cases, atol=1e-10, rtol=1e-8,
         hints=("Work key by key: every entry of the state dicts is averaged separately, and the result is a dict "
                "with the same keys.",
                "Each client's change is its weights minus the global ones; weight client k by its share n_k / n "
                "of all the examples (not 1 / number of clients).",
                "With server_lr = 1 your result must be exactly the size-weighted average of the clients' weights; "
                "server_lr scales how far the server moves toward it."))


# ------------------------------------------------------------------ 13.2 clipping each example's gradient

def _clip(grads, C):
    norms = grads.norm(dim=1, keepdim=True)
    factor = torch.where(norms > C, C / norms.clamp_min(1e-300), torch.ones_like(norms))
    return grads * factor


def _clip_cases(rng):
    n, d = int(rng.integers(4, 30)), int(rng.integers(2, 20))
    C = float(rng.uniform(0.5, 3))
    yield Case(f"{n} examples × {d} numbers, C = {C:.2f}", (_t(rng, n, d, scale=1.5), C))
    small = _t(rng, 5, d)
    small = small / small.norm(dim=1, keepdim=True) * torch.tensor([[0.1], [0.5], [0.9], [0.99], [0.3]], dtype=torch.float64)
    yield Case("every row already has norm < C: nothing changes", (small, 1.0))
    yield Case("a row of zeros (no NaN)", (torch.cat([torch.zeros(1, d, dtype=torch.float64), _t(rng, 3, d, scale=4)]), 1.0))
    yield Case("one example, huge gradient (norm ~1e6)", (_t(rng, 1, d, scale=1e6), 0.5))
    yield Case("C much larger than every norm", (_t(rng, 6, d), 1e3))


function("13.2", "clip each example's gradient (each row) to norm ≤ C",
         reference=_clip, cases=_clip_cases, atol=1e-7, rtol=1e-5,
         hints=("Clip each row on its own, by the row's own Euclidean norm — not the whole matrix at once, and not "
                "element by element (that changes the direction).",
                "Scale row i by min(1, C / ‖g_i‖): rows already inside the ball stay exactly as they were.",
                "A row of zeros has norm 0: make sure you never compute 0 / 0."))


# ------------------------------------------------------------------ 13.3 the noisy mean (property)

_REPS = 300  # calls with noise: enough for a standard deviation within ±7 % and a correlation test


def _noisy_mean_calls(rng):
    n, d, C = 8, 400, 2.0
    grads = _t(rng, n, d, scale=3.0)  # norms ≈ 60 ≫ C: clipping matters
    yield Case("sigma = 0", (grads, C, 0.0))
    for _ in range(_REPS):
        yield Case("sigma = 1.5", (grads, C, 1.5))


def _noisy_mean_test(cases, outcomes):
    outcomes = list(outcomes)
    grads, C, _ = cases[0].args
    n, d = grads.shape
    sigma = cases[1].args[2]
    want_mean = _clip(grads, C).mean(0)
    for case, got in zip(cases, outcomes):
        if got.raised:
            return raised_message(got, f"with {case.label}")
    msg = compare(outcomes[0].value, want_mean, 1e-6, 1e-4, "with sigma = 0 (no noise) its result")
    if msg:
        return msg + " — without noise it must be the mean of the CLIPPED per-example gradients"
    try:
        outs = torch.stack([torch.as_tensor(o.value).double() for o in outcomes[1:]])
    except Exception as e:  # noqa: BLE001 - whatever the learner's function returned
        return f"with sigma = {sigma} its results are not tensors of one shape ({type(e).__name__}: {e})"
    reps = len(outs)
    if outs.shape != (reps, d):
        return f"its result has shape {tuple(outs.shape[1:])}, expected ({d},)"
    noise = outs - want_mean
    want_std = sigma * C / n
    # independence first: with one shared draw the pooled standard deviation rests on only `reps` numbers
    corr = torch.corrcoef(noise[:, :50].T)
    off = (corr - torch.eye(50, dtype=corr.dtype)).abs().max().item()
    if off > 0.45:
        return "the noise is correlated across coordinates: draw an independent Gaussian for every coordinate"
    std = noise.std().item()
    if not 0.93 * want_std < std < 1.07 * want_std:
        return (f"the noise in its result has standard deviation {std:.4g}, expected σ·C/n = {want_std:.4g} "
                f"(n = {n}, C = {C:g}, σ = {sigma:g})")
    z = noise.mean(0).abs().max().item() / (want_std / math.sqrt(reps))
    if z > 5.5:
        return "its results do not average out to the mean of the clipped gradients: the noise should have mean 0"
    return None


prop("13.3", "DP-SGD's noisy mean: clip, sum, add N(0, σ²C²) to the sum, divide by n",
     _noisy_mean_test, calls=_noisy_mean_calls,
     hints=("Clip first (exercise 13.2), then sum over the examples, then add the noise, then divide: the order "
            "matters for how large the noise is.",
            "The noise is added once to the SUM of the clipped gradients — one Gaussian number per coordinate, not "
            "one per example — with standard deviation σ·C.",
            "Check yourself: with sigma = 0 you should get the mean of the clipped gradients, and the standard "
            "deviation of your result's noise should shrink like 1/n with n examples."))


# ------------------------------------------------------------------ 13.4 membership inference

def _attack_accuracy(member_losses, nonmember_losses):
    m = np.asarray(member_losses, dtype=float)
    o = np.asarray(nonmember_losses, dtype=float)
    best = 0.5  # τ below every loss: everyone is called a non-member
    for tau in np.concatenate([m, o]):
        acc = 0.5 * ((m <= tau).mean() + (o > tau).mean())
        best = max(best, acc)
    return float(best)


def _mia_cases(rng):
    n, k = int(rng.integers(20, 80)), int(rng.integers(20, 80))
    yield Case(f"{n} members with lower losses than {k} non-members (overlapping)",
               (rng.exponential(0.3, n), rng.exponential(1.0, k)))
    yield Case("members and non-members from the same distribution (near ½)",
               (rng.exponential(1.0, 50), rng.exponential(1.0, 50)))
    yield Case("perfectly separated: every member loss below every non-member loss",
               (rng.uniform(0, 0.1, 10), rng.uniform(1, 2, 30)))
    yield Case("ties: the same loss values on both sides", (np.array([0.1, 0.2, 0.2, 0.5]), np.array([0.2, 0.5, 0.5, 0.9])))
    yield Case("one member, one non-member", (np.array([0.3]), np.array([0.7])))
    yield Case("10 members with HIGHER losses than 25 non-members (the rule cannot do better than ½)",
               (rng.uniform(1, 2, 10), rng.uniform(0, 0.5, 25)))


function("13.4", "the best balanced accuracy of a loss-threshold membership-inference attack",
         reference=_attack_accuracy, cases=_mia_cases, atol=1e-12,
         hints=("The attack says “member” when an example's loss is ≤ τ; its balanced accuracy is the average of the "
                "fraction of members it catches and the fraction of non-members it clears.",
                "Only thresholds equal to one of the observed losses (plus one below all of them) give different "
                "answers: try each and keep the best.",
                "Watch the ties: with “≤ τ” an example whose loss equals τ counts as a member — and member and "
                "non-member lists may have different lengths, so average the two rates, not the examples."))


# -------------------------------------------------------------------------------------- the lesson


def smoke_bar(m: dict) -> bool:
    """What a run with ``smoke=True`` must show in its metrics.json (the tests hold the lesson to it)."""
    eps = m["dp_epsilons"]
    return (m["fedavg_iid_acc"] > 0.8 and m["fedavg_noniid_acc"] > 0.4 and m["centralized_acc"] > 0.85
            and m["fedavg_iid_acc"] > m["fedavg_noniid_acc"]  # label skew slows FedAvg down
            and m["noniid_max_class_share"] > 0.3  # the non-IID clients really are label-skewed
            # DP: ε shrinks as the noise grows, from a real accountant, with δ reported
            and all(a > b > 0 for a, b in zip(eps, eps[1:])) and 0 < m["dp_delta"] < 1e-3
            and all(a > b for a, b in zip(m["eps_rdp_grid"], m["eps_rdp_grid"][1:]))
            and m["dp_accs"][0] > 0.5 and m["dp_acc_no_noise"] > 0.8
            # per-sample clipping: every clipped norm ≤ C; Opacus and torch.func agree
            and m["clip_max_after"] <= 1.0 + 1e-4 and m["opacus_vs_func_max_diff"] < 1e-5)


LESSON = LessonEntry(
    number='13', name='privacy', title='Federated learning and differential privacy',
    goal='FedAvg on IID and label-skewed clients; DP-SGD with a real privacy accountant.',
    teaches='federated averaging over simulated IID and label-skewed (Dirichlet α) clients vs centralized training; '
            'DP-SGD with Opacus (per-sample clipping shown with `torch.func`, Poisson sampling, RDP and PRV '
            'accountants): accuracy vs ε for several noise multipliers, (ε, δ) reported',
    data='8×8 digits (scikit-learn, real)',
    metrics=(
        Headline('fedavg_iid_acc', 'FedAvg accuracy (IID clients)', 0.8, unit='%'),
        Headline('centralized_acc', 'centralized accuracy', 0.85, unit='%'),
        Headline('opacus_vs_func_max_diff', 'Opacus vs torch.func per-sample gradients', 1e-05, 'lower'),
    ),
    smoke_bar=smoke_bar,
    budget=Budget(smoke_s=40),  # a smoke run took 21 s on a quiet 2-core machine
)
