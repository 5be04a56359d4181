"""Calendar entries from records of ``replenish.calendar`` and from the start-up file."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.calendar import (
    Calendar,
    CalendarDeletion,
    CalendarError,
    CalendarEvent,
    CalendarUpdate,
    Schedule,
    calendar_record,
    load_calendar,
    parse_calendar,
    parse_calendar_record,
)
from app.events.codec import Invalid

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "calendar.yaml"
LAUNCH = {
    "type": "event",
    "name": "Starfield launch",
    "skus": ["KEY-STARFIELD"],
    "start": "2026-12-04T18:00:00Z",
}
MONTHLY = {"type": "schedule", "account": "ACME", "skus": ["V-50"], "supplier": "S-12"}


def _record(body: dict[str, object], key: bytes = b"entry-1") -> object:
    return parse_calendar_record(key, orjson.dumps(body))


def test_an_event_record_becomes_an_update_with_every_field() -> None:
    change = _record(
        {
            **LAUNCH,
            "regions": ["east", "west"],
            "pre_registrations": 40_000,
            "expected_uplift": 2.5,
            "duration_hours": 36,
        }
    )
    assert change == CalendarUpdate(
        CalendarEvent(
            id="entry-1",
            name="Starfield launch",
            start_ms=1_796_407_200_000,
            skus=("KEY-STARFIELD",),
            regions=("east", "west"),
            pre_registrations=40_000,
            expected_uplift=2.5,
            duration_hours=36.0,
        )
    )


def test_a_schedule_record_defaults_to_the_5th_at_midnight_utc() -> None:
    change = _record(MONTHLY, key=b"acme")
    assert isinstance(change, CalendarUpdate)
    assert change.entry == Schedule("acme", "ACME", ("V-50",), "S-12", day_of_month=5, hour_utc=0)


def test_epoch_milliseconds_and_zoned_iso_starts_agree() -> None:
    by_iso = _record({**LAUNCH, "start": "2026-12-04T19:00:00+01:00"})
    by_ms = _record({**LAUNCH, "start": 1_796_407_200_000})
    assert isinstance(by_iso, CalendarUpdate) and isinstance(by_ms, CalendarUpdate)
    assert by_iso.entry == by_ms.entry


def test_a_tombstone_deletes_the_id_of_its_key() -> None:
    calendar = Calendar()
    change = _record(LAUNCH, key=b"launch")
    assert isinstance(change, CalendarUpdate)
    calendar.apply_change(change)
    tombstone = parse_calendar_record(b"launch", None)
    assert tombstone == CalendarDeletion("launch")
    calendar.apply_change(tombstone)
    assert len(calendar) == 0 and calendar.version == 2


def test_records_round_trip_through_calendar_record() -> None:
    event = CalendarEvent("l", "Launch", 1_796_407_200_000, skus=("A",), regions=("east",))
    for entry in (event, Schedule("s", "ACME", ("A", "B"), "S-12", 31, 6, warehouse="WH-x")):
        key, value = calendar_record(entry)
        assert parse_calendar_record(key, value) == CalendarUpdate(entry)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"x", b"not json", "not_json"),
        (b"x", b"[1, 2]", "not_object"),
        (None, orjson.dumps(LAUNCH), "missing_key"),
        (None, None, "missing_key"),
        (b"\xff\xfe", orjson.dumps(LAUNCH), "bad_key"),
        (
            b"x",
            orjson.dumps({k: v for k, v in LAUNCH.items() if k != "type"}),
            "missing_field:type",
        ),
        (b"x", orjson.dumps({**LAUNCH, "type": "party"}), "bad_value:type"),
        (
            b"x",
            orjson.dumps({k: v for k, v in LAUNCH.items() if k != "start"}),
            "missing_field:start",
        ),
        (b"x", orjson.dumps({**LAUNCH, "start": "next friday"}), "bad_value:start"),
        (b"x", orjson.dumps({**LAUNCH, "start": "2026-12-04T18:00:00"}), "bad_value:start"),
        (b"x", orjson.dumps({**LAUNCH, "start": 17}), "bad_value:start"),
        (b"x", orjson.dumps({**LAUNCH, "start": True}), "bad_type:start"),
        (
            b"x",
            orjson.dumps({k: v for k, v in LAUNCH.items() if k != "name"}),
            "missing_field:name",
        ),
        (b"x", orjson.dumps({**LAUNCH, "skus": []}), "missing_field:skus"),
        (b"x", orjson.dumps({**LAUNCH, "skus": [{"sku": "A"}]}), "bad_type:skus"),
        (b"x", orjson.dumps({**LAUNCH, "pre_registrations": -5}), "bad_value:pre_registrations"),
        (b"x", orjson.dumps({**LAUNCH, "pre_registrations": "many"}), "bad_type:pre_registrations"),
        (b"x", orjson.dumps({**LAUNCH, "expected_uplift": 0}), "bad_value:expected_uplift"),
        (b"x", orjson.dumps({**LAUNCH, "duration_hours": -1}), "bad_value:duration_hours"),
        (b"x", orjson.dumps({**LAUNCH, "id": "other"}), "bad_value:id"),
        (b"x", orjson.dumps({**LAUNCH, "day_of_month": 5}), "unknown_field:day_of_month"),
        (b"x", orjson.dumps({**MONTHLY, "day_of_month": 0}), "bad_value:day_of_month"),
        (b"x", orjson.dumps({**MONTHLY, "day_of_month": 32}), "bad_value:day_of_month"),
        (b"x", orjson.dumps({**MONTHLY, "day_of_month": "5th"}), "bad_type:day_of_month"),
        (b"x", orjson.dumps({**MONTHLY, "hour_utc": 24}), "bad_value:hour_utc"),
        (
            b"x",
            orjson.dumps({k: v for k, v in MONTHLY.items() if k != "supplier"}),
            "missing_field:supplier",
        ),
        (
            b"x",
            orjson.dumps({k: v for k, v in MONTHLY.items() if k != "account"}),
            "missing_field:account",
        ),
        (b"x", orjson.dumps({**MONTHLY, "skus": None}), "missing_field:skus"),
        (b"x", b"{" + b'"a":"' + b"x" * 70_000 + b'"}', "too_large"),
    ],
)
def test_malformed_records_are_invalid_with_a_machine_readable_reason(
    key: bytes | None, value: bytes | None, reason: str
) -> None:
    change = parse_calendar_record(key, value)
    assert isinstance(change, Invalid)
    assert change.reason == reason
    assert change.detail


def test_the_example_calendar_loads() -> None:
    calendar = load_calendar(EXAMPLE)
    assert calendar.events() and calendar.schedules()
    assert all(isinstance(e, CalendarEvent | Schedule) for e in calendar)


def test_a_json_file_reads_like_yaml(tmp_path: Path) -> None:
    path = tmp_path / "calendar.json"
    path.write_text(orjson.dumps({"events": [{**LAUNCH, "id": "l"}], "schedules": []}).decode())
    assert [e.id for e in load_calendar(path).events()] == ["l"]


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        (
            "events:\n  - id: l\n    name: Launch\n    skus: [A]\n    start: 2026-12-04\n",
            5,
            "events[0].start",
            "must be epoch milliseconds or ISO-8601 with a zone",
        ),
        (
            "events:\n  - id: l\n    name: Launch\n    skus: [A]\n",
            2,
            "events[0].start",
            "is required",
        ),
        (
            "schedules:\n  - id: s\n    account: ACME\n    skus: [A]\n    supplier: S-12\n"
            "    day_of_mont: 6\n",
            6,
            "schedules[0].day_of_mont",
            "is not a field of a calendar schedule",
        ),
        (
            "schedules:\n  - {id: s, account: ACME, skus: [A], supplier: S-12}\n"
            "  - {id: s, account: Globex, skus: [B], supplier: S-12}\n",
            3,
            "schedules[1].id",
            "'s' already used by schedules[0]",
        ),
        (
            "schedules:\n  - {id: s, account: ACME, skus: [A], supplier: S-12, hour_utc: 25}\n",
            2,
            "schedules[0].hour_utc",
            "must be between 0 and 23, got 25",
        ),
        ("holidays: []\n", 1, "holidays", "unknown section (allowed: events, schedules)"),
        ("events:\n  - id: l\n    name: [unclosed\n", 4, "", "not valid YAML or JSON"),
        ("events: {id: l}\n", 1, "events", "must be a list"),
        (
            "events:\n  - id: l\n    name: Launch\n    category: game-keys\n"
            "    start: 1796407200000\n    expected_uplift: lots\n",
            6,
            "events[0].expected_uplift",
            "must be a number, got 'lots'",
        ),
    ],
)
def test_file_errors_name_the_line_and_the_field(
    text: str, line: int, field: str, message: str
) -> None:
    with pytest.raises(CalendarError) as caught:
        parse_calendar(text, path="cal.yaml")
    error = caught.value
    assert error.line == line
    assert error.field == field
    assert message in str(error)
    assert str(error).startswith(f"cal.yaml:{line}: {field + ': ' if field else ''}")


def test_a_missing_file_is_a_calendar_error(tmp_path: Path) -> None:
    with pytest.raises(CalendarError, match="cannot read calendar file"):
        load_calendar(tmp_path / "nope.yaml")


def test_an_empty_file_is_an_empty_calendar() -> None:
    assert len(parse_calendar("")) == 0
    assert len(parse_calendar("events:\nschedules:\n")) == 0


def test_schedule_days_clamp_to_the_month_length() -> None:
    schedule = Schedule("s", "ACME", ("A",), "S-12", day_of_month=31, hour_utc=6)
    feb = schedule.next_occurrence(schedule.occurrence(2026, 1))
    assert feb == schedule.occurrence(2026, 2)
    assert feb == 1_772_258_400_000  # 2026-02-28T06:00Z
    assert schedule.occurrence(2028, 2) == 1_835_416_800_000  # leap year: 2028-02-29T06:00Z


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
_fields = st.sampled_from(
    [
        "type",
        "id",
        "name",
        "skus",
        "category",
        "regions",
        "start",
        "pre_registrations",
        "expected_uplift",
        "duration_hours",
        "account",
        "supplier",
        "day_of_month",
        "hour_utc",
        "region",
        "warehouse",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    key=st.none() | st.binary(max_size=12),
    body=st.dictionaries(_fields, _json_values | st.sampled_from(["event", "schedule"])),
)
def test_any_record_becomes_a_change_or_invalid_never_an_exception(
    key: bytes | None, body: dict[str, object]
) -> None:
    change = parse_calendar_record(key, orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS))
    assert isinstance(change, CalendarUpdate | CalendarDeletion | Invalid)
