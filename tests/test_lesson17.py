"""Lesson 17: its exercises accept right answers and reject typical mistakes (and the one-liners of kit that
answered the former exercises); the formulas the lesson shows (Gaussian KL, the one-jump forward process, the
reparameterisation gradient, the Fréchet distance, the KID and the biases of both) checked numerically; the
generative models' shapes and samplers."""
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


def frechet_gaussians(mu1, cov1, mu2, cov2):
    root = np.real(linalg.sqrtm(cov1 @ cov2))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1 + cov2 - 2 * root))


# ---- right answers, written as a learner might (not copies of kit's references)

def negative_elbo(x, x_logits, mu, logvar):
    # −log p(x | z) of a Bernoulli pixel with p = σ(l): softplus(l) − x·l (log σ(l) = −softplus(−l))
    recon = (F.softplus(x_logits) - x * x_logits).reshape(len(x), -1).sum(1)
    return recon + gaussian_kl(mu, logvar)


def ddim_step(x_t, eps_hat, ab_t, ab_next):
    a = ab_t.view(-1, *[1] * (x_t.dim() - 1))
    b = ab_next.view(-1, *[1] * (x_t.dim() - 1))
    x0_hat = (x_t - torch.sqrt(1 - a) * eps_hat) / torch.sqrt(a)
    return torch.sqrt(b) * x0_hat + torch.sqrt(1 - b) * eps_hat


def discriminator_loss(real_logits, fake_logits, smooth):
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, smooth))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def kid(feats_a, feats_b):
    d = feats_a.shape[1]

    def k(x, y):
        return (x @ y.T / d + 1) ** 3

    def within(x):
        n = len(x)
        return (k(x, x).sum() - np.diag(k(x, x)).sum()) / (n * (n - 1))
    return float(within(feats_a) + within(feats_b) - 2 * k(feats_a, feats_b).mean())


RIGHT = [negative_elbo, ddim_step, discriminator_loss, kid]


@pytest.mark.parametrize("rep", range(3))
def test_right_answers_pass_on_fresh_inputs(rep):
    for i, fn in enumerate(RIGHT, 1):
        assert verdict(f"17.{i}", fn) is None, (i, verdict(f"17.{i}", fn))


def _fails(id, fn, case_word=None):
    why = verdict(id, fn)
    assert why is not None, f"{id}: a wrong answer passed"
    assert "case" in why, why
    if case_word:
        assert case_word in why, why
    return why


def _bce_probs(x, l):   # the textbook formula through σ: log(0) once a logit saturates
    p = torch.sigmoid(l)
    return -(x * torch.log(p) + (1 - x) * torch.log(1 - p))


WRONG_ELBO = {
    "unstable: log σ(l) through the probabilities": lambda x, l, m, v: _bce_probs(x, l).flatten(1).sum(1) + gaussian_kl(m, v),
    "BCE on σ(l) with torch's log clamp at −100": lambda x, l, m, v: F.binary_cross_entropy(
        torch.sigmoid(l), x, reduction="none").flatten(1).sum(1) + gaussian_kl(m, v),
    "the logits taken as probabilities": lambda x, l, m, v: F.binary_cross_entropy_with_logits(
        torch.logit(l.sigmoid().clamp(1e-6, 1 - 1e-6)), x, reduction="none").flatten(1).sum(1) + gaussian_kl(m, v) + 0.1,
    "a mean over pixels": lambda x, l, m, v: F.binary_cross_entropy_with_logits(l, x, reduction="none").flatten(1).mean(1)
    + gaussian_kl(m, v),
    "the ELBO, not its negative": lambda x, l, m, v: -negative_elbo(x, l, m, v),
    "KL subtracted": lambda x, l, m, v: negative_elbo(x, l, m, v) - 2 * gaussian_kl(m, v),
    "no ½ in the KL": lambda x, l, m, v: negative_elbo(x, l, m, v) + gaussian_kl(m, v),
    "averaged over the batch": lambda x, l, m, v: negative_elbo(x, l, m, v).mean(),
    "summed over the last axis only": lambda x, l, m, v: F.binary_cross_entropy_with_logits(
        l, x, reduction="none").sum(-1) + gaussian_kl(m, v).reshape(-1, *[1] * (x.dim() - 2)),
    "squared error in place of the Bernoulli term": lambda x, l, m, v: (torch.sigmoid(l) - x).pow(2).flatten(1).sum(1)
    + gaussian_kl(m, v),
    "the old one-liner vae.kl_terms(…).sum(-1)": lambda x, l, m, v: vae.kl_terms(m, v).sum(-1),
}


