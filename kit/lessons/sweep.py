"""Parameter sweeps: the grid of runs of one notebook, in parallel processes, resumable, then one report.

``kit sweep 01 -p lr 0.01,0.1 -p seed 0,1 --jobs 2 --out sweeps/lr`` runs the 4 combinations, each in
its own folder (``sweeps/lr/lr=0.01_seed=0/`` …, like ``kit run``'s), then writes
``sweeps/lr/compare-01_linear_regression.html`` and ``index.html``. Each job is a separate process (a
``python -m kit.lessons.sweep`` child with its own kernel) and gets ``KIT_THREADS`` = threads ÷ jobs, which
``kit.device.set_threads`` reads, so jobs do not oversubscribe the cores. Running the same command again
skips every run that finished (``run.json`` with status ``ok``, the same parameters, and a
``metrics.json``): an interrupted sweep resumes.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from kit.lessons.runfolder import METRICS_JSON, RunRecord


@dataclass
class SweepRun:
    name: str
    params: dict
    out_dir: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)
    log: object = field(default=None, repr=False)


def split_values(text: str) -> list[str]:
    """``"1e-3,3e-3"`` → ``["1e-3", "3e-3"]`` (commas inside brackets or quotes do not split)."""
    out, depth, quote, cur = [], 0, None, ""
    for ch in str(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        cur += ch
    out.append(cur.strip())
    return [v for v in out if v != ""]


def _slug(v) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "-", str(v))


def run_name(params: dict, swept: list[str]) -> str:
    return "_".join(f"{k}={_slug(params[k])}" for k in swept) or "run"


def plan(notebook, grid: dict[str, list], out_dir: Path) -> list[SweepRun]:
    """Check every grid point's parameters (names and values, before anything runs) and name its folder."""
    from kit.lessons.run import Lesson
    lesson = Lesson.load(notebook)
    swept = [k for k, vs in grid.items() if len(vs) > 1]
    runs, seen = [], set()
    for combo in itertools.product(*grid.values()):
        raw = dict(zip(grid, combo))
        params = lesson.check(raw)
        name = run_name(params, swept)
        if name in seen:
            continue
        seen.add(name)
        runs.append(SweepRun(name, params, Path(out_dir) / name))
    return runs


def is_finished(run: SweepRun) -> bool:
    """A run is done when its run.json says ``ok`` for the same parameters and metrics.json exists."""
    rec = RunRecord.read(run.out_dir)
    if rec is None:
        return False
    same = json.dumps(rec.parameters, sort_keys=True) == json.dumps(run.params, sort_keys=True)
    return rec.status == "ok" and same and (run.out_dir / METRICS_JSON).exists()


def failure_reason(run: SweepRun) -> str:
    """The one-line reason a run's record gives, or where to look."""
    rec = RunRecord.read(run.out_dir)
    return rec.reason if rec is not None and rec.reason else f"see {run.out_dir / 'sweep.log'}"


