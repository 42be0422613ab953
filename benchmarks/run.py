"""`make bench`: one table of speed and memory, printed and written to benchmarks/RESULTS.md.

Rows: import time; each notebook's smoke and default wall time under papermill with peak RSS
(largest process of the run, the kernel included); then the tables of the other benchmark scripts
in this folder (time-to-98 % on digits, GPT tokens/s vs a naive baseline).

    python benchmarks/run.py [--no-defaults] [--only 01,03]
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KEPT = "## Measured by hand"  # RESULTS.md from this heading on is kept when the tables above are rewritten


def run_measured(cmd: list[str], env=None) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB (largest process in the tree that was waited for), exit code."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def import_time(stmt: str, repeats: int = 5) -> float:
    code = f"import time; t=time.perf_counter(); {stmt}; print(time.perf_counter()-t)"
    times = sorted(float(subprocess.check_output([sys.executable, "-c", code], text=True)) for _ in range(repeats))
    return times[len(times) // 2]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-defaults", action="store_true", help="skip the default-parameter notebook runs")
    ap.add_argument("--only", default="", help="comma-separated lesson numbers")
    args = ap.parse_args()
    from kit.lessons.run import list_notebooks
    import torch

    rows = [("import kit", f"{import_time('import kit') * 1000:.0f} ms", "goal ≤ 1.5 s"),
            ("import kit.train (loads torch)", f"{import_time('import kit.train'):.2f} s", "")]
    env = {**os.environ, "KIT_OFFLINE": os.environ.get("KIT_OFFLINE", "1")}
    smoke_total = 0.0
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    with tempfile.TemporaryDirectory() as tmp:
        for nb in list_notebooks():
            if only and nb.stem[:2] not in only:
                continue
            variants = [("smoke", ["-p", "smoke", "True"])] + ([] if args.no_defaults else [("default", [])])
            for label, extra in variants:
                cmd = [sys.executable, "-m", "kit", "run", nb.stem[:2], "--out", f"{tmp}/{label}", *extra]
                secs, rss, code = run_measured(cmd, env)
                smoke_total += secs if label == "smoke" else 0
                status = "" if code == 0 else f"FAILED (exit {code})"
                if label == "default":  # the workshop goals: ≤ 5 min and ≤ 2 GB per lesson on the CPU
                    over = [g for g, bad in (("over 5 min", secs > 300), ("over 2 GB", rss > 2048)) if bad]
                    status = " ".join([status, *over]).strip()
                rows.append((f"{nb.stem} ({label})", f"{secs:.1f} s", f"peak RSS {rss:.0f} MB {status}".strip()))
                print(f"{rows[-1][0]:<40} {rows[-1][1]:>10}  {rows[-1][2]}", flush=True)
    rows.append(("all smoke notebooks", f"{smoke_total:.1f} s", "goal ≤ 600 s"))

    extra_tables = []
    for script in sorted(Path(__file__).parent.glob("*.py")):  # gpu_session.sh is run by hand on a GPU
        if script.name in ("run.py", "gpt_speedrun.py", "ddpm_screen.py"):  # long screens: run them by hand
            continue
        print(f"running {script.name} …", flush=True)
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env)
        extra_tables.append(f"### {script.name}\n\n```\n{(out.stdout or out.stderr).strip()}\n```\n")

    header = (f"# Benchmark results\n\nMachine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; "
              f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}  \n"
              f"Date: {time.strftime('%Y-%m-%d %H:%M')}; Python {platform.python_version()}, torch {torch.__version__}; "
              f"load average at the end {os.getloadavg()[0]:.1f}  \n"
              f"Data: KIT_OFFLINE={env['KIT_OFFLINE']}, KIT_DATA_MIRROR={env.get('KIT_DATA_MIRROR', '(unset)')}; "
              f"KIT_THREADS={env.get('KIT_THREADS', '(all cores)')}, OMP_WAIT_POLICY={env.get('OMP_WAIT_POLICY', '(unset)')}\n\n")
    table = "| what | measured | notes |\n|---|---|---|\n" + "".join(f"| {a} | {b} | {c} |\n" for a, b, c in rows)
    text = header + table + "\n" + "\n".join(extra_tables)
    results = Path(__file__).parent / "RESULTS.md"
    old = results.read_text() if results.exists() else ""
    if KEPT in old:  # numbers measured by hand (a GPU session, quiet-machine timings) are kept
        text += "\n" + old[old.index(KEPT):]
    results.write_text(text)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
