"""The live check: is a series' live span ahead of its baseline by more than noise?

A span is the previous window plus the elapsed part of the current one, so a surge that
starts late in a window is judged on more than a sliver. Three bars, all per policy
(SKU, category, signal, with global defaults):

* ``min_volume``: enough volume to matter;
* ``margin``: volume at least ``(1 + margin) x`` the expectation;
* ``evidence``: the chance of that much by noise alone below a threshold. The count is
  negative binomial around the expectation: Poisson, widened by the series' own
  dispersion (bulky orders, intermittent demand) and by the uncertainty of its level
  (wide for a young series).

Volume counts *distinct shoppers*, not rows (:meth:`app.core.series.Cell.effective`):
one shopper adding a SKU forty times, a bot or a card tester counts about once. The
expectation is lifted when the rest of the SKU's category runs ahead by the same factor
(:func:`category_factor`): a whole category's weekend is normal demand, not a surge.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from typing import NamedTuple

from app.core.evidence import upper_tail
from app.core.policy import Policy, Thresholds
from app.core.routing import ALL_REGIONS, excess_beyond_noise, route
from app.core.series import Series
from app.core.state import (
    SHOP,
    SIGNALS,
    EngineConfig,
    SharedState,
    SkuState,
    model_name,
)
from app.core.triggers import SURGE_REASON
from app.core.windows import CLOSED_FIELDS, Live


class SpanVolume(NamedTuple):
    """A series' live span: volumes, expectation and how many windows it covers."""

    #: Units scaled by the share of distinct shoppers.
    effective: float
    #: Units as counted.
    units: float
    #: Baseline expectation of the span.
    expected: float
    #: Windows the span covers (1 + elapsed share of the current one, or the share alone).
    span: float
    #: Distinct shoppers in the span.
    shoppers: int
    #: Baseline of the current window (whole window).
    per_window: float
    #: Event time from the span's first event to its last.
    covered_ms: int = 0


class Assessment(NamedTuple):
    """A span that passed all three bars."""

    region: str
    observed: float
    expected: float
    forecast: float
    span: float
    shoppers: int
    model: str


def category_factor(
    category: SpanVolume, sku: SpanVolume, *, cap: float, min_expected: float
) -> float:
    """How far the rest of the category runs ahead of its own baseline (1 if not ahead).

    The SKU's own volume is left out so that its surge cannot lift its own bar.

    >>> rest_up = SpanVolume(300, 300, 150, 1.5, 0, 100)  # category 300 vs 150 expected
    >>> sku = SpanVolume(30, 30, 10, 1.5, 0, 6)
    >>> round(category_factor(rest_up, sku, cap=3, min_expected=10), 3)  # (300-30)/(150-10)
    1.929
    >>> category_factor(SpanVolume(5, 5, 4, 1.5, 0, 3), sku, cap=3, min_expected=10)
    1.0
    """
    rest_expected = category.expected - sku.expected
    if rest_expected < min_expected:
        return 1.0
    rest = category.units - sku.units
    return min(max(rest / rest_expected, 1.0), cap)


def clears_volume(span: SpanVolume, *, lift: float, rules: Thresholds) -> bool:
    """Whether the span clears the two cheap bars: ``min_volume`` and the margin.

    >>> from app.core.policy import Thresholds
    >>> rules = Thresholds(margin=0.3, min_volume=10, evidence=2e-6, units_per_event=1)
    >>> clears_volume(SpanVolume(27, 27, 20, 1.5, 27, 13.3), lift=1, rules=rules)
    True
    >>> clears_volume(SpanVolume(25, 25, 20, 1.5, 25, 13.3), lift=1, rules=rules)
    False
    """
    observed = span.effective
    return observed >= rules.min_volume and observed >= (1.0 + rules.margin) * (
        span.expected * lift
    )