@pytest.mark.parametrize("name", list(WRONG_ELBO))
def test_wrong_negative_elbos_fail_naming_the_case(name):
    _fails("17.1", WRONG_ELBO[name], "±50" if "unstable" in name or "clamp" in name else None)


def _bc(a, x):
    return a.reshape(-1, *([1] * (x.dim() - 1)))


def _clipped(x, e, a, b):   # kit's sampler: x̂₀ clipped to [−1, 1] and ε̂ recomputed from it
    a, b = _bc(a, x), _bc(b, x)
    x0 = ((x - (1 - a).sqrt() * e) / a.sqrt()).clamp(-1, 1)
    e = (x - a.sqrt() * x0) / (1 - a).sqrt()
    return b.sqrt() * x0 + (1 - b).sqrt() * e


WRONG_DDIM = {
    "no square roots": lambda x, e, a, b: _bc(b, x) * ((x - (1 - _bc(a, x)) * e) / _bc(a, x)) + (1 - _bc(b, x)) * e,
    "ᾱ_t and ᾱ_next swapped": lambda x, e, a, b: ddim_step(x, e, b, a),
    "one ᾱ for the whole batch": lambda x, e, a, b: ddim_step(x, e, a.mean().expand_as(a), b.mean().expand_as(b)),
    "ᾱ not reshaped": lambda x, e, a, b: b.sqrt() * ((x - (1 - a).sqrt() * e) / a.sqrt()) + (1 - b).sqrt() * e,
    "x̂₀ clipped (kit's sampler)": _clipped,
    "returns x̂₀": lambda x, e, a, b: (x - (1 - _bc(a, x)).sqrt() * e) / _bc(a, x).sqrt(),
    "fresh noise in place of ε̂": lambda x, e, a, b: ddim_step(x, e, a, b) + 0 * e
    - (1 - _bc(b, x)).sqrt() * e + (1 - _bc(b, x)).sqrt() * torch.randn_like(e),
    "ε̂ subtracted when re-noising": lambda x, e, a, b: ddim_step(x, e, a, b) - 2 * (1 - _bc(b, x)).sqrt() * e,
    "the forward jump q_sample of x_t": lambda x, e, a, b: _bc(b, x).sqrt() * x + (1 - _bc(b, x)).sqrt() * e,
}


@pytest.mark.parametrize("name", list(WRONG_DDIM))
def test_wrong_ddim_steps_fail_naming_the_case(name):
    _fails("17.2", WRONG_DDIM[name])


def _naive_d(r, f, s):
    pr, pf = torch.sigmoid(r), torch.sigmoid(f)
    return -(s * torch.log(pr) + (1 - s) * torch.log(1 - pr)).mean() - torch.log(1 - pf).mean()


def _sp(l):
    return F.softplus(l)


