"""The one ONNX Runtime session kit makes, for lessons (:mod:`kit.techniques.export`) and the service
(:mod:`kit.serve.app`) alike. It imports no torch, so a server that needs only a session starts in about a second."""
from __future__ import annotations

from pathlib import Path

__all__ = ["ort_session"]


def ort_session(path: str | Path, threads: int = 1):
    """An ONNX Runtime CPU session using ``threads`` intra-op threads (1: one request on one core)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