def threads_per_job(jobs: int) -> int:
    from kit.device import usable_cores
    total = int(os.environ.get("KIT_THREADS") or 0) or usable_cores()
    return max(1, total // max(1, jobs))


def _start(run: SweepRun, notebook: Path, timeout: float | None, stall_timeout: float | None, threads: int,
           html: bool = True) -> None:
    run.out_dir.mkdir(parents=True, exist_ok=True)
    spec = json.dumps({"notebook": str(notebook), "out": str(run.out_dir), "params": run.params, "timeout": timeout,
                       "stall_timeout": stall_timeout, "html": html})
    env = dict(os.environ, KIT_THREADS=str(threads), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    run.log = open(run.out_dir / "sweep.log", "w")
    # Own session: a Ctrl-C in the terminal reaches only the sweep, which then stops its children itself.
    run.proc = subprocess.Popen([sys.executable, "-m", "kit.lessons.sweep", "--one", spec], stdout=run.log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _stop(running: list[SweepRun], grace: float = 5.0) -> None:
    """Terminate children (each one's kernel exits with its parent), then kill what is left."""
    running = [r for r in running if r.proc is not None]
    for r in running:
        if r.proc.poll() is None:
            r.proc.terminate()
    deadline = time.monotonic() + grace
    for r in running:
        try:
            r.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            r.proc.kill()
            r.proc.wait()
        r.log.close()


class _Terminated(KeyboardInterrupt):
    pass


def sweep(notebook, grid: dict[str, list], out_dir, jobs: int = 1, timeout: float | None = 1800,
          stall_timeout: float | None = 45.0, progress: bool = True, command: str | None = None, html: bool = True):
    """Run the grid (``{name: [values…]}``, values as typed or as command-line strings) of ``notebook``.

    Returns ``(runs, failed_names, report_path)``; raises ``KeyboardInterrupt`` after stopping the children
    if interrupted (SIGINT or SIGTERM) — the finished runs stay and a rerun resumes.
    """
    from tqdm.auto import tqdm

    from kit.lessons.report import build_index
    from kit.lessons.run import find_notebook
    nb = find_notebook(str(notebook)).resolve()
    out_dir = Path(out_dir)
    runs = plan(nb, grid, out_dir)  # raises ParameterError before anything runs
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sweep.json").write_text(json.dumps(
        {"notebook": nb.name, "grid": {k: [str(v) for v in vs] for k, vs in grid.items()},
         "runs": [r.name for r in runs], "command": command}, indent=2))
    todo = [r for r in runs if not is_finished(r)]
    threads = threads_per_job(jobs)
    failed: list[str] = []
    running: list[SweepRun] = []
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc=f"sweep {nb.stem}", unit="run",
               disable=not progress)
    if len(todo) < len(runs):
        bar.write(f"resuming: {len(runs) - len(todo)} of {len(runs)} runs already finished")
    old_term = None
    if hasattr(signal, "SIGTERM") and _main_thread():
        def _on_term(signum, frame):
            raise _Terminated()
        old_term = signal.signal(signal.SIGTERM, _on_term)
    try:
        pending = list(todo)
        while pending or running:
            while pending and len(running) < max(1, jobs):
                r = pending.pop(0)
                running.append(r)
                _start(r, nb, timeout, stall_timeout, threads, html)
            time.sleep(0.2)
            for r in [r for r in running if r.proc.poll() is not None]:
                running.remove(r)
                r.log.close()
                if r.proc.returncode != 0 or not is_finished(r):
                    failed.append(r.name)
                    bar.write(f"✗ {r.name} failed: {failure_reason(r)}")
                bar.set_postfix_str(r.name, refresh=False)
                bar.update(1)
    except KeyboardInterrupt:
        _stop(running)
        bar.close()
        raise
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    bar.close()
    build_index(out_dir, title=f"sweep of {nb.stem}")
    report = out_dir / f"compare-{nb.stem}.html"
    if not report.exists():  # fewer than two finished runs: still one comparison page
        from kit.lessons.report import build_comparison
        report = build_comparison(out_dir, notebook=nb.stem)
    return runs, failed, report


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def _one(spec: str) -> int:
    """Child process: execute one grid point (``python -m kit.lessons.sweep --one '<json>'``)."""
    from kit.lessons.run import execute, failure_message

    def _on_term(signum, frame):  # the sweep stops its children with SIGTERM: shut the kernel down cleanly
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _on_term)
    s = json.loads(spec)
    try:
        res = execute(s["notebook"], s["out"], s["params"], timeout=s["timeout"], stall_timeout=s["stall_timeout"],
                      html=s.get("html", True), progress=False)
    except Exception as e:  # noqa: BLE001 - one line in sweep.log and run.json, never a traceback
        msg = failure_message(e)
        if msg is None:
            raise
        print(f"failed: {msg}")
        return 1
    print(f"ok in {res.seconds:.1f}s" + (" (after replacing a stalled kernel)" if res.attempts > 1 else ""))
    return 0


def command_line(argv: list[str]) -> str:
    return "kit " + " ".join(shlex.quote(a) for a in argv)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        sys.exit(_one(sys.argv[2]))
    sys.exit("usage: kit sweep NOTEBOOK -p NAME V1,V2 … (this module's own entry point is internal)")
