"""The dataset registry and ``load``: real source when reachable, embedded default otherwise."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kit.data.fetch import DataError, DataUnavailable, Source, fetch

SOURCES = ("auto", "real", "embedded")


@dataclass
class Dataset:
    name: str
    description: str
    embedded: Callable[[], Any]
    embedded_note: str
    sources: list[Source] = field(default_factory=list)
    load_real: Callable[[list[Path]], Any] | None = None
    license: str = ""


REGISTRY: dict[str, Dataset] = {}


def register(ds: Dataset) -> Dataset:
    REGISTRY[ds.name] = ds
    return ds


def names() -> list[str]:
    return sorted(REGISTRY)


def load(name: str, source: str = "auto", verbose: bool = True):
    """Load dataset ``name``.

    ``source="auto"``: verified cache → ``KIT_DATA_MIRROR`` → download → embedded default.
    ``"real"`` fails instead of falling back; ``"embedded"`` skips the real source.
    The returned object's ``.source`` says which was used; one line is printed.
    """
    if name not in REGISTRY:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(names())}")
    if source not in SOURCES:
        raise ValueError(f"parameter 'source' must be one of {SOURCES}, got {source!r}")
    ds = REGISTRY[name]
    why = "no online source registered"
    if source != "embedded" and ds.sources:
        try:
            got = [fetch(s, name) for s in ds.sources]
        except DataUnavailable as e:
            if source == "real":
                raise
            why = str(e)
        else:
            obj = ds.load_real([p for p, _ in got])
            origins = sorted({o for _, o in got})
            obj.source = f"real data ({'/'.join(origins)}: {got[0][0].parent})"
            if verbose:
                print(f"data: {name} ← {obj.source}")
            return obj
    elif source == "real":
        raise DataUnavailable(f"dataset {name!r} has no online source; it ships embedded")
    obj = ds.embedded()
    obj.source = f"embedded default: {ds.embedded_note}"
    if verbose:
        extra = "" if not ds.sources or source == "embedded" else f" [real data unavailable: {why}]"
        print(f"data: {name} ← {obj.source}{extra}")
    return obj
