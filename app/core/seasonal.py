"""Seasonal profiles: how demand moves with the hour of day and the day of week.

A SKU's own history is far too thin to learn a weekly shape (most SKUs of a real
catalogue sell less than once a day), so the shape is pooled: one :class:`Profile` per
(category, signal) and one per signal for the whole shop count events by hour of day and
by day of week, against the time each hour and day has been observed (exposure). The
factor of an hour is its rate over the mean rate, shrunk toward 1 by a few hours of
pseudo-exposure; a category's factors are blended with the shop's by how much the category
has seen. Hour and day factors multiply (a separable shape: a day-of-week bin sees seven
times the data of an hour-of-week bin).

Work: :meth:`Profile.add` is O(1) per event; factors are recomputed at most once per hour
of the event clock per profile (O(31)), and :class:`Seasonality` caches the blended factor
of a window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from app.core.units import DAY_MS, HOUR_MS, WEEK_MS

#: 1970-01-01 was a Thursday: (days since epoch + 3) % 7 is 0 on Monday.
_EPOCH_WEEKDAY = 3
#: Hours since the epoch plus this, modulo 168: the hour of the week from Monday 00:00.
_WEEK_OFFSET_HOURS = _EPOCH_WEEKDAY * 24
#: Pseudo-exposure that shrinks an hour's (a day's) factor toward 1.
_HOUR_PRIOR_MS = 2 * HOUR_MS
_DAY_PRIOR_MS = DAY_MS
#: Events a profile needs before it shapes anything.
MIN_EVENTS = 50
#: A category's factors weigh ``n / (n + CATEGORY_POOL)`` against the shop's.
CATEGORY_POOL = 500.0
#: Shapes are recomputed when the event clock enters a new period of this length.
_REFRESH_MS = 6 * HOUR_MS
#: Seasonal factors are clipped to this range (a closed night is not a zero forecast).
FLOOR, CEILING = 0.2, 5.0


def hour_of_day(ts_ms: int) -> int:
    """UTC hour of day of an epoch-ms time.

    >>> hour_of_day(1_700_000_000_000)  # 2023-11-14 22:13 UTC
    22
    """
    return (ts_ms % DAY_MS) // HOUR_MS


def day_of_week(ts_ms: int) -> int:
    """UTC day of week, Monday = 0.

    >>> day_of_week(1_700_000_000_000)  # a Tuesday
    1
    """
    return (ts_ms // DAY_MS + _EPOCH_WEEKDAY) % 7


def _exposure(
    since: int, now: int, *, period: int, bin_ms: int, bins: int, offset: int
) -> list[int]:
    """Milliseconds of ``[since, now)`` that fell in each bin of a periodic cycle."""
    out = [0] * bins
    if now <= since:
        return out
    full, rest_start = divmod(now - since, period)
    if full:
        for i in range(bins):
            out[i] = full * bin_ms
    t = now - rest_start
    while t < now:
        index = ((t // bin_ms) + offset) % bins
        end = min(now, (t // bin_ms + 1) * bin_ms)
        out[index] += end - t
        t = end
    return out


@dataclass(slots=True)
class Profile:
    """Event counts by hour of day and day of week since ``since`` (one category, one signal).

    >>> p = Profile(since=0)
    >>> for day in range(14):  # two weeks: 10 events at 18:00 each day, 1 at 03:00
    ...     for _ in range(10):
    ...         p.add(day * DAY_MS + 18 * HOUR_MS)
    ...     p.add(day * DAY_MS + 3 * HOUR_MS)
    >>> hours, days = p.factors(14 * DAY_MS)  # the 14 days counted, the current period not
    >>> round(hours[18], 2), round(hours[3], 2), round(hours[4], 2)  # clipped to [0.2, 5]
    (5.0, 2.03, 0.2)
    >>> days == [1.0] * 7  # every day alike
    True
    """

    since: int
    hours: list[float] = field(default_factory=lambda: [0.0] * 24)
    days: list[float] = field(default_factory=lambda: [0.0] * 7)
    total: float = 0.0
    #: Events of the current refresh period, kept apart until it ends: the shape never
    #: learns from the hours it is being used to judge (a surge would lift its own bar).
    fresh_period: int = -1
    fresh_hours: list[float] = field(default_factory=lambda: [0.0] * 24)
    fresh_days: list[float] = field(default_factory=lambda: [0.0] * 7)
    fresh_total: float = 0.0

    def add(self, ts_ms: int, weight: float = 1.0) -> None:
        hour = (ts_ms % DAY_MS) // HOUR_MS
        day = (ts_ms // DAY_MS + _EPOCH_WEEKDAY) % 7
        period = ts_ms // _REFRESH_MS
        if period != self.fresh_period:
            if period < self.fresh_period:  # late, from a period already folded in
                self.hours[hour] += weight
                self.days[day] += weight
                self.total += weight
                return
            self._fold()
            self.fresh_period = period
        self.fresh_hours[hour] += weight
        self.fresh_days[day] += weight
        self.fresh_total += weight

    def _fold(self) -> None:
        if not self.fresh_total:
            return
        for i, count in enumerate(self.fresh_hours):
            self.hours[i] += count
        for i, count in enumerate(self.fresh_days):
            self.days[i] += count
        self.total += self.fresh_total
        self.fresh_hours = [0.0] * 24
        self.fresh_days = [0.0] * 7
        self.fresh_total = 0.0

    def counted_until(self, now_ms: int) -> int:
        """The end of what the shape counts: the start of the current refresh period."""
        if now_ms // _REFRESH_MS > self.fresh_period:
            self._fold()  # that period is over
            return now_ms - now_ms % _REFRESH_MS
        return self.fresh_period * _REFRESH_MS

    def factors(
        self, now_ms: int, exposure: Exposure | None = None
    ) -> tuple[list[float], list[float]]:
        """Hour-of-day and day-of-week factors (each averaging 1) from the events counted
        before the current refresh period (see :meth:`counted_until`)."""
        until = self.counted_until(now_ms)
        span = until - self.since
        if self.total < MIN_EVENTS or span < DAY_MS:
            return [1.0] * 24, [1.0] * 7
        if exposure is None:
            exposure = Exposure(self.since, until)
        mean_rate = self.total / span
        hour_prior = mean_rate * _HOUR_PRIOR_MS
        hours = [
            (count + hour_prior) / (spent + _HOUR_PRIOR_MS) / mean_rate
            for count, spent in zip(self.hours, exposure.hours, strict=True)
        ]
        if span >= 2 * DAY_MS:
            day_prior = mean_rate * _DAY_PRIOR_MS
            days = [
                (count + day_prior) / (spent + _DAY_PRIOR_MS) / mean_rate
                for count, spent in zip(self.days, exposure.days, strict=True)
            ]
        else:
            days = [1.0] * 7
        return _normalised(hours), _normalised(days)


class Exposure:
    """Milliseconds each hour of day and each day of week was observed in ``[since, now)``.

    >>> e = Exposure(0, DAY_MS + HOUR_MS)  # a day and an hour from Thursday 00:00
    >>> e.hours[0] // HOUR_MS, e.hours[1] // HOUR_MS, e.days[3] // HOUR_MS
    (2, 1, 24)
    """

    __slots__ = ("days", "hours")

    def __init__(self, since: int, now: int) -> None:
        self.hours = _exposure(since, now, period=DAY_MS, bin_ms=HOUR_MS, bins=24, offset=0)
        self.days = _exposure(
            since, now, period=WEEK_MS, bin_ms=DAY_MS, bins=7, offset=_EPOCH_WEEKDAY
        )


def _normalised(factors: list[float]) -> list[float]:
    mean = sum(factors) / len(factors)
    if mean <= 0:
        return [1.0] * len(factors)
    return [min(max(f / mean, FLOOR), CEILING) for f in factors]


class Seasonality:
    """Pooled seasonal factors of windows, per (category, signal): the shop's shape first.

    Shapes are recomputed at most once per six hours of the event clock; the factor of a
    window is a dictionary look-up after its first use in that period.

    >>> s = Seasonality(window_ms=HOUR_MS)
    >>> s.factor(None, 0, 5 * HOUR_MS, now_ms=0)  # nothing learned: flat
    1.0
    """

    __slots__ = (
        "_exposures",
        "_factors",
        "_generation",
        "_global",
        "_profiles",
        "_shapes",
        "_stamp",
        "_weeks",
        "window_ms",
    )

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._profiles: dict[tuple[str, int], Profile] = {}
        self._global: dict[int, Profile] = {}
        # Caches for the current clock hour (cleared when it moves on).
        self._stamp = -1
        #: Bumped whenever the caches are cleared: factors do not change within one value.
        self._generation = 0
        self._exposures: dict[tuple[int, int], Exposure] = {}
        self._shapes: dict[tuple[str | None, int], tuple[list[float], list[float]]] = {}
        self._factors: dict[tuple[str | None, int, int], float] = {}
        self._weeks: dict[tuple[str | None, int], list[float]] = {}

    def add(self, category: str | None, signal: int, ts_ms: int, weight: float = 1.0) -> None:
        """Count one event (O(1))."""
        shop = self._global.get(signal)
        if shop is None:
            shop = self._global[signal] = Profile(since=ts_ms - ts_ms % HOUR_MS)
        shop.add(ts_ms, weight)
        if category is not None:
            own = self._profiles.get((category, signal))
            if own is None:
                own = self._profiles[(category, signal)] = Profile(since=shop.since)
            own.add(ts_ms, weight)

    def _exposure(self, profile: Profile, now_ms: int) -> Exposure:
        until = profile.counted_until(now_ms)
        exposure = self._exposures.get((profile.since, until))
        if exposure is None:
            exposure = self._exposures[(profile.since, until)] = Exposure(profile.since, until)
        return exposure

    def _shape(
        self, category: str | None, signal: int, now_ms: int
    ) -> tuple[list[float], list[float]]:
        key = (category, signal)
        cached = self._shapes.get(key)
        if cached is not None:
            return cached
        shop = self._global.get(signal)
        if shop is None:
            hours, days = [1.0] * 24, [1.0] * 7
        else:
            hours, days = shop.factors(now_ms, self._exposure(shop, now_ms))
            own = None if category is None else self._profiles.get((category, signal))
            if own is not None and own.total + own.fresh_total >= MIN_EVENTS:
                own_hours, own_days = own.factors(now_ms, self._exposure(own, now_ms))
                w = own.total / (own.total + CATEGORY_POOL)
                hours = [w * a + (1 - w) * b for a, b in zip(own_hours, hours, strict=True)]
                days = [w * a + (1 - w) * b for a, b in zip(own_days, days, strict=True)]
        self._shapes[key] = (hours, days)
        return hours, days

    def _refresh(self, now_ms: int) -> None:
        stamp = now_ms // _REFRESH_MS
        if stamp != self._stamp:
            self._stamp = stamp
            self._generation += 1
            self._exposures.clear()
            self._shapes.clear()
            self._factors.clear()
            self._weeks.clear()

    def generation(self, now_ms: int) -> int:
        """Which set of factors ``now_ms`` reads: the same number, the same factors.

        Factors are computed once per refresh (every few hours of clock, or after
        :meth:`load`) and cached until the next, so a sum of them can be kept as long as
        this number stays the same (the live check's span bounds do).

        >>> s = Seasonality(window_ms=300_000)
        >>> s.generation(0) == s.generation(HOUR_MS), s.generation(0) == s.generation(DAY_MS)
        (True, False)
        """
        self._refresh(now_ms)
        return self._generation

    def lookup(self, category: str | None, signal: int, *, now_ms: int) -> Callable[[int], float]:
        """:meth:`factor` of one (category, signal) as a function of the window start.

        Windows of an hour or less take their hour's factor, so it is a table by hour of the
        week (the same products :meth:`factor` returns), read without a call per window: the
        live check looks up a dozen windows per series it checks.

        >>> s = Seasonality(window_ms=300_000)
        >>> for day in range(14):
        ...     for _ in range(60):
        ...         s.add("toys", 0, day * DAY_MS + 20 * HOUR_MS)
        >>> at = 8 * DAY_MS + 20 * HOUR_MS + 300_000
        >>> now = 15 * DAY_MS
        >>> s.lookup("toys", 0, now_ms=now)(at) == s.factor("toys", 0, at, now_ms=now)
        True
        """
        if self.window_ms > HOUR_MS:
            return lambda at: self.factor(category, signal, at, now_ms=now_ms)
        self._refresh(now_ms)
        key = (category, signal)
        week = self._weeks.get(key)
        if week is None:
            hours, days = self._shape(category, signal, now_ms)
            week = self._weeks[key] = [hour * day for day in days for hour in hours]
        return lambda at: week[(at // HOUR_MS + _WEEK_OFFSET_HOURS) % 168]

    def factor(self, category: str | None, signal: int, window_start: int, *, now_ms: int) -> float:
        """Seasonal factor of the window starting at ``window_start`` (mean 1 over a week)."""
        self._refresh(now_ms)
        key = (category, signal, window_start)
        value = self._factors.get(key)
        if value is None:
            value = self._factors[key] = self._window_factor(category, signal, window_start, now_ms)
        return value

    def _window_factor(
        self, category: str | None, signal: int, window_start: int, now_ms: int
    ) -> float:
        length = self.window_ms
        if length >= WEEK_MS:
            return 1.0
        hours, days = self._shape(category, signal, now_ms)
        if length >= DAY_MS:
            n = length // DAY_MS
            first = day_of_week(window_start)
            return sum(days[(first + i) % 7] for i in range(n)) / n
        day = days[day_of_week(window_start)]
        if length <= HOUR_MS:
            return hours[hour_of_day(window_start)] * day
        n = max(1, length // HOUR_MS)
        first = hour_of_day(window_start)
        return day * sum(hours[(first + i) % 24] for i in range(n)) / n

    def state(self) -> dict[str, object]:
        """Picklable state (for the shared snapshot)."""
        return {"profiles": self._profiles, "global": self._global}

    def load(self, state: dict[str, object]) -> None:
        profiles = state.get("profiles")
        shop = state.get("global")
        if isinstance(profiles, dict) and isinstance(shop, dict):
            self._profiles = profiles
            self._global = shop
            self._stamp = -1
