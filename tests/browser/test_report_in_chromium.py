"""report.html in a real headless Chromium: it loads cleanly, draws, sorts and filters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from cdp_pipe import HeadlessChromium, Page

from app.replay.report import PLOT_FILES

# Every <img> decoded by the browser: (alt, natural width, natural height).
DECODED_IMAGES = """
Promise.all(Array.from(document.images).map(function (image) {
  return image.decode().then(
    function () { return [image.alt, image.naturalWidth, image.naturalHeight]; },
    function () { return [image.alt, 0, 0]; });
}))
"""

COLUMN = """
(function (name) {
  var table = document.getElementById("trigger-table");
  var header = Array.from(table.tHead.rows[0].cells).find(function (c) {
    return c.textContent.trim() === name; });
  var rows = Array.from(table.tBodies[0].rows).filter(function (r) { return !r.hidden; });
  return {sort: header.getAttribute("aria-sort"), values: rows.map(function (r) {
    var cell = r.cells[header.cellIndex];
    return cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort")
                                          : cell.textContent.trim();
  })};
})
"""


def click_header(page: Page, name: str) -> None:
    page.evaluate(
        "Array.from(document.querySelectorAll('#trigger-table thead th'))"
        f".find(function (c) {{ return c.textContent.trim() === {name!r}; }}).click()"
    )


def column(page: Page, name: str) -> tuple[str | None, list[str]]:
    result = page.evaluate(f"{COLUMN}({name!r})")
    return result["sort"], result["values"]


@pytest.fixture
def page(chromium: Path, report_dir: Path) -> Iterator[Page]:
    with HeadlessChromium(chromium) as browser:
        opened = browser.open_page(1280, 900)
        opened.navigate((report_dir / "report.html").as_uri())
        yield opened


def test_the_page_loads_without_errors_and_every_plot_renders(page: Page) -> None:
    images = page.evaluate(DECODED_IMAGES)
    sections = page.evaluate("document.querySelectorAll('section.sku').length")

    assert sections >= 4
    assert len(images) == len(PLOT_FILES) + sections
    assert [alt for alt, width, height in images if width <= 0 or height <= 0] == []
    assert page.evaluate("document.getElementById('trigger-count').textContent").endswith("shown")
    page.drain()
    assert page.errors == []


def test_sorting_the_trigger_table(page: Page, report_dir: Path) -> None:
    click_header(page, "quantity")
    order, values = column(page, "quantity")
    numbers = [int(v) for v in values]
    assert order == "ascending"
    assert numbers == sorted(numbers) and numbers[0] < numbers[-1]

    click_header(page, "quantity")
    order, values = column(page, "quantity")
    assert order == "descending"
    assert [int(v) for v in values] == sorted(numbers, reverse=True)

    click_header(page, "SKU")
    order, skus = column(page, "SKU")
    assert order == "ascending" and skus == sorted(skus, key=str.lower)
    assert column(page, "quantity")[0] is None  # only one column shows a sort order

    click_header(page, "decided at (UTC)")
    _, times = column(page, "decided at (UTC)")
    assert [int(t) for t in times] == sorted(int(t) for t in times)
    triggers = (report_dir / "triggers.jsonl").read_bytes().splitlines()
    assert len(times) == len(triggers)
    page.drain()
    assert page.errors == []


def test_filtering_the_trigger_table(page: Page, report_dir: Path) -> None:
    triggers = [
        orjson.loads(line) for line in (report_dir / "triggers.jsonl").read_bytes().splitlines()
    ]
    by_sku = Counter(t["sku"] for t in triggers)
    by_reason = Counter(t["reason"] for t in triggers)
    sku = max(by_sku, key=lambda s: (by_sku[s], s))

    page.evaluate(
        "var f = document.getElementById('trigger-filter');"
        f"f.value = 'sku:{sku}'; f.dispatchEvent(new Event('input'))"
    )
    assert set(column(page, "SKU")[1]) == {sku}
    assert len(column(page, "SKU")[1]) == by_sku[sku]
    assert page.evaluate("document.getElementById('trigger-count').textContent") == (
        f"{by_sku[sku]} of {len(triggers)} shown"
    )

    page.evaluate(
        "var f = document.getElementById('trigger-filter');"
        "f.value = ''; f.dispatchEvent(new Event('input'));"
        "var r = document.getElementById('trigger-reason');"
        "r.value = 'stockout'; r.dispatchEvent(new Event('change'))"
    )
    assert len(column(page, "reason")[1]) == by_reason["stockout"] > 0

    # a SKU section's button shows that SKU's triggers in the table
    page.evaluate(f"document.querySelector('[data-filter-sku=\"{sku}\"]').click()")
    assert set(column(page, "SKU")[1]) == {sku}
    assert len(column(page, "SKU")[1]) == by_sku[sku]
    page.drain()
    assert page.errors == []