WRONG_D = {
    "unstable: logs of σ": _naive_d,
    "smoothing on both sides (fake target 1 − smooth)": lambda r, f, s: discriminator_loss(r, f, s)
    - _sp(f).mean() + (s * _sp(f) + (1 - s) * _sp(-f)).mean(),
    "the (1 − smooth) term left out": lambda r, f, s: (s * _sp(-r)).mean() + _sp(f).mean(),
    "one mean over both batches": lambda r, f, s: torch.cat([s * _sp(-r) + (1 - s) * _sp(r), _sp(f)]).mean(),
    "sums, not means": lambda r, f, s: (s * _sp(-r) + (1 - s) * _sp(r)).sum() + _sp(f).sum(),
    "the two losses averaged": lambda r, f, s: discriminator_loss(r, f, s) / 2,
    "the real target 1 − smooth": lambda r, f, s: discriminator_loss(r, f, 1 - s),
    "the old one-liner gan.losses(…)['d']": lambda r, f, s: gan.losses(real_logits=r, fake_logits=f)["d"],
    "the old one-liner gan.losses(…)['g']": lambda r, f, s: gan.losses(fake_logits=f)["g"],
}


@pytest.mark.parametrize("name", list(WRONG_D))
def test_wrong_discriminator_losses_fail_naming_the_case(name):
    _fails("17.3", WRONG_D[name], "800" if "unstable" in name else None)


def _biased_kid(a, b):   # the V-statistic: a row paired with itself kept
    d = a.shape[1]
    k = lambda x, y: (x @ y.T / d + 1) ** 3
    return float(k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean())


WRONG_KID = {
    "biased: the diagonal kept": _biased_kid,
    "diagonal left out but divided by m²": lambda a, b: kid(a, b) - sum(
        (np.sum((x @ x.T / x.shape[1] + 1) ** 3) - np.trace((x @ x.T / x.shape[1] + 1) ** 3)) / (len(x) ** 2 * (len(x) - 1))
        for x in (a, b)),
    "no ÷ d": lambda a, b: kid(a * np.sqrt(a.shape[1]), b * np.sqrt(a.shape[1])),
    "d taken as the number of rows": lambda a, b: kid(a * np.sqrt(a.shape[1] / len(a)), b * np.sqrt(a.shape[1] / len(a))),
    "squared kernel": lambda a, b: float(kid(a, b) * 0 + sum(
        (np.sum((x @ x.T / a.shape[1] + 1) ** 2) - np.trace((x @ x.T / a.shape[1] + 1) ** 2)) / (len(x) * (len(x) - 1))
        for x in (a, b)) - 2 * ((a @ b.T / a.shape[1] + 1) ** 2).mean()),
    "cross term without its 2": lambda a, b: kid(a, b) + ((a @ b.T / a.shape[1] + 1) ** 3).mean(),
    "clipped at 0": lambda a, b: max(0.0, kid(a, b)),
    "a square root taken": lambda a, b: float(np.sqrt(abs(kid(a, b)))),
    "the Fréchet distance (J.frechet_distance)": lambda a, b: J.frechet_distance(a, b),
    "the old one-liner J._gaussian_frechet": lambda a, b: J._gaussian_frechet(
        a.mean(0), np.atleast_2d(np.cov(a, rowvar=False)), b.mean(0), np.atleast_2d(np.cov(b, rowvar=False))),
    "the judge's subset recipe J.kernel_distance(…)[0]": lambda a, b: J.kernel_distance(
        a, b, subsets=5, subset_size=min(len(a), len(b)))[0],
}


@pytest.mark.parametrize("name", list(WRONG_KID))
def test_wrong_kids_fail_naming_the_case(name):
    _fails("17.4", WRONG_KID[name], "same set" if name == "clipped at 0" else None)


def test_the_same_set_twice_gives_a_negative_kid_and_zero_biased():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(12, 4))
    assert kid(a, a.copy()) < 0 and abs(_biased_kid(a, a.copy())) < 1e-12


