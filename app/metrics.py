"""Every Prometheus metric of the service, on one explicit registry.

Names follow the Prometheus conventions (``surge_`` prefix, base units, ``_total`` for
counters). No metric carries a SKU label: SKUs are unbounded, labels are not. Label
values are bounded sets (signals, dead-letter reasons, trigger reasons and tiers,
topic-partitions).

The deployment (``deploy/``, ``k8s/``) reads these names; rename with care.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# The `_created` series double every family's size and nobody here graphs them.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_CONSUMED = Counter(
    "surge_events_consumed_total",
    "Valid input events decoded, by signal (search, cart_add, order).",
    ["signal"],
    registry=REGISTRY,
)
INVALID_EVENTS = Counter(
    "surge_invalid_events_total",
    "Input messages sent to the dead-letter topic, by machine-readable reason.",
    ["reason"],
    registry=REGISTRY,
)
DUPLICATE_EVENTS = Counter(
    "surge_duplicate_events_skipped_total",
    "Events at or below the offset already applied to their SKU's state (redelivered after"
    " a restart), skipped so that counts stay exact.",
    registry=REGISTRY,
)
LATE_EVENTS = Counter(
    "surge_late_events_total",
    "Events later than the allowed lateness: not counted into any window.",
    registry=REGISTRY,
)
EVENTS_COUNTED = Counter(
    "surge_events_counted_total",
    "Events counted into open windows.",
    registry=REGISTRY,
)
TRIGGERS = Counter(
    "surge_triggers_total",
    "Replenishment triggers published, by reason and tier.",
    ["reason", "tier"],
    registry=REGISTRY,
)
TRIGGER_LATENCY = Histogram(
    "surge_event_to_trigger_latency_seconds",
    "Publish time of a trigger minus the time of the first event behind it.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "surge_batch_processing_seconds",
    "Wall time to handle one fetched batch of one partition (decode, decide, write state).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
BATCH_EVENTS = Histogram(
    "surge_batch_size_events",
    "Number of input messages in one fetched batch of one partition.",
    buckets=(1, 10, 50, 100, 500, 1000, 5000, 10000, 50000),
    registry=REGISTRY,
)
FORECAST_ABS_ERROR = Histogram(
    "surge_forecast_absolute_error",
    "Absolute error |forecast - actual| of closed windows, in units per window, by signal.",
    ["signal"],
    buckets=(0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
    registry=REGISTRY,
)
WINDOWS_CLOSED = Counter(
    "surge_windows_closed_total",
    "Windows closed (one forecast record each), by signal.",
    ["signal"],
    registry=REGISTRY,
)
MODEL_UPDATES = Counter(
    "surge_model_updates_total",
    "Online model updates (the forecaster learns once per closed window).",
    registry=REGISTRY,
)
WINDOW_CLOSE_LAG = Histogram(
    "surge_window_close_lag_seconds",
    "Wall time at which a window closed minus the window's end.",
    buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)
ACTIVE_SKUS = Gauge(
    "surge_active_skus",
    "SKUs whose state this worker holds.",
    registry=REGISTRY,
)
SKUS_FORGOTTEN = Counter(
    "surge_skus_forgotten_total",
    "SKUs forgotten after their retention without events (state deleted, last forecast sent).",
    registry=REGISTRY,
)
STATE_WRITES = Counter(
    "surge_state_writes_total",
    "Signed SKU snapshots written to the changelog-backed state table.",
    registry=REGISTRY,
)
SNAPSHOT_SIGNATURE_FAILURES = Counter(
    "surge_snapshot_signature_failures_total",
    "Stored snapshots rejected because their HMAC did not verify (the SKU restarts cold).",
    registry=REGISTRY,
)
SNAPSHOT_FORMAT_REJECTIONS = Counter(
    "surge_snapshot_format_rejections_total",
    "Signed snapshots of an older format that no longer load (that state restarts cold).",
    registry=REGISTRY,
)
STATE_RESTORES = Counter(
    "surge_state_restores_total",
    "SKU snapshots restored from the state table after an assignment or restart.",
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "surge_consumer_lag_messages",
    "Messages between the end of an input partition and the last batch handled.",
    ["topic", "partition"],
    registry=REGISTRY,
)
RESYNCS = Counter(
    "surge_partition_resyncs_total",
    "Seeks back because a fetched batch never reached the agent (it is read again).",
    registry=REGISTRY,
)
COMMITS = Counter(
    "surge_offset_commits_total",
    "Offset commits made from the agent (after the batch's outputs were flushed).",
    registry=REGISTRY,
)

# First tier (calendar and planner) in the worker.
CALENDAR_RECORDS = Counter(
    "surge_calendar_records_total",
    "Calendar topic records applied to the calendar in force, by kind (update, deletion).",
    ["kind"],
    registry=REGISTRY,
)
INVALID_CALENDAR_RECORDS = Counter(
    "surge_invalid_calendar_records_total",
    "Calendar topic records sent to the dead-letter topic, by machine-readable reason.",
    ["reason"],
    registry=REGISTRY,
)
CALENDAR_ENTRIES = Gauge(
    "surge_calendar_entries",
    "Entries (events and schedules) in the calendar in force: the file plus the topic.",
    registry=REGISTRY,
)
IDLE_TICKS = Counter(
    "surge_idle_ticks_total",
    "Idle-timer ticks handled: the first-tier planner ran for a partition without traffic.",
    registry=REGISTRY,
)
FIRST_TIER_SUPPRESSED = Counter(
    "surge_first_tier_suppressed_total",
    "First-tier occurrences that came due but needed no order (stock in flight covers them).",
    registry=REGISTRY,
)
PLANNER_RESTORE_FAILURES = Counter(
    "surge_planner_restore_failures_total",
    "Signed planner states that could not be loaded (the planner restarts empty).",
    registry=REGISTRY,
)


def render() -> tuple[bytes, str]:
    """The registry in the Prometheus text format, with its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


MERGE_HELD_EVENTS = Gauge(
    "surge_merge_held_events",
    "Valid input events held back to merge a partition's topics by event time (a topic"
    " with unread records is behind).",
    registry=REGISTRY,
)
WINDOW_CLOSES_WAITING = Gauge(
    "surge_window_closes_waiting",
    "Series windows the event clock passed that wait to be closed: a busy window boundary"
    " being drained at the paced rate (SURGE_CLOSE_DRAIN_SECONDS); not set with pacing off.",
    registry=REGISTRY,
)
WINDOW_CLOSE_RATE = Gauge(
    "surge_window_close_rate",
    "Window closes per second the worker allows now: the backlog spread over the drain"
    " time, at least the floor; not set with pacing off.",
    registry=REGISTRY,
)
REKEYED_EVENTS = Counter(
    "surge_rekeyed_events_total",
    "Valid input events that arrived on another partition than their SKU's (keyed by"
    " something else) and were forwarded to the re-key topic on their SKU's partition.",
    registry=REGISTRY,
)
MERGE_FORCED_RELEASES = Counter(
    "surge_merge_forced_releases_total",
    "Events the event-time merge released before their turn because their topic held more"
    " than merge_hold_events (they can make other topics' later events late).",
    registry=REGISTRY,
)
