"""Readers that turn event logs into :mod:`app.events` events, one line at a time.

Three formats: this project's JSON Lines (``topic`` plus the event's fields, what a dump
of the three input topics gives), the REES46 e-commerce behaviour CSV and the UCI Online
Retail CSV. Gzip is recognised by its magic bytes, the format by the first line. Memory
stays bounded: files are read line by line, never whole.

A row that cannot be used never stops the replay: it is counted under a machine-readable
reason. Rows converted to a dict are validated by the codec
(:func:`app.events.codec.event_from_mapping`), so the reasons are the dead-letter reasons
the service uses (``missing_field:sku``, ``bad_value:ts``, ...); the readers add their
own (``bad_csv_row``, ``truncated_line``, ``truncated_file``, ``not_json``, ...).
"""

from __future__ import annotations

import csv
import gzip
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from zoneinfo import ZoneInfo

import orjson

from app.events import Invalid, ShopEvent, Signal
from app.events.codec import MAX_MESSAGE_BYTES, event_from_mapping

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"

#: Input topic name (the JSONL ``topic`` field) to signal.
TOPIC_SIGNALS: dict[str, Signal] = {
    "shop.searches": Signal.SEARCH,
    "shop.cart-adds": Signal.CART_ADD,
    "shop.orders": Signal.ORDER,
}

REES46_COLUMNS = (
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
)
ONLINE_RETAIL_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
#: Online Retail stock codes that are charges, not products (postage, manual, fees).
ONLINE_RETAIL_NON_PRODUCTS = frozenset(
    {"POST", "M", "DOT", "D", "C2", "BANK CHARGES", "AMAZONFEE", "CRUK", "S", "PADS", "B"}
)
ONLINE_RETAIL_TZ = ZoneInfo("Europe/London")

_REES46_SIGNALS = {"view": Signal.SEARCH, "cart": Signal.CART_ADD, "purchase": Signal.ORDER}


class LogFormat(StrEnum):
    JSONL = "jsonl"
    REES46 = "rees46"
    ONLINE_RETAIL = "online-retail"


class UnknownFormatError(ValueError):
    """The first line matches none of the known log formats."""


class UnreadableFileError(ValueError):
    """A file that cannot be replayed at all; the message names it and says why."""


class FormatMismatchError(UnreadableFileError):
    """A forced format that the file's first line says is wrong (it looks like another)."""


#: How many bad rows are kept with their line numbers (all are counted).
BAD_ROW_EXAMPLES = 10
#: Reasons that mean the input ends early: the rest of the file is missing.
TRUNCATED_REASONS = frozenset({"truncated_file", "truncated_line"})


@dataclass
class ReadStats:
    """What a reader saw: rows, events, unusable rows by reason, returns and skips."""

    rows: int = 0
    events: int = 0
    bad_rows: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    return_lines: int = 0
    returned_units: int = 0
    #: the physical line last read (1 = the first line of the file)
    line: int = 0
    #: the first bad rows: (line, reason, detail)
    first_bad: list[tuple[int, str, str]] = field(default_factory=list)

    def bad(self, reason: str, *, line: int | None = None, detail: str = "") -> None:
        self.bad_rows[reason] += 1
        if len(self.first_bad) < BAD_ROW_EXAMPLES:
            self.first_bad.append((self.line if line is None else line, reason, detail))

    @property
    def truncated(self) -> bool:
        """Whether the input ended early (a cut gzip stream, or a last line cut short)."""
        return any(self.bad_rows[reason] for reason in TRUNCATED_REASONS)

    def bad_row_lines(self, file: str) -> list[str]:
        """The first bad rows as ``file:line: reason``.

        >>> stats = ReadStats()
        >>> stats.line = 3
        >>> stats.bad("not_json")
        >>> stats.bad_row_lines("log.jsonl")
        ['log.jsonl:3: not_json']
        """
        return [
            f"{file}:{line}: {reason}" + (f" ({detail})" if detail else "")
            for line, reason, detail in self.first_bad
        ]


def detect_format(first_line: bytes) -> LogFormat:
    """The log format from its first (decompressed) line.

    >>> detect_format(b'{"topic": "shop.searches", "ts": 1, "sku": "A"}\\n')
    <LogFormat.JSONL: 'jsonl'>
    >>> detect_format(b"event_time,event_type,product_id,category_id\\n")
    <LogFormat.REES46: 'rees46'>
    >>> detect_format(b"\\xef\\xbb\\xbfInvoiceNo,StockCode,Description\\r\\n")
    <LogFormat.ONLINE_RETAIL: 'online-retail'>
    """
    text = first_line.removeprefix(UTF8_BOM).lstrip()
    if text.startswith(b"{"):
        return LogFormat.JSONL
    header = text.decode("utf-8", errors="replace").strip().lower()
    if header.startswith("event_time,event_type"):
        return LogFormat.REES46
    if header.startswith("invoiceno,stockcode"):
        return LogFormat.ONLINE_RETAIL
    raise UnknownFormatError(f"unknown log format; first line starts {first_line[:60]!r}")


