"""The one error type of the local broker: its message is a sentence meant for a person."""

from __future__ import annotations


class LocalKafkaError(RuntimeError):
    """The local broker cannot be fetched, started or stopped; ``str(error)`` says why."""
