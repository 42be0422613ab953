"""Registered text datasets (see datasets.py for the pattern).

``text_sources`` — labelled sentences for text classification (lessons 08–10):

* **real** (downloaded, sha256-checked): the TREC question-classification set (Li & Roth 2002,
  5 452 training + 500 TREC-10 test questions, 6 coarse classes: abbreviation, description, entity,
  human, location, numeric);
* **embedded default** (offline): real documentation sentences classified by the software they
  document — Python's own language/library docs (``pydoc_data.topics``), NumPy, scikit-learn and
  PyTorch docstrings — read from the installed packages (a few thousand sentences, balanced classes).
  Many sentences are generic ("If None, the default is used."), so the task is learnable but not trivial.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import re
from dataclasses import dataclass, field

import numpy as np

from kit.data.fetch import Source
from kit.data.registry import Dataset, register


@dataclass
class LabelledText:
    """Sentences ``texts`` with integer ``labels`` (int64) naming ``classes[label]``."""
    texts: list[str]
    labels: np.ndarray
    classes: list[str]
    source: str
    description: str = ""
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        """Sentences per class."""
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}


# ---------------------------------------------------------------- real: TREC question classification
TREC_CLASSES = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
TREC_NAMES = ["abbreviation", "description", "entity", "human", "location", "numeric"]


def _parse_trec(path) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    for line in path.read_bytes().decode("latin-1").splitlines():
        label, _, question = line.strip().partition(" ")
        if not question:
            continue
        texts.append(question.strip())
        labels.append(TREC_CLASSES.index(label.split(":")[0]))
    return texts, labels


def _trec_real(paths) -> LabelledText:
    tr_t, tr_y = _parse_trec(paths[0])
    te_t, te_y = _parse_trec(paths[1])
    return LabelledText(tr_t + te_t, np.array(tr_y + te_y, dtype=np.int64), list(TREC_NAMES), source="",
                        description="TREC question classification (Li & Roth 2002): 5 452 + 500 questions, "
                                    "6 coarse answer types",
                        meta={"n_official_train": len(tr_t)})


# ---------------------------------------------------------------- embedded: documentation sentences
_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'`])")
_ROLE = re.compile(r":\w+:`~?([^`]*)`")
_SKIP_PREFIX = (">>>", "...", "$ ", "|", "+-", "==", "--", "..", ":")
_HEADER = re.compile(r"^[A-Z][\w ]{0,30}::?$")
_FIELD = re.compile(r"^\w[\w ]{0,20}:\s|\w \([\w ,]+\):")  # "Returns: …", "stride (int or tuple): …"


def _paragraphs(text: str) -> list[str]:
    """Prose paragraphs of reST/numpydoc text: code examples, tables, headings and directives dropped."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in para.splitlines() if ln.strip()]
        if not lines or any(ln.startswith(_SKIP_PREFIX) for ln in lines):
            continue
        if len(lines) > 1 and set(lines[1]) <= set("=-~^*#"):
            continue
        if _HEADER.match(lines[0]):  # "Args:", "Shape:", "Example::" … a list of fields follows
            continue
        out.append(" ".join(lines))
    return out


def doc_sentences(text: str, min_words: int = 6, max_words: int = 50) -> list[str]:
    """Whole prose sentences of a documentation text (capitalised, ending in . ! or ?, mostly letters)."""
    out = []
    for para in _paragraphs(text):
        for s in _SENT_SPLIT.split(para):
            s = _ROLE.sub(r"\1", re.sub(r"\s+", " ", s).strip())
            s = s.replace("``", "").replace("`", "").replace("*", "")
            if not s or not min_words <= len(s.split()) <= max_words:
                continue
            if not s[0].isupper() or s[-1] not in ".!?" or _FIELD.search(s):
                continue
            if sum(c.isalpha() or c == " " for c in s) / len(s) < 0.85:
                continue
            out.append(s)
    return out


def _docstrings(module: str) -> list[str]:
    """Docstrings of the public classes and functions of ``module`` (sorted by name; missing → [])."""
    try:
        m = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - a module missing from some version: skip it
        return []
    docs = []
    for name in sorted(getattr(m, "__all__", None) or dir(m)):
        if name.startswith("_"):
            continue
        try:
            obj = getattr(m, name, None)
        except Exception:  # noqa: BLE001 - e.g. sklearn's experimental names raise on access
            continue
        if obj is None or not (inspect.isclass(obj) or callable(obj)):
            continue
        doc = getattr(obj, "__doc__", None)
        if isinstance(doc, str):
            docs.append(inspect.cleandoc(doc))
    return docs


