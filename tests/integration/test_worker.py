"""The worker for real: ``python -m app worker`` as a subprocess against a Kafka broker.

Fresh topics and a fresh consumer group per test (``harness.py``, fixtures in
``conftest.py``); what the worker published is read back with a plain aiokafka consumer.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from app.streaming.processor import home_partition
from tests.integration.harness import (
    GUARANTEES,
    PARTITIONS,
    WINDOW_MS,
    Message,
    PacedProducer,
    Topics,
    Worker,
    caught_up,
    close_windows,
    consume_until,
    produce,
    read_all,
    wait_caught_up,
    window_start,
)

pytestmark = pytest.mark.integration

DIAGNOSTICS = (
    "surge_events_consumed_total",
    "surge_events_counted_total",
    "surge_duplicate_events_skipped_total",
    "surge_late_events_total",
    "surge_state_restores_total",
    "surge_snapshot_signature_failures_total",
)


def cart_add(sku: str, ts: int) -> bytes:
    return orjson.dumps({"ts": ts, "sku": sku})


@GUARANTEES
def test_worker_publishes_a_cart_surge_trigger_and_dead_letters_and_stops_cleanly(
    kafka_bootstrap: str, topics: Topics, start_worker: Callable[..., Worker], guarantee: str
) -> None:
    worker = start_worker(processing_guarantee=guarantee)
    statuses = worker.wait_ready()
    assert statuses[-1] == 200
    assert worker.get("/health")[0] == 200

    sku = f"SKU-{uuid.uuid4().hex[:6]}"
    now = int(time.time() * 1000)
    current = window_start(now)
    history = [
        (topics.cart_adds, sku.encode(), cart_add(sku, current - k * WINDOW_MS + i * 100))
        for k in range(12, 0, -1)  # 60 s of grace: the oldest 5 windows are closed history
        for i in range(5)
    ]
    invalid = {
        b"not json": "not_json",
        b'{"sku": "X"}': "missing_field:ts",
        b'{"ts": 5, "sku": "X"}': "ts_out_of_range",
        orjson.dumps({"ts": now, "sku": "X", "qty": "many"}): "bad_type:qty",
    }
    # 60 shoppers spread over the current window so far (the live span reaches back over the
    # previous window's history, so it covers more than an instant)
    surge = [
        (topics.cart_adds, sku.encode(), cart_add(sku, current + (now - current) * i // 60))
        for i in range(60)
    ]
    produce(kafka_bootstrap, history)
    produce(kafka_bootstrap, [(topics.cart_adds, b"X", raw) for raw in invalid])
    # keyed by something else than the SKU: re-keyed to the SKU's partition and counted there
    misrouted = orjson.dumps({"ts": now, "sku": sku, "user": "u-1"})
    home = home_partition(sku, PARTITIONS)
    wrong = (home + 1) % PARTITIONS
    [misrouted_at] = produce(
        kafka_bootstrap, [(topics.cart_adds, b"u-1", misrouted)], partition=wrong
    )
    produce(kafka_bootstrap, surge)

    def has_surge(records: list[Any]) -> bool:
        return any(orjson.loads(r.value)["reason"] == "cart_surge" for r in records)

    triggers = consume_until(kafka_bootstrap, topics.triggers, has_surge)
    found = [r for r in triggers if orjson.loads(r.value)["reason"] == "cart_surge"]
    assert found, worker.log()
    record = found[0]
    body = orjson.loads(record.value)
    headers = {k: v.decode() for k, v in record.headers}
    assert record.key == sku.encode()
    assert body["sku"] == sku
    assert headers["ce_id"] == body["trigger_id"]
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_type"] == "com.surge.replenish.trigger"
    assert headers["ce_source"]
    assert headers["ce_time"] == body["decided_at"]
    assert headers["content-type"] == "application/json"

    letters = consume_until(kafka_bootstrap, topics.dead_letters, lambda r: len(r) >= len(invalid))
    reasons = {
        orjson.loads(r.value)["raw"].encode(): orjson.loads(r.value)["reason"] for r in letters
    }
    assert reasons == invalid
    assert {orjson.loads(r.value)["source_topic"] for r in letters} == {topics.cart_adds}

    for raw_reason in set(invalid.values()):
        assert worker.metric("surge_invalid_events_total", reason=raw_reason) == 1
    assert worker.metric("surge_invalid_events_total") == len(invalid)
    # The mis-keyed event goes the long way (re-key topic, then its home partition):
    # wait until it is taken in there, then it counts once, like its SKU's other events.
    consumed_all = len(history) + len(surge) + 1
    deadline = time.monotonic() + 30
    while worker.metric("surge_events_consumed_total", signal="cart_add") < consumed_all:
        assert time.monotonic() < deadline, (worker.diagnostics(DIAGNOSTICS), worker.log())
        time.sleep(0.2)
    consumed = worker.metric("surge_events_consumed_total", signal="cart_add")
    assert consumed == consumed_all
    assert worker.metric("surge_rekeyed_events_total") == 1
    assert worker.metric("surge_triggers_total", reason="cart_surge", tier="second") >= 1
    assert worker.metric("surge_event_to_trigger_latency_seconds_count") >= 1

    # It counts in its SKU's window: the surge window holds the surge and the mis-keyed event.
    current_end = current + WINDOW_MS
    close_windows(kafka_bootstrap, topics.cart_adds, current_end + WINDOW_MS)

    def surge_window(records: list[Any]) -> list[dict[str, Any]]:
        bodies = (orjson.loads(r.value) for r in records)
        return [
            body
            for body in bodies
            if body["sku"] == sku and body["signal"] == "cart_add" and window_of(body) == current
        ]

    forecasts = consume_until(kafka_bootstrap, topics.forecasts, lambda r: bool(surge_window(r)))
    assert [body["actual"] for body in surge_window(forecasts)] == [len(surge) + 1], worker.log()

    assert worker.terminate() == 0, worker.log()
    # forwarded exactly once, keyed by its SKU, to the SKU's home partition, with its origin
    rekey_topic = f"{worker.env['SURGE_APP_ID']}-rekeyed"
    rekeyed = read_all(kafka_bootstrap, rekey_topic)
    assert [(r.key, r.partition) for r in rekeyed] == [(sku.encode(), home)]
    assert misrouted_at[:2] == (topics.cart_adds, wrong)
    assert orjson.loads(rekeyed[0].value) == {
        "signal": "cart_add",
        "topic": topics.cart_adds,
        "partition": wrong,
        "offset": misrouted_at[2],
        "event": orjson.loads(misrouted),
    }
    # the last batch was committed on the way out, the re-keyed one included
    done, behind = caught_up(
        kafka_bootstrap, worker.env["SURGE_APP_ID"], [topics.cart_adds, rekey_topic]
    )
    assert done, behind


@GUARANTEES
def test_counts_are_exact_after_a_kill_9_mid_stream_and_triggers_are_not_duplicated(
    kafka_bootstrap: str, topics: Topics, start_worker: Callable[..., Worker], guarantee: str
) -> None:
    windows, skus = 12, [f"R-{i}" for i in range(40)]
    base = window_start(int(time.time() * 1000)) - 20 * WINDOW_MS
    expected: Counter[tuple[str, int]] = Counter()
    messages: list[Message] = []
    for w in range(windows):
        start = base + w * WINDOW_MS
        for step in range(30):
            for i, sku in enumerate(skus):
                if (i + step + w) % 7 == 0:  # uneven counts per SKU and window
                    continue
                messages.append((topics.cart_adds, sku.encode(), cart_add(sku, start + step * 300)))
                expected[(sku, start)] += 1
        if w == windows - 1:  # R-0 surges in the last window
            for step in range(400):
                messages.append((topics.cart_adds, b"R-0", cart_add("R-0", start + step * 20)))
                expected[("R-0", start)] += 1

    settings = {"grace_seconds": "30", "processing_guarantee": guarantee}
    first = start_worker(**settings)
    first.wait_ready()
    producer = PacedProducer(kafka_bootstrap, messages, chunk=-(-len(messages) // 48), pause=0.2)
    producer.start()
    deadline = time.monotonic() + 60
    while first.metric("surge_events_consumed_total", signal="cart_add") < len(messages) * 0.3:
        assert time.monotonic() < deadline, first.log()
        time.sleep(0.1)
    consumed_before_kill = first.metric("surge_events_consumed_total", signal="cart_add")
    first.kill()
    assert producer.is_alive(), "the kill was not mid-stream"

    second = start_worker(**settings)
    second.wait_ready()
    producer.join(60)
    assert producer.error is None
    # Wait until every partition is caught up, then move each partition's event clock far
    # past the data so that every window closes.
    wait_caught_up(
        kafka_bootstrap, second.env["SURGE_APP_ID"], [topics.cart_adds], second, timeout=60
    )
    close_windows(kafka_bootstrap, topics.cart_adds, base + (windows + 10) * WINDOW_MS)

    # The engine's first two windows carry no forecast record (the first is partial, so
    # the second has no forecast to compare with): check every window after them.
    wanted = {key for key in expected if key[1] >= base + 2 * WINDOW_MS}

    def all_closed(records: list[Any]) -> bool:
        seen = set()
        for r in records:
            body = orjson.loads(r.value)
            if body["signal"] == "cart_add":
                seen.add((body["sku"], window_of(body)))
        return wanted <= seen

    forecasts = consume_until(kafka_bootstrap, topics.forecasts, all_closed, timeout=90)
    actual: dict[tuple[str, int], float] = {}
    for r in forecasts:
        body = orjson.loads(r.value)
        if body["signal"] == "cart_add" and (body["sku"], window_of(body)) in wanted:
            actual[(body["sku"], window_of(body))] = body["actual"]
    assert len(actual) == len(wanted) == 400, second.log()
    mismatched = {k: (actual[k], expected[k]) for k in wanted if actual[k] != expected[k]}
    assert not mismatched, (
        f"consumed before kill: {consumed_before_kill}; after: "
        + str(second.diagnostics(DIAGNOSTICS))
        + f"; {len(mismatched)} windows differ: {sorted(mismatched.items())[:20]}"
    )
    assert second.metric("surge_state_restores_total") > 0
    assert second.metric("surge_late_events_total") == 0

    triggers = consume_until(kafka_bootstrap, topics.triggers, lambda r: False, timeout=3)
    ids = [orjson.loads(r.value)["trigger_id"] for r in triggers]
    assert any(orjson.loads(r.value)["sku"] == "R-0" for r in triggers)
    assert len(ids) == len(set(ids)), Counter(ids).most_common(3)
    assert second.terminate() == 0, second.log()


def window_of(forecast: dict[str, Any]) -> int:
    from app.events import parse_ts

    return parse_ts(forecast["window_start"])
