"""Where stock goes: one function for surges, stockouts and planned orders."""

from __future__ import annotations

import math
from collections.abc import Mapping

from app.core.policy import Policy

#: Region key of a SKU's all-regions series.
ALL_REGIONS = "*"
#: A region carries a surge when it holds at least this share of the excess.
REGION_SHARE = 0.25
#: A region's excess counts only past this many Poisson standard deviations of its
#: expectation (at least 1 expected): the noise of quiet regions over an hour-long span.
NOISE_SDS = 2.0


def excess_beyond_noise(units: float, expected: float) -> float:
    """A region's excess over its expectation, less what its noise alone could give.

    Over an hour-long span the other regions of a regional surge gather a few units of
    noise each (2 searches against 0.3 expected is common); counted in full, those pulled
    a quarter of the excess and sent the surge to the central warehouse. So the excess is
    taken past ``NOISE_SDS`` standard deviations of a Poisson count, never less than 1.

    >>> round(excess_beyond_noise(9.0, 0.3), 1)  # 9 searches against 0.3: 6.7 past the noise
    6.7
    >>> excess_beyond_noise(2.0, 0.5)  # 2 against 0.5: noise
    -0.5
    >>> round(excess_beyond_noise(130.0, 100.0), 1)  # 2 sd of 100 expected is 20
    10.0
    """
    return units - expected - NOISE_SDS * math.sqrt(max(expected, 1.0))


def route(excess: Mapping[str, float], policy: Policy) -> tuple[str, str]:
    """The region label and warehouse for excess demand by region.

    Regions holding at least a quarter of the positive excess carry the surge: one such
    region goes to its own warehouse, several (or none known) to the central one. The
    label joins several regions with ``+``.

    >>> from app.core.policy import Policy
    >>> policy = Policy(regions={"east": "WH-east", "west": "WH-west"})
    >>> route({"east": 40.0, "west": 2.0}, policy)
    ('east', 'WH-east')
    >>> route({"east": 40.0, "west": 30.0}, policy)
    ('east+west', 'WH-central')
    >>> route({"north": 5.0}, policy)  # an unmapped region: the central warehouse
    ('north', 'WH-central')
    >>> route({}, policy)
    ('*', 'WH-central')
    """
    positive = {region: e for region, e in excess.items() if e > 0 and region != ALL_REGIONS}
    total = sum(positive.values())
    carrying = sorted(r for r, e in positive.items() if e >= REGION_SHARE * total)
    if not carrying:
        carrying = sorted(r for r in excess if r != ALL_REGIONS)
    if len(carrying) == 1:
        return carrying[0], policy.warehouse_for(carrying[0])
    if not carrying:
        return ALL_REGIONS, policy.central_warehouse
    return "+".join(carrying), policy.central_warehouse


def route_label(region: str | None, policy: Policy) -> tuple[str, str]:
    """Route a planned order's region label (``None``, ``*``, ``east`` or ``east+west``).

    >>> from app.core.policy import Policy
    >>> route_label("east", Policy(regions={"east": "WH-east"}))
    ('east', 'WH-east')
    >>> route_label(None, Policy())
    ('*', 'WH-central')
    """
    if region is None or region == ALL_REGIONS:
        return ALL_REGIONS, policy.central_warehouse
    return route(dict.fromkeys(region.split("+"), 1.0), policy)
