"""Two ranks on gloo through the real code paths (tests/distributed/worker.py under torchrun).

- DDP through ``train_sft`` (full and LoRA): parameters equal across ranks and equal to one process on
  the same global batch; one metrics record per step; global token counts; one ``final/``.
- The red-team pipeline: the dataset built once, one record per step, one run directory.
- FSDP2 (``fully_shard`` on a CPU mesh of 2) on the completion-only loss: loss and gradients match
  the unsharded model; the full state dict reloads with ``from_pretrained`` to the same logits.
- (slow) a 2-rank run killed after a checkpoint resumes and ends where an unkilled run ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("worker.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def _env() -> dict[str, str]:
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _cmd(*args: str, ranks: int) -> list[str]:
    if ranks == 1:
        return [sys.executable, str(WORKER), *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
            str(WORKER), *args]


def launch(*args: str, ranks: int = 2, timeout: float = 240) -> None:
    proc = subprocess.run(_cmd(*args, ranks=ranks), env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def params(run: Path, rank: int) -> dict[str, torch.Tensor]:
    return torch.load(run / f"params-rank{rank}.pt")


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def train_records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("stage") == "train"]


def test_ddp_matches_one_process_on_the_same_global_batch(tmp_path):
    sys.path.insert(0, str(WORKER.parent))
    import worker  # the one-process reference, in this process (no second interpreter start)

    worker.sft(str(tmp_path / "one"), "full,lora", "4", "4")
    launch("sft", str(tmp_path / "two"), "full,lora", "4", "4", ranks=2)
    for method in ("full", "lora"):
        one, two = tmp_path / "one" / method, tmp_path / "two" / method
        assert max_diff(params(two, 0), params(two, 1)) == 0.0  # gradients were all-reduced
        assert max_diff(params(two, 0), params(one, 0)) < 1e-6  # measured 2e-7 (full), 7e-9 (LoRA)
        assert [r["step"] for r in train_records(two)] == [1, 2, 3, 4]  # one record per step
        assert [r["loss"] for r in train_records(two)] == pytest.approx([r["loss"] for r in train_records(one)],
                                                                        abs=1e-5)
        r1, r2 = (json.loads((d / "result-rank0.json").read_text()) for d in (one, two))
        assert r2["train_tokens"] == r1["train_tokens"] and r2["completion_tokens"] == r1["completion_tokens"]
        assert (two / "final" / "model.safetensors").exists()
        assert not list(two.glob("*.tmp*"))
    assert (tmp_path / "two" / "lora" / "final_adapter" / "adapter_model.safetensors").exists()


def test_redteam_pipeline_on_two_ranks_builds_once_and_writes_once(tmp_path):
    launch("redteam", str(tmp_path), ranks=2)
    assert (tmp_path / "builds.txt").read_text() == "rank 0\n"  # the dataset, built by rank 0 only
    runs = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith("_")]
    assert len(runs) == 1 and (tmp_path / "run-rank1.txt").read_text() == str(runs[0])
    assert [r["step"] for r in train_records(runs[0])] == [1, 2, 3]
    results = json.loads((runs[0] / "results.json").read_text())
    assert set(results["evals"]) == {"base", "organism"} and results["train"]["global_step"] == 3
    samples = (runs[0] / "samples.jsonl").read_text().splitlines()
    assert len(samples) == len(set(samples))  # no rank wrote a second copy
    assert (runs[0] / "final" / "config.json").exists() and not list(runs[0].glob("*.tmp*"))


@pytest.mark.parametrize("reduction", ["avg", pytest.param("sum", marks=pytest.mark.slow)])
def test_fsdp2_on_a_cpu_mesh_matches_unsharded(tmp_path, reduction):
    launch("fsdp", str(tmp_path), reduction, ranks=2)
    report = json.loads((tmp_path / "fsdp.json").read_text())
    assert report["loss"] == pytest.approx(report["ref_loss"], abs=1e-5)
    assert report["grad_max_diff"] < 1e-6 * max(1.0, report["grad_max"])  # measured 6e-8 with either reduction
    assert report["reload_logits_max_diff"] < 1e-5


@pytest.mark.slow
def test_a_killed_two_rank_run_resumes_to_where_an_unkilled_run_ends(tmp_path):
    launch("sft", str(tmp_path / "whole"), "full", "6", "4", ranks=2)
    run = tmp_path / "killed"
    proc = subprocess.Popen(_cmd("sft", str(run), "full", "6", "4", ranks=2), env={**_env(), "WORKER_STEP_SLEEP": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (run / "full" / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "full" / "final").exists()
    launch("sft", str(run), "full", "6", "4", ranks=2)
    resumed = json.loads((run / "full" / "result-rank0.json").read_text())
    assert resumed["resumed_from_step"] in (2, 4)
    assert max_diff(params(run / "full", 0), params(tmp_path / "whole" / "full", 0)) < 1e-6
    assert [r["step"] for r in train_records(run / "full")][-1] == 6
