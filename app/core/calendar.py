"""The first-tier calendar: planned events to pre-warm and fixed monthly schedules.

Entries come from a YAML/JSON file read at start-up (:func:`load_calendar`, errors name
the line and the field like :class:`~app.core.policy.PolicyError`) and from the compacted
topic ``replenish.calendar`` (:func:`parse_calendar_record`, which never raises and
returns an :class:`~app.events.codec.Invalid` for the dead-letter topic). Both go through
one validator, so a file entry and a record accept exactly the same fields.

A :class:`Calendar` is updated in place (:meth:`Calendar.apply`, :meth:`Calendar.remove`)
so a change takes effect without a restart. The timers that read it live in
:mod:`app.core.first_tier`. See ``docs/FIRST_TIER.md``.
"""

from __future__ import annotations

import calendar as _gregorian
import math
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

from app.core.policy import PolicyError, _Reader
from app.events.codec import MAX_MESSAGE_BYTES, MAX_TEXT_CHARS, MAX_TS_MS, MIN_TS_MS, Invalid
from app.events.codec import parse_ts as _parse_ts

#: Day of the month a schedule orders on when it names none.
DEFAULT_DAY_OF_MONTH = 5
#: Largest ``expected_uplift`` accepted (a multiple of normal demand).
MAX_UPLIFT = 100.0
#: Longest event period accepted, in hours (a year).
MAX_DURATION_HOURS = 24.0 * 366
#: Most pre-registrations accepted for one event.
MAX_PRE_REGISTRATIONS = 10**9
#: Most SKUs or regions one entry may name.
MAX_LIST_ITEMS = 1_000

_EVENT_FIELDS = frozenset(
    {
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
    }
)
_SCHEDULE_FIELDS = frozenset(
    {"type", "id", "account", "skus", "supplier", "day_of_month", "hour_utc", "region", "warehouse"}
)


@dataclass(frozen=True, slots=True)
class CalendarEvent:
    """A game launch or promotion to pre-warm stock for.

    ``skus`` and/or ``category`` say what it sells (a category means every SKU the core
    knows in it); no ``regions`` means everywhere (the central warehouse). The event's
    demand period is ``duration_hours`` from ``start_ms`` (the planner's default if
    ``None``).

    Examples
    --------
    >>> e = CalendarEvent("launch-1", "Starfield launch", start_ms=1_700_000_000_000,
    ...                   skus=("KEY-STARFIELD",), pre_registrations=40_000)
    >>> e.kind, e.regions
    ('event', ())
    """

    id: str
    name: str
    start_ms: int
    skus: tuple[str, ...] = ()
    category: str | None = None
    regions: tuple[str, ...] = ()
    pre_registrations: int = 0
    expected_uplift: float | None = None
    duration_hours: float | None = None

    @property
    def kind(self) -> str:
        """``event`` (the ``type`` of its calendar record)."""
        return "event"


@dataclass(frozen=True, slots=True)
class Schedule:
    """A fixed monthly order of an enterprise account under a framework agreement.

    Orders on ``day_of_month`` (clamped to the month's length) at ``hour_utc`` from
    ``supplier``; to ``warehouse`` if given, else the warehouse of ``region``, else the
    central one.

    Examples
    --------
    >>> s = Schedule("acme-monthly", "ACME", skus=("VOUCHER-STEAM-50",), supplier="S-12",
    ...              day_of_month=31)
    >>> s.occurrence(2026, 2)  # clamped to 28 February
    1772236800000
    >>> datetime.fromtimestamp(s.occurrence(2026, 2) / 1000, tz=UTC).isoformat()
    '2026-02-28T00:00:00+00:00'
    """

    id: str
    account: str
    skus: tuple[str, ...]
    supplier: str
    day_of_month: int = DEFAULT_DAY_OF_MONTH
    hour_utc: int = 0
    region: str | None = None
    warehouse: str | None = None

    @property
    def kind(self) -> str:
        """``schedule`` (the ``type`` of its calendar record)."""
        return "schedule"

    def occurrence(self, year: int, month: int) -> int:
        """Epoch ms of this schedule's order time in ``year``-``month`` (UTC)."""
        day = min(self.day_of_month, _gregorian.monthrange(year, month)[1])
        moment = datetime(year, month, day, self.hour_utc, tzinfo=UTC)
        return int(moment.timestamp()) * 1000

    def latest_occurrence(self, at_ms: int) -> int:
        """The last order time at or before ``at_ms``.

        >>> s = Schedule("s", "ACME", skus=("A",), supplier="S-12")  # the 5th, 00:00 UTC
        >>> at = int(datetime(2026, 3, 4, tzinfo=UTC).timestamp() * 1000)
        >>> datetime.fromtimestamp(s.latest_occurrence(at) / 1000, tz=UTC).date().isoformat()
        '2026-02-05'
        """
        moment = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
        year, month = moment.year, moment.month
        candidate = self.occurrence(year, month)
        if candidate <= at_ms:
            return candidate
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
        return self.occurrence(year, month)

    def next_occurrence(self, after_ms: int) -> int:
        """The first order time strictly after ``after_ms``."""
        moment = datetime.fromtimestamp(after_ms / 1000, tz=UTC)
        year, month = moment.year, moment.month
        candidate = self.occurrence(year, month)
        if candidate > after_ms:
            return candidate
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return self.occurrence(year, month)


