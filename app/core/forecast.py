"""River where it helps: a challenger for a dense series' published forecast.

The decision core's baseline is the seasonal level of :mod:`app.core.series`. For a
series with volume in every window, :class:`Challenger` runs a River linear model that
learns a *correction* to the published forecast, in units of its own level::

    forecast = base + (base + 1) * correction(features)

Features are scale-free (lags divided by their level, cyclic hour of day and day of week),
standardised (River's ``StandardScaler`` arithmetic in a leaner form,
:class:`Standardizer`) and clipped; the target is clipped, the learning rate is small,
the gradient is clipped and the forecast itself is bounded, so no input can make it
diverge. It answers only while it beats the base (docs/DECISIONS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from river import linear_model, optim

from app.core.units import DAY_MS

#: Largest lag/level ratio and correction the model sees or gives (heavy tails are clipped).
RATIO_CAP = 50.0
#: Standardised features are clipped to this many standard deviations.
Z_CAP = 3.0
#: Lowest correction: a forecast never falls below 40 % of the level (minus 0.6) at once.
CORRECTION_FLOOR = -0.6
#: A challenger's forecast never falls below this share of the base forecast.
LEVEL_FLOOR_SHARE = 0.1
#: Already in [-1, 1]: passed through unscaled (a shared model trained on a short span of
#: hours would otherwise see the next hour as many standard deviations away).
CYCLIC = frozenset({"hour_sin", "hour_cos", "day_sin", "day_cos"})


def calendar_features(
    target_window_start: int, window_ms: int
) -> tuple[float, float, float, float]:
    """Cyclic hour of day and day of week (sin, cos) of a window's middle.

    >>> [round(v, 3) for v in calendar_features(0, 3_600_000)]  # Thursday 00:30 UTC
    [0.131, 0.991, 0.434, -0.901]
    """
    return _calendar(target_window_start, window_ms)


@lru_cache(maxsize=256)
def _calendar(target_window_start: int, window_ms: int) -> tuple[float, float, float, float]:
    """Cyclic hour of day and day of week of a window's middle (the same for every series)."""
    middle = target_window_start + window_ms // 2
    hour_angle = 2.0 * math.pi * (middle % DAY_MS) / DAY_MS
    day_angle = 2.0 * math.pi * (((middle // DAY_MS) + 3) % 7) / 7.0  # 1970-01-01 was a Thursday
    return math.sin(hour_angle), math.cos(hour_angle), math.sin(day_angle), math.cos(day_angle)


class Standardizer:
    """Running mean and variance per feature (Welford), like River's ``StandardScaler``.

    Same arithmetic as ``river.preprocessing.StandardScaler`` at a tenth of its cost
    (plain floats in lists instead of per-call dict bookkeeping), which matters when
    every SKU learns at every window close. Cyclic features pass through unscaled and
    standardised values are clipped to ``Z_CAP``.

    >>> s = Standardizer()
    >>> for v in (1.0, 2.0, 3.0):
    ...     s.learn({"lag1": v, "hour_sin": 0.5})
    >>> s.transform({"lag1": 3.0, "hour_sin": 0.5})
    {'lag1': 1.224744871391589, 'hour_sin': 0.5}
    """

    __slots__ = ("count", "m2", "means")

    def __init__(self) -> None:
        self.count = 0
        self.means: dict[str, float] = {}
        self.m2: dict[str, float] = {}

    def learn(self, x: dict[str, float]) -> None:
        """Fold one feature vector into the running statistics."""
        self.count += 1
        n = self.count
        means, m2 = self.means, self.m2
        for key, value in x.items():
            mean = means.get(key, 0.0)
            delta = value - mean
            mean += delta / n
            means[key] = mean
            m2[key] = m2.get(key, 0.0) + delta * (value - mean)

    def transform(self, x: dict[str, float]) -> dict[str, float]:
        """Standardise ``x`` with the statistics so far (0 where the variance is 0)."""
        n = self.count
        means, m2 = self.means, self.m2
        sqrt = math.sqrt
        out: dict[str, float] = {}
        for key, value in x.items():
            if key in CYCLIC:
                out[key] = value
                continue
            variance = m2.get(key, 0.0) / n if n else 0.0
            if variance <= 1e-12:
                out[key] = 0.0
                continue
            z = (value - means[key]) / sqrt(variance)
            out[key] = Z_CAP if z > Z_CAP else -Z_CAP if z < -Z_CAP else z
        return out

    def learn_transform(self, x: dict[str, float]) -> dict[str, float]:
        """:meth:`learn` then :meth:`transform` of the same ``x``, in one pass.

        Each key's standardised value depends only on that key's statistics, so folding
        and standardising key by key gives exactly ``learn(x); transform(x)``.

        >>> a, b = Standardizer(), Standardizer()
        >>> for v in (1.0, 2.0, 3.0, 0.5):
        ...     x = {"lag1": v, "hour_sin": 0.5}
        ...     a.learn(x)
        ...     assert a.transform(x) == b.learn_transform(x)
        >>> b.learn_transform({"lag1": 2.0, "hour_sin": 0.5})
        {'lag1': 0.3441236008058427, 'hour_sin': 0.5}
        """
        self.count += 1
        n = self.count
        means, m2 = self.means, self.m2
        sqrt = math.sqrt
        out: dict[str, float] = {}
        for key, value in x.items():
            try:
                mean, spread = means[key], m2[key]
            except KeyError:  # a key's first value
                mean, spread = means.get(key, 0.0), m2.get(key, 0.0)
            delta = value - mean
            mean += delta / n
            means[key] = mean
            spread = m2[key] = spread + delta * (value - mean)
            if key in CYCLIC:
                out[key] = value
                continue
            variance = spread / n
            if variance <= 1e-12:
                out[key] = 0.0
                continue
            z = (value - mean) / sqrt(variance)
            out[key] = Z_CAP if z > Z_CAP else -Z_CAP if z < -Z_CAP else z
        return out


class OnlineRegressor:
    """Standardised features + River ``LinearRegression`` that cannot diverge.

    Learns a bounded correction to the EWMA from scale-free features; inputs and the
    target are clipped, the gradient is clipped, and a non-finite state resets the model.

    Examples
    --------
    >>> model = OnlineRegressor()
    >>> x = {"lag1": 1.0, "hour_sin": 0.0}
    >>> model.predict(x)  # a fresh model corrects nothing: the EWMA answers
    0.0
    >>> for _ in range(200):
    ...     model.learn(x, 0.5)
    >>> 0.3 < model.predict(x) < 0.6
    True
    """

    __slots__ = ("last_window", "learning_rate", "model", "n_learned", "n_windows", "scaler")

    def __init__(self, learning_rate: float = 0.01) -> None:
        self.learning_rate = learning_rate
        self.n_learned = 0
        self.n_windows = 0
        self.last_window = -1
        self.scaler = Standardizer()
        self.model = self._fresh_model()

    def _fresh_model(self) -> linear_model.LinearRegression:
        return linear_model.LinearRegression(
            optimizer=optim.SGD(self.learning_rate),
            intercept_lr=self.learning_rate,
            l2=1e-4,
            clip_gradient=1.0,
            initializer=optim.initializers.Zeros(),
        )

    def __getstate__(self) -> dict[str, object]:
        return {
            "learning_rate": self.learning_rate,
            "n_learned": self.n_learned,
            "n_windows": self.n_windows,
            "last_window": self.last_window,
            "scaler": self.scaler,
            "model": self.model,
        }

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def _scaled(self, x: dict[str, float]) -> dict[str, float]:
        return self.scaler.transform(x)

    def predict(self, x: dict[str, float]) -> float:
        """The correction for features ``x``, clipped to ``[CORRECTION_FLOOR, RATIO_CAP]``."""
        correction = float(self.model.predict_one(self._scaled(x)))  # type: ignore[no-untyped-call]
        if not math.isfinite(correction):
            return 0.0
        return min(max(correction, CORRECTION_FLOOR), RATIO_CAP)

    def learn(self, x: dict[str, float], target: float, window_start: int | None = None) -> None:
        """Learn that features ``x`` were followed by correction ``target``.

        ``window_start`` (optional) counts distinct windows learned from, so a model fed
        by many SKUs at once is not called mature after one window.
        """
        if not math.isfinite(target):
            return
        if window_start is not None and window_start != self.last_window:
            self.last_window = window_start
            self.n_windows += 1
        target = min(max(target, -1.0), RATIO_CAP)
        self.model.learn_one(self.scaler.learn_transform(x), target)
        self.n_learned += 1
        if not math.isfinite(float(self.model.intercept)):
            self.scaler = Standardizer()
            self.model = self._fresh_model()
            self.n_learned = 0
            self.n_windows = 0


@dataclass(slots=True)
class Challenger:
    """A River model that corrects a dense series' published forecast, and answers only
    while it beats it.

    The base forecast is the series' short-memory mean times its seasonal factor
    (:mod:`app.core.series`). For a series with volume in every window (a dense one,
    the only kind where a per-series model has data to learn from: an intermittent
    series' windows without events are never visited), the model learns the correction
    ``(actual - base) / (base + 1)`` from scale-free features and is scored against the
    base on every window; it answers once it has learned ``min_learned`` windows and its
    weighted squared error is the lower one.

    Examples
    --------
    >>> challenger = Challenger()
    >>> for w in range(400):  # the base says 20; the truth alternates 10, 30
    ...     challenger.settle(w, 10.0 + 20.0 * (w % 2))
    ...     answer = challenger.prepare(w + 1, {"lag1": 1.0 + (w % 2), "hour_sin": 0.0}, 20.0)
    >>> answer is not None and answer < 20.0  # after a 30 comes a 10
    True
    """

    regressor: OnlineRegressor = field(default_factory=OnlineRegressor)
    pending: dict[str, float] | None = None
    pending_window: int = -1
    pending_base: float = 0.0
    pending_own: float = -1.0
    #: The model's forecast for ``pending_window`` when it answers, else -1.
    answer: float = -1.0
    base_sq: float = 0.0
    own_sq: float = 0.0
    n_compared: int = 0

    def settle(self, window: int, actual: float) -> None:
        """Learn from the window just closed, if a forecast was prepared for it."""
        if self.pending is None or window != self.pending_window:
            self.pending = None
            return
        base = self.pending_base
        if self.pending_own >= 0.0:
            a = max(1.0 / (self.n_compared + 1), 0.05)
            self.base_sq += a * ((actual - base) ** 2 - self.base_sq)
            self.own_sq += a * ((actual - self.pending_own) ** 2 - self.own_sq)
            self.n_compared += 1
        self.regressor.learn(self.pending, (actual - base) / (base + 1.0))
        self.pending = None

    def prepare(
        self, window: int, x: dict[str, float], base: float, *, min_learned: int = 24
    ) -> float | None:
        """Keep the features of the next window's forecast; the model's answer if it wins."""
        self.pending, self.pending_window, self.pending_base = x, window, base
        self.answer = -1.0
        if self.regressor.n_learned < min_learned:
            self.pending_own = -1.0
            return None
        correction = self.regressor.predict(x)
        own = max(base + (base + 1.0) * correction, LEVEL_FLOOR_SHARE * base)
        own = min(own, RATIO_CAP * (base + 1.0))
        self.pending_own = own
        if self.n_compared >= min_learned and self.own_sq < self.base_sq:
            self.answer = own
            return own
        return None
