"""How surprising is a count? Upper-tail probabilities for the live check.

A window's count is Poisson around the true rate, and the true rate is only known up
to the forecast's error. The count is therefore modelled as negative binomial (a Poisson
whose rate is itself uncertain) with the forecast as mean and ``mean + extra_variance``
as variance; with no extra variance it is plain Poisson. ``scipy.special`` gives both
tails in closed form (regularised incomplete gamma and beta), fast enough for a hot loop.
"""

from __future__ import annotations

import math

from scipy import special  # type: ignore[import-untyped]


def upper_tail(observed: float, expected: float, extra_variance: float = 0.0) -> float:
    """P(X >= observed) for a count with mean ``expected`` and variance ``expected + extra``.

    Parameters
    ----------
    observed
        The count seen (rounded up to a whole number).
    expected
        The count the forecast expects (must be >= 0).
    extra_variance
        Variance beyond Poisson noise: the uncertainty of the forecast itself.

    Examples
    --------
    >>> round(upper_tail(22, 10.0), 4)  # Poisson: 22 or more when 10 are expected
    0.0007
    >>> upper_tail(22, 10.0, extra_variance=25.0) > upper_tail(22, 10.0)  # less sure
    True
    >>> upper_tail(0, 3.0), upper_tail(1, 0.0)
    (1.0, 0.0)
    """
    k = math.ceil(observed - 1e-9)
    if k <= 0:
        return 1.0
    if expected <= 0.0:
        return 0.0
    if extra_variance <= expected * 1e-9:
        # P(X >= k) for Poisson(mu) is the regularised lower incomplete gamma P(k, mu).
        return float(special.gammainc(k, expected))
    variance = expected + extra_variance
    p = expected / variance
    n = expected * expected / extra_variance
    # Negative binomial (n, p): P(X >= k) = I_{1-p}(k, n).
    return float(special.betainc(k, n, 1.0 - p))
