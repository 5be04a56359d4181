"""Policy files: the sample loads, settings resolve, errors name the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core import Policy, PolicyError, load_policy, parse_policy
from app.events.model import Signal

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "policy.yaml"


def test_the_sample_policy_loads_and_resolves() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.warehouse_for("east") == "WH-east"
    assert policy.warehouse_for("mars") == "WH-central"
    assert policy.category_of("KEY-ELDEN-RING") == "game-keys"
    terms = policy.order_terms("KEY-ELDEN-RING", "game-keys")
    assert (terms.supplier.name, terms.pack_size, terms.max_order) == ("S-7", 10, 3000)
    assert terms.cooldown_ms == 60 * 60_000
    assert policy.thresholds("KEY-ELDEN-RING", "game-keys", Signal.CART_ADD).margin == 0.25
    # The category's margin beats the global per-signal one; an unknown SKU takes the
    # category it arrives with.
    assert policy.thresholds("GIFT-AMAZON-25", "gift-cards", Signal.ORDER).margin == 0.4
    assert policy.thresholds("unknown", "gift-cards", Signal.ORDER).margin == 0.4
    assert policy.thresholds("unknown", None, Signal.ORDER).margin == 0.3
    assert policy.thresholds("unknown", None, Signal.SEARCH).evidence == 3e-5
    assert policy.thresholds("unknown", None, Signal.SEARCH).min_volume == 5
    # the sample states the built-in per-signal defaults
    builtin = Policy.default()
    for signal in Signal:
        assert policy.thresholds("unknown", None, signal) == builtin.thresholds(
            "unknown", None, signal
        )


def test_category_settings_apply_where_no_signal_setting_is_more_specific() -> None:
    policy = parse_policy(
        """
categories:
  gift-cards: {margin: 0.4, signals: {search: {margin: 0.9}}}
"""
    )
    assert policy.thresholds("G", "gift-cards", Signal.ORDER).margin == 0.4
    assert policy.thresholds("G", "gift-cards", Signal.SEARCH).margin == 0.9


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("defaults:\n  margin: lots\n", 2, "defaults.margin", "must be a number"),
        ("defaults:\n  margin: -1\n", 2, "defaults.margin", "between"),
        ("defaults:\n  pack_size: 2.5\n", 2, "defaults.pack_size", "whole number"),
        ("skus:\n  A:\n    supplier: S-9\n", 3, "skus.A.supplier", "unknown supplier 'S-9'"),
        ("skus:\n  A:\n    category: toys\n", 3, "skus.A.category", "unknown category 'toys'"),
        ("categories:\n  toys:\n    colour: red\n", 3, "categories.toys.colour", "unknown setting"),
        ("signals:\n  likes: {margin: 1}\n", 2, "signals.likes", "unknown signal"),
        (
            "suppliers:\n  S-1: {capacity_per_day: 5}\n",
            2,
            "suppliers.S-1.lead_time_hours",
            "required",
        ),
        ("regions: [east, west]\n", 1, "regions", "must be a mapping"),
        ("warehouses: {}\n", 1, "warehouses", "unknown section"),
        ("defaults:\n  min_order: 9\n  max_order: 5\n", 2, "defaults.min_order", "max_order"),
        ("defaults:\n  margin: 0.1\n  margin: 0.2\n", 3, "defaults.margin", "appears twice"),
    ],
)
def test_errors_name_the_line_and_the_field(text: str, line: int, field: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, path="shop.yaml")
    error = caught.value
    assert (error.line, error.field) == (line, field)
    assert str(error).startswith(f"shop.yaml:{line}: {field}: ")
    assert message in str(error)


def test_broken_yaml_and_missing_files_are_policy_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"p.yaml:3: not valid YAML"):
        parse_policy("defaults:\n  margin: [1\n", path="p.yaml")
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(tmp_path / "missing.yaml")


def test_an_empty_file_is_the_default_policy(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_policy(empty).central_warehouse == "WH-central"
