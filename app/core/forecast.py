"""Online demand forecasting per window: history, features and a River regressor.

Every forecast starts from the series' exponentially weighted mean (EWMA) and a River
linear model learns a *correction* to it, in units of the series' own level::

    forecast = level + (level + 1) * correction(features)

Features are scale-free (lags and leading signals divided by their level, cyclic hour of
day and day of week, log of the level), standardised (River's ``StandardScaler``
arithmetic in a leaner form, :class:`Standardizer`) and clipped; the target is clipped,
the learning rate is small, the gradient is clipped, and the forecast itself is clipped to
``[0, cap_multiple * (recent max + 1)]``. A fresh model therefore answers the EWMA, and
no input can make it diverge. Because features are
scale-free, one model can be shared by a whole category (or by every SKU) and applied to
a SKU it has never seen: that is the cold-start chain ``sku -> category -> global -> ewma``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from river import linear_model, optim

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
LAGS = 3
#: Largest lag/level ratio and correction the model sees or gives (heavy tails are clipped).
RATIO_CAP = 50.0
#: Standardised features are clipped to this many standard deviations.
Z_CAP = 3.0
#: Lowest correction: a forecast never falls below 40 % of the level (minus 0.6) at once.
CORRECTION_FLOOR = -0.6
#: A forecast never falls below this share of the series' level (see :func:`bounded_forecast`).
LEVEL_FLOOR_SHARE = 0.1
#: Already in [-1, 1]: passed through unscaled (a shared model trained on a short span of
#: hours would otherwise see the next hour as many standard deviations away).
CYCLIC = frozenset({"hour_sin", "hour_cos", "day_sin", "day_cos"})

MODEL_SKU_REGION = "sku+region"
MODEL_SKU = "sku"
MODEL_CATEGORY = "category"
MODEL_GLOBAL = "global"
MODEL_EWMA = "ewma"


@dataclass(slots=True)
class SeriesHistory:
    """What one demand series remembers between windows: a few floats.

    Examples
    --------
    >>> h = SeriesHistory()
    >>> for volume in (10, 12, 8):
    ...     h.observe(volume, forecast=None)
    >>> h.level, h.lags, h.n_closed
    (10.0, [8.0, 12.0, 10.0], 3)
    """

    level: float = 0.0
    n_closed: int = 0
    lags: list[float] = field(default_factory=lambda: [0.0] * LAGS)
    recent_max: float = 0.0
    err_abs: float = 0.0
    err_sq: float = 0.0
    n_err: int = 0

    def observe(
        self,
        volume: float,
        forecast: float | None,
        *,
        alpha: float = 0.1,
        error_alpha: float = 0.05,
        max_decay: float = 0.99,
    ) -> None:
        """Fold in a closed window's volume (and the error of its forecast, if any)."""
        if forecast is not None:
            error = volume - forecast
            a = max(1.0 / (self.n_err + 1), error_alpha)
            self.err_abs += a * (abs(error) - self.err_abs)
            self.err_sq += a * (error * error - self.err_sq)
            self.n_err += 1
        a = max(1.0 / (self.n_closed + 1), alpha)
        self.level += a * (volume - self.level)
        self.lags = [float(volume), *self.lags[: LAGS - 1]]
        self.recent_max = max(float(volume), self.recent_max * max_decay)
        self.n_closed += 1

    def extra_variance(
        self,
        forecast: float,
        *,
        prior_rel: float = 0.4,
        floor_rel: float = 0.05,
        prior_n: int = 6,
        alpha: float = 0.1,
    ) -> float:
        """Forecast uncertainty beyond Poisson noise, for the evidence test (count units^2).

        The measured squared error minus the Poisson part (the forecast itself), blended
        in over the first ``prior_n`` forecasts from a wide prior (``prior_rel`` x forecast
        as standard deviation). Never below the sampling variance of an EWMA of Poisson
        counts (``forecast x alpha / (2 - alpha)``) plus ``floor_rel`` x forecast squared
        (misspecification the measurement has not caught yet).

        >>> SeriesHistory().extra_variance(10.0)  # nothing measured yet: the prior
        16.0
        >>> round(SeriesHistory(err_sq=10.0, n_err=30).extra_variance(10.0), 3)  # the floor
        0.776
        """
        prior = (prior_rel * forecast) ** 2
        measured = max(self.err_sq - forecast, 0.0)
        weight = min(self.n_err / prior_n, 1.0) if prior_n > 0 else 1.0
        extra = weight * measured + (1.0 - weight) * prior
        floor = forecast * alpha / (2.0 - alpha) + (floor_rel * forecast) ** 2
        return max(extra, floor)

    def error_std(self) -> float:
        """Root mean squared forecast error (count units); 0 before the first forecast."""
        return math.sqrt(self.err_sq)


