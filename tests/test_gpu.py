"""`make test-gpu`: every notebook executed on CUDA (skipped where there is no GPU; CI is CPU-only)."""
from __future__ import annotations

import pytest

from kit.lessons.run import execute, list_notebooks
from tests.test_notebooks import bar

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")]


@pytest.mark.parametrize("nb", list_notebooks(), ids=lambda p: p.stem)
def test_notebook_on_cuda(nb, tmp_path):
    """Smoke parameters on device='cuda' meet the same bar as on the CPU."""
    res = execute(nb, tmp_path, {"smoke": True, "device": "cuda"}, timeout=900, html=False, progress=False)
    assert bar(nb.stem)(res.metrics["metrics"]), res.metrics
