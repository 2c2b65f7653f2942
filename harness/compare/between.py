"""Runs as the unit: between-run statistics of repeated runs (`--repeat N`) and a test between two groups.

Each run contributes one value per statistic (its summary's ttft.p50, throughput, ...). Per group: the mean,
the sample standard deviation, a Student t-interval of the mean and the coefficient of variation (sd / mean).
Between groups: Welch's t-test (unequal variances, Welch-Satterthwaite degrees of freedom) and the t-interval
of the difference of means. The t distribution is computed here (regularized incomplete beta), no scipy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

MIN_RUNS = 3  # fewer runs per side: no between-run test (compare falls back to within-run significance)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def t_sf2(t: float, df: float) -> float:
    """Two-sided p-value P(|T| >= |t|) of Student's t with df degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(p: float, df: float) -> float:
    """The p-quantile (0.5 < p < 1) of Student's t, by bisection on the two-sided tail."""
    target = 2.0 * (1.0 - p)  # two-sided tail probability at the quantile
    lo, hi = 0.0, 1.0
    while t_sf2(hi, df) > target:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_sf2(mid, df) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


@dataclass(frozen=True)
class GroupStats:
    n: int
    mean: float
    sd: float  # sample standard deviation (n - 1)
    ci: tuple[float, float] | None  # t-interval of the mean (None below 2 runs)
    cv: float | None  # sd / |mean| (None when the mean is 0)

    @property
    def width_rel(self) -> float | None:
        """Full width of the interval relative to the mean (0.05 = 5 %)."""
        if self.ci is None or not self.mean:
            return None
        return (self.ci[1] - self.ci[0]) / abs(self.mean)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ci"] = list(self.ci) if self.ci else None
        d["width_rel"] = self.width_rel
        return d


def group_stats(values: list[float], confidence: float = 0.95) -> GroupStats:
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    ci = None
    if n > 1:
        h = t_quantile(0.5 + confidence / 2.0, n - 1) * sd / math.sqrt(n)
        ci = (mean - h, mean + h)
    return GroupStats(n, mean, sd, ci, sd / abs(mean) if mean else None)


@dataclass(frozen=True)
class Welch:
    diff: float  # mean(new) - mean(base)
    ci: tuple[float, float]  # t-interval of the difference
    t: float
    df: float
    p: float

    @property
    def significant(self) -> bool:
        return self.ci[0] > 0 or self.ci[1] < 0


def welch(base: list[float], new: list[float], confidence: float = 0.95) -> Welch:
    """Welch's t-test of mean(new) - mean(base); each side needs at least 2 values."""
    a, b = group_stats(base), group_stats(new)
    if a.n < 2 or b.n < 2:
        raise ValueError("Welch's test needs at least 2 values per side")
    diff = b.mean - a.mean
    va, vb = a.sd**2 / a.n, b.sd**2 / b.n
    se = math.sqrt(va + vb)
    if se == 0.0:  # both sides constant: the difference is exact
        return Welch(diff, (diff, diff), math.inf if diff else 0.0, float(a.n + b.n - 2), 0.0 if diff else 1.0)
    df = (va + vb) ** 2 / ((va**2 / (a.n - 1) if va else 0.0) + (vb**2 / (b.n - 1) if vb else 0.0))
    t = diff / se
    h = t_quantile(0.5 + confidence / 2.0, df) * se
    return Welch(diff, (diff - h, diff + h), t, df, t_sf2(t, df))