def features(
    own: SeriesHistory,
    searches: SeriesHistory,
    cart_adds: SeriesHistory,
    target_window_start: int,
    window_ms: int,
) -> dict[str, float]:
    """Scale-free features to forecast the window starting at ``target_window_start``.

    Own lags and the leading signals (searches and cart adds of the last two closed
    windows) are divided by their own level; time enters as cyclic hour of day and day
    of week (UTC) of the target window's middle.

    >>> h = SeriesHistory(level=9.0, lags=[10.0, 8.0, 9.0])
    >>> x = features(h, h, h, target_window_start=0, window_ms=300_000)
    >>> x["lag1"], round(x["hour_cos"], 3)
    (1.0, 1.0)
    """
    scale = own.level + 1.0
    search_scale = searches.level + 1.0
    cart_scale = cart_adds.level + 1.0
    lags, search_lags, cart_lags = own.lags, searches.lags, cart_adds.lags
    hour_sin, hour_cos, day_sin, day_cos = _calendar(target_window_start, window_ms)
    return {
        "lag1": min(lags[0] / scale, RATIO_CAP),
        "lag2": min(lags[1] / scale, RATIO_CAP),
        "lag3": min(lags[2] / scale, RATIO_CAP),
        "search1": min(search_lags[0] / search_scale, RATIO_CAP),
        "search2": min(search_lags[1] / search_scale, RATIO_CAP),
        "cart1": min(cart_lags[0] / cart_scale, RATIO_CAP),
        "cart2": min(cart_lags[1] / cart_scale, RATIO_CAP),
        "log_level": math.log1p(own.level),
        "hour_sin": hour_sin,
        "hour_cos": hour_cos,
        "day_sin": day_sin,
        "day_cos": day_cos,
    }


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


def bounded_forecast(
    history: SeriesHistory, level: float, correction: float, cap_multiple: float = 4.0
) -> float:
    """Turn a correction into a forecast in ``[0.1 x level, cap_multiple * (recent max + 1)]``.

    The floor keeps a sparse series (level below 1.5 a window, where the lowest correction
    ``(level + 1) x -0.6`` reaches 0) from being forecast at exactly 0 for as long as
    a shared model keeps correcting it down: the forecast keeps a tenth of the smoothly
    decaying level. A higher floor overrides real seasonality (shops closed at night) and
    inflates sparse forecasts (replays: docs/DECISIONS.md, "Forecast").

    >>> bounded_forecast(SeriesHistory(recent_max=10.0), level=10.0, correction=0.1)
    11.1
    >>> bounded_forecast(SeriesHistory(recent_max=10.0), level=10.0, correction=50.0)
    44.0
    >>> bounded_forecast(SeriesHistory(recent_max=1.0), level=0.5, correction=-0.6)
    0.05
    >>> bounded_forecast(SeriesHistory(), level=0.0, correction=-1.0)
    0.0
    """
    value = level + (level + 1.0) * correction
    if not math.isfinite(value):
        value = level
    floor = LEVEL_FLOOR_SHARE * max(level, 0.0)
    return min(max(value, floor), cap_multiple * (history.recent_max + 1.0))


