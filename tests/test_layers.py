"""kit's folders are its layers, and imports flow one way: core → data → models → train → viz → techniques → exercises → lessons.

``serve`` (lesson 18's service) sits on the techniques layer (5): it uses kit.techniques.onnx_runtime's ort_session and
may use data/models/train/viz; only kit.lessons (the ``kit serve`` verb) and notebooks import it."""
from __future__ import annotations

import ast
from pathlib import Path

KIT = Path(__file__).resolve().parents[1] / "kit"
LAYER = {"device": 0, "params": 0, "results": 0, "checks": 0, "metrics": 0,
         "data": 1, "models": 2, "train": 3, "text": 3, "viz": 4, "techniques": 5, "serve": 5,
         "exercises": 6, "lessons": 7}
# The one sanctioned upward import: fit(live=True) draws its plot with kit.viz, imported only when asked for.
ALLOWED = {("kit/train/callbacks.py", "kit.viz"), ("kit/train/lm.py", "kit.viz"), ("kit/train/lm.py", "kit.viz.text")}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYER.get(parts[1]) if len(parts) > 1 and parts[0] == "kit" else None


def test_no_module_imports_a_higher_layer():
    bad = []
    for path in sorted(KIT.rglob("*.py")):
        rel = path.relative_to(KIT.parent).as_posix()
        me = _layer(".".join(path.relative_to(KIT.parent).with_suffix("").parts))
        if me is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for name in names:
                other = _layer(name)
                if other is not None and other > me and (rel, name) not in ALLOWED:
                    bad.append(f"{rel} imports {name}")
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_the_top_level_holds_only_the_shared_core():
    flat = sorted(p.stem for p in KIT.glob("*.py") if not p.stem.startswith("_"))
    assert flat == ["checks", "device", "metrics", "params", "results", "text"], flat
