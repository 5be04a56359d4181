"""Replenishment policy: thresholds, order terms, warehouses and suppliers.

A policy is read from YAML (:func:`load_policy`) or built in (:meth:`Policy.default`).
Every setting resolves from the most specific place that names it, so a shop states
only what differs from the defaults. Thresholds (``margin``, ``min_volume``,
``evidence``) resolve per signal in this order::

    skus.<sku>.signals.<signal> > skus.<sku> > categories.<cat>.signals.<signal>
    > categories.<cat> > signals.<signal> > defaults > built-in per-signal defaults

so a file's ``defaults.margin`` applies to every signal it does not state under
``signals``; the built-in per-signal defaults give searches the highest bar.

Order terms (``supplier``, ``pack_size``, ``min_order``, ``max_order``,
``cooldown_minutes``, ``safety_z``, ``surge_cover_hours``) resolve
``skus.<sku> > categories.<cat> > defaults``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.core.units import MINUTE_MS
from app.events.model import Signal

#: Name of the supplier used when a policy names none.
DEFAULT_SUPPLIER = "default"


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the line and the field.

    Examples
    --------
    >>> err = PolicyError("must be a number", field="defaults.margin", line=3, path="p.yaml")
    >>> str(err)
    'p.yaml:3: defaults.margin: must be a number'
    >>> err.line, err.field
    (3, 'defaults.margin')
    """

    def __init__(
        self, message: str, *, field: str = "", line: int | None = None, path: str = "<policy>"
    ) -> None:
        where = f"{path}:{line}" if line is not None else path
        text = f"{where}: {field}: {message}" if field else f"{where}: {message}"
        super().__init__(text)
        self.field = field
        self.line = line
        self.path = path


@dataclass(frozen=True, slots=True)
class Overrides:
    """Settings stated at one level of the policy; ``None`` means "not stated here".

    >>> Overrides(margin=0.5).min_volume is None
    True
    """

    margin: float | None = None
    min_volume: float | None = None
    evidence: float | None = None
    units_per_event: float | None = None
    cooldown_minutes: float | None = None
    pack_size: int | None = None
    min_order: int | None = None
    max_order: int | None = None
    supplier: str | None = None
    safety_z: float | None = None
    surge_cover_hours: float | None = None
    category: str | None = None
    signals: Mapping[Signal, Overrides] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """What a live window must show before a surge trigger (for one SKU and signal).

    ``margin``: volume must reach ``(1 + margin) x expected``; ``min_volume``: and at
    least this many events (units for cart adds and orders); ``evidence``: and the
    chance of seeing that much by noise alone must be below this probability.
    ``units_per_event``: prior order units one event of this signal stands for.

    >>> Policy.default().thresholds("A", None, Signal.ORDER).min_volume
    10.0
    """

    margin: float
    min_volume: float
    evidence: float
    units_per_event: float


@dataclass(frozen=True, slots=True)
class Supplier:
    """A supplier: delivery lead time and how much it can ship per day."""

    name: str
    lead_time_hours: float
    capacity_per_day: float

    def capacity_within_lead_time(self) -> float:
        """Units the supplier can ship within one lead time.

        >>> Supplier("S-12", lead_time_hours=6, capacity_per_day=2400).capacity_within_lead_time()
        600.0
        """
        return self.capacity_per_day * self.lead_time_hours / 24.0


@dataclass(frozen=True, slots=True)
class OrderTerms:
    """How one SKU is ordered: from whom, in which packs, within which bounds.

    >>> Policy.default().order_terms("A", None).cooldown_ms
    7200000
    """

    supplier: Supplier
    pack_size: int
    min_order: int
    max_order: int
    cooldown_ms: int
    safety_z: float
    #: Hours after a surge order arrives that it covers (the next trigger can top it up).
    surge_cover_hours: float = 6.0