@dataclass(slots=True)
class SeriesForecaster:
    """One forecast unit (a SKU, or a SKU in one region, for one signal).

    Holds the history, an optional own River model, the features of the pending
    forecast (to learn from when its window closes) and the forecasts of the next and
    the previous window. :meth:`step` runs the unit on its own (EWMA, then its own model
    once created); the engine drives the same parts with the cold-start chain.

    The own model is a challenger: it predicts every window once trained, its squared
    error is tracked next to the EWMA's, and it answers only while it beats the EWMA
    (on stationary noise a fitted model mostly fits the noise).

    Examples
    --------
    >>> unit = SeriesForecaster(regressor=OnlineRegressor())
    >>> for w in range(300):  # alternating 10, 30: the EWMA says 20, the model learns
    ...     value = unit.step(10.0 + 20.0 * (w % 2), w * 300_000, 300_000)
    >>> unit.next_model, value < 20.0  # after a 30 comes a 10
    ('sku', True)
    """

    history: SeriesHistory = field(default_factory=SeriesHistory)
    regressor: OnlineRegressor | None = None
    pending: dict[str, float] | None = None
    pending_level: float = 0.0
    next_ws: int = -1
    next_value: float = 0.0
    next_model: str = ""
    prev_ws: int = -1
    prev_value: float = 0.0
    prev_model: str = ""
    #: The own model's forecast for ``next_ws`` (-1: none), answered or not.
    own_value: float = -1.0
    #: Exponentially weighted squared errors of the own model and of the EWMA.
    own_sq: float = 0.0
    base_sq: float = 0.0
    n_compared: int = 0

    def own_answer(
        self,
        x: dict[str, float],
        *,
        min_learned: int = 12,
        min_compared: int = 12,
        cap_multiple: float = 4.0,
    ) -> float | None:
        """The own model's forecast if it is trained and beats the EWMA, else ``None``.

        Computes (and keeps, to score it later) the model's forecast either way.
        """
        regressor = self.regressor
        if regressor is None or regressor.n_learned < min_learned:
            return None
        level = self.history.level
        value = bounded_forecast(self.history, level, regressor.predict(x), cap_multiple)
        self.own_value = value
        if self.n_compared >= min_compared and self.own_sq < self.base_sq:
            return value
        return None

    def forecast_for(self, window_start: int) -> tuple[float, str] | None:
        """The forecast standing for a window (the latest one while the previous is in grace)."""
        if window_start == self.next_ws or (self.next_ws >= 0 and window_start > self.next_ws):
            return self.next_value, self.next_model
        if window_start == self.prev_ws:
            return self.prev_value, self.prev_model
        return None

    def settle(
        self, window_start: int, volume: float, *, alpha: float = 0.1
    ) -> tuple[dict[str, float], float] | None:
        """Close a window: record the error, let the own model learn, update history.

        Returns the (features, target) pair the shared category/global models may learn
        from, or ``None`` when no forecast was pending for this window.
        """
        sample: tuple[dict[str, float], float] | None = None
        forecast: float | None = None
        if self.next_ws == window_start:
            forecast = self.next_value
            if self.pending is not None and self.own_value >= 0.0:
                a = max(1.0 / (self.n_compared + 1), 0.05)
                self.base_sq += a * ((volume - self.pending_level) ** 2 - self.base_sq)
                self.own_sq += a * ((volume - self.own_value) ** 2 - self.own_sq)
                self.n_compared += 1
            if self.pending is not None:
                target = (volume - self.pending_level) / (self.pending_level + 1.0)
                sample = (self.pending, target)
                if self.regressor is not None:
                    self.regressor.learn(self.pending, target)
        self.history.observe(volume, forecast, alpha=alpha)
        self.pending = None
        self.own_value = -1.0
        return sample

    def prepare(self, x: dict[str, float]) -> None:
        """Keep ``x`` as the features of the forecast about to be published."""
        self.pending = x
        self.pending_level = self.history.level

    def publish(self, window_start: int, value: float, model: str) -> None:
        """Make ``value`` the forecast for ``window_start``; the old one becomes previous."""
        self.prev_ws, self.prev_value, self.prev_model = (
            self.next_ws,
            self.next_value,
            self.next_model,
        )
        self.next_ws, self.next_value, self.next_model = window_start, value, model

    def step(
        self,
        volume: float,
        window_start: int,
        window_ms: int,
        *,
        searches: SeriesHistory | None = None,
        cart_adds: SeriesHistory | None = None,
        min_learned: int = 12,
    ) -> float:
        """Close ``window_start`` with ``volume`` and return the next window's forecast."""
        self.settle(window_start, volume)
        target_ws = window_start + window_ms
        x = features(
            self.history, searches or self.history, cart_adds or self.history, target_ws, window_ms
        )
        self.prepare(x)
        own = self.own_answer(x, min_learned=min_learned)
        if own is not None:
            value, model = own, MODEL_SKU
        else:
            value, model = bounded_forecast(self.history, self.history.level, 0.0), MODEL_EWMA
        self.publish(target_ws, value, model)
        return value


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
