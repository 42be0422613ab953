"""Export a model to ONNX, run it with ONNX Runtime, and check that it computes what PyTorch computes.

    work = kit.results.scratch_dir("export")                        # a folder of this process's own
    path, how = to_onnx(model, example_input, work / "model.onnx")  # torch.onnx.export
    sess = ort_session(path)                                        # onnxruntime.InferenceSession (CPU)
    parity(model, sess, X)                                          # max |PyTorch − ONNX Runtime|

A relative ``path`` is relative to the working directory, which for a lesson is the folder of the sources
(JupyterLab, ``papermill --cwd``): lessons export into their :func:`kit.results.scratch_dir` instead.

``to_onnx`` uses the torch.export-based exporter (``dynamo=True``, the default since torch 2.9; it needs
the ``onnxscript`` package) and falls back to the legacy TorchScript exporter (``dynamo=False``) when
``onnxscript`` is missing. Both work offline.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kit.techniques.onnx_runtime import ort_session

__all__ = ["to_onnx", "ort_session", "ort_runner", "parity", "onnx_summary"]


def _has_onnxscript() -> bool:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def to_onnx(model: nn.Module, example: torch.Tensor | tuple, path: str | Path, *, dynamic_batch: bool = True,
            dynamo: bool | None = None, input_names=("x",), output_names=("logits",),
            opset: int | None = None) -> tuple[Path, str]:
    """Export ``model`` (in eval mode) traced on ``example``; returns ``(path, exporter used)``.

    ``dynamic_batch`` makes the first axis of every input symbolic, so the file accepts any batch size.
    The file is checked with ``onnx.checker`` before it is returned.
    """
    import onnx
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    args = example if isinstance(example, tuple) else (example,)
    model = model.eval()
    if dynamo is None:
        dynamo = _has_onnxscript()
    kw = dict(input_names=list(input_names), output_names=list(output_names))
    if opset is not None:
        kw["opset_version"] = opset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter: deprecations inside torch.export / onnxscript
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" notes
        if dynamo:
            if dynamic_batch:
                batch = torch.export.Dim("batch")
                kw["dynamic_shapes"] = tuple({0: batch} for _ in args)
            # external_data=False: weights inside the one .onnx file (fine below ONNX's 2 GB limit)
            torch.onnx.export(model, args, str(path), dynamo=True, verbose=False, external_data=False, **kw)
        else:
            if dynamic_batch:
                kw["dynamic_axes"] = {n: {0: "batch"} for n in list(input_names) + list(output_names)}
            torch.onnx.export(model, args, str(path), dynamo=False, **kw)
    onnx.checker.check_model(str(path))
    return path, "torch.export (dynamo=True)" if dynamo else "TorchScript (dynamo=False)"


def ort_runner(sess):
    """``X (tensor or array) → outputs[0]`` as a torch tensor, so a session can be measured like a model."""
    name = sess.get_inputs()[0].name

    def run(X):
        x = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
        return torch.from_numpy(sess.run(None, {name: x})[0])
    return run


@torch.inference_mode()
def parity(model: nn.Module, sess, X: torch.Tensor) -> float:
    """Largest absolute difference between ``model(X)`` and the ONNX Runtime output on the same ``X``."""
    ref = model.eval()(X).float().cpu()
    got = ort_runner(sess)(X).float()
    if ref.shape != got.shape:
        raise AssertionError(f"ONNX output shape {tuple(got.shape)} differs from PyTorch {tuple(ref.shape)}")
    return float((ref - got).abs().max())


def onnx_summary(path: str | Path) -> dict:
    """File size (with any external-data file beside it), opset, operator counts and input/output shapes of an ONNX file."""
    import onnx
    m = onnx.load(str(path))
    ops: dict[str, int] = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1

    def shape(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
    size = sum(p.stat().st_size for p in Path(path).parent.glob(Path(path).name + "*") if p.is_file())
    return {"bytes": size, "opset": max(o.version for o in m.opset_import),
            "ops": dict(sorted(ops.items(), key=lambda kv: -kv[1])),
            "inputs": {v.name: shape(v) for v in m.graph.input},
            "outputs": {v.name: shape(v) for v in m.graph.output}}
