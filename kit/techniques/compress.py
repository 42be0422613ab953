"""Model compression, measured: int8 quantization, magnitude pruning, knowledge distillation.

Every technique here is the library's own (``torch.ao.quantization``, ``torch.nn.utils.prune``); this
module only wires them to a trained model and measures the result. :func:`measure` returns **one row per
variant** — size on disk, CPU latency (median of repeated runs) and accuracy — for the lesson's table::

    rows = [measure("fp32", model, X_test, y_test), measure("int8 dynamic", dynamic_int8(model), X_test, y_test)]

Quantization works on ``nn.Sequential`` stacks of ``Linear``/``ReLU`` (e.g. :class:`kit.models.mlp.MLP`,
whose layers are ``model.net``). ``torch.ao.quantization`` is deprecated in favour of the separate
``torchao`` package but still ships (and works) in torch 2.13; its deprecation warnings are silenced here.
"""
from __future__ import annotations

import copy
import gzip
import io
import statistics
import time
import warnings
from contextlib import contextmanager
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kit.models.base import accuracy, accuracy_of

__all__ = ["state_bytes", "gzip_bytes", "latency_ms", "accuracy_of", "measure", "dynamic_int8", "static_int8",
           "qat_prepare", "qat_convert", "prune_global", "sparsity", "distillation_loss", "Distillation",
           "tradeoff_figure", "quiet_quantization"]


@contextmanager
def quiet_quantization():
    """Silence ``torch.ao.quantization``'s deprecation and observer warnings (they repeat per layer)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated.*")
        warnings.filterwarnings("ignore", message=".*reduce_range will be deprecated.*")
        warnings.filterwarnings("ignore", message=".*must run observer before calling calculate_qparams.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.ao")
        yield


# ---------------------------------------------------------------- measuring
def state_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())`` — the model's size on disk."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def gzip_bytes(model: nn.Module) -> int:
    """Bytes of that file gzip-compressed (level 9): zeros left by pruning compress away, dense weights do not."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return len(gzip.compress(buf.getvalue(), compresslevel=9, mtime=0))


@contextmanager
def _threads(n: int | None):
    old = torch.get_num_threads()
    if n is not None and n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


