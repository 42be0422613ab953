"""Datasets: one registry, real sources with sha256, an embedded default when offline.

``kit.data.load(name)`` prints one line saying which source was used; ``kit.data.load_tokenizer(name)`` gives a
real LLM's tokenizer and chat template (``kit.data.llm_tokenizer``).
"""
from kit.data.fetch import ChecksumError, DataError, DataUnavailable, Source, cache_dir, fetch, safe_extract
from kit.data.llm_tokenizer import load_tokenizer
from kit.data.registry import REGISTRY, Dataset, load, names, register
from kit.data.types import Tabular, Text, split
from kit.data.datasets import shipped_results
from kit.data import datasets as _datasets, ratings as _ratings, text_datasets as _text, vision_datasets as _vision  # noqa: F401,E501  (fill the registry)

__all__ = ["shipped_results", "ChecksumError", "DataError", "DataUnavailable", "Dataset", "REGISTRY", "Source", "Tabular",
           "Text", "cache_dir", "fetch", "load", "load_tokenizer", "names", "register", "safe_extract", "split"]
