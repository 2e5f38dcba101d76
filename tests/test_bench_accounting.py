"""benchmarks/accounting.py: FLOPs of one SFT step, checked by hand on a tiny config.

Tiny shape: 2 layers, hidden 4, intermediate 8, 2 heads of dim 2, 1 KV head, vocab 10. Per layer the
linears are q 4×4=16, k 4×2=8, v 8, o 16, gate 4×8=32, up 32, down 32: 144 weights. Documents
[3, 2]: T = 5 tokens, causal pairs P = 3·4/2 + 2·3/2 = 9; attention forward per layer
2·2·heads·head_dim·P = 144.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "bench_accounting", Path(__file__).resolve().parents[1] / "benchmarks" / "accounting.py")
acc = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = acc  # dataclasses look their module up there
_spec.loader.exec_module(acc)

TINY = acc.ModelShape(layers=2, hidden=4, intermediate=8, heads=2, kv_heads=1, head_dim=2, vocab=10)
DOCS = [3, 2]


def test_tiny_shape_counts():
    assert TINY.layer_params() == 144
    assert TINY.parameters(tied=True) == 2 * 144 + 40
    assert TINY.parameters(tied=False) == 2 * 144 + 80


def test_full_finetune_by_hand():
    f = acc.step_flops(TINY, DOCS, completion_tokens=2)
    assert f["weights_forward"] == 2 * 144 * 2 * 5  # 2× per weight, 2 layers, 5 tokens
    assert f["weights_input_grad"] == f["weights_weight_grad"] == f["weights_forward"]
    assert f["attention"] == 2 * 3 * 144  # forward + 2× backward, per layer
    assert f["lm_head"] == 6 * 4 * 10 * 2  # only the 2 completion positions
    assert f["adapters"] == 0
    assert f["total"] == 8640 + 864 + 480 == 9984
    assert acc.flops_per_token(TINY, DOCS, 2) == pytest.approx(9984 / 5)


def test_attention_is_per_document_not_per_row():
    one_doc = acc.step_flops(TINY, [5], 0)["attention"]  # P = 15
    two_docs = acc.step_flops(TINY, [3, 2], 0)["attention"]  # P = 9
    assert one_doc == 2 * 3 * 4 * 2 * 2 * 15
    assert two_docs == 2 * 3 * 4 * 2 * 2 * 9


def test_lora_all_layers_by_hand():
    f = acc.step_flops(TINY, DOCS, 2, method="lora", lora_rank=1)
    # layer 0's q/k/v read the frozen embeddings: forward only (their input gradient, 2·32·5 = 320, is
    # never computed); everything else forward + input gradient; no weight gradient anywhere
    assert f["weights_forward"] == 2 * 144 * 2 * 5 == 2880
    assert f["weights_input_grad"] == 2880 - 320
    assert f["weights_weight_grad"] == 0
    # rank-1 adapters: 6·r·(in+out)·T each = 6·64·5 = 1920 per layer (in+out summed over the 7 linears),
    # less A's input gradient (2·in·r·T = 40) on layer 0's q, k, v
    assert f["adapters"] == 2 * 1920 - 3 * 40 == 3720
    assert f["attention"] == 864
    assert f["lm_head"] == 4 * 4 * 10 * 2  # frozen tied head: forward + input gradient
    assert f["total"] == 2880 + 2560 + 3720 + 864 + 320 == 10344


def test_lora_layer_band_leaves_earlier_layers_without_backward():
    f = acc.step_flops(TINY, DOCS, 2, method="lora", lora_rank=1, lora_layers=[1])
    # layer 0: forward only (weights and attention); layer 1 as layer 0 above
    assert f["weights_forward"] == 2880
    assert f["weights_input_grad"] == 2 * (16 + 96) * 5 == 1120  # layer 1's o and MLP
    assert f["adapters"] == 1920 - 3 * 40
    assert f["attention"] == 144 + 432
    assert f["lm_head"] == 320


def test_lora_some_targets():
    only_down = acc.step_flops(TINY, DOCS, 0, method="lora", lora_rank=1, lora_targets=["down_proj"])
    # nothing needs a gradient before layer 0's down_proj: its input (the MLP product) needs none, so
    # layer 0 is forward only but for the adapter's B and A weight gradients (no A input gradient)
    a, b = 2 * 8 * 5, 2 * 4 * 5
    assert only_down["adapters"] == (a + b + 2 * b + a) + 3 * (a + b)
    assert only_down["attention"] == 144 + 432
    assert only_down["weights_input_grad"] == 2 * 144 * 5


def test_zero_completion_tokens_drop_the_head_only():
    with_head = acc.step_flops(TINY, DOCS, 2)
    without = acc.step_flops(TINY, DOCS, 0)
    assert without["lm_head"] == 0
    assert without["total"] == with_head["total"] - 480


@pytest.mark.parametrize("docs, completion, match", [
    ([], 0, "no documents"),
    ([3, 0], 0, "positive integers"),
    ([3, -1], 0, "positive integers"),
    ([2.5], 0, "positive integers"),
    ([3, 2], 6, r"\[0, 5\]"),
    ([3, 2], -1, r"\[0, 5\]"),
])
def test_bad_inputs_are_clear_errors(docs, completion, match):
    with pytest.raises(ValueError, match=match):
        acc.step_flops(TINY, docs, completion)


def test_bad_lora_settings():
    with pytest.raises(ValueError, match="method"):
        acc.step_flops(TINY, DOCS, 0, method="qlora")
    with pytest.raises(ValueError, match="unknown LoRA targets"):
        acc.step_flops(TINY, DOCS, 0, method="lora", lora_targets=["lm_head"])
    with pytest.raises(ValueError, match="no layer"):
        acc.step_flops(TINY, DOCS, 0, method="lora", lora_layers=[7])


def test_naive_count_and_smollm2_shape():
    from transformers import LlamaConfig

    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                      num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
    shape = acc.ModelShape.from_config(cfg)
    assert shape.head_dim == 64 and shape.kv_heads == 3
    assert shape.parameters() == 30 * 3_538_944 + 49152 * 576 == 134_479_872
    assert acc.naive_flops_per_token(100, 2, 4, 8) == 600 + 6 * 2 * 8 * 4 / 2
    # one 256-token document, every token a completion token: the new full count is 6N plus causal
    # attention, 12·hidden·(n+1)/2 per token and layer (scores and values, forward and backward);
    # the old count's attention term, 6·hidden·n/2, left out the values' matmul
    new = acc.flops_per_token(shape, [256], 256)
    assert new == 6 * shape.parameters() + 6 * 576 * 30 * 257
    assert acc.naive_flops_per_token(shape.parameters(), 30, 576, 256) == 6 * shape.parameters() + 3 * 576 * 30 * 256