class _Lines:
    """Binary lines of a stream; remembers whether the last line lacked its newline."""

    def __init__(self, stream: IO[bytes] | gzip.GzipFile, first: bytes, stats: ReadStats) -> None:
        self._stream = stream
        self._first: bytes | None = first
        self._stats = stats
        self.incomplete = False

    def __iter__(self) -> Iterator[bytes]:
        line: bytes | None = self._first
        self._first = None
        while True:
            if line is None:
                try:
                    line = self._stream.readline()
                except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
                    self._stats.bad(
                        "truncated_file", line=self._stats.line + 1, detail=_cut_short(exc)
                    )
                    return
            if not line:
                return
            self.incomplete = not line.endswith(b"\n")
            self._stats.line += 1
            yield line
            line = None


class LogReader:
    """An event log opened for reading, gzip or plain, format given or detected.

    Use as a context manager; :meth:`events` yields events and fills :attr:`stats`;
    :meth:`consumed` is how many bytes of the file on disk were read (for progress).
    """

    def __init__(self, path: Path, log_format: LogFormat | None = None) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.stats = ReadStats()
        self._raw: IO[bytes] = path.open("rb")
        self._stream: IO[bytes] | gzip.GzipFile = self._raw
        if self._raw.read(2) == GZIP_MAGIC:
            self._raw.seek(0)
            self._stream = gzip.GzipFile(fileobj=self._raw, mode="rb")
        else:
            self._raw.seek(0)
        try:
            self._first = self._stream.readline()
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            if log_format is None:  # nothing to detect the format from
                self.close()
                raise UnreadableFileError(
                    f"{path}: the file ends before its first line ({_cut_short(exc)})"
                ) from None
            self._first = b""
            self.stats.bad("truncated_file", line=1, detail=_cut_short(exc))
        try:
            detected: LogFormat | None = detect_format(self._first)
        except UnknownFormatError as exc:
            if log_format is None:
                self.close()
                raise UnknownFormatError(f"{path}: {exc}") from None
            detected = None
        if log_format is not None and detected is not None and detected is not log_format:
            self.close()
            raise FormatMismatchError(
                f"{path}: --format {log_format.value} does not fit its first line, which "
                f"is {detected.value}; drop --format to detect it"
            )
        chosen = log_format if log_format is not None else detected
        assert chosen is not None  # detect_format raised when there was nothing to go by
        self.format: LogFormat = chosen

    def __enter__(self) -> LogReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._stream is not self._raw:
            self._stream.close()
        self._raw.close()

    def consumed(self) -> int:
        """Bytes of the file on disk read so far."""
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return self.size

    def events(self) -> Iterator[ShopEvent]:
        lines = _Lines(self._stream, self._first, self.stats)
        if self.format is LogFormat.JSONL:
            yield from _jsonl_events(lines, self.stats)
        elif self.format is LogFormat.REES46:
            yield from _csv_events(lines, self.stats, REES46_COLUMNS, _rees46_row)
        else:
            yield from _csv_events(lines, self.stats, ONLINE_RETAIL_COLUMNS, _online_retail_row)


