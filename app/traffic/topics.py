"""Create the service's topics before anything writes to them.

A broker that auto-creates topics would give them its default partition count, which
breaks co-partitioning of the input topics; so producers here create them first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.config import Settings

TOPIC_ALREADY_EXISTS = 36


def all_topics(settings: Settings) -> list[str]:
    """Every topic the service reads or writes (the calendar last: it is compacted)."""
    return [
        settings.topic_searches,
        settings.topic_cart_adds,
        settings.topic_orders,
        settings.topic_dead_letters,
        settings.topic_triggers,
        settings.topic_forecasts,
        settings.topic_calendar,
    ]


async def ensure_topics(
    settings: Settings,
    names: Iterable[str],
    *,
    compacted: Iterable[str] = (),
    replication_factor: int = 1,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the missing topics with ``settings.topic_partitions`` partitions.

    Topics in ``compacted`` get ``cleanup.policy=compact``. Returns the names created,
    once every partition of them has a leader; topics that already exist are left as
    they are.
    """
    wanted = list(dict.fromkeys(names))
    compact = set(compacted)
    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=settings.topic_partitions,
                    replication_factor=replication_factor,
                    topic_configs={"cleanup.policy": "compact"} if name in compact else {},
                )
                for name in missing
            ]
        )
        for topic_error in response.topic_errors:
            name, code = topic_error[0], topic_error[1]
            if code not in (0, TOPIC_ALREADY_EXISTS):
                message = topic_error[2] if len(topic_error) > 2 else ""
                raise RuntimeError(f"cannot create topic {name}: error {code} {message}")
        await _wait_for_leaders(admin, missing, timeout_s)
        return missing
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        described = await admin.describe_topics(names)
        led = {
            topic["topic"]
            for topic in described
            if topic["error_code"] == 0
            and topic["partitions"]
            and all(partition["leader"] >= 0 for partition in topic["partitions"])
        }
        if led >= set(names):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics without a leader after {timeout_s:g} s: {set(names) - led}")
        await asyncio.sleep(0.1)


async def partitions_of(settings: Settings, names: Iterable[str]) -> dict[str, list[int]]:
    """The partition ids of each named topic (an empty list for a topic that is missing)."""
    wanted = list(names)
    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
    await admin.start()
    try:
        described = await admin.describe_topics(wanted)
    finally:
        await admin.close()
    found = {
        topic["topic"]: sorted(p["partition"] for p in topic["partitions"])
        for topic in described
        if topic["error_code"] == 0
    }
    return {name: found.get(name, []) for name in wanted}
