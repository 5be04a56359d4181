"""First tier: the timers that turn the calendar into planned orders, and their sizing.

:class:`FirstTierPlanner` holds the timers' state: which occurrences already fired (so
each fires exactly once, also across a restart from :meth:`~FirstTierPlanner.snapshot`)
and the demand uplift of past events it observed, per category. One call,
:meth:`FirstTierPlanner.step`, runs the same way in the replay (event clock) and in the
service (wall clock); its orders go through the engine's per-SKU ledger
(:meth:`~app.core.engine.Engine.place_first_tier`), so second-tier quantities subtract
them. See ``docs/FIRST_TIER.md``.

Timer semantics, spelled out
----------------------------
* ``pre_warm`` of an event fires once per (event id, SKU) when
  ``start - lead <= now < start``; a restart inside that span still fires it, a
  tombstone before it cancels it, moving the start of a fired event does not re-fire.
* ``scheduled`` fires once per (schedule id, occurrence, SKU) when
  ``occurrence <= now < occurrence + catch_up``; after a longer outage that month's
  order is skipped rather than placed late.
* Fired marks are kept until the occurrence can no longer fire, then pruned.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from app.core.calendar import Calendar, CalendarEvent, Schedule
from app.core.engine import Engine, StepResult
from app.core.units import HOUR_MS
from app.events.model import ForecastRecord, Signal, TriggerReason

#: Key of the learned uplift of events whose SKUs have no category.
UNCATEGORISED = "*"
_SNAPSHOT_VERSION = 1
_NEVER = 2**62


@dataclass(frozen=True, slots=True)
class FirstTierConfig:
    """Settings of the first-tier planner.

    Examples
    --------
    >>> FirstTierConfig().pre_warm_lead_hours, FirstTierConfig().units_per_registration
    (72.0, 0.3)
    >>> FirstTierConfig(uplift_memory=0)
    Traceback (most recent call last):
    ...
    ValueError: uplift_memory must be at least 1
    """

    #: A pre-warm fires this long before its event starts.
    pre_warm_lead_hours: float = 72.0
    #: Order units one pre-registration stands for (split evenly over the event's SKUs).
    units_per_registration: float = 0.3
    #: Uplift when neither past events nor the event itself say (a multiple of baseline).
    default_uplift: float = 2.0
    #: Demand period of an event that states no ``duration_hours``.
    default_event_hours: float = 24.0
    #: A scheduled order missed for longer than this (an outage) is skipped.
    schedule_catch_up_hours: float = 24.0
    #: Past events remembered per category for the learned uplift (their mean is used).
    uplift_memory: int = 10
    #: A past event whose baseline forecast was below this many units teaches nothing.
    min_baseline_units: float = 1.0
    #: Learned uplifts are clipped to this multiple of baseline.
    max_uplift: float = 50.0

    def __post_init__(self) -> None:
        if self.pre_warm_lead_hours <= 0:
            raise ValueError("pre_warm_lead_hours must be positive")
        if self.units_per_registration < 0:
            raise ValueError("units_per_registration must not be negative")
        if self.default_uplift <= 0 or self.max_uplift <= 0:
            raise ValueError("uplifts must be positive")
        if self.default_event_hours <= 0 or self.schedule_catch_up_hours <= 0:
            raise ValueError("default_event_hours and schedule_catch_up_hours must be positive")
        if self.schedule_catch_up_hours >= 28 * 24:
            raise ValueError("schedule_catch_up_hours must be shorter than a month")
        if self.uplift_memory < 1:
            raise ValueError("uplift_memory must be at least 1")


@dataclass(slots=True)
class _Watch:
    """Demand of one event's period as it happens: actual against the baseline forecast."""

    end_ms: int
    #: "sku|region" -> forecast per window frozen at the first window of the period
    baselines: dict[str, float] = field(default_factory=dict)
    #: category -> actual order units in the period
    actual: dict[str, float] = field(default_factory=dict)
    #: category -> baseline order units in the period
    expected: dict[str, float] = field(default_factory=dict)