def test_kid_is_unbiased_where_the_frechet_distance_is_not():
    """Two sets from the same distribution: the unbiased MMD² averages 0 over many draws (it is negative about half
    the time); the Fréchet distance is positive every time, and larger with fewer samples per dimension."""
    rng = np.random.default_rng(1)
    d = 20
    A = rng.normal(size=(d, d)) / np.sqrt(d)
    draw = lambda n: np.maximum(rng.normal(size=(n, d)) @ A + 0.2, 0)   # ReLU features, correlated
    kids, fd_small, fd_big = [], [], []
    for _ in range(200):
        kids.append(kid(draw(40), draw(40)))
    for _ in range(20):
        fd_small.append(J.frechet_distance(draw(40), draw(40)))
        fd_big.append(J.frechet_distance(draw(400), draw(400)))
    kids = np.array(kids)
    assert abs(kids.mean()) < 4 * kids.std() / np.sqrt(len(kids)), (kids.mean(), kids.std())
    assert 0.2 < (kids < 0).mean() < 0.8
    assert min(fd_small) > 0 and np.mean(fd_small) > 3 * np.mean(fd_big) > 0


def test_judge_kernel_distance_is_the_unbiased_estimate_over_subsets():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(30, 6)), rng.normal(size=(30, 6)) + 0.3
    mean, std = J.kernel_distance(a, b, subsets=4, subset_size=30)   # the whole sets, reshuffled: the same value
    assert abs(mean - kid(a, b)) < 1e-10 and std < 1e-10
    m2, s2 = J.kernel_distance(a, b, subsets=20, subset_size=10, seed=3)
    assert s2 > 0 and abs(m2 - kid(a, b)) < 4 * s2
    assert J.kernel_distance(a, b, subsets=20, subset_size=10, seed=3) == (m2, s2)   # seeded: reproducible
    with pytest.raises(ValueError, match="subset_size"):
        J.kernel_distance(a, b[:5], subset_size=10)


def test_ddim_step_edge_cases_and_the_sampler():
    """ᾱ_next = ᾱ_t leaves x where it is; ᾱ_next = 1 gives x̂₀; a network whose ε̂ is the true noise makes one DDIM
    step land exactly on q(x_next | x₀) with the same noise."""
    g = torch.Generator().manual_seed(4)
    x0, eps = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64), torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    a, b = torch.tensor([0.1, 0.4, 0.7], dtype=torch.float64), torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64)
    xt = _bc(a, x0).sqrt() * x0 + (1 - _bc(a, x0)).sqrt() * eps
    assert torch.allclose(ddim_step(xt, eps, a, a), xt, atol=1e-12)
    assert torch.allclose(ddim_step(xt, eps, a, torch.ones(3, dtype=torch.float64)), x0, atol=1e-12)
    assert torch.allclose(ddim_step(xt, eps, a, b), _bc(b, x0).sqrt() * x0 + (1 - _bc(b, x0)).sqrt() * eps, atol=1e-12)


def test_discriminator_loss_smoothing_moves_the_optimum():
    """With real target s the loss of a constant logit l on real images is minimised at σ(l) = s, not 1."""
    l = torch.linspace(-5, 8, 2601, dtype=torch.float64)
    for s in (1.0, 0.9, 0.8):
        losses = torch.stack([discriminator_loss(v.view(1), torch.tensor([-1e3], dtype=torch.float64), s) for v in l])
        best = torch.sigmoid(l[losses.argmin()]).item()
        assert abs(best - min(s, torch.sigmoid(l[-1]).item())) < 2e-3, (s, best)


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



