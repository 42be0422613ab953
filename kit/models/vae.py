"""A convolutional variational autoencoder (VAE) for square one-channel images in [0, 1] (28×28 by default), nanoGPT style::

    model = VAE(VAEConfig(latent=16))
    out = model(x)                    # {"loss": −ELBO per image, "recon": …, "kl": …}
    images = model.decode(z).sigmoid()

The encoder maps an image to a diagonal Gaussian q(z|x) = N(μ, diag σ²) (it outputs μ and log σ²); a latent
is drawn with the **reparameterisation** z = μ + σ·ε, ε ~ N(0, I), so the gradient flows through μ and σ; the
decoder maps z to one Bernoulli logit per pixel. The loss is the negative ELBO per image,

    −ELBO = E_q[−log p(x|z)] + KL(q(z|x) ‖ N(0, I)),

the first term a pixel-summed binary cross-entropy (one sample of z), the second in closed form
(:func:`kl_terms`). With ``n_classes > 0`` encoder and decoder also see the one-hot class (a conditional VAE).
Models import no training code; train with :func:`kit.train.fit` (``loss_fn=None``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kit.models.base import check_image_size


@dataclass
class VAEConfig:
    latent: int = 16        # dimensions of z
    width: int = 32         # channels of the first conv (the second has twice as many)
    n_classes: int = 0      # > 0: a conditional VAE (encoder and decoder see the one-hot class)
    beta: float = 1.0       # weight of the KL term (1: the ELBO)
    image_size: int = 28    # height = width, a multiple of 4 (28 → 14 → 7)

    def __post_init__(self):
        check_image_size(self.image_size, "VAEConfig")


def kl_terms(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) of each latent dimension, elementwise: ½(μ² + σ² − 1 − log σ²).
    Sum over the last axis for the KL of a diagonal Gaussian."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = μ + σ·ε with σ = exp(½ log σ²): a sample of N(μ, σ²) that is differentiable in μ and log σ²."""
    return mu + (0.5 * logvar).exp() * eps


class VAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        w, c, s = cfg.width, cfg.n_classes, cfg.image_size // 4
        self.enc = nn.Sequential(nn.Conv2d(1, w, 4, 2, 1), nn.LeakyReLU(0.2),       # 28 → 14
                                 nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten())  # 14 → 7
        self.to_stats = nn.Linear(2 * w * s * s + c, 2 * cfg.latent)
        self.from_z = nn.Linear(cfg.latent + c, 2 * w * s * s)
        self.dec = nn.Sequential(nn.LeakyReLU(0.2), nn.Unflatten(1, (2 * w, s, s)),
                                 nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.LeakyReLU(0.2),     # 7 → 14
                                 nn.ConvTranspose2d(w, 1, 4, 2, 1))                            # 14 → 28 (logits)

    def _images(self, x):
        return x.view(len(x), 1, self.cfg.image_size, self.cfg.image_size)

    def _onehot(self, y, n):
        return F.one_hot(y, self.cfg.n_classes).float() if self.cfg.n_classes else torch.zeros(n, 0)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(μ, log σ²)`` of q(z|x), each ``(N, latent)``."""
        feats = self.enc(self._images(x))
        if self.cfg.n_classes:
            feats = torch.cat([feats, self._onehot(y, len(x)).to(x.device)], 1)
        mu, logvar = self.to_stats(feats).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Pixel logits ``(N, 1, image_size, image_size)`` (``.sigmoid()`` for an image)."""
        if self.cfg.n_classes:
            z = torch.cat([z, self._onehot(y, len(z)).to(z.device)], 1)
        return self.dec(self.from_z(z))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict:
        """The negative ELBO per image (mean over the batch) and its two parts."""
        x = self._images(x)
        mu, logvar = self.encode(x, y)
        z = reparameterize(mu, logvar, torch.randn_like(mu))
        recon = F.binary_cross_entropy_with_logits(self.decode(z, y), x, reduction="none").sum((1, 2, 3)).mean()
        kl = kl_terms(mu, logvar).sum(1).mean()
        return {"loss": recon + self.cfg.beta * kl, "recon": recon, "kl": kl}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` images in [0, 1] decoded from z ~ N(0, I) (``y``: their classes, for a conditional VAE)."""
        dev = next(self.parameters()).device
        z = torch.randn(n, self.cfg.latent, generator=generator).to(dev)
        return self.decode(z, y).sigmoid()


__all__ = ["VAE", "VAEConfig", "kl_terms", "reparameterize"]