CalendarEntry = CalendarEvent | Schedule


@dataclass(frozen=True, slots=True)
class CalendarUpdate:
    """A calendar record that adds or replaces the entry with its id."""

    entry: CalendarEntry


@dataclass(frozen=True, slots=True)
class CalendarDeletion:
    """A tombstone: the entry with this id is gone."""

    entry_id: str


class Calendar:
    """The calendar entries in force, by id; changed in place, no restart needed.

    ``version`` grows with every change, so a reader can tell the calendar moved.

    Examples
    --------
    >>> cal = Calendar()
    >>> cal.apply(Schedule("acme", "ACME", skus=("A",), supplier="S-12"))
    >>> len(cal), cal.version, [s.id for s in cal.schedules()]
    (1, 1, ['acme'])
    >>> cal.remove("acme"), cal.remove("acme"), len(cal)
    (True, False, 0)
    """

    def __init__(self, entries: Mapping[str, CalendarEntry] | None = None) -> None:
        self._entries: dict[str, CalendarEntry] = dict(entries or {})
        self.version = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._entries

    def __iter__(self) -> Iterator[CalendarEntry]:
        return iter([self._entries[key] for key in sorted(self._entries)])

    def get(self, entry_id: str) -> CalendarEntry | None:
        """The entry with ``entry_id``, if any."""
        return self._entries.get(entry_id)

    def apply(self, entry: CalendarEntry) -> None:
        """Add ``entry`` or replace the entry with the same id."""
        self._entries[entry.id] = entry
        self.version += 1

    def remove(self, entry_id: str) -> bool:
        """Delete the entry with ``entry_id``; ``False`` if there was none."""
        if self._entries.pop(entry_id, None) is None:
            return False
        self.version += 1
        return True

    def apply_change(self, change: CalendarUpdate | CalendarDeletion) -> None:
        """Apply what :func:`parse_calendar_record` returned (not an ``Invalid``)."""
        if isinstance(change, CalendarUpdate):
            self.apply(change.entry)
        else:
            self.remove(change.entry_id)

    def events(self) -> list[CalendarEvent]:
        """Events, by start time then id."""
        found = [e for e in self._entries.values() if isinstance(e, CalendarEvent)]
        return sorted(found, key=lambda e: (e.start_ms, e.id))

    def schedules(self) -> list[Schedule]:
        """Schedules, by id."""
        return sorted(
            (e for e in self._entries.values() if isinstance(e, Schedule)), key=lambda s: s.id
        )


# --------------------------------------------------------------------------- validation


class CalendarError(PolicyError):
    """A calendar file that cannot be used; the message names the line and the field.

    >>> str(CalendarError("is required", field="events[0].start", line=4, path="cal.yaml"))
    'cal.yaml:4: events[0].start: is required'
    """

    def __init__(
        self, message: str, *, field: str = "", line: int | None = None, path: str = "<calendar>"
    ) -> None:
        super().__init__(message, field=field, line=line, path=path)


