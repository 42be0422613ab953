"""Running lessons: the one execution path (``run.execute``), run folders (``runfolder``), sweeps, reports
(``report_*`` pages over the ``htmlpage`` layer), student copies and checked exercises, and the ``kit`` command
line. The top of the layers: it imports everything below (data → models → train → viz) and nothing imports it."""
