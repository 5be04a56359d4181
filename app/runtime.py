"""Process-wide runtime settings shared by the long-running commands (worker, replay)."""

from __future__ import annotations

import gc

#: Allocations between young-generation collections. The engine keeps one small object
#: per active series; CPython's default (700) runs a full collection over all of them
#: every few batches, a pause of 200-300 ms with 100k SKUs known (bench/replay_scale.py).
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Collect less often: the engine's state is long-lived and has no reference cycles.

    >>> tune_gc(); gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
    True
    """
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, max(middle, 50), max(old, 100))
