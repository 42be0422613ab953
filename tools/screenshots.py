"""Regenerate the README's screenshots (docs/*.png) from the current code, in headless Chromium as the browser
tests drive it (Debian's chromium through Playwright; nothing downloaded, every non-loopback request blocked).

    .venv/bin/python tools/screenshots.py                 # all four, into docs/
    .venv/bin/python tools/screenshots.py index report    # some of them
    .venv/bin/python tools/screenshots.py --runs reports  # the index and report shots from an existing `make report`

- ``report.png``            lesson 01's HTML report: its headline block and maths (rendered as MathML)
- ``index.png``             the report index (lessons with ✓/✗ against their bars, run time, key-figure thumbnails)
- ``sweep_report.png``      the comparison page of a learning-rate sweep of lesson 02 (smoke runs, 2 jobs)
- ``jupyterlab_slider.png`` lesson 01 in JupyterLab after Run All, at its learning-rate slider

Without ``--runs``, lessons 00–02 run with their default parameters into a temporary folder (a few minutes
on 2 cores); ``--smoke`` runs them with ``smoke=True`` instead (faster; some bars are then missed).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--disable-quic"]
SHOTS = ("report", "index", "sweep", "lab")


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        sys.exit("screenshots: no chromium on PATH (Debian: apt-get install chromium)")
    return path


def kit(*args, cwd=ROOT):
    print("$ kit", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "kit", *args], check=True, cwd=cwd, env={**os.environ, "KIT_OFFLINE": "1"})


def offline_page(browser, width=1200, height=900):
    """A page that may load file:, data: and blob: URLs and loopback (JupyterLab) only."""
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()

    def guard(route):
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:", "http://127.0.0.1", "ws://127.0.0.1")):
            route.continue_()
        else:
            route.abort()
    page.route("**/*", guard)
    return page


def shoot_report(browser, runs: Path, out: Path):
    page = offline_page(browser)
    page.goto((runs / "01_linear_regression" / "01_linear_regression.html").as_uri())
    page.wait_for_function("document.querySelectorAll('.plotly-graph-div svg.main-svg').length > 0", timeout=60_000)
    # the headline block, then the first formulas
    page.screenshot(path=str(out / "report.png"))


def shoot_index(browser, runs: Path, out: Path):
    page = offline_page(browser)
    page.goto((runs / "index.html").as_uri())
    page.wait_for_load_state("load")
    page.screenshot(path=str(out / "index.png"))
    phone = offline_page(browser, 390, 844)
    phone.goto((runs / "index.html").as_uri())
    phone.wait_for_load_state("load")
    phone.screenshot(path=str(out / "index_phone.png"))


def shoot_sweep(browser, work: Path, out: Path):
    sweep = work / "sweeps" / "lr"
    kit("sweep", "02", "-p", "lr", "0.03,0.1,0.3,1,3", "-p", "seed", "0,1", "-p", "smoke", "True",
        "--jobs", "2", "--out", "sweeps/lr", cwd=work)
    page = offline_page(browser)
    page.goto((sweep / "compare-02_logistic_regression.html").as_uri())
    page.wait_for_function("document.querySelectorAll('.plotly-graph-div svg.main-svg').length > 0", timeout=60_000)
    page.screenshot(path=str(out / "sweep_report.png"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shoot_lab(browser, work: Path, out: Path):
    """JupyterLab with lesson 01: Run All, then the learning-rate slider and its plot (as tests/test_browser.py)."""
    root = work / "lab"
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns("src"))
    port, token = _free_port(), "kit-screenshots"
    from kit.lessons.cli import lab_command     # the command `kit lab` runs
    proc = subprocess.Popen(lab_command(port, root / "notebooks"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "JUPYTER_TOKEN": token, "JUPYTER_CONFIG_DIR": str(root / "cfg"),
                                 "KIT_OFFLINE": "1"})
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1)
                break
            except OSError:
                time.sleep(0.25)
        else:
            raise RuntimeError("JupyterLab did not start")
        page = offline_page(browser, 1400, 1000)
        page.goto(f"{base}/lab/tree/01_linear_regression.ipynb?token={token}&reset")
        page.wait_for_selector(".jp-Notebook", timeout=120_000)
        page.get_by_text(re.compile(r"\| Idle")).first.wait_for(timeout=120_000)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()
        page.get_by_text(re.compile(r"\| Busy")).first.wait_for(timeout=60_000)
        page.get_by_text(re.compile(r"\| Idle")).first.wait_for(timeout=300_000)
        slider = page.locator(".widget-slider", has_text="learning rate")
        slider.wait_for(state="attached", timeout=180_000)
        cell = page.locator(".jp-Cell", has=slider)
        plot = cell.locator(".js-plotly-plot").first
        plot.wait_for(state="attached", timeout=60_000)
        page.wait_for_function("el => el.data && el.data.length > 0", arg=plot.element_handle(), timeout=60_000)
        # every cell finished (Idle can show between two cells): no "[*]" prompt left
        page.wait_for_function("""() => ![...document.querySelectorAll('.jp-InputPrompt')]
            .some(p => p.innerText.includes('*'))""", timeout=300_000)
        no_news = page.get_by_role("button", name="No", exact=True)
        if no_news.count():  # the "notified about Jupyter news?" toast
            no_news.first.click()
        # the slider about a third down the window: the heading and maths above it, its plot under it
        slider.scroll_into_view_if_needed()
        cell.scroll_into_view_if_needed()
        page.wait_for_timeout(1000)
        box = slider.bounding_box()
        if box:
            page.mouse.move(800, 500)
            page.mouse.wheel(0, box["y"] - 330)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "jupyterlab_slider.png"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shots", nargs="*", help=f"which ({', '.join(SHOTS)}; default all)")
    ap.add_argument("--runs", type=Path, help="an existing reports folder (make report) for the report and index shots")
    ap.add_argument("--smoke", action="store_true", help="run lessons 00-02 with smoke=True (faster)")
    ap.add_argument("--out", type=Path, default=DOCS)
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = ap.parse_args(argv)
    shots = args.shots or list(SHOTS)
    if set(shots) - set(SHOTS):
        ap.error(f"unknown {sorted(set(shots) - set(SHOTS))}; choose from {', '.join(SHOTS)}")
    from playwright.sync_api import sync_playwright
    path = chromium()
    work = args.keep or Path(tempfile.mkdtemp(prefix="kit-shots-"))
    work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = args.runs
    if runs is None and {"report", "index"} & set(shots):
        runs = work / "reports"
        for n in ("00", "01", "02"):
            kit("run", n, *(["-p", "smoke", "True"] if args.smoke else []), "--out", str(runs), "-q")
        kit("report", str(runs))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=path, headless=True, args=ARGS)
            if "report" in shots:
                shoot_report(browser, runs, args.out)
            if "index" in shots:
                shoot_index(browser, runs, args.out)
            if "sweep" in shots:
                shoot_sweep(browser, work, args.out)
            if "lab" in shots:
                shoot_lab(browser, work, args.out)
            browser.close()
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    for s in shots:
        name = {"report": "report.png", "index": "index.png", "sweep": "sweep_report.png", "lab": "jupyterlab_slider.png"}[s]
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
