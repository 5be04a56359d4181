"""Read report.html back with the standard library: its tables, images and links."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Cell:
    text: str
    attrs: dict[str, str]


@dataclass
class Row:
    attrs: dict[str, str]
    cells: list[Cell] = field(default_factory=list)


@dataclass
class Table:
    attrs: dict[str, str]
    header: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)


class ReportPage(HTMLParser):
    """Every table (header texts and body rows), every ``src``/``href``, every image."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[Table] = []
        self.references: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.images: list[dict[str, str]] = []
        self.ids: list[str] = []
        self.scripts = 0
        self._table: Table | None = None
        self._row: Row | None = None
        self._cell: Cell | None = None
        self._in_head = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        for name in ("src", "href"):
            if name in values:
                self.references.append((tag, name, values[name]))
        if "id" in values:
            self.ids.append(values["id"])
        if tag == "img":
            self.images.append(values)
        elif tag == "script":
            self.scripts += 1
        elif tag == "table":
            self._table = Table(values)
            self.tables.append(self._table)
        elif tag == "thead":
            self._in_head = True
        elif tag == "tbody":
            self._in_head = False
        elif tag == "tr" and self._table is not None:
            self._row = Row(values)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = Cell("", values)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._cell.text = " ".join(self._cell.text.split())
            self._row.cells.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            if self._in_head:
                self._table.header = [cell.text for cell in self._row.cells]
            else:
                self._table.rows.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.text += data

    def table(self, table_id: str) -> Table:
        return next(t for t in self.tables if t.attrs.get("id") == table_id)

    def table_with(self, first_header: str) -> list[Table]:
        return [t for t in self.tables if t.header and t.header[0] == first_header]
