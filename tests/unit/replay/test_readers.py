"""Readers on small fixture files: events out, broken rows counted by reason, never fatal."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from app.events import CartAddEvent, OrderEvent, OrderStatus, SearchEvent
from app.replay.readers import LogFormat, LogReader, UnknownFormatError, online_retail_ts

FIXTURES = Path(__file__).parents[2] / "fixtures" / "replay"


def read(path: Path, log_format: LogFormat | None = None) -> tuple[list[object], LogReader]:
    with LogReader(path, log_format) as reader:
        return list(reader.events()), reader


def test_jsonl_reader_keeps_good_lines_and_counts_bad_ones_by_reason() -> None:
    events, reader = read(FIXTURES / "events.jsonl")

    assert reader.format is LogFormat.JSONL
    assert [type(e) for e in events] == [
        SearchEvent,
        CartAddEvent,
        OrderEvent,
        OrderEvent,
        SearchEvent,
    ]
    assert events[0] == SearchEvent(ts=1700000000000, sku="A", region="east", category="keys")
    assert isinstance(events[1], CartAddEvent) and events[1].qty == 2
    assert isinstance(events[3], OrderEvent) and events[3].is_stockout
    assert dict(reader.stats.bad_rows) == {
        "not_json": 1,
        "missing_field:sku": 1,
        "bad_value:topic": 1,
        "missing_field:topic": 1,
        "bad_value:ts": 1,
        "not_object": 1,
        "bad_value:qty": 1,
        "truncated_line": 1,
    }
    assert reader.stats.rows == 13
    assert reader.stats.events == 5


def test_gzip_is_read_transparently_by_its_magic_bytes(tmp_path: Path) -> None:
    packed = tmp_path / "dump.log"  # no .gz suffix: detection is by content
    packed.write_bytes(gzip.compress((FIXTURES / "events.jsonl").read_bytes()))

    events, reader = read(packed)

    assert reader.format is LogFormat.JSONL
    assert len(events) == 5
    assert reader.stats.bad_rows["truncated_line"] == 1
    assert reader.consumed() == packed.stat().st_size


def test_a_gzip_file_cut_short_ends_the_read_with_a_count_not_an_error(tmp_path: Path) -> None:
    lines = b"".join(
        b'{"topic": "shop.searches", "ts": %d, "sku": "S-%d"}\n' % (1700000000000 + i, i % 7)
        for i in range(5000)
    )
    whole = gzip.compress(lines)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) * 2 // 3])

    events, reader = read(cut)

    assert 0 < len(events) < 5000
    assert reader.stats.bad_rows["truncated_file"] == 1


def test_rees46_rows_become_searches_cart_adds_and_paid_orders() -> None:
    events, reader = read(FIXTURES / "rees46.csv")

    assert reader.format is LogFormat.REES46
    kinds = [(type(e).__name__, e.sku) for e in events]
    assert kinds == [
        ("SearchEvent", "44600062"),
        ("CartAddEvent", "3900821"),
        ("OrderEvent", "3900821"),
        ("SearchEvent", "17200506"),
        ("OrderEvent", "1004237"),
    ]
    first = events[0]
    assert first.ts == 1569888000000  # 2019-10-01 00:00:00 UTC
    assert first.category == "2103807459595387724"  # no category_code: the id
    assert events[1].category == "appliances.environment.water_heater"
    order = events[2]
    assert isinstance(order, OrderEvent)
    assert order.status is OrderStatus.PAID and order.qty == 1 and order.amount == 33.2
    assert dict(reader.stats.bad_rows) == {
        "bad_value:event_type": 1,
        "missing_field:sku": 1,
        "bad_value:ts": 1,
        "bad_csv_row": 1,
        "truncated_line": 1,
    }
    assert dict(reader.stats.skipped) == {"remove_from_cart": 1}


def test_online_retail_lines_are_paid_orders_and_negative_lines_are_returns() -> None:
    events, reader = read(FIXTURES / "online_retail.csv")

    assert reader.format is LogFormat.ONLINE_RETAIL
    assert [(e.sku, e.qty, e.region) for e in events if isinstance(e, OrderEvent)] == [
        ("85123A", 6, "United Kingdom"),
        ("71053", 6, "United Kingdom"),
        ("22633", 6, "United Kingdom"),  # quoted description with a comma
        ("22941", 6, "Australia"),
    ]
    assert events[0].ts == 1291191960000  # 12/1/2010 8:26 GMT
    assert events[3].ts == 1306916760000  # 6/1/2011 9:26 BST = 08:26 UTC
    assert reader.stats.return_lines == 2
    assert reader.stats.returned_units == 13
    assert dict(reader.stats.bad_rows) == {
        "bad_value:ts": 1,
        "bad_type:qty": 1,
        "bad_value:qty": 1,
        "bad_csv_row": 1,
        "truncated_line": 1,
    }
    assert dict(reader.stats.skipped) == {"non_product:POST": 1, "non_product:D": 1}


def test_the_format_can_be_forced_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    unknown = tmp_path / "mystery.txt"
    unknown.write_text("a;b;c\n1;2;3\n")
    with pytest.raises(UnknownFormatError):
        LogReader(unknown)

    events, _ = read(FIXTURES / "rees46.csv", LogFormat.REES46)
    assert len(events) == 5


def test_uk_local_time_uses_the_london_zone() -> None:
    assert online_retail_ts("3/27/2011 0:30") == 1301185800000  # before the switch: GMT
    assert online_retail_ts("3/28/2011 0:30") - online_retail_ts("3/27/2011 0:30") == 23 * 3600_000
