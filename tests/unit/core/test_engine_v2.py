"""Decision core v2 (issue 16): shoppers not rows, a category moving together is normal,
stockouts order a backlog not the cap, idle windows fold in closed form, and a window
boundary costs work only for the series that had events."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import pytest

from app.core import Engine, EngineConfig, Policy, parse_policy
from app.core.live_check import SurgeFound
from app.core.series import Series
from app.core.units import DAY_MS
from app.events.model import CartAddEvent, OrderEvent, OrderStatus, SearchEvent, ShopEvent

MINUTE = 60_000
T0 = 1_699_999_200_000


def _cart_run(engine: Engine, burst: Callable[[int, int], list[ShopEvent]]) -> list[tuple]:
    """40 one-minute windows, 4 batches of 15 s each: 20 cart adds a window from 20
    shoppers, plus ``burst(window, batch)`` from window 30 on. Returns what fired."""
    fired = []
    for w in range(40):
        start = T0 + w * MINUTE
        for q in range(4):
            at = start + q * 15_000
            batch: list[ShopEvent] = [
                CartAddEvent(at + i * 3_000, "A", user=f"u{w}-{q}-{i}") for i in range(5)
            ]
            if w >= 30:
                batch += burst(w, q)
            batch.sort(key=lambda event: event.ts)
            fired += [(w, t.reason.value, t.observed) for t in engine.process(batch).triggers]
    return fired


def test_one_shopper_adding_a_sku_sixty_times_a_window_never_fires(
    make_engine: Callable[..., Engine],
) -> None:
    def bot(w: int, q: int) -> list[ShopEvent]:  # 60 adds a window, one shopper, spread out
        return [
            CartAddEvent(T0 + w * MINUTE + q * 15_000 + i * 1_000, "A", user="bot")
            for i in range(15)
        ]

    assert _cart_run(make_engine(), bot) == []  # ten windows of 80 rows vs 20: counts as 21

    # The same rows from 60 different shoppers (or from anonymous visitors, each of whom
    # counts as one) are a surge: the bars are not simply out of reach.
    def crowd(w: int, q: int) -> list[ShopEvent]:
        return [
            CartAddEvent(T0 + w * MINUTE + q * 15_000 + i * 1_000, "A", user=f"c{w}-{q}-{i}")
            for i in range(15)
        ]

    def anonymous(w: int, q: int) -> list[ShopEvent]:
        return [CartAddEvent(T0 + w * MINUTE + q * 15_000 + i * 1_000, "A") for i in range(15)]

    for burst in (crowd, anonymous):
        fired = _cart_run(make_engine(), burst)
        assert [(w, reason) for w, reason, _ in fired] == [(30, "cart_surge")]
        assert fired[0][2] >= 50  # distinct shoppers, not one


GAMES = [f"G-{k}" for k in range(10)]
GIFTS = [f"C-{k}" for k in range(10)]  # the rest of the shop, steady throughout


def _category_run(engine: Engine, factor: dict[str, int]) -> list[tuple[int, str, str]]:
    """70 one-minute windows of 20 orders per SKU from distinct shoppers, 4 batches a
    window; SKUs in ``factor`` sell that many times more in windows 60-69."""
    fired = []
    for w in range(70):
        start = T0 + w * MINUTE
        for q in range(4):
            batch: list[ShopEvent] = []
            for sku in GAMES + GIFTS:
                count = 5 * (factor.get(sku, 1) if w >= 60 else 1)
                batch += [
                    OrderEvent(
                        start + q * 15_000 + i * (15_000 // count),
                        sku,
                        f"{sku}-{w}-{q}-{i}",
                        OrderStatus.PAID,
                        region="east",
                        category="games" if sku in GAMES else "gift-cards",
                    )
                    for i in range(count)
                ]
            batch.sort(key=lambda event: event.ts)
            fired += [(w, t.sku, t.reason.value) for t in engine.process(batch).triggers]
    return fired


def test_a_whole_category_rising_together_fires_nothing_one_sku_alone_fires(
    make_engine: Callable[..., Engine],
) -> None:
    # Ten game keys sell twice as much for ten windows (a weekend): normal demand.
    assert _category_run(make_engine(), dict.fromkeys(GAMES, 2)) == []
    # One of them alone four times as much, the other nine steady: a surge, at once.
    assert _category_run(make_engine(), {"G-3": 4}) == [(60, "G-3", "order_surge")]


def test_a_surge_s_spans_for_sizing_carry_the_category_s_lift_over_each(
    make_engine: Callable[..., Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The whole category sells twice as much from window 60, G-3 six times as much: G-3
    # surges against its category. A later trigger is sized on a longer span of the whole
    # SKU, so each span carries the lift the category had over that span, not the lift
    # of the span that fired (the category's doubling is a sliver of the longest span).
    engine = make_engine()
    found: list[SurgeFound] = []
    check = engine._check.check

    def spy(sku: str, index: int, *, start: int) -> SurgeFound | None:
        result = check(sku, index, start=start)
        if result is not None:
            found.append(result)
        return result

    monkeypatch.setattr(engine._check, "check", spy)
    factor = dict.fromkeys(GAMES, 2) | {"G-3": 6}
    assert _category_run(engine, factor) == [(60, "G-3", "order_surge")]
    first = found[0]
    lifts = [lift for _, lift in first.whole]
    # Fired on the current window alone (the short spans' share of the evidence bar is
    # small, so it takes a later batch of the window than the even split did), where the
    # other nine games run x2; over longer spans less and less.
    assert len(lifts) == 4 and first.fired == 0
    assert lifts[0] == pytest.approx(2.0, abs=0.05)
    assert lifts[0] > lifts[1] > lifts[2] > lifts[3] > 1.0
    spans = [span.span for span, _ in first.whole]
    # the longest span: 23 ordinary windows and the doubled part of this one
    rest = 9 * 20 * (23 + 2 * (spans[-1] - 23)) / (9 * 20 * spans[-1])
    assert lifts[-1] == pytest.approx(rest, abs=0.01) and lifts[-1] < 1.05


STOCKOUT_POLICY = """
suppliers: {S-1: {lead_time_hours: 6, capacity_per_day: 1000000}}
defaults: {supplier: S-1, pack_size: 1, min_order: 1, max_order: 5000}
"""


@pytest.mark.parametrize("cover_hours", [1.0, 5 / 60])
def test_one_failed_order_against_a_steady_86_a_window_orders_a_short_cover_not_the_cap(
    cover_hours: float,
) -> None:
    window = EngineConfig().window_ms  # 5 minutes
    engine = Engine(parse_policy(STOCKOUT_POLICY), EngineConfig(stockout_cover_hours=cover_hours))
    rng = np.random.default_rng(16)
    for w in range(24):  # two hours of about 86 paid orders a window
        count = int(rng.poisson(86))
        engine.process(
            [
                OrderEvent(
                    T0 + w * window + i * (window // count), "A", f"o{w}-{i}", OrderStatus.PAID
                )
                for i in range(count)
            ]
        )
    failed = OrderEvent(
        T0 + 24 * window + 10_000, "A", "f1", OrderStatus.PAYMENT_FAILED, reason="out_of_stock"
    )
    (trigger,) = engine.process([failed]).triggers
    forecast, error = engine.forecast("A"), engine.forecast_error("A")
    assert forecast is not None and error is not None
    assert 80 < forecast[0] < 92 and trigger.forecast == pytest.approx(forecast[0], abs=1e-3)
    # The backlog (1) + the cover's expected demand + one standard deviation of it.
    cover_windows = cover_hours * 60 / 5
    need = 1 + forecast[0] * cover_windows + error * math.sqrt(cover_windows)
    assert trigger.quantity == math.ceil(need)
    assert not trigger.capped_by_capacity and trigger.failed_orders == 1
    # An hour's cover is about 12 windows of demand; five minutes' about one.
    assert trigger.quantity < 5_000 / 4
    assert forecast[0] * cover_windows <= trigger.quantity <= forecast[0] * (cover_windows + 1)


def _config_alphas() -> list[tuple[float, float]]:
    return [
        (config.alpha(), config.forecast_alpha())
        for config in (EngineConfig(), EngineConfig(window_ms=DAY_MS))
    ]


def _history(n: int, alpha: float, fast: float) -> Series:
    series = Series(upto=0)
    for i in range(n):
        series.observe(float(10 + (i * 7) % 5), alpha=alpha, fast=fast)
    return series


@pytest.mark.parametrize(("alpha", "fast"), _config_alphas())
@pytest.mark.parametrize(
    ("history", "idle", "tolerance"),
    [
        (3, 5, 1e-6),  # inside the running-mean phase (about 1 / alpha windows)
        (20, 100, 1e-6),
        (20, 500, 1e-6),  # starts inside, ends after it
        (1_000, 1, 1e-9),  # after it: a plain exponential decay
        (1_000, 7, 1e-9),
        (1_000, 5_000, 1e-9),
    ],
)
def test_folding_k_idle_windows_at_once_equals_folding_them_one_by_one(
    alpha: float, fast: float, history: int, idle: int, tolerance: float
) -> None:
    at_once = _history(history, alpha, fast)
    one_by_one = copy.deepcopy(at_once)
    before = at_once.level
    forecasts = []  # the published forecast of each idle window, folded window by window
    for _ in range(idle):
        forecasts.append(one_by_one.recent)
        one_by_one.observe(0.0, alpha=alpha, fast=fast)
    stretch = at_once.skipped_sum(idle, alpha=fast)
    at_once.skip(idle, alpha=alpha, fast=fast)
    assert at_once.n == one_by_one.n == history + idle
    assert at_once.nonzero == one_by_one.nonzero == history
    assert at_once.level == pytest.approx(one_by_one.level, rel=tolerance)
    assert at_once.recent == pytest.approx(one_by_one.recent, rel=tolerance)
    assert at_once.square == pytest.approx(one_by_one.square, rel=tolerance)
    assert 0 <= at_once.level < before  # idle windows pull the level down
    # The idle stretch's forecast record is the sum of the windows' forecasts: exact after
    # the running-mean phase, a midpoint sum of n / (n + j) inside it (< 1 %).
    fast_phase_over = history >= math.ceil(1 / fast) - 1
    assert stretch == pytest.approx(sum(forecasts), rel=1e-9 if fast_phase_over else 1e-2)


def test_a_window_boundary_closes_only_the_series_that_had_events() -> None:
    engine = Engine(Policy.default(), EngineConfig(window_ms=MINUTE, grace_ms=0))
    known = [f"S-{i:05d}" for i in range(10_000)]
    engine.process([SearchEvent(T0 + i, sku) for i, sku in enumerate(known)])
    drained = 0
    for k in range(10):  # window 0's 10,000 series (+ the shop's total) close in a few calls
        drained += engine.advance(T0 + MINUTE + k).windows_closed
    assert drained == 10_001 and len(engine.skus()) == 10_000

    active = ["S-00007", "S-01234", "S-04242", "S-08000", "S-09999"]
    for w in range(2, 10):
        start = T0 + w * MINUTE
        result = engine.process(
            [SearchEvent(start + i * 1_000, sku, user=f"u{i}") for sku in active for i in range(3)]
        )
        if w == 2:  # window 1 had no events: nothing closes, the five fold their idle window
            assert result.windows_closed == 0
            assert sorted(r.sku for r in result.forecasts if r.actual == 0) == active
            continue
        # The previous window closes for the five SKUs and the shop's search total only.
        assert result.windows_closed == len(active) + 1
        assert sorted((r.sku, r.actual) for r in result.forecasts) == [(s, 3.0) for s in active]
    # The idle 9,995 cost nothing until the end of the replay: then one record each.
    idle = [r for r in engine.flush().forecasts if r.actual == 0]
    assert len(idle) == 10_000 - len(active)
    assert {(r.window_start, r.window_end) for r in idle} == {(T0 + MINUTE, T0 + 9 * MINUTE)}


HOUR = 60 * MINUTE


def _diurnal(hour: float) -> float:
    """A deep daily shape: 0.2x at 04:00, 1.8x at 16:00 (mean 1)."""
    return 1.0 + 0.8 * math.sin((hour - 10.0) / 24.0 * 2.0 * math.pi)


def _long_tail_history(engine: Engine, rng: np.random.Generator, days: int) -> int:
    """``days`` of searches: a busy SKU ``B`` (40 an hour at the mean) carrying the shop's
    daily shape and a long-tail SKU ``L`` (3 an hour), Poisson per minute, every search
    from its own shopper. Returns the time the history ends."""
    end = T0 + days * DAY_MS
    for hour_start in range(T0, end, HOUR):
        shape = _diurnal((hour_start % DAY_MS) / HOUR)
        batch: list[ShopEvent] = []
        for sku, per_hour in (("B", 40.0), ("L", 3.0)):
            for _ in range(int(rng.poisson(per_hour * shape))):
                at = hour_start + int(rng.integers(HOUR))
                batch.append(SearchEvent(at, sku, user=f"{sku}{at}{rng.integers(10**9)}"))
        batch.sort(key=lambda event: event.ts)
        engine.process(batch)
    return end


def test_a_long_tail_launch_fires_on_searches_and_a_lone_shopper_does_not() -> None:
    """12 shoppers searching a SKU that gets 3 searches an hour, spread over 40 minutes of
    a quiet morning, is a launch: it fires before any order (the first v2's floor of 50
    searches waited for far more). The same 12 searches from one shopper fire nothing."""

    def run(users: Callable[[int], str]) -> list[tuple[int, str]]:
        engine = Engine(Policy.default())
        end = _long_tail_history(engine, np.random.default_rng(7), days=3)
        start = end + 8 * HOUR  # 08:00 on day four: the shape says about 0.7x
        fired: list[tuple[int, str]] = []
        for k in range(12):
            at = start + k * 200_000  # one every 3 min 20 s, 40 minutes in all
            triggers = engine.process([SearchEvent(at, "L", user=users(k))]).triggers
            fired += [((at - start) // MINUTE, t.reason.value) for t in triggers]
        return fired

    crowd = run(lambda k: f"fan-{k}")
    assert [reason for _, reason in crowd] == ["search_surge"]
    assert crowd[0][0] <= 40
    assert run(lambda k: "one-fan") == []


def test_a_surge_that_lasts_hours_keeps_firing_after_each_cooldown_and_leaves_the_baseline() -> (
    None
):
    """A launch at 4x for eight hours: the windows inside its cooldowns (when the live check
    is skipped) must not teach the baseline at full weight, or the launch lifts its own
    bar and inflates its dispersion until the next trigger never comes."""
    engine = Engine(Policy.default())  # 5-minute windows, 2-hour cooldown
    rng = np.random.default_rng(3)
    window = 5 * MINUTE

    def searches(start: int, end: int, per_window: float) -> list[ShopEvent]:
        count = int(rng.poisson(per_window * (end - start) / window))
        times = np.sort(rng.integers(start, end, count))
        return [SearchEvent(int(t), "S", user=f"u{int(t)}-{i}") for i, t in enumerate(times)]

    day_end = T0 + 2 * DAY_MS
    for start in range(T0, day_end, 15 * MINUTE):
        engine.process(searches(start, start + 15 * MINUTE, 4.0))
    series = engine._skus["S"].whole(0)
    assert series is not None
    before = series.level
    fired = []
    for start in range(day_end, day_end + 8 * HOUR, MINUTE):
        for trigger in engine.process(searches(start, start + MINUTE, 16.0)).triggers:
            fired.append((trigger.decided_at - day_end) // HOUR)
    assert len(fired) >= 3  # one per cooldown, the first within the hour
    assert fired[0] == 0
    assert series.level < 1.1 * before
    assert series.dispersion() < 1.5
