"""Self-contained HTML reports, the names other modules import. The pages live in their own modules over one run-folder
model (:mod:`kit.lessons.runfolder`) and one HTML layer (:mod:`kit.lessons.htmlpage`):

* :mod:`kit.lessons.report_page` — an executed notebook's page (:func:`notebook_to_html`);
* :mod:`kit.lessons.report_headline` — a run judged against its lesson's bars (:func:`judge_run`), the headline
  block and the one-line :func:`headline` ``kit run`` prints;
* :mod:`kit.lessons.report_index` — ``index.html`` over a folder of runs (:func:`build_index`);
* :mod:`kit.lessons.report_compare` — a notebook's runs compared (:func:`build_comparison`).
"""
from __future__ import annotations

from kit.lessons.report_compare import REPLICATE, build_comparison, curves_of
from kit.lessons.report_headline import headline, headline_block, judge_run, judged
from kit.lessons.report_index import build_index, lesson_runs
from kit.lessons.report_page import TEMPLATES, drop_widget_views, notebook_to_html, page_headline, protect_math
from kit.lessons.runfolder import collect as collect_runs

__all__ = ["REPLICATE", "TEMPLATES", "build_comparison", "build_index", "collect_runs", "curves_of",
           "drop_widget_views", "headline", "headline_block", "judge_run", "judged", "lesson_runs",
           "notebook_to_html", "page_headline", "protect_math"]
