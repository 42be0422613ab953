"""kit: helpers for the deep-learning teaching notebooks.

Importing ``kit`` is cheap: submodules (and torch) load on first use, e.g. ``kit.data``.
"""
from importlib import import_module

__version__ = "0.1.0"
__all__ = ["checks", "data", "device", "lessons", "metrics", "models", "params", "results", "techniques", "train", "viz",
           "setup", "save_metrics"]


def __getattr__(name):  # lazy submodules: ``import kit`` does not import torch
    if name in __all__[:11]:
        return import_module(f"kit.{name}")
    if name == "setup":
        return import_module("kit.device").setup
    if name == "save_metrics":
        return import_module("kit.results").save_metrics
    raise AttributeError(f"module 'kit' has no attribute {name!r}")
