"""Lesson 17: its exercises accept right answers and reject typical mistakes; the formulas the lesson shows
(Gaussian KL, the one-jump forward process, the reparameterisation gradient, the Fréchet distance) checked
numerically; the generative models' shapes and samplers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import linalg
from torch.distributions import Normal, kl_divergence

from kit.exercises import verdict
from kit.models import diffusion, gan, vae
from kit.techniques import judge as J


def gaussian_kl(mu, logvar):
    return 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)


def q_sample(x0, t, eps, alpha_bar):
    ab = alpha_bar[t].reshape(-1, *([1] * (x0.dim() - 1)))
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def generator_loss(fake_logits):
    return F.softplus(-fake_logits).mean()


def frechet_gaussians(mu1, cov1, mu2, cov2):
    root = np.real(linalg.sqrtm(cov1 @ cov2))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1 + cov2 - 2 * root))


@pytest.mark.parametrize("rep", range(3))
def test_right_answers_pass_on_fresh_inputs(rep):
    for i, fn in enumerate([gaussian_kl, q_sample, generator_loss, frechet_gaussians], 1):
        assert verdict(f"17.{i}", fn) is None, i


def _fails(id, fn, case_word=None):
    why = verdict(id, fn)
    assert why is not None, f"{id}: a wrong answer passed"
    assert "case" in why, why
    if case_word:
        assert case_word in why, why
    return why


def test_wrong_kl_answers_fail_naming_the_case():
    _fails("17.1", lambda mu, lv: (mu ** 2 + lv.exp() - 1 - lv).sum(-1))              # no ½
    _fails("17.1", lambda mu, lv: 0.5 * (mu ** 2 + (0.5 * lv).exp() - 1 - lv).sum(-1))  # σ where σ² belongs
    _fails("17.1", lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - 1 - lv).sum(-1).mean())  # averaged over the batch
    _fails("17.1", lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - 1 - lv).mean(-1))        # mean over dimensions
    _fails("17.1", lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - lv).sum(-1))              # forgot the −1


def test_wrong_q_sample_answers_fail_naming_the_case():
    def bc(a, x):
        return a.reshape(-1, *([1] * (x.dim() - 1)))
    _fails("17.2", lambda x0, t, e, ab: bc(ab[t], x0) * x0 + (1 - bc(ab[t], x0)) * e)            # no square roots
    _fails("17.2", lambda x0, t, e, ab: bc(ab[(t - 1).clamp(min=0)], x0).sqrt() * x0
           + (1 - bc(ab[(t - 1).clamp(min=0)], x0)).sqrt() * e)                                   # t shifted by one
    _fails("17.2", lambda x0, t, e, ab: ab[t].mean().sqrt() * x0 + (1 - ab[t].mean()).sqrt() * e)  # one ᾱ for all


def test_wrong_generator_losses_fail_naming_the_case():
    _fails("17.3", lambda l: -torch.log(torch.sigmoid(l)).mean(), "−800")    # unstable: inf when D is sure
    _fails("17.3", lambda l: -F.softplus(l).mean())                           # the saturating log(1 − D(G(z)))
    _fails("17.3", lambda l: F.softplus(-l).sum())                            # a sum, not a mean


def test_wrong_frechet_answers_fail_naming_the_case():
    def separate_roots(m1, c1, m2, c2):   # √Σ₁ √Σ₂: right only when the covariances commute
        r = np.real(linalg.sqrtm(c1) @ linalg.sqrtm(c2))
        return float(((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * r))
    _fails("17.4", separate_roots, "random Gaussians")
    _fails("17.4", lambda m1, c1, m2, c2: float(((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - np.real(linalg.sqrtm(c1 @ c2)))))
    _fails("17.4", lambda m1, c1, m2, c2: float(np.trace(c1 + c2 - 2 * np.real(linalg.sqrtm(c1 @ c2)))))  # no mean term


def test_gaussian_kl_closed_form_matches_torch_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu, lv = torch.randn(32, 6, generator=g, dtype=torch.float64), torch.randn(32, 6, generator=g, dtype=torch.float64)
    closed = vae.kl_terms(mu, lv).sum(1)
    q = Normal(mu, (0.5 * lv).exp())
    torch_kl = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(1)
    assert (closed - torch_kl).abs().max() <= 1e-10
    assert torch.allclose(closed, gaussian_kl(mu, lv))
    z = q.sample((40_000,))
    mc = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1)
    se = mc.std(0) / np.sqrt(len(z))
    assert ((closed - mc.mean(0)).abs() / se).max() < 5
    assert vae.kl_terms(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max() == 0


def test_reparameterisation_gradient_matches_finite_differences_and_the_exact_gradient():
    g = torch.Generator().manual_seed(1)
    eps = torch.randn(5000, 3, generator=g, dtype=torch.float64)
    mu = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64, requires_grad=True)
    lv = torch.tensor([0.1, -0.7, 0.5], dtype=torch.float64, requires_grad=True)

    def f(m, l):   # a fixed-ε Monte-Carlo estimate of E[sin(z) + z²]: a smooth function of μ and log σ²
        z = vae.reparameterize(m, l, eps)
        return (z.sin() + z ** 2).sum(1).mean()

    f(mu, lv).backward()
    h = 1e-6
    for param, grad in ((mu, mu.grad), (lv, lv.grad)):
        for j in range(3):
            e = torch.zeros(3, dtype=torch.float64)
            e[j] = h
            with torch.no_grad():
                fd = (f(mu + e, lv) - f(mu - e, lv)) / (2 * h) if param is mu else (f(mu, lv + e) - f(mu, lv - e)) / (2 * h)
            assert abs(fd.item() - grad[j].item()) < 1e-6
    # and, with many draws, the exact gradient of E[Σ z²] = Σ (μ² + σ²): 2μ and σ²
    eps = torch.randn(400_000, 3, generator=g, dtype=torch.float64)
    m2, l2 = mu.detach().clone().requires_grad_(), lv.detach().clone().requires_grad_()
    vae.reparameterize(m2, l2, eps).pow(2).sum(1).mean().backward()
    assert torch.allclose(m2.grad, 2 * m2.detach(), atol=0.02)
    assert torch.allclose(l2.grad, l2.detach().exp(), atol=0.02)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_one_jump_matches_iterating_the_forward_process(kind):
    s = diffusion.Schedule(40, kind)
    assert torch.allclose(s.alpha_bar, torch.cumprod(1 - s.betas.double(), 0).float(), atol=1e-6)
    g = torch.Generator().manual_seed(2)
    x0 = torch.tensor([0.9, -0.4])
    x = x0.repeat(200_000, 1).double()
    for t in range(40):
        x = s.alphas[t].double().sqrt() * x + s.betas[t].double().sqrt() * torch.randn(x.shape, generator=g, dtype=torch.float64)
        if t in (0, 9, 25, 39):
            ab = s.alpha_bar[t].double()
            assert torch.allclose(x.mean(0), ab.sqrt() * x0.double(), atol=0.01), t
            assert torch.allclose(x.var(0), (1 - ab).expand(2), atol=0.01), t
    # the model's q_sample and the exercise's reference agree
    x0b, eps = torch.randn(5, 1, 4, 4, generator=g), torch.randn(5, 1, 4, 4, generator=g)
    t = torch.tensor([0, 3, 17, 28, 39])
    assert torch.allclose(s.q_sample(x0b, t, eps), q_sample(x0b, t, eps, s.alpha_bar))


def test_frechet_distance_zero_for_identical_sets_and_equal_to_scipy():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(400, 5))
    b = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5)) + 1.0
    assert abs(J.frechet_distance(a, a)) < 1e-6
    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    want = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(linalg.sqrtm(s1 @ s2)))
    assert abs(J.frechet_distance(a, b) - want) < 1e-8
    c = np.array([1.0, -2.0, 0.5, 0.0, 3.0])       # a shift moves only the mean term: FD = ‖c‖²
    assert abs(J.frechet_distance(a, a + c) - (c ** 2).sum()) < 1e-6
    assert abs(frechet_gaussians(mu1, s1, mu2, s2) - want) < 1e-8


def test_judge_scores():
    one_class = torch.zeros(50, 10)
    one_class[:, 3] = 1.0
    assert J.class_coverage(one_class) == 0.0 and J.confident_fraction(one_class) == 1.0
    even = torch.eye(10).repeat(7, 1) * 0.85 + 0.015
    assert abs(J.class_coverage(even) - np.log2(10)) < 1e-9
    assert J.confident_fraction(even) == 0.0
    train = torch.rand(20, 1, 28, 28)
    d, idx = J.nearest_training_distance(train[[4, 7]] + 0.0, train)
    assert d.abs().max() < 1e-3 and idx.tolist() == [4, 7]


def test_models_shapes_losses_and_samplers():
    torch.manual_seed(0)
    x, y = torch.rand(6, 784), torch.randint(0, 10, (6,))
    m = vae.VAE(vae.VAEConfig(latent=4, width=8))
    out = m(x)
    assert torch.allclose(out["loss"], out["recon"] + out["kl"]) and out["kl"] >= 0
    assert m.sample(3).shape == (3, 1, 28, 28)
    cm = vae.VAE(vae.VAEConfig(latent=4, width=8, n_classes=10))
    assert cm(x, y)["loss"].isfinite() and cm.sample(2, y=y[:2]).shape == (2, 1, 28, 28)
    G, D = gan.Generator(gan.GANConfig(latent=8, width=8)), gan.Discriminator(gan.GANConfig(latent=8, width=8))
    fake = G(torch.randn(4, 8))
    assert fake.shape == (4, 1, 28, 28) and D(fake).shape == (4,)
    big = torch.tensor([800.0, -800.0])
    ls = gan.losses(real_logits=big, fake_logits=-big)
    assert all(v.isfinite() for v in ls.values())
    zero = gan.losses(real_logits=torch.zeros(3), fake_logits=torch.zeros(3))
    assert abs(zero["d"].item() - 2 * np.log(2)) < 1e-6 and abs(zero["g"].item() - np.log(2)) < 1e-6
    dm = diffusion.DDPM(diffusion.DDPMConfig(T=8, width=8, n_classes=10))
    assert dm(x, y)["loss"].isfinite()
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a, b = diffusion.ddim_sample(dm, y, steps=3, generator=g1), diffusion.ddim_sample(dm, y, steps=3, generator=g2)
    assert a.shape == (6, 1, 28, 28) and torch.equal(a, b) and a.min() >= 0 and a.max() <= 1   # DDIM: deterministic
    img, traj = diffusion.ddpm_sample(dm, y, keep=2)
    assert img.shape == (6, 1, 28, 28) and [t for t, _ in traj] == list(range(7, -1, -1)) and traj[0][1].shape == (2, 1, 28, 28)
    un = diffusion.DDPM(diffusion.DDPMConfig(T=5, width=8, n_classes=0))
    assert diffusion.ddim_sample(un, n=2, steps=5).shape == (2, 1, 28, 28)


def test_v_prediction_converts_to_noise_and_image_and_weights_every_step():
    """v = √ᾱ ε − √(1−ᾱ) x₀: ε̂ = √(1−ᾱ) x_t + √ᾱ v and x̂₀ = √ᾱ x_t − √(1−ᾱ) v recover ε and x₀ exactly; an error
    δv costs ‖δx₀‖²·(1 + SNR) where an error δε costs ‖δx₀‖²·SNR (SNR = ᾱ/(1−ᾱ)): v keeps high-noise steps in the loss."""
    torch.manual_seed(0)
    s = diffusion.Schedule(100)
    t = torch.tensor([0, 30, 70, 99])
    x0, eps = torch.rand(4, 1, 28, 28, dtype=torch.float64) * 2 - 1, torch.randn(4, 1, 28, 28, dtype=torch.float64)
    ab = s.alpha_bar[t].double().view(-1, 1, 1, 1)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    v = ab.sqrt() * eps - (1 - ab).sqrt() * x0
    assert torch.allclose((1 - ab).sqrt() * xt + ab.sqrt() * v, eps, atol=1e-9)
    assert torch.allclose(ab.sqrt() * xt - (1 - ab).sqrt() * v, x0, atol=1e-9)
    dx0 = torch.randn_like(x0) * 1e-3          # an error in the image estimate …
    dv = -dx0 / (1 - ab).sqrt()                # … as an error in v
    de = -dx0 * (ab / (1 - ab)).sqrt()          # … and as an error in ε
    snr = (ab / (1 - ab)).flatten()
    per = lambda d: d.pow(2).flatten(1).sum(1)
    assert torch.allclose(per(dv), per(dx0) * (1 + snr), rtol=1e-9)
    assert torch.allclose(per(de), per(dx0) * snr, rtol=1e-9)
    # the model's own conversion: a U-Net that outputs the true v gives back the true ε
    m = diffusion.DDPM(diffusion.DDPMConfig(T=100, width=8, n_classes=10, pred="v"))
    m.net.forward = lambda x, tt, y=None: v.float()
    assert torch.allclose(m.eps(xt.float(), t), eps.float(), atol=1e-5)


def test_classifier_free_guidance_is_one_batched_pass_of_the_formula():
    torch.manual_seed(0)
    m = diffusion.DDPM(diffusion.DDPMConfig(T=10, width=8, n_classes=10, film=True, p_uncond=0.2)).eval()
    x, t, y = torch.randn(3, 1, 28, 28), torch.tensor([9, 5, 0]), torch.tensor([1, 4, 7])
    null = torch.full_like(y, 10)
    with torch.no_grad():
        cond, unc = m.eps(x, t, y), m.eps(x, t, null)
        for w in (0.0, 1.0, 2.5):
            assert torch.allclose(diffusion.guided_eps(m, x, t, y, w), unc + w * (cond - unc), atol=1e-5)
    labels = diffusion.drop_labels(torch.zeros(20_000, dtype=torch.long), 0.2, 10)
    assert set(labels.unique().tolist()) == {0, 10} and abs(float((labels == 10).float().mean()) - 0.2) < 0.02


def test_clipped_ddpm_step_is_the_posterior_mean_of_the_same_update():
    """With x̂₀ inside [−1, 1] the clipped sampler's posterior mean (√ᾱ_{t−1} β_t x̂₀ + √α_t (1−ᾱ_{t−1}) x_t)/(1−ᾱ_t)
    equals the ε form (x_t − β_t/√(1−ᾱ_t) ε̂)/√α_t step for step; the clip only matters when x̂₀ leaves the range."""
    m = diffusion.DDPM(diffusion.DDPMConfig(T=20, width=8, n_classes=10)).eval()
    target = torch.rand(2, 1, 28, 28) * 1.6 - 0.8          # the image the fake network always points at
    s = m.schedule

    def eps_towards_target(x, tt, y=None):
        ab = s.alpha_bar[tt].view(-1, 1, 1, 1)
        return (x - ab.sqrt() * target) / (1 - ab).sqrt()   # so that x̂₀ = target exactly
    m.eps = eps_towards_target
    a = diffusion.ddpm_sample(m, torch.tensor([0, 1]), generator=torch.Generator().manual_seed(1), clip=True)
    b = diffusion.ddpm_sample(m, torch.tensor([0, 1]), generator=torch.Generator().manual_seed(1), clip=False)
    assert torch.allclose(a, b, atol=1e-4)
    assert torch.allclose(a, (target + 1) / 2, atol=1e-3)   # and both land on the image the network points at