class _FieldError(Exception):
    """One field of one entry is wrong: ``kind`` is ``missing_field``, ``bad_type``, ..."""

    def __init__(self, kind: str, field: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.field = field
        self.message = message

    @property
    def reason(self) -> str:
        return f"{self.kind}:{self.field}"


def _text(obj: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise _FieldError("missing_field", name, "is required")
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _FieldError("bad_type", name, "must be a name (text)")
    text = str(value).strip()
    if not text:
        if required:
            raise _FieldError("missing_field", name, "is empty")
        return None
    if len(text) > MAX_TEXT_CHARS:
        raise _FieldError("bad_value", name, f"is longer than {MAX_TEXT_CHARS} characters")
    return text


def _names(obj: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = obj.get(name)
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise _FieldError("bad_type", name, "must be a list of names")
    if len(items) > MAX_LIST_ITEMS:
        raise _FieldError("bad_value", name, f"names more than {MAX_LIST_ITEMS} items")
    found: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int) or not str(item).strip():
            raise _FieldError("bad_type", name, "must be a list of non-empty names")
        text = str(item).strip()
        if len(text) > MAX_TEXT_CHARS:
            raise _FieldError("bad_value", name, f"has a name longer than {MAX_TEXT_CHARS}")
        if text not in found:
            found.append(text)
    return tuple(found)


def _number(obj: Mapping[str, Any], name: str, low: float, high: float) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _FieldError("bad_type", name, f"must be a number, got {value!r}")
    if not math.isfinite(value) or not low < value <= high:
        raise _FieldError("bad_value", name, f"must be above {low:g} and at most {high:g}")
    return float(value)


def _whole(obj: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _FieldError("bad_type", name, f"must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise _FieldError("bad_value", name, f"must be between {low} and {high}, got {value}")
    return value


def _start(obj: Mapping[str, Any]) -> int:
    value = obj.get("start")
    if value is None:
        raise _FieldError("missing_field", "start", "is required")
    try:
        start = _parse_ts(value)
    except TypeError:
        raise _FieldError(
            "bad_type", "start", "must be epoch milliseconds or ISO-8601 with a zone"
        ) from None
    except ValueError:
        raise _FieldError(
            "bad_value", "start", "must be epoch milliseconds or ISO-8601 with a zone"
        ) from None
    if not MIN_TS_MS <= start <= MAX_TS_MS:
        raise _FieldError("bad_value", "start", "must be between 2000 and 2100")
    return start


def _entry_from_mapping(obj: Any, *, kind: str | None = None) -> CalendarEntry:
    """Validate one calendar entry (already parsed); raises ``_FieldError``.

    ``kind`` (``event``/``schedule``) is the file section the entry sits in; a record
    states it in ``type``.
    """
    if not isinstance(obj, dict):
        raise _FieldError("not_object", "entry", "must be a mapping of fields")
    stated = _text(obj, "type", required=kind is None)
    if stated is not None and stated not in {"event", "schedule"}:
        raise _FieldError("bad_value", "type", "must be 'event' or 'schedule'")
    if kind is not None and stated is not None and stated != kind:
        raise _FieldError("bad_value", "type", f"must be {kind!r} in this section")
    kind = kind or stated or "event"
    allowed = _EVENT_FIELDS if kind == "event" else _SCHEDULE_FIELDS
    for name in sorted(obj):
        if name not in allowed:
            raise _FieldError("unknown_field", str(name), "is not a field of a calendar " + kind)
    entry_id = _text(obj, "id", required=True)
    assert entry_id is not None
    if kind == "event":
        name = _text(obj, "name", required=True)
        assert name is not None
        skus = _names(obj, "skus")
        category = _text(obj, "category", required=False)
        if not skus and category is None:
            raise _FieldError("missing_field", "skus", "an event needs skus or a category")
        return CalendarEvent(
            id=entry_id,
            name=name,
            start_ms=_start(obj),
            skus=skus,
            category=category,
            regions=_names(obj, "regions"),
            pre_registrations=_whole(obj, "pre_registrations", 0, MAX_PRE_REGISTRATIONS) or 0,
            expected_uplift=_number(obj, "expected_uplift", 0.0, MAX_UPLIFT),
            duration_hours=_number(obj, "duration_hours", 0.0, MAX_DURATION_HOURS),
        )
    account = _text(obj, "account", required=True)
    supplier = _text(obj, "supplier", required=True)
    skus = _names(obj, "skus")
    if not skus:
        raise _FieldError("missing_field", "skus", "a schedule needs at least one SKU")
    assert account is not None and supplier is not None
    day = _whole(obj, "day_of_month", 1, 31)
    hour = _whole(obj, "hour_utc", 0, 23)
    return Schedule(
        id=entry_id,
        account=account,
        skus=skus,
        supplier=supplier,
        day_of_month=DEFAULT_DAY_OF_MONTH if day is None else day,
        hour_utc=0 if hour is None else hour,
        region=_text(obj, "region", required=False),
        warehouse=_text(obj, "warehouse", required=False),
    )


def parse_calendar_record(
    key: bytes | None, value: bytes | None
) -> CalendarUpdate | CalendarDeletion | Invalid:
    """Turn one ``replenish.calendar`` record into a change; never raises.

    The key is the entry id (UTF-8); the value a JSON object with ``type``
    (``event``/``schedule``) and the entry's fields (``id`` may be left out: the key is
    the id). A ``None`` value is a tombstone deleting that id.

    Examples
    --------
    >>> parse_calendar_record(b"acme", b'{"type": "schedule", "account": "ACME",'
    ...                       b' "skus": ["A"], "supplier": "S-12"}').entry.day_of_month
    5
    >>> parse_calendar_record(b"launch-1", None)
    CalendarDeletion(entry_id='launch-1')
    >>> parse_calendar_record(b"x", b"{oops").reason
    'not_json'
    >>> parse_calendar_record(b"x", b'{"type": "event", "name": "Launch", "skus": ["A"]}')
    Invalid(reason='missing_field:start', detail='start: is required')
    """
    if key is None:
        return Invalid("missing_key", "calendar records are keyed by entry id")
    try:
        entry_id = key.decode("utf-8").strip()
    except UnicodeDecodeError:
        return Invalid("bad_key", "the key is not UTF-8 text")
    if not entry_id or len(entry_id) > MAX_TEXT_CHARS:
        return Invalid("bad_key", "the key must be an entry id (1 to 256 characters)")
    if value is None:
        return CalendarDeletion(entry_id)
    if len(value) > MAX_MESSAGE_BYTES:
        return Invalid("too_large", f"message is larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return Invalid("not_json", str(exc)[:200])
    if not isinstance(obj, dict):
        return Invalid("not_object", "message is JSON but not an object")
    stated = obj.get("id")
    if stated is None:
        obj = {**obj, "id": entry_id}
    elif str(stated).strip() != entry_id:
        return Invalid("bad_value:id", f"id {stated!r} does not match the key {entry_id!r}")
    try:
        return CalendarUpdate(_entry_from_mapping(obj))
    except _FieldError as exc:
        return Invalid(exc.reason, f"{exc.field}: {exc.message}")


def calendar_record(entry: CalendarEntry) -> tuple[bytes, bytes]:
    """The ``(key, value)`` of ``entry`` as a ``replenish.calendar`` record.

    >>> key, value = calendar_record(Schedule("acme", "ACME", skus=("A",), supplier="S-12"))
    >>> parse_calendar_record(key, value).entry == Schedule("acme", "ACME", ("A",), "S-12")
    True
    """
    body: dict[str, Any] = {"type": entry.kind, "id": entry.id}
    if isinstance(entry, CalendarEvent):
        body.update(name=entry.name, start=entry.start_ms, skus=list(entry.skus))
        optional: dict[str, Any] = {
            "category": entry.category,
            "regions": list(entry.regions) or None,
            "pre_registrations": entry.pre_registrations or None,
            "expected_uplift": entry.expected_uplift,
            "duration_hours": entry.duration_hours,
        }
    else:
        body.update(
            account=entry.account,
            skus=list(entry.skus),
            supplier=entry.supplier,
            day_of_month=entry.day_of_month,
            hour_utc=entry.hour_utc,
        )
        optional = {"region": entry.region, "warehouse": entry.warehouse}
    body.update({k: v for k, v in optional.items() if v is not None})
    return entry.id.encode("utf-8"), orjson.dumps(body)


# --------------------------------------------------------------------------- the file

_SECTIONS = {"events": "event", "schedules": "schedule"}


class _CalendarReader(_Reader):
    """The policy loader's node walker, raising :class:`CalendarError`."""

    def fail(self, node: yaml.Node, where: str, message: str) -> CalendarError:
        return CalendarError(message, field=where, line=node.start_mark.line + 1, path=self.path)

    def plain(self, node: yaml.Node, where: str) -> Any:
        """A field's value: a scalar or a list of scalars (timestamps kept as text)."""
        if isinstance(node, yaml.SequenceNode):
            return [self.plain(item, where) for item in node.value]
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, where, "must be a value or a list of values")
        if node.tag == "tag:yaml.org,2002:timestamp":
            return str(node.value)  # ISO text: parse_ts checks the zone
        value = self.scalar(node, where)
        if isinstance(value, str) and node.style is None:
            try:  # YAML 1.1 reads 1e3 (no dot) as text
                return float(value)
            except ValueError:
                return value
        return value


def parse_calendar(
    text: str, *, path: str = "<calendar>", suppliers: Collection[str] | None = None
) -> Calendar:
    """Build a calendar from YAML or JSON text; raises :class:`CalendarError`.

    The text has two optional lists, ``events`` and ``schedules``, whose items carry the
    same fields as ``replenish.calendar`` records (``type`` implied by the list). Given
    ``suppliers`` (the policy's), a schedule naming another supplier is refused.

    Examples
    --------
    >>> cal = parse_calendar('''
    ... events:
    ...   - {id: launch-1, name: Launch, skus: [KEY-1], start: "2026-12-04T18:00:00Z"}
    ... schedules:
    ...   - {id: acme, account: ACME, skus: [V-50], supplier: S-12, hour_utc: 6}
    ... ''')
    >>> [e.id for e in cal], cal.events()[0].start_ms
    (['acme', 'launch-1'], 1796407200000)
    >>> parse_calendar('''
    ... schedules:
    ...   - id: acme
    ...     account: ACME
    ...     skus: [V-50]
    ...     supplier: S-12
    ...     day_of_month: 32
    ... ''', path="cal.yaml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    app.core.calendar.CalendarError: cal.yaml:7: schedules[0].day_of_month: must be between 1 ...
    >>> parse_calendar('''
    ... schedules:
    ...   - {id: acme, account: ACME, skus: [V-50], supplier: S-99}
    ... ''', path="cal.yaml", suppliers=["S-12", "S-default"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    app.core.calendar.CalendarError: cal.yaml:3: schedules[0].supplier: schedule 'acme' names ...
    """
    reader = _CalendarReader(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise CalendarError(
            f"not valid YAML or JSON: {exc.problem}", line=line, path=path
        ) from None
    cal = Calendar()
    if root is None:
        return cal
    where_of: dict[str, str] = {}
    for section, key_node, section_node in reader.mapping(root, ""):
        kind = _SECTIONS.get(section)
        if kind is None:
            raise reader.fail(key_node, section, "unknown section (allowed: events, schedules)")
        if isinstance(section_node, yaml.ScalarNode) and section_node.value in {"", "~", "null"}:
            continue  # an empty section
        if not isinstance(section_node, yaml.SequenceNode):
            raise reader.fail(section_node, section, "must be a list")
        for position, item in enumerate(section_node.value):
            where = f"{section}[{position}]"
            nodes = {key: (k, v) for key, k, v in reader.mapping(item, where)}
            obj = {key: reader.plain(v, f"{where}.{key}") for key, (_, v) in nodes.items()}
            try:
                entry = _entry_from_mapping(obj, kind=kind)
            except _FieldError as exc:
                field_nodes = nodes.get(exc.field)
                if exc.kind == "unknown_field" and field_nodes is not None:
                    node = field_nodes[0]
                elif field_nodes is not None:
                    node = field_nodes[1]
                else:
                    node = item
                raise reader.fail(node, f"{where}.{exc.field}", exc.message) from None
            if (
                suppliers is not None
                and isinstance(entry, Schedule)
                and entry.supplier not in suppliers
            ):
                raise reader.fail(
                    nodes["supplier"][1],
                    f"{where}.supplier",
                    f"schedule {entry.id!r} names supplier {entry.supplier!r}, which is not "
                    f"in the policy's suppliers ({', '.join(sorted(suppliers))})",
                )
            if entry.id in where_of:
                raise reader.fail(
                    nodes["id"][1],
                    f"{where}.id",
                    f"{entry.id!r} already used by {where_of[entry.id]}",
                )
            where_of[entry.id] = where
            cal.apply(entry)
    return cal


def load_calendar(path: Path | str, *, suppliers: Collection[str] | None = None) -> Calendar:
    """Read a calendar file (YAML or JSON); raises :class:`CalendarError` naming line and field.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    ...     _ = f.write('{"schedules": [{"id": "acme", "account": "ACME",\\n'
    ...                 '  "skus": ["V-50"], "supplier": "S-12", "hour_utc": "six"}]}')
    >>> load_calendar(f.name)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    app.core.calendar.CalendarError: ...json:2: schedules[0].hour_utc: must be a whole number...
    >>> os.unlink(f.name)
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise CalendarError(f"cannot read calendar file: {exc.strerror}", path=str(file)) from None
    return parse_calendar(text, path=str(file), suppliers=suppliers)
