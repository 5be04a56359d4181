"""Offline replay: log readers, forecast accuracy, inventory simulation, report and plots.

The replay drives the same decision core as the streaming service (``app.core.Engine``)
with the event clock, so a replayed log gives exactly the triggers the service would give.
"""