def chance(observed: float, expected: float, *, dispersion: float, relative_error: float) -> float:
    """The chance of ``observed`` or more by noise alone, around ``expected``.

    Negative binomial: Poisson widened by the series' dispersion and by the relative
    error of its level. Smaller for a larger count, larger for a larger expectation
    (checked over a wide grid of counts, expectations, dispersions and errors wherever the
    chance is below 1 %), which the live check's bounds rely on.

    >>> round(chance(22, 10.0, dispersion=1.0, relative_error=0.0), 4)  # plain Poisson
    0.0007
    >>> chance(22, 10.0, dispersion=2.0, relative_error=0.1) > 0.0007  # wider
    True
    """
    extra = (dispersion - 1.0) * expected + (relative_error * expected) ** 2
    return upper_tail(observed, expected, extra)


def assess(
    span: SpanVolume,
    *,
    region: str,
    lift: float,
    dispersion: float,
    relative_error: float,
    rules: Thresholds,
    model: str,
    evidence: float | None = None,
) -> Assessment | None:
    """The span's assessment if it clears ``min_volume``, the margin and the evidence.

    ``evidence`` overrides the policy's bar (it is split between the spans tested).

    >>> from app.core.policy import Thresholds
    >>> rules = Thresholds(margin=0.3, min_volume=10, evidence=2e-6, units_per_event=1)
    >>> steady = SpanVolume(22, 22, 20, 1.5, 22, 13.3)
    >>> assess(steady, region="east", lift=1, dispersion=1, relative_error=0.1,
    ...        rules=rules, model="seasonal") is None
    True
    >>> surge = SpanVolume(70, 70, 20, 1.5, 70, 13.3)
    >>> assess(surge, region="east", lift=1, dispersion=1, relative_error=0.1,
    ...        rules=rules, model="seasonal").observed
    70
    >>> assess(surge, region="east", lift=3, dispersion=1, relative_error=0.1,
    ...        rules=rules, model="seasonal") is None  # the whole category is up x3
    True
    """
    if not clears_volume(span, lift=lift, rules=rules):
        return None
    observed = span.effective
    expected = span.expected * lift
    bar = rules.evidence if evidence is None else evidence
    if chance(observed, expected, dispersion=dispersion, relative_error=relative_error) >= bar:
        return None
    return Assessment(
        region, observed, expected, span.per_window * lift, span.span, span.shoppers, model
    )


def span_volume(
    series: Series,
    season: Callable[[int], float],
    *,
    start: int,
    elapsed: float,
    windows: int,
    window_ms: int,
) -> SpanVolume:
    """Volume and expectation of a live span of ``windows`` windows ending with the current.

    ``windows - 1`` whole windows before the window starting at ``start``, and the
    ``elapsed`` share of that one. Open cells and kept closed windows give the volume; a
    window with no events adds only its expectation (``level x season(window start)``).

    >>> from app.core.windows import Cell
    >>> s = Series(upto=0); s.level, s.n = 10.0, 100
    >>> cell, _ = s.cell(600)
    >>> for i in range(30):
    ...     cell.add(1.0, f"u{i}", 600 + i)
    >>> v = span_volume(s, lambda at: 1.0, start=600, elapsed=0.5, windows=3, window_ms=300)
    >>> v.units, v.expected, v.span  # 2 idle windows + half of this one
    (30.0, 25.0, 2.5)
    """
    (volume,) = span_volumes(
        series, season, start=start, elapsed=elapsed, lengths=(windows,), window_ms=window_ms
    )
    return volume


