"""Looking inside an image classifier: feature maps, saliency, SmoothGrad, Grad-CAM, integrated gradients.

Plain torch: forward hooks record activations, ``torch.autograd.grad`` gives gradients with respect
to the *input* (the model's own ``.grad`` fields are never touched). Every function puts the model in
``eval`` mode for the call (BatchNorm must use its running statistics) and restores its mode after.

``target``: the class explained for each image — an int, a tensor ``(N,)``, or ``None`` for the
predicted class. Attribution maps come back with the input's shape ``(N, C, H, W)`` (Grad-CAM: ``(N, H, W)``).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kit.models.base import evaluating


def _targets(logits: torch.Tensor, target) -> torch.Tensor:
    if target is None:
        return logits.argmax(1)
    t = torch.as_tensor(target, device=logits.device).long()
    return t.expand(len(logits)) if t.ndim == 0 else t


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# ---------------------------------------------------------------- activations
def feature_maps(model: nn.Module, x: torch.Tensor, layers: Iterable[nn.Module] | None = None) -> list[torch.Tensor]:
    """Outputs of ``layers`` (default: ``model.conv_layers()``) for input ``x``, recorded by forward hooks:
    a list of ``(N, channels, h, w)`` tensors, first layer first."""
    layers = list(model.conv_layers() if layers is None else layers)
    out: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: out.append(o.detach())) for m in layers]
    try:
        with evaluating(model), torch.no_grad():
            model(x.to(_device(model)))
    finally:
        for h in hooks:
            h.remove()
    return out


# ---------------------------------------------------------------- gradients
def saliency(model: nn.Module, x: torch.Tensor, target=None) -> torch.Tensor:
    """Vanilla gradient (Simonyan et al. 2014): ∂ logit_target / ∂ x, one map per image (signed).

    Which pixels would change the class score most if nudged. Plot ``.abs()`` (or keep the sign)."""
    with evaluating(model):
        x = x.detach().to(_device(model)).requires_grad_(True)
        logits = model(x)
        t = _targets(logits, target)
        score = logits.gather(1, t[:, None]).sum()  # images are independent: one backward for all
        (grad,) = torch.autograd.grad(score, x)
    return grad.detach()


def smoothgrad(model: nn.Module, x: torch.Tensor, target=None, n: int = 25, sigma: float = 0.15,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): the average vanilla gradient over ``n`` noisy copies
    ``x + N(0, (σ·(max−min))²)``; the noise averages away the gradient's pixel-level jitter.
    The target is fixed from the clean image. Pass a seeded ``generator`` for reproducible maps."""
    x = x.detach()
    if target is None:
        with evaluating(model), torch.no_grad():
            target = model(x.to(_device(model))).argmax(1)
    scale = sigma * float(x.max() - x.min())
    total = torch.zeros_like(x, device=_device(model))
    for _ in range(n):
        noise = torch.randn(x.shape, generator=generator).to(x.device) * scale
        total += saliency(model, x + noise, target)
    return total / n


def integrated_gradients(model: nn.Module, x: torch.Tensor, target=None, baseline: torch.Tensor | None = None,
                         steps: int = 64, batch: int = 512) -> torch.Tensor:
    """Integrated gradients (Sundararajan et al. 2017): ``(x − x₀) · ∫₀¹ ∂f/∂x(x₀ + α(x − x₀)) dα``,
    the integral by the trapezoid rule on ``steps`` intervals; ``x₀`` is a black image by default.

    *Completeness*: the attributions of an image sum to ``f(x) − f(x₀)`` (f = the target's logit), up to
    the quadrature error, which shrinks as ``steps`` grows (see :func:`completeness_gap`)."""
    dev = _device(model)
    x = x.detach().to(dev)
    x0 = torch.zeros_like(x) if baseline is None else baseline.detach().to(dev).expand_as(x)
    if target is None:
        with evaluating(model), torch.no_grad():
            target = model(x).argmax(1)
    t = _targets(torch.empty(len(x), 1, device=dev), target)
    alphas = torch.linspace(0, 1, steps + 1, device=dev)
    weights = torch.full((steps + 1,), 1.0 / steps, device=dev)
    weights[0] = weights[-1] = 0.5 / steps  # trapezoid rule
    out = torch.empty_like(x)
    per = max(1, batch // (steps + 1))  # images per backward pass
    for i in range(0, len(x), per):
        xi, x0i, ti = x[i:i + per], x0[i:i + per], t[i:i + per]
        path = x0i[:, None] + alphas.view(1, -1, *[1] * (x.ndim - 1)) * (xi - x0i)[:, None]  # (n, steps+1, …)
        flat = path.reshape(-1, *x.shape[1:])
        grads = saliency(model, flat, ti.repeat_interleave(steps + 1)).view(path.shape)
        avg = (grads * weights.view(1, -1, *[1] * (x.ndim - 1))).sum(1)
        out[i:i + per] = (xi - x0i) * avg
    return out


def completeness_gap(model: nn.Module, x: torch.Tensor, attributions: torch.Tensor, target=None,
                     baseline: torch.Tensor | None = None) -> torch.Tensor:
    """Per image: ``Σ attributions − (f(x) − f(x₀))``; zero for exact integrated gradients."""
    dev = _device(model)
    x = x.detach().to(dev)
    x0 = torch.zeros_like(x) if baseline is None else baseline.detach().to(dev).expand_as(x)
    with evaluating(model), torch.no_grad():
        fx, f0 = model(x), model(x0)
        t = _targets(fx, target)
        diff = fx.gather(1, t[:, None])[:, 0] - f0.gather(1, t[:, None])[:, 0]
    return attributions.to(dev).flatten(1).sum(1) - diff


def default_cam_layer(model: nn.Module) -> nn.Module:
    """Grad-CAM's default layer: the last *rectified* feature map — the ReLU after the last convolution (so after
    its batch norm), as in Selvaraju et al. Hooking the convolution itself would weigh raw, pre-normalisation
    values whose sign and scale batch norm still changes; models without ``activation_layers()`` fall back to
    their last convolution."""
    acts = model.activation_layers() if hasattr(model, "activation_layers") else []
    return acts[-1] if acts else model.conv_layers()[-1]


def cam_inputs(model: nn.Module, x: torch.Tensor, target=None, layer: nn.Module | None = None):
    """``(A, dA)``: the output of ``layer`` (default :func:`default_cam_layer`) for input ``x``, recorded by a
    forward hook, and the gradient of the target logit with respect to it; both ``(N, C, h, w)``."""
    layer = layer if layer is not None else default_cam_layer(model)
    saved = {}

    def hook(_m, _i, o):
        saved["A"] = o

    h = layer.register_forward_hook(hook)
    try:
        with evaluating(model):
            x = x.detach().to(_device(model))
            logits = model(x)
            t = _targets(logits, target)
            A = saved["A"]
            (dA,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), A)
    finally:
        h.remove()
    return A.detach(), dA


