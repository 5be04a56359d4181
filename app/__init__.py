"""Surge replenishment: real-time replenishment triggers from shop demand signals."""

__version__ = "0.1.0"