def latency_ms(fn: Callable, x, repeats: int = 50, warmup: int = 5, threads: int | None = 1) -> float:
    """Median wall-clock milliseconds of ``fn(x)`` over ``repeats`` calls after ``warmup`` calls.

    One thread by default: a single request on one core, comparable across variants and machines.
    The median ignores the occasional slow call caused by other processes.
    """
    times = []
    with _threads(threads), torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def measure(name: str, model, X: torch.Tensor, y: torch.Tensor, *, size: int | None = None,
            size_gz: int | None = None, repeats: int = 50, batches: tuple[int, ...] = (1, 256),
            threads: int | None = 1, **extra) -> dict:
    """One measured row: ``variant, accuracy, size_kb, size_gz_kb, latency_ms_b<N>`` for each batch size
    ``N`` in ``batches`` (median over ``repeats`` calls), plus any ``extra`` columns.

    ``model`` is an ``nn.Module`` or any callable ``X → logits`` (e.g. :func:`kit.techniques.export.ort_runner` of an
    ONNX Runtime session; give its file ``size`` in bytes then).
    """
    if isinstance(model, nn.Module):
        model.eval()
        size = state_bytes(model) if size is None else size
        size_gz = gzip_bytes(model) if size_gz is None else size_gz
    row = {"variant": name, "accuracy": accuracy_of(model, X, y),
           "size_kb": None if size is None else size / 1024, "size_gz_kb": None if size_gz is None else size_gz / 1024}
    for b in batches:
        xb = X[:b] if len(X) >= b else X.repeat(-(-b // len(X)), *([1] * (X.ndim - 1)))[:b]
        row[f"latency_ms_b{b}"] = latency_ms(model, xb, repeats=repeats, threads=threads)
    row.update(extra)
    return row


# ---------------------------------------------------------------- quantization
def dynamic_int8(model: nn.Module) -> nn.Module:
    """Post-training **dynamic** quantization: ``Linear`` weights stored as int8, activations quantized
    on the fly per batch (``torch.ao.quantization.quantize_dynamic``). No calibration data needed."""
    from torch.ao.quantization import quantize_dynamic
    with quiet_quantization():
        return quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


class _QuantWrapper(nn.Module):
    """``QuantStub → layers → DeQuantStub``: where float tensors enter and leave the int8 region."""

    def __init__(self, layers: nn.Sequential):
        super().__init__()
        from torch.ao.quantization import DeQuantStub, QuantStub
        self.quant, self.layers, self.dequant = QuantStub(), layers, DeQuantStub()

    def forward(self, x):
        return self.dequant(self.layers(self.quant(x.flatten(1))))


def _fused_layers(model: nn.Module, qat: bool) -> nn.Sequential:
    """A copy of ``model.net`` (a ``Sequential`` of ``Linear``/``ReLU``) with each ``Linear→ReLU`` fused."""
    from torch.ao.quantization import fuse_modules, fuse_modules_qat
    layers = copy.deepcopy(getattr(model, "net", model))
    if not isinstance(layers, nn.Sequential):
        raise TypeError("static quantization here needs an nn.Sequential (or a model with a .net Sequential)")
    pairs = [[str(i), str(i + 1)] for i in range(len(layers) - 1)
             if isinstance(layers[i], nn.Linear) and isinstance(layers[i + 1], nn.ReLU)]
    layers.train(qat)  # fusion for QAT needs train mode, for post-training quantization eval mode
    return (fuse_modules_qat if qat else fuse_modules)(layers, pairs) if pairs else layers


def static_int8(model: nn.Module, calibration: torch.Tensor, batch_size: int = 256) -> nn.Module:
    """Post-training **static** quantization (eager mode): fuse Linear+ReLU, insert observers, run
    ``calibration`` inputs through to record activation ranges, then convert to int8 kernels."""
    from torch.ao.quantization import convert, get_default_qconfig, prepare
    with quiet_quantization():
        q = _QuantWrapper(_fused_layers(model, qat=False)).eval()
        q.qconfig = get_default_qconfig(torch.backends.quantized.engine)
        prepare(q, inplace=True)
        with torch.inference_mode():
            for i in range(0, len(calibration), batch_size):
                q(calibration[i:i + batch_size])
        return convert(q, inplace=True)


def qat_prepare(model: nn.Module) -> nn.Module:
    """**Quantization-aware training**: a copy with fake-quantization in the forward pass, to fine-tune
    (e.g. with ``kit.train.fit``) so the weights adapt to int8 rounding; then :func:`qat_convert`."""
    from torch.ao.quantization import get_default_qat_qconfig, prepare_qat
    with quiet_quantization():
        q = _QuantWrapper(_fused_layers(model, qat=True)).train()
        q.qconfig = get_default_qat_qconfig(torch.backends.quantized.engine)
        return prepare_qat(q, inplace=True)


def qat_convert(model: nn.Module) -> nn.Module:
    from torch.ao.quantization import convert
    with quiet_quantization():
        return convert(copy.deepcopy(model).eval(), inplace=True)


# ---------------------------------------------------------------- pruning
def _prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def prune_global(model: nn.Module, amount: float, permanent: bool = True) -> nn.Module:
    """A copy of ``model`` with the ``amount`` fraction of smallest-|w| weights (over all Linear/Conv
    layers together) set to zero — ``torch.nn.utils.prune.global_unstructured`` with L1 magnitude.

    ``permanent=False`` keeps the mask as a reparametrization (``weight = weight_orig * weight_mask``),
    so fine-tuning keeps pruned weights at zero; call ``torch.nn.utils.prune.remove`` (or
    :func:`prune_global` ``(m, 0.0)``) afterwards.
    """
    from torch.nn.utils import prune
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"parameter 'amount' must be in [0, 1), got {amount}")
    model = copy.deepcopy(model)
    params = _prunable(model)
    if amount > 0 or any(prune.is_pruned(m) for m, _ in params):
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
        if permanent:
            for m, name in params:
                prune.remove(m, name)
    return model


def sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero weights in the Linear/Conv layers."""
    ws = [m.weight for m, _ in _prunable(model)]
    return float(sum((w == 0).sum().item() for w in ws) / sum(w.numel() for w in ws))


# ---------------------------------------------------------------- distillation
def distillation_loss(temperature: float = 4.0, alpha: float = 0.7) -> Callable:
    """Hinton et al. (2015): ``alpha · T² · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − alpha) · CE(s, y)``.

    The ``T²`` keeps the soft-target gradients on the same scale as the hard-label ones when ``T``
    changes (the soft gradients shrink as ``1/T²``). Returns ``loss(student_logits, y, teacher_logits)``.
    """
    T = float(temperature)

    def loss(student_logits: torch.Tensor, y: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        soft = F.kl_div(F.log_softmax(student_logits / T, -1), F.log_softmax(teacher / T, -1),
                        log_target=True, reduction="batchmean") * T * T
        return alpha * soft + (1 - alpha) * F.cross_entropy(student_logits, y)
    return loss


class Distillation(nn.Module):
    """A student that learns from a teacher's logits: ``forward(x)`` → the student's logits;
    ``forward(x, y, teacher_logits)`` → ``{"loss", "acc"}`` with :func:`distillation_loss`, so
    ``fit(Distillation(student), (X, y, teacher_logits), loss_fn=None)`` trains the student."""

    def __init__(self, student: nn.Module, temperature: float = 4.0, alpha: float = 0.7):
        super().__init__()
        self.student, self.loss = student, distillation_loss(temperature, alpha)

    def forward(self, x, y=None, teacher_logits=None):
        logits = self.student(x)
        if y is None:
            return logits
        return {"loss": self.loss(logits, y, teacher_logits), "acc": torch.tensor(accuracy(logits, y))}


# ---------------------------------------------------------------- the figure
def tradeoff_figure(rows: list[dict], latency_keys: tuple[str, ...] = ("latency_ms_b1", "latency_ms_b256"),
                    title: str = "compression: accuracy, size on disk and latency of every variant"):
    """Three panels from :func:`measure` rows: accuracy, size on disk (raw and gzip), CPU latency."""
    from plotly.subplots import make_subplots
    names = [r["variant"] for r in rows]
    fig = make_subplots(rows=1, cols=3, subplot_titles=["test accuracy", "size on disk (kB)",
                                                        "CPU latency, median (ms)"])
    fig.add_bar(x=names, y=[r["accuracy"] for r in rows], name="accuracy", row=1, col=1,
                text=[f"{r['accuracy']:.3f}" for r in rows], textposition="auto")
    fig.add_bar(x=names, y=[r["size_kb"] for r in rows], name="file", row=1, col=2)
    fig.add_bar(x=names, y=[r["size_gz_kb"] for r in rows], name="file, gzipped", row=1, col=2)
    for k in latency_keys:
        if all(k in r for r in rows):
            fig.add_bar(x=names, y=[r[k] for r in rows], name=k.replace("latency_ms_b", "batch "), row=1, col=3)
    lo = min(r["accuracy"] for r in rows)
    fig.update_yaxes(range=[max(0.0, lo - 0.05), 1.0], row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=3)
    fig.update_layout(title=title, template="plotly_white", height=430, barmode="group",
                      margin=dict(t=70, b=120))
    return fig
