"""Statistics for fault-injection campaigns: sample sizes and confidence intervals."""

from __future__ import annotations

import math

from flow.errors import FlowError


def z_score(confidence: float) -> float:
    """Two-sided normal quantile t for a confidence level (0.95 -> 1.95996)."""
    if not 0.0 < confidence < 1.0:
        raise FlowError(f"confidence must lie in (0, 1), got {confidence}")
    from scipy.stats import norm  # scipy.stats: ~0.9 s to import

    return float(norm.ppf(0.5 + confidence / 2.0))


def leveugle_sample_size(population: int, margin: float, confidence: float, p: float = 0.5) -> int:
    """Faults to inject for error margin ``margin`` at ``confidence`` (Leveugle et al., DATE 2009):
    n = N / (1 + e^2 (N - 1) / (t^2 p (1 - p))), rounded up and at most N."""
    if population < 1:
        return 0
    if not 0.0 < margin < 1.0:
        raise FlowError(f"margin must lie in (0, 1), got {margin}")
    if not 0.0 < p < 1.0:
        raise FlowError(f"p must lie in (0, 1), got {p}")
    t = z_score(confidence)
    n = population / (1.0 + margin**2 * (population - 1) / (t**2 * p * (1.0 - p)))
    return min(population, math.ceil(n - 1e-9))


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) when there are no trials."""
    if trials == 0:
        return 0.0, 1.0
    z = z_score(confidence)
    phat = successes / trials
    denom = 1.0 + z * z / trials
    centre = (phat + z * z / (2 * trials)) / denom
    half = z * math.sqrt(phat * (1 - phat) / trials + z * z / (4 * trials * trials)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends, not 3e-19 of rounding
    return low, 1.0 if successes == trials else min(1.0, centre + half)


def ratio_interval(
    k1: int, n1: int, k0: int, n0: int, scale: float = 1.0, confidence: float = 0.95
) -> tuple[float | None, float, float]:
    """Ratio ``scale * (k1/n1) / (k0/n0)`` of two independent binomial proportions, with an interval: the ratio of
    the bounds of their Wilson intervals, each at confidence sqrt(confidence), [scale lo1/hi0, scale hi1/lo0]. Both
    intervals hold together with probability ``confidence`` (independent campaigns), and then the ratio lies in
    this one: it covers at least that often (conservative), also with k1 = 0 or k0 = 0, where Katz's log interval
    is undefined. k0 = 0: the ratio is None (no reference failure) and the upper bound infinite."""
    each = math.sqrt(confidence)
    lo1, hi1 = wilson_interval(k1, n1, each)
    lo0, hi0 = wilson_interval(k0, n0, each)
    ratio = scale * (k1 / n1) / (k0 / n0) if k0 and n1 else None
    return ratio, scale * lo1 / hi0, scale * hi1 / lo0 if lo0 > 0 else math.inf
