"""What a person sees, in headless Chromium (Debian's binary, driven by Playwright; no browser download).

1. JupyterLab: run lesson 01, the learning-rate slider and its plot render, moving the slider changes the plot.
2. An HTML report opened with the network blocked renders every figure and makes no outside request.
3. The same check fails on a report whose figures are broken (the check can fail).
Screenshots go to ``$KIT_SCREENSHOTS`` (default: the test's tmp folder).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kit.lessons.catalog import LESSONS as CATALOG

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed")]

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--disable-quic"]


def shots_dir(tmp_path) -> Path:
    d = Path(os.environ.get("KIT_SCREENSHOTS", tmp_path))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def figures_rendered(page) -> dict:
    """Count plotly graph divs, and those that actually drew data (a trace layer with data)."""
    return page.evaluate("""() => {
        const divs = [...document.querySelectorAll('.plotly-graph-div, .js-plotly-plot')];
        const ok = divs.filter(d => d.data && d.data.length > 0 && d.querySelector('svg.main-svg'));
        return {total: divs.length, rendered: ok.length};
    }""")


def open_offline(browser, url):
    """A fresh page whose every non-file request is blocked and recorded."""
    ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    page = ctx.new_page()
    blocked = []

    def guard(route):
        if route.request.url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()
    page.route("**/*", guard)
    page.goto(url)
    page.wait_for_load_state("load")
    return page, blocked


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    """An HTML report of lesson 01 (smoke), made by `kit run` in its own process (papermill's event
    loop and Playwright's must not share a thread)."""
    out = tmp_path_factory.mktemp("report")
    subprocess.run([sys.executable, "-m", "kit", "run", "01", "-p", "smoke", "True", "--out", str(out)],
                   check=True, timeout=600, cwd=ROOT)
    return out / "01_linear_regression" / "01_linear_regression.html"


def test_html_report_renders_every_figure_offline(report_html, browser, tmp_path):
    page, blocked = open_offline(browser, report_html.as_uri())
    page.wait_for_function("document.querySelectorAll('.plotly-graph-div svg.main-svg').length > 0", timeout=30_000)
    counts = figures_rendered(page)
    page.screenshot(path=str(shots_dir(tmp_path) / "report.png"), full_page=False)
    assert counts["total"] >= 4 and counts["rendered"] == counts["total"], counts
    assert blocked == [], f"the report tried to load {blocked}"


def test_broken_report_is_detected(report_html, browser, tmp_path):
    """Without the inlined plotly.js the figures cannot draw: the same check must say so."""
    html = report_html.read_text()
    start = html.index("<script type=\"text/javascript\">/**")  # the inlined plotly.js bundle
    end = html.index("</script>", start)
    broken = tmp_path / "broken.html"
    broken.write_text(html[:start] + html[end + len("</script>"):])
    page, _ = open_offline(browser, broken.as_uri())
    page.wait_for_timeout(1000)
    counts = figures_rendered(page)
    assert counts["total"] >= 4 and counts["rendered"] == 0, counts


def test_jupyterlab_lesson_01_slider_moves_the_plot(browser, jupyterlab, tmp_path):
    base, token = jupyterlab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/lab/tree/01_linear_regression.ipynb?token={token}&reset")
    page.wait_for_selector(".jp-Notebook", timeout=120_000)
    page.get_by_text(re.compile(r"\| Idle")).first.wait_for(timeout=120_000)  # kernel started
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Cells", exact=True).click()
    page.get_by_text(re.compile(r"\| Busy")).first.wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"\| Idle")).first.wait_for(timeout=300_000)  # all cells ran
    slider = page.locator(".widget-slider", has_text="learning rate")
    try:
        slider.wait_for(state="attached", timeout=180_000)
    finally:
        page.screenshot(path=str(shots_dir(tmp_path) / "jupyterlab_run_all.png"))
    slider.scroll_into_view_if_needed()
    # The figure right under the slider (the same cell's output) must render with data.
    cell = page.locator(".jp-Cell", has=slider)
    plot = cell.locator(".js-plotly-plot").first
    plot.wait_for(state="attached", timeout=60_000)
    page.wait_for_function("el => el.data && el.data.length > 0", arg=plot.element_handle(), timeout=60_000)
    # every cell finished ("Idle" can show between two cells): no "[*]" prompt left before the drag
    page.wait_for_function("""() => ![...document.querySelectorAll('.jp-InputPrompt')]
        .some(p => p.innerText.includes('*'))""", timeout=300_000)
    before = plot.evaluate("el => JSON.stringify(el.data[0].y.slice(0, 5)) + el.layout.title.text")
    cell.scroll_into_view_if_needed()
    page.screenshot(path=str(shots_dir(tmp_path) / "jupyterlab_before.png"))
    handle = slider.locator(".noUi-handle")
    handle.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    box = handle.bounding_box()  # drag the handle to the left, as a person would
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 40, y, steps=8)
    page.mouse.up()
    page.wait_for_function("([el, b]) => (JSON.stringify(el.data[0].y.slice(0, 5)) + el.layout.title.text) !== b",
                           arg=[cell.locator(".js-plotly-plot").first.element_handle(), before], timeout=30_000)
    after = cell.locator(".js-plotly-plot").first.evaluate("el => el.layout.title.text")
    page.screenshot(path=str(shots_dir(tmp_path) / "jupyterlab_after.png"))
    assert after != before and "lr = " in after
    # The live training plot of `fit` (updated during the cell's run) is there with its curves.
    live = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
        .filter(el => el.layout && el.layout.title && el.layout.title.text === 'training')
        .map(el => el.data.map(t => t.y.length))""")
    assert live and min(live[0]) >= 10, f"live training plot missing or empty: {live}"
    # Every figure the notebook drew rendered (the loss curves, the loss surface, the fit).
    counts = figures_rendered(page)
    assert counts["rendered"] >= 1 and counts["rendered"] == counts["total"], counts


# ------------------------------------------------------------------ maths and the index (reports people read)

RAW_TEX = re.compile(r"\$[^$\s][^$]{0,200}?\$|\\(?:frac|hat|sqrt|sum|infty|mathbb|operatorname)\b")


@pytest.fixture(scope="module")
def lesson_reports(report_html):
    """Two lessons' reports (01 from ``report_html``, 02 smoke) in one folder, and its index."""
    out = report_html.parents[1]
    subprocess.run([sys.executable, "-m", "kit", "run", "02", "-p", "smoke", "True", "--out", str(out), "-q"],
                   check=True, timeout=600, cwd=ROOT)
    subprocess.run([sys.executable, "-m", "kit", "report", str(out)], check=True, timeout=300, cwd=ROOT)
    return out


