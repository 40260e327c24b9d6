"""Small statistics without SciPy: Student-t quantiles, mean confidence intervals, a bootstrap CI of a speedup."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
"""Resamples of the paired bootstrap behind `speedup_interval`."""


def _t_central_probability(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer ``df``; closed form of Abramowitz & Stegun 26.7.3 and 26.7.4."""
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2:  # odd: (2/pi) * (theta + sin(theta) * (cos + 2/3 cos^3 + ... + (2*4..(df-3))/(1*3..(df-2)) cos^(df-2)))
        term = total = math.cos(theta) if df > 1 else 0.0
        for k in range(3, df - 1, 2):
            term *= c2 * (k - 1) / k
            total += term
        return 2.0 / math.pi * (theta + s * total)
    term = total = 1.0  # even: sin(theta) * (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ... + (1*3..(df-3))/(2*4..(df-2)) ...)
    for k in range(2, df - 1, 2):
        term *= c2 * (k - 1) / k
        total += term
    return s * total


def t_quantile(level: float, df: int) -> float:
    """The two-sided critical value ``t`` with ``P(|T| <= t) = level`` (``1.96..`` for large ``df`` at 0.95).

    Exact (bisection on the closed-form CDF) for ``df <= 1000``; above that, the Cornish-Fisher expansion around the
    normal quantile (relative error below 1e-8).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if df < 1:
        raise ValueError(f"df must be at least 1, got {df}")
    if df > 1000:
        from statistics import NormalDist

        z = NormalDist().inv_cdf(0.5 + level / 2)
        return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
    lo, hi = 0.0, 1.0
    while _t_central_probability(hi, df) < level:
        lo, hi = hi, hi * 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_central_probability(mid, df) < level:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return (lo + hi) / 2


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean with its Student-t confidence interval ``mean +- t * s / sqrt(n)``.

    Edge cases: a single value gives ``(v, -inf, inf)``; several equal values (including the infinite PSNR of
    identical images) give ``(v, v, v)``; infinite values that are not all equal give the mean (``inf``) and
    ``(min, max)`` of the values; any NaN gives NaN everywhere.
    """
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("mean_interval needs at least one value")
    if any(math.isnan(x) for x in xs):
        return math.nan, math.nan, math.nan
    if len(xs) == 1:
        return xs[0], -math.inf, math.inf
    if all(x == xs[0] for x in xs):
        return xs[0], xs[0], xs[0]
    if not all(math.isfinite(x) for x in xs):
        return sum(xs) / len(xs), min(xs), max(xs)
    n = len(xs)
    mean = math.fsum(xs) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(level, n - 1) * std / math.sqrt(n)
    return mean, mean - half, mean + half


def speedup_interval(
    baseline: Sequence[float], candidate: Sequence[float], level: float = 0.95, *, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``median(baseline) / median(candidate)``, resampling repeat indices in pairs.

    Baseline and candidate samples of the same repeat were timed back to back, so they are resampled together
    (this keeps slow drift out of the interval). Deterministic for a given ``seed``. Fewer than two repeats give
    ``(0, inf)``.
    """
    b, c = np.asarray(baseline, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    if b.shape != c.shape:
        raise ValueError(f"baseline and candidate need the same number of samples, got {b.size} and {c.size}")
    if b.size < 2:
        return 0.0, math.inf
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, b.size, size=(BOOTSTRAP_RESAMPLES, b.size))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.median(b[idx], axis=1) / np.median(c[idx], axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    return float(low), float(high)


def spread(samples: Sequence[float]) -> tuple[float, float, float]:
    """``(median, iqr, mad)`` of samples: the median, the interquartile range (linear interpolation), and the median
    absolute deviation from the median (unscaled)."""
    xs = np.asarray(samples, dtype=np.float64)
    if xs.size == 0:
        raise ValueError("spread needs at least one sample")
    median = float(np.median(xs))
    q1, q3 = np.quantile(xs, [0.25, 0.75])
    return median, float(q3 - q1), float(np.median(np.abs(xs - median)))