class FirstTierPlanner:
    """Timers and sizing of first-tier orders; one planner per engine.

    Examples
    --------
    >>> from app.core.calendar import Calendar, CalendarEvent
    >>> start = 1_700_000_000_000
    >>> cal = Calendar()
    >>> cal.apply(CalendarEvent("launch", "Launch", start_ms=start, skus=("KEY-1",),
    ...                         pre_registrations=1_000))
    >>> engine, planner = Engine(), FirstTierPlanner()
    >>> planner.step(engine, cal, now_ms=start - 73 * HOUR_MS).triggers  # not yet
    []
    >>> [t] = planner.step(engine, cal, now_ms=start - 72 * HOUR_MS).triggers
    >>> t.reason.value, t.tier.value, t.quantity  # new SKU: 1 000 pre-registrations x 0.3
    ('pre_warm', 'first', 300)
    >>> planner.step(engine, cal, now_ms=start - 71 * HOUR_MS).triggers  # fired once
    []
    """

    def __init__(self, config: FirstTierConfig | None = None) -> None:
        self.config = config if config is not None else FirstTierConfig()
        #: sku -> occurrence key -> time after which the mark can be forgotten
        self._fired: dict[str, dict[str, int]] = {}
        #: category -> ratios of actual to baseline demand of recent past events
        self._uplifts: dict[str, list[float]] = {}
        #: event id -> its period's demand so far
        self._watches: dict[str, _Watch] = {}
        self._next_due: int | None = None
        self._seen_version: tuple[int, int] | None = None
        self._next_prune = 0
        #: Whether the state changed since the last :meth:`snapshot` (store it again).
        self.changed = False

    # ------------------------------------------------------------------ public surface

    def step(
        self,
        engine: Engine,
        calendar: Calendar,
        now_ms: int | None,
        *,
        forecasts: Iterable[ForecastRecord] = (),
        owns: Callable[[str], bool] | None = None,
    ) -> StepResult:
        """Learn from closed windows, then place every first-tier order now due.

        Parameters
        ----------
        engine
            The engine whose ledger the orders go through (and whose forecasts size them).
        calendar
            The calendar in force.
        now_ms
            The timers' clock: the engine's event clock in the replay
            (``engine.clock_ms``), the wall clock in the service. ``None`` does nothing.
        forecasts
            ``StepResult.forecasts`` of the engine call just made: the demand of events'
            periods, from which the uplift of comparable events is learned.
        owns
            In the service, whether this engine's partition owns a SKU (SKUs it does not
            own are left to their owner, unmarked). ``None``: every SKU.

        Returns
        -------
        StepResult
            ``triggers`` to publish, ``touched_skus`` whose engine snapshot changed,
            ``suppressed`` occurrences that needed nothing (stock in flight covers them).
        """
        result = StepResult()
        self._observe(calendar, forecasts)
        watermark = engine.watermark_ms
        if watermark is not None and self._watches:
            self._settle_watches(watermark - engine.config.window_ms)
        if now_ms is None:
            return result
        if now_ms >= self._next_prune:
            self._prune(now_ms)
        if (id(calendar), calendar.version) != self._seen_version:
            self._seen_version, self._next_due = (id(calendar), calendar.version), None
        if self._next_due is not None and now_ms < self._next_due:
            return result
        next_due = math.inf
        for event in calendar.events():
            next_due = min(next_due, self._pre_warm(engine, event, now_ms, owns, result))
        for schedule in calendar.schedules():
            next_due = min(next_due, self._scheduled(engine, schedule, now_ms, owns, result))
        self._next_due = _NEVER if math.isinf(next_due) else int(next_due)
        return result

    def uplift(self, category: str | None, expected: float | None = None) -> tuple[float, str]:
        """The uplift to size a pre-warm with, and where it came from.

        Learned from past events of the category, else the event's ``expected_uplift``,
        else :attr:`FirstTierConfig.default_uplift`.

        >>> planner = FirstTierPlanner()
        >>> planner.uplift("game-keys"), planner.uplift("game-keys", 3.0)
        ((2.0, 'default'), (3.0, 'expected by the calendar'))
        """
        ratios = self._uplifts.get(category or UNCATEGORISED)
        if ratios:
            count = len(ratios)
            label = f"learned from {count} past {category or 'uncategorised'} event"
            return sum(ratios) / count, label + ("s" if count != 1 else "")
        if expected is not None:
            return expected, "expected by the calendar"
        return self.config.default_uplift, "default"

    def learned_uplifts(self) -> dict[str, float]:
        """Mean learned uplift per category (for reports and metrics)."""
        return {cat: sum(r) / len(r) for cat, r in sorted(self._uplifts.items()) if r}

    def snapshot(self) -> bytes:
        """The planner's state (fired marks, learned uplifts, periods watched) as JSON bytes.

        >>> FirstTierPlanner().snapshot()
        b'{"version":1,"fired":{},"uplifts":{},"watches":{}}'
        """
        self.changed = False
        return orjson.dumps(
            {
                "version": _SNAPSHOT_VERSION,
                "fired": self._fired,
                "uplifts": self._uplifts,
                "watches": {
                    event_id: {
                        "end_ms": w.end_ms,
                        "baselines": w.baselines,
                        "actual": w.actual,
                        "expected": w.expected,
                    }
                    for event_id, w in self._watches.items()
                },
            }
        )

    def restore(self, blob: bytes) -> None:
        """Load :meth:`snapshot` bytes; ``ValueError`` if they are not a planner snapshot."""
        try:
            state = orjson.loads(blob)
            if state["version"] != _SNAPSHOT_VERSION:
                raise ValueError("unknown planner snapshot version")
            fired = {
                str(sku): {str(k): int(v) for k, v in marks.items()}
                for sku, marks in state["fired"].items()
            }
            uplifts = {str(c): [float(r) for r in v] for c, v in state["uplifts"].items()}
            watches = {
                str(event_id): _Watch(
                    end_ms=int(w["end_ms"]),
                    baselines={str(k): float(v) for k, v in w["baselines"].items()},
                    actual={str(k): float(v) for k, v in w["actual"].items()},
                    expected={str(k): float(v) for k, v in w["expected"].items()},
                )
                for event_id, w in state["watches"].items()
            }
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a first-tier planner snapshot: {exc}") from None
        self._fired, self._uplifts, self._watches = fired, uplifts, watches
        self._next_due, self._seen_version, self._next_prune = None, None, 0
        self.changed = False

    # ------------------------------------------------------------------ timers

    def _pre_warm(
        self,
        engine: Engine,
        event: CalendarEvent,
        now_ms: int,
        owns: Callable[[str], bool] | None,
        result: StepResult,
    ) -> float:
        """Fire the event's pre-warm if due; return when it next needs a look."""
        cfg = self.config
        fire_at = event.start_ms - round(cfg.pre_warm_lead_hours * HOUR_MS)
        if now_ms < fire_at:
            return fire_at
        if now_ms >= event.start_ms:
            return math.inf
        hours = event.duration_hours or cfg.default_event_hours
        period_end = event.start_ms + round(hours * HOUR_MS)
        key = f"pre_warm|{event.id}"
        skus = list(event.skus)
        if event.category is not None:
            skus += [s for s in engine.skus_in_category(event.category) if s not in event.skus]
        for sku in skus:
            if (owns is not None and not owns(sku)) or key in self._fired.get(sku, {}):
                continue
            self._mark(sku, key, period_end)
            self._place_pre_warm(
                engine=engine,
                event=event,
                sku=sku,
                sku_count=len(skus),
                hours=hours,
                fire_at=fire_at,
                now_ms=now_ms,
                result=result,
            )
        # A category's SKUs can appear later: look again next window while still due.
        return now_ms + engine.config.window_ms if event.category is not None else math.inf

    def _place_pre_warm(
        self,
        *,
        engine: Engine,
        event: CalendarEvent,
        sku: str,
        sku_count: int,
        hours: float,
        fire_at: int,
        now_ms: int,
        result: StepResult,
    ) -> None:
        cfg = self.config
        regions = event.regions
        region: str | None = "+".join(regions) if regions else None
        if regions and all(engine.forecast(sku, Signal.ORDER, r) is not None for r in regions):
            baseline = sum(engine.expected_demand(sku, hours, r) for r in regions)
        else:  # everywhere, or the regions' demand is not yet told apart
            baseline = engine.expected_demand(sku, hours)
        category = event.category or engine.category_of(sku)
        uplift, source = self.uplift(category, event.expected_uplift)
        registrations = event.pre_registrations / max(sku_count, 1)
        from_registrations = registrations * cfg.units_per_registration
        demand = baseline * uplift + from_registrations
        because = (
            f"{event.name} starts {_moment(event.start_ms)} (pre-warm "
            f"{cfg.pre_warm_lead_hours:g} h ahead): {baseline:.0f} units expected over "
            f"{hours:g} h x uplift {uplift:.2f} ({source})"
            + (
                f" + {registrations:g} pre-registrations x {cfg.units_per_registration:g}"
                if registrations
                else ""
            )
            + f" = {demand:.0f}"
        )
        trigger = engine.place_first_tier(
            sku,
            TriggerReason.PRE_WARM,
            demand,
            window_start=fire_at,
            window_end=event.start_ms + round(hours * HOUR_MS),
            at_ms=now_ms,
            now_ms=now_ms,
            because=because,
            forecast=baseline,
            region=region,
            hold_until_ms=event.start_ms + round(hours * HOUR_MS),
            category=event.category,
        )
        result.touched_skus.add(sku)
        if trigger is None:
            result.suppressed += 1
        else:
            result.triggers.append(trigger)

    def _scheduled(
        self,
        engine: Engine,
        schedule: Schedule,
        now_ms: int,
        owns: Callable[[str], bool] | None,
        result: StepResult,
    ) -> float:
        """Fire the schedule's order of this month if due; return its next occurrence."""
        occurrence = schedule.latest_occurrence(now_ms)
        following = schedule.next_occurrence(occurrence)
        catch_up = round(self.config.schedule_catch_up_hours * HOUR_MS)
        if now_ms >= occurrence + catch_up:
            return following
        key = f"scheduled|{schedule.id}|{occurrence}"
        hours = (following - occurrence) / HOUR_MS
        for sku in schedule.skus:
            if (owns is not None and not owns(sku)) or key in self._fired.get(sku, {}):
                continue
            self._mark(sku, key, occurrence + catch_up)
            region = schedule.region
            if region is not None and engine.forecast(sku, Signal.ORDER, region) is None:
                region = None  # that region's demand is not yet told apart: the SKU's
            demand = engine.expected_demand(sku, hours, region)
            because = (
                f"monthly order of {schedule.account} (schedule {schedule.id}, day "
                f"{schedule.day_of_month} at {schedule.hour_utc:02d}:00 UTC): {demand:.0f} "
                f"units expected until {_moment(following)}"
            )
            trigger = engine.place_first_tier(
                sku,
                TriggerReason.SCHEDULED,
                demand,
                window_start=occurrence,
                window_end=following,
                at_ms=now_ms,
                now_ms=now_ms,
                because=because,
                forecast=demand,
                region=schedule.region,
                warehouse=schedule.warehouse,
                supplier=schedule.supplier,
            )
            result.touched_skus.add(sku)
            if trigger is None:
                result.suppressed += 1
            else:
                result.triggers.append(trigger)
        return following

    def _mark(self, sku: str, key: str, keep_until: int) -> None:
        self.changed = True
        self._fired.setdefault(sku, {})[key] = keep_until
        self._next_prune = min(self._next_prune, keep_until)

    def _prune(self, now_ms: int) -> None:
        """Forget fired marks of occurrences that can no longer fire (bounded state)."""
        earliest = math.inf
        for sku in list(self._fired):
            marks = {k: until for k, until in self._fired[sku].items() if until > now_ms}
            if len(marks) != len(self._fired[sku]):
                self.changed = True
            if marks:
                self._fired[sku] = marks
                earliest = min(earliest, *marks.values())
            else:
                del self._fired[sku]
        self._next_prune = _NEVER if math.isinf(earliest) else int(earliest)

    # ------------------------------------------------------------------ learning the uplift

    def _observe(self, calendar: Calendar, forecasts: Iterable[ForecastRecord]) -> None:
        """Add closed windows inside events' periods to those events' watches."""
        orders = [r for r in forecasts if r.signal is Signal.ORDER]
        if not orders:
            return
        default_ms = round(self.config.default_event_hours * HOUR_MS)
        periods = [
            (
                event,
                event.start_ms,
                event.start_ms
                + (round(event.duration_hours * HOUR_MS) if event.duration_hours else default_ms),
            )
            for event in calendar.events()
        ]
        if not periods:
            return
        for record in orders:
            for event, start, end in periods:
                if not start <= record.window_start < end:
                    continue
                if record.sku not in event.skus and (
                    event.category is None or record.category != event.category
                ):
                    continue
                if event.regions and record.region not in event.regions:
                    continue
                self.changed = True
                watch = self._watches.get(event.id)
                if watch is None:
                    watch = self._watches[event.id] = _Watch(end_ms=end)
                # The forecast standing when the period began: what demand would have been.
                key = f"{record.sku}|{record.region}"
                baseline = watch.baselines.get(key)
                if baseline is None:
                    baseline = watch.baselines[key] = record.forecast
                category = event.category or record.category or UNCATEGORISED
                watch.actual[category] = watch.actual.get(category, 0.0) + record.actual
                watch.expected[category] = watch.expected.get(category, 0.0) + baseline

    def _settle_watches(self, closed_until: int) -> None:
        """Turn watches whose period has fully closed into learned uplifts."""
        cfg = self.config
        for event_id in sorted(self._watches):
            watch = self._watches[event_id]
            if watch.end_ms > closed_until:
                continue
            del self._watches[event_id]
            self.changed = True
            for category in sorted(watch.expected):
                expected = watch.expected[category]
                if expected < cfg.min_baseline_units:
                    continue  # no baseline to compare with (a new SKU): nothing learned
                ratio = min(watch.actual.get(category, 0.0) / expected, cfg.max_uplift)
                ratios = self._uplifts.setdefault(category, [])
                ratios.append(round(ratio, 6))
                del ratios[: -cfg.uplift_memory]


def _moment(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