_DEFAULTS = Overrides(
    margin=0.3,
    min_volume=10.0,
    evidence=2e-6,
    units_per_event=1.0,
    cooldown_minutes=120.0,
    pack_size=1,
    min_order=1,
    max_order=100_000,
    supplier=DEFAULT_SUPPLIER,
    safety_z=1.65,
    surge_cover_hours=6.0,
)
# Searches are the earliest and noisiest signal: the highest margin. The leading signals'
# volume floors count distinct shoppers (5 searching, 6 adding to cart within the live
# span) and their evidence bar is looser than orders': they are the ones that can fire
# before orders rise, and on the planted-truth scenarios (docs/DECISIONS.md) the old
# floors of 50 and 20 kept most long-tail launches silent until orders had already risen
# (then 8 searching shoppers still held back launches and regional surges of small SKUs).
# Their bar of 3e-5 is split between the live spans by length (EngineConfig.evidence_shares):
# the hour-long span gets most of it, the one-window span less than the 1e-5 split evenly
# gave it before 2026-12-06.
_SIGNAL_DEFAULTS: dict[Signal, Overrides] = {
    Signal.SEARCH: Overrides(margin=0.5, min_volume=5.0, evidence=3e-5, units_per_event=0.05),
    Signal.CART_ADD: Overrides(margin=0.3, min_volume=6.0, evidence=3e-5, units_per_event=0.5),
    Signal.ORDER: Overrides(margin=0.3, min_volume=10.0, evidence=2e-6, units_per_event=1.0),
}


@dataclass(frozen=True)
class Policy:
    """The whole replenishment policy, resolved lazily per SKU.

    Examples
    --------
    >>> policy = Policy.default()
    >>> policy.thresholds("SKU-1", None, Signal.CART_ADD).margin
    0.3
    >>> policy.thresholds("SKU-1", None, Signal.SEARCH).margin  # searches: highest bar
    0.5
    >>> policy.warehouse_for("east")  # no region map: the central warehouse
    'WH-central'
    """

    defaults: Overrides = _DEFAULTS
    signals: Mapping[Signal, Overrides] = field(default_factory=lambda: dict(_SIGNAL_DEFAULTS))
    categories: Mapping[str, Overrides] = field(default_factory=dict)
    skus: Mapping[str, Overrides] = field(default_factory=dict)
    regions: Mapping[str, str] = field(default_factory=dict)
    central_warehouse: str = "WH-central"
    suppliers: Mapping[str, Supplier] = field(
        default_factory=lambda: {
            DEFAULT_SUPPLIER: Supplier(DEFAULT_SUPPLIER, lead_time_hours=24.0, capacity_per_day=1e6)
        }
    )
    _threshold_cache: dict[tuple[str | None, str | None, Signal], Thresholds] = field(
        default_factory=dict, repr=False, compare=False
    )
    _terms_cache: dict[tuple[str | None, str | None], OrderTerms] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def default(cls) -> Policy:
        """The built-in policy: 30 % margin, one central warehouse, one 24 h supplier.

        >>> Policy.default().order_terms("X", None).supplier.lead_time_hours
        24.0
        """
        return cls()

    def category_of(self, sku: str) -> str | None:
        """The category the policy assigns to ``sku`` (``None`` if it does not know it).

        >>> Policy(skus={"K-1": Overrides(category="game-keys")}).category_of("K-1")
        'game-keys'
        """
        rules = self.skus.get(sku)
        return None if rules is None else rules.category

    def warehouse_for(self, region: str) -> str:
        """The warehouse serving ``region``; the central one for unmapped regions.

        >>> Policy(regions={"east": "WH-east"}).warehouse_for("east")
        'WH-east'
        """
        return self.regions.get(region, self.central_warehouse)

    def _chain(self, sku: str, category: str | None) -> list[Overrides]:
        chain: list[Overrides] = []
        sku_rules = self.skus.get(sku)
        if sku_rules is not None:
            chain.append(sku_rules)
        if category is not None and category in self.categories:
            chain.append(self.categories[category])
        return chain

    def _cache_key(self, sku: str, category: str | None) -> tuple[str | None, str | None]:
        """What a resolution depends on: the SKU and category only when the policy names them
        (a long-tail catalogue would otherwise grow the caches by one entry per SKU).

        >>> Policy()._cache_key("K-1", "vouchers")
        (None, None)
        """
        return (
            sku if sku in self.skus else None,
            category if category in self.categories else None,
        )

    def thresholds(self, sku: str, category: str | None, signal: Signal) -> Thresholds:
        """Resolved trigger thresholds for one SKU and signal (cached).

        >>> p = Policy(categories={"vouchers": Overrides(margin=0.5)})
        >>> p.thresholds("V-1", "vouchers", Signal.ORDER).margin
        0.5
        """
        key = (*self._cache_key(sku, category), signal)
        cached = self._threshold_cache.get(key)
        if cached is not None:
            return cached
        layers: list[Overrides] = []
        for level in self._chain(sku, category):
            per_signal = level.signals.get(signal)
            if per_signal is not None:
                layers.append(per_signal)
            layers.append(level)
        global_signal = self.signals.get(signal)
        if global_signal is not None:
            layers.append(global_signal)
        layers.append(self.defaults)
        layers.append(_SIGNAL_DEFAULTS[signal])
        layers.append(_DEFAULTS)
        result = Thresholds(
            margin=float(_first(layers, "margin")),
            min_volume=float(_first(layers, "min_volume")),
            evidence=float(_first(layers, "evidence")),
            units_per_event=float(_first(layers, "units_per_event")),
        )
        self._threshold_cache[key] = result
        return result

    def order_terms(self, sku: str, category: str | None) -> OrderTerms:
        """Resolved order terms for one SKU (cached).

        >>> p = Policy(skus={"K-1": Overrides(pack_size=10)})
        >>> p.order_terms("K-1", None).pack_size
        10
        """
        key = self._cache_key(sku, category)
        cached = self._terms_cache.get(key)
        if cached is not None:
            return cached
        layers = [*self._chain(sku, category), self.defaults, _DEFAULTS]
        supplier_name = str(_first(layers, "supplier"))
        supplier = self.suppliers.get(supplier_name) or Supplier(
            supplier_name, lead_time_hours=24.0, capacity_per_day=1e6
        )
        result = OrderTerms(
            supplier=supplier,
            pack_size=int(_first(layers, "pack_size")),
            min_order=int(_first(layers, "min_order")),
            max_order=int(_first(layers, "max_order")),
            cooldown_ms=round(float(_first(layers, "cooldown_minutes")) * MINUTE_MS),
            safety_z=float(_first(layers, "safety_z")),
            surge_cover_hours=float(_first(layers, "surge_cover_hours")),
        )
        self._terms_cache[key] = result
        return result