@pytest.mark.parametrize("stem", ["01_linear_regression", "02_logistic_regression"])
def test_lesson_pages_show_maths_not_latex(lesson_reports, browser, tmp_path, stem):
    page, blocked = open_offline(browser, (lesson_reports / stem / f"{stem}.html").as_uri())
    # the prose: markdown cells and markdown the code displayed (code and plot labels are not prose)
    text = page.evaluate("() => [...document.querySelectorAll('.jp-RenderedMarkdown')].map(e => e.innerText).join('\\n')")
    assert len(text) > 1000
    raw = RAW_TEX.findall(text)
    assert not raw, f"{stem}: LaTeX source in the rendered text: {raw[:5]}"
    # MathML that the browser lays out (a box with a size), not an unknown tag
    sizes = page.evaluate("""() => [...document.querySelectorAll('math')].map(m => {
        const r = m.getBoundingClientRect(); return [r.width, r.height, m.constructor.name]; })""")
    assert len(sizes) >= 3 and all(w > 0 and h > 0 and c == "MathMLElement" for w, h, c in sizes), sizes[:5]
    head = page.locator("section.kit-headline").first
    assert head.is_visible() and head.locator(".mark").first.inner_text() in ("✓", "✗")
    page.screenshot(path=str(shots_dir(tmp_path) / f"maths_{stem}.png"))
    assert blocked == [], f"the report tried to load {blocked}"


def test_index_marks_each_lesson_against_its_bars(lesson_reports, browser, tmp_path):
    page, blocked = open_offline(browser, (lesson_reports / "index.html").as_uri())
    cards = page.evaluate("""() => [...document.querySelectorAll('.lessons section.kit-headline')].map(s => ({
        id: s.id, mark: s.querySelector('h3 .mark').innerText, rows: s.querySelectorAll('table.hl tr').length,
        marks: [...s.querySelectorAll('table.hl .mark')].map(m => m.innerText), thumb: !!s.querySelector('svg.thumb'),
        text: s.innerText}))""")
    assert [c["id"] for c in cards] == [f"lesson-{n}" for n in CATALOG]
    ran = {c["id"]: c for c in cards if "not run" not in c["text"]}
    assert set(ran) == {"lesson-01", "lesson-02"}
    for c in ran.values():  # a ✓/✗ per lesson that ran, one per headline metric with a bar, a thumbnail, a time
        assert c["mark"] in ("✓", "✗") and c["rows"] >= 2 and set(c["marks"]) <= {"✓", "✗", "—"}, c
        assert c["thumb"] and "ran in" in c["text"], c
    assert all(c["mark"] == "—" for c in cards if c["id"] not in ran)
    page.screenshot(path=str(shots_dir(tmp_path) / "index.png"), full_page=True)
    # readable on a phone: nothing wider than the screen but the runs table, which scrolls inside itself
    phone = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    phone.goto((lesson_reports / "index.html").as_uri())
    width = phone.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 400, f"the index is {width}px wide on a 390px phone"
    phone.screenshot(path=str(shots_dir(tmp_path) / "index_phone.png"))
    assert blocked == []