def _pydoc_topics() -> list[str]:
    from pydoc_data.topics import topics
    return [topics[k] for k in sorted(topics)]


_SKLEARN = ["linear_model", "ensemble", "svm", "cluster", "decomposition", "preprocessing", "model_selection",
            "metrics", "neighbors", "tree", "feature_extraction.text", "naive_bayes", "manifold", "mixture",
            "neural_network", "impute", "feature_selection", "covariance", "gaussian_process",
            "kernel_approximation", "semi_supervised", "pipeline", "compose", "inspection", "calibration",
            "cross_decomposition", "discriminant_analysis", "isotonic", "kernel_ridge", "multiclass",
            "random_projection"]
_TORCH = ["torch", "torch.nn", "torch.optim", "torch.nn.functional", "torch.nn.init", "torch.distributions",
          "torch.utils.data", "torch.linalg", "torch.autograd"]
_NUMPY = ["numpy", "numpy.linalg", "numpy.random", "numpy.fft"]

DOC_SOURCES = {  # class name → function returning that source's documentation texts
    "Python docs": _pydoc_topics,
    "NumPy": lambda: [d for m in _NUMPY for d in _docstrings(m)],
    "scikit-learn": lambda: [d for m in _SKLEARN for d in _docstrings("sklearn." + m)],
    "PyTorch": lambda: [d for m in _TORCH for d in _docstrings(m)],
}


@functools.lru_cache(maxsize=4)
def _doc_sentences_cached(per_class: int, seed: int):
    per_source = {}
    for name, texts in DOC_SOURCES.items():
        per_source[name] = list(dict.fromkeys(s for t in texts() for s in doc_sentences(t)))
    # a sentence found in two sources ("If None, all features are used.") has no single right label
    seen: dict[str, int] = {}
    for sents in per_source.values():
        for s in sents:
            seen[s] = seen.get(s, 0) + 1
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i, sents in enumerate(per_source.values()):
        sents = [s for s in sents if seen[s] == 1]
        pick = sorted(rng.permutation(len(sents))[:per_class])
        texts += [sents[j] for j in pick]
        labels += [i] * len(pick)
    return tuple(texts), tuple(labels)


def documentation_sentences(per_class: int = 1200, seed: int = 0) -> LabelledText:
    """Real sentences from four documentation sources installed with the kit, labelled by source.

    Up to ``per_class`` sentences each (a seeded sample of all of them). The exact sentences depend
    on the installed versions of numpy, scikit-learn and torch; a given environment always gives the
    same set."""
    texts, labels = _doc_sentences_cached(per_class, seed)
    import numpy as _np
    import sklearn
    import torch
    versions = {"numpy": _np.__version__, "scikit-learn": sklearn.__version__, "torch": torch.__version__}
    return LabelledText(list(texts), np.array(labels, dtype=np.int64), list(DOC_SOURCES), source="",
                        description="documentation sentences labelled by the software they document "
                                    "(Python, NumPy, scikit-learn, PyTorch)", meta={"versions": versions})


register(Dataset(
    name="text_sources",
    description="Labelled sentences for text classification: TREC question types online; "
                "documentation sentences by source (Python/NumPy/scikit-learn/PyTorch) offline",
    sources=[Source("https://cogcomp.seas.upenn.edu/Data/QA/QC/train_5500.label",
                    "9e4c8bdcaffb96ed61041bd64b564183d52793a8e91d84fc3a8646885f466ec3", "train_5500.label"),
             Source("https://cogcomp.seas.upenn.edu/Data/QA/QC/TREC_10.label",
                    "033f22c028c2bbba9ca682f68ffe204dc1aa6e1cf35dd6207f2d4ca67f0d0e8e", "TREC_10.label")],
    load_real=_trec_real,
    embedded=documentation_sentences,
    embedded_note="real documentation sentences labelled by source: Python docs / NumPy / scikit-learn / PyTorch",
    license="TREC QC: freely available for research (Li & Roth); docs: PSF, BSD-3 licences",
))
