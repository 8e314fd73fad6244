"""Small statistics: percentiles, and confidence intervals for A/B differences.

Percentiles use linear interpolation between closest ranks (PostgreSQL's
`percentile_cont`, numpy's default), so local and team reports agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

# Two-sided 95% critical values of Student's t for 1..30 degrees of freedom.
_T95 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]
Z95 = NormalDist().inv_cdf(0.975)


def quantile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) of already sorted values; None when empty."""
    n = len(sorted_values)
    if n == 0:
        return None
    pos = (n - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def rank_error95(n: int, q: float) -> float:
    """Half-width of the 95% interval of the rank (as a fraction) of a sample q-quantile from n values."""
    return Z95 * math.sqrt(q * (1 - q) / max(n, 1))


def quantiles(values: Sequence[float], qs: Sequence[float]) -> list[float | None]:
    ordered = sorted(values)
    return [quantile(ordered, q) for q in qs]


def t95(df: float) -> float:
    """Two-sided 95% t critical value (conservative: df rounded down)."""
    if df < 1:
        return _T95[0]
    d = int(df)
    return _T95[d - 1] if d <= 30 else Z95 + 2.4 / d  # ~t for large df


@dataclass
class Diff:
    """Difference of group A minus group B with a 95% confidence interval."""

    n_a: int
    n_b: int
    a: float | None
    b: float | None
    diff: float | None
    low: float | None
    high: float | None

    @property
    def relative(self) -> tuple[float | None, float | None, float | None]:
        """(diff, low, high) as fractions of B's value (None if B is 0 or missing)."""
        if self.b in (None, 0) or self.diff is None or self.low is None or self.high is None:
            return None, None, None
        assert self.b is not None
        return self.diff / abs(self.b), self.low / abs(self.b), self.high / abs(self.b)

    @property
    def significant(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def _mean_var(xs: Sequence[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    v = sum((x - m) ** 2 for x in xs) / (len(xs) - 1) if len(xs) > 1 else 0.0
    return m, v


Moments = tuple[int, float, float]  # (n, mean, sample variance); mean and variance 0.0 when n is 0


def moments(xs: Sequence[float]) -> Moments:
    return (len(xs), *_mean_var(xs)) if xs else (0, 0.0, 0.0)


def moments_of_sums(n: float, total: float, squares: float) -> Moments:
    """Moments from n, the sum and the sum of squares (mergeable per day; for integers exact, for
    other values equal to the two-pass figures to about 1e-12 relative)."""
    k = int(n)
    if k == 0:
        return (0, 0.0, 0.0)
    mean = total / k
    var = max(0.0, (squares - total * mean) / (k - 1)) if k > 1 else 0.0
    return (k, mean, var)


def welch(a: Sequence[float], b: Sequence[float]) -> Diff:
    """Difference of means with Welch's t interval (unequal variances)."""
    return welch_moments(moments(a), moments(b))


def welch_moments(a: Moments, b: Moments) -> Diff:
    """`welch` from each group's moments."""
    (na, ma, va), (nb, mb, vb) = a, b
    if not na or not nb:
        return Diff(na, nb, ma if na else None, mb if nb else None, None, None, None)
    diff = ma - mb
    if na < 2 or nb < 2:
        return Diff(na, nb, ma, mb, diff, None, None)
    se2 = va / na + vb / nb
    if se2 == 0:
        return Diff(na, nb, ma, mb, diff, diff, diff)
    df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    half = t95(df) * math.sqrt(se2)
    return Diff(na, nb, ma, mb, diff, diff - half, diff + half)


def proportion_diff(x_a: int, n_a: int, x_b: int, n_b: int) -> Diff:
    """Difference of two proportions with Newcombe's hybrid Wilson score interval."""
    if n_a == 0 or n_b == 0:
        return Diff(n_a, n_b, x_a / n_a if n_a else None, x_b / n_b if n_b else None, None, None, None)
    pa, pb = x_a / n_a, x_b / n_b
    la, ua = wilson(x_a, n_a)
    lb, ub = wilson(x_b, n_b)
    d = pa - pb
    low = d - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2)
    high = d + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)
    return Diff(n_a, n_b, pa, pb, d, low, high)


def wilson(x: int, n: int) -> tuple[float, float]:
    """Wilson score 95% interval for a proportion x/n."""
    if n == 0:
        return 0.0, 1.0
    p = x / n
    z2 = Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)
