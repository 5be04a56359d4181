"""Streaming-test fixtures: a tiny stand-in for ``app.core.Engine``, fake records, settings.

It counts events per (sku, region, signal, window), closes windows at the watermark and
emits one ``cart_surge`` trigger per (sku, window) once cart adds reach a threshold. It
honours the Engine surface the streaming layer uses (process, snapshot/restore, shared).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from app.config import Settings
from app.core import StepResult
from app.events import ForecastRecord, ShopEvent, Signal, Tier, Trigger, TriggerReason
from app.streaming.processor import BatchProcessor


class FakeEngine:
    def __init__(self, window_ms: int = 60_000, grace_ms: int = 0, threshold: int = 20) -> None:
        self.window_ms = window_ms
        self.grace_ms = grace_ms
        self.threshold = threshold
        self.watermark = -1
        # sku -> "region|signal|start" -> [count, first_ts]
        self.windows: dict[str, dict[str, list[int]]] = defaultdict(dict)
        self.fired: dict[str, list[str]] = defaultdict(list)
        self.closed: dict[str, list[str]] = defaultdict(list)
        self.process_calls = 0
        self.closing = False  # closes every due window at once
        self.waiting = (0, 0)
        self.close_budgets: list[int | None] = []

    def closes_waiting(self, until_ms: int | None = None) -> tuple[int, int]:
        return self.waiting

    def process(
        self,
        events: Sequence[ShopEvent],
        now_ms: int | None = None,
        *,
        close_budget: int | None = None,
    ) -> StepResult:
        self.process_calls += 1
        self.close_budgets.append(close_budget)
        result = StepResult()
        touched: set[tuple[str, str]] = set()
        for event in events:
            start = event.ts - event.ts % self.window_ms
            if start + self.window_ms + self.grace_ms <= self.watermark:
                result.late += 1
                continue
            key = f"{event.region}|{event.signal.value}|{start}"
            slot = self.windows[event.sku].setdefault(key, [0, event.ts])
            slot[0] += event.qty
            slot[1] = min(slot[1], event.ts)
            result.counted += 1
            result.touched_skus.add(event.sku)
            touched.add((event.sku, key))
            self.watermark = max(self.watermark, event.ts - self.grace_ms)
        for sku, key in sorted(touched):
            region, signal, start = key.split("|")
            count, first = self.windows[sku][key]
            if signal == Signal.CART_ADD and count >= self.threshold:
                if key in self.fired[sku]:
                    continue
                self.fired[sku].append(key)
                result.triggers.append(
                    Trigger(
                        trigger_id=f"{sku}-{key}",
                        sku=sku,
                        region=region,
                        warehouse="WH-central",
                        supplier="S-1",
                        tier=Tier.SECOND,
                        reason=TriggerReason.CART_SURGE,
                        observed=float(count),
                        forecast=1.0,
                        ratio=float(count),
                        margin=0.3,
                        quantity=count,
                        capped_by_capacity=False,
                        window_start=int(start),
                        window_end=int(start) + self.window_ms,
                        lead_time_hours=6.0,
                        model="fake",
                        decided_at=now_ms if now_ms is not None else self.watermark,
                        explanation="fake",
                        first_event_at=first,
                    )
                )
        for sku, windows in self.windows.items():
            for key in sorted(windows):
                region, signal, start = key.split("|")
                end = int(start) + self.window_ms
                if end + self.grace_ms <= self.watermark and key not in self.closed[sku]:
                    self.closed[sku].append(key)
                    result.touched_skus.add(sku)
                    result.windows_closed += 1
                    result.model_updates += 1
                    result.forecasts.append(
                        ForecastRecord(
                            sku=sku,
                            region=region,
                            signal=Signal(signal),
                            window_start=int(start),
                            window_end=end,
                            forecast=0.0,
                            actual=float(windows[key][0]),
                            model="fake",
                        )
                    )
        result.triggers.sort(key=lambda t: t.trigger_id)
        return result

    @property
    def watermark_ms(self) -> int | None:
        return self.watermark if self.watermark >= 0 else None

    def advance(self, watermark_ms: int, now_ms: int | None = None) -> StepResult:
        return self.process([], now_ms=now_ms)

    def snapshot(self, sku: str) -> bytes:
        return orjson.dumps(
            {"windows": self.windows[sku], "fired": self.fired[sku], "closed": self.closed[sku]}
        )

    def restore(self, sku: str, blob: bytes) -> None:
        state: dict[str, Any] = orjson.loads(blob)
        self.windows[sku] = state["windows"]
        self.fired[sku] = state["fired"]
        self.closed[sku] = state["closed"]

    def snapshot_shared(self) -> bytes:
        return orjson.dumps({"watermark": self.watermark})

    def restore_shared(self, blob: bytes) -> None:
        self.watermark = int(orjson.loads(blob)["watermark"])

    def count(self, sku: str, signal: Signal) -> int:
        return sum(
            slot[0] for key, slot in self.windows[sku].items() if key.split("|")[1] == signal
        )


T0 = 1_795_000_000_000  # a fixed wall clock for the tests (2026-11-18)


class FakeClock:
    def __init__(self, now_ms: int = T0) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def settings(signing_key: str) -> Settings:
    return Settings(
        topic_searches="in.searches",
        topic_cart_adds="in.cart-adds",
        topic_orders="in.orders",
        topic_dead_letters="out.dead-letters",
        topic_triggers="out.triggers",
        topic_forecasts="out.forecasts",
        app_id="surge-test",
        snapshot_hmac_key=SecretStr(signing_key),
        window_seconds=60,
        grace_seconds=0,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_processor(settings: Settings, clock: FakeClock) -> Callable[..., BatchProcessor]:
    def make(
        partition_count: Callable[[str], int | None] | None = None, **overrides: Any
    ) -> BatchProcessor:
        used = settings.model_copy(update=overrides) if overrides else settings
        return BatchProcessor(
            used,
            partition_count=partition_count,
            engine_factory=lambda: FakeEngine(window_ms=used.window_seconds * 1000),  # type: ignore[arg-type,return-value]
            clock=clock,
        )

    return make