def grad_cam(model: nn.Module, x: torch.Tensor, target=None, layer: nn.Module | None = None,
             upsample: bool = True) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017): ReLU(Σ_k α_k A_k) where ``A_k`` are the channels of ``layer``'s
    output (default: the last block's rectified feature map, after batch norm and ReLU — see
    :func:`default_cam_layer`) and ``α_k`` the spatial mean of ∂ logit_target / ∂A_k.
    A coarse, non-negative map of *where* the evidence for the class is; bilinearly upsampled to the
    input's size (``upsample``). Returns ``(N, H, W)``."""
    A, dA = cam_inputs(model, x, target, layer)
    alpha = dA.mean((2, 3), keepdim=True)
    cam = F.relu((alpha * A).sum(1)).detach()
    if upsample:
        cam = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return cam


METHODS = {"saliency": saliency, "smoothgrad": smoothgrad, "grad_cam": grad_cam,
           "integrated_gradients": integrated_gradients}


def attribution_maps(model: nn.Module, x: torch.Tensor, target=None, methods: Iterable[str] = tuple(METHODS),
                     seed: int = 0, **kwargs) -> dict[str, torch.Tensor]:
    """``{method: (N, H, W) map}`` for plotting: |gradient| for saliency and SmoothGrad (max over
    channels), |attribution| for integrated gradients, the Grad-CAM map as is. ``seed`` seeds SmoothGrad."""
    out = {}
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
        extra = dict(kwargs.get(name, {}))
        if name == "smoothgrad":
            extra.setdefault("generator", torch.Generator().manual_seed(seed))
        m = METHODS[name](model, x, target, **extra)
        out[name] = m if name == "grad_cam" else m.abs().amax(1)
    return {k: v.cpu() for k, v in out.items()}


# ---------------------------------------------------------------- honesty checks
def randomized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with every layer re-initialised (same architecture, no learning):
    the *model randomisation test* of Adebayo et al. (2018), "Sanity checks for saliency maps"."""
    import copy
    clone = copy.deepcopy(model)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for m in clone.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
            if hasattr(m, "reset_running_stats"):
                m.reset_running_stats()
    finally:
        torch.random.set_rng_state(state)
    return clone


def spearman(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> np.ndarray:
    """Spearman rank correlation between maps, per image (rows of ``a`` and ``b`` flattened), over the
    pixels where ``mask`` is true (all pixels by default).

    1: the same pixel ordering; ≈0: unrelated. Ties get their average rank; a constant map gives nan."""
    from scipy.stats import spearmanr
    a = a.detach().flatten(1).double().cpu().numpy()
    b = b.detach().flatten(1).double().cpu().numpy()
    keep = np.ones_like(a, dtype=bool) if mask is None else mask.detach().flatten(1).cpu().numpy().astype(bool)
    out = []
    for u, v, k in zip(a, b, keep):
        u, v = u[k], v[k]
        out.append(np.nan if len(u) < 2 or u.std() == 0 or v.std() == 0 else spearmanr(u, v).statistic)
    return np.array(out, dtype=np.float64)


# ---------------------------------------------------------------- mistakes
@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """Softmax probabilities ``(N, classes)`` in eval mode, on the CPU."""
    with evaluating(model):
        dev = _device(model)
        return torch.cat([model(x[i:i + batch].to(dev)).softmax(1).cpu() for i in range(0, len(x), batch)])


def confident_mistakes(probs: torch.Tensor, y: torch.Tensor, k: int = 12) -> torch.Tensor:
    """Indices of the (at most) ``k`` wrong predictions made with the highest confidence, most confident
    first (ties broken by index, so the order is deterministic)."""
    probs, y = torch.as_tensor(probs), torch.as_tensor(y)
    conf, pred = probs.max(1)
    wrong = torch.nonzero(pred != y).flatten()
    order = sorted(wrong.tolist(), key=lambda i: (-float(conf[i]), i))
    return torch.tensor(order[:k], dtype=torch.long)


__all__ = ["METHODS", "attribution_maps", "cam_inputs", "completeness_gap", "default_cam_layer", "confident_mistakes", "evaluating", "feature_maps",
           "grad_cam", "integrated_gradients", "predict_proba", "randomized_copy", "saliency", "smoothgrad",
           "spearman"]
