"""Running lessons: the one execution path (``execute``), run folders (``run``), sweeps, reports, student
copies and checked exercises, and the ``kit`` command line. The top of the layers: it imports everything
below (data → models → train → viz) and nothing imports it."""