def _first(layers: list[Overrides], name: str) -> Any:
    for layer in layers:
        value = getattr(layer, name)
        if value is not None:
            return value
    raise KeyError(name)  # pragma: no cover - _DEFAULTS states every field


# --------------------------------------------------------------------------- loading

_NUMBER_FIELDS = {
    "margin": (0.0, 100.0),
    "min_volume": (0.0, 1e12),
    "evidence": (0.0, 1.0),
    "units_per_event": (0.0, 1e6),
    "cooldown_minutes": (0.0, 1e7),
    "safety_z": (0.0, 10.0),
    "surge_cover_hours": (0.0, 1e6),
}
_INT_FIELDS = {"pack_size": 1, "min_order": 0, "max_order": 1}
_LEVEL_KEYS = {"defaults", "signals", "categories", "skus"}
_TOP_KEYS = _LEVEL_KEYS | {"regions", "central_warehouse", "suppliers"}


class _Reader:
    """Walks the composed YAML node tree so every error carries a line number."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, node: yaml.Node, where: str, message: str) -> PolicyError:
        return PolicyError(message, field=where, line=node.start_mark.line + 1, path=self.path)

    def mapping(self, node: yaml.Node, where: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, where, "must be a mapping")
        items: list[tuple[str, yaml.Node, yaml.Node]] = []
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, where, "keys must be plain names")
            key = str(key_node.value)
            if key in seen:
                raise self.fail(key_node, f"{where}.{key}" if where else key, "appears twice")
            seen.add(key)
            items.append((key, key_node, value_node))
        return items

    def scalar(self, node: yaml.Node, where: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, where, "must be a single value")
        return yaml.safe_load(yaml.serialize(node))

    def number(self, node: yaml.Node, where: str, low: float, high: float) -> float:
        value = self.scalar(node, where)
        if isinstance(value, str):  # YAML 1.1 reads 1e-6 (no dot) as text
            try:
                value = float(value)
            except ValueError:
                raise self.fail(node, where, f"must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(node, where, f"must be a number, got {value!r}")
        if not math.isfinite(value) or not low <= value <= high:
            raise self.fail(node, where, f"must be between {low:g} and {high:g}, got {value!r}")
        return float(value)

    def integer(self, node: yaml.Node, where: str, low: int) -> int:
        value = self.scalar(node, where)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(node, where, f"must be a whole number, got {value!r}")
        if value < low:
            raise self.fail(node, where, f"must be at least {low}, got {value}")
        return value

    def text(self, node: yaml.Node, where: str) -> str:
        value = self.scalar(node, where)
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
            raise self.fail(node, where, "must be a non-empty name")
        return str(value)

    def signal(self, node: yaml.Node, where: str) -> Signal:
        name = self.text(node, where)
        try:
            return Signal(name)
        except ValueError:
            names = ", ".join(s.value for s in Signal)
            raise self.fail(node, where, f"unknown signal {name!r} (one of {names})") from None

    def overrides(self, node: yaml.Node, where: str, *, allow: set[str]) -> Overrides:
        values: dict[str, Any] = {}
        for key, key_node, value_node in self.mapping(node, where):
            here = f"{where}.{key}"
            if key in _RETIRED_KEYS:
                raise self.fail(key_node, here, _RETIRED_KEYS[key])
            if key not in allow:
                allowed = ", ".join(sorted(allow))
                raise self.fail(key_node, here, f"unknown setting (allowed: {allowed})")
            if key in _NUMBER_FIELDS:
                low, high = _NUMBER_FIELDS[key]
                values[key] = self.number(value_node, here, low, high)
                if key == "evidence" and values[key] <= 0.0:
                    raise self.fail(value_node, here, "must be above 0")
            elif key in _INT_FIELDS:
                values[key] = self.integer(value_node, here, _INT_FIELDS[key])
            elif key in {"supplier", "category"}:
                values[key] = self.text(value_node, here)
            elif key == "signals":
                per_signal: dict[Signal, Overrides] = {}
                for name, name_node, rules_node in self.mapping(value_node, here):
                    signal = self.signal(name_node, f"{here}.{name}")
                    per_signal[signal] = self.overrides(
                        rules_node, f"{here}.{name}", allow=_THRESHOLD_KEYS
                    )
                values["signals"] = per_signal
        overrides = Overrides(**values)
        if (
            overrides.min_order is not None
            and overrides.max_order is not None
            and overrides.min_order > overrides.max_order
        ):
            raise self.fail(node, f"{where}.min_order", "must not exceed max_order")
        return overrides


_THRESHOLD_KEYS = {"margin", "min_volume", "evidence", "units_per_event"}
_TERM_KEYS = {
    "cooldown_minutes",
    "pack_size",
    "min_order",
    "max_order",
    "supplier",
    "safety_z",
    "surge_cover_hours",
}
#: Settings an older version read, and what replaced them.
_RETIRED_KEYS = {
    "surge_half_life_hours": "surges are now sized by their age, not by a fixed half-life; "
    "remove it (surge_cover_hours sets the hours a surge order covers after it arrives)",
}


def parse_policy(text: str, *, path: str = "<policy>") -> Policy:
    """Build a policy from YAML text; raises :class:`PolicyError` naming line and field.

    Examples
    --------
    >>> p = parse_policy('''
    ... regions: {east: WH-east}
    ... suppliers: {S-12: {lead_time_hours: 6, capacity_per_day: 2400}}
    ... defaults: {supplier: S-12}
    ... ''')
    >>> p.order_terms("A", None).supplier.name
    'S-12'
    >>> parse_policy("defaults:\\n  margin: lots\\n", path="p.yaml")
    Traceback (most recent call last):
    ...
    app.core.policy.PolicyError: p.yaml:2: defaults.margin: must be a number, got 'lots'
    """
    reader = _Reader(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise PolicyError(f"not valid YAML: {exc.problem}", line=line, path=path) from None
    if root is None:
        return Policy.default()
    top = {key: (key_node, value_node) for key, key_node, value_node in reader.mapping(root, "")}
    for key, (key_node, _) in top.items():
        if key not in _TOP_KEYS:
            allowed = ", ".join(sorted(_TOP_KEYS))
            raise reader.fail(key_node, key, f"unknown section (allowed: {allowed})")

    suppliers: dict[str, Supplier] = dict(Policy().suppliers)
    if "suppliers" in top:
        for name, _, node in reader.mapping(top["suppliers"][1], "suppliers"):
            where = f"suppliers.{name}"
            entry = {key: value for key, _, value in reader.mapping(node, where)}
            for key, key_node, _ in reader.mapping(node, where):
                if key not in {"lead_time_hours", "capacity_per_day"}:
                    raise reader.fail(key_node, f"{where}.{key}", "unknown setting")
            for required in ("lead_time_hours", "capacity_per_day"):
                if required not in entry:
                    raise reader.fail(node, f"{where}.{required}", "is required")
            suppliers[name] = Supplier(
                name,
                lead_time_hours=reader.number(
                    entry["lead_time_hours"], f"{where}.lead_time_hours", 0.001, 24 * 366
                ),
                capacity_per_day=reader.number(
                    entry["capacity_per_day"], f"{where}.capacity_per_day", 0.001, 1e12
                ),
            )

    regions: dict[str, str] = {}
    if "regions" in top:
        for name, _, node in reader.mapping(top["regions"][1], "regions"):
            regions[name] = reader.text(node, f"regions.{name}")
    central = Policy().central_warehouse
    if "central_warehouse" in top:
        central = reader.text(top["central_warehouse"][1], "central_warehouse")

    everything = _THRESHOLD_KEYS | _TERM_KEYS
    defaults = Overrides()
    if "defaults" in top:
        defaults = reader.overrides(top["defaults"][1], "defaults", allow=everything)
    signals: dict[Signal, Overrides] = {}
    if "signals" in top:
        for name, name_node, node in reader.mapping(top["signals"][1], "signals"):
            signal = reader.signal(name_node, f"signals.{name}")
            signals[signal] = reader.overrides(node, f"signals.{name}", allow=_THRESHOLD_KEYS)
    categories: dict[str, Overrides] = {}
    if "categories" in top:
        for name, _, node in reader.mapping(top["categories"][1], "categories"):
            categories[name] = reader.overrides(
                node, f"categories.{name}", allow=everything | {"signals"}
            )
    skus: dict[str, Overrides] = {}
    if "skus" in top:
        for name, _, node in reader.mapping(top["skus"][1], "skus"):
            skus[name] = reader.overrides(
                node, f"skus.{name}", allow=everything | {"signals", "category"}
            )

    # Cross-references: every named supplier and category must exist.
    levels: list[tuple[str, Overrides, yaml.Node]] = []
    if "defaults" in top:
        levels.append(("defaults", defaults, top["defaults"][1]))
    for section, table in (("categories", categories), ("skus", skus)):
        if section in top:
            nodes = {key: value for key, _, value in reader.mapping(top[section][1], section)}
            levels.extend((f"{section}.{name}", table[name], nodes[name]) for name in table)
    for where, rules, node in levels:
        if rules.supplier is not None and rules.supplier not in suppliers:
            raise reader.fail(
                _child(node, "supplier"),
                f"{where}.supplier",
                f"unknown supplier {rules.supplier!r}",
            )
        if rules.category is not None and rules.category not in categories:
            raise reader.fail(
                _child(node, "category"),
                f"{where}.category",
                f"unknown category {rules.category!r}",
            )
    return Policy(
        defaults=defaults,
        signals=signals,
        categories=categories,
        skus=skus,
        regions=regions,
        central_warehouse=central,
        suppliers=suppliers,
    )


def load_policy(path: Path | str) -> Policy:
    """Read a policy file (YAML); raises :class:`PolicyError` naming line and field.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
    ...     _ = f.write("central_warehouse: WH-central\\nregions: {east: WH-east}\\n")
    >>> load_policy(f.name).warehouse_for("east")
    'WH-east'
    >>> os.unlink(f.name)
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read policy file: {exc.strerror}", path=str(file)) from None
    return parse_policy(text, path=str(file))


def _child(node: yaml.Node, key: str) -> yaml.Node:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                child: yaml.Node = value_node
                return child
    return node
