"""The report in a real browser: Debian's Chromium, headless, driven by Playwright.

Rendered from journals of real runs (tests/data: lines recorded by the harness on the docker and
local backends, one of them a real failure, and a quick tier on local with every kind of fault
window).  Asserts on what the page shows and does, and saves
a screenshot under reports/.  Installs Debian's chromium where it is missing and this is root;
skips, saying why, where no Chromium can be had.
"""

import os
import shutil
import subprocess

import pytest

from harness.model.journal import REPORTS_DIR
from harness.paths import ROOT
from harness.report import html as htmlreport

DATA = ROOT / "tests" / "data"
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def chromium() -> str:
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[test])")
    path = os.environ.get("CHAOS_CHROMIUM") or shutil.which("chromium")
    if not path and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        done = subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"apt-get install chromium failed: {done.stderr.strip()[-300:]}")
        path = shutil.which("chromium")
    if not path:
        pytest.skip("no Chromium here (install Debian's chromium, or set CHAOS_CHROMIUM to a Chromium binary)")
    return path


TIMELINE_CHECK = """svg => {
  const box = svg.getBoundingClientRect(), out = [];
  svg.querySelectorAll('text').forEach(t => {
    const r = t.getBoundingClientRect();
    if (r.width && (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1))
      out.push('label ' + JSON.stringify(t.textContent) + ' overflows: ' + [r.left, r.right, box.left, box.right]);
  });
  const fold = svg.querySelector('g.fold rect'), from = fold ? fold.getBoundingClientRect().right : box.left;
  svg.querySelectorAll('line.inject').forEach(l => {
    const r = l.getBoundingClientRect();
    if (r.left < from - 1 || r.right > box.right + 1) out.push('fault outside the visible part at ' + r.left);
  });
  return out;
}"""


def check_timelines(page) -> int:
    """Every shown timeline: no label outside its drawing, every fault inside its visible part."""
    checked = 0
    svgs = page.locator("svg.timeline")
    for i in range(svgs.count()):
        svg = svgs.nth(i)
        if svg.is_visible():
            assert svg.evaluate(TIMELINE_CHECK) == [], svg.get_attribute("aria-label")
            checked += 1
    return checked


def test_report_in_headless_chromium(chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    # the sample's failures, and the quick tier on local (3.9.1): API faults, server and database
    # restarts, CPU quotas, as spans in their lanes
    out, report = htmlreport.write([DATA / "journal-sample.jsonl", DATA / "journal-quick-local.jsonl"],
                                   tmp_path / "report.html",
                                   [DATA / "journal-earlier.jsonl"])
    failing_rows = {s for (s, _), c in report.cells.items() if c.summary == "fail"}
    assert report.entries and failing_rows and not report.problems  # the data really has a failure
    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(out.as_uri())

            # the matrix: one row per scenario, one cell per (scenario, column) that ran
            rows = page.locator("#matrix tbody tr")
            assert rows.count() == len(report.rows)
            assert page.locator("#matrix td.cell").count() == len(report.cells)
            fail_cell = page.locator("#matrix td.cell.v-fail")
            assert fail_cell.count() == len(failing_rows) and fail_cell.first.inner_text().startswith("FAIL")

            # a timeline: an open (failed) scenario shows its SVG with state bands and the fault mark
            failed = page.locator("details.scenario[data-verdicts=fail]").first
            assert failed.get_attribute("open") is not None  # failures are open at once
            svg = failed.locator("svg.timeline").first  # the folded one, where it has a start-up to fold
            assert svg.is_visible()
            assert svg.locator("rect.state").count() >= 3 and svg.locator("line.inject").count() >= 1
            assert failed.locator("ul.reasons li").count() >= 1  # every difference spelled out

            # the filter hides rows when used, and shows them again
            page.select_option("#f-verdict", "fail")
            visible = [r for r in range(rows.count()) if rows.nth(r).is_visible()]
            assert len(visible) == len(failing_rows) < rows.count()
            assert page.locator("#shown").inner_text() == str(len(failing_rows))
            assert all(rows.nth(r).locator("td.v-fail").count() for r in visible)
            page.select_option("#f-verdict", "")
            assert all(rows.nth(r).is_visible() for r in range(rows.count()))
            page.select_option("#f-backend", "local")
            assert sum(rows.nth(r).is_visible() for r in range(rows.count())) == len(
                {s for (s, (b, _)) in report.cells if b == "local"})
            page.select_option("#f-backend", "")

            # sorting: the slowest detection first, then back to the matrix's own order
            first = rows.nth(0).get_attribute("data-row-id") or rows.nth(0).inner_text()
            page.select_option("#f-sort", "detect")
            detect = [float(rows.nth(r).get_attribute("data-detect")) for r in range(rows.count())]
            assert detect == sorted(detect, reverse=True) and max(detect) > 0
            page.select_option("#f-sort", "settle")
            settle = [float(rows.nth(r).get_attribute("data-settle")) for r in range(rows.count())]
            assert settle == sorted(settle, reverse=True)
            page.select_option("#f-sort", "")
            assert (rows.nth(0).get_attribute("data-row-id") or rows.nth(0).inner_text()) == first

            # the timelines, at two widths, every case open: labels inside, faults in view
            page.evaluate("document.querySelectorAll('details.scenario').forEach(d => d.open = true)")
            REPORTS_DIR.mkdir(exist_ok=True)
            for width in (1400, 900):
                page.set_viewport_size({"width": width, "height": 1000})
                assert check_timelines(page) >= len(report.entries)
                shot = REPORTS_DIR / f"report-screenshot-{width}.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000

            # a folded start-up unfolds on a click, and folds again
            tl = page.locator("div.tl").first
            folded, full = tl.locator("svg.timeline.folded"), tl.locator(".tl-full svg.timeline")
            assert folded.is_visible() and not full.is_visible()
            folded.locator("g.fold").click()
            assert full.is_visible() and not folded.is_visible()
            assert check_timelines(page) >= 1
            full.locator("[data-fold]").click()
            assert folded.is_visible() and not full.is_visible()

            # a phone's width: the page itself does not scroll sideways (the matrix scrolls in its box)
            phone = browser.new_page(viewport={"width": 390, "height": 800})
            phone.goto(out.as_uri())
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        finally:
            browser.close()
    assert [u for u in requests if not u.startswith("file:")] == []  # no network request at all
