"""One demand series (a SKU, or a SKU in a region, for one signal): its baseline and live windows.

The baseline a surge is measured against must not chase the surge, and it must cost
nothing while the series is idle. So a series keeps a handful of numbers:

* ``level``: the *deseasonalised* mean volume per window, an exponentially weighted mean
  whose weight per window is small (a time constant of about a day, see
  :func:`level_alpha`); the first windows form a plain running mean, so a new series is
  not anchored to zero. Multiplied by the pooled seasonal factor of a window
  (:mod:`app.core.seasonal`) it is the expected volume of that window.
* ``recent``: the same mean with a much shorter memory (hours): the *forecast* of the
  next windows that ``demand.forecasts``, the replay's accuracy and its order-up-to
  simulation use. It may follow a surge; the surge baseline (``level``) may not.
* ``square``: the same weighted mean of squared volumes, for the dispersion the evidence
  test needs (bulky orders and intermittent demand are far from Poisson).
* ``n`` and ``nonzero``: windows folded, and how many had any volume. ``level`` is the
  TSB estimate of an intermittent series (probability of demand x size, both smoothed the
  same way), so a slow mover needs no separate model; ``nonzero / n`` says which it is.
* ``upto``: every window before it is folded in.

An idle stretch of ``k`` windows folds in closed form (:meth:`Series.skip`): the running
mean part scales by ``n / (n + k)`` and the rest decays by ``(1 - alpha)^k``, so a series
touched once a week costs the same as one touched every minute.

The open windows and the last closed ones live in a :class:`~app.core.windows.Live`
object that exists only while the series is active.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from app.core.windows import Cell, Live

if TYPE_CHECKING:
    from app.core.forecast import Challenger

_State = tuple[float, float, float, int, int, int, Live | None, "Challenger | None"]

__all__ = ["Cell", "Live", "Series", "level_alpha"]


def level_alpha(window_ms: int, time_constant_ms: int, ceiling: float) -> float:
    """Weight of one window in the level: ``1 - exp(-window / time constant)``, capped.

    >>> round(level_alpha(300_000, 86_400_000, 0.1), 5)  # 5-minute windows, 1-day constant
    0.00347
    >>> level_alpha(86_400_000, 86_400_000, 0.1)  # daily windows: the cap
    0.1
    """
    return min(-math.expm1(-window_ms / time_constant_ms), ceiling)


def _decay(n: int, k: int, alpha: float) -> float:
    """Factor ``k`` empty windows apply to a mean of ``n`` windows (running mean, then EWMA)."""
    warm = max(0, min(k, math.ceil(1.0 / alpha) - 1 - n))  # running-mean windows left
    factor = n / (n + warm) if warm and n else 1.0
    rest = k - warm
    if rest:
        factor *= (1.0 - alpha) ** rest
    return factor


class Series:
    """Baseline and live windows of one series.

    Examples
    --------
    >>> s = Series(upto=0)
    >>> for w in range(4):
    ...     s.observe(10.0, alpha=0.01)
    >>> s.level, s.n
    (10.0, 4)
    >>> s.skip(4, alpha=0.01)  # four empty windows, still in the running-mean phase
    >>> s.level, s.n
    (5.0, 8)
    """

    __slots__ = ("level", "live", "model", "n", "nonzero", "recent", "square", "upto")

    def __init__(self, upto: int) -> None:
        self.level = 0.0
        self.recent = 0.0
        self.square = 0.0
        self.n = 0
        self.nonzero = 0
        self.upto = upto
        self.live: Live | None = None
        #: A River challenger of a dense series' published forecast (app.core.forecast).
        self.model: Challenger | None = None

    def __getstate__(self) -> _State:
        return (
            self.level,
            self.recent,
            self.square,
            self.n,
            self.nonzero,
            self.upto,
            self.live,
            self.model,
        )

    def __setstate__(self, state: _State) -> None:
        (
            self.level,
            self.recent,
            self.square,
            self.n,
            self.nonzero,
            self.upto,
            self.live,
            self.model,
        ) = state

    def copy(self) -> Series:
        """A baseline copy without live windows (a new all-regions series starts from it)."""
        twin = Series(self.upto)
        twin.level, twin.recent, twin.square = self.level, self.recent, self.square
        twin.n, twin.nonzero = self.n, self.nonzero
        return twin

    def observe(
        self,
        volume: float,
        *,
        alpha: float,
        weight: float = 1.0,
        fast: float = 0.0,
        season: float = 1.0,
        spread: bool = True,
    ) -> None:
        """Fold one closed window's deseasonalised volume in (``weight`` < 1: a surge window).

        ``fast`` is the weight of a window in ``recent`` (0: ``recent`` follows ``level``).
        ``season`` is the seasonal factor the volume was divided by: the squares are kept
        as ``volume**2 x season`` (the raw count's square over the factor), so Poisson
        counts give a dispersion of 1 however deep the daily shape is. Squaring the
        deseasonalised volume instead inflates it by the mean of ``1 / season``: a quiet
        night's single search divided by a factor of 0.2 counts as five. ``spread=False``
        (a window inside a surge) leaves the dispersion alone: a surge is not noise.

        >>> night = [0, 0, 0, 0, 0, 0, 1, 1, 1, 2]  # Poisson-like, mean 0.5 (factor 0.25)
        >>> day = [1, 2, 3, 3, 3, 4, 4, 5, 5, 5]  # mean 3.5 (factor 1.75)
        >>> flat, shaped = Series(upto=0), Series(upto=0)
        >>> for n, d in zip(night, day):
        ...     for count, factor in ((n, 0.25), (d, 1.75)):
        ...         flat.observe(count / factor, alpha=0.01)
        ...         shaped.observe(count / factor, alpha=0.01, season=factor)
        >>> round(flat.dispersion(), 2), round(shaped.dispersion(), 2)
        (1.93, 1.0)
        """
        warm = 1.0 / (self.n + 1)
        a = max(alpha, warm) * weight
        self.level += a * (volume - self.level)
        f = max(fast, warm) if fast > 0 else a
        self.recent += f * (volume - self.recent)
        if spread:
            self.square += a * (volume * volume * season - self.square)
        self.n += 1
        if volume > 0:
            self.nonzero += 1

    def skip(self, k: int, *, alpha: float, fast: float = 0.0) -> None:
        """Fold ``k`` empty windows in at once (closed form, O(1))."""
        if k <= 0:
            return
        factor = _decay(self.n, k, alpha)
        self.recent *= _decay(self.n, k, fast) if fast > 0 else factor
        self.level *= factor
        self.square *= factor
        self.n += k

    def recent_after(self, k: int, *, fast: float) -> float:
        """``recent`` after ``k`` more empty windows, without folding them.

        >>> s = Series(upto=0); s.recent, s.n = 8.0, 100
        >>> s.recent_after(3, fast=0.5), s.recent
        (1.0, 8.0)
        """
        if k <= 0:
            return self.recent
        return self.recent * _decay(self.n, k, fast)

    def skipped_sum(self, k: int, *, alpha: float) -> float:
        """Sum of ``recent`` over the next ``k`` empty windows (their forecasts / season).

        Closed form: ``n / (n + j)`` summed as a logarithm in the running-mean phase, a
        geometric series after it.

        >>> s = Series(upto=0); s.recent, s.n = 2.0, 1000
        >>> round(s.skipped_sum(3, alpha=0.5), 3)  # 2 + 1 + 0.5
        3.5
        """
        if k <= 0 or self.recent <= 0:
            return 0.0
        n, level, total = self.n, self.recent, 0.0
        warm = max(0, min(k, math.ceil(1.0 / alpha) - 1 - n))
        if warm and n:
            total += level * n * math.log((n + warm - 0.5) / (n - 0.5))
            level *= n / (n + warm)
        elif warm:
            total += level * warm
        rest = k - warm
        if rest:
            total += level * -math.expm1(rest * math.log1p(-alpha)) / alpha
        return total

    def variance(self) -> float:
        """Variance of a window's deseasonalised volume (weighted, never negative)."""
        return max(self.square - self.level * self.level, 0.0)

    def dispersion(self) -> float:
        """Variance over mean: 1 for Poisson counts, more for bulky or intermittent demand.

        >>> s = Series(upto=0)
        >>> for v in (0, 0, 0, 12):
        ...     s.observe(float(v), alpha=0.01)
        >>> s.dispersion()  # one 12 in four windows: mean 3, variance 27
        9.0
        """
        if self.level <= 0:
            return 1.0
        return max(self.variance() / self.level, 1.0)

    def cell(self, window_start: int) -> tuple[Cell, bool]:
        """The open cell of a window, and whether it was created now."""
        live = self.live
        if live is None:
            live = self.live = Live()
        cell = live.cells.get(window_start)
        if cell is None:
            cell = live.cells[window_start] = Cell()
            return cell, True
        return cell, False
