"""A small denoising diffusion model (DDPM, Ho et al. 2020) for square one-channel images (28×28 by default), nanoGPT style::

    model = DDPM(DDPMConfig(T=50, width=16, n_classes=10, pred="v", film=True, p_uncond=0.1))
    out = model(x, y)                         # {"loss": MSE of the U-Net's prediction} at a random t per image
    images = ddpm_sample(model, y, guidance=1.5)   # T denoising steps, classifier-free guidance, images in [0, 1]
    images = ddim_sample(model, y, steps=10)  # DDIM (Song et al. 2021): a deterministic 10-step shortcut

**Forward process.** Images are scaled to x₀ ∈ [−1, 1]; noise is added in T steps with variances β_t, and
because Gaussians compose, any step is reachable in one jump (:meth:`Schedule.q_sample`):

    q(x_t | x₀) = N(√ᾱ_t x₀, (1 − ᾱ_t) I),   ᾱ_t = Π_{s ≤ t} (1 − β_s).

**Model.** A small U-Net sees x_t, the step t (sinusoidal embedding) and, with ``n_classes > 0``, the class (a
learned embedding added to the step's; ``film=True`` lets them scale and shift every normalised feature map). It
predicts the noise ε (``pred="eps"``) or v = √ᾱ_t ε − √(1−ᾱ_t) x₀ (``pred="v"``, Salimans & Ho 2022), whose loss
keeps weight on the high-noise steps where ε's vanishes; :meth:`DDPM.eps` always returns ε̂.

**Classifier-free guidance** (Ho & Salimans 2022). With ``p_uncond > 0`` training replaces each label by a "no
class" label (index ``n_classes``) with that probability, so one network learns ε̂(x_t, t, y) and ε̂(x_t, t, ∅);
samplers mix them as ε̂(∅) + w·(ε̂(y) − ε̂(∅)) (:func:`guided_eps`).

**Scores.** The ε̂ that minimises the loss is E[ε | x_t], and Tweedie's formula makes it a scaled score,
ε̂(x_t, t) ≈ −√(1−ᾱ_t) ∇ log p_t(x_t) (:func:`score`); so x̂₀ = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t ≈ E[x₀ | x_t], a denoiser,
and guidance adds w·∇ log p_t(y | x_t) to the unconditional score (Bayes: ∇ log p(x | y) = ∇ log p(x) + ∇ log p(y | x)).

**Sampling.** :func:`ddpm_sample` runs the learned reverse process x_T ~ N(0, I) → … → x₀ one step at a time
(x̂₀ clipped to the image range); :func:`ddim_sample` jumps along a subsequence of steps, deterministically
(η = 0). Models import no training code; train with :func:`kit.train.fit` (``loss_fn=None``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kit.models.base import check_image_size


@dataclass
class DDPMConfig:
    T: int = 100            # diffusion steps
    width: int = 16         # channels at 28×28; 14×14 and 7×7 have twice as many
    n_classes: int = 10     # > 0: class-conditional (0: unconditional)
    schedule: str = "cosine"  # "cosine" (Nichol & Dhariwal 2021) or "linear" (Ho et al., rescaled to T)
    film: bool = False      # condition by scale and shift of the normalised features (FiLM), not by a bias alone
    pred: str = "eps"       # what the U-Net outputs: "eps" (the noise) or "v" (√ᾱ ε − √(1−ᾱ) x₀, Salimans & Ho 2022)
    p_uncond: float = 0.0   # training: probability of replacing a label by the null class (classifier-free guidance)
    image_size: int = 28    # height = width, a multiple of 4 (28 → 14 → 7 in the U-Net)

    def __post_init__(self):
        check_image_size(self.image_size, "DDPMConfig")
        if self.pred not in ("eps", "v"):
            raise ValueError(f"DDPMConfig.pred must be 'eps' or 'v', got {self.pred!r}")
        if not 0 <= self.p_uncond < 1 or (self.p_uncond and not self.n_classes):
            raise ValueError(f"DDPMConfig.p_uncond must be in [0, 1) and needs n_classes > 0, got {self.p_uncond}")


class Schedule(nn.Module):
    """β_t, α_t = 1 − β_t and ᾱ_t = Π α_s for t = 0 … T−1 (buffers, so they follow the model's device)."""

    def __init__(self, T: int, kind: str = "cosine"):
        super().__init__()
        if kind == "cosine":
            s = 0.008
            f = torch.cos((torch.arange(T + 1, dtype=torch.float64) / T + s) / (1 + s) * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        elif kind == "linear":
            betas = torch.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T, dtype=torch.float64).clamp(max=0.999)
        else:
            raise ValueError(f"parameter 'schedule' must be 'cosine' or 'linear', got {kind!r}")
        self.T = T
        self.register_buffer("betas", betas.float())
        self.register_buffer("alphas", (1 - betas).float())
        self.register_buffer("alpha_bar", torch.cumprod(1 - betas, 0).float())

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε: a draw of q(x_t | x₀) in one jump (t: one step per image)."""
        ab = self.alpha_bar[t].view(-1, *([1] * (x0.ndim - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def step_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer steps ``t`` → ``(len(t), dim)`` (as Transformer positions)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([a.sin(), a.cos()], 1)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb: int, film: bool = False):
        super().__init__()
        self.film = film
        self.n1, self.c1 = nn.GroupNorm(min(8, c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.e = nn.Linear(emb, 2 * c_out if film else c_out)
        self.n2, self.c2 = nn.GroupNorm(min(8, c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, e):
        h = self.c1(F.silu(self.n1(x)))
        if self.film:   # the step and class scale and shift every normalised feature map
            scale, shift = self.e(e)[:, :, None, None].chunk(2, 1)
            h = self.n2(h) * (1 + scale) + shift
        else:
            h = self.n2(h + self.e(e)[:, :, None, None])
        return self.skip(x) + self.c2(F.silu(h))


class UNet(nn.Module):
    """ε̂(x_t, t, y): 28 → 14 → 7 → 14 → 28 with skip connections."""

    def __init__(self, cfg: DDPMConfig):
        super().__init__()
        w, E = cfg.width, 4 * cfg.width
        self.width = w
        self.t_mlp = nn.Sequential(nn.Linear(w, E), nn.SiLU(), nn.Linear(E, E))
        self.y_emb = nn.Embedding(cfg.n_classes + 1, E) if cfg.n_classes else None   # row n_classes: "no class"
        self.inc = nn.Conv2d(1, w, 3, padding=1)
        self.r1 = ResBlock(w, w, E, cfg.film)
        self.d1 = nn.Conv2d(w, 2 * w, 4, 2, 1)           # 28 → 14
        self.r2 = ResBlock(2 * w, 2 * w, E, cfg.film)
        self.d2 = nn.Conv2d(2 * w, 2 * w, 4, 2, 1)       # 14 → 7
        self.r3 = ResBlock(2 * w, 2 * w, E, cfg.film)
        self.u2 = nn.ConvTranspose2d(2 * w, 2 * w, 4, 2, 1)  # 7 → 14
        self.r4 = ResBlock(4 * w, 2 * w, E, cfg.film)
        self.u1 = nn.ConvTranspose2d(2 * w, w, 4, 2, 1)      # 14 → 28
        self.r5 = ResBlock(2 * w, w, E, cfg.film)
        self.out = nn.Sequential(nn.GroupNorm(min(8, w), w), nn.SiLU(), nn.Conv2d(w, 1, 3, padding=1))

    def forward(self, x, t, y=None):
        e = self.t_mlp(step_embedding(t, self.width))
        if self.y_emb is not None:
            e = e + self.y_emb(y)
        h1 = self.r1(self.inc(x), e)
        h2 = self.r2(self.d1(h1), e)
        h3 = self.r3(self.d2(h2), e)
        u = self.r4(torch.cat([self.u2(h3), h2], 1), e)
        u = self.r5(torch.cat([self.u1(u), h1], 1), e)
        return self.out(u)


class DDPM(nn.Module):
    """The U-Net and its noise schedule; ``model(x, y)`` returns the training loss."""

    def __init__(self, cfg: DDPMConfig):
        super().__init__()
        self.cfg = cfg
        self.schedule = Schedule(cfg.T, cfg.schedule)
        self.net = UNet(cfg)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict:
        """Simple DDPM loss: a random step per image, noise it in one jump, predict ε (or v) (MSE)."""
        x0 = x.view(len(x), 1, self.cfg.image_size, self.cfg.image_size) * 2 - 1
        t = torch.randint(0, self.cfg.T, (len(x0),), device=x0.device)
        if y is not None and self.cfg.p_uncond > 0:
            y = drop_labels(y, self.cfg.p_uncond, self.cfg.n_classes)
        eps = torch.randn_like(x0)
        xt = self.schedule.q_sample(x0, t, eps)
        if self.cfg.pred == "v":
            ab = self.schedule.alpha_bar[t].view(-1, 1, 1, 1)
            target = ab.sqrt() * eps - (1 - ab).sqrt() * x0
        else:
            target = eps
        return {"loss": F.mse_loss(self.net(xt, t, y), target)}

    def eps(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """ε̂(x_t, t, y), whatever the U-Net predicts (v converts: ε̂ = √(1−ᾱ) x_t + √ᾱ v̂)."""
        out = self.net(x, t, y)
        if self.cfg.pred == "v":
            ab = self.schedule.alpha_bar[t].view(-1, 1, 1, 1)
            out = (1 - ab).sqrt() * x + ab.sqrt() * out
        return out


def drop_labels(y: torch.Tensor, p: float, null: int) -> torch.Tensor:
    """Each label replaced by the null class ``null`` with probability ``p`` (classifier-free guidance training)."""
    return torch.where(torch.rand(y.shape, device=y.device) < p, torch.full_like(y, null), y)


def guided_eps(model: DDPM, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None, w: float = 1.0) -> torch.Tensor:
    """ε = ε̂(x, t, ∅) + w·(ε̂(x, t, y) − ε̂(x, t, ∅)), both from one forward pass over the batch stacked twice.
    w = 1 is the conditional model alone and w = 0 the unconditional one (one pass each); without labels, the
    unconditional prediction."""
    if y is None or w == 1:
        return model.eps(x, t, y)
    if w == 0:
        return model.eps(x, t, torch.full_like(y, model.cfg.n_classes))
    null = torch.full_like(y, model.cfg.n_classes)
    e_cond, e_uncond = model.eps(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
    return e_uncond + w * (e_cond - e_uncond)


@torch.no_grad()
def score(model: DDPM, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
          guidance: float = 1.0) -> torch.Tensor:
    """The model's estimate of the score ∇ log p_t(x_t) (of the guided p_t(x_t) p_t(y | x_t)^w with ``guidance``
    w): −ε̂_w / √(1−ᾱ_t). Tweedie's formula turns it into the posterior mean, E[x₀ | x_t] = (x_t + (1−ᾱ_t)·score)/√ᾱ_t —
    the same x̂₀ as (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t."""
    ab = model.schedule.alpha_bar[t].view(-1, *([1] * (x.ndim - 1)))
    return -guided_eps(model, x, t, y, guidance) / (1 - ab).sqrt()


@torch.no_grad()
def ddpm_sample(model: DDPM, y: torch.Tensor | None = None, n: int | None = None,
                generator: torch.Generator | None = None, keep: int = 0, clip: bool = True,
                guidance: float = 1.0):
    """Ancestral sampling, T steps: x_{t−1} = (x_t − β_t/√(1−ᾱ_t) ε̂) / √α_t + σ_t z, σ_t² = β_t (1−ᾱ_{t−1})/(1−ᾱ_t).

    With ``clip`` (the default) the mean is computed from x̂₀ clipped to [−1, 1] as the posterior mean
    (√ᾱ_{t−1} β_t x̂₀ + √α_t (1−ᾱ_{t−1}) x_t)/(1−ᾱ_t) — equal to the formula above while x̂₀ stays in range.
    ``guidance``: the classifier-free guidance scale w (:func:`guided_eps`).

    Returns images in [0, 1] ``(N, 1, image_size, image_size)``; with ``keep > 0`` also ``[(t, x̂₀ of the first keep images)]``
    at every step (the denoising trajectory, x̂₀ = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t).
    """
    s, dev = model.schedule, next(model.parameters()).device
    n = len(y) if y is not None else n
    y = y.to(dev) if y is not None else None
    x = torch.randn(n, 1, model.cfg.image_size, model.cfg.image_size, generator=generator).to(dev)
    traj = []
    for t in range(s.T - 1, -1, -1):
        tt = torch.full((n,), t, device=dev, dtype=torch.long)
        eps = guided_eps(model, x, tt, y, guidance)
        ab, a, b = s.alpha_bar[t], s.alphas[t], s.betas[t]
        if keep:
            traj.append((t, ((x[:keep] - (1 - ab).sqrt() * eps[:keep]) / ab.sqrt()).clamp(-1, 1).add(1).div(2).cpu()))
        ab_prev = s.alpha_bar[t - 1] if t > 0 else torch.ones_like(ab)
        if clip:   # the posterior mean from x̂₀ clipped to the image range
            x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
            x = (ab_prev.sqrt() * b * x0 + a.sqrt() * (1 - ab_prev) * x) / (1 - ab)
        else:
            x = (x - b / (1 - ab).sqrt() * eps) / a.sqrt()
        if t > 0:
            var = b * (1 - ab_prev) / (1 - ab)
            x = x + var.sqrt() * torch.randn(x.shape, generator=generator).to(dev)
    img = x.clamp(-1, 1).add(1).div(2)
    return (img, traj) if keep else img


@torch.no_grad()
def ddim_sample(model: DDPM, y: torch.Tensor | None = None, steps: int = 10, n: int | None = None,
                generator: torch.Generator | None = None, guidance: float = 1.0) -> torch.Tensor:
    """DDIM (η = 0) on ``steps`` evenly spaced steps of T: x̂₀ = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t clipped to [−1, 1] (and ε̂
    recomputed from it), then x_{t'} = √ᾱ_{t'} x̂₀ + √(1−ᾱ_{t'}) ε̂ — no fresh noise, so the same x_T always gives
    the same image."""
    s, dev = model.schedule, next(model.parameters()).device
    n = len(y) if y is not None else n
    y = y.to(dev) if y is not None else None
    ts = torch.linspace(s.T - 1, 0, steps).round().long().unique_consecutive().tolist()
    x = torch.randn(n, 1, model.cfg.image_size, model.cfg.image_size, generator=generator).to(dev)
    for i, t in enumerate(ts):
        eps = guided_eps(model, x, torch.full((n,), t, device=dev, dtype=torch.long), y, guidance)
        ab = s.alpha_bar[t]
        x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
        eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()   # the noise consistent with the clipped x̂₀
        if i + 1 < len(ts):
            ab2 = s.alpha_bar[ts[i + 1]]
            x = ab2.sqrt() * x0 + (1 - ab2).sqrt() * eps
        else:
            x = x0
    return x.add(1).div(2)


__all__ = ["DDPM", "DDPMConfig", "Schedule", "UNet", "ddim_sample", "ddpm_sample", "drop_labels", "guided_eps",
           "score", "step_embedding"]