def span_volumes(
    series: Series,
    season: Callable[[int], float],
    *,
    start: int,
    elapsed: float,
    lengths: tuple[int, ...],
    window_ms: int,
) -> list[SpanVolume]:
    """:func:`span_volume` for several span lengths (ascending) in one pass back in time."""
    live = series.live
    level = series.level
    factor = season(start)
    expected = level * factor * elapsed
    effective = units = 0.0
    # Sums of counts and event times stay exact as floats (below 2^53): the ring's type.
    shoppers = 0.0
    first = float(2**62)
    last = -float(2**62)
    cells = live.cells if live is not None else {}
    # Kept closed windows: a flat ring, CLOSED_FIELDS doubles a window (see Live).
    ring = live.ring if live is not None else None
    slots = len(ring) // CLOSED_FIELDS if ring is not None else 0
    cell = cells.get(start)
    if cell is not None:
        effective, units, shoppers = cell.effective(), float(cell.units), float(cell.distinct())
        first, last = float(cell.first_ts), float(cell.last_ts)
    elif ring is not None and ring[at := start // window_ms % slots * CLOSED_FIELDS] == start:
        # judged after its window closed
        effective, units, shoppers = ring[at + 1], ring[at + 2], ring[at + 6]
        expected = ring[at + 3] * elapsed
        first, last = ring[at + 4], ring[at + 5]
    out: list[SpanVolume] = []
    per_window = level * factor
    back = 1
    reach = series.n + 1  # windows before the series began are not expected to have sold
    for windows in lengths:
        while back < min(windows, reach):
            at = start - back * window_ms
            back += 1
            cell = cells.get(at)
            if cell is not None:
                expected += level * season(at)
                effective += cell.effective()
                units += cell.units
                shoppers += cell.distinct()
                first, last = min(first, cell.first_ts), max(last, cell.last_ts)
                continue
            if ring is not None and ring[slot := at // window_ms % slots * CLOSED_FIELDS] == at:
                expected += ring[slot + 3]
                effective += ring[slot + 1]
                units += ring[slot + 2]
                shoppers += ring[slot + 6]
                if (edge := ring[slot + 4]) < first:
                    first = edge
                if (edge := ring[slot + 5]) > last:
                    last = edge
            else:  # nothing sold in that window: only its expectation counts
                expected += level * season(at)
        out.append(
            SpanVolume(
                effective,
                units,
                expected,
                min(windows, reach) - 1 + elapsed,
                int(shoppers),
                per_window,
                int(max(last - first, 0)),
            )
        )
    return out


def kept_units(live: Live) -> float:
    """Units of every open cell and kept closed window: at least any live span's.

    One sum over what the series holds, no lookups by window: the long tail's check ends
    on it (a slow mover's kept windows hold less than ``min_volume`` together).

    >>> from app.core.windows import Cell, Closed
    >>> live = Live()
    >>> live.remember(600, Closed(2.0, 3.0, 1.5, 610, 690, 2), slots=3, window_ms=100)
    >>> live.cells[900] = Cell(units=4.0)
    >>> kept_units(live)
    7.0
    """
    units = sum(cell.units for cell in live.cells.values())
    if live.ring is not None:
        units += sum(live.ring[2::CLOSED_FIELDS])  # empty slots hold 0
    return units


def span_units(live: Live, start: int, window_ms: int, windows: int) -> float:
    """Units of a live span, without any arithmetic beyond sums (the cheap first filter).

    >>> from app.core.windows import Live
    >>> span_units(Live(), 600, 300, 3)
    0.0
    """
    cells, ring = live.cells, live.ring
    slots = len(ring) // CLOSED_FIELDS if ring is not None else 0
    units = 0.0
    for back in range(windows):  # the window at ``start`` included, open or closed
        at = start - back * window_ms
        cell = cells.get(at)
        if cell is not None:
            units += cell.units
        elif ring is not None and ring[slot := at // window_ms % slots * CLOSED_FIELDS] == at:
            units += ring[slot + 2]
    return units


#: Relative slack on the span bounds: their sums add in another order than
#: :func:`span_volumes` does, so they may differ from its sums in the last bits.
BOUND_SLACK = 1e-9


def kept_below(live: Live, floor: float) -> bool:
    """Whether the series' kept windows hold less than ``floor`` units together (up to
    :data:`BOUND_SLACK`), so that none of its live spans can reach ``floor``."""
    return kept_units(live) * (1.0 + BOUND_SLACK) < floor


def _back_sums(
    series: Series,
    live: Live,
    season: Callable[[int], float],
    *,
    start: int,
    lengths: tuple[int, ...],
    window_ms: int,
) -> tuple[float, tuple[float, ...], tuple[float, ...]]:
    """The current window's whole expectation, and per span length the expectation of the
    whole windows before ``start`` and the units of those among them already closed."""
    level = series.level
    cells, ring = live.cells, live.ring
    slots = len(ring) // CLOSED_FIELDS if ring is not None else 0
    expected = units = 0.0
    expectations: list[float] = []
    closed_units: list[float] = []
    back = 1
    reach = series.n + 1  # as span_volumes: windows before the series began are not expected
    for windows in lengths:
        while back < min(windows, reach):
            at = start - back * window_ms
            back += 1
            if (
                at not in cells
                and ring is not None
                and ring[slot := at // window_ms % slots * CLOSED_FIELDS] == at
            ):
                expected += ring[slot + 3]
                units += ring[slot + 2]
            else:  # open (its units are added when asked) or nothing sold
                expected += level * season(at)
        expectations.append(expected)
        closed_units.append(units)
    return level * season(start), tuple(expectations), tuple(closed_units)


def span_bounds(
    series: Series,
    season: Callable[[], Callable[[int], float]],
    *,
    start: int,
    elapsed: float,
    lengths: tuple[int, ...],
    window_ms: int,
    version: int,
) -> list[tuple[float, float]]:
    """Per span length, units at least the span's effective volume and an expectation at
    most its own (up to :data:`BOUND_SLACK`): what :func:`span_volumes` would give, cheaply.

    The sums over the whole windows before ``start`` depend only on what is folded and
    closed (``n``, ``upto``, the newest closed window), ``start`` and the ``version`` of
    the seasonal factors (a number that changes when they may); they are kept on the
    series' :class:`Live` and computed again when one of those moves. A check of a window
    already checked adds only the open cells' units: the replay checks each touched series
    ten times a window, the worker once a batch. ``season`` is called (for the factors)
    only when the sums are.

    >>> from app.core.windows import Cell
    >>> s = Series(upto=0); s.level, s.n = 10.0, 100
    >>> cell, _ = s.cell(600)
    >>> for i in range(30):
    ...     cell.add(1.0, f"u{i}", 600 + i)
    >>> bounds = span_bounds(s, lambda: lambda at: 1.0, start=600, elapsed=0.5,
    ...                      lengths=(1, 3), window_ms=300, version=1)
    >>> bounds  # the same units and expectations as span_volume
    [(30.0, 5.0), (30.0, 25.0)]
    >>> cell.add(2.0, "u0", 650)
    >>> span_bounds(s, lambda: 1 / 0, start=600, elapsed=0.5,  # kept: season not called
    ...             lengths=(1, 3), window_ms=300, version=1)[1]
    (32.0, 25.0)
    """
    live = series.live
    if live is None:
        return [(0.0, 0.0)] * len(lengths)
    memo = live.memo
    if (
        memo is None
        or memo[0] != start
        or memo[1] != series.n
        or memo[2] != series.upto
        or memo[3] != live.closed_start
        or memo[4] != version
    ):
        per_window, expectations, closed_units = _back_sums(
            series, live, season(), start=start, lengths=lengths, window_ms=window_ms
        )
        # One flat array of doubles (what the sums hang on, then the sums), not tuples of
        # boxed floats: about 180 instead of 630 bytes per series checked.
        memo = live.memo = array(
            "d",
            (
                start,
                series.n,
                series.upto,
                live.closed_start,
                version,
                per_window,
                *expectations,
                *closed_units,
            ),
        )
    count = len(lengths)
    cells, ring = live.cells, live.ring
    expected = memo[5] * elapsed
    units = 0.0
    cell = cells.get(start)
    if cell is not None:
        units = cell.units
    elif ring is not None and ring[at := live.slot_of(start)] == start:
        units, expected = ring[at + 2], ring[at + 3] * elapsed  # judged after it closed
    opened = [units] * len(lengths)
    for at, other in cells.items():  # open windows before ``start`` (late events may come)
        back = (start - at) // window_ms
        if back >= 1:
            for position, windows in enumerate(lengths):
                if back < windows:
                    opened[position] += other.units
    return [
        (opened[position] + memo[6 + count + position], expected + memo[6 + position])
        for position in range(count)
    ]


def relative_error(
    series: Series, *, prior: float, prior_windows: int, floor: float, alpha: float
) -> float:
    """Relative standard deviation of a series' level.

    Three parts: the sampling error of a weighted mean over the windows it has seen
    (dispersion / (level x effective windows)), a wide prior that fades as nonzero windows
    come in (gone after ``prior_windows`` of them), and a floor for what the seasonal
    shape gets wrong.

    >>> s = Series(upto=0); s.level, s.n, s.nonzero = 20.0, 1000, 1000
    >>> round(relative_error(s, prior=0.5, prior_windows=6, floor=0.1, alpha=0.01), 4)
    0.1012
    """
    effective_windows = min(series.n, 2.0 / alpha) or 1.0
    sampling = series.dispersion() / (max(series.level, 1e-9) * effective_windows)
    fade = max(0.0, 1.0 - series.nonzero / prior_windows) if prior_windows > 0 else 0.0
    return math.sqrt(min(sampling, 1.0) + (prior * fade) ** 2 + floor**2)


class SurgeFound(NamedTuple):
    """What the live check found: the span that passed, and where the stock should go."""

    rules: Thresholds
    seen: Assessment
    region: str
    warehouse: str
    #: The whole SKU's live spans (every region), shortest first, each with the lift of
    #: the shop or category over it: what the order is sized on (``app.core.decisions``).
    whole: tuple[tuple[SpanVolume, float], ...]
    #: The position in ``whole`` of the span length that fired.
    fired: int


class LiveCheck:
    """Runs the live check of one (SKU, signal) window over the engine's shared state.

    It shares the engine's SKU states, category totals, seasonality and clock (the same
    objects, not copies); it marks the series of a surge it finds (or of one still in
    its cooldown) as surging, so their windows teach the baseline at a reduced weight.
    """

    def __init__(self, policy: Policy, config: EngineConfig, shared: SharedState) -> None:
        self.policy = policy
        self.config = config
        self._clock, self._season, self._skus, self._categories = shared
        self._alpha = config.alpha()
        self._span_lengths = config.span_lengths()
        self._shares = config.evidence_shares()

    def check(self, sku: str, index: int, *, start: int) -> SurgeFound | None:
        """Check one (SKU, signal) window a batch touched: the surge, if the evidence holds.

        Spans of a few lengths ending with that window are tested, shortest first (a sharp
        surge fires on the shortest, a slow-building one on a longer span with more
        evidence); the evidence bar is split between them. A window the clock has passed
        (a batch spanning several windows, a replayed backlog) is judged whole.
        """
        state = self._skus.get(sku)
        if state is None:
            return None
        cfg = self.config
        signal = SIGNALS[index]
        clock = self._clock.now
        if state.ledger is not None and state.ledger.in_cooldown(SURGE_REASON[signal].value, clock):
            # The surge that fired is still on: its windows must not teach the baseline
            # (nor its dispersion) at full weight, or a launch that runs for a day lifts
            # its own bar and the next trigger never comes.
            for (_, at), kept in state.series.items():
                if at == index and kept.live is not None:
                    kept.live.surging = True
            return None
        rules = self.policy.thresholds(sku, state.category, signal)
        length = cfg.window_ms
        whole = state.whole(index)
        if whole is None or whole.live is None or whole.n < cfg.min_history_windows:
            return None
        spans = self._span_lengths
        if self._too_little(whole.live, start, rules):
            return None  # the long tail: too little volume to matter, whatever the baseline
        elapsed = min(max((clock - start) / length, cfg.min_elapsed_fraction), 1.0)
        if not self._may_surge(state, index, whole, rules, start=start, elapsed=elapsed):
            return None  # no span of any series clears the volume bars: most checks end here
        # The volume must have come in over this much event time (not one instant's burst).
        persistence = min(cfg.persistence_ms, length // 2)
        several = len(state.regions) > 1
        whole_spans = self._spans(whole, state.category, index, start=start, elapsed=elapsed)
        # A region whose longest span sold less than min_volume cannot pass on any span
        # (effective volume <= units): its spans are only needed for routing, later.
        region_spans = {
            region: (
                self._spans(series, state.category, index, start=start, elapsed=elapsed)
                if several
                else whole_spans
            )
            for region in state.regions
            if (series := state.series.get((region, index))) is not None
            and (
                not several
                or (series.live is not None and not self._too_little(series.live, start, rules))
            )
        }
        group_spans: list[list[SpanVolume]] | None = None  # only once something stands out
        for position in range(len(spans)):
            whole_span = whole_spans[position]
            if whole_span.effective < rules.min_volume or whole_span.covered_ms < persistence:
                continue  # too little, or one instant's burst: a longer span may hold more
            by_region = {region: spans_[position] for region, spans_ in region_spans.items()}
            evidence = rules.evidence * self._shares[position]
            found = self._assess_regions(
                state, index, whole, whole_span, by_region, lift=1.0, rules=rules, evidence=evidence
            )
            if not found:
                continue
            # The whole shop or the whole category moving is normal: it lifts the bar (and a
            # higher bar passes nothing the plain one did not, so it is computed only now).
            if group_spans is None:
                group_spans = [
                    self._spans(total, name, index, start=start, elapsed=elapsed)
                    for name in (SHOP, state.category)
                    if name is not None
                    and (total := self._categories.get((name, index))) is not None
                ]
            lift = self._lift(group_spans, position, whole_span)
            if lift > 1.0:
                found = self._assess_regions(
                    state,
                    index,
                    whole,
                    whole_span,
                    by_region,
                    lift=lift,
                    rules=rules,
                    evidence=evidence,
                )
            if found:
                break
        else:
            return None
        for region in found:
            series = whole if region == ALL_REGIONS else state.series[(region, index)]
            if series.live is not None:
                series.live.surging = True
        excess = {}
        for region in state.regions:  # every region the SKU sells in, for the routing
            span = by_region.get(region)
            if span is None:
                series = state.series.get((region, index))
                if series is None:
                    continue
                span = self._spans(series, state.category, index, start=start, elapsed=elapsed)[
                    position
                ]
            excess[region] = excess_beyond_noise(span.units, span.expected * lift)
        region, warehouse = route(excess, self.policy)
        chosen = (
            found.get(region)
            or found.get(ALL_REGIONS)
            or max(found.values(), key=lambda a: a.observed - a.expected)
        )
        whole_lifted = tuple(
            (span, self._lift(group_spans or [], at, span)) for at, span in enumerate(whole_spans)
        )
        return SurgeFound(rules, chosen, region, warehouse, whole_lifted, position)

    def bounds_version(self, category: str | None) -> int:
        """What the seasonal factors of a SKU's spans are (:func:`span_bounds`' ``version``):
        their generation, and whether the SKU has a category yet (it gets one at most once).
        """
        return 2 * self._season.generation(self._clock.now) + (category is None)

    def _too_little(self, live: Live, start: int, rules: Thresholds) -> bool:
        """Whether the series' longest live span sold less than ``min_volume``."""
        floor = rules.min_volume
        if kept_below(live, floor):
            return True
        return span_units(live, start, self.config.window_ms, self._span_lengths[-1]) < floor

    def _may_surge(
        self,
        state: SkuState,
        index: int,
        whole: Series,
        rules: Thresholds,
        *,
        start: int,
        elapsed: float,
    ) -> bool:
        """Whether any span could pass: the SKU's span reaches ``min_volume`` and a region's
        span (or the whole SKU's, when it sells in several) clears all three bars with no
        lift, judged on the bounds of :func:`span_bounds` (more units, less expected: an
        easier pass). Necessary for :meth:`check` to find anything (a lift only raises
        the bar), so a check that ends here would have found nothing.
        """
        cfg = self.config
        category = state.category
        version = self.bounds_version(category)

        def season() -> Callable[[int], float]:
            return self._season.lookup(category, index, now_ms=self._clock.now)

        def bounds(series: Series) -> list[tuple[float, float]]:
            return span_bounds(
                series,
                season,
                start=start,
                elapsed=elapsed,
                lengths=self._span_lengths,
                window_ms=cfg.window_ms,
                version=version,
            )

        floor = rules.min_volume
        margin = 1.0 + rules.margin
        slack = 1.0 + BOUND_SLACK
        whole_bounds = bounds(whole)
        candidates: list[tuple[Series, list[tuple[float, float]] | None]] = [(whole, whole_bounds)]
        if len(state.regions) > 1:
            # A region whose kept windows hold less than the floor cannot pass on any span
            # (its spans' units are less): its bounds are never computed. The others' are
            # computed when a position first needs them.
            candidates.extend(
                (series, None)
                for region in state.regions
                if (series := state.series.get((region, index))) is not None
                and series.n >= cfg.min_history_windows
                and series.live is not None
                and not kept_below(series.live, floor)
            )
        for position, (whole_units, _) in enumerate(whole_bounds):
            if whole_units * slack < floor:
                continue
            bar = rules.evidence * self._shares[position]
            for at, (series, known) in enumerate(candidates):
                spans = known if known is not None else bounds(series)
                if known is None:
                    candidates[at] = (series, spans)
                units, expected = spans[position]
                units *= slack
                if (
                    units >= floor
                    and units >= margin * expected
                    and chance(
                        units,
                        expected,
                        dispersion=series.dispersion(),
                        relative_error=self._relative_error(series),
                    )
                    < bar
                ):
                    return True
        return False

    def _lift(self, group_spans: list[list[SpanVolume]], at: int, span: SpanVolume) -> float:
        """How far the shop or the SKU's category runs ahead over the SKU's span ``at``."""
        lift = 1.0
        for group in group_spans:
            lift = max(
                lift,
                category_factor(
                    group[at],
                    span,
                    cap=self.config.category_factor_cap,
                    min_expected=self.config.category_min_expected,
                ),
            )
        return lift

    def _spans(
        self, series: Series, category: str | None, index: int, *, start: int, elapsed: float
    ) -> list[SpanVolume]:
        """The series' live spans of every tested length, shortest first."""
        return span_volumes(
            series,
            self._season.lookup(category, index, now_ms=self._clock.now),
            start=start,
            elapsed=elapsed,
            lengths=self._span_lengths,
            window_ms=self.config.window_ms,
        )

    def _assess_regions(
        self,
        state: SkuState,
        index: int,
        whole: Series,
        whole_span: SpanVolume,
        by_region: dict[str, SpanVolume],
        *,
        lift: float,
        rules: Thresholds,
        evidence: float,
    ) -> dict[str, Assessment]:
        """Each region's span, and the whole SKU's when it sells in several, that surges."""
        found: dict[str, Assessment] = {}
        for region, span in by_region.items():
            series = state.series[(region, index)]
            seen = self._assess(series, region, span, lift=lift, rules=rules, evidence=evidence)
            if seen is not None:
                found[region] = seen
        if len(state.regions) > 1:
            seen = self._assess(
                whole, ALL_REGIONS, whole_span, lift=lift, rules=rules, evidence=evidence
            )
            if seen is not None:
                found[ALL_REGIONS] = seen
        return found

    def _assess(
        self,
        series: Series,
        region: str,
        span: SpanVolume,
        *,
        lift: float,
        rules: Thresholds,
        evidence: float,
    ) -> Assessment | None:
        cfg = self.config
        if series.n < cfg.min_history_windows or not clears_volume(span, lift=lift, rules=rules):
            return None  # (the evidence bar's inputs are computed only past these)
        return assess(
            span,
            region=region,
            lift=lift,
            dispersion=series.dispersion(),
            relative_error=self._relative_error(series),
            rules=rules,
            evidence=evidence,
            model=model_name(series, cfg.min_history_windows),
        )

    def _relative_error(self, series: Series) -> float:
        cfg = self.config
        return relative_error(
            series,
            prior=cfg.prior_relative_error,
            prior_windows=cfg.prior_windows,
            floor=cfg.floor_relative_error,
            alpha=self._alpha,
        )
