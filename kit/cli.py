"""The ``kit`` command: list lessons, run notebooks, build reports, start JupyterLab."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _params(pairs) -> dict:
    return {k: v for k, v in (pairs or [])}


def cmd_list(args) -> int:
    from kit.run import list_notebooks, notebook_parameters
    for nb in list_notebooks():
        params = notebook_parameters(nb)
        print(nb.stem)
        for name, p in params.items():
            print(f"    {name} = {p['default']}  ({p['type']}){'  # ' + p['help'] if p['help'] else ''}")
    return 0


def cmd_run(args) -> int:
    from kit.params import ParameterError
    from kit.run import execute, find_notebook
    nb = find_notebook(args.notebook)
    out = Path(args.out) / nb.stem
    params = _params(args.p)
    if args.device:
        params["device"] = args.device
    try:
        res = execute(nb, out, params, timeout=args.timeout)
    except (ParameterError, FileNotFoundError) as e:
        print(f"kit run: {e}", file=sys.stderr)
        return 2
    print(f"{nb.stem}: {res.seconds:.1f}s → {res.html or res.notebook}")
    return 0


def cmd_run_all(args) -> int:
    """Execute every lesson with its defaults (plus ``-p``) into ``--out`` and write ``index.html``."""
    import papermill as pm
    from kit.report import build_index
    from kit.run import execute, list_notebooks, notebook_parameters
    out, failed = Path(args.out), []
    for nb in list_notebooks():
        params = {k: v for k, v in _params(args.p).items() if k in notebook_parameters(nb)}
        print(f"== {nb.stem} {params or ''}", flush=True)
        try:
            res = execute(nb, out / nb.stem, params, timeout=args.timeout)
            print(f"   ok in {res.seconds:.1f}s")
        except pm.PapermillExecutionError as e:
            failed.append(nb.stem)
            print(f"   FAILED: {e.ename}: {e.evalue}", file=sys.stderr)
    index = build_index(out)
    print(f"report: {index}")
    return 1 if failed else 0


def cmd_report(args) -> int:
    from kit.report import build_index
    print(build_index(Path(args.runs)))
    return 0


def cmd_lab(args) -> int:
    import secrets
    import subprocess
    from kit.run import NOTEBOOKS
    token = args.token or secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyterlab", "--ip=127.0.0.1", f"--port={args.port}", "--no-browser",
           f"--ServerApp.token={token}", f"--ServerApp.root_dir={NOTEBOOKS}"]
    print(f"JupyterLab: http://127.0.0.1:{args.port}/lab?token={token}")
    return subprocess.call(cmd)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kit", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="lessons and their parameters").set_defaults(fn=cmd_list)
    r = sub.add_parser("run", help="execute one notebook into a run folder")
    r.add_argument("notebook")
    r.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"))
    r.add_argument("--device")
    r.add_argument("--out", default="runs")
    r.add_argument("--timeout", type=int, default=1800)
    r.set_defaults(fn=cmd_run)
    a = sub.add_parser("run-all", help="execute every lesson and write an HTML index")
    a.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"))
    a.add_argument("--out", default="reports")
    a.add_argument("--timeout", type=int, default=1800)
    a.set_defaults(fn=cmd_run_all)
    rep = sub.add_parser("report", help="write index.html over run folders")
    rep.add_argument("runs", nargs="?", default="runs")
    rep.set_defaults(fn=cmd_report)
    lab = sub.add_parser("lab", help="start JupyterLab on 127.0.0.1 with a token")
    lab.add_argument("--port", type=int, default=8888)
    lab.add_argument("--token")
    lab.set_defaults(fn=cmd_lab)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
