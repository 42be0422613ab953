"""A lesson's one declaration: what it is, what it teaches, how its runs are judged, what they may cost.

Each ``kit/exercises/lessonNN.py`` ends with ``LESSON = LessonEntry(...)``; :mod:`kit.lessons.catalog` collects them,
and the report index, ``kit list``, README's lesson table, the tests and the student copies all read the catalog.
A headline bar (on a run with the **default** parameters) may be

* a number: ``direction="higher"`` means value ≥ bar, ``"lower"`` value ≤ bar;
* ``True`` / ``False`` (or any value with ``direction="equal"``): the value must equal it;
* another metric of the same run, optionally shifted or scaled: ``"unigram_val_loss-0.5"``, ``"chance+0.2"``,
  ``"acc_teacher-0.03"``, ``"size_kb_fp32*0.4"`` (a name may hold ``-`` before a digit);
* ``None``: shown for information, no mark.

Every bar must be one a broken run misses (``tests/test_report_headlines.py`` judges each against such runs).
``smoke_bar(metrics) -> bool`` is what a run with ``smoke=True`` must show: the tests hold every lesson to it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Headline:
    key: str                      # the metrics.json key
    label: str                    # what a person reads
    bar: float | bool | str | None = None
    direction: str = "higher"     # "higher" (≥ bar), "lower" (≤ bar) or "equal"
    unit: str = ""                # "%" shows a fraction as a percentage; others are appended as they are


@dataclass(frozen=True)
class Budget:
    """What a run may take on 2 CPU cores: the smoke run (the tests) and the run with defaults (the report)."""
    smoke_s: float = 60
    default_s: float = 300
    default_gb: float = 2.0


@dataclass(frozen=True)
class LessonEntry:
    number: str                   # "04"
    name: str                     # "cnn_digits": the notebook is notebooks/04_cnn_digits.ipynb
    title: str                    # a few words
    goal: str                     # one line
    teaches: str                  # README's "what it teaches" (markdown)
    data: str                     # README's "data (offline default)" (markdown)
    metrics: tuple[Headline, ...] = ()
    smoke_bar: Callable[[dict], bool] | None = None
    builds_on: tuple[str, ...] = ()  # lesson numbers beyond the one before
    figure: str | None = None     # a word of the key figure's title; default: the last figure before the exercises
    budget: Budget = field(default_factory=Budget)

    def __post_init__(self):
        if not re.fullmatch(r"\d\d", self.number) or not self.name.isidentifier():
            raise ValueError(f"lesson {self.number!r} {self.name!r}: two digits and a Python-style name")
        for h in self.metrics:
            if h.direction not in ("higher", "lower", "equal"):
                raise ValueError(f"lesson {self.number}: headline {h.key!r} has direction {h.direction!r}")

    @property
    def stem(self) -> str:
        """``"04_cnn_digits"``: the notebook's and the source's file name."""
        return f"{self.number}_{self.name}"