@pytest.mark.parametrize("size", [16, 32])
def test_generative_models_take_their_image_size_from_the_config(size):
    torch.manual_seed(0)
    x, y = torch.rand(3, size * size), torch.randint(0, 10, (3,))
    m = vae.VAE(vae.VAEConfig(latent=4, width=8, image_size=size))
    assert m(x)["loss"].isfinite() and m.sample(2).shape == (2, 1, size, size)
    cfg = gan.GANConfig(latent=8, width=8, image_size=size)
    fake = gan.Generator(cfg).sample(2)
    assert fake.shape == (2, 1, size, size) and gan.Discriminator(cfg)(fake).shape == (2,)
    dm = diffusion.DDPM(diffusion.DDPMConfig(T=4, width=8, n_classes=10, image_size=size))
    assert dm(x, y)["loss"].isfinite() and diffusion.ddim_sample(dm, y, steps=2).shape == (3, 1, size, size)
    assert diffusion.ddpm_sample(dm, y).shape == (3, 1, size, size)
    for config in (vae.VAEConfig, gan.GANConfig, diffusion.DDPMConfig):
        with pytest.raises(ValueError, match="image_size must be a multiple of 4"):
            config(image_size=size + 2)

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


def _mixture_log_joint(x, pts, log_pi, ab):
    """log π_k N(x; √ᾱ x_k, (1 − ᾱ) I) for a data set of points ``pts`` (K, D) at the noise level ᾱ: (N, K)."""
    d2 = (x[:, None, :] - ab.sqrt() * pts[None]).pow(2).sum(-1)
    return log_pi - d2 / (2 * (1 - ab)) - 0.5 * pts.shape[1] * torch.log(2 * torch.pi * (1 - ab))


@pytest.mark.parametrize("ab", [0.95, 0.5, 0.05, 1e-4])
def test_tweedie_the_best_noise_prediction_is_a_scaled_score_and_x0_hat_the_posterior_mean(ab):
    """For data = a few points, p_t is a Gaussian mixture: autograd's ∇ log p_t against Bayes' posterior mean —
    E[x₀ | x_t] = (x_t + (1−ᾱ) ∇log p_t)/√ᾱ and E[ε | x_t] = −√(1−ᾱ) ∇log p_t."""
    torch.manual_seed(0)
    ab = torch.tensor(ab, dtype=torch.float64)
    pts, log_pi = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64).log()
    x = (torch.randn(50, 3, dtype=torch.float64) * 1.5).requires_grad_(True)
    lj = _mixture_log_joint(x, pts, log_pi, ab)
    score, = torch.autograd.grad(torch.logsumexp(lj, 1).sum(), x)
    post_mean = lj.detach().softmax(1) @ pts
    x = x.detach()
    assert torch.allclose((x + (1 - ab) * score) / ab.sqrt(), post_mean, atol=1e-9)
    eps_best = (x - ab.sqrt() * post_mean) / (1 - ab).sqrt()
    assert torch.allclose(eps_best, -(1 - ab).sqrt() * score, atol=1e-9)
    # Monte Carlo: E[ε | x_t] really is the least-squares predictor — draws of (x₀, ε) around it score less than it
    k = torch.multinomial(log_pi.exp(), 4000, replacement=True)
    e = torch.randn(4000, 3, dtype=torch.float64)
    xs = ab.sqrt() * pts[k] + (1 - ab).sqrt() * e
    lj = _mixture_log_joint(xs, pts, log_pi, ab)
    best = (xs - ab.sqrt() * (lj.softmax(1) @ pts)) / (1 - ab).sqrt()
    assert (best - e).pow(2).mean() <= (0.9 * best - e).pow(2).mean() and (best - e).pow(2).mean() <= (xs - e).pow(2).mean()


