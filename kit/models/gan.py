"""A small DCGAN for square one-channel images in [0, 1] (28×28 by default), nanoGPT style::

    G, D = Generator(GANConfig()), Discriminator(GANConfig())
    fake = G(torch.randn(n, cfg.latent))          # (n, 1, 28, 28) in [0, 1] (cfg.image_size = 28)
    logit = D(fake)                               # (n,) — D(x) = σ(logit) is "the probability x is real"

DCGAN's recipe (Radford et al., 2015): no pooling (strided convolutions down, transposed convolutions up),
batch norm in the generator, LeakyReLU in the discriminator. :func:`losses` gives the
discriminator's cross-entropy and the **non-saturating** generator loss −log D(G(z)), both from logits with
``softplus`` (log σ(l) = −softplus(−l)), so they stay finite when the discriminator is sure. The alternating
training loop is taught in lesson 17 and written there. Models import no training code.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kit.models.base import check_image_size, evaluating


@dataclass
class GANConfig:
    latent: int = 32    # dimensions of the noise z
    width: int = 32     # base channels (the 7×7 and 14×14 layers have 2·width and width)
    image_size: int = 28  # height = width, a multiple of 4 (28 → 14 → 7)

    def __post_init__(self):
        check_image_size(self.image_size, "GANConfig")


class Generator(nn.Module):
    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg = cfg
        w, s = cfg.width, cfg.image_size // 4
        self.net = nn.Sequential(nn.Linear(cfg.latent, 2 * w * s * s, bias=False), nn.Unflatten(1, (2 * w, s, s)),
                                 nn.BatchNorm2d(2 * w), nn.ReLU(),
                                 nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                                 nn.ConvTranspose2d(w, 1, 4, 2, 1), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        dev = next(self.parameters()).device
        with evaluating(self):
            out = self(torch.randn(n, self.cfg.latent, generator=generator).to(dev))
        return out


class Discriminator(nn.Module):
    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg = cfg
        w, s = cfg.width, cfg.image_size // 4
        self.net = nn.Sequential(nn.Conv2d(1, w, 4, 2, 1), nn.LeakyReLU(0.2),                      # 28 → 14
                                 nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2),                  # 14 → 7
                                 nn.Flatten(), nn.Linear(2 * w * s * s, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.view(len(x), 1, self.cfg.image_size, self.cfg.image_size)).squeeze(1)


def losses(*, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> dict:
    """``{"g": …, "d": …}`` from the discriminator's logits (means over each batch):

    * ``"g"``: the **non-saturating** generator loss −log D(G(z)) (from ``fake_logits`` only);
    * ``"d"`` (when ``real_logits`` is given): the discriminator's cross-entropy −log D(x) − log(1 − D(G(z))).

    Both via ``softplus``: −log σ(l) = softplus(−l) and −log(1 − σ(l)) = softplus(l), finite for any logit.
    """
    out = {"g": F.softplus(-fake_logits).mean()}
    if real_logits is not None:
        out["d"] = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    return out


__all__ = ["Discriminator", "GANConfig", "Generator", "losses"]
