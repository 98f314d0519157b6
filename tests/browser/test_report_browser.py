"""The report of `samtal stats` as a person sees it: rendered by a real Chromium (Debian's,
driven by Playwright), on a desktop and at a phone's width. What is checked is what a person
would notice: errors, anything fetched from elsewhere, missing charts, titles, legends or axis
labels, a page wider than the window, boxes or chart labels on top of one another.

Chromium is a system package (`apt-get install chromium`; .ci/run installs it). Without it the
test skips and says so; in CI (CI=true) it fails instead."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from samtal.aggregate import aggregate
from samtal.events import decode_batch
from samtal.period import parse_period
from samtal.simulate import TrafficSettings, event_lines
from samtal.stats.figures import Definitions, Row, figures
from samtal.stats.report import report
from samtal.times import to_datetime

# A browser is started, as the servers of the slow lane are.
pytestmark = pytest.mark.slow

STOCKHOLM = ZoneInfo("Europe/Stockholm")
CHROMIUM = os.environ.get("SAMTAL_TEST_CHROMIUM") or shutil.which("chromium") or ""
#: Each chart's caption, and words its legend and axes must show.
CHARTS = {
    "Calls per day": ["reached a person", "missed", "calls"],
    "Calls by hour and weekday": ["hour", "Mon", "Sun", "calls"],
    "Service level (20 s) and answer rate per response group": [
        "service level",
        "answer rate",
        "%",
    ],
    "Wait before answer or abandon": ["answered", "abandoned", "0-10 s", "calls"],
    "Calls and service level (20 s) per day": ["calls", "service level", "service level %"],
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: CI needs it (.ci/run installs it)")
        pytest.skip("chromium is not installed: `apt-get install chromium` to see the report")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of two simulated weeks (one with the clock change), per day."""
    traffic = TrafficSettings(orgs=1, days=14, seed=3, start=date(2018, 3, 19), calls_per_day=500)
    records = aggregate(decode_batch(list(event_lines(traffic))).events)
    rows = sorted(
        Row(
            r.start,
            r.receiving_no,
            None if r.callee_answered is None else r.callee_answered - r.start,
            r.stop - r.start,
        )
        for r in records
    )
    period = parse_period("2018-03-19", "2018-04-01", zone=STOCKHOLM, now=2**62)
    found = figures(
        rows, start=period.start, end=period.end, tz=STOCKHOLM,
        definitions=Definitions(interval="day"),
    )  # fmt: skip
    span = (to_datetime(rows[0].start, UTC), to_datetime(rows[-1].start, UTC))
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(report(found, tz="Europe/Stockholm", span=span), encoding="utf-8")
    return path


def _open(browser: Any, path: Path, width: int, height: int) -> tuple[Any, list[str]]:
    """The page in a fresh window of that size; the problems seen while it loaded."""
    problems: list[str] = []
    page = browser.new_page(viewport={"width": width, "height": height})
    page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "request",
        lambda r: r.url != path.as_uri() and problems.append(f"request to {r.url}"),
    )
    page.goto(path.as_uri(), wait_until="load")
    return page, problems


def test_the_report_on_a_desktop(browser: Any, page_file: Path, tmp_path: Path) -> None:
    page, problems = _open(browser, page_file, 1280, 900)
    assert problems == []
    assert page.title() == "Calls 2018-03-19 to 2018-04-01 (Europe/Stockholm)"
    captions = page.locator("figcaption").all_inner_texts()
    assert captions == list(CHARTS)
    for index, (caption, words) in enumerate(CHARTS.items()):
        chart = page.locator("figure").nth(index)
        assert chart.locator("svg").is_visible(), caption
        texts = chart.locator("svg text").all_text_contents()
        for word in words:
            assert any(word == t.strip() for t in texts), (caption, word, texts)
    assert page.locator(".definitions dt").all_inner_texts()[:4] == [
        "Service level",
        "Short abandons",
        "Days counted",
        "Hours counted",
    ]
    _nothing_overflows_or_overlaps(page)
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 20_000  # a drawn page, not a blank one
    if os.environ.get("SAMTAL_REPORT_SCREENSHOT"):  # how docs/report.png is made
        page.screenshot(path=os.environ["SAMTAL_REPORT_SCREENSHOT"], full_page=False)
    page.close()


def test_the_report_at_a_phones_width(browser: Any, page_file: Path) -> None:
    page, problems = _open(browser, page_file, 375, 812)
    assert problems == []
    _nothing_overflows_or_overlaps(page)
    for chart in page.locator("figure svg").all():
        box = chart.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
    page.close()


def _nothing_overflows_or_overlaps(page: Any) -> None:
    """No horizontal scrolling of the page; no two boxes of the page's layout on top of one
    another; no two labels of a chart on top of one another."""
    width = page.evaluate("document.documentElement.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    boxes = page.evaluate(
        """() => [...document.querySelectorAll(
               'h1, p, .tile, figure, h2, .wide, .definitions')]
             .map(e => { const r = e.getBoundingClientRect();
                         return [e.tagName + '.' + e.className,
                                 r.left, r.top, r.right, r.bottom]; })"""
    )
    for box in boxes:
        assert box[1] >= 0 and box[3] <= width + 0.5, f"{box[0]} leaves the window"
    tiles_and_charts = [b for b in boxes if b[0] in ("DIV.tile", "FIGURE.")]
    for i, a in enumerate(tiles_and_charts):
        for b in tiles_and_charts[i + 1 :]:
            assert not _overlap(a[1:], b[1:]), (a, b)
    labels = page.evaluate(
        """() => [...document.querySelectorAll('figure svg')].map(svg =>
               [...svg.querySelectorAll('text')].filter(t => t.textContent.trim())
               .map(t => { const r = t.getBoundingClientRect();
                           return [t.textContent, r.left, r.top, r.right, r.bottom]; }))"""
    )
    for chart in labels:
        for i, a in enumerate(chart):
            for b in chart[i + 1 :]:
                assert not _too_close(a[1:], b[1:]), (a[0], b[0])


def _overlap(a: list[float], b: list[float]) -> bool:
    """Whether two boxes (left, top, right, bottom) share more than half a pixel each way."""
    return min(a[2], b[2]) - max(a[0], b[0]) > 0.5 and min(a[3], b[3]) - max(a[1], b[1]) > 0.5


def _too_close(a: list[float], b: list[float]) -> bool:
    """Whether two labels side by side have less than 2 pixels between them (words run into
    one another before they overlap)."""
    return min(a[2], b[2]) - max(a[0], b[0]) > -2 and min(a[3], b[3]) - max(a[1], b[1]) > 1