def test_guidance_is_bayes_rule_on_scores():
    """Two classes, each a mixture of points: ∇log p(x | y) = ∇log p(x) + ∇log p(y | x), so the guided
    combination uncond + w·(cond − uncond) is the score of p(x)·p(y | x)^w."""
    torch.manual_seed(1)
    ab = torch.tensor(0.4, dtype=torch.float64)
    pts = torch.randn(6, 2, dtype=torch.float64)
    cls = torch.tensor([0, 0, 0, 1, 1, 1])
    log_pi = torch.full((6,), 1 / 6, dtype=torch.float64).log()
    x = torch.randn(30, 2, dtype=torch.float64, requires_grad=True)

    def grad(f):
        return torch.autograd.grad(f(x).sum(), x)[0]
    lj = lambda x: _mixture_log_joint(x, pts, log_pi, ab)
    log_px = lambda x: torch.logsumexp(lj(x), 1)
    log_px_y = lambda x: torch.logsumexp(lj(x)[:, cls == 1], 1) - np.log(0.5)      # p(x | y = 1)
    log_py_x = lambda x: log_px_y(x) + np.log(0.5) - log_px(x)                      # Bayes: p(y | x)
    assert torch.allclose(grad(log_px_y), grad(log_px) + grad(log_py_x), atol=1e-10)
    for w in (0.0, 1.0, 3.0):
        guided = grad(log_px) + w * (grad(log_px_y) - grad(log_px))
        assert torch.allclose(guided, grad(lambda x: log_px(x) + w * log_py_x(x)), atol=1e-10)


def test_model_score_and_tweedie_x0_from_it():
    """diffusion.score is −ε̂_w/√(1−ᾱ_t); with a network that knows the data is one image x*, the score is the
    Gaussian's, −(x − √ᾱ x*)/(1−ᾱ), and Tweedie's x̂₀ from it is x* itself. w = 0 is the unconditional prediction."""
    m = diffusion.DDPM(diffusion.DDPMConfig(T=20, width=8, n_classes=10)).eval()
    s = m.schedule
    target = torch.rand(3, 1, 28, 28) * 2 - 1

    def eps_one_image(x, tt, y=None):
        ab = s.alpha_bar[tt].view(-1, 1, 1, 1)
        return (x - ab.sqrt() * target) / (1 - ab).sqrt()
    m.eps = eps_one_image
    x, t, y = torch.randn(3, 1, 28, 28), torch.tensor([2, 10, 19]), torch.tensor([1, 2, 3])
    ab = s.alpha_bar[t].view(-1, 1, 1, 1)
    sc = diffusion.score(m, x, t, y)
    assert torch.allclose(sc, -(x - ab.sqrt() * target) / (1 - ab), atol=1e-4)
    assert torch.allclose((x + (1 - ab) * sc) / ab.sqrt(), target, atol=1e-3)
    torch.manual_seed(0)
    real = diffusion.DDPM(diffusion.DDPMConfig(T=10, width=8, n_classes=10, film=True, p_uncond=0.2)).eval()
    with torch.no_grad():
        unc = real.eps(x, t.clamp(max=9), torch.full_like(y, 10))
        assert torch.allclose(diffusion.guided_eps(real, x, t.clamp(max=9), y, 0.0), unc, atol=1e-6)
        ab = real.schedule.alpha_bar[t.clamp(max=9)].view(-1, 1, 1, 1)
        assert torch.allclose(diffusion.score(real, x, t.clamp(max=9), y, 2.0),
                              -diffusion.guided_eps(real, x, t.clamp(max=9), y, 2.0) / (1 - ab).sqrt(), atol=1e-6)


def test_within_class_spread():
    a = torch.zeros(1, 28, 28)
    b = a.clone()
    b[0, :2, :2] = 1.0                                   # ‖a − b‖ = 2
    imgs = torch.stack([a, b, a + 0.5, a + 0.5, a + 0.5, a])
    probs = F.one_hot(torch.tensor([0, 0, 1, 1, 1, 2]), 10).float()   # class 2 has one image: left out
    assert abs(J.within_class_spread(imgs, probs) - (2.0 + 0.0) / 2) < 1e-9
    three = torch.stack([a, b, b])                         # pairs: 2, 2, 0 → mean 4/3
    assert abs(J.within_class_spread(three, F.one_hot(torch.zeros(3, dtype=torch.long), 10).float()) - 4 / 3) < 1e-9
    assert np.isnan(J.within_class_spread(imgs[:2], F.one_hot(torch.tensor([0, 1]), 10).float()))