def _cut_short(exc: BaseException) -> str:
    """What a decompression error says, for a bad row's detail."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _accept(result: ShopEvent | Invalid, stats: ReadStats) -> ShopEvent | None:
    if isinstance(result, Invalid):
        stats.bad(result.reason)
        return None
    stats.events += 1
    return result


def _jsonl_events(lines: _Lines, stats: ReadStats) -> Iterator[ShopEvent]:
    for line in lines:
        if not line.strip():
            continue
        stats.rows += 1
        if len(line) > MAX_MESSAGE_BYTES:
            stats.bad("too_large")
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            stats.bad("truncated_line" if lines.incomplete else "not_json")
            continue
        if not isinstance(obj, dict):
            stats.bad("not_object")
            continue
        topic = obj.pop("topic", None)
        if topic is None:
            stats.bad("missing_field:topic")
            continue
        signal = TOPIC_SIGNALS.get(topic) if isinstance(topic, str) else None
        if signal is None:
            stats.bad("bad_value:topic")
            continue
        event = _accept(event_from_mapping(obj, signal), stats)
        if event is not None:
            yield event


_RowConverter = Callable[[list[str], int, ReadStats], tuple[dict[str, Any], Signal] | None]


class _RowError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _csv_events(
    lines: _Lines,
    stats: ReadStats,
    columns: tuple[str, ...],
    convert: _RowConverter,
) -> Iterator[ShopEvent]:
    text_lines = (raw.removeprefix(UTF8_BOM).decode("utf-8", errors="replace") for raw in lines)
    reader = csv.reader(text_lines)
    header_seen = False
    row_number = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:
            stats.rows += 1
            stats.bad("truncated_line" if lines.incomplete else "bad_csv_row")
            continue
        if not header_seen:
            header_seen = True
            if [name.strip() for name in row] == list(columns):
                continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        row_number += 1
        stats.rows += 1
        if len(row) != len(columns):
            stats.bad("truncated_line" if lines.incomplete else "bad_csv_row")
            continue
        try:
            converted = convert(row, row_number, stats)
        except _RowError as error:
            stats.bad(error.reason)
            continue
        if converted is None:
            continue
        event = _accept(event_from_mapping(converted[0], converted[1]), stats)
        if event is not None:
            yield event


def _optional(text: str) -> str | None:
    text = text.strip()
    return text or None


def _rees46_row(
    row: list[str], row_number: int, stats: ReadStats
) -> tuple[dict[str, Any], Signal] | None:
    """One REES46 row as an event mapping: view -> search, cart -> cart add, purchase -> paid."""
    event_time, event_type, product_id, category_id, category_code = row[:5]
    price, user_id, user_session = row[6:9]
    signal = _REES46_SIGNALS.get(event_type.strip())
    if signal is None:
        if event_type.strip() == "remove_from_cart":
            stats.skipped["remove_from_cart"] += 1
            return None
        raise _RowError("bad_value:event_type")
    text_time = event_time.strip()
    ts: str | None = None
    if text_time:
        ts = text_time.removesuffix(" UTC").replace(" ", "T") + "+00:00"
    mapping: dict[str, Any] = {
        "ts": ts,
        "sku": _optional(product_id),
        "category": _optional(category_code) or _optional(category_id),
        "user": _optional(user_id),
    }
    if signal is Signal.ORDER:
        mapping["order_id"] = f"{user_session.strip()}:{product_id.strip()}:{row_number}"
        mapping["status"] = "paid"
        try:
            mapping["amount"] = float(price) if price.strip() else None
        except ValueError:
            raise _RowError("bad_type:amount") from None
    return mapping, signal


@lru_cache(maxsize=4096)
def online_retail_ts(text: str) -> int:
    """An Online Retail ``InvoiceDate`` (``M/D/YYYY H:MM``, UK local time) as epoch ms.

    >>> online_retail_ts("12/1/2010 8:26")  # GMT in winter
    1291191960000
    >>> online_retail_ts("6/1/2011 8:26") - online_retail_ts("6/1/2011 7:26")
    3600000
    >>> online_retail_ts("6/1/2011 9:26")  # BST in summer: 08:26 UTC
    1306916760000
    """
    moment = datetime.strptime(text.strip(), "%m/%d/%Y %H:%M").replace(tzinfo=ONLINE_RETAIL_TZ)
    return int(moment.timestamp() * 1000)


def _online_retail_row(
    row: list[str], row_number: int, stats: ReadStats
) -> tuple[dict[str, Any], Signal] | None:
    """One invoice line as a paid order of ``Quantity`` units; negative lines are returns."""
    invoice, stock_code, _description, quantity, invoice_date, unit_price, customer, country = row
    sku = stock_code.strip()
    if sku.upper() in ONLINE_RETAIL_NON_PRODUCTS:
        stats.skipped[f"non_product:{sku.upper()}"] += 1
        return None
    try:
        qty = int(quantity.strip())
    except ValueError:
        raise _RowError("bad_type:qty") from None
    if qty < 0:
        stats.return_lines += 1
        stats.returned_units += -qty
        return None
    try:
        ts: int | None = online_retail_ts(invoice_date) if invoice_date.strip() else None
    except ValueError:
        raise _RowError("bad_value:ts") from None
    try:
        amount = round(qty * float(unit_price), 2) if unit_price.strip() else None
    except ValueError:
        raise _RowError("bad_type:amount") from None
    mapping: dict[str, Any] = {
        "ts": ts,
        "sku": sku or None,
        "order_id": f"{invoice.strip()}#{row_number}",
        "status": "paid",
        "qty": qty,
        "region": _optional(country),
        "user": _optional(customer),
        "amount": amount,
    }
    return mapping, Signal.ORDER
