"""Synthetic shop traffic: a pure generator, a paced Kafka/JSONL producer, and the demo."""

from app.traffic.catalog import Catalog, Product, build_catalog
from app.traffic.generator import Record, TopicNames, TrafficGenerator, TrafficPlan
from app.traffic.scenario import (
    Envelope,
    LaunchSurge,
    RegionalSurge,
    Scenario,
    Stockout,
    default_scenario,
    demo_scenario,
)

__all__ = [
    "Catalog",
    "Envelope",
    "LaunchSurge",
    "Product",
    "Record",
    "RegionalSurge",
    "Scenario",
    "Stockout",
    "TopicNames",
    "TrafficGenerator",
    "TrafficPlan",
    "build_catalog",
    "default_scenario",
    "demo_scenario",
]
