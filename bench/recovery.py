"""Recovery: SIGKILL the worker half-way through the workload, restart it, time /ready.

The restarted worker joins the same consumer group, restores its SKU state from the
changelog and resumes from the last committed offsets. Figures: seconds from the restart
to ``/ready`` answering 200, to the first newly handled event and to the group's committed
offsets reaching the end of the input (caught up); the SKUs restored, and the redelivered
events the restored state skipped as already applied.

Two memberships, in the same run on the same workload (fresh app id each):

- ``static``: the worker keeps ``SURGE_GROUP_INSTANCE_ID`` across the restart, as a
  StatefulSet pod does (its name, ``k8s/statefulset.yaml``). The broker hands the
  restarted member its partitions back at once, without a rebalance.
- ``dynamic``: no instance id. The killed member's session must expire
  (``SURGE_BROKER_SESSION_TIMEOUT_SECONDS``, 30 s by default) before the group
  rebalances, so that timeout bounds recovery from below.

The headline figures (``recovery_s`` ...) are the static restart's, as deployed.
"""

from __future__ import annotations

import signal
import time
from typing import Any

from bench import service
from bench.common import Bench, say
from bench.workload import Workload, shared_workload

NAME = "recovery"
CATCH_UP_TIMEOUT_S = 900.0


def run(bench: Bench, events: int) -> dict[str, Any]:
    workload = shared_workload(bench, events)
    static = _kill_and_restart(bench, workload, "static")
    dynamic = _kill_and_restart(bench, workload, "dynamic")
    figures = {**static, "membership": "static", "dynamic": dynamic}
    if static["recovery_s"] and dynamic["recovery_s"]:
        figures["static_vs_dynamic"] = round(static["recovery_s"] / dynamic["recovery_s"], 3)
    return figures


def _kill_and_restart(bench: Bench, workload: Workload, membership: str) -> dict[str, Any]:
    app_id = bench.topic_name(f"recovery-{membership}")
    # A StatefulSet pod keeps its name across restarts; the instance id comes from it.
    extra = {"SURGE_GROUP_INSTANCE_ID": f"{app_id}-0"} if membership == "static" else {}
    first = service.launch(bench, workload.topics, app_id, extra_env=extra)
    try:
        first.wait_ready(timeout=180.0)
        reached = service.measure([first], workload.events // 2, timeout=600.0)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        killed_at = time.perf_counter()
        say(
            f"recovery ({membership}): SIGKILL after about {reached.handled:,.0f} events; "
            "restarting"
        )
    finally:
        first.stop()
    second = service.launch(
        bench, workload.topics, app_id, web_port=first.web_port, extra_env=extra
    )
    try:
        ready_s = second.wait_ready(timeout=300.0)
        resumed_s = caught_up_s = None
        deadline = time.perf_counter() + CATCH_UP_TIMEOUT_S
        while time.perf_counter() < deadline:
            seen = (second.handled() or 0) + (second.metric(service.DUPLICATES) or 0)
            if resumed_s is None and seen > 0:
                resumed_s = time.perf_counter() - second.started
            if service.group_lag(bench, app_id, workload.topics) == 0:
                caught_up_s = time.perf_counter() - second.started
                break
            time.sleep(0.5)
        restored = second.metric("surge_state_restores_total")
        duplicates = second.metric(service.DUPLICATES) or 0.0
        handled_after = second.handled() or 0.0
    finally:
        second.stop()
    figures = {
        "recovery_s": round(ready_s, 2),
        "resume_s": None if resumed_s is None else round(resumed_s, 2),
        "caught_up_s": None if caught_up_s is None else round(caught_up_s, 2),
        "killed_after_events": reached.handled,
        "skus_restored": restored,
        "duplicates_skipped": duplicates,
        "handled_after_restart": handled_after,
        "session_timeout_s": bench.settings().broker_session_timeout_seconds,
        "restart_after_kill_s": round(second.started - killed_at, 2),
    }
    print(
        f"{membership} membership: SIGKILL after about {reached.handled:,.0f} of "
        f"{workload.events:,} events; restart ->"
        f" /ready in {ready_s:.1f} s, first event handled after "
        f"{'-' if resumed_s is None else round(resumed_s, 1)} s, caught up after "
        f"{'-' if caught_up_s is None else round(caught_up_s, 1)} s; "
        f"{restored or 0:,.0f} SKUs restored, {duplicates:,.0f} redelivered events skipped, "
        f"{handled_after:,.0f} handled after the restart"
    )
    return figures
